"""The only place rows of this app are locked. Order: a webhook event, then its order (then, inside
``credits.ledger``, the credit account). Nothing here is held across a call to a provider."""

from __future__ import annotations

import uuid

from payments.models import Order, WebhookEvent


def webhook_event_lock(*, event_pk: int) -> WebhookEvent | None:
    return WebhookEvent.objects.select_for_update().filter(pk=event_pk).first()


def order_lock(*, order_id: uuid.UUID | str) -> Order | None:
    return Order.objects.select_for_update().filter(pk=order_id).first()
