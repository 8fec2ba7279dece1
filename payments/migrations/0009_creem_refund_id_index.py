"""The Creem refund look-up (``payments.creem_webhooks._refund_event_processed``: ``payload__object__id``, which
Django compiles to ``payload #> '{object,id}'``) by that very expression, instead of 0008's index that only
narrowed it to refund events. Built CONCURRENTLY: webhook intake keeps writing while it builds."""

from django.db import migrations


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("payments", "0008_webhook_lookup_indexes")]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_creem_refund_id ON payments_webhookevent "
            "((payload #> '{object,id}')) WHERE provider = 'creem' AND type = 'refund.created'",
            "DROP INDEX CONCURRENTLY IF EXISTS webhook_creem_refund_id",
        ),
        migrations.RunSQL(
            "DROP INDEX CONCURRENTLY IF EXISTS webhook_creem_refunds",
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_creem_refunds ON payments_webhookevent (id) "
            "WHERE provider = 'creem' AND type = 'refund.created'",
        ),
    ]
