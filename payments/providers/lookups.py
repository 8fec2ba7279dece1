"""The ids a stored provider event is looked up by (``WebhookEvent``'s lookup columns), read once when it is
stored: the object it is about, the payment intent and invoice that object names, and the order of this service
its metadata names. Each provider's reader (``stripe_events.event_lookups``, ``creem_events.event_lookups``) fills
one; later events find it by column, never by a path into its JSON."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime


def object_id(value: object) -> str:
    """An id field of a provider's object: a string, an expanded object with an id, or nothing ("")."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    return ""


def epoch_seconds(value: object) -> datetime | None:
    """A Unix time in whole seconds (Stripe's ``created``, periods), as an aware UTC datetime; None otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    return None


ID_MAX = 255  # the columns' length: a longer id is no id of ours to look up


@dataclass(frozen=True, slots=True)
class EventLookups:
    object_id: str = ""
    payment_intent_id: str = ""
    invoice_id: str = ""
    order_ref: uuid.UUID | None = None

    def __post_init__(self) -> None:
        for name in ("object_id", "payment_intent_id", "invoice_id"):
            if len(getattr(self, name)) > ID_MAX:
                object.__setattr__(self, name, "")


def order_ref(*candidates: object) -> uuid.UUID | None:
    """The first candidate that is a UUID string (as the handlers read an order id: ``uuid.UUID``); None when none
    is (another integration's reference)."""
    for value in candidates:
        if isinstance(value, str) and value:
            try:
                return uuid.UUID(value)
            except ValueError:
                continue
    return None
