"""What each provider event does. Called by ``services.webhook_event_process`` inside its transaction, with
the event row locked; these handlers lock the order and write, and never call a provider.

Stripe Checkout, for a top-up order:
- ``checkout.session.completed`` with ``payment_status`` "paid" (cards): the order is paid and credited.
- ``checkout.session.completed`` with "unpaid" (delayed methods such as bank debits): the order stays pending,
  with the session's ids recorded, until ``checkout.session.async_payment_succeeded`` (credited) or
  ``checkout.session.async_payment_failed`` (the order fails).
Arrival order does not matter: whichever paid event comes first credits the order, the others find it paid;
an "unpaid" completion or a failure arriving after the payment changes nothing.
Before crediting, the session must match the order: mode "payment", the same currency, and ``amount_total``
equal to the order's amount in cents. A mismatch raises ``EventNotApplicable`` (no credit; order flagged).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.utils import timezone

from credits.services import credits_grant
from payments import locks
from payments.errors import EventNotApplicable, EventRetryable
from payments.models import (
    Channel,
    Order,
    OrderStatus,
    OrderType,
    WebhookEvent,
    WebhookProvider,
    WebhookStatus,
)
from payments.providers.stripe import SessionFacts, session_facts

COMPLETED = "checkout.session.completed"
ASYNC_SUCCEEDED = "checkout.session.async_payment_succeeded"
ASYNC_FAILED = "checkout.session.async_payment_failed"
STRIPE_HANDLED = frozenset({COMPLETED, ASYNC_SUCCEEDED, ASYNC_FAILED})


@dataclass(frozen=True, slots=True)
class Handled:
    status: str  # processed or ignored
    order_id: uuid.UUID | None = None
    note: str = ""


def handle(event: WebhookEvent) -> Handled:
    if event.provider != WebhookProvider.STRIPE:
        return Handled(WebhookStatus.IGNORED, note=f"events of {event.provider} are not handled yet")
    if event.type not in STRIPE_HANDLED:
        return Handled(WebhookStatus.IGNORED, note="event type not handled")
    return _stripe_checkout_session(event)


def _stripe_checkout_session(event: WebhookEvent) -> Handled:
    facts = session_facts(event.payload)
    if facts.conflicting_refs:
        raise EventNotApplicable("client_reference_id and metadata.order_id name different orders")
    try:
        order_id = uuid.UUID(facts.order_ref)
    except ValueError:
        # No reference, or one that is not ours (another integration on the same Stripe account).
        return Handled(WebhookStatus.IGNORED, note="the session names no order of this service")
    order = locks.order_lock(order_id=order_id)
    if order is None:
        raise EventRetryable(f"order {order_id} not found")
    _check_identity(order, facts)
    _record_provider_ids(order, facts)

    if event.type == ASYNC_FAILED:
        if order.status == OrderStatus.PENDING:
            order.status = OrderStatus.FAILED
            order.failed_at = timezone.now()
            order.last_error = "the delayed payment failed"
        order.save()
        return Handled(WebhookStatus.PROCESSED, order.id, "" if order.status == OrderStatus.FAILED else
                       f"payment failure ignored: the order is {order.status}")
    if event.type == COMPLETED and facts.payment_status == "unpaid":
        order.save()
        return Handled(WebhookStatus.PROCESSED, order.id, "awaiting the delayed payment")
    if facts.payment_status != "paid":
        raise EventNotApplicable(f"payment_status is {facts.payment_status!r}, expected 'paid'", order_id=order.id)
    _check_amount(order, facts)
    if order.status == OrderStatus.PAID:
        order.save()
        return Handled(WebhookStatus.PROCESSED, order.id, "already paid")
    if order.status not in (OrderStatus.PENDING, OrderStatus.FAILED):
        raise EventNotApplicable(f"a payment arrived for an order that is {order.status}", order_id=order.id)
    _credit(order, facts)
    return Handled(WebhookStatus.PROCESSED, order.id)


def _check_identity(order: Order, facts: SessionFacts) -> None:
    if order.channel != Channel.STRIPE:
        raise EventNotApplicable(f"the order is paid through {order.channel}, not stripe", order_id=order.id)
    if order.type != OrderType.TOP_UP:
        raise EventNotApplicable(f"{order.type} orders are not processed yet", order_id=order.id)
    if order.provider_checkout_id and facts.session_id and order.provider_checkout_id != facts.session_id:
        raise EventNotApplicable(
            f"checkout session {facts.session_id} is not the order's ({order.provider_checkout_id})",
            order_id=order.id,
        )


def _check_amount(order: Order, facts: SessionFacts) -> None:
    paid = Decimal(facts.amount_total) / 100 if facts.amount_total is not None else None
    if facts.mode != "payment":
        raise EventNotApplicable(f"session mode is {facts.mode!r}, expected 'payment'", order_id=order.id)
    if facts.currency != order.currency.lower():
        raise EventNotApplicable(
            f"paid in {facts.currency or '(none)'}, the order is in {order.currency.lower()}",
            order_id=order.id, amount_paid_usd=None,
        )
    if facts.amount_total != order.amount_cents:
        raise EventNotApplicable(
            f"amount_total {facts.amount_total} differs from the order's {order.amount_cents} cents",
            order_id=order.id, amount_paid_usd=paid,
        )


def _record_provider_ids(order: Order, facts: SessionFacts) -> None:
    order.provider_checkout_id = order.provider_checkout_id or facts.session_id
    order.provider_payment_id = order.provider_payment_id or facts.payment_intent_id
    order.provider_customer_id = order.provider_customer_id or facts.customer_id


def _credit(order: Order, facts: SessionFacts) -> None:
    """One ``add`` row per order, whatever happens: the ledger key is the order's."""
    result = credits_grant(
        account_id=order.account_id,
        amount=order.credits,
        payment_amount_usd=order.amount_usd,
        description=f"Top-up via {order.channel}",
        reference=f"order:{order.id}",
        metadata={"order_id": str(order.id), "channel": order.channel},
        idempotency_key=f"order:{order.id}",
    )
    order.status = OrderStatus.PAID
    order.paid_at = timezone.now()
    order.amount_paid_usd = Decimal(facts.amount_total) / 100
    order.ledger_entry_id = result.entry.id
    order.last_error = ""
    order.save()
