"""What a webhook handler did with an event: the status the stored event gets, the order it concerned, a note.

Every handler of the routing table (``payments.webhooks.routes``) returns one; the event store
(``payments.webhooks.events``) records it on the event row. A handler that refuses an event raises
``payments.errors.EventNotApplicable`` (stored ``failed``, no retry) or ``EventRetryable`` (a 5xx: delivered
again) instead."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from payments.models import WebhookStatus


@dataclass(frozen=True, slots=True)
class Handled:
    status: str  # WebhookStatus: processed, ignored or parked
    order_id: uuid.UUID | None = None
    note: str = ""


def ignored(note: str, order_id: uuid.UUID | None = None) -> Handled:
    return Handled(WebhookStatus.IGNORED, order_id, note)


def processed(order_id: uuid.UUID | None = None, note: str = "") -> Handled:
    return Handled(WebhookStatus.PROCESSED, order_id, note)


def parked(note: str, order_id: uuid.UUID | None = None) -> Handled:
    """A refund waiting for what it refunds: applied by the event that brings it (``payments.refunds``)."""
    return Handled(WebhookStatus.PARKED, order_id, note)
