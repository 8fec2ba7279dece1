"""The only module that talks to Stripe (through the official ``stripe`` library).

Configuration comes from settings: ``STRIPE_SECRET_KEY``, ``STRIPE_API_BASE`` (Stripe's own unless a test or
a proxy points it elsewhere), ``STRIPE_WEBHOOK_SECRET`` and ``STRIPE_WEBHOOK_TOLERANCE`` (seconds; Stripe's
300 by default), ``STRIPE_TIMEOUT_SECONDS`` and ``STRIPE_MAX_NETWORK_RETRIES``.

Callers never hold a database row lock while calling in here: every call is a network round trip.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
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


def _text(value: Any) -> str:
    """An id field of a Stripe object: a string, an expanded object with an id, or nothing."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    return ""


def checkout_session_create(
    *,
    order: Order,
    product_name: str,
    customer_email: str = "",
    save_payment_method: bool = False,
    customer_id: str = "",
) -> CheckoutSession:
    """A Checkout Session (mode ``payment``) charging the order's exact amount, naming the order in
    ``client_reference_id`` and ``metadata.order_id`` (and on the PaymentIntent's metadata). The Stripe
    idempotency key is derived from the order id, so a retry can never open a second session for it.
    ``save_payment_method``: the card is kept for off-session charges (``payment_intent_data.setup_future_usage``
    "off_session"), attached to ``customer_id`` or, without one, to a customer Checkout creates
    (``customer_creation`` "always"; Stripe attaches a saved card only to a customer)."""
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
                    "unit_amount": order.amount_cents,
                    "product_data": {"name": product_name},
                },
            }
        ],
        "success_url": order.success_url,
        "cancel_url": order.cancel_url,
    }
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
    session_id, url = _text(session.get("id")), session.get("url")
    if not session_id or not isinstance(url, str) or not url:
        logger.error("Stripe answered the checkout session of order %s without an id or url", order_id)
        raise PaymentProviderError(details={"provider": "stripe"})
    return CheckoutSession(
        id=session_id,
        url=url,
        customer_id=_text(session.get("customer")),
        payment_intent_id=_text(session.get("payment_intent")),
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


# --- reading a Checkout Session out of an event -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What processing needs from a ``checkout.session.*`` event's object."""

    session_id: str
    order_ref: str  # the order id the session names, "" if none
    conflicting_refs: bool  # client_reference_id and metadata.order_id name different orders
    mode: str
    payment_status: str
    amount_total: int | None
    currency: str
    payment_intent_id: str
    customer_id: str
    subscription_id: str = ""


def session_facts(event: dict[str, Any]) -> SessionFacts:
    obj = (event.get("data") or {}).get("object") or {}
    if not isinstance(obj, dict):
        obj = {}
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    client_ref = obj.get("client_reference_id") if isinstance(obj.get("client_reference_id"), str) else ""
    meta_ref = metadata.get("order_id") if isinstance(metadata.get("order_id"), str) else ""
    amount = obj.get("amount_total")
    return SessionFacts(
        session_id=_text(obj.get("id")),
        order_ref=client_ref or meta_ref,
        conflicting_refs=bool(client_ref and meta_ref and client_ref != meta_ref),
        mode=obj.get("mode") if isinstance(obj.get("mode"), str) else "",
        payment_status=obj.get("payment_status") if isinstance(obj.get("payment_status"), str) else "",
        amount_total=amount if isinstance(amount, int) and not isinstance(amount, bool) else None,
        currency=obj.get("currency").lower() if isinstance(obj.get("currency"), str) else "",
        payment_intent_id=_text(obj.get("payment_intent")),
        customer_id=_text(obj.get("customer")),
        subscription_id=_text(obj.get("subscription")),
    )


# --- subscriptions and the billing portal ------------------------------------------------------------------


def _stripe_call(what: str, call):
    try:
        return call().to_dict()
    except stripe.StripeError as exc:
        logger.warning("Stripe refused %s: %s", what, exc)
        raise PaymentProviderError(details={"provider": "stripe", "provider_message": exc.user_message or ""}) from exc


def subscription_checkout_session_create(
    *, order: Order, price_id: str, customer_id: str = "", customer_email: str = ""
) -> CheckoutSession:
    """A Checkout Session in mode ``subscription`` for the plan's Stripe price, naming the order in
    ``client_reference_id`` and ``metadata``, and the order, account and plan in ``subscription_data.metadata``
    (Stripe copies it onto the subscription, so its later events name them). Idempotency key: the order's."""
    order_id = str(order.id)
    meta = {"order_id": order_id, "account_id": str(order.account_id), "plan_id": str(order.plan_id)}
    params: dict[str, Any] = {
        "mode": "subscription",
        "client_reference_id": order_id,
        "metadata": {**meta, "order_type": order.type, "platform_id": str(order.platform_id)},
        "subscription_data": {"metadata": meta},
        "line_items": [{"quantity": 1, "price": price_id}],
        "success_url": order.success_url,
        "cancel_url": order.cancel_url,
    }
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
    session_id, url = _text(session.get("id")), session.get("url")
    if not session_id or not isinstance(url, str) or not url:
        raise PaymentProviderError(details={"provider": "stripe"})
    return CheckoutSession(id=session_id, url=url, customer_id=_text(session.get("customer")), payment_intent_id="")


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


# --- reading invoices, subscriptions and charges out of events ---------------------------------------------
# Both shapes are read, the newer first and the older as the fallback (an account pinned to an older API version
# still sends the older one): after API version 2025-03-31 (``invoice.parent.subscription_details``,
# ``invoice.payments``, ``line.parent.subscription_item_details``, ``line.pricing.price_details.price``,
# ``subscription.items.data[].price`` and ``.current_period_*``) and before it (``invoice.subscription``,
# ``invoice.subscription_details.metadata``, ``invoice.payment_intent``, ``line.type``/``line.subscription``,
# ``line.price``, or ``line.plan`` and ``subscription.items.data[].plan`` / ``subscription.plan`` before prices,
# ``subscription.current_period_*``, ``charge.invoice``). A subscription line's ``metadata`` is the subscription's
# in the older shape, the last place an invoice names the account.


def _obj(event: dict[str, Any]) -> dict[str, Any]:
    obj = (event.get("data") or {}).get("object") or {}
    return obj if isinstance(obj, dict) else {}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_dict(value: Any) -> dict[str, str]:
    return {k: v for k, v in _dict(value).items() if isinstance(k, str) and isinstance(v, str)}


@dataclass(frozen=True, slots=True)
class InvoiceFacts:
    invoice_id: str
    subscription_id: str
    customer_id: str
    payment_intent_id: str
    price_id: str
    period_start: int | None
    period_end: int | None
    amount_paid: int | None
    currency: str
    billing_reason: str
    metadata: dict[str, str]  # the subscription's metadata (order_id, account_id, plan_id)


def invoice_facts(event: dict[str, Any]) -> InvoiceFacts:
    """The newer shape is read first, the older one as the fallback (see the note above this section)."""
    obj = _obj(event)
    details = _dict(_dict(obj.get("parent")).get("subscription_details"))
    lines = [line for line in (_dict(obj.get("lines")).get("data") or []) if isinstance(line, dict)]
    line = subscription_period_line(lines)
    item_details = _line_item_details(line)
    period = _dict(line.get("period"))
    metadata = _str_dict(details.get("metadata")) or _str_dict(_dict(obj.get("subscription_details")).get("metadata"))
    metadata = metadata or _str_dict(line.get("metadata"))
    return InvoiceFacts(
        invoice_id=_text(obj.get("id")),
        subscription_id=_text(details.get("subscription")) or _text(obj.get("subscription"))
        or _text(item_details.get("subscription")) or _text(line.get("subscription")),
        customer_id=_text(obj.get("customer")),
        payment_intent_id=_invoice_payment_intent(obj) or _text(obj.get("payment_intent")),
        price_id=_text(_dict(_dict(line.get("pricing")).get("price_details")).get("price"))
        or _text(line.get("price")) or _text(line.get("plan")),
        period_start=_int(period.get("start")),
        period_end=_int(period.get("end")),
        amount_paid=_int(obj.get("amount_paid")),
        currency=obj.get("currency").lower() if isinstance(obj.get("currency"), str) else "",
        billing_reason=obj.get("billing_reason") if isinstance(obj.get("billing_reason"), str) else "",
        metadata=metadata,
    )


def _line_item_details(line: dict[str, Any]) -> dict[str, Any]:
    return _dict(_dict(line.get("parent")).get("subscription_item_details"))


def subscription_period_line(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The line of the subscription's price for the period: a subscription item's line (``parent.type``
    "subscription_item_details" in the newer shape, ``type`` "subscription" in the older) that is not a proration
    (the lines of a plan change come before it); else a line naming a subscription; else any other line. Never a
    proration line nor a one-off invoice item (``parent.type`` "invoice_item_details", ``type`` "invoiceitem"):
    their periods are no billing period, so an invoice with only those has no period line (``{}``)."""

    def is_item(line: dict[str, Any]) -> bool:
        parent_type = _dict(line.get("parent")).get("type")
        return parent_type == "subscription_item_details" or line.get("type") == "subscription"

    def is_proration(line: dict[str, Any]) -> bool:
        invoice_item = _dict(_dict(line.get("parent")).get("invoice_item_details"))
        return (line.get("proration") is True or _line_item_details(line).get("proration") is True
                or invoice_item.get("proration") is True)

    def is_invoice_item(line: dict[str, Any]) -> bool:
        return _dict(line.get("parent")).get("type") == "invoice_item_details" or line.get("type") == "invoiceitem"

    def names_subscription(line: dict[str, Any]) -> bool:
        return bool(_text(_line_item_details(line).get("subscription")) or _text(line.get("subscription")))

    periodic = [line for line in lines if not is_proration(line) and not is_invoice_item(line)]
    for candidates in (
        [line for line in periodic if is_item(line)],
        [line for line in periodic if names_subscription(line)],
        periodic,
    ):
        if candidates:
            return candidates[0]
    return {}


def _invoice_payment_intent(invoice: dict[str, Any]) -> str:
    """Since 2025-03-31 an invoice names its payment intents under ``payments`` (when the list is included; a
    webhook's invoice usually leaves it out: ``invoice_payment.paid`` then names it): the paid one first."""
    items = [_dict(item) for item in _dict(invoice.get("payments")).get("data") or []]
    for item in sorted(items, key=lambda item: item.get("status") != "paid"):
        payment = _dict(item.get("payment"))
        if _text(payment.get("payment_intent")):
            return _text(payment.get("payment_intent"))
    return ""


@dataclass(frozen=True, slots=True)
class InvoicePaymentFacts:
    """What processing needs from an ``invoice_payment.*`` event's object (an InvoicePayment)."""

    invoice_id: str
    payment_intent_id: str
    status: str
    amount_paid: int | None


def invoice_payment_facts(event: dict[str, Any]) -> InvoicePaymentFacts:
    obj = _dict(_dict(event.get("data")).get("object"))
    amount = obj.get("amount_paid")
    return InvoicePaymentFacts(
        invoice_id=_text(obj.get("invoice")),
        payment_intent_id=_text(_dict(obj.get("payment")).get("payment_intent")),
        status=_text(obj.get("status")),
        amount_paid=amount if isinstance(amount, int) and not isinstance(amount, bool) else None,
    )


@dataclass(frozen=True, slots=True)
class SubscriptionFacts:
    subscription_id: str
    customer_id: str
    status: str
    price_id: str
    current_period_start: int | None
    current_period_end: int | None
    trial_end: int | None
    cancel_at_period_end: bool
    canceled_at: int | None
    metadata: dict[str, str]


def subscription_facts(event: dict[str, Any]) -> SubscriptionFacts:
    """The newer shape is read first (price and period on the item), the older one as the fallback (the item's
    ``plan``, or the subscription's own ``plan`` and ``current_period_*``)."""
    obj = _obj(event)
    items = [i for i in (_dict(obj.get("items")).get("data") or []) if isinstance(i, dict)]
    item = items[0] if items else {}
    return SubscriptionFacts(
        subscription_id=_text(obj.get("id")),
        customer_id=_text(obj.get("customer")),
        status=obj.get("status") if isinstance(obj.get("status"), str) else "",
        price_id=_text(item.get("price")) or _text(item.get("plan")) or _text(obj.get("plan")),
        current_period_start=_first_int(item.get("current_period_start"), obj.get("current_period_start")),
        current_period_end=_first_int(item.get("current_period_end"), obj.get("current_period_end")),
        trial_end=_int(obj.get("trial_end")),
        cancel_at_period_end=obj.get("cancel_at_period_end") is True,
        canceled_at=_int(obj.get("canceled_at")),
        metadata=_str_dict(obj.get("metadata")),
    )


def _first_int(*values: Any) -> int | None:
    return next((v for v in map(_int, values) if v is not None), None)


@dataclass(frozen=True, slots=True)
class ChargeFacts:
    charge_id: str
    payment_intent_id: str
    invoice_id: str
    amount: int | None
    amount_refunded: int | None
    currency: str
    metadata: dict[str, str]


def charge_facts(event: dict[str, Any]) -> ChargeFacts:
    obj = _obj(event)
    return ChargeFacts(
        charge_id=_text(obj.get("id")),
        payment_intent_id=_text(obj.get("payment_intent")),
        invoice_id=_text(obj.get("invoice")),
        amount=_int(obj.get("amount")),
        amount_refunded=_int(obj.get("amount_refunded")),
        currency=obj.get("currency").lower() if isinstance(obj.get("currency"), str) else "",
        metadata=_str_dict(obj.get("metadata")),
    )


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
            payment_intent_id=_text(error_intent), status="requires_payment_method", declined=True,
            message=exc.user_message or str(exc),
        )
    except stripe.StripeError as exc:
        logger.warning("Stripe failed the off-session charge %s: %s", idempotency_key, exc)
        raise PaymentProviderError(details={"provider": "stripe", "provider_message": exc.user_message or ""}) from exc
    status = intent.get("status") if isinstance(intent.get("status"), str) else ""
    return OffSessionCharge(
        payment_intent_id=_text(intent.get("id")),
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
    session_id, url = _text(session.get("id")), session.get("url")
    if not session_id or not isinstance(url, str) or not url:
        raise PaymentProviderError(details={"provider": "stripe"})
    return CheckoutSession(id=session_id, url=url, customer_id=_text(session.get("customer")), payment_intent_id="")


@dataclass(frozen=True, slots=True)
class CardFacts:
    brand: str
    last4: str


def card_facts(payment_method: Any) -> CardFacts:
    """Brand and last 4 digits of a payment method object (empty for an id or a method that is not a card)."""
    card = _dict(_dict(payment_method).get("card"))
    brand, last4 = card.get("brand"), card.get("last4")
    return CardFacts(brand=brand if isinstance(brand, str) else "", last4=last4 if isinstance(last4, str) else "")


def payment_method_card(*, payment_method_id: str) -> CardFacts:
    """Brand and last 4 digits of a saved payment method, read from Stripe."""
    method = _stripe_call(
        f"payment method {payment_method_id}",
        lambda: _client().v1.payment_methods.retrieve(payment_method_id),
    )
    return card_facts(method)


@dataclass(frozen=True, slots=True)
class SetupIntentFacts:
    setup_intent_id: str
    status: str
    usage: str
    customer_id: str
    payment_method_id: str
    card: CardFacts
    metadata: dict[str, str]


def setup_intent_facts(obj: Any) -> SetupIntentFacts:
    """What saving a card needs from a SetupIntent (an event's object, or one read from Stripe)."""
    obj = _dict(obj)
    return SetupIntentFacts(
        setup_intent_id=_text(obj.get("id")),
        status=obj.get("status") if isinstance(obj.get("status"), str) else "",
        usage=obj.get("usage") if isinstance(obj.get("usage"), str) else "",
        customer_id=_text(obj.get("customer")),
        payment_method_id=_text(obj.get("payment_method")),
        card=card_facts(obj.get("payment_method")),
        metadata=_str_dict(obj.get("metadata")),
    )


def setup_intent_get(*, setup_intent_id: str) -> SetupIntentFacts:
    """A SetupIntent read from Stripe, its payment method expanded (for the card's brand and last 4)."""
    intent = _stripe_call(
        f"setup intent {setup_intent_id}",
        lambda: _client().v1.setup_intents.retrieve(setup_intent_id, params={"expand": ["payment_method"]}),
    )
    return setup_intent_facts(intent)
