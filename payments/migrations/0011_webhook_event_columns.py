"""Issue 9: a webhook event's state in columns, not in strings or JSON paths.

- ``parked``, a status of its own (a refund waiting for its order or invoice), instead of ``ignored`` with a
  "parked: " prefix in ``last_error``;
- the ids other events look it up by (``object_id``, ``payment_intent_id``, ``invoice_id``, ``order_ref``),
  columns filled when it is stored, instead of expression indexes over the payload;
- the webhook fast path's PL/pgSQL function (0006) is gone with the fast path: one general path states the rules.

Stored events are filled by the readers that fill new ones (``payments.providers.*_events.event_lookups``), in
batches."""

import importlib

from django.db import migrations, models

PARKED_PREFIX = "parked: "


def fill_lookups(apps, schema_editor):
    from payments.providers import creem_events, stripe_events

    readers = {"stripe": stripe_events.event_lookups, "creem": creem_events.event_lookups}
    WebhookEvent = apps.get_model("payments", "WebhookEvent")
    batch = []
    for event in WebhookEvent.objects.only("pk", "provider", "payload", "status", "last_error").iterator(2000):
        lookups = readers[event.provider](event.payload if isinstance(event.payload, dict) else {})
        event.object_id, event.payment_intent_id = lookups.object_id, lookups.payment_intent_id
        event.invoice_id, event.order_ref = lookups.invoice_id, lookups.order_ref
        if event.status == "ignored" and event.last_error.startswith(PARKED_PREFIX):
            event.status, event.last_error = "parked", event.last_error[len(PARKED_PREFIX):]
        batch.append(event)
        if len(batch) == 2000:
            WebhookEvent.objects.bulk_update(
                batch, ["object_id", "payment_intent_id", "invoice_id", "order_ref", "status", "last_error"])
            batch = []
    if batch:
        WebhookEvent.objects.bulk_update(
            batch, ["object_id", "payment_intent_id", "invoice_id", "order_ref", "status", "last_error"])


def unpark(apps, schema_editor):
    WebhookEvent = apps.get_model("payments", "WebhookEvent")
    for event in WebhookEvent.objects.filter(status="parked"):
        event.status, event.last_error = "ignored", PARKED_PREFIX + event.last_error
        event.save(update_fields=["status", "last_error"])


STATUSES = [
    ("received", "Received (not processed yet)"),
    ("processed", "Processed"),
    ("ignored", "Ignored (a type or object this service does not handle)"),
    ("parked", "Parked (a refund waiting for its order or invoice; applied when that arrives)"),
    ("failed", "Failed (see last_error)"),
]

# the function 0006 created, recreated when this migration is reversed
PARKED_FUNCTION = importlib.import_module("payments.migrations.0006_parked_refund_function").FUNCTION


class Migration(migrations.Migration):
    dependencies = [("payments", "0010_auto_recharge_settings")]

    operations = [
        migrations.AddField("webhookevent", "object_id", models.CharField(
            blank=True, default="", max_length=255, help_text="The id of the event's object (cs_..., ch_..., ref_...).")),
        migrations.AddField("webhookevent", "payment_intent_id", models.CharField(
            blank=True, default="", max_length=255, help_text="The payment intent the object names (pi_...).")),
        migrations.AddField("webhookevent", "invoice_id", models.CharField(
            blank=True, default="", max_length=255, help_text="The invoice it names (in_...).")),
        migrations.AddField("webhookevent", "order_ref", models.UUIDField(
            blank=True, null=True, help_text="The order of this service its metadata names (it may not exist).")),
        migrations.AlterField("webhookevent", "status", models.CharField(
            choices=STATUSES, default="received", max_length=16)),
        migrations.RemoveConstraint("webhookevent", "webhook_status_valid"),
        migrations.AddConstraint("webhookevent", models.CheckConstraint(
            condition=models.Q(status__in=[value for value, _ in STATUSES]), name="webhook_status_valid")),
        migrations.RunPython(fill_lookups, unpark),
        migrations.RemoveIndex("webhookevent", "webhook_parked_refunds"),
        migrations.AddIndex("webhookevent", models.Index(
            condition=models.Q(status="parked"), fields=["provider", "type"], name="webhook_parked")),
        migrations.AddIndex("webhookevent", models.Index(
            condition=~models.Q(invoice_id=""), fields=["invoice_id"], name="webhook_invoice")),
        migrations.AddIndex("webhookevent", models.Index(
            fields=["provider", "type", "object_id"], name="webhook_object")),
        migrations.RunSQL(
            "DROP INDEX IF EXISTS webhook_invoice_payment_invoice; DROP INDEX IF EXISTS webhook_creem_refund_id",
            "CREATE INDEX webhook_invoice_payment_invoice ON payments_webhookevent "
            "((payload -> 'data' -> 'object' ->> 'invoice')) WHERE type = 'invoice_payment.paid'; "
            "CREATE INDEX webhook_creem_refund_id ON payments_webhookevent ((payload #> '{object,id}')) "
            "WHERE provider = 'creem' AND type = 'refund.created'",
        ),
        migrations.RunSQL(
            "DROP FUNCTION IF EXISTS payments_parked_refund_exists(uuid, text, text)",
            PARKED_FUNCTION,
        ),
    ]
