"""Coupons and promotion codes: what a coupon may be, redeeming one for credits, and discounts on checkout.

A coupon (``payments.models.Coupon``) belongs to a platform; its ``code`` is 1-64 ASCII letters, digits, ``-`` or
``_``, unique in the platform whatever its case (a unique index on ``(platform, UPPER(code))``), and typed in any
case. ``code`` and ``kind`` are fixed once created; coupons are never deleted (``active`` false withdraws one).

Kinds and values (``value_problem``):
- ``credits``: ``value`` credits (above 0, at most 1,000,000,000, 6 decimals), granted by
  ``coupon_redeem`` as one ``promotion`` ledger row keyed ``coupon:<redemption id>``, the member as its actor.
  A credits coupon takes no plan or top-up restriction (it buys nothing); ``first_purchase_only`` means "for
  accounts that have never paid an order".
- ``percent_off``: ``value`` percent (above 0, at most 100, 2 decimals) off a checkout;
- ``amount_off``: ``value`` USD (whole cents, above 0, at most 1,000,000.00) off a checkout.

Who may use one (``_usable_check``, the same for redeem and checkout): the coupon is ``active``, ``valid_from`` <=
now < ``valid_until``, fewer than ``max_redemptions`` redemptions in all (none: no limit), fewer than
``max_per_account`` (default 1) by this account, and (``first_purchase_only``) an account without any paid order.

Redeeming (``coupon_redeem``) locks the coupon row (``payments.locks.coupon_lock``), counts under the lock and
writes the redemption, the ledger row and the coupon's ``redemptions_count`` in one transaction: concurrent
redemptions never pass either limit.

Discounts (``checkout_discount``, called by ``payments.checkout``): a discount coupon applies to a Stripe top-up
or a Stripe or Creem subscription (never to seats); ``top_ups_only`` refuses subscriptions, ``plans`` (when set)
refuses top-ups and other plans. The discount is computed in whole cents (percent: rounded half up; amount: at most
the price) and must leave at least ``MIN_CHARGE_USD`` (0.50, Stripe's minimum charge in USD) to pay. The order
records the coupon, the price to pay (``amount_usd``) and the discount (``discount_usd``); a top-up's credits are
the undiscounted amount (the coupon is a gift on the price, not fewer credits). The redemption is recorded only when
the payment succeeds (``order_redemption_record``, from the webhook that settles the order, idempotent: one per
order). A checkout that was allowed when it opened is recorded even if the coupon ran out or expired before the
payment (the customer paid the discounted price): such a redemption is marked ``over_limit``.

Stripe applies the discount itself: a Stripe coupon (``duration: once``, so a subscription's first invoice only)
whose id is derived from ours and its terms (``stripe_coupon_id_for``), created on first use before the order is
written (``stripe_coupon_ensure``: no transaction or lock held), passed as ``discounts`` of the Checkout Session.
Changing the value makes a new Stripe coupon on the next checkout: the Stripe coupon always matches the terms. Creem
gets the code as ``discount_code``: a Creem discount with the same code must exist in Creem (its dashboard).

Guessing codes is rate-limited: every code a user tries (redeem, or a checkout with a coupon) is a
``CouponAttempt`` row; a user with ``COUPON_REDEEM_ATTEMPTS_PER_HOUR`` attempts in the last hour (sliding) gets a
429 ``coupon_attempts_exceeded`` with ``Retry-After`` (``coupon_attempt_record``). The count lives in PostgreSQL,
serialized per user by an advisory lock, so every worker shares it.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet
from django.db.models.functions import Upper
from django.utils import timezone

from accounts.models import Platform
from billing_service.inputs import stored_instant_problem
from billing_service.money import MAX_AMOUNT, format_money
from credits import ledger
from credits.ledger import Posting
from credits.models import CreditAccount, TransactionType
from credits.services.common import actor_id_of
from payments import locks
from payments.errors import (
    CouponAlreadyRedeemed,
    CouponAttemptsExceeded,
    CouponCodeTaken,
    CouponError,
    CouponExhausted,
    CouponExpired,
    CouponFirstPurchaseOnly,
    CouponInactive,
    CouponNotADiscount,
    CouponNotApplicable,
    CouponNotFound,
    CouponNotRedeemable,
    CouponNotYetValid,
    CouponUnknown,
    InvalidCoupon,
)
from payments.models import (
    COUPON_CODE_MAX_LENGTH,
    Channel,
    Coupon,
    CouponAttempt,
    CouponKind,
    CouponRedemption,
    Order,
    OrderStatus,
    OrderType,
    RedemptionSource,
)
from payments.providers import stripe as stripe_provider
from subscriptions.models import Plan

CODE_RE = re.compile(rf"[A-Za-z0-9_-]{{1,{COUPON_CODE_MAX_LENGTH}}}")
CODE_HELP = f"1-{COUPON_CODE_MAX_LENGTH} ASCII letters, digits, '-' or '_'."
MAX_AMOUNT_OFF_USD = Decimal("1000000.00")
MIN_CHARGE_USD = Decimal("0.50")  # Stripe's minimum charge in USD: a discount must leave at least this to pay
MAX_REDEMPTIONS = 1_000_000_000
MAX_PER_ACCOUNT = 1_000_000
MAX_PLANS = 100
ATTEMPT_WINDOW = timedelta(hours=1)
_CENT = Decimal("0.01")
PAID_STATUSES = (OrderStatus.PAID, OrderStatus.REFUNDED, OrderStatus.PARTIALLY_REFUNDED)


# --- the terms of a coupon ------------------------------------------------------------------------------------


def code_problem(value: object) -> str | None:
    if not isinstance(value, str) or not CODE_RE.fullmatch(value):
        return f"Must be {CODE_HELP}"
    return None


def value_problem(kind: str, value: Decimal) -> str | None:
    """Why ``value`` cannot be a ``kind`` coupon's value, or None."""
    if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        return "Must be greater than zero."
    places = -value.normalize().as_tuple().exponent  # type: ignore[operator]
    if kind == CouponKind.PERCENT_OFF:
        if value > 100:
            return "A percentage: at most 100."
        if places > 2:
            return "A percentage with at most 2 decimals."
    elif kind == CouponKind.AMOUNT_OFF:
        if places > 2:
            return "USD in whole cents (at most 2 decimals)."
        if value > MAX_AMOUNT_OFF_USD:
            return f"At most {format_money(MAX_AMOUNT_OFF_USD)} USD."
    else:
        if places > 6:
            return "Credits with at most 6 decimals."
        if value > MAX_AMOUNT:
            return f"At most {MAX_AMOUNT} credits."
    return None


@dataclass(frozen=True, slots=True)
class _Terms:
    kind: str
    value: Decimal
    max_redemptions: int | None
    max_per_account: int
    valid_from: datetime | None
    valid_until: datetime | None
    has_plans: bool
    top_ups_only: bool


def _terms_check(terms: _Terms) -> None:
    """Every rule across a coupon's fields (each refusal a 400 naming the field)."""
    problem = value_problem(terms.kind, terms.value)
    if problem:
        raise InvalidCoupon("value", problem)
    if terms.max_redemptions is not None and not 1 <= terms.max_redemptions <= MAX_REDEMPTIONS:
        raise InvalidCoupon("max_redemptions", f"A whole number from 1 to {MAX_REDEMPTIONS}, or null (no limit).")
    if not 1 <= terms.max_per_account <= MAX_PER_ACCOUNT:
        raise InvalidCoupon("max_per_account", f"A whole number from 1 to {MAX_PER_ACCOUNT}.")
    for name in ("valid_from", "valid_until"):
        moment = getattr(terms, name)
        problem = stored_instant_problem(moment) if moment is not None else None
        if problem:
            raise InvalidCoupon(name, problem)
    if terms.valid_from is not None and terms.valid_until is not None and terms.valid_until <= terms.valid_from:
        raise InvalidCoupon("valid_until", "Must be after valid_from.")
    if terms.kind == CouponKind.CREDITS:
        if terms.has_plans:
            raise InvalidCoupon("plan_ids", "Only for discount coupons: a credits coupon buys no plan.")
        if terms.top_ups_only:
            raise InvalidCoupon("top_ups_only", "Only for discount coupons: a credits coupon buys no top-up.")
    if terms.has_plans and terms.top_ups_only:
        raise InvalidCoupon("plan_ids", "A coupon restricted to plans cannot also be for top-ups only.")


def _plans_of(platform: Platform, plan_ids: Iterable[uuid.UUID]) -> list[Plan]:
    wanted = list(dict.fromkeys(plan_ids))
    if len(wanted) > MAX_PLANS:
        raise InvalidCoupon("plan_ids", f"At most {MAX_PLANS} plans.")
    plans = list(Plan.objects.filter(platform=platform, pk__in=wanted)) if wanted else []
    missing = set(wanted) - {plan.pk for plan in plans}
    if missing:
        raise InvalidCoupon("plan_ids", f"No such plan in this platform: {', '.join(sorted(map(str, missing)))}.")
    return plans


def _code_taken(platform_id: int, code: str, *, other_than: uuid.UUID | None = None) -> bool:
    rows = Coupon.objects.annotate(code_upper=Upper("code")).filter(platform_id=platform_id, code_upper=code.upper())
    return (rows.exclude(pk=other_than) if other_than else rows).exists()


# --- admin: create, update, deactivate ---------------------------------------------------------------------------


def coupon_create(
    *,
    platform: Platform,
    actor: AbstractBaseUser | None,
    code: str,
    kind: str,
    value: Decimal,
    max_redemptions: int | None = None,
    max_per_account: int = 1,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    plan_ids: Iterable[uuid.UUID] = (),
    top_ups_only: bool = False,
    first_purchase_only: bool = False,
    active: bool = True,
) -> Coupon:
    """A new coupon of the platform; 409 ``coupon_code_taken`` when another has the code in any case."""
    problem = code_problem(code)
    if problem:
        raise InvalidCoupon("code", problem)
    if kind not in CouponKind.values:
        raise InvalidCoupon("kind", f"One of {', '.join(CouponKind.values)}.")
    plan_ids = list(plan_ids)
    _terms_check(_Terms(kind, value, max_redemptions, max_per_account, valid_from, valid_until, bool(plan_ids),
                        top_ups_only))
    with transaction.atomic(durable=True):
        plans = _plans_of(platform, plan_ids)
        if _code_taken(platform.pk, code):
            raise CouponCodeTaken(details={"code": code})
        try:
            with transaction.atomic():  # a concurrent create of the same code loses at the unique index
                coupon = Coupon.objects.create(
                    platform=platform, code=code, kind=kind, value=value, max_redemptions=max_redemptions,
                    max_per_account=max_per_account, valid_from=valid_from, valid_until=valid_until,
                    top_ups_only=top_ups_only, first_purchase_only=first_purchase_only, active=active,
                    created_by=actor if actor is not None and actor.is_authenticated else None,
                )
        except IntegrityError as exc:
            if "coupon_unique_code_per_platform" in str(exc):
                raise CouponCodeTaken(details={"code": code}) from exc
            raise
        if plans:
            coupon.plans.set(plans)
    return coupon


_UPDATABLE = frozenset({"value", "max_redemptions", "max_per_account", "valid_from", "valid_until", "plan_ids",
                        "top_ups_only", "first_purchase_only", "active"})


def coupon_update(*, coupon_id: uuid.UUID, actor: AbstractBaseUser | None, **changes: Any) -> Coupon:
    """Changes the given settings of the coupon (locked). ``code`` and ``kind`` may be sent back unchanged (a PUT
    of what was read) but never changed (400)."""
    unknown = set(changes) - _UPDATABLE - {"code", "kind"}
    if unknown:
        raise TypeError(f"not a coupon setting: {sorted(unknown)}")
    with transaction.atomic(durable=True):
        coupon = locks.coupon_lock(coupon_id=coupon_id)
        if coupon is None:
            raise CouponNotFound()
        for fixed in ("code", "kind"):
            if fixed in changes and changes.pop(fixed) != getattr(coupon, fixed):
                raise InvalidCoupon(fixed, "Fixed once the coupon is created.")
        plan_ids = changes.pop("plan_ids", None)
        plans = _plans_of(coupon.platform, plan_ids) if plan_ids is not None else None
        for name, value in changes.items():
            setattr(coupon, name, value)
        has_plans = bool(plans) if plans is not None else coupon.plans.exists()
        _terms_check(_Terms(coupon.kind, coupon.value, coupon.max_redemptions, coupon.max_per_account,
                            coupon.valid_from, coupon.valid_until, has_plans, coupon.top_ups_only))
        coupon.save()
        if plans is not None:
            coupon.plans.set(plans)
    return coupon


def coupon_deactivate(*, coupon_id: uuid.UUID, actor: AbstractBaseUser | None) -> Coupon:
    """Withdraws the coupon (``active`` false): no more redemptions or checkouts; paid ones stay counted."""
    return coupon_update(coupon_id=coupon_id, actor=actor, active=False)


# --- reads --------------------------------------------------------------------------------------------------------


def coupon_list(*, platform: Platform, active: bool | None = None, kind: str | None = None) -> QuerySet[Coupon]:
    rows = Coupon.objects.filter(platform=platform).prefetch_related("plans").order_by("-created_at", "-id")
    if active is not None:
        rows = rows.filter(active=active)
    if kind is not None:
        rows = rows.filter(kind=kind)
    return rows


def coupon_get(*, platform: Platform, coupon_id: uuid.UUID) -> Coupon | None:
    return coupon_list(platform=platform).filter(pk=coupon_id).first()


def coupon_by_code(*, platform: Platform, code: str) -> Coupon | None:
    """The platform's coupon of ``code`` in any case (the unique index on ``(platform, UPPER(code))`` finds it)."""
    return (
        Coupon.objects.annotate(code_upper=Upper("code"))
        .filter(platform_id=platform.pk, code_upper=code.upper()).first()
    )


OPEN_CHECKOUT_LIFETIME = timedelta(hours=24)


def account_has_paid(*, account_id: uuid.UUID) -> bool:
    """Whether the account has ever paid an order (refunded ones count: they were purchases)."""
    return Order.objects.filter(account_id=account_id, status__in=PAID_STATUSES).exists()


# --- rate limit: the codes a user tries --------------------------------------------------------------------------


def coupon_attempt_record(
    *, platform: Platform, user: AbstractBaseUser, code: str, now: datetime | None = None
) -> int:
    """Counts one attempt of ``user`` at a code (its own transaction, committed whatever the attempt's outcome);
    429 ``coupon_attempts_exceeded`` (nothing written) when the user already tried
    ``COUPON_REDEEM_ATTEMPTS_PER_HOUR`` codes in the hour before ``now``. Returns the attempt's id."""
    limit = int(settings.COUPON_REDEEM_ATTEMPTS_PER_HOUR)
    now = now or timezone.now()
    with transaction.atomic(durable=True):
        locks.coupon_attempts_lock(user_id=user.pk)
        recent = list(
            CouponAttempt.objects.filter(user_id=user.pk, created_at__gt=now - ATTEMPT_WINDOW)
            .order_by("created_at").values_list("created_at", flat=True)[: max(limit, 1)]
        )
        if len(recent) >= limit:
            oldest = recent[0] if recent else now
            wait = max(1, math.ceil((oldest + ATTEMPT_WINDOW - now).total_seconds()))
            raise CouponAttemptsExceeded(retry_after=wait, limit=limit)
        return CouponAttempt.objects.create(user_id=user.pk, platform=platform, code=code, created_at=now).pk


def coupon_attempt_outcome(*, attempt_id: int, outcome: str) -> None:
    """Records how an attempt ended (``redeemed``, ``applied`` or the error's code): one statement."""
    CouponAttempt.objects.filter(pk=attempt_id).update(outcome=outcome[:48])


# --- the rules every use shares -----------------------------------------------------------------------------------


def _usable_check(coupon: Coupon, now: datetime, field: str) -> None:
    """Active and valid now."""
    if not coupon.active:
        raise CouponInactive(field=field)
    if coupon.valid_from is not None and now < coupon.valid_from:
        raise CouponNotYetValid(field=field, details={"valid_from": coupon.valid_from.isoformat()})
    if coupon.valid_until is not None and now >= coupon.valid_until:
        raise CouponExpired(field=field, details={"valid_until": coupon.valid_until.isoformat()})


def _limits_check(coupon: Coupon, account_id: uuid.UUID, field: str, *, open_checkouts: int = 0) -> None:
    """Not exhausted, not used up by this account (its redemptions and ``open_checkouts``: unpaid checkouts with the
    coupon), a first purchase when it must be."""
    if coupon.max_redemptions is not None and coupon.redemptions_count >= coupon.max_redemptions:
        raise CouponExhausted(field=field)
    used = CouponRedemption.objects.filter(coupon_id=coupon.pk, account_id=account_id).count()
    if used + open_checkouts >= coupon.max_per_account:
        details = {"max_per_account": coupon.max_per_account} | ({"open_checkouts": open_checkouts} if open_checkouts
                                                                 else {})
        raise CouponAlreadyRedeemed(field=field, details=details)
    if coupon.first_purchase_only and account_has_paid(account_id=account_id):
        raise CouponFirstPurchaseOnly(field=field)


# --- redeeming a credits coupon ----------------------------------------------------------------------------------


def coupon_redeem(
    *, platform: Platform, account: CreditAccount, user: AbstractBaseUser, code: str, now: datetime | None = None
) -> CouponRedemption:
    """Redeems the platform's credits coupon ``code`` for the member's ``account``: its ``promotion`` ledger row
    (``redemption.ledger_entry``). The attempt is counted first (429 beyond the hourly limit); refusals: 400
    ``coupon_unknown``, ``coupon_inactive``, ``coupon_not_yet_valid``, ``coupon_expired``, ``coupon_not_redeemable``
    (a discount coupon); 409 ``coupon_exhausted``, ``coupon_already_redeemed``, ``coupon_first_purchase_only``."""
    now = now or timezone.now()
    attempt_id = coupon_attempt_record(platform=platform, user=user, code=code, now=now)
    try:
        redemption = _redeem(platform, account, user, code, now, attempt_id)
    except CouponError as exc:
        coupon_attempt_outcome(attempt_id=attempt_id, outcome=exc.code)
        raise
    return redemption


def _redeem(platform: Platform, account: CreditAccount, user: AbstractBaseUser, code: str, now: datetime,
            attempt_id: int) -> CouponRedemption:
    with transaction.atomic(durable=True):
        coupon = locks.coupon_by_code_lock(platform_id=platform.pk, code=code)
        if coupon is None:
            raise CouponUnknown()
        _usable_check(coupon, now, "code")
        if coupon.kind != CouponKind.CREDITS:
            raise CouponNotRedeemable()
        _limits_check(coupon, account.pk, "code")
        redemption_id = uuid.uuid4()
        result = ledger.post(
            account.pk,
            Posting(
                transaction_type=TransactionType.PROMOTION,
                balance_delta=coupon.value,
                description=f"Coupon {coupon.code}",
                reference=f"coupon:{coupon.pk}",
                metadata={"coupon_id": str(coupon.pk), "code": coupon.code, "redemption_id": str(redemption_id)},
                actor_id=actor_id_of(user),
                idempotency_key=f"coupon:{redemption_id}",
            ),
            savepoint=False,  # a fresh key: no other writer can hold it
        )
        redemption = CouponRedemption.objects.create(
            id=redemption_id, coupon=coupon, account_id=account.pk, user=user, source=RedemptionSource.REDEEM,
            ledger_entry=result.entry, credits=coupon.value,
        )
        Coupon.objects.filter(pk=coupon.pk).update(redemptions_count=F("redemptions_count") + 1)
        coupon_attempt_outcome(attempt_id=attempt_id, outcome="redeemed")
    return redemption


# --- discounts at checkout ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Discount:
    """A discount coupon checked for one checkout: the price to pay and what was taken off it."""

    coupon: Coupon
    amount_usd: Decimal  # to pay
    discount_usd: Decimal  # taken off


def discount_of(coupon: Coupon, price_usd: Decimal) -> Decimal:
    """What the coupon takes off ``price_usd``, in whole cents (a percentage rounded half up; never more than the
    price)."""
    if coupon.kind == CouponKind.PERCENT_OFF:
        off = (price_usd * coupon.value / 100).quantize(_CENT, rounding=ROUND_HALF_UP)
    else:
        off = coupon.value.quantize(_CENT)
    return min(off, price_usd)


def checkout_discount(
    *,
    platform: Platform,
    account: CreditAccount,
    user: AbstractBaseUser,
    code: str,
    channel: str,
    order_type: str,
    plan: Plan | None,
    price_usd: Decimal,
    now: datetime | None = None,
) -> Discount:
    """The discount coupon ``code`` for a checkout of ``price_usd`` (the attempt counted first: 429 beyond the
    limit). Refused (nothing written but the attempt): the refusals of ``coupon_redeem`` (a credits coupon is 400
    ``coupon_not_a_discount``), and 400 ``coupon_not_applicable`` when its restrictions or the price refuse it
    (``details.reason``). Nothing is locked: the redemption counts when the payment succeeds."""
    now = now or timezone.now()
    attempt_id = coupon_attempt_record(platform=platform, user=user, code=code, now=now)
    try:
        discount = _discount(platform, account, code, channel, order_type, plan, price_usd, now)
    except CouponError as exc:
        coupon_attempt_outcome(attempt_id=attempt_id, outcome=exc.code)
        raise
    coupon_attempt_outcome(attempt_id=attempt_id, outcome="applied")
    return discount


def _discount(platform: Platform, account: CreditAccount, code: str, channel: str, order_type: str,
              plan: Plan | None, price_usd: Decimal, now: datetime) -> Discount:
    field = "coupon"
    coupon = coupon_by_code(platform=platform, code=code)
    if coupon is None:
        raise CouponUnknown(field=field)
    _usable_check(coupon, now, field)
    if coupon.kind == CouponKind.CREDITS:
        raise CouponNotADiscount(field=field)
    # Checkouts still open with this coupon count against the account's limit too: opening five before paying any
    # must not give five discounts to a coupon of one per account (an open Stripe session lives 24 hours).
    open_orders = Order.objects.filter(account_id=account.pk, coupon_id=coupon.pk, status=OrderStatus.PENDING,
                                       created_at__gte=now - OPEN_CHECKOUT_LIFETIME).count()
    _limits_check(coupon, account.pk, field, open_checkouts=open_orders)
    if order_type == OrderType.SEATS:
        raise CouponNotApplicable("Coupons do not apply to seats.", field=field, details={"reason": "seats"})
    if coupon.top_ups_only and order_type != OrderType.TOP_UP:
        raise CouponNotApplicable("This coupon is for top-ups only.", field=field, details={"reason": "top_ups_only"})
    plan_ids = {p.pk for p in coupon.plans.all()}
    if plan_ids and (order_type != OrderType.SUBSCRIPTION or plan is None or plan.pk not in plan_ids):
        raise CouponNotApplicable("This coupon is only for some plans, not this purchase.", field=field,
                                  details={"reason": "plan", "plan_ids": sorted(map(str, plan_ids))})
    if channel not in (Channel.STRIPE, Channel.CREEM):
        raise CouponNotApplicable("Not through this channel.", field=field, details={"reason": "channel"})
    off = discount_of(coupon, price_usd)
    if price_usd - off < MIN_CHARGE_USD:
        raise CouponNotApplicable(
            f"The discount would leave less than {format_money(MIN_CHARGE_USD)} USD to pay.", field=field,
            details={"reason": "too_large", "price_usd": format_money(price_usd), "discount_usd": format_money(off)},
        )
    return Discount(coupon=coupon, amount_usd=price_usd - off, discount_usd=off)


def stripe_coupon_id_for(coupon: Coupon) -> str:
    """The Stripe coupon of these terms: our id and the discount, so a changed value is a new Stripe coupon."""
    if coupon.kind == CouponKind.PERCENT_OFF:
        terms = f"p{int(coupon.value * 100)}"
    else:
        terms = f"a{int(coupon.value * 100)}"
    return f"cpn_{coupon.pk.hex}_{terms}"


def stripe_coupon_ensure(coupon: Coupon) -> str:
    """The Stripe coupon of the discount coupon's current terms, created on its first use (idempotent: its id and
    Stripe idempotency key derive from ours). Called with no transaction open and no lock held; the id is then
    recorded on the coupon (one statement) so later checkouts skip the call."""
    stripe_id = stripe_coupon_id_for(coupon)
    if coupon.stripe_coupon_id == stripe_id:
        return stripe_id
    stripe_provider.coupon_ensure(
        coupon_id=stripe_id,
        percent_off=coupon.value if coupon.kind == CouponKind.PERCENT_OFF else None,
        amount_off_cents=int(coupon.value * 100) if coupon.kind == CouponKind.AMOUNT_OFF else None,
        name=coupon.code,
        metadata={"coupon_id": str(coupon.pk), "platform_id": str(coupon.platform_id)},
    )
    Coupon.objects.filter(pk=coupon.pk).update(stripe_coupon_id=stripe_id)
    coupon.stripe_coupon_id = stripe_id
    return stripe_id


# --- the redemption of a paid checkout (webhooks) -----------------------------------------------------------------


def order_redemption_record(order: Order) -> CouponRedemption | None:
    """The redemption of the (locked) order's discount coupon, now that its payment succeeded: once per order
    (a replay, or another event of the same payment, finds it). Runs inside the webhook's transaction, after the
    order's lock and before the account's (``payments.locks``). Recorded even past the coupon's limits (the
    customer paid the discounted price): ``over_limit`` then says so."""
    if order.coupon_id is None:
        return None
    coupon = locks.coupon_lock(coupon_id=order.coupon_id)
    assert coupon is not None
    existing = CouponRedemption.objects.filter(order_id=order.pk).first()
    if existing is not None:
        return existing
    over = coupon.max_redemptions is not None and coupon.redemptions_count >= coupon.max_redemptions
    over = over or CouponRedemption.objects.filter(
        coupon_id=coupon.pk, account_id=order.account_id
    ).count() >= coupon.max_per_account
    redemption = CouponRedemption.objects.create(
        coupon=coupon, account_id=order.account_id, user_id=order.user_id, source=RedemptionSource.CHECKOUT,
        order=order, discount_usd=order.discount_usd, over_limit=over,
    )
    Coupon.objects.filter(pk=coupon.pk).update(redemptions_count=F("redemptions_count") + 1)
    return redemption
