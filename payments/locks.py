"""The only place rows of this app are locked, and the one order every transaction takes them in:

1. a webhook event (``webhook_event_lock``; a new event is locked by its own insert: ``payments.webhooks.events``),
2. the advisory lock of an invoice (``invoice_lock``), then of a payment intent (``payment_intent_lock``),
3. an order (``order_lock``),
4. the account's subscriptions (``subscriptions.locks.account_subscriptions_lock``),
5. its plan periods (``period_*_lock``, ``grant_period_lock``: a refund locks its period before it reverses credits,
   as a renewal does before its rollover),
6. the credit account (``credits.locks`` / inside ``credits.ledger``),
7. parked refund events (``parked_refunds_lock``), applied last by the event that un-parks them.

Seats (``payments.webhooks.seat_handlers``): the webhook event, then the order, then the AI plan's seats
(``entitlements.locks.plan_seats_lock``, taken by ``entitlements.sync``), then, when a plan's last seats end, the
members' credit accounts (``entitlements.services.assignments_clear``).

Coupons (``payments.coupons``): a coupon's row (``coupon_lock``) is taken before the credit account (a redemption's
``promotion`` row) and, in a webhook, after the order and before the account's subscriptions and the credit account
(the paid order's redemption is counted before ``orders.order_credit``). A user's coupon attempts
(``coupon_attempts_lock``, an advisory lock) are taken alone, in a transaction of their own.

Auto-recharge (``payments.recharge`` / ``payments.payment_methods``) has its own order below: the credit account,
then its saved payment method, then its recharges. Nothing here is held across a call to a provider."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import connection
from django.db.models import Q, QuerySet
from django.db.models.functions import Upper

from billing_service.db import Compiled, server_bound_cursor

from credits.locks import account_lock
from credits.models import CreditAccount
from payments.models import Coupon, Order, OrderType, PlanCreditPeriod, WebhookEvent, WebhookStatus
from payments.recharge_models import ACTIVE, AutoRechargeSettings, Recharge, SavedPaymentMethod
from subscriptions.locks import account_subscriptions_lock


def webhook_event_lock(*, event_pk: int) -> WebhookEvent | None:
    return WebhookEvent.objects.select_for_update().filter(pk=event_pk).first()


def webhook_event_stored_lock(*, provider: str, event_id: str) -> WebhookEvent:
    """An event stored by an earlier (committed) delivery; a delivery still running holds it until it ends."""
    return WebhookEvent.objects.select_for_update().get(provider=provider, event_id=event_id)


# Every payment event locks its order: stated with the ORM, compiled once, run as a prepared statement.
_ANY_ORDER = uuid.UUID(int=1)
_ORDER = Compiled(Order.objects.select_for_update().filter(pk=_ANY_ORDER).order_by(), {"order_id": _ANY_ORDER})


def order_lock(*, order_id: uuid.UUID | str) -> Order | None:
    try:
        order_uuid = order_id if isinstance(order_id, uuid.UUID) else uuid.UUID(str(order_id))
    except ValueError:
        return None
    found = _ORDER.instances(order_id=order_uuid)
    return found[0] if found else None


PAYMENT_INTENT_LOCK = 0x5049  # "PI": the first key of pg_advisory_xact_lock(int, int)
INVOICE_LOCK = 0x494E  # "IN"


def invoice_lock(*, invoice_id: str) -> None:
    """Serializes ``invoice.paid`` and ``invoice_payment.paid`` of one invoice (taken before the payment intent's
    lock): whichever comes second finds the other (the period, or the stored payment), so the period always
    learns the payment intent its refunds are matched by."""
    if invoice_id:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [INVOICE_LOCK, invoice_id])


def payment_intent_lock(*, payment_intent_id: str) -> None:
    """Serializes the events about one provider payment (taken before the order's row lock): a refund that
    looks its order up by payment id and the event that records that id on the order cannot miss each
    other (the refund would otherwise be parked after the order had looked for parked refunds)."""
    if payment_intent_id:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [PAYMENT_INTENT_LOCK, payment_intent_id])


# --- plan periods (after the account's subscriptions lock) ------------------------------------------------------


def _periods() -> QuerySet[PlanCreditPeriod]:
    """Period rows locked, their plan (and subscription) read with them but not locked (``of``): a refund or a
    renewal must not hold the plan's row, which every subscriber's events share."""
    return PlanCreditPeriod.objects.select_for_update(of=("self",)).select_related("plan")


def period_lock(*, period_pk: int) -> PlanCreditPeriod:
    return _periods().select_related("subscription").get(pk=period_pk)


def period_open_lock(*, subscription_id: object, start: datetime) -> PlanCreditPeriod | None:
    """The subscription's open period starting at ``start`` (a mid-period upgrade tops it up)."""
    return _periods().filter(subscription_id=subscription_id, period_start=start, closed_at__isnull=True).first()


def period_open_before_lock(*, subscription_id: object, start: datetime) -> PlanCreditPeriod | None:
    """The latest open period before ``start``: the one a new period's grant closes."""
    return _periods().filter(
        subscription_id=subscription_id, period_start__lt=start, closed_at__isnull=True
    ).order_by("-period_start").first()


def period_open_after_lock(*, subscription_id: object, start: datetime) -> PlanCreditPeriod | None:
    """The open period after ``start``: the one whose ``carried_in`` holds what a closed period carried out."""
    return _periods().filter(
        subscription_id=subscription_id, period_start__gt=start, closed_at__isnull=True
    ).order_by("-period_start").first()


def grant_period_lock(*, account_id: object, grant_entry_id: object) -> PlanCreditPeriod | None:
    """The period granted by ``grant_entry_id``, if any, after the account's subscriptions lock (step 4 before
    step 5): a refund that locks its period before the credit account never waits for a renewal in the opposite
    order."""
    if grant_entry_id is None:
        return None
    account_subscriptions_lock(account_id=account_id)
    return _periods().filter(grant_entry_id=grant_entry_id).first()


def order_period_lock(order: Order) -> PlanCreditPeriod | None:
    """A subscription order's first period (``grant_period_lock``); None for other orders."""
    if order.type != OrderType.SUBSCRIPTION or order.ledger_entry_id is None:
        return None
    return grant_period_lock(account_id=order.account_id, grant_entry_id=order.ledger_entry_id)


def charge_period_lock(*, payment_intent_id: str, invoice_id: str) -> PlanCreditPeriod | None:
    """The period whose invoice a charge paid: by its payment intent, or by its invoice (older API shapes name it
    on the charge); None when no period recorded either."""
    rows = PlanCreditPeriod.objects.values_list("pk", "subscription__account_id")
    found = rows.filter(payment_intent_id=payment_intent_id).first() if payment_intent_id else None
    if found is None and invoice_id:
        found = rows.filter(invoice_id=invoice_id).first()
    if found is None:
        return None
    account_subscriptions_lock(account_id=found[1])
    return period_lock(period_pk=found[0])


# --- parked refunds (last) ----------------------------------------------------------------------------------


# Looked for by every credited order and every recorded period, and almost always none: compiled once (a value not
# given is NULL, which matches nothing).
_PH = {"order_id": uuid.UUID(int=2), "order_ref": uuid.UUID(int=3), "payment_intent_id": "\x00pi",
       "invoice_id": "\x00in", "provider": "\x00provider", "type": "\x00type", "status": "\x00status"}
_PARKED = Compiled(
    WebhookEvent.objects.select_for_update().filter(
        Q(order_id=_PH["order_id"]) | Q(order_ref=_PH["order_ref"]) | Q(payment_intent_id=_PH["payment_intent_id"])
        | Q(invoice_id=_PH["invoice_id"]), provider=_PH["provider"], type=_PH["type"], status=_PH["status"],
    ).order_by("pk").values_list("pk"),
    _PH,
)


def parked_refunds_lock(
    *, provider: str, event_type: str, order_id: uuid.UUID | None = None, payment_intent_id: str = "",
    invoice_id: str = "",
) -> list[WebhookEvent]:
    """The parked events of ``event_type`` naming the order (by the order it was matched to or its metadata), the
    payment intent or the invoice given, locked."""
    with server_bound_cursor() as cursor:
        rows = _PARKED.fetch(cursor, order_id=order_id, order_ref=order_id, payment_intent_id=payment_intent_id or None,
                             invoice_id=invoice_id or None, provider=provider, type=event_type,
                             status=WebhookStatus.PARKED)
    if not rows:
        return []
    return list(WebhookEvent.objects.filter(pk__in=[pk for (pk,) in rows]).order_by("pk"))


# --- saved payment methods and auto-recharge (payments.payment_methods, payments.recharge) ------------------------
#
# Order, in every transaction of those two modules: the credit account first (``credits.locks.account_lock``, or
# ``account_auto_recharge_lock``: the same row lock, read with its settings), then
# its saved payment method (``saved_method_lock``), then its recharges (``recharge_lock``, which takes the account
# itself). The account's ``AutoRechargeSettings`` row has no lock of its own: it is written only by a transaction
# that holds its account's lock, which also serialises the first save of a payment method (no row to lock yet).
# A transaction that starts from a recharge id reads the recharge's ``account_id`` unlocked (it never changes),
# locks the account, then the recharge: the webhook, the start, the charge and a card removal never wait for each
# other in opposite orders.


def account_auto_recharge_lock(*, account_id: uuid.UUID | str) -> tuple[CreditAccount, AutoRechargeSettings] | None:
    """The credit account locked (the row lock ``credits.locks.account_lock`` takes: ``FOR UPDATE OF`` the account
    only), read in the same query with its platform and its auto-recharge settings (an unsaved default, off, when it
    has none); None for an unknown account."""
    account = (
        CreditAccount.objects.select_for_update(of=("self",)).select_related("platform", "auto_recharge")
        .filter(pk=account_id).first()
    )
    if account is None:
        return None
    try:
        settings = account.auto_recharge
    except AutoRechargeSettings.DoesNotExist:
        settings = AutoRechargeSettings(account=account)
    return account, settings


def saved_method_lock(*, account_id: uuid.UUID | str, active_only: bool = False) -> SavedPaymentMethod | None:
    """The account's saved payment method (``active_only``: unless removed), locked; the caller holds the account's
    lock already."""
    methods = SavedPaymentMethod.objects.select_for_update().filter(account_id=account_id)
    return (methods.filter(ACTIVE) if active_only else methods).first()


def recharge_lock(*, recharge_id: uuid.UUID | str) -> tuple[CreditAccount, Recharge] | None:
    """The recharge's account, then the recharge, locked in that order; None for an unknown recharge."""
    account_id = Recharge.objects.filter(pk=recharge_id).values_list("account_id", flat=True).first()
    if account_id is None:
        return None
    account = account_lock(account_id=account_id)
    assert account is not None  # accounts are never deleted (PROTECT)
    return account, Recharge.objects.select_for_update().get(pk=recharge_id)


# --- coupons (payments.coupons) ----------------------------------------------------------------------------------

COUPON_ATTEMPTS_LOCK = 0x4350  # "CP": the first key of pg_advisory_xact_lock(int, int)


def coupon_lock(*, coupon_id: uuid.UUID) -> Coupon | None:
    """The coupon's row, locked: its redemptions are counted (and ``redemptions_count`` moved) under it, so
    concurrent redemptions never pass ``max_redemptions`` or ``max_per_account``."""
    return Coupon.objects.select_for_update().filter(pk=coupon_id).first()


def coupon_by_code_lock(*, platform_id: int, code: str) -> Coupon | None:
    """The platform's coupon of ``code`` in any case, locked (found through its unique ``UPPER(code)`` index)."""
    return (
        Coupon.objects.select_for_update().annotate(code_upper=Upper("code"))
        .filter(platform_id=platform_id, code_upper=code.upper()).first()
    )


def coupon_attempts_lock(*, user_id: int) -> None:
    """Serializes one user's coupon attempts (in every worker: a PostgreSQL advisory lock): the count of the
    window and the new attempt's insert cannot interleave with another request's."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [COUPON_ATTEMPTS_LOCK, int(user_id) & 0x7FFFFFFF])
