"""The payment method an account keeps for auto-recharge (``payments.recharge``): how it is saved, shown and
removed. Saving happens only through signed Stripe events; the API opens Stripe's pages and never sees a card.

Saving:
- A top-up checkout with ``save_payment_method`` (``checkout.checkout_create``): the session asks Stripe to keep the
  card for off-session use (``payment_intent_data.setup_future_usage`` "off_session") on the account's Stripe
  customer, or on one Checkout creates (``customer_creation`` "always") when the account has none yet, and names
  the order on the PaymentIntent (``payment_intent_data.metadata.order_id``). Its ``payment_intent.succeeded``
  saves the card when the metadata names a Stripe top-up order of this service, ``setup_future_usage`` is
  "off_session", a customer and a payment method are present, and they agree with the payment intent and
  customer the order recorded (when it recorded them). A PaymentIntent naming a ``recharge_id`` is
  auto-recharge's own (``recharge.recharge_event_apply``); the routing is by metadata.
- ``POST /api/billing/payment-method/`` (``payment_method_setup_create``): a Checkout Session in mode ``setup``
  (cards, usd) for the account's customer (or ``customer_creation`` "always"), the account named in the metadata
  of the session and of its SetupIntent (``account_id``, ``purpose``). ``setup_intent.succeeded`` (succeeded,
  usage off_session, with a customer and a payment method) saves the card. ``checkout.session.completed`` of that
  session saves it too, whichever comes first; it names its SetupIntent only by id, so the card is read from
  Stripe after commit (``payment_method_from_setup``), unless the event carries it expanded.
- The card must be the account's: the metadata of a setup session (and of its SetupIntent) names the account's
  platform (``platform_id``, as written here), and the customer is the account's known Stripe customer
  (``stripe_customer_for``) when it has one: the order's when a top-up recorded one, else the account's.
  Anything else is ignored with a note, nothing saved.
- The newest event wins: saves are ordered by the events' ``created`` (``recharge.payment_method_save``'s
  ``as_of``), so an event older than the last save, or than the owner's removal, changes nothing.
- Stripe's events name the payment method by id: its brand and last 4 digits are read from Stripe after commit
  (``payment_method_describe``), never inside the webhook's transaction.

Removing (``payment_method_remove``): the method is forgotten here (its row kept with ``removed_at``, so a late
event, or one without a time, cannot bring it back), auto-recharge is turned off (``recharge.auto_recharge_disable``:
with the account's ``low_balance_threshold``) and a recharge not yet sent to Stripe fails (``failure_reason``
``payment_method_removed``); ``recharge.recharge_charge`` also re-checks the card right before charging. The card
stays on the Stripe customer: it may also pay the account's subscription, which Stripe charges from the customer's
default method.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from accounts.models import Platform
from billing_service.queue import enqueue_on_commit
from credits import selectors as credit_selectors
from credits import services as credit_services
from credits.locks import account_lock
from credits.models import CreditAccount
from payments import locks, selectors
from payments.errors import PaymentMethodNotFound
from payments.handled import Handled, ignored, processed
from payments.models import Channel, Order, OrderType, WebhookEvent, WebhookStatus
from payments.providers import stripe as stripe_provider
from payments.providers import stripe_events
from payments.providers.lookups import epoch_seconds, object_id
from payments.recharge import (
    PAYMENT_METHOD_REMOVED,
    PI_SUCCEEDED,
    auto_recharge_disable,
    payment_method_save,
    recharges_cancel,
)
from payments.recharge_models import ACTIVE, RechargeFailure, SavedPaymentMethod
from payments.redirects import redirects_check

PURPOSE = "auto_recharge_payment_method"  # metadata.purpose of the setup sessions (and SetupIntents) opened here
SETUP_SUCCEEDED = "setup_intent.succeeded"
SESSION_COMPLETED = "checkout.session.completed"
EVENT_TYPES = frozenset({SETUP_SUCCEEDED, SESSION_COMPLETED, PI_SUCCEEDED})
NOT_SAVED_OLDER = "older than the account's last payment method change: not saved"


# --- reads -------------------------------------------------------------------------------------------------------


def payment_method_get(*, account: CreditAccount | None) -> SavedPaymentMethod | None:
    """The account's saved payment method (not removed), or None."""
    if account is None:
        return None
    return SavedPaymentMethod.objects.filter(ACTIVE, account_id=account.pk).first()


def stripe_customer_for(*, account: CreditAccount) -> str:
    """The Stripe customer a new card of the account goes on: the one of its saved method (even a removed one),
    else its subscription's or paid orders' (``selectors.stripe_customer_of``); "" when it has none yet."""
    saved = SavedPaymentMethod.objects.filter(account_id=account.pk).values_list("provider_customer_id", flat=True)
    return saved.first() or selectors.stripe_customer_of(account=account)


# --- the API's writes --------------------------------------------------------------------------------------------


def payment_method_setup_create(
    *, platform: Platform, user: AbstractBaseUser, customer_email: str, success_url: str, cancel_url: str
) -> str:
    """The URL of a Stripe Checkout page (mode ``setup``) where the member saves a card for auto-recharge; the
    card is saved when Stripe's events arrive. 400 for redirects off the allowed origins (and 503 when Stripe is
    not configured) before anything is written: the member's credit account is created only after."""
    redirects_check(platform, success_url=success_url, cancel_url=cancel_url)
    stripe_provider.ensure_configured()
    account = credit_selectors.account_for(platform=platform, user=user)
    account = account or credit_services.account_ensure(platform=platform, user=user)
    customer_id = stripe_customer_for(account=account)
    session = stripe_provider.setup_checkout_session_create(
        customer_id=customer_id,
        customer_email="" if customer_id else customer_email,
        metadata={"account_id": str(account.pk), "purpose": PURPOSE, "platform_id": str(platform.pk)},
        success_url=success_url,
        cancel_url=cancel_url,
    )
    return session.url


def payment_method_remove(*, account: CreditAccount | None) -> None:
    """Forgets the account's saved payment method and turns auto-recharge off (404 when it has none). A recharge
    never sent to Stripe (``recharge.recharges_cancel``) fails with it; one already sent, whether its answer was
    recorded (``processing``) or not yet (``pending``), is settled by its webhook or the resume."""
    if account is None:
        raise PaymentMethodNotFound()
    with transaction.atomic(durable=True):
        locked = account_lock(account_id=account.pk)  # the lock order: payments.locks (auto-recharge)
        saved = locks.saved_method_lock(account_id=account.pk, active_only=True) if locked else None
        if locked is None or saved is None:
            raise PaymentMethodNotFound()
        saved.removed_at = timezone.now()
        saved.save(update_fields=["removed_at", "updated_at"])
        auto_recharge_disable(account=locked)
        recharges_cancel(
            account_id=locked.pk, reason=RechargeFailure.PAYMENT_METHOD_REMOVED, message=PAYMENT_METHOD_REMOVED
        )


# --- after commit: details read from Stripe ------------------------------------------------------------------


def payment_method_describe(*, account_id: uuid.UUID | str, payment_method_id: str) -> bool:
    """Reads the brand and last 4 digits of a saved method from Stripe (no transaction open) and records them,
    if the account still has that method. Returns whether it did."""
    card = stripe_provider.payment_method_card(payment_method_id=payment_method_id)
    if not (card.brand or card.last4):
        return False
    with transaction.atomic(durable=True):
        updated = SavedPaymentMethod.objects.filter(
            ACTIVE, account_id=account_id, provider_payment_method_id=payment_method_id
        ).update(brand=card.brand[:32], last4=card.last4[:4], updated_at=timezone.now())
    return bool(updated)


def payment_method_from_setup(*, account_id: uuid.UUID | str, setup_intent_id: str, as_of: int | None) -> bool:
    """Reads a completed setup session's SetupIntent from Stripe (no transaction open) and saves its card on the
    account, under the same checks as ``setup_intent.succeeded``. Returns whether it saved it."""
    intent = stripe_provider.setup_intent_get(setup_intent_id=setup_intent_id)
    with transaction.atomic(durable=True):
        applied = _setup_intent_save(intent, epoch_seconds(as_of), account_ref=str(account_id), describe=False)
    return applied.status == WebhookStatus.PROCESSED and applied.note != NOT_SAVED_OLDER


# --- webhook events (inside the webhook's transaction) -------------------------------------------------------


def handles(event: WebhookEvent) -> bool:
    """Whether the event is about saving a payment method: routed here before auto-recharge and checkout."""
    if event.type not in EVENT_TYPES:
        return False
    obj = _object(event.payload)
    if event.type == SETUP_SUCCEEDED:
        return True
    if event.type == SESSION_COMPLETED:
        return obj.get("mode") == "setup"
    metadata = _metadata(obj)
    return "recharge_id" not in metadata and isinstance(metadata.get("order_id"), str)


def event_apply(event: WebhookEvent) -> Handled:
    obj = _object(event.payload)
    as_of = epoch_seconds(event.payload.get("created"))
    if event.type == SETUP_SUCCEEDED:
        return _setup_intent_save(stripe_events.setup_intent_facts(obj), as_of)
    if event.type == SESSION_COMPLETED:
        return _setup_session(obj, as_of, event.payload.get("created"))
    return _top_up_intent(obj, as_of)


def _top_up_intent(obj: dict[str, Any], as_of: datetime | None) -> Handled:
    """``payment_intent.succeeded`` of a top-up paid with ``setup_future_usage``: its card is kept."""
    order = _order_of(_metadata(obj).get("order_id"))
    if order is None:
        return ignored("the payment intent names no order of this service")
    if order.type != OrderType.TOP_UP or order.channel != Channel.STRIPE:
        return ignored(f"the order is a {order.channel} {order.type}, not a Stripe top-up", order.id)
    intent_id, customer, method = (object_id(obj.get(k)) for k in ("id", "customer", "payment_method"))
    if obj.get("setup_future_usage") != "off_session" or not customer or not method:
        return ignored("a top-up payment without a card saved for later", order.id)
    if order.provider_payment_id and intent_id and order.provider_payment_id != intent_id:
        return ignored(f"payment intent {intent_id} is not the order's ({order.provider_payment_id})", order.id)
    if order.provider_customer_id and order.provider_customer_id != customer:
        return ignored(f"customer {customer} is not the order's ({order.provider_customer_id})", order.id)
    if not order.provider_customer_id and (refusal := _foreign_customer(order.account, customer)):
        return ignored(refusal, order.id)
    card = _charge_card(obj)
    return _save(order.account_id, customer, method, card, as_of, order_id=order.id)


def _setup_intent_save(
    intent: stripe_events.SetupIntentFacts, as_of: datetime | None, *, account_ref: str | None = None,
    describe: bool = True,
) -> Handled:
    """A succeeded SetupIntent of a setup session opened here: its card is kept for the account it names, when
    the platform it names is the account's and its customer the account's (when it has one already)."""
    account, refusal = _account_of(intent.metadata, "the setup intent")
    if account is None:
        return ignored(refusal)
    if account_ref is not None and str(account.pk) != account_ref:
        return ignored(f"the setup intent names account {account.pk}, not {account_ref}")
    if intent.status != "succeeded":
        return ignored(f"the setup intent is {intent.status or '(no status)'}, not succeeded")
    if intent.usage == "on_session":
        return ignored("the setup intent saved the card for on-session use only")
    if not intent.customer_id or not intent.payment_method_id:
        return ignored("the setup intent names no customer or payment method")
    if refusal := _foreign_customer(account, intent.customer_id):
        return ignored(refusal)
    return _save(account.pk, intent.customer_id, intent.payment_method_id, intent.card, as_of, describe=describe)


def _setup_session(obj: dict[str, Any], as_of: datetime | None, created: Any) -> Handled:
    """``checkout.session.completed`` of a setup session opened here (mode ``setup``)."""
    account, refusal = _account_of(_metadata(obj), "the setup session")
    if account is None:
        return ignored(refusal)
    account_id = account.pk
    if obj.get("status") not in (None, "complete"):
        return ignored(f"the setup session is {obj.get('status')}, not complete")
    if (customer := object_id(obj.get("customer"))) and (refusal := _foreign_customer(account, customer)):
        return ignored(refusal)
    setup_intent = obj.get("setup_intent")
    if isinstance(setup_intent, dict):  # expanded: everything is here
        facts = stripe_events.setup_intent_facts(setup_intent)
        if not facts.metadata:
            facts = stripe_events.setup_intent_facts({**setup_intent, "metadata": _metadata(obj)})
        return _setup_intent_save(facts, as_of, account_ref=str(account_id))
    setup_intent_id = object_id(setup_intent)
    if not setup_intent_id:
        return ignored("the setup session names no setup intent")

    when = created if isinstance(created, int) and not isinstance(created, bool) else None
    args = (str(account_id), setup_intent_id, when)
    enqueue_on_commit("payments.tasks.payment_method_from_setup_task", *args)
    return processed(note=f"the card of {setup_intent_id} is read from Stripe")


def _save(
    account_id: uuid.UUID, customer: str, method: str, card: stripe_events.CardFacts, as_of: datetime | None,
    *, order_id: uuid.UUID | None = None, describe: bool = True,
) -> Handled:
    saved = payment_method_save(
        account_id=account_id, customer_id=customer, payment_method_id=method, brand=card.brand,
        last4=card.last4, as_of=as_of,
    )
    if saved is None:
        return processed(order_id, NOT_SAVED_OLDER)
    if describe and not (saved.brand or saved.last4):

        args = (str(account_id), method)
        enqueue_on_commit("payments.tasks.payment_method_describe_task", *args)
    return processed(order_id, "payment method saved for auto-recharge")


# --- reading events ----------------------------------------------------------------------------------------------


def _object(payload: dict[str, Any]) -> dict[str, Any]:
    obj = (payload.get("data") or {}).get("object") or {}
    return obj if isinstance(obj, dict) else {}


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _account_of(metadata: dict[str, Any], what: str) -> tuple[CreditAccount | None, str]:
    """The account a setup session's (or SetupIntent's) metadata names, when it is ours, exists and belongs to
    the platform the metadata names (as ``payment_method_setup_create`` writes it); else None and why."""
    account_id = _uuid(metadata.get("account_id")) if metadata.get("purpose") == PURPOSE else None
    account = None if account_id is None else CreditAccount.objects.filter(pk=account_id).first()
    if account is None:
        return None, f"{what} names no account of this service"
    if metadata.get("platform_id") != str(account.platform_id):
        named = metadata.get("platform_id") or "(none)"
        return None, f"{what} names platform {named}, not the platform of account {account.pk}"
    return account, ""


def _foreign_customer(account: CreditAccount, customer: str) -> str:
    """Why a card on ``customer`` cannot be the account's ("" when it can): the account already has a Stripe
    customer (``stripe_customer_for``: its saved method's, its subscription's, its orders') and this is another."""
    known = stripe_customer_for(account=account)
    if known and known != customer:
        return f"customer {customer} is not the account's ({known})"
    return ""


def _order_of(ref: Any) -> Order | None:
    order_id = _uuid(ref)
    return None if order_id is None else Order.objects.filter(pk=order_id).first()


def _charge_card(intent: dict[str, Any]) -> stripe_events.CardFacts:
    """The card of a PaymentIntent when the event carries it: an expanded ``payment_method``, or (API versions
    before 2022-11-15) its charges' ``payment_method_details``; else empty (read from Stripe after commit)."""
    card = stripe_events.card_facts(intent.get("payment_method"))
    if card.brand or card.last4:
        return card
    charges = (intent.get("charges") if isinstance(intent.get("charges"), dict) else {}).get("data") or []
    for charge in charges:
        details = charge.get("payment_method_details") if isinstance(charge, dict) else None
        card = stripe_events.card_facts(details)
        if card.brand or card.last4:
            return card
    return stripe_events.CardFacts("", "")

