"""Every write of the payments app: checkouts (orders) and provider webhook events.

Checkout: the rules are checked first (nothing is written for a refused request), then the pending order is
committed, then the provider is called with no transaction open (its idempotency key derives from the order
id), then the session's ids are saved on the order. If the provider fails, the order is kept, ``failed``.
A subscription checkout (Stripe) buys a plan for a billing cycle: the order costs the plan's price, the session
(mode ``subscription``) charges the plan's Stripe price, and the subscription starts from the webhooks.
The billing portal (``billing_portal_create``) opens a Stripe Billing Portal session for the account's customer.

Webhooks (dj-stripe's pattern): a verified event is stored first (``INSERT ... ON CONFLICT DO NOTHING`` on
the provider's event id), then processed in one durable transaction holding the event row's lock, so
concurrent deliveries of one event run one after the other and every one after the first finds it done.
Outcomes:
- ``processed`` / ``ignored`` (an unhandled type, or a session that names no order of this service): 200;
  a later delivery is a 200 that changes nothing.
- a permanent disagreement with the order (amount, currency, ids): the event is ``failed``, the order is
  flagged ``needs_review`` with the reason, no credits move, and the answer is still 200: a redelivery would
  disagree again, so retrying for days helps nobody; an operator looks at the flagged order.
- anything else (the order is not known here, the database refused): the transaction rolls back, the event
  is recorded ``failed`` with the error in a separate transaction, and the answer is a 500 so the provider
  delivers it again; the next delivery processes it afresh.
Crediting is keyed on the order (ledger idempotency key ``order:<id>``), so even a race past the event lock
(two different events of one order) writes one ``add`` row.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from accounts.models import Platform
from billing_service.db import server_bound_cursor
from billing_service.money import format_money
from credits.models import CreditAccount
from payments import locks, payment_methods, selectors, webhook_fast_path, webhooks
from payments.errors import (
    ChannelNotAvailable,
    CheckoutTypeNotAvailable,
    EventNotApplicable,
    InvalidCheckout,
    NoBillingCustomer,
    PaymentProviderError,
    WebhookProcessingFailed,
)
from payments.models import (
    WEBHOOK_DONE_STATUSES,
    Channel,
    Order,
    OrderStatus,
    OrderType,
    WebhookEvent,
    WebhookProvider,
    WebhookStatus,
)
from payments.providers import stripe as stripe_provider
from payments.redirects import redirects_check
from subscriptions import selectors as subscription_selectors
from subscriptions.errors import SubscriptionExists
from subscriptions.models import BillingCycle, Plan

logger = logging.getLogger(__name__)

CREDITS_PER_USD = Decimal(1)


# --- checkout ------------------------------------------------------------------------------------------------


def checkout_create(
    *,
    platform: Platform,
    user: AbstractBaseUser,
    account: CreditAccount,
    channel: str,
    order_type: str,
    amount: Decimal | None,
    success_url: str,
    cancel_url: str,
    plan_id: str | None = None,
    billing_cycle: str | None = None,
    save_payment_method: bool = False,
) -> Order:
    """A pending order and the provider's checkout session for it; returns the order with its
    ``checkout_url``. Stripe top-ups and Stripe subscriptions (``plan_id``, ``billing_cycle``).
    ``save_payment_method`` (Stripe top-ups only): the card is also kept for auto-recharge, on the account's
    Stripe customer (one is created at checkout when it has none); see ``payments.payment_methods``."""
    if save_payment_method and (channel != Channel.STRIPE or order_type != OrderType.TOP_UP):
        raise InvalidCheckout(
            "save_payment_method",
            "Only for Stripe top-ups; save a card on its own through /api/billing/payment-method/.",
        )
    if channel == Channel.CREEM:
        from payments.creem_checkout import creem_checkout_create

        return creem_checkout_create(
            platform=platform, user=user, account=account, order_type=order_type, plan_id=plan_id,
            billing_cycle=billing_cycle, success_url=success_url, cancel_url=cancel_url,
        )
    if channel != Channel.STRIPE:
        raise ChannelNotAvailable(
            f"The {channel!r} channel is not available yet; use 'stripe'.",
            details={"channel": ["Not available yet: only 'stripe' is."]},
        )
    if order_type == OrderType.SUBSCRIPTION:
        return _subscription_checkout_create(
            platform=platform, user=user, account=account, plan_id=plan_id, billing_cycle=billing_cycle,
            success_url=success_url, cancel_url=cancel_url,
        )
    if order_type != OrderType.TOP_UP:
        raise CheckoutTypeNotAvailable(
            f"Checkout of type {order_type!r} is not available yet; use 'top_up'.",
            details={"type": ["Not available yet: only 'top_up' or 'subscription' are."]},
        )
    if amount is None:
        raise InvalidCheckout("amount", "Required for a top-up.")
    limits = selectors.payment_settings_for(platform=platform)
    if amount < limits.top_up_min_usd:
        raise InvalidCheckout("amount", f"Must be at least {format_money(limits.top_up_min_usd)}.")
    if amount > limits.top_up_max_usd:
        raise InvalidCheckout("amount", f"Must be at most {format_money(limits.top_up_max_usd)}.")
    redirects_check(platform, success_url=success_url, cancel_url=cancel_url)
    stripe_provider.ensure_configured()
    customer_id = payment_methods.stripe_customer_for(account=account) if save_payment_method else ""

    with transaction.atomic(durable=True):
        order = Order.objects.create(
            platform=platform,
            account=account,
            user=user,
            type=OrderType.TOP_UP,
            channel=channel,
            amount_usd=amount,
            credits=amount * CREDITS_PER_USD,
            success_url=success_url,
            cancel_url=cancel_url,
        )
    try:
        session = stripe_provider.checkout_session_create(
            order=order,
            product_name=f"{format_money(order.credits)} credits",
            customer_email=getattr(user, "email", "") or "",
            save_payment_method=save_payment_method,
            customer_id=customer_id,
        )
    except PaymentProviderError as exc:
        order_checkout_failed(order_id=order.id, reason=f"checkout session not created: {exc.message}")
        raise
    with transaction.atomic(durable=True):
        order = locks.order_lock(order_id=order.id)
        assert order is not None
        # A webhook may (in theory) have recorded the session already; never overwrite what it saw.
        order.provider_checkout_id = order.provider_checkout_id or session.id
        order.provider_payment_id = order.provider_payment_id or session.payment_intent_id
        order.provider_customer_id = order.provider_customer_id or session.customer_id
        order.checkout_url = session.url
        order.save(update_fields=[
            "provider_checkout_id", "provider_payment_id", "provider_customer_id", "checkout_url", "updated_at",
        ])
    return order


def _subscription_checkout_create(
    *,
    platform: Platform,
    user: AbstractBaseUser,
    account: CreditAccount,
    plan_id: str | None,
    billing_cycle: str | None,
    success_url: str,
    cancel_url: str,
) -> Order:
    """A pending subscription order (the plan's price for the cycle) and a Stripe Checkout Session in mode
    ``subscription`` for the plan's Stripe price. The subscription starts when Stripe confirms it (webhooks).
    Refused: an unknown, inactive or unpurchasable plan, a cycle without a Stripe price or a price of 0 (400);
    an account that already has a current subscription (409: change plans in the billing portal)."""
    if not plan_id:
        raise InvalidCheckout("plan_id", "Required for a subscription.")
    if billing_cycle not in BillingCycle.values:
        raise InvalidCheckout("billing_cycle", "Required for a subscription: 'monthly' or 'yearly'.")
    plan = subscription_selectors.plan_on_sale(platform=platform, plan_id=plan_id)
    if plan is None:
        raise InvalidCheckout("plan_id", "No such plan on sale in this platform.")
    price_id, cents = plan.stripe_price_for(billing_cycle), plan.price_for(billing_cycle)
    if not price_id or cents <= 0:
        raise InvalidCheckout("billing_cycle", f"The plan is not sold {billing_cycle} through Stripe.")
    redirects_check(platform, success_url=success_url, cancel_url=cancel_url)
    refuse_second_subscription(account=account)
    stripe_provider.ensure_configured()
    customer_id = selectors.stripe_customer_of(account=account)

    order = subscription_order_create(
        platform=platform, account=account, user=user, channel=Channel.STRIPE, plan=plan,
        billing_cycle=billing_cycle, price_cents=cents, success_url=success_url, cancel_url=cancel_url,
    )
    try:
        session = stripe_provider.subscription_checkout_session_create(
            order=order, price_id=price_id, customer_id=customer_id,
            customer_email="" if customer_id else getattr(user, "email", "") or "",
        )
    except PaymentProviderError as exc:
        order_checkout_failed(order_id=order.id, reason=f"checkout session not created: {exc.message}")
        raise
    with transaction.atomic(durable=True):
        order = locks.order_lock(order_id=order.id)
        assert order is not None
        order.provider_checkout_id = order.provider_checkout_id or session.id
        order.provider_customer_id = order.provider_customer_id or session.customer_id or customer_id
        order.checkout_url = session.url
        order.save(update_fields=["provider_checkout_id", "provider_customer_id", "checkout_url", "updated_at"])
    return order


def subscription_order_create(
    *,
    platform: Platform,
    account: CreditAccount,
    user: AbstractBaseUser,
    channel: str,
    plan: Plan,
    billing_cycle: str,
    price_cents: int,
    success_url: str,
    cancel_url: str,
) -> Order:
    """The pending order of a subscription checkout (Stripe or Creem), committed before the provider is called:
    the plan's price for the cycle, its credits per period."""
    with transaction.atomic(durable=True):
        return Order.objects.create(
            platform=platform, account=account, user=user, type=OrderType.SUBSCRIPTION, channel=channel,
            amount_usd=Decimal(price_cents) / 100, credits=plan.credits_included, plan=plan,
            billing_cycle=billing_cycle, success_url=success_url, cancel_url=cancel_url,
        )


def billing_portal_create(*, platform: Platform, account: CreditAccount, return_url: str) -> str:
    """The URL of the provider's billing portal for the account's Stripe customer (known from its
    subscription or a paid order). 400 for a ``return_url`` off the allowed origins; 409
    ``no_billing_customer`` when the account has never paid through Stripe."""
    redirects_check(platform, return_url=return_url)
    customer_id = selectors.stripe_customer_of(account=account)
    if not customer_id:
        raise NoBillingCustomer()
    stripe_provider.ensure_configured()
    return stripe_provider.billing_portal_session_create(customer_id=customer_id, return_url=return_url)


def refuse_second_subscription(*, account: CreditAccount) -> None:
    """A new subscription checkout while one is current is refused: plan changes go through the portal."""
    current = subscription_selectors.subscription_current(account_id=account.pk)
    if current is not None:
        raise SubscriptionExists(
            "The account already has a current subscription: change plans in the billing portal.",
            details={"subscription_id": str(current.pk), "plan": current.plan.slug},
        )


def order_checkout_failed(*, order_id: uuid.UUID, reason: str) -> None:
    with transaction.atomic(durable=True):
        order = locks.order_lock(order_id=order_id)
        if order is not None and order.status == OrderStatus.PENDING:
            order.status = OrderStatus.FAILED
            order.failed_at = timezone.now()
            order.last_error = reason
            order.save(update_fields=["status", "failed_at", "last_error", "updated_at"])


# --- webhook events ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    event_id: str
    status: str  # the stored event's status after this delivery
    duplicate: bool  # it had already been processed or ignored: nothing changed


_STORE_EVENT = f"""
WITH stored AS (
    INSERT INTO {WebhookEvent._meta.db_table}
           (provider, event_id, type, payload, status, attempts, last_error, received_at, updated_at)
    VALUES (%(provider)s, %(event_id)s, %(type)s, %(payload)s::jsonb, '{WebhookStatus.RECEIVED}', 0, '', now(), now())
    ON CONFLICT (provider, event_id) DO NOTHING
    RETURNING id
)
SELECT id, true, '{WebhookStatus.RECEIVED}' FROM stored
UNION ALL
SELECT id, false, status FROM {WebhookEvent._meta.db_table}
 WHERE provider = %(provider)s AND event_id = %(event_id)s AND NOT EXISTS (SELECT FROM stored)
"""


def webhook_event_store(*, provider: str, event: dict[str, Any]) -> tuple[int, bool, str]:
    """Stores a verified event (its own statement, committed at once); returns its row id, whether this
    delivery stored it, and its status. A second delivery of one event id stores nothing."""
    params = {"provider": provider, "event_id": event["id"], "type": event["type"], "payload": json.dumps(event)}
    with server_bound_cursor() as cursor:
        cursor.execute(_STORE_EVENT, params, prepare=True)
        row = cursor.fetchone()
    if row is not None:
        return row
    # stored by a delivery that committed after this statement's snapshot was taken
    stored = WebhookEvent.objects.filter(provider=provider, event_id=event["id"]).values_list("pk", "status").first()
    if stored is None:  # pragma: no cover - a stored event is never deleted
        raise WebhookProcessingFailed()
    return stored[0], False, stored[1]


def webhook_event_receive(*, provider: str, event: dict[str, Any]) -> WebhookOutcome:
    """Stores then processes one delivery (see the module docstring for the outcomes). The first delivery of a
    plainly paid Stripe top-up takes ``payments.webhook_fast_path`` (same rows, fewer statements)."""
    if provider == WebhookProvider.STRIPE and webhook_fast_path.applies(event):
        receipt = webhook_fast_path.receive(event)
        if receipt is not None:
            if receipt.event_pk is None or receipt.duplicate:
                return WebhookOutcome(event_id=event["id"], status=receipt.status, duplicate=receipt.duplicate)
            return webhook_event_process(event_pk=receipt.event_pk)
    pk, _, status = webhook_event_store(provider=provider, event=event)
    if status in WEBHOOK_DONE_STATUSES:  # a redelivery: answered without a transaction
        return WebhookOutcome(event_id=event["id"], status=status, duplicate=True)
    return webhook_event_process(event_pk=pk)


def webhook_event_process(*, event_pk: int) -> WebhookOutcome:
    """Processes a stored event unless it is already processed or ignored. Raises
    ``WebhookProcessingFailed`` (a 500) after recording a failure that a redelivery may get past."""
    try:
        with transaction.atomic(durable=True):
            event = locks.webhook_event_lock(event_pk=event_pk)
            if event is None:  # pragma: no cover - a stored event is never deleted
                raise WebhookProcessingFailed()
            if event.status in WEBHOOK_DONE_STATUSES:
                return WebhookOutcome(event_id=event.event_id, status=event.status, duplicate=True)
            event.attempts += 1
            try:
                with transaction.atomic():  # a savepoint: a refused event leaves no partial change
                    handled = webhooks.handle(event)
            except EventNotApplicable as exc:
                _flag_order(exc)
                event.status, event.last_error = WebhookStatus.FAILED, str(exc)
                event.order_id = exc.order_id if exc.order_id else event.order_id
                logger.warning("webhook %s %s refused: %s", event.provider, event.event_id, exc)
            else:
                event.status, event.last_error = handled.status, handled.note
                event.order_id = handled.order_id
            event.processed_at = timezone.now()
            event.save(update_fields=["status", "attempts", "last_error", "order", "processed_at", "updated_at"])
            return WebhookOutcome(event_id=event.event_id, status=event.status, duplicate=False)
    except WebhookProcessingFailed:
        raise
    except Exception as exc:
        logger.exception("webhook event %s failed; the provider will deliver it again", event_pk)
        _event_record_failure(event_pk=event_pk, error=f"{type(exc).__name__}: {exc}")
        raise WebhookProcessingFailed() from exc


def _flag_order(exc: EventNotApplicable) -> None:
    if exc.order_id is None:
        return
    order = locks.order_lock(order_id=exc.order_id)  # already held by this transaction when it exists
    if order is not None:
        order.needs_review = True
        order.last_error = str(exc)
        if exc.amount_paid_usd is not None:
            order.amount_paid_usd = exc.amount_paid_usd
        order.save(update_fields=["needs_review", "last_error", "amount_paid_usd", "updated_at"])


def _event_record_failure(*, event_pk: int, error: str) -> None:
    with transaction.atomic(durable=True):
        event = locks.webhook_event_lock(event_pk=event_pk)
        if event is None or event.status in WEBHOOK_DONE_STATUSES:
            return
        event.status = WebhookStatus.FAILED
        event.attempts += 1
        event.last_error = error[:2000]
        event.save(update_fields=["status", "attempts", "last_error", "updated_at"])
