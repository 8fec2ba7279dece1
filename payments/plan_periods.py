"""What happens to a subscription period's plan credits after its grant (``webhooks._period_grant``): mid-period
upgrades, refunds of the period's invoice, and the invoices that start no period. Called by ``payments.webhooks``
(and ``payments.creem_webhooks``) inside the webhook's transaction, after the account's subscriptions lock;
these helpers lock the period row, then the credit account (``credits``), and never call a provider.

Mid-period plan change (``upgrade_apply``), the policy:
- A current subscription (active or trialing) whose plan now includes more credits than its current period has
  received (``granted + upgrade_granted``) gets the difference at once, for that period only: one ``add`` row
  keyed ``upgrade:<subscription>:<period start>:<plan>``, recorded on the period's ``PlanCreditPeriod``
  (``upgrade_granted``, and ``plan`` becomes the new plan, whose rollover policy applies when the period closes).
  The period is the one the subscription is in (``current_period_start``), and only once its invoice has
  granted it: whichever of ``customer.subscription.updated`` and ``invoice.paid`` arrives second tops it up,
  so arrival order does not matter. Each plan tops a period up at most once (the key), and a period never
  receives more than the most generous plan it was on: moving up, down and up again grants nothing more.
- A downgrade grants nothing and takes nothing back: the period keeps what it has, and the next invoice grants
  the new plan's credits for the next period.
- An older event never grants: a ``customer.subscription.updated`` older than the state already applied changes
  nothing, and the check reads the subscription's newest state. A past-due subscription is topped up once it is
  active again.
- Stripe bills the change itself (proration): by default on the next invoice; with ``always_invoice`` on an
  invoice (``billing_reason`` "subscription_update") whose subscription lines are all prorations, possibly with
  one-off invoice items besides. Such an invoice starts no period and grants nothing here
  (``is_proration_invoice``; it is stored ignored with a note): a period only ever starts from a subscription
  line that is no proration (``stripe.subscription_period_line`` never falls back to a proration line).
- A late ``customer.subscription.updated`` (an upgrade during period N that arrives after period N+1's invoice
  was applied) is older than the subscription's state and changes nothing: period N, already closed, gets no
  difference (its rollover is done); period N+1 was granted the plan its invoice paid for. The subscription's
  state is newer, so this is the policy, not a gap.

Refunds of a period's invoice (``refund_apply``): a ``charge.refunded`` that names no order is matched to the
period whose invoice recorded its payment intent (``payment_intent_id``; or, in the older shapes, whose invoice
the charge names). The share refunded (cumulative ``amount_refunded`` / the charge's ``amount``) of the credits
the invoice granted (``granted``; an upgrade's credits are not part of it) is taken back with the order refunds'
policy: only what is available is removed (one negative ``refund`` row keyed ``refund:<charge>:<refunded>``),
the rest is recorded on the period (``refund_shortfall_credits``) and named in the event's note. A refund that
arrives before its invoice is parked (as order refunds are) and applied when the invoice records the period.
The first invoice's refund is its order's (matched by the order first); its reversal is recorded on the period too
(``order_refund_recorded``), as is a Creem refund's, so the rollover at the period's end never counts credits
that a refund already took back.

A refund that arrives after its period has closed (the next invoice applied the rollover), the policy
(``reversal_plan``, the same for renewals, the first invoice's order and Creem): the period's unused credits have
already left, expired by its rollover, except what it carried out into the next period. Only that can still be
taken back: at most ``carried_out`` less what refunds took back of it before (``carried_reversed``), no more than
the open period after it still carries in, and (as always) no more than is available. What is taken back also
leaves the open period's ``carried_in``, so that its rollover does not count it a second time (which would expire
purchased credits). The rest of the refunded share is recorded on the period (``refund_expired_credits``), named
in the event's note and not owed again, and nothing is debited for it: what expired or was spent during the
period is not taken out of the credits the customer has now (the next period's, or purchased ones). The carried
part, though, is taken back from what is available, as a refund of an open period is: when the next period's own
plan credits are already spent, that can be purchased credits (the carried credits were spent in their place).

Lock order: a refund takes the account's subscriptions lock and locks its period (and the open period after it)
before ``credits_reverse_purchase`` locks the credit account, as ``_period_grant`` / ``_period_close`` and
``upgrade_apply`` do (``payments.locks``), so a refund and a renewal of one account never deadlock.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from billing_service.money import QUANTUM, format_money
from credits.models import LedgerEntry
from credits.services import credits_grant, credits_reverse_purchase
from payments import locks, webhooks
from payments.errors import EventNotApplicable
from payments.models import (
    Channel,
    Order,
    OrderType,
    PlanCreditPeriod,
    WebhookEvent,
    WebhookProvider,
    WebhookStatus,
)
from payments.providers.stripe_events import (
    ChargeFacts,
    charge_facts,
    invoice_payment_facts,
    subscription_period_line,
)
from subscriptions.locks import account_subscriptions_lock
from subscriptions.models import Subscription, SubscriptionStatus

UPGRADE_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING)
MID_PERIOD_REASON = "subscription_update"


# --- mid-period plan changes ------------------------------------------------------------------------------------


def upgrade_key(period: PlanCreditPeriod, plan_id: object) -> str:
    return f"upgrade:{period.subscription_id}:{int(period.period_start.timestamp())}:{plan_id}"


def upgrade_apply(subscription: Subscription) -> Decimal:
    """Tops the subscription's current period up to its plan's credits (see the module docstring); returns the
    credits granted now (0 when nothing is due)."""
    if subscription.status not in UPGRADE_STATUSES or subscription.current_period_start is None:
        return Decimal(0)
    account_subscriptions_lock(account_id=subscription.account_id)
    period = (
        PlanCreditPeriod.objects.select_for_update()
        .select_related("plan")
        .filter(subscription_id=subscription.pk, period_start=subscription.current_period_start, closed_at__isnull=True)
        .first()
    )
    plan = subscription.plan
    if period is None or plan.pk == period.plan_id:
        return Decimal(0)
    missing = plan.credits_included - period.granted - period.upgrade_granted
    key = upgrade_key(period, plan.pk)
    if missing <= 0 or LedgerEntry.objects.filter(account_id=subscription.account_id, idempotency_key=key).exists():
        return Decimal(0)
    credits_grant(
        account_id=subscription.account_id,
        amount=missing,
        description=f"Upgrade from the {period.plan.name} plan to {plan.name}: the difference for "
        f"{period.period_start:%Y-%m-%d} to {period.period_end:%Y-%m-%d}",
        reference=f"subscription:{subscription.pk}",
        metadata={"subscription_id": str(subscription.pk), "period_start": period.period_start.isoformat(),
                  "from_plan": period.plan.slug, "plan": plan.slug},
        idempotency_key=key,
    )
    period.upgrade_granted += missing
    period.plan = plan
    period.save(update_fields=["upgrade_granted", "plan"])
    return missing


def is_proration_invoice(payload: dict[str, Any], billing_reason: str) -> bool:
    """An invoice of a mid-period plan change: ``billing_reason`` "subscription_update" and no subscription line
    for a billing period (``stripe.subscription_period_line``): its subscription lines are all prorations
    (``line.parent.subscription_item_details.proration`` since API version 2025-03-31, ``line.proration``
    before), whatever one-off invoice items it carries besides. A change that restarts the billing cycle (another
    interval) has a line for the new period that is no proration: that invoice starts a period as usual. A
    proration line never starts a period: its period is the rest of the current one."""
    if billing_reason != MID_PERIOD_REASON:
        return False
    obj = (payload.get("data") or {}).get("object") or {}
    lines = ((obj.get("lines") if isinstance(obj, dict) else None) or {}).get("data") or []
    return not subscription_period_line([line for line in lines if isinstance(line, dict)])


# --- the invoice's payment, and its refunds ------------------------------------------------------------------


def payment_record(period: PlanCreditPeriod, *, payment_intent_id: str, amount_paid_cents: int | None) -> None:
    """Records the payment intent (and amount) of the period's invoice, when the period has none yet (an
    invoice event without the ``payments`` list names none), then applies the refunds parked for it."""
    period = PlanCreditPeriod.objects.select_for_update().select_related("plan", "subscription").get(pk=period.pk)
    changed = []
    if payment_intent_id and not period.payment_intent_id:
        period.payment_intent_id = payment_intent_id
        changed.append("payment_intent_id")
    if amount_paid_cents is not None and period.amount_paid_usd is None:
        period.amount_paid_usd = Decimal(amount_paid_cents) / 100
        changed.append("amount_paid_usd")
    if changed:
        period.save(update_fields=changed)
    parked_refunds_apply(period)


_STORED_INVOICE_PAYMENT = (
    "SELECT payload -> 'data' -> 'object' -> 'payment' ->> 'payment_intent' FROM payments_webhookevent "
    "WHERE provider = 'stripe' AND type = 'invoice_payment.paid' "
    "AND payload -> 'data' -> 'object' ->> 'invoice' = %s AND payload -> 'data' -> 'object' ->> 'status' = 'paid' "
    "AND payload -> 'data' -> 'object' -> 'payment' ->> 'payment_intent' <> '' ORDER BY id LIMIT 1"
)


def invoice_payment_apply(payload: dict[str, Any]) -> tuple[str, str]:
    """``invoice_payment.paid``: the payment intent that paid an invoice. Since API version 2025-03-31 an invoice
    event names its payment intents only in ``payments``, a list webhooks leave out, and a charge no longer names
    its invoice; this event is where a renewal's refunds learn their period. Recorded on the invoice's period
    (``payment_record``, which applies the refunds parked for it); when the period is not there yet, the event
    stays stored and ``invoice.paid`` reads it (``stored_invoice_payment_intent``; both hold the invoice's lock).
    The first invoice's payment is its order's too: recorded on the order (whose refunds are matched by it first)
    and the refunds parked for the order applied, as ``invoice.paid`` does when it names the payment intent.
    Returns the event's (status, note)."""
    facts = invoice_payment_facts(payload)
    if facts.status != "paid" or not facts.invoice_id or not facts.payment_intent_id:
        return WebhookStatus.IGNORED, "not a paid invoice payment by a payment intent"
    locks.invoice_lock(invoice_id=facts.invoice_id)
    locks.payment_intent_lock(payment_intent_id=facts.payment_intent_id)
    found = PlanCreditPeriod.objects.filter(invoice_id=facts.invoice_id).values_list(
        "pk", "subscription__account_id", "grant_entry_id").first()
    if found is None:
        return WebhookStatus.IGNORED, f"no plan period of invoice {facts.invoice_id} yet: its invoice.paid reads this"
    order_id = Order.objects.filter(
        type=OrderType.SUBSCRIPTION, channel=Channel.STRIPE, ledger_entry_id=found[2]
    ).values_list("pk", flat=True).first() if found[2] is not None else None
    order = locks.order_lock(order_id=order_id) if order_id else None  # the order before the subscriptions
    account_subscriptions_lock(account_id=found[1])  # the lock order of webhooks._period_grant
    period = PlanCreditPeriod.objects.get(pk=found[0])
    if period.payment_intent_id and period.payment_intent_id != facts.payment_intent_id:
        return WebhookStatus.IGNORED, f"the period already records payment intent {period.payment_intent_id}"
    if order is not None and not order.provider_payment_id:
        order.provider_payment_id = facts.payment_intent_id
        order.save(update_fields=["provider_payment_id", "updated_at"])
        webhooks._apply_parked_refunds(order)  # before the period's (a first invoice's refund is the order's)
    payment_record(period, payment_intent_id=facts.payment_intent_id, amount_paid_cents=facts.amount_paid)
    return WebhookStatus.PROCESSED, ""


def stored_invoice_payment_intent(invoice_id: str) -> str:
    """The payment intent a stored ``invoice_payment.paid`` names for the invoice, or ""."""
    if not invoice_id:
        return ""
    with connection.cursor() as cursor:
        cursor.execute(_STORED_INVOICE_PAYMENT, [invoice_id])
        row = cursor.fetchone()
    return row[0] if row else ""


def period_for_charge(facts: ChargeFacts) -> PlanCreditPeriod | None:
    """The (locked) period whose invoice the charge paid: by its payment intent, or by its invoice (older API
    shapes name it on the charge). None when no period recorded either."""
    rows = PlanCreditPeriod.objects.values_list("pk", "subscription__account_id")
    found = rows.filter(payment_intent_id=facts.payment_intent_id).first() if facts.payment_intent_id else None
    if found is None and facts.invoice_id:
        found = rows.filter(invoice_id=facts.invoice_id).first()
    if found is None:
        return None
    account_subscriptions_lock(account_id=found[1])  # the lock order of webhooks._period_grant
    return PlanCreditPeriod.objects.select_for_update().select_related("plan", "subscription").get(pk=found[0])


def refund_apply(period: PlanCreditPeriod, facts: ChargeFacts) -> str:
    """Takes back the period's share of the refunded part not processed before; returns the event's note."""
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
        reversal = reversal_plan(period, owed)
        result = credits_reverse_purchase(
            account_id=subscription.account_id,
            amount=reversal.take,
            description=f"Refund of the {period.plan.name} plan period {period.period_start:%Y-%m-%d} to "
            f"{period.period_end:%Y-%m-%d} ({format_money(refunded)} USD refunded)",
            reference=f"subscription:{subscription.pk}",
            metadata={"subscription_id": str(subscription.pk), "period_start": period.period_start.isoformat(),
                      "charge_id": facts.charge_id, "amount_refunded_usd": format_money(refunded)},
            idempotency_key=f"refund:{facts.charge_id}:{facts.amount_refunded}",
        )
        grant_reversed(period, reversal, removed=result.removed, shortfall=result.shortfall)
        note += reversal_note(reversal, owed=owed, removed=result.removed, shortfall=result.shortfall)
    period.amount_refunded_usd = refunded
    period.save(update_fields=["amount_refunded_usd"])
    return note


def parked_refunds_apply(period: PlanCreditPeriod) -> None:
    """Applies the refunds of the period's payment that arrived before its invoice: the largest cumulative one
    (each one only adds what the ones before did not)."""
    if not period.payment_intent_id and not period.invoice_id:
        return
    parked = WebhookEvent.objects.select_for_update().filter(
        provider=WebhookProvider.STRIPE, type=webhooks.CHARGE_REFUNDED, status=WebhookStatus.IGNORED,
        last_error__startswith=webhooks.PARKED,
    )
    found = []
    if period.payment_intent_id:
        found += list(parked.filter(payload__data__object__payment_intent=period.payment_intent_id))
    if period.invoice_id:
        found += list(parked.filter(payload__data__object__invoice=period.invoice_id))
    events = sorted({e.pk: e for e in found}.values(), key=lambda e: charge_facts(e.payload).amount_refunded or 0)
    for event in events:
        if _names_an_order(charge_facts(event.payload)):
            continue  # an order's refund: applied with its order (webhooks._apply_parked_refunds)
        try:
            with transaction.atomic():
                note = refund_apply(period, charge_facts(event.payload))
        except EventNotApplicable as exc:
            period.refresh_from_db()
            event.status, event.last_error = WebhookStatus.FAILED, str(exc)
        else:
            event.status, event.last_error = WebhookStatus.PROCESSED, f"applied once its invoice was paid: {note}"
        event.processed_at = timezone.now()
        event.save(update_fields=["status", "last_error", "processed_at", "updated_at"])


def _names_an_order(facts: ChargeFacts) -> bool:
    order_ref = facts.metadata.get("order_id")
    if order_ref and Order.objects.filter(pk=webhooks._as_uuid(order_ref)).exists():
        return True
    return bool(facts.payment_intent_id) and Order.objects.filter(
        channel=Channel.STRIPE, provider_payment_id=facts.payment_intent_id
    ).exists()


# --- taking a period's credits back ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reversal:
    """What a refund of ``owed`` credits of a period may take back now (``take``), what it leaves because the
    period's close already expired (or saw spent) it (``expired``), and the open period whose ``carried_in``
    holds what a closed period carried out (``successor``; None while the period is open)."""

    take: Decimal
    expired: Decimal = Decimal(0)
    successor: PlanCreditPeriod | None = None


def grant_period_lock(*, account_id: object, grant_entry_id: object) -> PlanCreditPeriod | None:
    """The (locked) period granted by ``grant_entry_id``, if any, after the account's subscriptions lock: the
    lock order of ``webhooks._period_grant``, so a refund that locks its period before the credit account
    (``credits_reverse_purchase``) never waits for a renewal in the opposite order (``payments.locks``)."""
    if grant_entry_id is None:
        return None
    account_subscriptions_lock(account_id=account_id)
    return PlanCreditPeriod.objects.select_for_update().select_related("plan").filter(
        grant_entry_id=grant_entry_id).first()


def order_period_lock(order: Order) -> PlanCreditPeriod | None:
    """A subscription order's first period (locked, see ``grant_period_lock``); None for other orders."""
    if order.type != OrderType.SUBSCRIPTION or order.ledger_entry_id is None:
        return None
    return grant_period_lock(account_id=order.account_id, grant_entry_id=order.ledger_entry_id)


def reversal_plan(period: PlanCreditPeriod | None, owed: Decimal) -> Reversal:
    """How much of ``owed`` credits of the (locked) period a refund may take back now (see the module
    docstring): all of it while the period is open; once it closed, at most what it carried out and refunds
    have not taken back yet, and no more than the open period after it still carries in."""
    owed = max(owed, Decimal(0))
    if period is None or period.closed_at is None:
        return Reversal(take=owed)
    successor = (
        PlanCreditPeriod.objects.select_for_update()
        .filter(subscription_id=period.subscription_id, period_start__gt=period.period_start, closed_at__isnull=True)
        .order_by("-period_start")
        .first()
    )
    left = (period.carried_out or Decimal(0)) - period.carried_reversed
    if successor is None:
        left = Decimal(0)
    else:
        left = min(left, successor.carried_in)
    take = max(min(owed, left), Decimal(0))
    return Reversal(take=take, expired=owed - take, successor=successor)


def reversal_note(reversal: Reversal, *, owed: Decimal, removed: Decimal, shortfall: Decimal) -> str:
    note = ""
    if reversal.expired > 0:
        note += (f"; {format_money(reversal.expired)} of {format_money(owed)} credits had left with the period's "
                 f"close (expired or spent), not taken back")
    if shortfall > 0:
        note += (f"; {format_money(shortfall)} of {format_money(owed)} credits were already spent, "
                 f"{format_money(removed)} removed")
    return note


def order_refund_recorded(
    order: Order, period: PlanCreditPeriod | None, reversal: Reversal, *, removed: Decimal, shortfall: Decimal
) -> None:
    """A subscription order's refund took back its first period's credits: recorded on that period too."""
    if order.type == OrderType.SUBSCRIPTION and period is not None:
        grant_reversed(period, reversal, removed=removed, shortfall=shortfall)


def grant_reversed(
    period: PlanCreditPeriod | None, reversal: Reversal, *, removed: Decimal, shortfall: Decimal
) -> None:
    """Records on the (locked) period what a refund took back of its credits (``removed``, planned by
    ``reversal_plan``), what was already spent (``shortfall``) and what had left with its close; what a closed
    period carried out and is taken back now leaves the open period's ``carried_in`` too, so that its rollover
    never counts it."""
    if period is None or not (removed or shortfall or reversal.expired):
        return
    period.credits_reversed += removed
    period.refund_shortfall_credits += shortfall
    period.refund_expired_credits += reversal.expired
    fields = ["credits_reversed", "refund_shortfall_credits", "refund_expired_credits"]
    if reversal.successor is not None and removed:
        period.carried_reversed += removed
        fields.append("carried_reversed")
        reversal.successor.carried_in -= removed
        reversal.successor.save(update_fields=["carried_in"])
    period.save(update_fields=fields)
