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


def checkout_session_create(*, order: Order, product_name: str, customer_email: str = "") -> CheckoutSession:
    """A Checkout Session (mode ``payment``) charging the order's exact amount, naming the order in
    ``client_reference_id`` and ``metadata.order_id`` (and on the PaymentIntent's metadata). The Stripe
    idempotency key is derived from the order id, so a retry can never open a second session for it."""
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
    if customer_email:
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
    """The event of a webhook delivery, once ``stripe.Webhook.construct_event`` has checked its signature
    against ``STRIPE_WEBHOOK_SECRET`` and its timestamp against the tolerance. Raises otherwise."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise PaymentProviderNotConfigured(
            "Stripe webhooks are not configured on this service (STRIPE_WEBHOOK_SECRET)."
        )
    try:
        stripe.Webhook.construct_event(
            payload, signature_header, secret, tolerance=settings.STRIPE_WEBHOOK_TOLERANCE
        )
    except stripe.SignatureVerificationError as exc:
        raise WebhookSignatureInvalid() from exc
    except (ValueError, TypeError, AttributeError) as exc:  # signed, but not UTF-8 JSON of a v1 event
        raise WebhookPayloadInvalid() from exc
    event = json.loads(payload)
    if not (
        isinstance(event, dict)
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
    )
