"""Indexes for two look-ups into stored webhook payloads: ``invoice.paid`` reading the ``invoice_payment.paid`` of its
invoice (``payments.plan_periods.stored_invoice_payment_intent``, the same expression), and a Creem refund looking
for another event of the same refund (``payments.creem_webhooks._refund_event_processed``: only refund events)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("payments", "0007_plan_period_refund_after_close")]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX webhook_invoice_payment_invoice ON payments_webhookevent "
            "((payload -> 'data' -> 'object' ->> 'invoice')) WHERE type = 'invoice_payment.paid'",
            "DROP INDEX webhook_invoice_payment_invoice",
        ),
        migrations.RunSQL(
            "CREATE INDEX webhook_creem_refunds ON payments_webhookevent (id) "
            "WHERE provider = 'creem' AND type = 'refund.created'",
            "DROP INDEX webhook_creem_refunds",
        ),
    ]
