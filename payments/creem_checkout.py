"""Checkout through Creem (``POST /api/billing/checkout/`` with ``channel: "creem"``).

Creem checkouts are product-backed (reference: "For Creem flows, plan_id must reference a billing plan that
has creem_product_id configured in admin"): the customer pays the price of the Creem product, not an amount
this service chooses. Hence:
- ``type: "subscription"``: ``plan_id`` (the plan's id or slug) must name an active, purchasable plan of the
  platform with a ``creem_product_id``; the order's amount is the plan's price for ``billing_cycle`` (monthly
  unless given) and its credits are the plan's ``credits_included`` per period. An account that already has a
  current subscription is refused (409, as for Stripe: plans change in the billing portal). The cycle the
  subscription is finally recorded with is the Creem product's ``billing_period`` (what Creem bills), see
  ``creem_webhooks``.
- ``type: "top_up"``: refused (400 ``checkout_type_not_available``). A top-up buys an amount the customer
  picks, which a fixed-price Creem product cannot charge; top-ups stay on Stripe.

Same shape as the Stripe checkout (``services.checkout_create``): rules first (nothing written for a refused
request), then the pending order is committed, then Creem is called with no transaction open, then the
checkout's id and URL are saved. If Creem fails, the order is kept, ``failed``, and the answer is a 502.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from accounts.models import Platform
from credits.models import CreditAccount
from payments.errors import CheckoutTypeNotAvailable, InvalidCheckout, PaymentProviderError
from payments.models import Channel, Order, OrderType
from payments.providers import creem as creem_provider
from payments.redirects import redirects_check
from payments.services import (
    order_checkout_failed,
    refuse_second_subscription,
    subscription_order_create,
)
from subscriptions import selectors as subscription_selectors
from subscriptions.models import BillingCycle


def creem_checkout_create(
    *,
    platform: Platform,
    user: AbstractBaseUser,
    account: CreditAccount,
    order_type: str,
    plan_id: str | None,
    billing_cycle: str | None,
    success_url: str,
    cancel_url: str,
) -> Order:
    """A pending subscription order and its Creem checkout; returns the order with its ``checkout_url``."""
    if order_type != OrderType.SUBSCRIPTION:
        raise CheckoutTypeNotAvailable(
            "Creem sells fixed-price products: top-ups are only available through 'stripe'.",
            details={"type": ["Only 'subscription' is available through 'creem'; top-ups use 'stripe'."]},
        )
    if not plan_id:
        raise InvalidCheckout("plan_id", "Required for a subscription.")
    plan = subscription_selectors.plan_on_sale(platform=platform, plan_id=plan_id)
    if plan is None:
        raise InvalidCheckout("plan_id", "No such plan on sale in this platform.")
    if not plan.creem_product_id:
        raise InvalidCheckout("plan_id", "This plan is not sold through Creem: it has no creem_product_id.")
    cycle = billing_cycle or BillingCycle.MONTHLY
    price_cents = plan.price_for(cycle)
    if price_cents <= 0:
        raise InvalidCheckout("plan_id", f"This plan has no {cycle} price to pay through Creem.")
    redirects_check(platform, success_url=success_url, cancel_url=cancel_url)
    refuse_second_subscription(account=account)
    creem_provider.ensure_configured()

    order = subscription_order_create(
        platform=platform, account=account, user=user, channel=Channel.CREEM, plan=plan, billing_cycle=cycle,
        price_cents=price_cents, success_url=success_url, cancel_url=cancel_url,
    )
    try:
        checkout = creem_provider.checkout_create(
            order=order, product_id=plan.creem_product_id, customer_email=getattr(user, "email", "") or ""
        )
    except PaymentProviderError:
        order_checkout_failed(order_id=order.id, reason="Creem refused or failed the checkout")
        raise
    with transaction.atomic(durable=True):
        order.provider_checkout_id = checkout.id
        order.checkout_url = checkout.url
        order.save(update_fields=["provider_checkout_id", "checkout_url", "updated_at"])
    return order
