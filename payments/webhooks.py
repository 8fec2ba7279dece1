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

Stripe subscriptions (orders of type subscription, and the subscriptions they start):
- ``checkout.session.completed`` (mode "subscription"): the order is paid and the subscription started
  (``subscriptions.services.subscription_start``, provider "stripe") with the session's subscription id.
- ``invoice.paid``, or ``invoice.payment_succeeded`` (sent for the same payment; some endpoints subscribe
  only to it, and localstripe sends only it; handled alike: whichever comes first grants, the other finds the
  period granted): the subscription (found by its Stripe id; started from the invoice's price and the
  subscription metadata's ``account_id`` when its other events have not arrived yet) gets the plan's
  ``credits_included`` for the invoice's period, once per (subscription, period start): a ``PlanCreditPeriod``
  row and an ``add`` row keyed ``period:<subscription>:<period start>``. The previous period is closed first:
  its unused plan credits are ``min(available, granted + upgrade_granted + carried_in - credits_reversed - spent
  since its grant)`` (plan credits are spent before purchased ones; spent = usage ``subtract`` rows minus usage
  refunds after the grant; ``upgrade_granted`` and ``credits_reversed``: below). The
  plan's rollover policy keeps none, all, or up to ``rollover_cap`` of them; the rest leave in one negative
  ``rollover`` row (keyed ``rollover:<subscription>:<period start>``). Purchased credits never expire.
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
- ``charge.refunded`` (the order: ``metadata.order_id`` or its payment intent): the refunded part, from the
  cumulative ``amount_refunded`` (only the part not processed before), is taken back as a negative ``refund``
  row of ``credits * refunded / amount`` credits. Policy when those credits are already spent: only what is
  available is removed (the balance never goes negative, reserved credits stay reserved, other purchases are
  not the customer's debt here); the rest is recorded on the order (``refund_shortfall_credits``) and the
  order is flagged ``needs_review`` for an operator. The order becomes refunded or partially refunded.
  Since API version 2025-03-31 an invoice names its payment intent only in ``payments`` (when included);
  without it, the refund of a subscription's first charge can only be matched by ``metadata.order_id``.
  A refund matching no order is matched to a renewal period by the payment intent its invoice recorded (or,
  in the older shapes, the charge's invoice): the same share of the credits that invoice granted is taken back
  with the same policy (only what is available; the shortfall recorded on the ``PlanCreditPeriod`` and named
  in the event's note). Once that period (or the first invoice's order's) has closed, only what it carried into
  the next period can still be taken back, and no longer counts in the next period's rollover; the rest had left
  with the close and is recorded, not debited (``payments.plan_periods``). A refund matching neither (another
  integration's charge; a proration invoice; an invoice whose event named no payment intent) is stored
  ``ignored`` with a note saying so. Lock order: the order, the account's subscriptions, the refunded period,
  then the credit account (``payments.locks``), as a renewal takes them.
  A refund that arrives before its order is credited (events out of order) is parked (stored ``ignored``
  with a "parked" note) and applied when the order is credited, or when the renewal invoice it refunds
  records its period, so arrival order does not change the end.

Saving a payment method for auto-recharge (``payments.payment_methods``, routed first, by the event's
metadata): ``payment_intent.succeeded`` of a top-up paid with ``setup_future_usage``, ``setup_intent.succeeded``
and ``checkout.session.completed`` (mode "setup") of the setup sessions opened by the API. A payment intent
naming a ``recharge_id`` settles an auto-recharge (``payments.recharge``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from billing_service.money import QUANTUM, format_money
from credits.locks import account_lock
from credits.models import CreditAccount, LedgerEntry, TransactionType
from credits.services import credits_expire_plan, credits_grant, credits_reverse_purchase
from payments import locks, payment_methods, plan_periods, recharge
from payments.errors import EventNotApplicable, EventRetryable
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
from payments.providers.stripe_events import (
    ChargeFacts,
    SessionFacts,
    charge_facts,
    invoice_facts,
    session_facts,
    subscription_facts,
)
from subscriptions import selectors as subscription_selectors
from subscriptions import services as subscription_services
from subscriptions.locks import account_subscriptions_lock
from subscriptions.models import (
    CURRENT_STATUSES,
    Plan,
    Provider,
    RolloverPolicy,
    Subscription,
    SubscriptionStatus,
)

COMPLETED = "checkout.session.completed"
ASYNC_SUCCEEDED = "checkout.session.async_payment_succeeded"
ASYNC_FAILED = "checkout.session.async_payment_failed"
SESSION_EVENTS = frozenset({COMPLETED, ASYNC_SUCCEEDED, ASYNC_FAILED})
INVOICE_PAID = "invoice.paid"
INVOICE_PAYMENT_SUCCEEDED = "invoice.payment_succeeded"  # sent with invoice.paid for a payment
INVOICE_EVENTS = frozenset({INVOICE_PAID, INVOICE_PAYMENT_SUCCEEDED})
INVOICE_PAYMENT_PAID = "invoice_payment.paid"  # names the payment intent an invoice event leaves out (2025-03-31+)
SUBSCRIPTION_CREATED = "customer.subscription.created"
SUBSCRIPTION_UPDATED = "customer.subscription.updated"
SUBSCRIPTION_DELETED = "customer.subscription.deleted"
SUBSCRIPTION_EVENTS = frozenset({SUBSCRIPTION_CREATED, SUBSCRIPTION_UPDATED, SUBSCRIPTION_DELETED})
CHARGE_REFUNDED = "charge.refunded"
STRIPE_HANDLED = SESSION_EVENTS | SUBSCRIPTION_EVENTS | INVOICE_EVENTS | {CHARGE_REFUNDED, INVOICE_PAYMENT_PAID}
PARKED = "parked: "  # the note of a refund waiting for its order to be credited

STRIPE_STATUSES = {
    "trialing": SubscriptionStatus.TRIALING,
    "active": SubscriptionStatus.ACTIVE,
    "past_due": SubscriptionStatus.PAST_DUE,
    "unpaid": SubscriptionStatus.PAST_DUE,
    "paused": SubscriptionStatus.PAST_DUE,
    "canceled": SubscriptionStatus.CANCELED,
    "incomplete_expired": SubscriptionStatus.EXPIRED,
}


@dataclass(frozen=True, slots=True)
class Handled:
    status: str  # processed or ignored
    order_id: uuid.UUID | None = None
    note: str = ""


def handle(event: WebhookEvent) -> Handled:
    if event.provider == WebhookProvider.CREEM:
        from payments import creem_webhooks

        return creem_webhooks.handle(event)
    if event.provider != WebhookProvider.STRIPE:
        return Handled(WebhookStatus.IGNORED, note=f"events of {event.provider} are not handled yet")
    if payment_methods.handles(event):  # a card saved for auto-recharge (payments/payment_methods.py)
        return payment_methods.event_apply(event)
    if event.type in recharge.STRIPE_EVENTS:  # auto-recharge PaymentIntents (payments/recharge.py)
        applied = recharge.recharge_event_apply(event.type, event.payload)
        return Handled(applied.status, note=applied.note)
    if event.type not in STRIPE_HANDLED:
        return Handled(WebhookStatus.IGNORED, note="event type not handled")
    if event.type in INVOICE_EVENTS:
        return _invoice_paid(event)
    if event.type == INVOICE_PAYMENT_PAID:
        status, note = plan_periods.invoice_payment_apply(event.payload)
        return Handled(status, note=note)
    if event.type in SUBSCRIPTION_EVENTS:
        return _subscription_event(event)
    if event.type == CHARGE_REFUNDED:
        return _charge_refunded(event)
    return _stripe_checkout_session(event)


def _stripe_checkout_session(event: WebhookEvent) -> Handled:
    facts = session_facts(event.payload)
    locks.payment_intent_lock(payment_intent_id=facts.payment_intent_id)
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
    if order.type == OrderType.SUBSCRIPTION:
        return _subscription_session(event, order, facts)

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
    if order.status in (OrderStatus.PAID, OrderStatus.REFUNDED, OrderStatus.PARTIALLY_REFUNDED):
        order.save()
        return Handled(WebhookStatus.PROCESSED, order.id, "already paid")
    if order.status not in (OrderStatus.PENDING, OrderStatus.FAILED):
        raise EventNotApplicable(f"a payment arrived for an order that is {order.status}", order_id=order.id)
    _credit(order, facts)
    return Handled(WebhookStatus.PROCESSED, order.id)


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
    _apply_parked_refunds(order)


# --- helpers shared by the subscription events ----------------------------------------------------------------


def _as_uuid(value: object) -> uuid.UUID | None:
    return subscription_services.as_uuid(value) if value else None


def _when(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=UTC)


def _event_time(event: WebhookEvent) -> datetime | None:
    created = event.payload.get("created")
    return _when(created) if isinstance(created, int) and not isinstance(created, bool) else None


def _order_named(ref: object) -> Order | None:
    """The order a Stripe object's metadata names, locked; None when it names none of this service's."""
    order_id = _as_uuid(ref)
    if order_id is None:
        return None
    order = locks.order_lock(order_id=order_id)
    if order is None:
        raise EventRetryable(f"order {order_id} not found")
    return order


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
    existing = subscription_selectors.subscription_by_provider(
        provider=Provider.STRIPE, provider_subscription_id=subscription_id
    )
    if existing is not None:
        if existing.account_id != account_id:
            raise EventNotApplicable(f"subscription {subscription_id} belongs to another account")
        return existing
    start_status = status if status in CURRENT_STATUSES else SubscriptionStatus.ACTIVE
    result = subscription_services.subscription_start(
        account_id=account_id,
        plan_id=plan.pk,
        billing_cycle=billing_cycle,
        provider=Provider.STRIPE,
        status=start_status,
        provider_customer_id=customer_id,
        provider_subscription_id=subscription_id,
        current_period_start=period[0],
        current_period_end=period[1],
        trial_end=trial_end,
        replace_current=True,
        as_of=as_of,
    )
    return result.subscription


def _link_order(order: Order, *, subscription_id: str, customer_id: str) -> None:
    order.provider_subscription_id = order.provider_subscription_id or subscription_id
    order.provider_customer_id = order.provider_customer_id or customer_id


def _mark_paid(order: Order, *, amount_paid_usd: Decimal | None) -> None:
    if order.status in (OrderStatus.PENDING, OrderStatus.FAILED):
        order.status = OrderStatus.PAID
        order.paid_at = timezone.now()
        order.last_error = ""
    if amount_paid_usd is not None:
        order.amount_paid_usd = amount_paid_usd


# --- checkout.session.completed of a subscription order -----------------------------------------------------


def _subscription_session(event: WebhookEvent, order: Order, facts: SessionFacts) -> Handled:
    if facts.mode != "subscription":
        raise EventNotApplicable(f"session mode is {facts.mode!r}, expected 'subscription'", order_id=order.id)
    if facts.currency and facts.currency != order.currency.lower():
        raise EventNotApplicable(
            f"paid in {facts.currency}, the order is in {order.currency.lower()}", order_id=order.id
        )
    if event.type == ASYNC_FAILED:
        if order.status == OrderStatus.PENDING:
            order.status, order.failed_at, order.last_error = OrderStatus.FAILED, timezone.now(), "payment failed"
        order.save()
        return Handled(WebhookStatus.PROCESSED, order.id)
    if facts.payment_status == "unpaid":
        order.save()
        return Handled(WebhookStatus.PROCESSED, order.id, "awaiting the delayed payment")
    if facts.payment_status not in ("paid", "no_payment_required"):
        raise EventNotApplicable(f"payment_status is {facts.payment_status!r}", order_id=order.id)
    if not facts.subscription_id:
        raise EventNotApplicable("the session names no subscription", order_id=order.id)
    if order.provider_subscription_id and order.provider_subscription_id != facts.subscription_id:
        raise EventNotApplicable(
            f"subscription {facts.subscription_id} is not the order's ({order.provider_subscription_id})",
            order_id=order.id,
        )
    _link_order(order, subscription_id=facts.subscription_id, customer_id=facts.customer_id)
    paid = Decimal(facts.amount_total) / 100 if facts.amount_total is not None else None
    _mark_paid(order, amount_paid_usd=None if order.amount_paid_usd is not None else paid)
    order.save()
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
    if order.type == OrderType.SUBSCRIPTION and order.credits == 0:
        _apply_parked_refunds(order)
    return Handled(WebhookStatus.PROCESSED, order.id)


# --- invoice.paid: the plan's credits for the period -------------------------------------------------------


def _invoice_paid(event: WebhookEvent) -> Handled:
    facts = invoice_facts(event.payload)
    if not facts.subscription_id:
        return Handled(WebhookStatus.IGNORED, note="not a subscription invoice")
    if plan_periods.is_proration_invoice(event.payload, facts.billing_reason):
        return Handled(WebhookStatus.IGNORED, note="the invoice of a mid-period plan change: no subscription line "
                       "for a new period (only prorations, and one-off items), so no new period; the change's "
                       "credits come with customer.subscription.updated")
    start, end = _when(facts.period_start), _when(facts.period_end)
    if start is None or end is None or end <= start:
        raise EventNotApplicable("the invoice has no subscription period")
    as_of = _event_time(event)
    locks.invoice_lock(invoice_id=facts.invoice_id)
    if not facts.payment_intent_id:  # left out of the invoice: named by an invoice_payment.paid stored before
        facts = replace(facts, payment_intent_id=plan_periods.stored_invoice_payment_intent(facts.invoice_id))
    locks.payment_intent_lock(payment_intent_id=facts.payment_intent_id)
    order = _order_named(facts.metadata.get("order_id"))
    if order is not None and (order.type != OrderType.SUBSCRIPTION or order.channel != Channel.STRIPE):
        raise EventNotApplicable("the invoice names an order that is not a Stripe subscription", order_id=order.id)
    subscription = subscription_selectors.subscription_by_provider(
        provider=Provider.STRIPE, provider_subscription_id=facts.subscription_id
    )
    account_id = subscription.account_id if subscription else (
        order.account_id if order else _as_uuid(facts.metadata.get("account_id"))
    )
    if account_id is None or not CreditAccount.objects.filter(pk=account_id).exists():
        return Handled(WebhookStatus.IGNORED, note="the invoice names no subscription or account of this service")
    match = _plan_of_price(account_id, facts.price_id)
    if match is None and subscription is None:
        raise EventNotApplicable(
            f"price {facts.price_id or '(none)'} is no plan's", order_id=order.id if order else None
        )
    plan, cycle = match if match else (subscription.plan, subscription.billing_cycle)
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

    period, granted_now = _period_grant(subscription, plan=plan, start=start, end=end, invoice_id=facts.invoice_id)
    if order is not None:
        _link_order(order, subscription_id=facts.subscription_id, customer_id=facts.customer_id)
        first = facts.billing_reason in ("subscription_create", "")
        if first:
            order.provider_payment_id = order.provider_payment_id or facts.payment_intent_id
            _mark_paid(order, amount_paid_usd=Decimal(facts.amount_paid) / 100 if facts.amount_paid is not None
                       else None)
            if order.ledger_entry_id is None and period.grant_entry_id is not None:
                order.ledger_entry_id = period.grant_entry_id
        order.save()
        if first:
            _apply_parked_refunds(order)
    if granted_now:
        plan_periods.upgrade_apply(subscription)  # a plan change seen before this invoice
    # After the order (a parked refund of the first invoice is the order's) and last (parked events are locked last).
    plan_periods.payment_record(period, payment_intent_id=facts.payment_intent_id, amount_paid_cents=facts.amount_paid)
    note = "" if granted_now else "the period's credits were already granted"
    return Handled(WebhookStatus.PROCESSED, order.id if order else None, note)


def _period_grant(
    subscription: Subscription,
    *,
    plan: Plan,
    start: datetime,
    end: datetime,
    invoice_id: str,
    grant: dict[str, Any] | None = None,
) -> tuple[PlanCreditPeriod, bool]:
    """Closes the previous period (rollover) and grants this one's plan credits; once per period. ``grant``
    replaces the ledger row's description, reference, metadata and key (another provider's grants keep their own,
    so that a redelivered event replays the same row)."""
    account_subscriptions_lock(account_id=subscription.account_id)
    existing = PlanCreditPeriod.objects.filter(subscription=subscription, period_start=start).first()
    if existing is not None:
        return existing, False
    previous = (
        PlanCreditPeriod.objects.select_for_update()
        .filter(subscription=subscription, period_start__lt=start, closed_at__isnull=True)
        .select_related("plan")
        .order_by("-period_start")
        .first()
    )
    carried = _period_close(previous) if previous is not None else Decimal(0)
    entry = None
    if plan.credits_included > 0:
        entry = credits_grant(
            account_id=subscription.account_id,
            amount=plan.credits_included,
            **(grant or {
                "description": f"{plan.name} plan credits, {start:%Y-%m-%d} to {end:%Y-%m-%d}",
                "reference": f"subscription:{subscription.pk}",
                "metadata": {"subscription_id": str(subscription.pk), "plan": plan.slug, "invoice_id": invoice_id,
                             "period_start": start.isoformat(), "period_end": end.isoformat()},
                "idempotency_key": f"period:{subscription.pk}:{int(start.timestamp())}",
            }),
        ).entry
    sequence = entry.sequence if entry is not None else CreditAccount.objects.filter(
        pk=subscription.account_id).values_list("last_sequence", flat=True).get()
    period = PlanCreditPeriod.objects.create(
        subscription=subscription, plan=plan, period_start=start, period_end=end, invoice_id=invoice_id,
        granted=plan.credits_included, carried_in=carried, grant_entry=entry, grant_sequence=sequence,
    )
    return period, True


def plan_credits_spent(*, account_id: uuid.UUID, after_sequence: int) -> Decimal:
    """Credits spent on usage after a ledger sequence: ``subtract`` rows, less the refunds of usage."""
    rows = LedgerEntry.objects.filter(account_id=account_id, sequence__gt=after_sequence)
    debits = rows.filter(transaction_type=TransactionType.SUBTRACT).aggregate(t=Sum("balance_delta"))["t"]
    returned = rows.filter(transaction_type=TransactionType.REFUND, refund_of__isnull=False).aggregate(
        t=Sum("balance_delta"))["t"]
    return max(-(debits or Decimal(0)) - (returned or Decimal(0)), Decimal(0))


def _period_close(period: PlanCreditPeriod) -> Decimal:
    """Applies the period's plan's rollover policy to its unused plan credits; returns what carries over."""
    account_id = period.subscription.account_id
    account = account_lock(account_id=account_id)
    spent = plan_credits_spent(account_id=account_id, after_sequence=period.grant_sequence)
    plan_credits = period.granted + period.upgrade_granted + period.carried_in - period.credits_reversed
    unused = max(min(account.available, plan_credits - spent), Decimal(0))
    policy = period.plan.rollover_policy
    keep = unused if policy == RolloverPolicy.ALL else (
        min(unused, period.plan.rollover_cap) if policy == RolloverPolicy.CAPPED else Decimal(0)
    )
    expire = unused - keep
    removed = Decimal(0)
    if expire > 0:
        result = credits_expire_plan(
            account_id=account_id,
            amount=expire,
            description=f"Unused plan credits of {period.period_start:%Y-%m-%d} to {period.period_end:%Y-%m-%d}"
            f" ({policy} rollover)",
            reference=f"subscription:{period.subscription_id}",
            metadata={"subscription_id": str(period.subscription_id), "period_start": period.period_start.isoformat(),
                      "unused": format_money(unused), "kept": format_money(keep)},
            idempotency_key=f"rollover:{period.subscription_id}:{int(period.period_start.timestamp())}",
        )
        period.rollover_entry, removed = result.entry, result.removed
    period.unused, period.carried_out, period.expired = unused, keep, removed
    period.closed_at = timezone.now()
    period.save(update_fields=["unused", "carried_out", "expired", "rollover_entry", "closed_at"])
    return keep


# --- customer.subscription.* --------------------------------------------------------------------------------


def _subscription_event(event: WebhookEvent) -> Handled:
    facts = subscription_facts(event.payload)
    if not facts.subscription_id:
        return Handled(WebhookStatus.IGNORED, note="the event names no subscription")
    status = SubscriptionStatus.CANCELED if event.type == SUBSCRIPTION_DELETED else STRIPE_STATUSES.get(facts.status)
    as_of = _event_time(event)
    order = _order_named(facts.metadata.get("order_id"))
    subscription = subscription_selectors.subscription_by_provider(
        provider=Provider.STRIPE, provider_subscription_id=facts.subscription_id
    )
    account_id = subscription.account_id if subscription else (
        order.account_id if order else _as_uuid(facts.metadata.get("account_id"))
    )
    if account_id is None or not CreditAccount.objects.filter(pk=account_id).exists():
        return Handled(WebhookStatus.IGNORED, note="the subscription names no account of this service")
    if order is not None:
        _link_order(order, subscription_id=facts.subscription_id, customer_id=facts.customer_id)
        order.save()
    order_id = order.id if order else None
    if status is None:
        return Handled(WebhookStatus.PROCESSED, order_id, f"status {facts.status!r}: not started yet")
    match = _plan_of_price(account_id, facts.price_id)
    if match is None and subscription is None:
        raise EventNotApplicable(f"price {facts.price_id or '(none)'} is no plan's", order_id=order_id)
    period = (_when(facts.current_period_start), _when(facts.current_period_end))
    if subscription is None:
        subscription = _ensure_subscription(
            subscription_id=facts.subscription_id, account_id=account_id, plan=match[0], billing_cycle=match[1],
            customer_id=facts.customer_id, status=status, as_of=as_of, period=period,
            trial_end=_when(facts.trial_end),
        )
    if not subscription.is_current:
        note = "" if status == subscription.status else f"the subscription has ended ({subscription.status})"
        return Handled(WebhookStatus.PROCESSED, order_id, note)
    if match is not None and (match[0].pk != subscription.plan_id or match[1] != subscription.billing_cycle):
        subscription_services.subscription_change_plan(
            plan_id=match[0].pk, subscription_id=subscription.pk, billing_cycle=match[1], as_of=as_of
        )
    changes = {"trial_end": _when(facts.trial_end), "cancel_at_period_end": facts.cancel_at_period_end}
    if period[0] is not None and period[1] is not None and period[1] > period[0]:
        changes |= {"current_period_start": period[0], "current_period_end": period[1]}
    if status == SubscriptionStatus.CANCELED and facts.canceled_at is not None:
        changes["canceled_at"] = _when(facts.canceled_at)
    stale = as_of is not None and subscription.synced_at is not None and as_of < subscription.synced_at
    result = subscription_services.subscription_set_status(
        status=status, subscription_id=subscription.pk, as_of=as_of, **changes
    )
    upgraded = Decimal(0) if stale else plan_periods.upgrade_apply(result.subscription)
    note = f"upgrade: {format_money(upgraded)} credits for the current period" if upgraded else ""
    return Handled(WebhookStatus.PROCESSED, order_id, note)


# --- charge.refunded ---------------------------------------------------------------------------------------


def _charge_refunded(event: WebhookEvent) -> Handled:
    facts = charge_facts(event.payload)
    if not facts.charge_id or facts.amount_refunded is None:
        return Handled(WebhookStatus.IGNORED, note="not a charge with amount_refunded")
    locks.payment_intent_lock(payment_intent_id=facts.payment_intent_id)
    order_id = _as_uuid(facts.metadata.get("order_id"))
    if order_id is None and facts.payment_intent_id:
        order_id = (
            Order.objects.filter(channel=Channel.STRIPE, provider_payment_id=facts.payment_intent_id)
            .values_list("pk", flat=True)
            .first()
        )
    order = locks.order_lock(order_id=order_id) if order_id else None
    if order is None:
        period = plan_periods.period_for_charge(facts)
        if period is not None:
            return Handled(WebhookStatus.PROCESSED, None, plan_periods.refund_apply(period, facts))
        return Handled(WebhookStatus.IGNORED, None, f"{PARKED}no order or plan period of this service matches "
                       "its payment intent (not ours, or its order or invoice has not arrived yet)")
    if not _is_credited(order):
        # Not ours, or its order is not credited yet (events out of order): parked until it is.
        return Handled(WebhookStatus.IGNORED, order.id if order else None, f"{PARKED}waiting for its order")
    note = _refund_apply(order, facts)
    return Handled(WebhookStatus.PROCESSED, order.id, note)


def _is_credited(order: Order) -> bool:
    if order.status in (OrderStatus.PENDING, OrderStatus.FAILED, OrderStatus.CANCELED):
        return False
    return order.ledger_entry_id is not None or order.credits == 0


def _refund_apply(order: Order, facts: ChargeFacts) -> str:
    """Takes back the credits of the refunded part not processed before (see the module docstring)."""
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
    # A subscription order's first period is locked before the credit account (payments.locks); once that period
    # has closed, only what it carried out can still be taken back (plan_periods.reversal_plan), and what had
    # left with its close is recorded on the period, never owed again.
    period = plan_periods.order_period_lock(order)
    # The first period records every reversal of its grant, through this order or matched to the period itself
    # by its payment intent (plan_periods.refund_apply): what either took is not owed again.
    owed = target - (
        period.credits_reversed + period.refund_shortfall_credits + period.refund_expired_credits
        if period is not None else order.credits_reversed + order.refund_shortfall_credits
    )
    note = ""
    if owed > 0:
        reversal = plan_periods.reversal_plan(period, owed)
        result = credits_reverse_purchase(
            account_id=order.account_id,
            amount=reversal.take,
            description=f"Refund of order {order.id} ({format_money(refunded)} USD refunded)",
            reference=f"order:{order.id}",
            metadata={"order_id": str(order.id), "charge_id": facts.charge_id,
                      "amount_refunded_usd": format_money(refunded)},
            idempotency_key=f"refund:{facts.charge_id}:{facts.amount_refunded}",
        )
        order.credits_reversed += result.removed
        order.refund_shortfall_credits += result.shortfall
        plan_periods.order_refund_recorded(order, period, reversal, removed=result.removed, shortfall=result.shortfall)
        if reversal.expired > 0:
            note = (f"refund: {format_money(reversal.expired)} of {format_money(owed)} credits had left with the "
                    f"first period's close (expired or spent), not taken back")
        if result.shortfall > 0:
            order.needs_review = True
            note = order.last_error = (note + "; " if note else "") + (
                f"refund: {format_money(result.shortfall)} of {format_money(owed)} credits were already spent; "
                f"{format_money(result.removed)} removed"
            )
    order.amount_refunded_usd = refunded
    order.status = OrderStatus.REFUNDED if refunded == order.amount_usd else OrderStatus.PARTIALLY_REFUNDED
    order.refunded_at = order.refunded_at or timezone.now()
    order.save()
    return note


def _apply_parked_refunds(order: Order) -> None:
    """Applies the refunds that arrived before the (now credited) order: the largest cumulative one."""
    if not _is_credited(order):
        return
    parked = WebhookEvent.objects.select_for_update().filter(
        provider=WebhookProvider.STRIPE, type=CHARGE_REFUNDED, status=WebhookStatus.IGNORED,
        last_error__startswith=PARKED,
    )
    refs = [e for e in parked.filter(order=order)]
    if order.provider_payment_id:
        refs += list(parked.filter(payload__data__object__payment_intent=order.provider_payment_id))
    refs += list(parked.filter(payload__data__object__metadata__order_id=str(order.id)))
    events = sorted({e.pk: e for e in refs}.values(), key=lambda e: charge_facts(e.payload).amount_refunded or 0)
    for parked_event in events:
        fact = charge_facts(parked_event.payload)
        parked_event.order_id = order.id
        try:
            with transaction.atomic():
                _refund_apply(order, fact)
        except EventNotApplicable as exc:
            order.refresh_from_db()
            parked_event.status, parked_event.last_error = WebhookStatus.FAILED, str(exc)
            order.needs_review, order.last_error = True, str(exc)
            order.save(update_fields=["needs_review", "last_error", "updated_at"])
        else:
            parked_event.status, parked_event.last_error = WebhookStatus.PROCESSED, "applied once its order was credited"
        parked_event.processed_at = timezone.now()
        parked_event.save(update_fields=["status", "order", "last_error", "processed_at", "updated_at"])
