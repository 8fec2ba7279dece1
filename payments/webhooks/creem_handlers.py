"""What each Creem event does (the routing table ``payments.webhooks.routes`` maps each type here). Called by
``payments.webhooks.events`` inside its transaction, with the event row locked: storing, one atomic
transaction, duplicates, unhandled types and failures are handled there exactly as for Stripe. These
handlers lock the order, then the subscription (``subscriptions.services``), then the credit account
(``credits``), and never call Creem.

The events, as Creem documents them (docs.creem.io/learn/webhooks/event-types, source
github.com/armitage-labs/creem ``learn/webhooks/event-types.mdx``): ``{"id": "evt_...", "eventType": ...,
"created_at": <ms>, "object": {...}}``.
- ``checkout.completed``: ``object`` is the checkout: ``id`` (``ch_...``), ``request_id`` (our order id),
  ``metadata`` (ours: ``order_id``), ``order`` (``id``, ``amount`` in cents, ``currency``, ``status:
  "paid"``), ``product`` (``id``, ``billing_period`` such as ``every-month`` / ``every-year``), ``customer``,
  ``subscription`` (``id`` ``sub_...``; the period dates may be absent).
- ``subscription.active`` / ``.paid`` / ``.canceled`` / ``.expired`` / ``.update``: ``object`` is the
  subscription: ``id``, ``product``, ``customer``, ``status``, ``current_period_start_date``,
  ``current_period_end_date``, ``canceled_at``, and the checkout's ``metadata`` (so ``metadata.order_id``
  names our order on every subscription event). ``subscription.paid`` is "a subscription transaction was
  paid": the first period and every renewal. ``subscription.expired`` is *not* terminal in Creem ("payment
  retries can happen at this stage, and the subscription status will be terminal only when status is changed
  to canceled"), so it is recorded here as ``past_due``.
- ``refund.created``: ``object`` is the refund: ``id`` (``ref_...``), ``refund_amount`` / ``refund_currency``,
  ``transaction`` (``id``, ``amount_paid``, ``order``, ``subscription``, ``period_start`` in ms),
  ``subscription``, ``checkout`` (``request_id``, ``metadata``), ``order``. The refunded transaction's period
  names the grant it paid for (``period_start`` equals that period's ``current_period_start_date``); the share
  of it refunded (``refund_amount / amount_paid``, at most all of it) is taken back with
  ``plan_periods.period_credits_reverse``: one ``refund`` row (negative), keyed ``creem:refund:<refund id>``, never more
  than is available; what was already spent is the order's ``refund_shortfall_credits`` and flags it for
  review. Once the refunded period has closed, only what it carried out can still be taken back (the rest had
  left with its close, recorded on the period: ``payments.plan_periods``). The period row is locked (after the
  account's subscriptions lock) before the credit account, as renewals lock them. A refund that arrives before
  the grant it reverses is a 5xx (retried), so arrival order does not matter here either. One refund delivered
  again under another event id changes nothing: a processed ``refund.created`` of the same refund id is looked
  for (the ledger key alone would not do: a reversal that takes nothing writes no row).

Credits: each paid period of a subscription grants the plan's ``credits_included`` once, under the ledger key
``creem:<subscription id>:<period start>``, through ``payments.plan_periods.period_grant`` (as Stripe's renewals): a
``PlanCreditPeriod`` per period, and the previous period closed first with its plan's rollover policy (unused
plan credits kept: none, all, or up to ``rollover_cap``; the rest leave in one ``rollover`` row), exactly as for
Stripe renewals. A period whose event carries no end date ends one billing cycle after its start (or at the
subscription's known period end). A refund's reversal is recorded on its period, so the rollover never counts
credits already taken back. ``checkout.completed`` (when it carries the period) and the
``subscription.paid`` of the first period therefore write one row between them, whichever arrives first, and a
renewal's ``subscription.paid`` writes one more. A ``checkout.completed`` without period dates marks the order
paid and starts the subscription; its credits come with the ``subscription.paid`` that Creem sends for the
same payment. Every argument of the grant derives from the plan, the subscription and the period, never from
which event carried it, so a replay is always an exact one. Arrival order does not matter: whichever event
first names an unknown subscription starts it (from the order its metadata names), status changes carry the
event's time as ``as_of`` (an older event arriving late changes nothing), and an ended subscription stays
ended.
"""

from __future__ import annotations

import calendar
import uuid
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any


from credits.models import LedgerEntry, TransactionType
from credits.selectors import ledger_entry_by_key
from payments import coupons, locks, orders, plan_periods, selectors
from payments.errors import EventNotApplicable, EventRetryable
from payments.handled import Handled, ignored, processed
from payments.models import Channel, Order, OrderType, WebhookEvent
from payments.providers import creem_events
from payments.providers.creem_events import SubscriptionFacts, as_dict, moment, subscription_facts
from payments.providers.lookups import object_id
from subscriptions import selectors as subscription_selectors
from subscriptions.errors import SubscriptionOwnerMismatch
from subscriptions.models import BillingCycle, Plan, Provider, Subscription, SubscriptionStatus
from subscriptions.services import subscription_set_status, subscription_start

CHECKOUT_COMPLETED = "checkout.completed"
SUBSCRIPTION_ACTIVE = "subscription.active"
SUBSCRIPTION_PAID = "subscription.paid"
SUBSCRIPTION_CANCELED = "subscription.canceled"
SUBSCRIPTION_EXPIRED = "subscription.expired"
SUBSCRIPTION_UPDATE = "subscription.update"
REFUND_CREATED = creem_events.REFUND_CREATED
CREDITS_QUANTUM = Decimal("0.000001")  # the ledger's 6 decimal places

# Creem subscription status -> ours (``subscription.update`` carries the status; unknown ones keep ours).
_STATUS_OF = {
    "active": SubscriptionStatus.ACTIVE,
    "trialing": SubscriptionStatus.TRIALING,
    "past_due": SubscriptionStatus.PAST_DUE,
    "unpaid": SubscriptionStatus.PAST_DUE,
    "expired": SubscriptionStatus.PAST_DUE,  # not terminal in Creem (see the module docstring)
    "canceled": SubscriptionStatus.CANCELED,
}
_STATUS_OF_EVENT = {
    SUBSCRIPTION_ACTIVE: SubscriptionStatus.ACTIVE,
    SUBSCRIPTION_PAID: SubscriptionStatus.ACTIVE,
    SUBSCRIPTION_CANCELED: SubscriptionStatus.CANCELED,
    SUBSCRIPTION_EXPIRED: SubscriptionStatus.PAST_DUE,
}


def _parts(event: WebhookEvent) -> tuple[dict[str, Any], datetime | None]:
    payload = as_dict(event.payload)
    return as_dict(payload.get("object")), moment(payload.get("created_at"))


def _order_for(ref: str) -> Order | None:
    """The order ``ref`` names, locked; None for a reference that is not ours. Raises ``EventRetryable`` for
    one of ours that is not here (yet)."""
    try:
        order_id = uuid.UUID(ref)
    except ValueError:
        return None
    order = locks.order_lock(order_id=order_id)
    if order is None:
        raise EventRetryable(f"order {order_id} not found")
    if order.channel != Channel.CREEM:
        raise EventNotApplicable(f"the order is paid through {order.channel}, not creem", order_id=order.id)
    if order.type != OrderType.SUBSCRIPTION:
        raise EventNotApplicable(f"{order.type} orders are not sold through creem", order_id=order.id)
    return order


def checkout_completed(event: WebhookEvent) -> Handled:
    obj, as_of = _parts(event)
    metadata = as_dict(obj.get("metadata"))
    request_ref = obj.get("request_id") if isinstance(obj.get("request_id"), str) else ""
    meta_ref = metadata.get("order_id") if isinstance(metadata.get("order_id"), str) else ""
    if request_ref and meta_ref and request_ref != meta_ref:
        raise EventNotApplicable("request_id and metadata.order_id name different orders")
    order = _order_for(request_ref or meta_ref)
    if order is None:
        return ignored("the checkout names no order of this service")
    checkout_id = object_id(obj.get("id"))
    if order.provider_checkout_id and checkout_id and order.provider_checkout_id != checkout_id:
        raise EventNotApplicable(
            f"checkout {checkout_id} is not the order's ({order.provider_checkout_id})", order_id=order.id
        )
    creem_order = as_dict(obj.get("order"))
    if creem_order.get("status") not in (None, "paid"):
        raise EventNotApplicable(
            f"the Creem order is {creem_order.get('status')!r}, not paid", order_id=order.id
        )
    subscription_obj = obj.get("subscription")
    facts = subscription_facts(
        as_dict(subscription_obj) or {"id": object_id(subscription_obj)},
        product=obj.get("product") or creem_order.get("product"),
        metadata={"order_id": str(order.id)},
    )
    if not facts.subscription_id:
        raise EventNotApplicable("the completed checkout has no subscription", order_id=order.id)
    order.provider_checkout_id = order.provider_checkout_id or checkout_id
    order.provider_payment_id = order.provider_payment_id or object_id(creem_order.get("id"))
    order.provider_customer_id = order.provider_customer_id or object_id(obj.get("customer"))
    order.provider_subscription_id = order.provider_subscription_id or facts.subscription_id
    amount = creem_order.get("amount")
    if creem_order.get("currency") == "USD" and isinstance(amount, int) and not isinstance(amount, bool):
        order.amount_paid_usd = Decimal(amount) / 100

    plan = _plan_of(order.platform_id, facts)
    coupons.order_redemption_record(order)  # paid: its coupon counts (once), before the subscription's locks
    subscription = _ensure_subscription(order, plan, facts, as_of)
    _mark_paid(order)
    if facts.period_start is None:
        return processed(order.id, "credits come with subscription.paid (no period)")
    _grant_period(subscription, plan, facts, order)
    return processed(order.id)


def subscription_changed(event: WebhookEvent) -> Handled:
    obj, as_of = _parts(event)
    event_type = event.type
    facts = subscription_facts(obj)
    if not facts.subscription_id:
        raise EventNotApplicable("the event names no subscription")
    order = _order_for(facts.order_ref) if facts.order_ref else None
    if order is not None and event_type == SUBSCRIPTION_PAID:
        coupons.order_redemption_record(order)  # paid: its coupon counts (once per order), before other locks
    subscription = subscription_selectors.subscription_by_provider(
        provider=Provider.CREEM, provider_subscription_id=facts.subscription_id
    )
    if order is None and subscription is None:
        return ignored("names no order or subscription of this service")
    platform_id = order.platform_id if order is not None else subscription.account.platform_id
    plan = subscription_selectors.plan_for_creem_product(platform_id=platform_id, product_id=facts.product_id)
    if plan is None and subscription is None:
        raise EventNotApplicable(f"no plan of the platform sells Creem product {facts.product_id!r}",
                                 order_id=order.id if order else None)
    if subscription is None:
        subscription = _ensure_subscription(order, plan, facts, as_of)
    plan = plan or subscription.plan

    status = _STATUS_OF_EVENT.get(event_type) or _STATUS_OF.get(facts.status) or subscription.status
    _sync(subscription, status, facts, as_of)
    if event_type != SUBSCRIPTION_PAID:
        return processed(order.id if order else None)
    if order is not None:
        order.provider_subscription_id = order.provider_subscription_id or facts.subscription_id
        _mark_paid(order)
    if facts.period_start is None:
        raise EventNotApplicable("subscription.paid without current_period_start_date",
                                 order_id=order.id if order else None)
    _grant_period(subscription, plan, facts, order)
    return processed(order.id if order else None)


# --- effects ------------------------------------------------------------------------------------------------


def _plan_of(platform_id: int, facts: SubscriptionFacts) -> Plan:
    plan = subscription_selectors.plan_for_creem_product(platform_id=platform_id, product_id=facts.product_id)
    if plan is None:
        raise EventNotApplicable(f"no plan of the platform sells Creem product {facts.product_id!r}")
    return plan


def _ensure_subscription(
    order: Order, plan: Plan, facts: SubscriptionFacts, as_of: datetime | None
) -> Subscription:
    """The local subscription of ``facts``; started on ``order``'s account (replacing whatever plan the
    account was on: the customer has paid for this one) when it is not known yet."""
    try:
        result = subscription_start(
            account_id=order.account_id,
            plan_id=plan.pk,
            billing_cycle=facts.billing_cycle or BillingCycle.MONTHLY,
            provider=Provider.CREEM,
            provider_customer_id=facts.customer_id,
            provider_subscription_id=facts.subscription_id,
            current_period_start=facts.period_start,
            current_period_end=facts.period_end,
            replace_current=True,
            as_of=as_of,
        )
    except SubscriptionOwnerMismatch as exc:
        raise EventNotApplicable(
            f"subscription {facts.subscription_id} belongs to another account", order_id=order.id
        ) from exc
    return result.subscription


def _sync(subscription: Subscription, status: str, facts: SubscriptionFacts, as_of: datetime | None) -> None:
    """Status and period as of the event; an ended subscription stays ended (a late event changes nothing)."""
    if not subscription.is_current:
        return
    changes: dict[str, Any] = {}
    if facts.period_start is not None:
        changes["current_period_start"] = facts.period_start
        end = facts.period_end
        current_end = subscription.current_period_end
        if end is not None or (current_end is not None and current_end <= facts.period_start):
            changes["current_period_end"] = end
    if status == SubscriptionStatus.CANCELED and facts.canceled_at is not None:
        changes["canceled_at"] = facts.canceled_at
    subscription_set_status(status=status, subscription_id=subscription.pk, as_of=as_of, **changes)


def _mark_paid(order: Order) -> None:
    orders.order_mark_paid(order)
    order.save()


def _grant_key(subscription_id: str, period_start: datetime) -> str:
    return f"creem:{subscription_id}:{period_start.astimezone(UTC).isoformat(timespec='seconds')}"


def _grant_period(
    subscription: Subscription, plan: Plan, facts: SubscriptionFacts, order: Order | None
) -> None:
    """The plan's credits for the period starting at ``facts.period_start``, once (``plan_periods.period_grant``:
    the previous period's rollover first). The ledger row keeps Creem's key and wording, so a replay is exact.
    The first grant of the subscription is also the order's ``ledger_entry``."""
    start = facts.period_start.astimezone(UTC).isoformat(timespec="seconds")
    price_cents = plan.price_for(subscription.billing_cycle)
    period, _ = plan_periods.period_grant(
        subscription, plan=plan, start=facts.period_start, end=_period_end(subscription, facts), invoice_id="",
        grant={
            "payment_amount_usd": Decimal(price_cents) / 100 if price_cents > 0 else None,
            "description": f"{plan.name} plan credits for the period from {start[:10]} (creem)",
            "reference": f"creem:{facts.subscription_id}",
            "metadata": {"channel": Channel.CREEM, "subscription_id": facts.subscription_id, "period_start": start,
                         "plan_id": str(plan.pk)},
            "idempotency_key": _grant_key(facts.subscription_id, facts.period_start),
        },
    )
    entry_id = period.grant_entry_id
    if order is not None and order.ledger_entry_id is None and entry_id is not None:
        earlier = LedgerEntry.objects.filter(
            account_id=subscription.account_id, reference=f"creem:{facts.subscription_id}",
            transaction_type=TransactionType.ADD,
        ).exclude(pk=entry_id)
        if not earlier.exists():
            order.ledger_entry_id = entry_id
            order.save(update_fields=["ledger_entry", "updated_at"])


def _period_end(subscription: Subscription, facts: SubscriptionFacts) -> datetime:
    """The period's end: the event's, else the subscription's known one (after the start), else one billing
    cycle after the start (Creem's events may leave it out)."""
    start = facts.period_start
    for end in (facts.period_end, subscription.current_period_end):
        if end is not None and end > start:
            return end
    months = 12 if subscription.billing_cycle == BillingCycle.YEARLY else 1
    year, month = divmod(start.month - 1 + months, 12)
    year, month = start.year + year, month + 1
    return start.replace(year=year, month=month, day=min(start.day, calendar.monthrange(year, month)[1]))


def refund_created(event: WebhookEvent) -> Handled:
    obj, _ = _parts(event)
    refund_id = object_id(obj.get("id"))
    payment = as_dict(obj.get("transaction"))  # the refunded transaction
    checkout = as_dict(obj.get("checkout"))
    subscription_id = object_id(obj.get("subscription")) or object_id(payment.get("subscription"))
    if not refund_id:
        raise EventNotApplicable("the refund has no id")
    meta = as_dict(checkout.get("metadata"))
    ref = checkout.get("request_id") if isinstance(checkout.get("request_id"), str) else ""
    ref = ref or (meta.get("order_id") if isinstance(meta.get("order_id"), str) else "")
    order = _order_for(ref) if ref else None
    subscription = subscription_selectors.subscription_by_provider(
        provider=Provider.CREEM, provider_subscription_id=subscription_id
    )
    if order is None and subscription is None:
        return ignored("names no order or subscription of this service")
    period_start = moment(payment.get("period_start"))
    if subscription is None or period_start is None:
        raise EventRetryable("the refunded payment's subscription or period is not known here yet")
    grant = ledger_entry_by_key(account_id=subscription.account_id, key=_grant_key(subscription_id, period_start))
    order_id = order.id if order is not None else None
    if grant is None:
        if subscription.plan.credits_included <= 0:
            return processed(order_id, "the refunded period granted no credits")
        raise EventRetryable("the refunded period's credits are not granted yet")
    refunded, paid = obj.get("refund_amount"), payment.get("amount_paid")
    share = Decimal(1)
    if isinstance(refunded, int) and isinstance(paid, int) and paid > 0 and refunded < paid:
        share = Decimal(max(refunded, 0)) / Decimal(paid)
    credits = (grant.balance_delta * share).quantize(CREDITS_QUANTUM, rounding=ROUND_DOWN)
    transaction_id = object_id(payment)
    # The period before the credit account (payments.locks); a closed period gives back only what it carried out.
    period = locks.grant_period_lock(account_id=subscription.account_id, grant_entry_id=grant.pk)
    # Deduplicated on the refund id itself, not on its ledger row: a reversal that takes nothing (the credits had
    # left with the period's close) writes none. Checked after the account's subscriptions lock (taken by
    # grant_period_lock), which orders two events of one refund: the second sees the first one's commit.
    earlier = selectors.creem_refund_processed(refund_id=refund_id, other_than=event.pk)
    if earlier is not None:
        return processed(order_id, f"refund {refund_id} already processed (event {earlier})")
    reversal, result = plan_periods.period_credits_reverse(
        period, credits,
        account_id=subscription.account_id,
        idempotency_key=f"creem:refund:{refund_id}",
        description=f"Refund {refund_id} of the period from {str(grant.metadata.get('period_start'))[:10]}",
        reference=f"creem:{subscription_id}",
        metadata={"channel": Channel.CREEM, "refund_id": refund_id, "transaction_id": transaction_id,
                  "subscription_id": subscription_id, "refund_of": str(grant.pk)},
    )
    if order is not None and not result.replayed:
        in_usd = obj.get("refund_currency") == "USD" and isinstance(refunded, int)
        orders.order_refund_record(
            order, removed=result.removed, shortfall=result.shortfall,
            review_note=f"refund {refund_id}: {result.shortfall} credits were already spent, not taken back",
            amount_refunded_usd=order.amount_refunded_usd + Decimal(refunded) / 100 if in_usd else None,
            full=share >= 1 if payment.get("order") and payment.get("order") == order.provider_payment_id else None,
        )
        order.save()
    note = ""
    if reversal.expired > 0 and not result.replayed:
        note = (f"{reversal.expired} of {credits} credits had left with the period's close (expired or spent), "
                "not taken back")
    return processed(order_id, note)


HANDLERS = {
    CHECKOUT_COMPLETED: checkout_completed,
    **dict.fromkeys((SUBSCRIPTION_ACTIVE, SUBSCRIPTION_PAID, SUBSCRIPTION_CANCELED, SUBSCRIPTION_EXPIRED,
                     SUBSCRIPTION_UPDATE), subscription_changed),
    REFUND_CREATED: refund_created,
}
