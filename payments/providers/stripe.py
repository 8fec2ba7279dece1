"""The only module that talks to Stripe (through the official ``stripe`` library); what is read out of its
events and objects is ``payments.providers.stripe_events``.

Configuration comes from settings: ``STRIPE_SECRET_KEY``, ``STRIPE_API_BASE`` (Stripe's own unless a test or
a proxy points it elsewhere), ``STRIPE_WEBHOOK_SECRET`` and ``STRIPE_WEBHOOK_TOLERANCE`` (seconds; Stripe's
300 by default), ``STRIPE_TIMEOUT_SECONDS`` and ``STRIPE_MAX_NETWORK_RETRIES``.

Callers never hold a database row lock while calling in here: every call is a network round trip.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

import stripe
from django.conf import settings

from payments.errors import (
    PaymentProviderError,
    PaymentProviderNotConfigured,
    WebhookPayloadInvalid,
    WebhookSignatureInvalid,
)
from payments.models import Order
from payments.providers.stripe_events import (
    SEATS_KIND,
    CardFacts,
    SetupIntentFacts,
    card_facts,
    object_id,
    setup_intent_facts,
)

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Stripe-Signature"


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    id: str
    url: str
    customer_id: str
    payment_intent_id: str


@lru_cache(maxsize=8)
def _cached_client(api_key: str, api_base: str, timeout: float, retries: int) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base},
        max_network_retries=retries,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


def _client() -> stripe.StripeClient:
    if not settings.STRIPE_SECRET_KEY:
        raise PaymentProviderNotConfigured("Stripe is not configured on this service (STRIPE_SECRET_KEY).")
    return _cached_client(
        settings.STRIPE_SECRET_KEY,
        settings.STRIPE_API_BASE.rstrip("/"),
        settings.STRIPE_TIMEOUT_SECONDS,
        settings.STRIPE_MAX_NETWORK_RETRIES,
    )


def ensure_configured() -> None:
    """Raises ``PaymentProviderNotConfigured`` before anything is written for a checkout that cannot happen."""
    _client()


def checkout_session_create(
    *,
    order: Order,
    product_name: str,
    customer_email: str = "",
    save_payment_method: bool = False,
    customer_id: str = "",
    discount_coupon_id: str = "",
) -> CheckoutSession:
    """A Checkout Session (mode ``payment``) charging the order's exact amount, naming the order in
    ``client_reference_id`` and ``metadata.order_id`` (and on the PaymentIntent's metadata). The Stripe
    idempotency key is derived from the order id, so a retry can never open a second session for it.
    ``save_payment_method``: the card is kept for off-session charges (``payment_intent_data.setup_future_usage``
    "off_session"), attached to ``customer_id`` or, without one, to a customer Checkout creates
    (``customer_creation`` "always"; Stripe attaches a saved card only to a customer).
    ``discount_coupon_id``: the order's discount, a Stripe coupon (``coupon_ensure``): the line item is the price
    before it (``order.list_amount_cents``) and Stripe takes the coupon off (``discounts``), so the session's
    ``amount_total`` is what the order costs."""
    order_id = str(order.id)
    params: dict[str, Any] = {
        "mode": "payment",
        "client_reference_id": order_id,
        "metadata": {"order_id": order_id, "order_type": order.type, "platform_id": str(order.platform_id)},
        "payment_intent_data": {"metadata": {"order_id": order_id}},
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": order.currency.lower(),
                    "unit_amount": order.list_amount_cents,
                    "product_data": {"name": product_name},
                },
            }
        ],
        "success_url": order.success_url,
        "cancel_url": order.cancel_url,
    }
    if discount_coupon_id:
        params["discounts"] = [{"coupon": discount_coupon_id}]
    if save_payment_method:
        params["payment_intent_data"]["setup_future_usage"] = "off_session"
        if not customer_id:
            params["customer_creation"] = "always"
    if customer_id:
        params["customer"] = customer_id  # Stripe refuses customer_email beside it: the customer has one
    elif customer_email:
        params["customer_email"] = customer_email
    try:
        session = _client().v1.checkout.sessions.create(
            params=params, options={"idempotency_key": f"checkout-session:{order_id}"}
        ).to_dict()
    except stripe.StripeError as exc:
        logger.warning("Stripe refused the checkout session of order %s: %s", order_id, exc)
        details = {"provider": "stripe", "provider_message": exc.user_message or ""}
        raise PaymentProviderError(details=details) from exc
    session_id, url = object_id(session.get("id")), session.get("url")
    if not session_id or not isinstance(url, str) or not url:
        logger.error("Stripe answered the checkout session of order %s without an id or url", order_id)
        raise PaymentProviderError(details={"provider": "stripe"})
    return CheckoutSession(
        id=session_id,
        url=url,
        customer_id=object_id(session.get("customer")),
        payment_intent_id=object_id(session.get("payment_intent")),
    )


def webhook_event_verify(*, payload: bytes, signature_header: str | None) -> dict[str, Any]:
    """The event of a webhook delivery, once ``stripe.WebhookSignature.verify_header`` (what
    ``stripe.Webhook.construct_event`` checks, without building a ``StripeObject`` tree nobody reads) has checked
    its signature against ``STRIPE_WEBHOOK_SECRET`` and its timestamp against the tolerance. Raises otherwise."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise PaymentProviderNotConfigured(
            "Stripe webhooks are not configured on this service (STRIPE_WEBHOOK_SECRET)."
        )
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(
            text, signature_header, secret, tolerance=settings.STRIPE_WEBHOOK_TOLERANCE
        )
        event = json.loads(text)
    except stripe.SignatureVerificationError as exc:
        raise WebhookSignatureInvalid() from exc
    except (ValueError, TypeError, AttributeError) as exc:  # signed, but not UTF-8 JSON
        raise WebhookPayloadInvalid() from exc
    if not (
        isinstance(event, dict)
        and event.get("object") != "v2.core.event"  # a thin event notification: not what this endpoint takes
        and isinstance(event.get("id"), str)
        and 0 < len(event["id"]) <= 255
        and isinstance(event.get("type"), str)
        and 0 < len(event["type"]) <= 255
    ):
        raise WebhookPayloadInvalid()
    return event


# --- subscriptions and the billing portal ------------------------------------------------------------------


def _stripe_call(what: str, call):
    try:
        return call().to_dict()
    except stripe.StripeError as exc:
        logger.warning("Stripe refused %s: %s", what, exc)
        raise PaymentProviderError(details={"provider": "stripe", "provider_message": exc.user_message or ""}) from exc


def subscription_checkout_session_create(
    *, order: Order, price_id: str, customer_id: str = "", customer_email: str = "", discount_coupon_id: str = ""
) -> CheckoutSession:
    """A Checkout Session in mode ``subscription`` for the plan's Stripe price, naming the order in
    ``client_reference_id`` and ``metadata``, and the order, account and plan in ``subscription_data.metadata``
    (Stripe copies it onto the subscription, so its later events name them). Idempotency key: the order's."""
    order_id = str(order.id)
    meta = {"order_id": order_id, "account_id": str(order.account_id), "plan_id": str(order.plan_id)}
    return _subscription_session_create(
        order, session_metadata={**meta, "order_type": order.type, "platform_id": str(order.platform_id)},
        subscription_metadata=meta, price_id=price_id, quantity=1, customer_id=customer_id,
        customer_email=customer_email, discount_coupon_id=discount_coupon_id,
    )


def seats_checkout_session_create(
    *, order: Order, price_id: str, customer_id: str = "", customer_email: str = ""
) -> CheckoutSession:
    """A Checkout Session in mode ``subscription`` for ``order.quantity`` units of the AI plan's Stripe price (one
    per seat). ``metadata`` (the session's) and ``subscription_data.metadata`` (Stripe copies it onto the
    subscription, so every event of it says so) name the kind ``seats``, the platform, the AI plan and the order;
    the webhooks route on that kind (``payments.webhooks.routes``). Idempotency key: the order's."""
    meta = {"kind": SEATS_KIND, "platform_id": str(order.platform_id), "ai_plan_id": str(order.ai_plan_id),
            "order_id": str(order.id)}
    return _subscription_session_create(
        order, session_metadata={**meta, "order_type": order.type, "quantity": str(order.quantity)},
        subscription_metadata=meta, price_id=price_id, quantity=order.quantity, customer_id=customer_id,
        customer_email=customer_email,
    )


def _subscription_session_create(
    order: Order, *, session_metadata: dict[str, str], subscription_metadata: dict[str, str], price_id: str,
    quantity: int, customer_id: str, customer_email: str, discount_coupon_id: str = "",
) -> CheckoutSession:
    order_id = str(order.id)
    params: dict[str, Any] = {
        "mode": "subscription",
        "client_reference_id": order_id,
        "metadata": session_metadata,
        "subscription_data": {"metadata": subscription_metadata},
        "line_items": [{"quantity": quantity, "price": price_id}],
        "success_url": order.success_url,
        "cancel_url": order.cancel_url,
    }
    if discount_coupon_id:  # a Stripe coupon of duration "once": the first invoice only
        params["discounts"] = [{"coupon": discount_coupon_id}]
    if customer_id:
        params["customer"] = customer_id
    elif customer_email:
        params["customer_email"] = customer_email
    session = _stripe_call(
        f"the checkout session of order {order_id}",
        lambda: _client().v1.checkout.sessions.create(
            params=params, options={"idempotency_key": f"checkout-session:{order_id}"}
        ),
    )
    session_id, url = object_id(session.get("id")), session.get("url")
    if not session_id or not isinstance(url, str) or not url:
        raise PaymentProviderError(details={"provider": "stripe"})
    return CheckoutSession(id=session_id, url=url, customer_id=object_id(session.get("customer")), payment_intent_id="")


def subscription_retrieve(*, subscription_id: str) -> dict[str, Any] | None:
    """A subscription as Stripe has it now (what its ``customer.subscription.*`` events carry); None when Stripe
    has no such subscription. Other failures raise ``PaymentProviderError``. Call it with no transaction open."""
    try:
        return _client().v1.subscriptions.retrieve(subscription_id).to_dict()
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404:
            return None
        logger.warning("Stripe refused subscription %s: %s", subscription_id, exc)
        raise PaymentProviderError(details={"provider": "stripe", "provider_message": exc.user_message or ""}) from exc
    except stripe.StripeError as exc:
        logger.warning("Stripe failed subscription %s: %s", subscription_id, exc)
        raise PaymentProviderError(details={"provider": "stripe", "provider_message": exc.user_message or ""}) from exc


def customer_subscriptions(*, customer_id: str) -> list[dict[str, Any]]:
    """Every subscription of the customer, whatever its status (``status=all``: ended ones too), every page."""
    try:
        listing = _client().v1.subscriptions.list(params={"customer": customer_id, "status": "all", "limit": 100})
        return [subscription.to_dict() for subscription in listing.auto_paging_iter()]
    except stripe.StripeError as exc:
        logger.warning("Stripe failed the subscriptions of %s: %s", customer_id, exc)
        raise PaymentProviderError(details={"provider": "stripe", "provider_message": exc.user_message or ""}) from exc


def subscription_item_quantity_set(*, subscription_id: str, item_id: str, quantity: int) -> dict[str, Any]:
    """Sets the quantity of the subscription's item, prorated as Stripe does (``proration_behavior``
    "create_prorations": the change is credited or charged on the next invoice). An absolute quantity, so a retry
    (the library's own, with its idempotency key) sets the same. Returns the subscription as Stripe answered."""
    params = {"items": [{"id": item_id, "quantity": quantity}], "proration_behavior": "create_prorations"}
    return _stripe_call(
        f"the quantity of subscription {subscription_id}",
        lambda: _client().v1.subscriptions.update(subscription_id, params=params),
    )


def billing_portal_session_create(*, customer_id: str, return_url: str) -> str:
    """The URL of a Billing Portal session for the customer (short-lived; not stored)."""
    session = _stripe_call(
        f"the billing portal session of {customer_id}",
        lambda: _client().v1.billing_portal.sessions.create(
            params={"customer": customer_id, "return_url": return_url}
        ),
    )
    url = session.get("url")
    if not isinstance(url, str) or not url:
        raise PaymentProviderError(details={"provider": "stripe"})
    return url


# --- coupons (payments.coupons) ------------------------------------------------------------------------------


def coupon_ensure(
    *, coupon_id: str, percent_off: Decimal | None, amount_off_cents: int | None, name: str, metadata: dict[str, str]
) -> None:
    """Creates the Stripe coupon ``coupon_id`` (``duration`` "once": one payment, a subscription's first invoice)
    taking ``percent_off`` percent or ``amount_off_cents`` USD cents off, unless it exists already (Stripe answers
    ``resource_already_exists``). Stripe coupons cannot change their discount: the id names the terms
    (``payments.coupons.stripe_coupon_id_for``). Idempotency key: ``coupon:<id>``."""
    params: dict[str, Any] = {"id": coupon_id, "duration": "once", "name": name[:40], "metadata": metadata}
    if percent_off is not None:
        params["percent_off"] = format(percent_off.normalize(), "f")
    else:
        params["amount_off"] = amount_off_cents
        params["currency"] = "usd"
    try:
        _client().v1.coupons.create(params=params, options={"idempotency_key": f"coupon:{coupon_id}"})
    except stripe.InvalidRequestError as exc:
        if exc.code == "resource_already_exists":
            return
        logger.warning("Stripe refused coupon %s: %s", coupon_id, exc)
        raise PaymentProviderError(details={"provider": "stripe", "provider_message": exc.user_message or ""}) from exc
    except stripe.StripeError as exc:
        logger.warning("Stripe failed coupon %s: %s", coupon_id, exc)
        raise PaymentProviderError(details={"provider": "stripe", "provider_message": exc.user_message or ""}) from exc


# --- off-session charges (auto-recharge) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OffSessionCharge:
    """What Stripe answered to an off-session PaymentIntent: its id and status, or a decline."""

    payment_intent_id: str
    status: str  # succeeded, processing, requires_action, requires_payment_method...
    declined: bool
    message: str = ""


def payment_intent_off_session_create(
    *, amount_cents: int, customer_id: str, payment_method_id: str, metadata: dict[str, str], idempotency_key: str
) -> OffSessionCharge:
    """Charges a saved payment method with no customer present (``off_session=True, confirm=True``). The
    idempotency key is derived from a local row, so a retry after a crash returns the same PaymentIntent.
    A decline is an answer (``declined=True``), not an error; a network or server failure raises
    ``PaymentProviderError`` and the caller may retry with the same key."""
    params: dict[str, Any] = {
        "amount": amount_cents,
        "currency": "usd",
        "customer": customer_id,
        "payment_method": payment_method_id,
        "off_session": True,
        "confirm": True,
        "metadata": metadata,
    }
    try:
        intent = _client().v1.payment_intents.create(
            params=params, options={"idempotency_key": idempotency_key}
        ).to_dict()
    except stripe.CardError as exc:
        error_intent = getattr(exc.error, "payment_intent", None) if exc.error else None
        return OffSessionCharge(
            payment_intent_id=object_id(error_intent), status="requires_payment_method", declined=True,
            message=exc.user_message or str(exc),
        )
    except stripe.StripeError as exc:
        logger.warning("Stripe failed the off-session charge %s: %s", idempotency_key, exc)
        raise PaymentProviderError(details={"provider": "stripe", "provider_message": exc.user_message or ""}) from exc
    status = intent.get("status") if isinstance(intent.get("status"), str) else ""
    return OffSessionCharge(
        payment_intent_id=object_id(intent.get("id")),
        status=status,
        declined=status in ("requires_payment_method", "canceled"),
        message="" if status not in ("requires_payment_method", "canceled") else "the payment was declined",
    )


def payment_intent_retrieve(*, payment_intent_id: str) -> dict[str, Any]:
    """A PaymentIntent as Stripe has it now (status, amount, metadata, last_payment_error): what its
    ``payment_intent.*`` webhook would have carried. A network, server or not-found failure raises
    ``PaymentProviderError``. Call it with no transaction open."""
    return _stripe_call(
        f"payment intent {payment_intent_id}", lambda: _client().v1.payment_intents.retrieve(payment_intent_id)
    )


def refund_create(
    *, payment_intent_id: str, amount_cents: int, metadata: dict[str, str], idempotency_key: str
) -> dict[str, Any]:
    """Refunds ``amount_cents`` of the PaymentIntent's charge (an operator's refund from the admin). Stripe answers
    with the refund and then sends ``charge.refunded``, whose handler takes the credits back. The idempotency key
    is derived from local state, so a repeated request refunds once. A refusal or failure raises
    ``PaymentProviderError``. Call it with no transaction open."""
    return _stripe_call(
        f"refund of {payment_intent_id}",
        lambda: _client().v1.refunds.create(
            params={"payment_intent": payment_intent_id, "amount": amount_cents, "metadata": metadata},
            options={"idempotency_key": idempotency_key},
        ),
    )


# --- saving a payment method (Checkout in setup mode) ----------------------------------------------------------


def setup_checkout_session_create(
    *, customer_id: str, customer_email: str, metadata: dict[str, str], success_url: str, cancel_url: str
) -> CheckoutSession:
    """A Checkout Session in mode ``setup``: the customer enters a card, which Stripe saves (a SetupIntent, usage
    "off_session") on ``customer_id`` or, without one, on a customer Checkout creates (``customer_creation``
    "always"). ``metadata`` goes on the session and on its SetupIntent (``setup_intent_data.metadata``), so both
    events name the account. Cards only (auto-recharge charges cards); the currency is required in setup mode.
    No idempotency key of ours: no local row backs the session, and a second session is harmless (the library
    sends its own key on its retries)."""
    params: dict[str, Any] = {
        "mode": "setup",
        "currency": "usd",
        "payment_method_types": ["card"],
        "metadata": metadata,
        "setup_intent_data": {"metadata": metadata},
        "success_url": success_url,
        "cancel_url": cancel_url,
    }
    if customer_id:
        params["customer"] = customer_id
    else:
        params["customer_creation"] = "always"
        if customer_email:
            params["customer_email"] = customer_email
    session = _stripe_call(
        f"the setup session of account {metadata.get('account_id')}",
        lambda: _client().v1.checkout.sessions.create(params=params),
    )
    session_id, url = object_id(session.get("id")), session.get("url")
    if not session_id or not isinstance(url, str) or not url:
        raise PaymentProviderError(details={"provider": "stripe"})
    return CheckoutSession(id=session_id, url=url, customer_id=object_id(session.get("customer")), payment_intent_id="")


def payment_method_card(*, payment_method_id: str) -> CardFacts:
    """Brand and last 4 digits of a saved payment method, read from Stripe."""
    method = _stripe_call(
        f"payment method {payment_method_id}",
        lambda: _client().v1.payment_methods.retrieve(payment_method_id),
    )
    return card_facts(method)


def setup_intent_get(*, setup_intent_id: str) -> SetupIntentFacts:
    """A SetupIntent read from Stripe, its payment method expanded (for the card's brand and last 4)."""
    intent = _stripe_call(
        f"setup intent {setup_intent_id}",
        lambda: _client().v1.setup_intents.retrieve(setup_intent_id, params={"expand": ["payment_method"]}),
    )
    return setup_intent_facts(intent)


# --- listings (payments.reconcile) -----------------------------------------------------------------------------

_LISTED = {  # what the reconciliation lists, by name
    "checkout_sessions": lambda client: client.v1.checkout.sessions,
    "payment_intents": lambda client: client.v1.payment_intents,
    "invoices": lambda client: client.v1.invoices,
    "refunds": lambda client: client.v1.refunds,
}
_RETRIEVED = {"payment_intents", "invoices", "charges"}


def objects_list(*, kind: str, created_gte: int, page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
    """Every ``kind`` object (``_LISTED``) created at or after ``created_gte`` (epoch seconds), in pages of up to
    ``page_size``, newest first: Stripe's list with ``created[gte]``, paged by the library (``auto_paging_iter``).
    A provider failure raises ``PaymentProviderError``. Call it with no transaction open."""
    resource = _LISTED[kind](_client())
    try:
        listing = resource.list(params={"created": {"gte": created_gte}, "limit": page_size})
        for page in itertools.batched(listing.auto_paging_iter(), page_size):
            yield [obj.to_dict(for_json=True) for obj in page]  # as a webhook's JSON has them
    except stripe.StripeError as exc:
        logger.warning("Stripe failed the list of %s: %s", kind, exc)
        raise PaymentProviderError(details={"provider": "stripe", "provider_message": exc.user_message or ""}) from exc


def object_get(*, kind: str, object_id: str) -> dict[str, Any] | None:
    """One ``payment_intents`` / ``invoices`` / ``charges`` object as Stripe has it now; None when Stripe has no such
    object. Other failures raise ``PaymentProviderError``. Call it with no transaction open."""
    if kind not in _RETRIEVED:
        raise ValueError(f"not retrieved here: {kind}")
    try:
        return getattr(_client().v1, kind).retrieve(object_id).to_dict(for_json=True)
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404:
            return None
        logger.warning("Stripe refused %s %s: %s", kind, object_id, exc)
        raise PaymentProviderError(details={"provider": "stripe", "provider_message": exc.user_message or ""}) from exc
    except stripe.StripeError as exc:
        logger.warning("Stripe failed %s %s: %s", kind, object_id, exc)
        raise PaymentProviderError(details={"provider": "stripe", "provider_message": exc.user_message or ""}) from exc
