"""Auto-recharge: when a debit leaves an account below its threshold, charge its saved card off-session.

The settings are payments' own (``AutoRechargeSettings``, one row per account, none: off). The credit account only
carries ``low_balance_threshold``, which every change here keeps equal to the threshold while auto-recharge is
enabled and NULL otherwise (``_settings_save``): the settings update, a card removal turning it off
(``payment_methods.payment_method_remove``), three failures in a row turning it off (``_fail``). The debit's own
statement returns it, so the hot path knows without another query whether to call the hook.

The flow, each step its own short transaction and no row lock held across a Stripe call:
1. ``recharge_after_debit`` (called by ``credits.ledger`` through ``settings.CREDITS_LOW_BALANCE_HOOK`` when a debit
   leaves ``available`` below ``low_balance_threshold``) enqueues ``payments.tasks.recharge_charge_task`` from
   ``transaction.on_commit``.
2. ``recharge_start`` locks the account and re-checks everything: enabled, below threshold, a saved payment
   method, no recharge in flight (also a partial unique index), the calendar month's (UTC) spending limit.
   It records a ``pending`` Recharge and the settings' ``last_triggered_at``.
3. ``recharge_charge`` creates the off-session PaymentIntent with the Stripe idempotency key
   ``recharge:<id>``: a worker killed after the charge and before recording it leaves the recharge pending,
   and the next run (the beat's ``recharges_resume``) sends the same key and gets the same PaymentIntent.
   Right before each call it re-checks, with the account and the recharge locked, that auto-recharge is still
   on and the recharge's card is still the account's saved one; otherwise the recharge is cancelled
   (``failed`` with ``failure_reason`` ``cancelled``, not counted as a decline) and Stripe is not called.
   The same transaction marks the recharge sent (``attempts`` > 0) before it commits and the call is made.
   Removing the card (``payment_methods.payment_method_remove``) cancels at once only a recharge never sent
   (``pending`` with ``attempts`` 0, ``payment_method_removed``): one sent, even if its answer was never recorded
   (a removal committing while the call is on its way, a worker killed, a provider error), may have been charged,
   so it stays in flight (it still counts against a second recharge and the monthly limit) until its webhook
   settles it or the resume re-checks the card (a removed one: cancelled without calling Stripe; a charge that did
   go through is still credited by its ``payment_intent.succeeded``).
   A recharge whose sends keep failing at the provider (``PaymentProviderError``) is not retried forever: once
   sent ``MAX_CHARGE_ATTEMPTS`` times and ``GIVE_UP_AFTER`` old, the next run fails it instead (``gave_up``,
   Stripe not called; a failure for the three-in-a-row rule). Only ``recharges_resume`` (spaced out) re-sends a
   sent recharge: a debit's task starts a new one or sends one never sent, nothing else. Having been sent, a
   given-up (or cancelled) recharge still counts against the monthly limit (``recharge_start``), and a charge that
   did go through is still credited by its webhook.
4. Credits arrive only through the webhook (``payment_intent.succeeded``), keyed ``recharge:<id>`` in the
   ledger: once, however often the event is delivered. ``payment_intent.payment_failed`` (or a decline
   answered at once) fails the recharge (``declined``); three failures in a row turn auto-recharge off.
   A ``processing`` recharge whose webhook never comes would hold the account's one slot in flight forever: the
   beat's ``recharges_reconcile`` reads back from Stripe the PaymentIntent of each one unsettled for
   ``RECONCILE_AFTER_SECONDS`` (no transaction open) and applies its status as the webhook would, through
   ``recharge_event_apply`` (succeeded: credited; requires_payment_method or canceled: failed; still processing
   or requires_action: left for the next run). The same ledger key and status checks make a late webhook, or
   one racing the reconciliation, change nothing more.

Locks: ``payments.locks`` (its auto-recharge section): the credit account, then its saved payment method, then its
recharges; the settings row is written only under its account's lock.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, Sum
from django.utils import timezone

from accounts import outbound
from accounts.outbound_models import OutboundEventType
from billing_service import metrics
from billing_service.queue import enqueue_on_commit
from credits.locks import account_lock
from credits.models import CreditAccount
from credits.services import credits_grant, low_balance_threshold_set
from payments import locks, selectors
from payments.errors import InvalidAutoRecharge, PaymentMethodRequired, PaymentProviderError
from payments.handled import Handled, ignored, processed
from payments.providers import stripe as stripe_provider
from payments.recharge_models import (
    ACTIVE,
    CANCELLATIONS,
    IN_FLIGHT,
    AutoRechargeSettings,
    Recharge,
    RechargeFailure,
    RechargeStatus,
    SavedPaymentMethod,
)

logger = logging.getLogger(__name__)

CREDITS_PER_USD = Decimal(1)
FAILURES_BEFORE_DISABLE = 3
MAX_CHARGE_ATTEMPTS = 10  # sends of one recharge (each one a provider error) before it is given up ...
GIVE_UP_AFTER = timezone.timedelta(hours=1)  # ... and not before it is this old (Stripe keeps its key 24 h)
RECONCILE_AFTER_SECONDS = 30 * 60  # a processing recharge with no webhook by then is read back from Stripe
PAYMENT_METHOD_REMOVED = "payment method removed"  # last_error of the recharges a card removal cancels
PI_SUCCEEDED = "payment_intent.succeeded"
PI_FAILED = "payment_intent.payment_failed"
STRIPE_EVENTS = frozenset({PI_SUCCEEDED, PI_FAILED})
_UNSET: Any = object()
_SETTINGS_FIELDS = ("enabled", "threshold_usd", "amount_usd", "spending_limit_usd")


# --- settings ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AutoRechargeState:
    """What the account endpoints show of auto-recharge (``auto_recharge_get``)."""

    enabled: bool = False
    threshold_usd: Decimal | None = None
    amount_usd: Decimal | None = None
    spending_limit_usd: Decimal | None = None
    last_triggered_at: datetime | None = None
    has_payment_method: bool = False


def auto_recharge_get(*, account: CreditAccount, payment_method: bool = True) -> AutoRechargeState:
    """The account's auto-recharge settings (off and empty without a row) and, with ``payment_method``, whether it
    has a saved card to charge: one query, none for settings read with the account already
    (``select_related("auto_recharge")``, as ``account_with_auto_recharge_get`` and the locks do)."""
    if CreditAccount.auto_recharge.is_cached(account):
        has = payment_method and SavedPaymentMethod.objects.filter(ACTIVE, account_id=account.pk).exists()
        return _state(_cached_settings(account), has)
    rows = CreditAccount.objects.filter(pk=account.pk)
    if payment_method:
        rows = rows.annotate(has_method=Exists(SavedPaymentMethod.objects.filter(ACTIVE, account_id=OuterRef("pk"))))
    names = [f"auto_recharge__{name}" for name in (*_SETTINGS_FIELDS, "last_triggered_at")]
    row = rows.values_list(*names, *(["has_method"] if payment_method else [])).first()
    if row is None:
        return AutoRechargeState()
    enabled, threshold, amount, limit, triggered, *has = row
    return AutoRechargeState(bool(enabled), threshold, amount, limit, triggered, bool(has and has[0]))


def account_with_auto_recharge_get(*, account_id: uuid.UUID | str) -> CreditAccount | None:
    """The account with its user and its auto-recharge settings, in one query (the summary endpoint)."""
    return CreditAccount.objects.select_related("user", "auto_recharge").filter(pk=account_id).first()


def _cached_settings(account: CreditAccount) -> AutoRechargeSettings | None:
    try:
        return account.auto_recharge
    except AutoRechargeSettings.DoesNotExist:
        return None


def _state(settings: AutoRechargeSettings | None, has_payment_method: bool) -> AutoRechargeState:
    if settings is None:
        return AutoRechargeState(has_payment_method=has_payment_method)
    return AutoRechargeState(
        settings.enabled, settings.threshold_usd, settings.amount_usd, settings.spending_limit_usd,
        settings.last_triggered_at, has_payment_method,
    )


def auto_recharge_check(settings: AutoRechargeSettings, *, top_up_min: Decimal, top_up_max: Decimal) -> None:
    """The rules settings must hold (400 ``InvalidAutoRecharge`` naming the API's field): amounts not negative, the
    amount within the platform's top-up range, the monthly limit (when set) at least the amount, and enabled settings
    complete (threshold and amount). Shared by the service and the admin's form."""
    for name in ("threshold_usd", "spending_limit_usd"):
        if (value := getattr(settings, name)) is not None and value < 0:
            raise InvalidAutoRecharge(f"auto_recharge_{name}", "Must not be negative.")
    amount = settings.amount_usd
    if amount is not None and (amount < top_up_min or amount > top_up_max):
        raise InvalidAutoRecharge(
            "auto_recharge_amount_usd", f"Must be between {top_up_min} and {top_up_max} (the top-up range)."
        )
    limit = settings.spending_limit_usd
    if limit is not None and amount is not None and limit < amount:
        raise InvalidAutoRecharge("auto_recharge_spending_limit_usd", "Must be at least the recharge amount.")
    if settings.enabled:
        for name in ("threshold_usd", "amount_usd"):
            if getattr(settings, name) is None:
                raise InvalidAutoRecharge(f"auto_recharge_{name}", "Required to enable auto-recharge.")


def auto_recharge_update(
    *,
    account_id: uuid.UUID | str,
    enabled: bool | None = None,
    threshold_usd: Decimal | None = _UNSET,
    amount_usd: Decimal | None = _UNSET,
    spending_limit_usd: Decimal | None = _UNSET,
) -> CreditAccount:
    """Changes the auto-recharge settings of an account (only the given ones) under ``auto_recharge_check``;
    enabling needs a saved payment method (409 ``payment_method_required``). Returns the account, as locked."""
    with transaction.atomic(durable=True):
        locked = locks.account_auto_recharge_lock(account_id=account_id)
        assert locked is not None
        account, settings = locked
        if enabled is not None:
            settings.enabled = enabled
        given = {"threshold_usd": threshold_usd, "amount_usd": amount_usd, "spending_limit_usd": spending_limit_usd}
        for name, value in given.items():
            if value is not _UNSET:
                setattr(settings, name, value)
        limits = selectors.payment_settings_for(platform=account.platform)
        auto_recharge_check(settings, top_up_min=limits.top_up_min_usd, top_up_max=limits.top_up_max_usd)
        if enabled and not SavedPaymentMethod.objects.filter(ACTIVE, account_id=account.pk).exists():
            raise PaymentMethodRequired()
        _settings_save(account, settings)
    return account


def auto_recharge_admin_save(*, settings: AutoRechargeSettings) -> None:
    """Saves settings edited in the admin (already checked by ``auto_recharge_check`` in its form), under the
    account's lock and with ``low_balance_threshold`` kept, like every other change. Inside the admin's own
    transaction (its change view opens one), else in its own."""
    with transaction.atomic():
        account = account_lock(account_id=settings.account_id)
        assert account is not None
        _settings_save(account, settings)


def _settings_save(account: CreditAccount, settings: AutoRechargeSettings) -> None:
    """Saves the settings of a locked account and keeps its ``low_balance_threshold`` equal to the threshold while
    auto-recharge is enabled, NULL otherwise (the debit statement reads it: no query on the hot path)."""
    settings.account_id = account.pk
    settings.save(force_insert=settings._state.adding)  # a new row: one INSERT, no UPDATE tried first
    threshold = settings.threshold_usd if settings.enabled else None
    if account.low_balance_threshold != threshold:
        low_balance_threshold_set(account_id=account.pk, threshold=threshold)
        account.low_balance_threshold = threshold


def auto_recharge_disable(*, account: CreditAccount) -> bool:
    """Turns auto-recharge off for a locked account (a card removed, three failures in a row), inside the caller's
    transaction. Returns whether it was on."""
    settings = AutoRechargeSettings.objects.filter(pk=account.pk).first()
    was_on = settings is not None and settings.enabled
    if settings is not None and settings.enabled:
        settings.enabled = False
        _settings_save(account, settings)
    elif account.low_balance_threshold is not None:  # no enabled settings: nothing to call the hook for
        low_balance_threshold_set(account_id=account.pk, threshold=None)
        account.low_balance_threshold = None
    return was_on


# --- the saved payment method ------------------------------------------------------------------------------------


def payment_method_save(
    *,
    account_id: uuid.UUID | str,
    customer_id: str,
    payment_method_id: str,
    brand: str = "",
    last4: str = "",
    as_of: datetime | None = None,
) -> SavedPaymentMethod | None:
    """Saves (or replaces) the account's payment method for off-session charges. Runs in the caller's
    transaction when there is one (a webhook handler), else in its own. ``as_of`` (the provider event's time)
    orders the saves: an event older than the last save, or than the owner's removal of the method, changes
    nothing (returns None); one without a time counts as older than a removal (it cannot bring a removed method
    back). The account row is locked first, so that two first saves (no row to lock yet) are ordered too. The
    same method saved again keeps the brand and last4 it had when none are given."""
    with transaction.atomic():
        if account_lock(account_id=account_id) is None:
            return None
        current = locks.saved_method_lock(account_id=account_id)
        if current is not None and (
            (current.removed_at is not None and (as_of is None or as_of < current.removed_at))
            or (current.synced_at is not None and as_of is not None and as_of < current.synced_at)
        ):
            return None
        same = current is not None and current.removed_at is None and (
            current.provider_payment_method_id == payment_method_id
        )
        if same and not (brand or last4):
            brand, last4 = current.brand, current.last4
        saved, _ = SavedPaymentMethod.objects.update_or_create(
            account_id=account_id,
            defaults={
                "provider_customer_id": customer_id, "provider_payment_method_id": payment_method_id,
                "brand": brand[:32], "last4": last4[:4], "removed_at": None,
                "synced_at": max(filter(None, [as_of, current.synced_at if current else None]), default=None),
            },
        )
    return saved


# --- the trigger -------------------------------------------------------------------------------------------------


def recharge_after_debit(account_id: uuid.UUID | str) -> None:
    """The low-balance hook: a recharge task after commit (never inside the debit's transaction)."""

    enqueue_on_commit("payments.tasks.recharge_charge_task", str(account_id))


def _month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _spent_this_month(account_id: uuid.UUID, now: datetime) -> Decimal:
    """What the account's recharges of this calendar month may have cost. A failed recharge costs nothing, except
    one failed without a decline after it was sent (cancelled or given up): Stripe may have charged it (its late
    webhook still credits it)."""
    maybe_charged = Q(attempts__gt=0) & Q(failure_reason__in=(*CANCELLATIONS, RechargeFailure.GAVE_UP))
    return (
        Recharge.objects.filter(account_id=account_id, created_at__gte=_month_start(now))
        .exclude(Q(status=RechargeStatus.FAILED) & ~maybe_charged)
        .aggregate(total=Sum("amount_usd"))["total"]
    ) or Decimal(0)


def recharge_start(*, account_id: uuid.UUID | str) -> Recharge | None:
    """A recharge to charge now, or None when none is due. A ``pending`` one never sent (its run crashed before
    the call) is returned again; one already sent is the resume's to retry (``recharges_resume``, spaced out), not
    every debit's; a ``processing`` one means one is already in flight."""
    with transaction.atomic(durable=True):
        locked = locks.account_auto_recharge_lock(account_id=account_id)
        if locked is None:
            return None
        account, settings = locked
        in_flight = Recharge.objects.filter(account_id=account.pk, status__in=IN_FLIGHT).first()
        if in_flight is not None:
            return in_flight if in_flight.status == RechargeStatus.PENDING and in_flight.attempts == 0 else None
        if not settings.enabled or account.available >= settings.threshold_usd:
            return None
        method = SavedPaymentMethod.objects.filter(ACTIVE, account_id=account.pk).first()
        if method is None:
            return None
        now, amount, limit = timezone.now(), settings.amount_usd, settings.spending_limit_usd
        if limit is not None and (spent := _spent_this_month(account.pk, now)) + amount > limit:
            logger.info("auto-recharge of %s skipped: monthly limit %s reached (%s spent)", account.pk, limit, spent)
            return None
        try:
            with transaction.atomic():
                recharge = Recharge.objects.create(
                    account=account, amount_usd=amount, credits=amount * CREDITS_PER_USD,
                    provider_customer_id=method.provider_customer_id,
                    provider_payment_method_id=method.provider_payment_method_id,
                )
                _entered(recharge)
        except IntegrityError:  # pragma: no cover - the account lock serialises starts
            return None
        settings.last_triggered_at = now
        settings.save(update_fields=["last_triggered_at", "updated_at"])
    return recharge


def recharge_charge(*, recharge_id: uuid.UUID | str) -> Recharge:
    """Sends the recharge's off-session PaymentIntent (no transaction open) and records Stripe's answer. A
    provider failure leaves it pending for a later retry with the same key. Before sending, with the account and
    the recharge locked (in that order), a recharge whose card is no longer the account's saved one, or whose
    account turned auto-recharge off, is cancelled instead (``_not_chargeable``): Stripe is not called.
    Otherwise it is marked sent (``attempts``) in that same transaction, so that a card removal committing
    before the call reaches Stripe leaves it in flight rather than cancelling a recharge Stripe then charges."""
    with transaction.atomic(durable=True):
        locked = locks.recharge_lock(recharge_id=recharge_id)
        if locked is None:
            raise Recharge.DoesNotExist(f"recharge {recharge_id} not found")
        account, recharge = locked
        if recharge.status != RechargeStatus.PENDING:
            return recharge
        refusal = _not_chargeable(account, recharge)
        if refusal is not None:
            reason, message = refusal
            if reason == RechargeFailure.GAVE_UP:  # a failure (it counts towards turning auto-recharge off)
                _fail(account, recharge, reason, message)
            else:
                _cancel(recharge, reason, message)
            return recharge
        recharge.attempts += 1  # sent: from now on a card removal leaves it to its webhook or the resume
        recharge.save(update_fields=["attempts", "updated_at"])
    try:
        charge = stripe_provider.payment_intent_off_session_create(
            amount_cents=recharge.amount_cents,
            customer_id=recharge.provider_customer_id,
            payment_method_id=recharge.provider_payment_method_id,
            metadata={"recharge_id": str(recharge.id), "account_id": str(recharge.account_id)},
            idempotency_key=f"recharge:{recharge.id}",
        )
    except PaymentProviderError as exc:
        Recharge.objects.filter(pk=recharge.pk).update(last_error=exc.message[:2000], updated_at=timezone.now())
        raise
    with transaction.atomic(durable=True):
        locked = locks.recharge_lock(recharge_id=recharge.pk)
        assert locked is not None  # a recharge is never deleted
        account, recharge = locked
        recharge.provider_payment_id = recharge.provider_payment_id or charge.payment_intent_id
        if recharge.status == RechargeStatus.PENDING:
            if charge.declined:
                _fail(account, recharge, RechargeFailure.DECLINED, charge.message or "declined")
            else:
                recharge.status = RechargeStatus.PROCESSING  # credited when payment_intent.succeeded arrives
                _entered(recharge)
        recharge.save()
    return recharge


def _not_chargeable(account: CreditAccount, recharge: Recharge) -> tuple[RechargeFailure, str] | None:
    """Why a pending recharge must not be sent, and the message (None when it may): auto-recharge turned off, already
    sent ``MAX_CHARGE_ATTEMPTS`` times (each one a provider error: given up), or its card no longer the account's
    saved one (removed or replaced since the recharge was recorded). ``account`` is locked."""
    if not AutoRechargeSettings.objects.filter(pk=account.pk, enabled=True).exists():
        return RechargeFailure.CANCELLED, "auto-recharge is off"
    if recharge.attempts >= MAX_CHARGE_ATTEMPTS and recharge.created_at <= timezone.now() - GIVE_UP_AFTER:
        since = f"{recharge.created_at:%Y-%m-%d %H:%M}"
        return RechargeFailure.GAVE_UP, f"{recharge.attempts} sends failed at the provider since {since} UTC"
    still_saved = SavedPaymentMethod.objects.filter(
        ACTIVE, account_id=recharge.account_id, provider_customer_id=recharge.provider_customer_id,
        provider_payment_method_id=recharge.provider_payment_method_id,
    ).exists()
    return None if still_saved else (RechargeFailure.CANCELLED, "the payment method was removed or replaced")


def _cancel(recharge: Recharge, reason: RechargeFailure, message: str) -> None:
    """Fails a locked pending recharge without sending it (again) to Stripe (not a decline: no failure streak)."""
    recharge.status, recharge.failure_reason = RechargeStatus.FAILED, reason
    recharge.last_error = message[:2000]
    recharge.settled_at = timezone.now()
    recharge.save(update_fields=["status", "failure_reason", "last_error", "settled_at", "updated_at"])
    _entered(recharge)
    _recharge_event(recharge, OutboundEventType.AUTO_RECHARGE_FAILED)
    logger.info("recharge %s of %s not sent: %s (%s)", recharge.pk, recharge.account_id, reason, message)


def recharges_cancel(*, account_id: uuid.UUID | str, reason: RechargeFailure, message: str) -> int:
    """Fails the account's recharges never sent to Stripe (``pending`` with no ``attempts``); for a caller
    holding the account's lock, inside its transaction (``payments.payment_methods.payment_method_remove``). One
    sent (``processing``, or ``pending`` with its answer not recorded yet) may have been charged: it is left to
    its webhook or to the resume, which re-checks the card. Returns how many it failed."""
    now = timezone.now()
    cancelled = Recharge.objects.filter(account_id=account_id, status=RechargeStatus.PENDING, attempts=0).update(
        status=RechargeStatus.FAILED, failure_reason=reason, last_error=message[:2000], settled_at=now, updated_at=now
    )
    metrics.recharge_transition(RechargeStatus.FAILED, reason, cancelled)
    return cancelled


def _fail(account: CreditAccount, recharge: Recharge, reason: RechargeFailure, message: str) -> None:
    """Marks a locked in-flight recharge failed (its locked ``account`` first); the third failure in a row (not
    counting cancellations) turns auto-recharge off."""
    recharge.status, recharge.failure_reason = RechargeStatus.FAILED, reason
    recharge.last_error = message[:2000]
    recharge.settled_at = timezone.now()
    recharge.save()
    _entered(recharge)
    _recharge_event(recharge, OutboundEventType.AUTO_RECHARGE_FAILED)
    settled = [RechargeStatus.SUCCEEDED, RechargeStatus.FAILED]
    recent = list(
        Recharge.objects.filter(account_id=recharge.account_id, status__in=settled)
        .exclude(failure_reason__in=CANCELLATIONS)
        .order_by("-created_at").values_list("status", flat=True)[:FAILURES_BEFORE_DISABLE]
    )
    if len(recent) == FAILURES_BEFORE_DISABLE and all(s == RechargeStatus.FAILED for s in recent):
        auto_recharge_disable(account=account)
        logger.warning("auto-recharge of %s turned off after %s failures", recharge.account_id, len(recent))


# --- webhook events ----------------------------------------------------------------------------------------------


def recharge_event_apply(event_type: str, payload: dict[str, Any]) -> Handled:
    """``payment_intent.succeeded`` / ``payment_failed``: settles the recharge the PaymentIntent names (inside the
    webhook's transaction). (A top-up's PaymentIntent, naming an order, is routed to ``payments.payment_methods``
    before this.)"""
    obj = (payload.get("data") or {}).get("object") or {}
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    recharge_ref = metadata.get("recharge_id")
    if not isinstance(recharge_ref, str):
        return ignored("the payment intent names no recharge")
    try:
        recharge_id = uuid.UUID(recharge_ref)
    except ValueError:
        return ignored("the payment intent names no recharge of this service")
    locked = locks.recharge_lock(recharge_id=recharge_id)  # the account before its recharge
    if locked is None:
        return ignored("unknown recharge")
    account, recharge = locked
    if obj.get("id") and recharge.provider_payment_id and obj["id"] != recharge.provider_payment_id:
        return ignored(f"payment intent {obj['id']} is not the recharge's")
    recharge.provider_payment_id = recharge.provider_payment_id or str(obj.get("id") or "")
    if event_type == PI_FAILED:
        if recharge.status in IN_FLIGHT:
            error = obj.get("last_payment_error") if isinstance(obj.get("last_payment_error"), dict) else {}
            _fail(account, recharge, RechargeFailure.DECLINED, str(error.get("message") or "the payment failed"))
            return processed()
        recharge.save()
        return processed(note=f"failure ignored: the recharge is {recharge.status}")
    if recharge.status == RechargeStatus.SUCCEEDED:
        return processed(note="already credited")
    received = obj.get("amount_received", obj.get("amount"))
    if received != recharge.amount_cents or str(obj.get("currency", "")).lower() != "usd":
        return ignored(f"amount {received} differs from the recharge's {recharge.amount_cents} cents")
    result = credits_grant(
        account_id=recharge.account_id,
        amount=recharge.credits,
        payment_amount_usd=recharge.amount_usd,
        description="Auto-recharge",
        reference=f"recharge:{recharge.id}",
        metadata={"recharge_id": str(recharge.id), "payment_intent": recharge.provider_payment_id},
        idempotency_key=f"recharge:{recharge.id}",
    )
    recharge.status, recharge.failure_reason = RechargeStatus.SUCCEEDED, ""
    recharge.ledger_entry_id = result.entry.id
    recharge.settled_at = timezone.now()
    recharge.last_error = ""
    recharge.save()
    _entered(recharge)
    _recharge_event(recharge, OutboundEventType.AUTO_RECHARGE_SUCCEEDED)
    return processed()


def _entered(recharge: Recharge) -> None:
    """A recharge entered its (new) state: counted (``billing_recharge_transitions_total``) and logged."""
    metrics.recharge_transition(recharge.status, recharge.failure_reason)
    logger.info("recharge %s", recharge.status, extra={
        "recharge_id": str(recharge.pk), "account_id": str(recharge.account_id),
        "failure_reason": recharge.failure_reason or None, "amount_usd": recharge.amount_usd})


def _recharge_event(recharge: Recharge, event_type: str) -> None:
    """The platform hears of a settled recharge (``auto_recharge.succeeded`` / ``failed``) when its transaction
    commits."""
    outbound.event_record(
        platform_id=recharge.account.platform_id, type=event_type, account_id=recharge.account_id,
        data={"recharge_id": recharge.pk, "status": recharge.status, "failure_reason": recharge.failure_reason or None,
              "message": recharge.last_error or None, "amount_usd": recharge.amount_usd, "credits": recharge.credits,
              "ledger_entry_id": recharge.ledger_entry_id, "settled_at": recharge.settled_at},
    )


# --- upkeep --------------------------------------------------------------------------------------------------


def recharges_stalled(*, older_than_seconds: int = 60) -> list[uuid.UUID]:
    """Pending recharges whose charge was never recorded (a worker died): charged again with the same key."""
    cutoff = timezone.now() - timezone.timedelta(seconds=older_than_seconds)
    return list(
        Recharge.objects.filter(status=RechargeStatus.PENDING, updated_at__lt=cutoff).values_list("id", flat=True)
    )


def recharges_unconfirmed(*, older_than_seconds: int = RECONCILE_AFTER_SECONDS) -> list[uuid.UUID]:
    """Processing recharges (accepted by Stripe, ``provider_payment_id`` known) whose webhook has not settled them
    for ``older_than_seconds``: one lost would keep the account's slot in flight forever."""
    cutoff = timezone.now() - timezone.timedelta(seconds=older_than_seconds)
    return list(
        Recharge.objects.filter(status=RechargeStatus.PROCESSING, updated_at__lt=cutoff)
        .exclude(provider_payment_id="").order_by("updated_at").values_list("id", flat=True)[:500]
    )


_RECONCILED_EVENTS = {  # a PaymentIntent's status at Stripe -> the webhook event it stands for
    "succeeded": PI_SUCCEEDED,
    "requires_payment_method": PI_FAILED,
    "canceled": PI_FAILED,
}


def recharge_reconcile(*, recharge_id: uuid.UUID | str) -> str:
    """Settles a processing recharge from its PaymentIntent as Stripe has it now, exactly as the webhook would
    (``recharge_event_apply``, in its own transaction, the account then the recharge locked): succeeded credits
    it (once: the ledger key ``recharge:<id>``, so a late webhook changes nothing), requires_payment_method or
    canceled fails it, anything else (processing, requires_action) leaves it for a later run. Stripe is read with
    no transaction open; a provider failure raises ``PaymentProviderError`` and changes nothing. Returns the
    PaymentIntent's status ("" when the recharge is no longer processing)."""
    recharge = Recharge.objects.filter(pk=recharge_id, status=RechargeStatus.PROCESSING).first()
    if recharge is None or not recharge.provider_payment_id:
        return ""
    intent = stripe_provider.payment_intent_retrieve(payment_intent_id=recharge.provider_payment_id)
    status = str(intent.get("status") or "")
    event_type = _RECONCILED_EVENTS.get(status)
    if event_type is None:
        return status
    with transaction.atomic(durable=True):
        result = recharge_event_apply(event_type, {"data": {"object": intent}})
    logger.info("recharge %s reconciled from Stripe (%s): %s %s", recharge.pk, status, result.status, result.note)
    return status


def recharges_reconcile(*, older_than_seconds: int = RECONCILE_AFTER_SECONDS) -> int:
    """Reconciles every processing recharge left unsettled for ``older_than_seconds`` (``recharge_reconcile``);
    one Stripe could not answer for is left for the next run. Returns how many were settled."""
    settled = 0
    for recharge_id in recharges_unconfirmed(older_than_seconds=older_than_seconds):
        try:
            status = recharge_reconcile(recharge_id=recharge_id)
        except PaymentProviderError:
            logger.warning("recharge %s not reconciled: Stripe did not answer", recharge_id)
            continue
        settled += status in _RECONCILED_EVENTS
    return settled
