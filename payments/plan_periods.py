"""A subscription period's plan credits: the grant (``period_grant``, once per period, closing the previous period
with its plan's rollover policy first), mid-period upgrades, what a refund of the period may take back, and the
invoices that start no period. Called by the handlers of every provider (``payments.webhooks.stripe_handlers`` and
``.creem_handlers``) and by ``payments.refunds`` inside the webhook's transaction, after the account's subscriptions lock;
these lock the period rows (``payments.locks``), then the credit account (``credits``), and never call a provider.

The grant: each paid period gets the plan's ``credits_included`` once per (subscription, period start): a
``PlanCreditPeriod`` row and an ``add`` row (Stripe: keyed ``period:<subscription>:<period start>``; Creem keeps
its own key and wording). The previous period is closed first: its unused plan credits are ``min(available,
granted + upgrade_granted + carried_in - credits_reversed - spent since its grant)`` (plan credits are spent
before purchased ones; spent = usage ``subtract`` rows minus usage refunds after the grant). The plan's rollover
policy keeps none, all, or up to ``rollover_cap`` of them; the rest leave in one negative ``rollover`` row (keyed
``rollover:<subscription>:<period start>``). Purchased credits never expire.

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
  line that is no proration (``stripe_events.subscription_period_line`` never falls back to a proration line).
- A late ``customer.subscription.updated`` (an upgrade during period N that arrives after period N+1's invoice
  was applied) is older than the subscription's state and changes nothing: period N, already closed, gets no
  difference (its rollover is done); period N+1 was granted the plan its invoice paid for. The subscription's
  state is newer, so this is the policy, not a gap.

Refunds of a period's invoice (``payments.refunds.period_refund_apply``): a ``charge.refunded`` that names no order is matched to the
period whose invoice recorded its payment intent (``payment_intent_id``; or, in the older shapes, whose invoice
the charge names). The share refunded (cumulative ``amount_refunded`` / the charge's ``amount``) of the credits
the invoice granted (``granted``; an upgrade's credits are not part of it) is taken back with the order refunds'
policy: only what is available is removed (one negative ``refund`` row keyed ``refund:<charge>:<refunded>``),
the rest is recorded on the period (``refund_shortfall_credits``) and named in the event's note. A refund that
arrives before its invoice is parked (as order refunds are) and applied when the invoice records the period.
The first invoice's refund is its order's (matched by the order first); its reversal is recorded on the period too
(``grant_reversed``), as is a Creem refund's, so the rollover at the period's end never counts credits
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
before ``credits_reverse_purchase`` locks the credit account, as ``period_grant`` / ``_period_close`` and
``upgrade_apply`` do (``payments.locks``), so a refund and a renewal of one account never deadlock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Sum
from django.utils import timezone

from billing_service.money import format_money
from credits.locks import account_lock
from credits.models import CreditAccount, LedgerEntry, TransactionType
from credits.selectors import ledger_entry_by_key
from credits.services import RemovalResult, credits_expire_plan, credits_grant, credits_reverse_purchase
from credits.services.expiry import lots_absorbed
from payments import locks
from payments.models import PlanCreditPeriod
from payments.providers.stripe_events import subscription_period_line
from subscriptions.locks import account_subscriptions_lock
from subscriptions.models import Plan, RolloverPolicy, Subscription, SubscriptionStatus

UPGRADE_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING)
MID_PERIOD_REASON = "subscription_update"


# --- the grant, and the close of the period before ---------------------------------------------------------


def period_grant(
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
    so that a redelivered event replays the same row). Returns the period and whether it was granted now."""
    account_subscriptions_lock(account_id=subscription.account_id)
    existing = PlanCreditPeriod.objects.filter(subscription=subscription, period_start=start).first()
    if existing is not None:
        return existing, False
    previous = locks.period_open_before_lock(subscription_id=subscription.pk, start=start)
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
    """Plan credits spent on usage after a ledger sequence: ``subtract`` rows, less the refunds of usage, less what
    check-in credits paid (they are spent first: ``credits.services.expiry``)."""
    rows = LedgerEntry.objects.filter(account_id=account_id, sequence__gt=after_sequence)
    debits = rows.filter(transaction_type=TransactionType.SUBTRACT).aggregate(t=Sum("balance_delta"))["t"]
    returned = rows.filter(transaction_type=TransactionType.REFUND, refund_of__isnull=False).aggregate(
        t=Sum("balance_delta"))["t"]
    by_checkins = lots_absorbed(account_id=account_id, after_sequence=after_sequence)
    return max(-(debits or Decimal(0)) - (returned or Decimal(0)) - by_checkins, Decimal(0))


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


# --- mid-period plan changes ------------------------------------------------------------------------------------


def upgrade_key(period: PlanCreditPeriod, plan_id: object) -> str:
    return f"upgrade:{period.subscription_id}:{int(period.period_start.timestamp())}:{plan_id}"


def upgrade_apply(subscription: Subscription) -> Decimal:
    """Tops the subscription's current period up to its plan's credits (see the module docstring); returns the
    credits granted now (0 when nothing is due)."""
    if subscription.status not in UPGRADE_STATUSES or subscription.current_period_start is None:
        return Decimal(0)
    account_subscriptions_lock(account_id=subscription.account_id)
    period = locks.period_open_lock(subscription_id=subscription.pk, start=subscription.current_period_start)
    plan = subscription.plan
    if period is None or plan.pk == period.plan_id:
        return Decimal(0)
    missing = plan.credits_included - period.granted - period.upgrade_granted
    key = upgrade_key(period, plan.pk)
    if missing <= 0 or ledger_entry_by_key(account_id=subscription.account_id, key=key) is not None:
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
    for a billing period (``stripe_events.subscription_period_line``): its subscription lines are all prorations
    (``line.parent.subscription_item_details.proration`` since API version 2025-03-31, ``line.proration``
    before), whatever one-off invoice items it carries besides. A change that restarts the billing cycle (another
    interval) has a line for the new period that is no proration: that invoice starts a period as usual. A
    proration line never starts a period: its period is the rest of the current one."""
    if billing_reason != MID_PERIOD_REASON:
        return False
    obj = (payload.get("data") or {}).get("object") or {}
    lines = ((obj.get("lines") if isinstance(obj, dict) else None) or {}).get("data") or []
    return not subscription_period_line([line for line in lines if isinstance(line, dict)])


# --- the invoice's payment ------------------------------------------------------------------------------------


def payment_record(period: PlanCreditPeriod, *, payment_intent_id: str, amount_paid_cents: int | None) -> PlanCreditPeriod:
    """Records the payment intent (and amount) of the period's invoice, when the period has none yet (an invoice
    event without the ``payments`` list names none); returns the period, locked (its parked refunds are the
    caller's next step: ``payments.refunds.parked_refunds_apply_to_period``)."""
    period = locks.period_lock(period_pk=period.pk)
    changed = []
    if payment_intent_id and not period.payment_intent_id:
        period.payment_intent_id = payment_intent_id
        changed.append("payment_intent_id")
    if amount_paid_cents is not None and period.amount_paid_usd is None:
        period.amount_paid_usd = Decimal(amount_paid_cents) / 100
        changed.append("amount_paid_usd")
    if changed:
        period.save(update_fields=changed)
    return period


# --- taking a period's credits back ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reversal:
    """What a refund of ``owed`` credits of a period may take back now (``take``), what it leaves because the
    period's close already expired (or saw spent) it (``expired``), and the open period whose ``carried_in``
    holds what a closed period carried out (``successor``; None while the period is open)."""

    take: Decimal
    expired: Decimal = Decimal(0)
    successor: PlanCreditPeriod | None = None


def reversal_plan(period: PlanCreditPeriod | None, owed: Decimal) -> Reversal:
    """How much of ``owed`` credits of the (locked) period a refund may take back now (see the module
    docstring): all of it while the period is open; once it closed, at most what it carried out and refunds
    have not taken back yet, and no more than the open period after it still carries in."""
    owed = max(owed, Decimal(0))
    if period is None or period.closed_at is None:
        return Reversal(take=owed)
    successor = locks.period_open_after_lock(subscription_id=period.subscription_id, start=period.period_start)
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


def period_credits_reverse(
    period: PlanCreditPeriod | None, owed: Decimal, *, account_id: object, **posting: Any
) -> tuple[Reversal, RemovalResult]:
    """Takes back ``owed`` credits of a refunded payment: what the (locked) period still allows
    (``reversal_plan``; all of it for an order without a period), never more than is available
    (``credits_reverse_purchase``: one negative ``refund`` row with ``posting``'s key, description, reference and
    metadata), recorded on the period (``grant_reversed``). Every refund of every provider takes back through this."""
    reversal = reversal_plan(period, owed)
    result = credits_reverse_purchase(account_id=account_id, amount=reversal.take, **posting)
    if not result.replayed:
        grant_reversed(period, reversal, removed=result.removed, shortfall=result.shortfall)
    return reversal, result
