"""Refunds of Stripe payments: an order's (``order_refund_apply``) and a renewal period's (``period_refund_apply``),
and the refunds that arrived before what they refund (parked, then applied by ``parked_refunds_apply_to_order`` /
``parked_refunds_apply_to_period``). Creem's refunds name their period themselves (``payments.webhooks.creem_handlers``).
Every one takes its credits back through ``plan_periods.period_credits_reverse``.

An order's refund (``charge.refunded`` naming the order by ``metadata.order_id`` or its payment intent): the
refunded part, from the cumulative ``amount_refunded`` (only the part not processed before), is taken back as a
negative ``refund`` row of ``credits * refunded / amount`` credits. Policy when those credits are already spent:
only what is available is removed (the balance never goes negative, reserved credits stay reserved, other
purchases are not the customer's debt here); the rest is recorded on the order (``refund_shortfall_credits``)
and the order is flagged ``needs_review`` for an operator. The order becomes refunded or partially refunded. A
subscription order's refund takes back its first period's grant, recorded on that period too.

A renewal's refund (matching no order) is matched to the period whose invoice recorded its payment intent (or, in
the older shapes, whose invoice the charge names): the same share of the credits that invoice granted is taken
back with the same policy (the shortfall recorded on the period). Once a period has closed, only what it carried
into the next period can still be taken back (``plan_periods.reversal_plan``).

A refund that arrives before its order is credited, or before its renewal's invoice recorded the period, is
stored ``parked`` and applied (largest cumulative amount first: each adds only what the ones before did not) when
the order is credited or the period records its payment, so arrival order does not change the end. Lock order:
the order, the account's subscriptions, the refunded period, then the credit account (``payments.locks``)."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

from django.db import transaction
from django.utils import timezone

from billing_service.money import QUANTUM, format_money
from payments import locks, selectors
from payments.errors import EventNotApplicable, OrderNotFound, OrderNotRefundable
from payments.models import (
    Channel,
    Order,
    OrderStatus,
    OrderType,
    PlanCreditPeriod,
    WebhookEvent,
    WebhookProvider,
    WebhookStatus,
)
from payments.orders import order_is_credited, order_refund_record
from payments.plan_periods import period_credits_reverse, reversal_note
from payments.providers import stripe as stripe_provider
from payments.providers.stripe_events import CHARGE_REFUNDED, ChargeFacts, charge_facts


REFUNDABLE_STATUSES = (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED)
REFUNDABLE_TYPES = (OrderType.TOP_UP, OrderType.SUBSCRIPTION)


def order_refund_request(*, order_id: object, reason: str, actor_id: int | None) -> Decimal:
    """An operator's refund of what is left of a paid Stripe order (the admin's action): asks Stripe to refund it
    and returns the USD amount asked. Nothing is written here: Stripe then sends ``charge.refunded``, and its
    handler takes the credits back by the one rule of every refund (``order_refund_apply``), once. The Stripe
    idempotency key is ``order-refund:<order id>:<cents refunded so far>``, so a repeated request (a double click,
    a retry) refunds once. Refused (``OrderNotRefundable``) for another provider (Creem's refunds are made in its
    dashboard), an order not paid, seats, and an order refunded in full; a provider failure raises
    ``PaymentProviderError``. Call it with no transaction open."""
    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        raise OrderNotFound()
    if order.channel != Channel.STRIPE:
        raise OrderNotRefundable(f"A {order.get_channel_display()} order is refunded in that provider's dashboard.")
    if order.type not in REFUNDABLE_TYPES:
        raise OrderNotRefundable(f"A {order.get_type_display().lower()} order is not refunded from here.")
    remaining = order.amount_usd - order.amount_refunded_usd
    if remaining <= 0:
        raise OrderNotRefundable("The order is refunded in full already.")
    if order.status not in REFUNDABLE_STATUSES or not order.provider_payment_id:
        raise OrderNotRefundable(f"The order is {order.get_status_display().lower()}: there is no payment to refund.")
    refunded_cents = int(order.amount_refunded_usd * 100)
    stripe_provider.refund_create(
        payment_intent_id=order.provider_payment_id,
        amount_cents=int(remaining * 100),
        metadata={"order_id": str(order.id), "reason": reason[:500], "requested_by": str(actor_id or "")},
        idempotency_key=f"order-refund:{order.id}:{refunded_cents}",
    )
    return remaining


def order_refund_apply(order: Order, facts: ChargeFacts) -> str:
    """Takes back the credits of the order's refunded part not processed before; returns the event's note."""
    if facts.currency and facts.currency != order.currency.lower():
        raise EventNotApplicable(f"refunded in {facts.currency}, the order is in {order.currency}", order_id=order.id)
    refunded = Decimal(facts.amount_refunded) / 100
    if refunded > order.amount_usd:
        raise EventNotApplicable(
            f"amount_refunded {facts.amount_refunded} exceeds the order's {order.amount_cents} cents",
            order_id=order.id,
        )
    if refunded <= order.amount_refunded_usd:
        return "refund already processed"
    target = order.credits if refunded == order.amount_usd else (
        order.credits * refunded / order.amount_usd
    ).quantize(QUANTUM, rounding=ROUND_DOWN)
    # The first period of a subscription order records every reversal of its grant, through this order or matched
    # to the period itself by its payment intent: what either took is not owed again.
    period = locks.order_period_lock(order)
    owed = target - (
        period.credits_reversed + period.refund_shortfall_credits + period.refund_expired_credits
        if period is not None else order.credits_reversed + order.refund_shortfall_credits
    )
    note, removed, shortfall = "", Decimal(0), Decimal(0)
    if owed > 0:
        reversal, result = period_credits_reverse(
            period, owed,
            account_id=order.account_id,
            description=f"Refund of order {order.id} ({format_money(refunded)} USD refunded)",
            reference=f"order:{order.id}",
            metadata={"order_id": str(order.id), "charge_id": facts.charge_id,
                      "amount_refunded_usd": format_money(refunded)},
            idempotency_key=f"refund:{facts.charge_id}:{facts.amount_refunded}",
        )
        if not result.replayed:
            removed, shortfall = result.removed, result.shortfall
        if reversal.expired > 0:
            note = (f"refund: {format_money(reversal.expired)} of {format_money(owed)} credits had left with the "
                    f"first period's close (expired or spent), not taken back")
        if shortfall > 0:
            note = (note + "; " if note else "") + (
                f"refund: {format_money(shortfall)} of {format_money(owed)} credits were already spent; "
                f"{format_money(removed)} removed"
            )
    order_refund_record(order, removed=removed, shortfall=shortfall, review_note=note, amount_refunded_usd=refunded,
                        full=refunded == order.amount_usd)
    order.save()
    return note


def period_refund_apply(period: PlanCreditPeriod, facts: ChargeFacts) -> str:
    """Takes back the (locked) period's share of the refunded part not processed before; returns the note."""
    subscription = period.subscription
    if facts.currency and facts.currency != "usd":
        raise EventNotApplicable(f"refunded in {facts.currency}; plan periods are paid in usd")
    if not facts.amount or facts.amount <= 0 or facts.amount_refunded is None:
        raise EventNotApplicable("the refunded charge has no amount")
    if facts.amount_refunded > facts.amount:
        raise EventNotApplicable(f"amount_refunded {facts.amount_refunded} exceeds the charge's {facts.amount}")
    refunded = Decimal(facts.amount_refunded) / 100
    if refunded <= period.amount_refunded_usd:
        return "refund already processed"
    target = period.granted if facts.amount_refunded == facts.amount else (
        period.granted * facts.amount_refunded / facts.amount
    ).quantize(QUANTUM, rounding=ROUND_DOWN)
    owed = target - period.credits_reversed - period.refund_shortfall_credits - period.refund_expired_credits
    note = f"refund of the plan period from {period.period_start:%Y-%m-%d}"
    if owed > 0:
        reversal, result = period_credits_reverse(
            period, owed,
            account_id=subscription.account_id,
            description=f"Refund of the {period.plan.name} plan period {period.period_start:%Y-%m-%d} to "
            f"{period.period_end:%Y-%m-%d} ({format_money(refunded)} USD refunded)",
            reference=f"subscription:{subscription.pk}",
            metadata={"subscription_id": str(subscription.pk), "period_start": period.period_start.isoformat(),
                      "charge_id": facts.charge_id, "amount_refunded_usd": format_money(refunded)},
            idempotency_key=f"refund:{facts.charge_id}:{facts.amount_refunded}",
        )
        note += reversal_note(reversal, owed=owed, removed=result.removed, shortfall=result.shortfall)
    period.amount_refunded_usd = refunded
    period.save(update_fields=["amount_refunded_usd"])
    return note


def parked_refunds_apply_to_order(order: Order) -> None:
    """Applies the refunds that arrived before the (now credited) order."""
    if not order_is_credited(order):
        return
    parked = locks.parked_refunds_lock(provider=WebhookProvider.STRIPE, event_type=CHARGE_REFUNDED, order_id=order.id,
                                       payment_intent_id=order.provider_payment_id)
    for event in _largest_last(parked):
        event.order_id = order.id
        try:
            with transaction.atomic():
                order_refund_apply(order, charge_facts(event.payload))
        except EventNotApplicable as exc:
            order.refresh_from_db()
            event.status, event.last_error = WebhookStatus.FAILED, str(exc)
            order.needs_review, order.last_error = True, str(exc)
            order.save(update_fields=["needs_review", "last_error", "updated_at"])
        else:
            event.status, event.last_error = WebhookStatus.PROCESSED, "applied once its order was credited"
        _unparked(event)


def parked_refunds_apply_to_period(period: PlanCreditPeriod) -> None:
    """Applies the refunds of the (locked) period's payment that arrived before its invoice."""
    if not period.payment_intent_id and not period.invoice_id:
        return
    parked = locks.parked_refunds_lock(provider=WebhookProvider.STRIPE, event_type=CHARGE_REFUNDED,
                                       payment_intent_id=period.payment_intent_id, invoice_id=period.invoice_id)
    for event in _largest_last(parked):
        if _names_an_order(event):
            continue  # an order's refund: applied with its order (parked_refunds_apply_to_order)
        try:
            with transaction.atomic():
                note = period_refund_apply(period, charge_facts(event.payload))
        except EventNotApplicable as exc:
            period.refresh_from_db()
            event.status, event.last_error = WebhookStatus.FAILED, str(exc)
        else:
            event.status, event.last_error = WebhookStatus.PROCESSED, f"applied once its invoice was paid: {note}"
        _unparked(event)


def _largest_last(events: list[WebhookEvent]) -> list[WebhookEvent]:
    """Cumulative refunds in the order of their amounts: each one adds only what the ones before did not."""
    return sorted(events, key=lambda e: charge_facts(e.payload).amount_refunded or 0)


def _unparked(event: WebhookEvent) -> None:
    event.processed_at = timezone.now()
    event.save(update_fields=["status", "order", "last_error", "processed_at", "updated_at"])


def _names_an_order(event: WebhookEvent) -> bool:
    if event.order_ref is not None and Order.objects.filter(pk=event.order_ref).exists():
        return True
    return selectors.order_of_payment(payment_intent_id=event.payment_intent_id) is not None

