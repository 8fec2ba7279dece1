"""Every write of subscriptions.

Subscriptions (``subscription_start``, ``subscription_change_plan``, ``subscription_set_status``) are written
for payment webhooks, which arrive late, twice, or out of order:
- A subscription is found by its id or by its provider's id (``provider`` + ``provider_subscription_id``).
- Idempotent: starting a provider subscription that is already recorded returns it unchanged; changing to
  the plan or status it already has changes nothing. ``SubscriptionResult.changed`` says which happened.
- ``as_of`` (the provider event's time) orders events: one older than the latest applied is ignored.
- An account has at most one current subscription. Starting another is a 409 ``SubscriptionExists`` unless
  ``replace_current``: then the current one is canceled (a ``replaced`` change) and the new one starts; the
  caller cancels the old one at its provider.
- Canceled and expired are final: any other status afterwards is a 409 ``SubscriptionEnded``.
- ``previous_plan`` follows the account's plan changes: a start records the plan the account is leaving
  (none: the free trial), a plan change records the plan it replaces.
- Every start, replacement, plan change and status change writes a ``SubscriptionChange`` row.

Each service runs in one transaction (``transaction.atomic``, not durable: a webhook processor may call it
inside its own transaction that also marks the provider event processed, so both commit together). They
make no network call and queue no side effect.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import outbound
from accounts.outbound_models import OutboundEventType
from billing_service.errors import InvalidInput
from credits.errors import AccountNotFound
from credits.models import CreditAccount
from credits.services.common import actor_id_of
from subscriptions import selectors
from subscriptions.errors import (
    PlanNotFound,
    SubscriptionEnded,
    SubscriptionExists,
    SubscriptionNotFound,
    SubscriptionOwnerMismatch,
)
from subscriptions.locks import account_subscriptions_lock, subscription_lock
from subscriptions.models import (
    CURRENT_STATUSES,
    ENDED_STATUSES,
    BillingCycle,
    ChangeKind,
    Plan,
    Provider,
    Subscription,
    SubscriptionChange,
    SubscriptionStatus,
)
from subscriptions.services.common import UNSET, as_uuid
from subscriptions.validation import provider_id_problem

# --- subscriptions ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubscriptionResult:
    subscription: Subscription
    changed: bool  # False: a replay, an event older than the last one applied, or already in that state


def _require_choice(value: object, choices: type, name: str, allowed: tuple | None = None) -> None:
    allowed = allowed if allowed is not None else tuple(choices.values)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {[str(a) for a in allowed]}, got {value!r}")


def _require_aware(value: datetime | None, name: str) -> None:
    if value is not None and (not isinstance(value, datetime) or timezone.is_naive(value)):
        raise ValueError(f"{name} must be a timezone-aware datetime or None, got {value!r}")


def _require_provider_id(value: object, name: str) -> None:
    problem = provider_id_problem(value)
    if problem:
        raise ValueError(f"{name}: {problem} Got {value!r}")


def _check_period(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and end <= start:
        raise InvalidInput(
            "Invalid input: current_period_end.",
            details={"current_period_end": ["Must be after current_period_start."]},
        )


def _record(
    subscription: Subscription,
    kind: str,
    *,
    plan_from: Plan | None = None,
    plan_to: Plan | None = None,
    status_from: str = "",
    status_to: str = "",
    as_of: datetime | None,
    actor: AbstractBaseUser | None,
) -> None:
    SubscriptionChange.objects.create(
        subscription=subscription,
        kind=kind,
        plan_from=plan_from,
        plan_to=plan_to,
        status_from=status_from,
        status_to=status_to,
        billing_cycle=subscription.billing_cycle,
        as_of=as_of,
        actor_id=actor_id_of(actor),
    )
    # The platform hears of every change when its transaction commits.
    outbound.event_record(
        platform_id=subscription.plan.platform_id, type=OutboundEventType.SUBSCRIPTION_UPDATED,
        account_id=subscription.account_id,
        data={"subscription_id": subscription.pk, "change": kind, "status": subscription.status,
              "plan": subscription.plan.slug, "plan_from": plan_from.slug if plan_from else None,
              "status_from": status_from or None, "billing_cycle": subscription.billing_cycle,
              "current_period_end": subscription.current_period_end, "provider": subscription.provider},
    )


def _end(subscription: Subscription, status: str, *, canceled_at: datetime | None, now: datetime) -> None:
    subscription.status = status
    subscription.ended_at = now
    if status == SubscriptionStatus.CANCELED and subscription.canceled_at is None:
        subscription.canceled_at = canceled_at or now


@transaction.atomic
def subscription_start(
    *,
    account_id: uuid.UUID | str,
    plan_id: uuid.UUID | str,
    billing_cycle: str,
    provider: str,
    status: str = SubscriptionStatus.ACTIVE,
    provider_customer_id: str = "",
    provider_subscription_id: str = "",
    current_period_start: datetime | None = None,
    current_period_end: datetime | None = None,
    trial_end: datetime | None = None,
    cancel_at_period_end: bool = False,
    replace_current: bool = False,
    as_of: datetime | None = None,
    actor: AbstractBaseUser | None = None,
) -> SubscriptionResult:
    """Puts the account on ``plan_id`` (a plan of the account's platform, active or not: the provider may
    already have charged for a plan deactivated since checkout).

    ``provider_subscription_id`` is required for Stripe and Creem; for a manual subscription it is optional,
    and giving one (any unique string) makes a retried start return the first result. ``AccountNotFound`` and
    ``PlanNotFound`` (404), ``SubscriptionExists`` (409, unless ``replace_current``),
    ``SubscriptionOwnerMismatch`` (409: the provider id is another account's); ``ValueError`` for arguments of
    the wrong kind."""
    _start_arguments_check(
        billing_cycle=billing_cycle, provider=provider, status=status, provider_customer_id=provider_customer_id,
        provider_subscription_id=provider_subscription_id, moments={
            "current_period_start": current_period_start, "current_period_end": current_period_end,
            "trial_end": trial_end, "as_of": as_of,
        }, flags=(cancel_at_period_end, replace_current),
    )
    account_id, plan = _account_and_plan(account_id, plan_id)
    account_subscriptions_lock(account_id=account_id)
    existing = selectors.subscription_by_provider(
        provider=provider, provider_subscription_id=provider_subscription_id
    )
    if existing is not None:
        if str(existing.account_id) != str(account_id):
            raise SubscriptionOwnerMismatch(details={"provider_subscription_id": provider_subscription_id})
        return SubscriptionResult(existing, changed=False)

    previous_plan = _current_replace(account_id, plan, replace_current=replace_current, as_of=as_of, actor=actor)
    subscription = Subscription(
        account_id=account_id,
        plan=plan,
        previous_plan=previous_plan,
        status=status,
        billing_cycle=billing_cycle,
        current_period_start=current_period_start,
        current_period_end=current_period_end,
        trial_end=trial_end,
        cancel_at_period_end=cancel_at_period_end,
        provider=provider,
        provider_customer_id=provider_customer_id,
        provider_subscription_id=provider_subscription_id,
        synced_at=as_of,
    )
    _insert(subscription)
    _record(
        subscription,
        ChangeKind.STARTED,
        plan_from=previous_plan,
        plan_to=plan,
        status_to=status,
        as_of=as_of,
        actor=actor,
    )
    return SubscriptionResult(subscription, changed=True)


def _start_arguments_check(
    *, billing_cycle: str, provider: str, status: str, provider_customer_id: str, provider_subscription_id: str,
    moments: dict[str, datetime | None], flags: tuple[bool, bool],
) -> None:
    """``ValueError`` for arguments of ``subscription_start`` of the wrong kind."""
    _require_choice(billing_cycle, BillingCycle, "billing_cycle")
    _require_choice(provider, Provider, "provider")
    _require_choice(status, SubscriptionStatus, "status", allowed=CURRENT_STATUSES)
    _require_provider_id(provider_customer_id, "provider_customer_id")
    _require_provider_id(provider_subscription_id, "provider_subscription_id")
    if provider != Provider.MANUAL and not provider_subscription_id:
        raise ValueError(f"provider_subscription_id is required for {provider} subscriptions")
    for name, value in moments.items():
        _require_aware(value, name)
    if not all(isinstance(flag, bool) for flag in flags):
        raise ValueError("cancel_at_period_end and replace_current must be booleans")
    _check_period(moments["current_period_start"], moments["current_period_end"])


def _account_and_plan(account_id: object, plan_id: object) -> tuple[uuid.UUID, Plan]:
    """The account's id and the plan of its platform ``plan_id`` names (``AccountNotFound`` / ``PlanNotFound``)."""
    account_uuid = as_uuid(account_id)
    platform_id = (
        None
        if account_uuid is None
        else CreditAccount.objects.filter(pk=account_uuid).values_list("platform_id", flat=True).first()
    )
    if platform_id is None:
        raise AccountNotFound(details={"account_id": str(account_id)})
    plan = _plan_of_platform(plan_id, platform_id)
    if plan is None:
        raise PlanNotFound(details={"plan_id": str(plan_id)})
    return account_uuid, plan


def _current_replace(
    account_id: uuid.UUID, plan: Plan, *, replace_current: bool, as_of: datetime | None,
    actor: AbstractBaseUser | None,
) -> Plan | None:
    """Ends the account's current subscription (``SubscriptionExists`` unless ``replace_current``); returns the
    plan the new one comes from (None: the account was on the free trial)."""
    current = selectors.subscription_current(account_id=account_id)
    if current is None:
        return None
    if not replace_current:
        raise SubscriptionExists(
            details={"subscription_id": str(current.pk), "plan": current.plan.slug, "status": current.status}
        )
    current = subscription_lock(subscription_id=current.pk)
    status_from = current.status
    _end(current, SubscriptionStatus.CANCELED, canceled_at=None, now=timezone.now())
    current.save(update_fields=["status", "ended_at", "canceled_at", "updated_at"])
    _record(current, ChangeKind.REPLACED, plan_from=current.plan, status_from=status_from,
            status_to=current.status, as_of=as_of, actor=actor)
    return current.plan if current.plan_id != plan.pk else current.previous_plan


def _insert(subscription: Subscription) -> None:
    """Inserts a new subscription; ``SubscriptionOwnerMismatch`` when another account inserted its provider id."""
    try:
        with transaction.atomic():  # a savepoint: another account may be inserting this provider id right now
            subscription.save(force_insert=True)
    except IntegrityError as exc:
        if (
            getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)
            == "subscription_unique_provider_id"
        ):
            raise SubscriptionOwnerMismatch(
                details={"provider_subscription_id": subscription.provider_subscription_id}
            ) from None
        raise


def _plan_of_platform(plan_id: object, platform_id: int) -> Plan | None:
    plan_uuid = as_uuid(plan_id)
    return None if plan_uuid is None else Plan.objects.filter(pk=plan_uuid, platform_id=platform_id).first()


def _locked(
    subscription_id: uuid.UUID | str | None, provider: str | None, provider_subscription_id: str | None
) -> Subscription:
    """The subscription named by its id or by its provider's id, locked (after its account's lock)."""
    if (subscription_id is None) == (provider is None and provider_subscription_id is None):
        raise ValueError(
            "name the subscription by subscription_id or by provider and provider_subscription_id"
        )
    if subscription_id is not None:
        subscription_uuid = as_uuid(subscription_id)
        found = (
            None
            if subscription_uuid is None
            else Subscription.objects.filter(pk=subscription_uuid).values_list("pk", "account_id").first()
        )
    else:
        _require_choice(provider, Provider, "provider")
        if not isinstance(provider_subscription_id, str) or not provider_subscription_id:
            raise ValueError("provider_subscription_id must be a non-empty string")
        found = (
            Subscription.objects.filter(provider=provider, provider_subscription_id=provider_subscription_id)
            .values_list("pk", "account_id")
            .first()
        )
    if found is None:
        details = (
            {"subscription_id": str(subscription_id)}
            if subscription_id is not None
            else {"provider": provider, "provider_subscription_id": provider_subscription_id}
        )
        raise SubscriptionNotFound(details=details)
    pk, account_id = found
    account_subscriptions_lock(account_id=account_id)
    return subscription_lock(subscription_id=pk)


def _is_stale(subscription: Subscription, as_of: datetime | None) -> bool:
    return as_of is not None and subscription.synced_at is not None and as_of < subscription.synced_at


def _mark_synced(subscription: Subscription, as_of: datetime | None, update_fields: list[str]) -> None:
    if as_of is not None and (subscription.synced_at is None or as_of > subscription.synced_at):
        subscription.synced_at = as_of
        update_fields.append("synced_at")


@transaction.atomic
def subscription_change_plan(
    *,
    plan_id: uuid.UUID | str,
    subscription_id: uuid.UUID | str | None = None,
    provider: str | None = None,
    provider_subscription_id: str | None = None,
    billing_cycle: str | None = None,
    as_of: datetime | None = None,
    actor: AbstractBaseUser | None = None,
) -> SubscriptionResult:
    """Moves a current subscription to another plan of its account's platform (and, with ``billing_cycle``,
    to that cycle); the plan it leaves becomes ``previous_plan``. The same plan and cycle change nothing.
    ``SubscriptionNotFound`` / ``PlanNotFound`` (404), ``SubscriptionEnded`` (409)."""
    if billing_cycle is not None:
        _require_choice(billing_cycle, BillingCycle, "billing_cycle")
    _require_aware(as_of, "as_of")
    subscription = _locked(subscription_id, provider, provider_subscription_id)
    if _is_stale(subscription, as_of):
        return SubscriptionResult(subscription, changed=False)
    if not subscription.is_current:
        raise SubscriptionEnded(
            details={"subscription_id": str(subscription.pk), "status": subscription.status}
        )
    platform_id = CreditAccount.objects.filter(pk=subscription.account_id).values_list(
        "platform_id", flat=True
    )[0]
    plan = _plan_of_platform(plan_id, platform_id)
    if plan is None:
        raise PlanNotFound(details={"plan_id": str(plan_id)})

    update_fields: list[str] = []
    old_plan = subscription.plan
    if plan.pk != old_plan.pk:
        subscription.previous_plan, subscription.plan = old_plan, plan
        update_fields += ["plan", "previous_plan"]
    if billing_cycle is not None and billing_cycle != subscription.billing_cycle:
        subscription.billing_cycle = billing_cycle
        update_fields.append("billing_cycle")
    changed = bool(update_fields)
    _mark_synced(subscription, as_of, update_fields)
    if update_fields:
        subscription.save(update_fields=[*update_fields, "updated_at"])
    if changed:
        _record(
            subscription,
            ChangeKind.PLAN_CHANGED,
            plan_from=old_plan,
            plan_to=plan,
            status_from=subscription.status,
            status_to=subscription.status,
            as_of=as_of,
            actor=actor,
        )
    return SubscriptionResult(subscription, changed=changed)


@transaction.atomic
def subscription_set_status(
    *,
    status: str,
    subscription_id: uuid.UUID | str | None = None,
    provider: str | None = None,
    provider_subscription_id: str | None = None,
    current_period_start: datetime | None = UNSET,
    current_period_end: datetime | None = UNSET,
    trial_end: datetime | None = UNSET,
    cancel_at_period_end: bool = UNSET,
    canceled_at: datetime | None = UNSET,
    as_of: datetime | None = None,
    actor: AbstractBaseUser | None = None,
) -> SubscriptionResult:
    """Sets a subscription's status and, when given, its period, trial end, cancellation flag and time (a
    renewal: ``active`` with the new period). Canceled and expired are final. ``SubscriptionNotFound`` (404),
    ``SubscriptionEnded`` (409), ``InvalidInput`` (400) for a period that ends before it starts."""
    _require_choice(status, SubscriptionStatus, "status")
    fields = {
        "current_period_start": current_period_start,
        "current_period_end": current_period_end,
        "trial_end": trial_end,
        "canceled_at": canceled_at,
    }
    fields = {name: value for name, value in fields.items() if value is not UNSET}
    for name, value in fields.items():
        _require_aware(value, name)
    if cancel_at_period_end is not UNSET:
        if not isinstance(cancel_at_period_end, bool):
            raise ValueError("cancel_at_period_end must be a boolean")
        fields["cancel_at_period_end"] = cancel_at_period_end
    _require_aware(as_of, "as_of")
    subscription = _locked(subscription_id, provider, provider_subscription_id)
    if _is_stale(subscription, as_of):
        return SubscriptionResult(subscription, changed=False)
    if not subscription.is_current:
        if status == subscription.status:
            return SubscriptionResult(subscription, changed=False)
        raise SubscriptionEnded(
            details={"subscription_id": str(subscription.pk), "status": subscription.status}
        )
    _check_period(
        fields.get("current_period_start", subscription.current_period_start),
        fields.get("current_period_end", subscription.current_period_end),
    )

    update_fields = [name for name, value in fields.items() if getattr(subscription, name) != value]
    for name in update_fields:
        setattr(subscription, name, fields[name])
    status_from = subscription.status
    if status != status_from:
        if status in ENDED_STATUSES:
            _end(subscription, status, canceled_at=fields.get("canceled_at"), now=timezone.now())
            update_fields += ["status", "ended_at", "canceled_at"]
        else:
            subscription.status = status
            update_fields.append("status")
    changed = bool(update_fields)
    _mark_synced(subscription, as_of, update_fields)
    if update_fields:
        subscription.save(update_fields=[*dict.fromkeys(update_fields), "updated_at"])
    if status != status_from:
        _record(
            subscription,
            ChangeKind.STATUS_CHANGED,
            plan_from=subscription.plan,
            plan_to=subscription.plan,
            status_from=status_from,
            status_to=status,
            as_of=as_of,
            actor=actor,
        )
    return SubscriptionResult(subscription, changed=changed)
