"""``payments_parked_refund_exists(order_id, order_text, payment_intent)``: whether refunds are parked until an order
is credited (``payments.webhooks.PARKED``; matched as ``_apply_parked_refunds`` matches them). A PL/pgSQL function
so that, called inside a statement after that statement took the payment intent's lock, its query still sees the
refunds committed while it waited (each query of a volatile function takes a fresh snapshot in READ COMMITTED);
``payments.webhook_fast_path`` relies on it."""

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION payments_parked_refund_exists(for_order uuid, for_order_text text, for_payment_intent text)
RETURNS boolean VOLATILE LANGUAGE plpgsql AS $$
BEGIN
    RETURN EXISTS (
        SELECT FROM payments_webhookevent p
         WHERE p.provider = 'stripe' AND p.type = 'charge.refunded' AND p.status = 'ignored'
           AND p.last_error LIKE 'parked: %'
           AND (p.order_id = $1
                OR p.payload -> 'data' -> 'object' -> 'metadata' ->> 'order_id' = $2
                OR ($3 <> '' AND p.payload -> 'data' -> 'object' ->> 'payment_intent' = $3))
    );
END
$$
"""


class Migration(migrations.Migration):
    dependencies = [("payments", "0005_plan_period_changes_and_saved_method_history")]

    operations = [
        migrations.RunSQL(FUNCTION, "DROP FUNCTION payments_parked_refund_exists(uuid, text, text)"),
    ]
