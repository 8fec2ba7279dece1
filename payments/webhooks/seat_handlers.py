"""What each Stripe event of seats does: the events whose object's ``metadata.kind`` is "seats" (a seats checkout
session, and the subscription it starts, which carries its ``subscription_data.metadata``), routed here by
``payments.webhooks.routes``. Called inside the event store's transaction, with the event row locked; these handlers
lock the order (a checkout's), then the seats (``entitlements.sync``, under the plan's seats lock), and never call a
provider.

- ``checkout.session.completed`` / ``…async_payment_succeeded`` of a seats order: the order is paid, linked to its
  subscription and customer, and its seats recorded provisionally (``payments.seat_sync.seat_checkout_apply``:
  created from the order's plan and quantity unless the subscription's own events came first). An unpaid
  completion (a delayed method) waits; ``…async_payment_failed`` fails the order. The session must be the order's
  and in mode ``subscription``; otherwise the event is refused (the order flagged for review).
- ``customer.subscription.created|updated|deleted``: the subscription's seats as Stripe states them
  (``payments.seat_sync.seat_state_apply``: quantity, status, dates), applied with the event's ``created`` as
  their time: an older event than the state recorded changes nothing, a duplicate changes nothing. The platform
  is ``metadata.platform_id``; the plan the one whose Stripe price the item is, else ``metadata.ai_plan_id``. A
  quantity below the assignments keeps them (the event's note says the plan is over-assigned); a subscription
  ended with no other seats of its plan on the platform frees the plan's assignments.
- ``invoice.paid`` / ``invoice.payment_succeeded`` of a seats subscription: stored, ignored (seats are no credits;
  the subscription's events carry its state).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from payments import locks, orders, seat_sync
from payments.errors import EventNotApplicable, EventRetryable
from payments.handled import Handled, ignored, processed
from payments.models import Channel, OrderType, WebhookEvent
from payments.providers.lookups import epoch_seconds
from payments.providers.stripe_events import session_facts, subscription_facts
from payments.webhooks.stripe_handlers import subscription_session_settle

SUBSCRIPTION_DELETED = "customer.subscription.deleted"


def checkout_session(event: WebhookEvent) -> Handled:
    facts = session_facts(event.payload)
    if facts.conflicting_refs:
        raise EventNotApplicable("client_reference_id and metadata.order_id name different orders")
    try:
        order_id = uuid.UUID(facts.order_ref)
    except ValueError:
        return ignored("a seats session naming no order of this service: its subscription's events record the "
                       "seats")
    order = locks.order_lock(order_id=order_id)
    if order is None:
        raise EventRetryable(f"order {order_id} not found")
    if order.type != OrderType.SEATS or order.channel != Channel.STRIPE:
        raise EventNotApplicable(f"a seats session for a {order.channel} {order.type} order", order_id=order.id)
    if order.provider_checkout_id and facts.session_id and order.provider_checkout_id != facts.session_id:
        raise EventNotApplicable(
            f"checkout session {facts.session_id} is not the order's ({order.provider_checkout_id})", order_id=order.id
        )
    orders.order_link(order, checkout_id=facts.session_id, customer_id=facts.customer_id)
    unsettled = subscription_session_settle(event, order, facts)
    if unsettled is not None:
        return unsettled
    applied = seat_sync.seat_checkout_apply(order, subscription_id=facts.subscription_id,
                                            customer_id=facts.customer_id, as_of=_event_time(event))
    return processed(order.id, applied.note)


def subscription_changed(event: WebhookEvent) -> Handled:
    facts = subscription_facts(event.payload)
    if not facts.subscription_id:
        return ignored("the event names no subscription")
    target = seat_sync.seat_target(facts)
    if target is None:
        return ignored("a seats subscription naming no platform or AI plan of this service")
    try:
        applied = seat_sync.seat_state_apply(facts, target=target, as_of=_event_time(event),
                                             deleted=event.type == SUBSCRIPTION_DELETED)
    except seat_sync.SeatStateInvalid as exc:
        raise EventNotApplicable(str(exc)) from exc
    return processed(None, applied.note)


def invoice(event: WebhookEvent) -> Handled:
    return ignored("a seats subscription's invoice: seats are no credits; its subscription's events carry its state")


def _event_time(event: WebhookEvent) -> datetime | None:
    return epoch_seconds(event.payload.get("created"))
