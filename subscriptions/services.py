"""Every write of plans and subscriptions.

Plans (``plan_create``, ``plan_update``):
- Values are checked by ``subscriptions.validation.plan_problems`` (400 ``InvalidInput`` naming the fields);
  a slug, Stripe price id or Creem product id already used by another plan of the platform is a 409
  ``PlanConflict`` (a Stripe price id counts whether it is another plan's monthly or yearly price). Writes of
  one platform's plans are serialized (``locks.platform_plans_lock``), so these checks cannot race.
- Plans are never deleted: deactivate them (``is_active=False``). Subscribers keep an inactive plan.
- The slug is fixed once created: ``current_plan`` and ``previous_plan`` report it, and frontends key on it.
- Stripe prices are immutable, so a plan's price for a cycle that is sold through a Stripe price may only
  change together with that cycle's Stripe price id (a new price created in Stripe), or with the id cleared.
  Otherwise the catalogue would show one amount while Stripe charges another. Creem product ids are not
  tied to an amount here: a Creem product's price is edited in Creem itself.
- Setting ``rollover_policy`` to something other than "capped" without naming ``rollover_cap`` clears the cap.

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
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Platform
from billing_service.errors import InvalidInput
from billing_service.inputs import uuid_or_none
from credits.errors import AccountNotFound
from credits.models import CreditAccount
from credits.services.common import actor_id_of
from subscriptions import selectors
from subscriptions.errors import (
    PlanConflict,
    PlanNotFound,
    SubscriptionEnded,
    SubscriptionExists,
    SubscriptionNotFound,
    SubscriptionOwnerMismatch,
)
from subscriptions.locks import account_subscriptions_lock, platform_plans_lock, subscription_lock
from subscriptions.models import (
    CURRENT_STATUSES,
    ENDED_STATUSES,
    BillingCycle,
    ChangeKind,
    Plan,
    Provider,
    RolloverPolicy,
    Subscription,
    SubscriptionChange,
    SubscriptionStatus,
)
from subscriptions.validation import PLAN_FIELDS, plan_problems, provider_id_problem


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # "leave this field as it is" in plan_update and subscription_set_status


def as_uuid(value: object) -> uuid.UUID | None:
    """``value`` as a UUID, or None when it cannot be one (an id that names nothing)."""
    if isinstance(value, uuid.UUID):
        return value
    return uuid_or_none(value)


def _invalid(problems: dict[str, list[str]]) -> InvalidInput:
    return InvalidInput(f"Invalid input: {', '.join(problems)}.", details=problems)


# --- plans -----------------------------------------------------------------------------------------------

# The unique constraints on plans, and the field each one is about (for a 409 that names it).
_PLAN_CONSTRAINT_FIELDS = {
    "plan_unique_slug_per_platform": "slug",
    "plan_unique_stripe_price_monthly": "stripe_price_monthly",
    "plan_unique_stripe_price_yearly": "stripe_price_yearly",
    "plan_unique_creem_product": "creem_product_id",
}


def plan_conflicts(
    *, platform_id: int, values: dict[str, Any], exclude: uuid.UUID | None
) -> dict[str, list[str]]:
    """The fields of ``values`` whose slug or provider id another plan of the platform already uses."""
    others = Plan.objects.filter(platform_id=platform_id)
    if exclude is not None:
        others = others.exclude(pk=exclude)
    conflicts: dict[str, list[str]] = {}

    def taken(field: str, query: Q) -> None:
        other = others.filter(query).values_list("slug", flat=True).first()
        if other is not None:
            conflicts[field] = [f'Already used by the plan "{other}".']

    taken("slug", Q(slug=values["slug"]))
    for field in ("stripe_price_monthly", "stripe_price_yearly"):
        if values[field]:
            taken(field, Q(stripe_price_monthly=values[field]) | Q(stripe_price_yearly=values[field]))
    if values["creem_product_id"]:
        taken("creem_product_id", Q(creem_product_id=values["creem_product_id"]))
    return conflicts


def _raise_for_conflicts(conflicts: dict[str, list[str]]) -> None:
    if conflicts:
        raise PlanConflict(
            f"Another plan of this platform already uses: {', '.join(conflicts)}.", details=conflicts
        )


def _save_plan(plan: Plan, *, update_fields: list[str] | None = None) -> None:
    """Saves in a savepoint: a unique violation (the lock makes it unexpected) is still a 409, not a 500."""
    try:
        with transaction.atomic():
            plan.save(update_fields=update_fields, force_insert=update_fields is None)
    except IntegrityError as exc:
        name = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)
        if name in _PLAN_CONSTRAINT_FIELDS:
            field = _PLAN_CONSTRAINT_FIELDS[name]
            raise PlanConflict(details={field: ["Already used by another plan of this platform."]}) from None
        raise


@transaction.atomic
def plan_create(
    *,
    platform: Platform,
    slug: str,
    name: str,
    price_monthly: int,
    price_yearly: int,
    credits_included: Decimal,
    description: str = "",
    currency: str = "USD",
    features: list[str] | None = None,
    free_trial: bool = False,
    unlimited_credits: bool = False,
    rollover_policy: str = RolloverPolicy.NONE,
    rollover_cap: Decimal | None = None,
    purchasable: bool = True,
    is_active: bool = True,
    stripe_price_monthly: str = "",
    stripe_price_yearly: str = "",
    creem_product_id: str = "",
    sort_order: int = 0,
    actor: AbstractBaseUser | None = None,
) -> Plan:
    """Adds a plan to ``platform``. ``InvalidInput`` (400) for bad values, ``PlanConflict`` (409) for a slug
    or provider id another plan of the platform has. (``actor``: for a future audit trail of plans.)"""
    arguments = locals()
    values = {field: arguments[field] for field in PLAN_FIELDS}
    if values["features"] is None:
        values["features"] = []
    elif isinstance(values["features"], (list, tuple)):
        values["features"] = list(values["features"])  # a copy: the plan never shares the caller's list
    problems = plan_problems(values)
    if problems:
        raise _invalid(problems)
    platform_plans_lock(platform_id=platform.pk)
    _raise_for_conflicts(plan_conflicts(platform_id=platform.pk, values=values, exclude=None))
    plan = Plan(platform=platform, **values)
    _save_plan(plan)
    return plan


def plan_update_problems(plan: Plan, changes: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The plan's values after ``changes`` and every problem with them (except conflicts with other plans).

    Also used by the admin form, to show the problems on the form before the service is called."""
    changes = dict(changes)
    problems: dict[str, list[str]] = {}
    if "slug" in changes and changes["slug"] != plan.slug:
        problems["slug"] = [f'Cannot be changed (it is "{plan.slug}"): create a new plan instead.']
    if (
        "rollover_policy" in changes
        and changes["rollover_policy"] != RolloverPolicy.CAPPED
        and "rollover_cap" not in changes
    ):
        changes["rollover_cap"] = None  # leaving "capped" drops the cap
    merged = {field: getattr(plan, field) for field in PLAN_FIELDS} | changes
    problems = plan_problems(merged) | problems
    for cycle in ("monthly", "yearly"):
        price, price_id = f"price_{cycle}", f"stripe_price_{cycle}"
        old_id = getattr(plan, price_id)
        if (
            old_id
            and price not in problems
            and merged[price] != getattr(plan, price)
            and merged[price_id] == old_id
        ):
            problems[price] = [
                (
                    f"This cycle is sold through the Stripe price {old_id}, and Stripe prices cannot change: "
                    f"create a price for the new amount in Stripe and send its id as {price_id} in the same "
                    f"update (or clear {price_id})."
                )
            ]
    return merged, problems


@transaction.atomic
def plan_update(
    *,
    plan_id: uuid.UUID | str,
    slug: str = UNSET,
    name: str = UNSET,
    description: str = UNSET,
    price_monthly: int = UNSET,
    price_yearly: int = UNSET,
    currency: str = UNSET,
    credits_included: Decimal = UNSET,
    features: list[str] = UNSET,
    free_trial: bool = UNSET,
    unlimited_credits: bool = UNSET,
    rollover_policy: str = UNSET,
    rollover_cap: Decimal | None = UNSET,
    purchasable: bool = UNSET,
    is_active: bool = UNSET,
    stripe_price_monthly: str = UNSET,
    stripe_price_yearly: str = UNSET,
    creem_product_id: str = UNSET,
    sort_order: int = UNSET,
    actor: AbstractBaseUser | None = None,
) -> Plan:
    """Changes the given fields of a plan (the others stay); see the module's rules. ``PlanNotFound`` (404),
    ``InvalidInput`` (400), ``PlanConflict`` (409). Nothing is written when nothing changes."""
    arguments = locals()
    given = {field: arguments[field] for field in PLAN_FIELDS}
    changes = {field: value for field, value in given.items() if value is not UNSET}
    plan_id = as_uuid(plan_id)
    platform_id = (
        None
        if plan_id is None
        else Plan.objects.filter(pk=plan_id).values_list("platform_id", flat=True).first()
    )
    if platform_id is None:
        raise PlanNotFound()
    platform_plans_lock(platform_id=platform_id)
    plan = Plan.objects.select_for_update().get(pk=plan_id)
    merged, problems = plan_update_problems(plan, changes)
    if problems:
        raise _invalid(problems)
    _raise_for_conflicts(plan_conflicts(platform_id=platform_id, values=merged, exclude=plan.pk))
    changed = [field for field in PLAN_FIELDS if merged[field] != getattr(plan, field)]
    if not changed:
        return plan
    for field in changed:
        setattr(plan, field, merged[field])
    _save_plan(plan, update_fields=[*changed, "updated_at"])
    return plan


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
    _require_choice(billing_cycle, BillingCycle, "billing_cycle")
    _require_choice(provider, Provider, "provider")
    _require_choice(status, SubscriptionStatus, "status", allowed=CURRENT_STATUSES)
    _require_provider_id(provider_customer_id, "provider_customer_id")
    _require_provider_id(provider_subscription_id, "provider_subscription_id")
    if provider != Provider.MANUAL and not provider_subscription_id:
        raise ValueError(f"provider_subscription_id is required for {provider} subscriptions")
    for name, value in (
        ("current_period_start", current_period_start),
        ("current_period_end", current_period_end),
        ("trial_end", trial_end),
        ("as_of", as_of),
    ):
        _require_aware(value, name)
    if not isinstance(cancel_at_period_end, bool) or not isinstance(replace_current, bool):
        raise ValueError("cancel_at_period_end and replace_current must be booleans")  # noqa: TRY004
    _check_period(current_period_start, current_period_end)

    account_uuid = as_uuid(account_id)
    platform_id = (
        None
        if account_uuid is None
        else CreditAccount.objects.filter(pk=account_uuid).values_list("platform_id", flat=True).first()
    )
    if platform_id is None:
        raise AccountNotFound(details={"account_id": str(account_id)})
    account_id = account_uuid
    plan = _plan_of_platform(plan_id, platform_id)
    if plan is None:
        raise PlanNotFound(details={"plan_id": str(plan_id)})

    account_subscriptions_lock(account_id=account_id)
    existing = selectors.subscription_by_provider(
        provider=provider, provider_subscription_id=provider_subscription_id
    )
    if existing is not None:
        if str(existing.account_id) != str(account_id):
            raise SubscriptionOwnerMismatch(details={"provider_subscription_id": provider_subscription_id})
        return SubscriptionResult(existing, changed=False)

    now = timezone.now()
    previous_plan = None  # no current subscription: the account is on the free trial
    current = selectors.subscription_current(account_id=account_id)
    if current is not None:
        if not replace_current:
            raise SubscriptionExists(
                details={
                    "subscription_id": str(current.pk),
                    "plan": current.plan.slug,
                    "status": current.status,
                }
            )
        current = subscription_lock(subscription_id=current.pk)
        status_from = current.status
        _end(current, SubscriptionStatus.CANCELED, canceled_at=None, now=now)
        current.save(update_fields=["status", "ended_at", "canceled_at", "updated_at"])
        _record(
            current,
            ChangeKind.REPLACED,
            plan_from=current.plan,
            status_from=status_from,
            status_to=current.status,
            as_of=as_of,
            actor=actor,
        )
        previous_plan = current.plan if current.plan_id != plan.pk else current.previous_plan

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
    try:
        with transaction.atomic():  # a savepoint: another account may be inserting this provider id right now
            subscription.save(force_insert=True)
    except IntegrityError as exc:
        if (
            getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)
            == "subscription_unique_provider_id"
        ):
            raise SubscriptionOwnerMismatch(
                details={"provider_subscription_id": provider_subscription_id}
            ) from None
        raise
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
