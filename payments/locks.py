"""The only place rows of this app are locked. Order: a webhook event, then (an advisory lock on) its invoice,
then (an advisory lock on) its payment intent, then its order, then the account's subscriptions (``subscriptions.locks``), then its plan periods
(``PlanCreditPeriod`` rows, in ``payments.webhooks`` / ``payments.plan_periods``: a refund locks its period
before reversing credits, as a renewal does before its rollover), then the credit account (``credits.locks`` /
inside ``credits.ledger``), then parked refund events. Nothing here is held across a call
to a provider."""

from __future__ import annotations

import uuid

from django.db import connection

from payments.models import Order, WebhookEvent


def webhook_event_lock(*, event_pk: int) -> WebhookEvent | None:
    return WebhookEvent.objects.select_for_update().filter(pk=event_pk).first()


def order_lock(*, order_id: uuid.UUID | str) -> Order | None:
    return Order.objects.select_for_update().filter(pk=order_id).first()


PAYMENT_INTENT_LOCK = 0x5049  # "PI": the first key of pg_advisory_xact_lock(int, int)
INVOICE_LOCK = 0x494E  # "IN"


def invoice_lock(*, invoice_id: str) -> None:
    """Serializes ``invoice.paid`` and ``invoice_payment.paid`` of one invoice (taken before the payment intent's
    lock): whichever comes second finds the other (the period, or the stored payment), so the period always
    learns the payment intent its refunds are matched by."""
    if invoice_id:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [INVOICE_LOCK, invoice_id])


def payment_intent_lock(*, payment_intent_id: str) -> None:
    """Serializes the events about one provider payment (taken before the order's row lock): a refund that
    looks its order up by payment id and the event that records that id on the order cannot miss each
    other (the refund would otherwise be parked after the order had looked for parked refunds)."""
    if payment_intent_id:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [PAYMENT_INTENT_LOCK, payment_intent_id])
