"""Checkout and portal sessions: the one flow every provider's checkout follows.

``checkout_create`` takes a Stripe top-up, a Stripe subscription or a Creem subscription through the same four
steps:
1. the rules of that (channel, type) are checked first (``_top_up`` / ``_stripe_subscription`` /
   ``_creem_subscription`` each return an ``OrderSpec``), then the redirects, a second subscription, the
   provider's configuration: nothing is written for a refused request;
2. the pending order is committed (``_order_create``);
3. the provider is called with no transaction open (its idempotency key derives from the order id); if it fails,
   the order is kept, ``failed`` (``order_checkout_failed``), and the error is raised (a 502);
4. the session's ids are saved on the order, locked (``_session_record``): never overwriting what a webhook
   that came first recorded.

A Stripe subscription checkout buys a plan for a billing cycle: the order costs the plan's price, the session
(mode ``subscription``) charges the plan's Stripe price, and the subscription starts from the webhooks.

A seats checkout (``type: "seats"``, Stripe only; the API lets owners and admins of the platform start one) buys
``quantity`` seats (1 to 10,000) of an AI plan offered to the platform, active, purchasable and sold through a
Stripe price (``stripe_price_id``) at a price per seat above zero: the order (no credits) names the plan and the
quantity and costs ``price_per_seat_cents x quantity``; the session (mode ``subscription``) charges ``quantity``
units of the plan's Stripe price on the platform's seat customer (of its earlier seats; Checkout creates one the
first time), with ``metadata.kind`` "seats", the platform, the AI plan and the order in its metadata and in
``subscription_data.metadata``. Nothing else is stored before Stripe confirms: the seats are recorded by the
webhooks (``payments.webhooks.seat_handlers``). A platform that already has a current Stripe subscription of the
plan's seats changes its quantity instead (409 ``seat_subscription_exists``).

Creem checkouts are product-backed (reference: "For Creem flows, plan_id must reference a billing plan that
has creem_product_id configured in admin"): the customer pays the price of the Creem product, not an amount this
service chooses. ``type: "subscription"`` names an active, purchasable plan with a ``creem_product_id``; the
order's amount is the plan's price for ``billing_cycle`` (monthly unless given, as on Stripe); the cycle the subscription is
finally recorded with is the Creem product's ``billing_period`` (``payments.webhooks.creem_handlers``). ``type: "top_up"``
is refused (400 ``checkout_type_not_available``): a fixed-price product cannot charge an amount the customer
picks; top-ups stay on Stripe.

The billing portal (``billing_portal_create``) opens a Stripe Billing Portal session for the account's customer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from accounts.models import Platform
from billing_service.money import format_money
from credits.models import CreditAccount
from entitlements import selectors as entitlement_selectors
from entitlements.models import AIPlan
from payments import coupons, locks, orders, payment_methods, selectors
from payments.errors import (
    ChannelNotAvailable,
    CheckoutTypeNotAvailable,
    InvalidCheckout,
    NoBillingCustomer,
    PaymentProviderError,
    SeatSubscriptionExists,
)
from payments.models import USD_DIGITS, Channel, Order, OrderType
from payments.providers import creem as creem_provider
from payments.providers import stripe as stripe_provider
from payments.redirects import redirects_check
from payments.seat_sync import MAX_SEATS
from subscriptions import selectors as subscription_selectors
from subscriptions.errors import SubscriptionExists
from subscriptions.models import BillingCycle, Plan

CREDITS_PER_USD = Decimal(1)
_MAX_ORDER_USD = Decimal(10) ** (USD_DIGITS - 2) - Decimal("0.01")  # what an order's amount column holds


@dataclass(frozen=True, slots=True)
class Session:
    """What a provider's checkout answered: its id and URL, and the ids it already knows."""

    id: str
    url: str
    payment_intent_id: str = ""
    customer_id: str = ""


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """A checked checkout: the order to create and how to open the provider's session for it."""

    type: str
    amount_usd: Decimal
    credits: Decimal
    open_session: Callable[[Order], Session]
    plan: Plan | None = None
    billing_cycle: str = ""
    customer_id: str = ""  # the account's provider customer, recorded when the session names none
    ai_plan: AIPlan | None = None  # seats: the AI plan and how many
    quantity: int | None = None


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
    ai_plan_id: str | None = None,
    quantity: int | None = None,
    coupon: str | None = None,
) -> Order:
    """A pending order and the provider's checkout session for it; returns the order with its ``checkout_url``.
    ``save_payment_method`` (Stripe top-ups only): the card is also kept for auto-recharge, on the account's Stripe
    customer (one is created at checkout when it has none); see ``payments.payment_methods``. ``ai_plan_id`` (its
    id or slug) and ``quantity``: seats only (see the module docstring). ``coupon``: a discount coupon's code
    (``payments.coupons.checkout_discount``), checked last (the attempt counts towards the user's hourly limit); the
    order costs the discounted price, a top-up's credits stay the undiscounted amount, and the provider applies
    the same discount (Stripe: the coupon's Stripe coupon, made before the order is written; Creem: its
    ``discount_code``)."""
    if save_payment_method and (channel != Channel.STRIPE or order_type != OrderType.TOP_UP):
        raise InvalidCheckout(
            "save_payment_method",
            "Only for Stripe top-ups; save a card on its own through /api/billing/payment-method/.",
        )
    _fields_of_type_check(order_type, amount=amount, plan_id=plan_id, billing_cycle=billing_cycle,
                          ai_plan_id=ai_plan_id, quantity=quantity)
    email = getattr(user, "email", "") or ""
    if channel == Channel.CREEM and order_type == OrderType.SEATS:
        raise CheckoutTypeNotAvailable(
            "Seats are sold through 'stripe' only.", details={"type": ["Seats are sold through 'stripe' only."]}
        )
    if channel == Channel.CREEM:
        spec = _creem_subscription(platform, order_type, plan_id, billing_cycle, email)
    elif channel != Channel.STRIPE:
        raise ChannelNotAvailable(
            f"The {channel!r} channel is not available yet; use 'stripe'.",
            details={"channel": ["Not available yet: only 'stripe' is."]},
        )
    elif order_type == OrderType.SUBSCRIPTION:
        spec = _stripe_subscription(platform, account, plan_id, billing_cycle, email)
    elif order_type == OrderType.TOP_UP:
        spec = _top_up(platform, account, amount, email, save_payment_method)
    elif order_type == OrderType.SEATS:
        spec = _stripe_seats(platform, ai_plan_id, quantity, email)
    else:
        raise CheckoutTypeNotAvailable(
            f"Checkout of type {order_type!r} is not available yet; use 'top_up'.",
            details={"type": ["Not available yet: only 'top_up', 'subscription' or 'seats' are."]},
        )
    redirects_check(platform, success_url=success_url, cancel_url=cancel_url)
    if spec.type == OrderType.SUBSCRIPTION:
        refuse_second_subscription(account=account)
    if spec.type == OrderType.SEATS:
        refuse_second_seat_subscription(platform=platform, ai_plan=spec.ai_plan)
    (creem_provider if channel == Channel.CREEM else stripe_provider).ensure_configured()
    discount = None
    if coupon is not None:
        discount = coupons.checkout_discount(
            platform=platform, account=account, user=user, code=coupon, channel=channel, order_type=spec.type,
            plan=spec.plan, price_usd=spec.amount_usd,
        )
        if channel == Channel.STRIPE:
            coupons.stripe_coupon_ensure(discount.coupon)  # a network call: no transaction open, nothing locked
    order = _order_create(spec, platform=platform, account=account, user=user, channel=channel,
                          success_url=success_url, cancel_url=cancel_url, discount=discount)
    try:
        session = spec.open_session(order)
    except PaymentProviderError as exc:
        orders.order_checkout_failed(order_id=order.id, reason=f"checkout session not created: {exc.message}")
        raise
    return _session_record(order.id, session, customer_id=spec.customer_id)


def _top_up(
    platform: Platform, account: CreditAccount, amount: Decimal | None, email: str, save_payment_method: bool
) -> OrderSpec:
    if amount is None:
        raise InvalidCheckout("amount", "Required for a top-up.")
    limits = selectors.payment_settings_for(platform=platform)
    if amount < limits.top_up_min_usd:
        raise InvalidCheckout("amount", f"Must be at least {format_money(limits.top_up_min_usd)}.")
    if amount > limits.top_up_max_usd:
        raise InvalidCheckout("amount", f"Must be at most {format_money(limits.top_up_max_usd)}.")

    customer_id = payment_methods.stripe_customer_for(account=account) if save_payment_method else ""

    def open_session(order: Order) -> Session:
        session = stripe_provider.checkout_session_create(
            order=order, product_name=f"{format_money(order.credits)} credits", customer_email=email,
            save_payment_method=save_payment_method, customer_id=customer_id,
            discount_coupon_id=_stripe_discount(order),
        )
        return Session(session.id, session.url, session.payment_intent_id, session.customer_id)

    return OrderSpec(OrderType.TOP_UP, amount, amount * CREDITS_PER_USD, open_session)


def _stripe_subscription(
    platform: Platform, account: CreditAccount, plan_id: str | None, billing_cycle: str | None, email: str
) -> OrderSpec:
    """The plan's price for the cycle, charged by a Checkout Session in mode ``subscription`` for the plan's Stripe
    price. Refused: an unknown, inactive or unpurchasable plan, a cycle without a Stripe price or a price of 0."""
    if not plan_id:
        raise InvalidCheckout("plan_id", "Required for a subscription.")
    billing_cycle = billing_cycle or BillingCycle.MONTHLY
    plan = _plan_on_sale(platform, plan_id)
    price_id, cents = plan.stripe_price_for(billing_cycle), plan.price_for(billing_cycle)
    if not price_id or cents <= 0:
        raise InvalidCheckout("billing_cycle", f"The plan is not sold {billing_cycle} through Stripe.")
    customer_id = selectors.stripe_customer_of(account=account)

    def open_session(order: Order) -> Session:
        session = stripe_provider.subscription_checkout_session_create(
            order=order, price_id=price_id, customer_id=customer_id, customer_email="" if customer_id else email,
            discount_coupon_id=_stripe_discount(order),
        )
        return Session(session.id, session.url, "", session.customer_id)

    return OrderSpec(OrderType.SUBSCRIPTION, Decimal(cents) / 100, plan.credits_included, open_session, plan,
                     billing_cycle, customer_id)


def _fields_of_type_check(order_type: str, **fields: object) -> None:
    """A field of another type of checkout is refused (it would be ignored silently): a seats checkout takes
    ``ai_plan_id`` and ``quantity``, not ``amount``, ``plan_id`` or ``billing_cycle`` (the AI plan has its
    cycle); the other types do not take ``ai_plan_id`` or ``quantity``."""
    seats_fields = ("ai_plan_id", "quantity")
    for name, value in fields.items():
        if value is None:
            continue
        if order_type == OrderType.SEATS and name not in seats_fields:
            raise InvalidCheckout(name, "Not for a seats checkout: it buys `quantity` seats of `ai_plan_id`.")
        if order_type != OrderType.SEATS and name in seats_fields:
            raise InvalidCheckout(name, "Only for a seats checkout (type 'seats').")


def _stripe_seats(platform: Platform, ai_plan_ref: str | None, quantity: int | None, email: str) -> OrderSpec:
    """``quantity`` seats of the AI plan ``ai_plan_ref`` names (its id or slug), charged as that many units of its
    Stripe price by a Checkout Session in mode ``subscription``. Refused (400): no plan or quantity, a quantity
    that is not a whole number from 1 to 10,000, a plan not offered to the platform (or inactive), not
    purchasable, without a Stripe price or without a price per seat, an order beyond what an order can cost."""
    if not ai_plan_ref:
        raise InvalidCheckout("ai_plan_id", "Required for seats: the AI plan's id or slug.")
    if quantity is None:
        raise InvalidCheckout("quantity", f"Required for seats: how many, from 1 to {MAX_SEATS}.")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_SEATS:
        raise InvalidCheckout("quantity", f"Must be a whole number from 1 to {MAX_SEATS}.")
    plan = entitlement_selectors.ai_plan_get(platform=platform, ref=ai_plan_ref)
    # (the plans it names include those the platform holds seats on after they were retired or withdrawn from it:
    # those are not on sale to it)
    if plan is None or not entitlement_selectors.ai_plans_offered(platform=platform).filter(pk=plan.pk).exists():
        raise InvalidCheckout("ai_plan_id", "No such active AI plan offered to this platform.")
    if not plan.purchasable:
        raise InvalidCheckout("ai_plan_id", "This AI plan is not on sale.")
    if not plan.stripe_price_id:
        raise InvalidCheckout("ai_plan_id", "This AI plan is not sold through Stripe: it has no stripe_price_id.")
    if plan.price_per_seat_cents <= 0:
        raise InvalidCheckout("ai_plan_id", "This AI plan has no price per seat to pay.")
    amount = Decimal(plan.price_per_seat_cents) * quantity / 100
    if amount > _MAX_ORDER_USD:
        raise InvalidCheckout("quantity",
                              f"Too many seats for one order (at most {format_money(_MAX_ORDER_USD)} USD).")
    customer_id = selectors.seat_customer_of(platform=platform)

    def open_session(order: Order) -> Session:
        session = stripe_provider.seats_checkout_session_create(
            order=order, price_id=plan.stripe_price_id, customer_id=customer_id,
            customer_email="" if customer_id else email,
        )
        return Session(session.id, session.url, "", session.customer_id)

    return OrderSpec(OrderType.SEATS, amount, Decimal(0), open_session, billing_cycle=plan.billing_cycle,
                     customer_id=customer_id, ai_plan=plan, quantity=quantity)


def _creem_subscription(
    platform: Platform, order_type: str, plan_id: str | None, billing_cycle: str | None, email: str
) -> OrderSpec:
    if order_type != OrderType.SUBSCRIPTION:
        raise CheckoutTypeNotAvailable(
            "Creem sells fixed-price products: top-ups are only available through 'stripe'.",
            details={"type": ["Only 'subscription' is available through 'creem'; top-ups use 'stripe'."]},
        )
    plan = _plan_on_sale(platform, plan_id)
    if not plan.creem_product_id:
        raise InvalidCheckout("plan_id", "This plan is not sold through Creem: it has no creem_product_id.")
    cycle = billing_cycle or BillingCycle.MONTHLY
    cents = plan.price_for(cycle)
    if cents <= 0:
        raise InvalidCheckout("plan_id", f"This plan has no {cycle} price to pay through Creem.")

    def open_session(order: Order) -> Session:
        checkout = creem_provider.checkout_create(
            order=order, product_id=plan.creem_product_id, customer_email=email,
            discount_code=order.coupon.code if order.coupon_id else "",
        )
        return Session(checkout.id, checkout.url)

    return OrderSpec(OrderType.SUBSCRIPTION, Decimal(cents) / 100, plan.credits_included, open_session, plan, cycle)


def _plan_on_sale(platform: Platform, plan_id: str | None) -> Plan:
    if not plan_id:
        raise InvalidCheckout("plan_id", "Required for a subscription.")
    plan = subscription_selectors.plan_on_sale(platform=platform, plan_id=plan_id)
    if plan is None:
        raise InvalidCheckout("plan_id", "No such plan on sale in this platform.")
    return plan


def _stripe_discount(order: Order) -> str:
    """The Stripe coupon of the order's discount ("" without one); made by ``coupons.stripe_coupon_ensure``."""
    return order.coupon.stripe_coupon_id if order.coupon_id else ""


def _order_create(spec: OrderSpec, *, discount: coupons.Discount | None = None, **fields: object) -> Order:
    """The pending order, committed before the provider is called; with a discount, it costs the discounted
    price and records the coupon and what it took off (a top-up's credits stay ``spec.credits``)."""
    with transaction.atomic(durable=True):
        return Order.objects.create(
            type=spec.type, amount_usd=discount.amount_usd if discount else spec.amount_usd, credits=spec.credits,
            plan=spec.plan, billing_cycle=spec.billing_cycle, ai_plan=spec.ai_plan, quantity=spec.quantity,
            coupon=discount.coupon if discount else None,
            discount_usd=discount.discount_usd if discount else Decimal(0), **fields,
        )


def _session_record(order_id: uuid.UUID, session: Session, *, customer_id: str = "") -> Order:
    """Saves the session's ids on the (locked) order; a webhook may have recorded them first: never overwritten."""
    with transaction.atomic(durable=True):
        order = locks.order_lock(order_id=order_id)
        assert order is not None  # an order is never deleted
        order.provider_checkout_id = order.provider_checkout_id or session.id
        order.provider_payment_id = order.provider_payment_id or session.payment_intent_id
        order.provider_customer_id = order.provider_customer_id or session.customer_id or customer_id
        order.checkout_url = session.url
        order.save(update_fields=[
            "provider_checkout_id", "provider_payment_id", "provider_customer_id", "checkout_url", "updated_at",
        ])
    return order


def refuse_second_subscription(*, account: CreditAccount) -> None:
    """A new subscription checkout while one is current is refused: plan changes go through the portal."""
    current = subscription_selectors.subscription_current(account_id=account.pk)
    if current is not None:
        raise SubscriptionExists(
            "The account already has a current subscription: change plans in the billing portal.",
            details={"subscription_id": str(current.pk), "plan": current.plan.slug},
        )


def refuse_second_seat_subscription(*, platform: Platform, ai_plan: AIPlan | None) -> None:
    """A seats checkout while the platform has a current Stripe subscription of the plan's seats is refused: its
    quantity changes instead (two subscriptions of one plan would be billed apart, and bought twice by mistake)."""
    current = selectors.seat_subscription_seated(platform=platform, ai_plan=ai_plan) if ai_plan else None
    if current is not None:
        raise SeatSubscriptionExists(details={"subscription_id": str(current.pk), "quantity": current.quantity})


def billing_portal_create(*, platform: Platform, account: CreditAccount, return_url: str) -> str:
    """The URL of the provider's billing portal for the account's Stripe customer (known from its subscription or
    a paid order). 400 for a ``return_url`` off the allowed origins; 409 ``no_billing_customer`` when the account
    has never paid through Stripe."""
    redirects_check(platform, return_url=return_url)
    customer_id = selectors.stripe_customer_of(account=account)
    if not customer_id:
        raise NoBillingCustomer()
    stripe_provider.ensure_configured()
    return stripe_provider.billing_portal_session_create(customer_id=customer_id, return_url=return_url)
