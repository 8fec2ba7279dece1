"""What each Stripe event does (the routing table ``payments.webhooks.routes`` maps each type here). Called by
``payments.webhooks.events`` inside its transaction, with the event row locked; these handlers lock the order and
write, and never call a provider.

Stripe Checkout, for a top-up order:
- ``checkout.session.completed`` with ``payment_status`` "paid" (cards): the order is paid and credited.
- ``checkout.session.completed`` with "unpaid" (delayed methods such as bank debits): the order stays pending,
  with the session's ids recorded, until ``checkout.session.async_payment_succeeded`` (credited) or
  ``checkout.session.async_payment_failed`` (the order fails).
Arrival order does not matter: whichever paid event comes first credits the order, the others find it paid;
an "unpaid" completion or a failure arriving after the payment changes nothing.
Before crediting, the session must match the order: mode "payment", the same currency, and ``amount_total``
equal to the order's amount in cents. A mismatch raises ``EventNotApplicable`` (no credit; order flagged).

Stripe subscriptions (orders of type subscription, and the subscriptions they start):
- ``checkout.session.completed`` (mode "subscription"): the order is paid and the subscription started
  (``subscriptions.services.subscription_start``, provider "stripe") with the session's subscription id.
- ``invoice.paid``, or ``invoice.payment_succeeded`` (sent for the same payment; some endpoints subscribe
  only to it, and localstripe sends only it; handled alike: whichever comes first grants, the other finds the
  period granted): the subscription (found by its Stripe id; started from the invoice's price and the
  subscription metadata's ``account_id`` when its other events have not arrived yet) gets the plan's
  ``credits_included`` for the invoice's period, once per (subscription, period start), the previous period
  closed first with its plan's rollover policy (``payments.plan_periods.period_grant``).
  The invoice that created the subscription pays its order and links the order to the first grant. The period
  records the invoice's payment intent (matched by refunds, below). An invoice of a mid-period plan change
  (``billing_reason`` "subscription_update" whose subscription lines are all prorations, whatever one-off items
  it has besides) starts no period and grants nothing: a period never starts from a proration line.
- ``customer.subscription.created/updated/deleted``: status (mapped below), plan (price -> plan), period,
  trial end and cancel-at-period-end, applied with ``as_of`` = the event's ``created``: an older event
  never overrides newer state. Stripe statuses: trialing, active; past_due, unpaid, paused -> past_due;
  canceled (and every ``deleted`` event) -> canceled; incomplete_expired -> expired; incomplete -> not
  started yet (ignored until it becomes active).
  Mid-period plan change, the policy (``payments.plan_periods``): moving an active (or trialing) subscription
  within its period to a plan that includes more credits grants the difference for the current period at once,
  once (an ``add`` row keyed ``upgrade:<subscription>:<period start>:<plan>``, recorded on the period's
  ``PlanCreditPeriod`` as ``upgrade_granted``, so the rollover counts it; the period then follows the new
  plan's rollover policy). A period never gets more than the most generous plan it was on. A downgrade grants
  nothing and takes nothing back; the new plan's credits arrive with the next invoice. An older event never
  grants (it changes nothing), and an upgrade seen before its period's ``invoice.paid`` is granted when that
  invoice arrives. Stripe's proration charge for the change is not credits: it buys the plan change.
- ``charge.refunded``: the refunded part of an order, or of a renewal period, is taken back
  (``payments.refunds``); a refund that arrives before what it refunds is stored ``parked`` and applied when that
  arrives. A refund matching neither (another integration's charge; a proration invoice; an invoice whose event
  named no payment intent) is stored ``parked`` too, with a note saying so.

Saving a payment method for auto-recharge (``payments.payment_methods``, chosen by the event's metadata):
``payment_intent.succeeded`` of a top-up paid with ``setup_future_usage``, ``setup_intent.succeeded`` and
``checkout.session.completed`` (mode "setup") of the setup sessions opened by the API. A payment intent
naming a ``recharge_id`` settles an auto-recharge (``payments.recharge``).
"""


from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from billing_service.money import format_money
from credits.models import CreditAccount
from payments import coupons, locks, orders, payment_methods, plan_periods, recharge, refunds, selectors
from payments.errors import EventNotApplicable, EventRetryable
from payments.handled import Handled, ignored, parked, processed
from payments.models import Channel, Order, OrderStatus, OrderType, WebhookEvent
from payments.providers import stripe_events
from payments.providers.lookups import epoch_seconds
from payments.providers.stripe_events import (
    SessionFacts,
    charge_facts,
    invoice_facts,
    invoice_payment_facts,
    session_facts,
    subscription_facts,
)
from subscriptions import selectors as subscription_selectors
from subscriptions import services as subscription_services
from subscriptions.locks import account_subscriptions_lock
from subscriptions.models import CURRENT_STATUSES, Plan, Provider, Subscription, SubscriptionStatus

COMPLETED = "checkout.session.completed"
ASYNC_SUCCEEDED = "checkout.session.async_payment_succeeded"
ASYNC_FAILED = "checkout.session.async_payment_failed"
INVOICE_PAID = "invoice.paid"
INVOICE_PAYMENT_SUCCEEDED = "invoice.payment_succeeded"  # sent with invoice.paid for a payment
INVOICE_PAYMENT_PAID = stripe_events.INVOICE_PAYMENT_PAID
SUBSCRIPTION_CREATED = "customer.subscription.created"
SUBSCRIPTION_UPDATED = "customer.subscription.updated"
SUBSCRIPTION_DELETED = "customer.subscription.deleted"
PAYMENT_INTENT_SUCCEEDED = "payment_intent.succeeded"
PAYMENT_INTENT_FAILED = "payment_intent.payment_failed"
SETUP_INTENT_SUCCEEDED = "setup_intent.succeeded"

STRIPE_STATUSES = {
    "trialing": SubscriptionStatus.TRIALING,
    "active": SubscriptionStatus.ACTIVE,
    "past_due": SubscriptionStatus.PAST_DUE,
    "unpaid": SubscriptionStatus.PAST_DUE,
    "paused": SubscriptionStatus.PAST_DUE,
    "canceled": SubscriptionStatus.CANCELED,
    "incomplete_expired": SubscriptionStatus.EXPIRED,
}


# --- checkout.session.* --------------------------------------------------------------------------------------


def checkout_session(event: WebhookEvent) -> Handled:
    """A setup session saves a card (``payment_methods``); a payment or subscription session pays its order."""
    if payment_methods.handles(event):
        return payment_methods.event_apply(event)
    facts = session_facts(event.payload)
    locks.payment_intent_lock(payment_intent_id=facts.payment_intent_id)
    if facts.conflicting_refs:
        raise EventNotApplicable("client_reference_id and metadata.order_id name different orders")
    try:
        order_id = uuid.UUID(facts.order_ref)
    except ValueError:
        # No reference, or one that is not ours (another integration on the same Stripe account).
        return ignored("the session names no order of this service")
    order = locks.order_lock(order_id=order_id)
    if order is None:
        raise EventRetryable(f"order {order_id} not found")
    _check_identity(order, facts)
    orders.order_link(order, checkout_id=facts.session_id, payment_id=facts.payment_intent_id,
                      customer_id=facts.customer_id)
    if order.type == OrderType.SUBSCRIPTION:
        return _subscription_session(event, order, facts)
    if event.type == ASYNC_FAILED:
        orders.order_fail(order, "the delayed payment failed")
        order.save()
        return processed(order.id, "" if order.status == OrderStatus.FAILED else
                         f"payment failure ignored: the order is {order.status}")
    if event.type == COMPLETED and facts.payment_status == "unpaid":
        order.save()
        return processed(order.id, "awaiting the delayed payment")
    if facts.payment_status != "paid":
        raise EventNotApplicable(f"payment_status is {facts.payment_status!r}, expected 'paid'", order_id=order.id)
    _check_amount(order, facts)
    if order.status in orders.PAID_STATUSES:
        order.save()
        return processed(order.id, "already paid")
    if order.status not in orders.UNPAID_STATUSES:
        raise EventNotApplicable(f"a payment arrived for an order that is {order.status}", order_id=order.id)
    coupons.order_redemption_record(order)  # the coupon's lock before the account's (payments.locks)
    orders.order_credit(order, amount_paid_usd=Decimal(facts.amount_total) / 100)
    refunds.parked_refunds_apply_to_order(order)
    return processed(order.id)


def _check_identity(order: Order, facts: SessionFacts) -> None:
    if order.channel != Channel.STRIPE:
        raise EventNotApplicable(f"the order is paid through {order.channel}, not stripe", order_id=order.id)
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
    if facts.amount_total != order.amount_cents and _discount_rounded(order, facts.amount_total):
        # Stripe rounded the coupon's percentage the other way by a cent: the order costs what Stripe charged.
        order.discount_usd = Decimal(order.list_amount_cents - facts.amount_total) / 100
        order.amount_usd = Decimal(facts.amount_total) / 100
        order.save(update_fields=["amount_usd", "discount_usd", "updated_at"])
    if facts.amount_total != order.amount_cents:
        raise EventNotApplicable(
            f"amount_total {facts.amount_total} differs from the order's {order.amount_cents} cents",
            order_id=order.id, amount_paid_usd=paid,
        )


def _discount_rounded(order: Order, amount_total: int | None) -> bool:
    """A discounted order whose total Stripe computed one cent away from ours: its percentage discount fell on half
    a cent, which Stripe may round either way (``payments.coupons.discount_of`` rounds half up)."""
    return (
        amount_total is not None and order.coupon_id is not None and order.discount_usd > 0
        and abs(amount_total - order.amount_cents) == 1 and amount_total <= order.list_amount_cents
    )


def _subscription_session(event: WebhookEvent, order: Order, facts: SessionFacts) -> Handled:
    unsettled = subscription_session_settle(event, order, facts)
    if unsettled is not None:
        return unsettled
    _ensure_subscription(
        subscription_id=facts.subscription_id,
        account_id=order.account_id,
        plan=order.plan,
        billing_cycle=order.billing_cycle,
        customer_id=facts.customer_id,
        status=SubscriptionStatus.TRIALING if facts.payment_status == "no_payment_required"
        else SubscriptionStatus.ACTIVE,
        as_of=_event_time(event),
    )
    if order.credits == 0:
        refunds.parked_refunds_apply_to_order(order)
    return processed(order.id)


def subscription_session_settle(event: WebhookEvent, order: Order, facts: SessionFacts) -> Handled | None:
    """A subscription-mode Checkout Session of the locked ``order`` (a plan's or seats'), completed or failed: the
    order failed, or left awaiting a delayed payment (what was handled), or None: paid, linked to its subscription
    and customer, marked paid and saved (the caller records what the subscription brings)."""
    if facts.mode != "subscription":
        raise EventNotApplicable(f"session mode is {facts.mode!r}, expected 'subscription'", order_id=order.id)
    if facts.currency and facts.currency != order.currency.lower():
        raise EventNotApplicable(
            f"paid in {facts.currency}, the order is in {order.currency.lower()}", order_id=order.id
        )
    if event.type == ASYNC_FAILED:
        orders.order_fail(order, "payment failed")
        order.save()
        return processed(order.id)
    if facts.payment_status == "unpaid":
        order.save()
        return processed(order.id, "awaiting the delayed payment")
    if facts.payment_status not in ("paid", "no_payment_required"):
        raise EventNotApplicable(f"payment_status is {facts.payment_status!r}", order_id=order.id)
    if not facts.subscription_id:
        raise EventNotApplicable("the session names no subscription", order_id=order.id)
    if order.provider_subscription_id and order.provider_subscription_id != facts.subscription_id:
        raise EventNotApplicable(
            f"subscription {facts.subscription_id} is not the order's ({order.provider_subscription_id})",
            order_id=order.id,
        )
    orders.order_link(order, subscription_id=facts.subscription_id, customer_id=facts.customer_id)
    paid = Decimal(facts.amount_total) / 100 if facts.amount_total is not None else None
    orders.order_mark_paid(order, amount_paid_usd=None if order.amount_paid_usd is not None else paid)
    order.save()
    coupons.order_redemption_record(order)  # paid: its coupon counts (once), before the subscription's locks
    return None


# --- invoice.paid: the plan's credits for the period -------------------------------------------------------


def invoice_paid(event: WebhookEvent) -> Handled:
    facts = invoice_facts(event.payload)
    if not facts.subscription_id:
        return ignored("not a subscription invoice")
    if plan_periods.is_proration_invoice(event.payload, facts.billing_reason):
        return ignored("the invoice of a mid-period plan change: no subscription line for a new period (only "
                       "prorations, and one-off items), so no new period; the change's credits come with "
                       "customer.subscription.updated")
    start, end = epoch_seconds(facts.period_start), epoch_seconds(facts.period_end)
    if start is None or end is None or end <= start:
        raise EventNotApplicable("the invoice has no subscription period")
    locks.invoice_lock(invoice_id=facts.invoice_id)
    if not facts.payment_intent_id:  # left out of the invoice: named by an invoice_payment.paid stored before
        facts = replace(facts, payment_intent_id=selectors.invoice_payment_intent_stored(invoice_id=facts.invoice_id))
    locks.payment_intent_lock(payment_intent_id=facts.payment_intent_id)
    order = _order_named(facts.metadata.get("order_id"))
    if order is not None and (order.type != OrderType.SUBSCRIPTION or order.channel != Channel.STRIPE):
        raise EventNotApplicable("the invoice names an order that is not a Stripe subscription", order_id=order.id)
    if order is not None and facts.billing_reason in ("subscription_create", ""):
        coupons.order_redemption_record(order)  # its first invoice is paid; the coupon before the account's locks
    subscription = _subscription_of(facts.subscription_id)
    account_id = _account_of(subscription, order, facts.metadata)
    if account_id is None:
        return ignored("the invoice names no subscription or account of this service")
    match = _plan_of_price(account_id, facts.price_id)
    if match is None and subscription is None:
        raise EventNotApplicable(
            f"price {facts.price_id or '(none)'} is no plan's", order_id=order.id if order else None
        )
    plan, cycle = match if match else (subscription.plan, subscription.billing_cycle)
    as_of = _event_time(event)
    if subscription is None:
        subscription = _ensure_subscription(
            subscription_id=facts.subscription_id, account_id=account_id, plan=plan, billing_cycle=cycle,
            customer_id=facts.customer_id, status=SubscriptionStatus.ACTIVE, as_of=as_of, period=(start, end),
        )
    elif subscription.is_current:
        subscription = subscription_services.subscription_set_status(
            status=subscription.status, subscription_id=subscription.pk,
            current_period_start=start, current_period_end=end, as_of=as_of,
        ).subscription

    period, granted_now = plan_periods.period_grant(
        subscription, plan=plan, start=start, end=end, invoice_id=facts.invoice_id
    )
    if order is not None:
        orders.order_link(order, subscription_id=facts.subscription_id, customer_id=facts.customer_id)
        first = facts.billing_reason in ("subscription_create", "")
        if first:
            orders.order_link(order, payment_id=facts.payment_intent_id)
            orders.order_mark_paid(order, amount_paid_usd=Decimal(facts.amount_paid) / 100
                                   if facts.amount_paid is not None else None)
            if order.ledger_entry_id is None and period.grant_entry_id is not None:
                order.ledger_entry_id = period.grant_entry_id
        order.save()
        if first:
            refunds.parked_refunds_apply_to_order(order)
    if granted_now:
        plan_periods.upgrade_apply(subscription)  # a plan change seen before this invoice
    # After the order (a parked refund of the first invoice is the order's) and last (parked events are locked last).
    period = plan_periods.payment_record(period, payment_intent_id=facts.payment_intent_id,
                                         amount_paid_cents=facts.amount_paid)
    refunds.parked_refunds_apply_to_period(period)
    note = "" if granted_now else "the period's credits were already granted"
    return processed(order.id if order else None, note)


def invoice_payment_paid(event: WebhookEvent) -> Handled:
    """``invoice_payment.paid``: the payment intent that paid an invoice. Since API version 2025-03-31 an invoice
    event names its payment intents only in ``payments``, a list webhooks leave out, and a charge no longer names
    its invoice; this event is where a renewal's refunds learn their period. Recorded on the invoice's period (whose
    parked refunds are then applied); when the period is not there yet, the event stays stored and
    ``invoice.paid`` reads it (both hold the invoice's lock). The first invoice's payment is its order's too:
    recorded on the order (whose refunds are matched by it first) and the refunds parked for the order applied."""
    facts = invoice_payment_facts(event.payload)
    if facts.status != "paid" or not facts.invoice_id or not facts.payment_intent_id:
        return ignored("not a paid invoice payment by a payment intent")
    locks.invoice_lock(invoice_id=facts.invoice_id)
    locks.payment_intent_lock(payment_intent_id=facts.payment_intent_id)
    found = selectors.invoice_period(invoice_id=facts.invoice_id)
    if found is None:
        return ignored(f"no plan period of invoice {facts.invoice_id} yet: its invoice.paid reads this")
    period_pk, account_id, grant_entry_id = found
    order_id = selectors.order_of_grant(grant_entry_id=grant_entry_id)
    order = locks.order_lock(order_id=order_id) if order_id else None  # the order before the subscriptions
    account_subscriptions_lock(account_id=account_id)
    period = locks.period_lock(period_pk=period_pk)
    if period.payment_intent_id and period.payment_intent_id != facts.payment_intent_id:
        return ignored(f"the period already records payment intent {period.payment_intent_id}")
    if order is not None and not order.provider_payment_id:
        order.provider_payment_id = facts.payment_intent_id
        order.save(update_fields=["provider_payment_id", "updated_at"])
        refunds.parked_refunds_apply_to_order(order)  # before the period's (a first invoice's refund is the order's)
    period = plan_periods.payment_record(period, payment_intent_id=facts.payment_intent_id,
                                         amount_paid_cents=facts.amount_paid)
    refunds.parked_refunds_apply_to_period(period)
    return processed()


# --- customer.subscription.* --------------------------------------------------------------------------------


def subscription_changed(event: WebhookEvent) -> Handled:
    facts = subscription_facts(event.payload)
    if not facts.subscription_id:
        return ignored("the event names no subscription")
    status = SubscriptionStatus.CANCELED if event.type == SUBSCRIPTION_DELETED else STRIPE_STATUSES.get(facts.status)
    as_of = _event_time(event)
    order = _order_named(facts.metadata.get("order_id"))
    subscription = _subscription_of(facts.subscription_id)
    account_id = _account_of(subscription, order, facts.metadata)
    if account_id is None:
        return ignored("the subscription names no account of this service")
    if order is not None:
        orders.order_link(order, subscription_id=facts.subscription_id, customer_id=facts.customer_id)
        order.save()
    order_id = order.id if order else None
    if status is None:
        return processed(order_id, f"status {facts.status!r}: not started yet")
    match = _plan_of_price(account_id, facts.price_id)
    if match is None and subscription is None:
        raise EventNotApplicable(f"price {facts.price_id or '(none)'} is no plan's", order_id=order_id)
    period = (epoch_seconds(facts.current_period_start), epoch_seconds(facts.current_period_end))
    if subscription is None:
        subscription = _ensure_subscription(
            subscription_id=facts.subscription_id, account_id=account_id, plan=match[0], billing_cycle=match[1],
            customer_id=facts.customer_id, status=status, as_of=as_of, period=period,
            trial_end=epoch_seconds(facts.trial_end),
        )
    if not subscription.is_current:
        return processed(order_id, "" if status == subscription.status else
                         f"the subscription has ended ({subscription.status})")
    if match is not None and (match[0].pk != subscription.plan_id or match[1] != subscription.billing_cycle):
        subscription_services.subscription_change_plan(
            plan_id=match[0].pk, subscription_id=subscription.pk, billing_cycle=match[1], as_of=as_of
        )
    changes = {"trial_end": epoch_seconds(facts.trial_end), "cancel_at_period_end": facts.cancel_at_period_end}
    if period[0] is not None and period[1] is not None and period[1] > period[0]:
        changes |= {"current_period_start": period[0], "current_period_end": period[1]}
    if status == SubscriptionStatus.CANCELED and facts.canceled_at is not None:
        changes["canceled_at"] = epoch_seconds(facts.canceled_at)
    stale = as_of is not None and subscription.synced_at is not None and as_of < subscription.synced_at
    result = subscription_services.subscription_set_status(
        status=status, subscription_id=subscription.pk, as_of=as_of, **changes
    )
    upgraded = Decimal(0) if stale else plan_periods.upgrade_apply(result.subscription)
    return processed(order_id, f"upgrade: {format_money(upgraded)} credits for the current period" if upgraded else "")


# --- charge.refunded, payment_intent.* ----------------------------------------------------------------------


def charge_refunded(event: WebhookEvent) -> Handled:
    facts = charge_facts(event.payload)
    if not facts.charge_id or facts.amount_refunded is None:
        return ignored("not a charge with amount_refunded")
    locks.payment_intent_lock(payment_intent_id=facts.payment_intent_id)
    order_id = event.order_ref or selectors.order_of_payment(payment_intent_id=facts.payment_intent_id)
    order = locks.order_lock(order_id=order_id) if order_id else None
    if order is None:
        period = locks.charge_period_lock(payment_intent_id=facts.payment_intent_id, invoice_id=facts.invoice_id)
        if period is not None:
            return processed(None, refunds.period_refund_apply(period, facts))
        return parked("no order or plan period of this service matches its payment intent (not ours, or its order "
                      "or invoice has not arrived yet)")
    if not orders.order_is_credited(order):
        # Its order is not credited yet (events out of order): parked until it is.
        return parked("waiting for its order", order.id)
    return processed(order.id, refunds.order_refund_apply(order, facts))


def payment_intent(event: WebhookEvent) -> Handled:
    """A top-up's payment intent may save its card (``payment_methods``); an auto-recharge's settles it."""
    if payment_methods.handles(event):
        return payment_methods.event_apply(event)
    return recharge.recharge_event_apply(event.type, event.payload)


# --- helpers ------------------------------------------------------------------------------------------------


def _event_time(event: WebhookEvent) -> datetime | None:
    return epoch_seconds(event.payload.get("created"))


def _order_named(ref: object) -> Order | None:
    """The order a Stripe object's metadata names, locked; None when it names none of this service's."""
    order_id = subscription_services.as_uuid(ref) if ref else None
    if order_id is None:
        return None
    order = locks.order_lock(order_id=order_id)
    if order is None:
        raise EventRetryable(f"order {order_id} not found")
    return order


def _subscription_of(provider_subscription_id: str) -> Subscription | None:
    return subscription_selectors.subscription_by_provider(
        provider=Provider.STRIPE, provider_subscription_id=provider_subscription_id
    )


def _account_of(subscription: Subscription | None, order: Order | None, metadata: dict[str, str]) -> uuid.UUID | None:
    """The account of a subscription event: its subscription's, its order's, or its metadata's; None when that
    is no account of this service."""
    account_id = subscription.account_id if subscription else (
        order.account_id if order else (subscription_services.as_uuid(metadata.get("account_id"))
                                        if metadata.get("account_id") else None)
    )
    if account_id is None or not CreditAccount.objects.filter(pk=account_id).exists():
        return None
    return account_id


def _plan_of_price(account_id: uuid.UUID, price_id: str) -> tuple[Plan, str] | None:
    platform_id = CreditAccount.objects.filter(pk=account_id).values_list("platform_id", flat=True).first()
    if platform_id is None:
        return None
    return subscription_selectors.plan_for_stripe_price(platform_id=platform_id, price_id=price_id)


def _ensure_subscription(
    *,
    subscription_id: str,
    account_id: uuid.UUID,
    plan: Plan,
    billing_cycle: str,
    customer_id: str,
    status: str,
    as_of: datetime | None,
    period: tuple[datetime | None, datetime | None] = (None, None),
    trial_end: datetime | None = None,
) -> Subscription:
    """The Stripe subscription, started here when it is not recorded yet (whichever of its events comes
    first). A paid Stripe subscription replaces the account's current one (Stripe already charged for it)."""
    existing = _subscription_of(subscription_id)
    if existing is not None:
        if existing.account_id != account_id:
            raise EventNotApplicable(f"subscription {subscription_id} belongs to another account")
        return existing
    return subscription_services.subscription_start(
        account_id=account_id,
        plan_id=plan.pk,
        billing_cycle=billing_cycle,
        provider=Provider.STRIPE,
        status=status if status in CURRENT_STATUSES else SubscriptionStatus.ACTIVE,
        provider_customer_id=customer_id,
        provider_subscription_id=subscription_id,
        current_period_start=period[0],
        current_period_end=period[1],
        trial_end=trial_end,
        replace_current=True,
        as_of=as_of,
    ).subscription


HANDLERS = {
    COMPLETED: checkout_session,
    ASYNC_SUCCEEDED: checkout_session,
    ASYNC_FAILED: checkout_session,
    INVOICE_PAID: invoice_paid,
    INVOICE_PAYMENT_SUCCEEDED: invoice_paid,
    INVOICE_PAYMENT_PAID: invoice_payment_paid,
    SUBSCRIPTION_CREATED: subscription_changed,
    SUBSCRIPTION_UPDATED: subscription_changed,
    SUBSCRIPTION_DELETED: subscription_changed,
    stripe_events.CHARGE_REFUNDED: charge_refunded,
    PAYMENT_INTENT_SUCCEEDED: payment_intent,
    PAYMENT_INTENT_FAILED: payment_intent,
    SETUP_INTENT_SUCCEEDED: payment_methods.event_apply,
}
