"""Reading Creem's objects out of event payloads: the facts the Creem handlers (``payments.webhooks.creem_handlers``) act
on, and the lookup columns of a stored event. No network call here (``payments.providers.creem`` makes them).

The events, as Creem documents them (docs.creem.io/learn/webhooks/event-types): ``{"id": "evt_...",
"eventType": ..., "created_at": <ms>, "object": {...}}``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from payments.providers.lookups import EventLookups, object_id, order_ref
from subscriptions.models import BillingCycle

REFUND_CREATED = "refund.created"

def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def moment(value: Any) -> datetime | None:
    """An ISO 8601 date (``"2024-10-12T11:58:38.000Z"``) or epoch milliseconds, as an aware datetime."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)
    return None


@dataclass(frozen=True, slots=True)
class SubscriptionFacts:
    subscription_id: str
    product_id: str
    billing_cycle: str | None  # from the product's billing_period, when the product is expanded
    customer_id: str
    status: str
    period_start: datetime | None
    period_end: datetime | None
    canceled_at: datetime | None
    order_ref: str  # metadata.order_id, "" if none


def subscription_facts(
    obj: dict[str, Any], *, product: Any = None, metadata: Any = None
) -> SubscriptionFacts:
    product = obj.get("product") if product is None else product
    period = as_dict(product).get("billing_period")
    cycle = None
    if isinstance(period, str):
        cycle = BillingCycle.YEARLY if period == "every-year" else BillingCycle.MONTHLY
    start, end = moment(obj.get("current_period_start_date")), moment(obj.get("current_period_end_date"))
    if start is not None and end is not None and end <= start:
        end = None  # Creem's own expired sample has start == end: keep the start, drop the empty period
    meta = as_dict(obj.get("metadata") if metadata is None else metadata)
    return SubscriptionFacts(
        subscription_id=object_id(obj.get("id")),
        product_id=object_id(product),
        billing_cycle=cycle,
        customer_id=object_id(obj.get("customer")),
        status=obj.get("status") if isinstance(obj.get("status"), str) else "",
        period_start=start,
        period_end=end,
        canceled_at=moment(obj.get("canceled_at")),
        order_ref=meta.get("order_id") if isinstance(meta.get("order_id"), str) else "",
    )


def event_lookups(event: dict[str, Any]) -> EventLookups:
    """The lookup columns of a stored Creem event (``payments.providers.lookups``): its object's id and the order
    its checkout names (``request_id`` or ``metadata.order_id``, on the object or on its checkout)."""
    obj = as_dict(event.get("object"))
    checkout = as_dict(obj.get("checkout"))
    return EventLookups(
        object_id=object_id(obj.get("id")),
        order_ref=order_ref(obj.get("request_id"), as_dict(obj.get("metadata")).get("order_id"),
                            checkout.get("request_id"), as_dict(checkout.get("metadata")).get("order_id")),
    )
