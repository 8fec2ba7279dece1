"""The only module that talks to Creem (plain HTTPS through ``urllib.request``: Creem's API is small JSON over
HTTP and this project adds no HTTP client for it).

What Creem documents, and what this module relies on:
- API: ``POST {CREEM_API_BASE}/v1/checkouts`` with the ``x-api-key`` header; production base
  ``https://api.creem.io``, test mode ``https://test-api.creem.io`` (docs.creem.io/api-reference/endpoint/
  create-checkout, "servers"; docs.creem.io/skills/creem-api/REFERENCE.md "Base Configuration").
  Body: ``product_id`` (required), ``request_id`` ("your tracking ID for this checkout"), ``success_url``,
  ``metadata``, ``customer.email``, ``units``, ``discount_code`` (same reference, "Create Checkout Session";
  the Ruby client's ``Creem::Resources::Checkouts#create`` sends the same keys). The answer is a checkout
  object with ``id`` (``ch_...``) and ``checkout_url``, the page to redirect to (creem TypeScript SDK
  ``CheckoutEntity.checkoutUrl``; docs.creem.io/code/sdks/typescript-wrapper
  "console.log(checkout.checkoutUrl)").
  Creem has no cancel URL and no idempotency header: ``request_id`` is the order id, so every event of the
  checkout names the order (``checkout.completed`` echoes ``request_id``).
- Webhooks: the ``creem-signature`` header is the hex HMAC-SHA256 of the raw request body keyed with the
  webhook secret (docs.creem.io/skills/creem-api/WEBHOOKS "Signature Verification"). An event is
  ``{"id": "evt_...", "eventType": "...", "created_at": <ms since epoch>, "object": {...}}``
  (docs.creem.io/learn/webhooks/event-types; github.com/armitage-labs/creem learn/webhooks/event-types.mdx).

Configuration from settings: ``CREEM_API_KEY``, ``CREEM_API_BASE``, ``CREEM_WEBHOOK_SECRET``,
``CREEM_TIMEOUT_SECONDS``. Callers never hold a database row lock while calling in here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from payments.errors import (
    PaymentProviderError,
    PaymentProviderNotConfigured,
    WebhookPayloadInvalid,
    WebhookSignatureInvalid,
)
from payments.models import Order

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "creem-signature"
API_KEY_HEADER = "x-api-key"


@dataclass(frozen=True, slots=True)
class CreemCheckout:
    id: str
    url: str


def ensure_configured() -> None:
    """Raises ``PaymentProviderNotConfigured`` before anything is written for a checkout that cannot
    happen."""
    if not settings.CREEM_API_KEY:
        raise PaymentProviderNotConfigured("Creem is not configured on this service (CREEM_API_KEY).")


def checkout_create(
    *, order: Order, product_id: str, customer_email: str = "", discount_code: str = ""
) -> CreemCheckout:
    """A Creem checkout for ``product_id`` whose ``request_id`` and ``metadata.order_id`` are the order id;
    ``discount_code``: a Creem discount code (the order's coupon; the discount with that code is Creem's own)."""
    ensure_configured()
    order_id = str(order.id)
    body: dict[str, Any] = {
        "product_id": product_id,
        "request_id": order_id,
        "success_url": order.success_url,
        "metadata": {"order_id": order_id, "order_type": order.type, "platform_id": str(order.platform_id)},
    }
    if customer_email:
        body["customer"] = {"email": customer_email}
    if discount_code:
        body["discount_code"] = discount_code
    answer = _call("POST", "/v1/checkouts", body=body, what=f"the checkout of order {order_id}")
    checkout_id = answer.get("id") if isinstance(answer, dict) else None
    url = answer.get("checkout_url") if isinstance(answer, dict) else None
    if not isinstance(checkout_id, str) or not checkout_id or not isinstance(url, str) or not url:
        logger.error("Creem answered the checkout of order %s without an id or checkout_url", order_id)
        raise PaymentProviderError(details={"provider": "creem"})
    return CreemCheckout(id=checkout_id, url=url)


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read() or b"{}")
    except (ValueError, OSError):
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(message, list):
        message = "; ".join(str(m) for m in message)
    return str(message)[:500] if message else ""


def signature_of(payload: bytes, secret: str) -> str:
    """Creem's signature of a delivery: hex HMAC-SHA256 of the raw body keyed with the webhook secret."""
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def webhook_event_verify(*, payload: bytes, signature_header: str | None) -> dict[str, Any]:
    """The event of a delivery whose ``creem-signature`` matches the raw body (constant-time comparison);
    raises ``WebhookSignatureInvalid`` (400) otherwise, ``WebhookPayloadInvalid`` (400) for a signed body
    that is not a Creem event."""
    secret = settings.CREEM_WEBHOOK_SECRET
    if not secret:
        raise PaymentProviderNotConfigured(
            "Creem webhooks are not configured on this service (CREEM_WEBHOOK_SECRET)."
        )
    if not signature_header or not hmac.compare_digest(
        signature_of(payload, secret).encode(), signature_header.strip().lower().encode()
    ):
        raise WebhookSignatureInvalid()
    try:
        event = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookPayloadInvalid() from exc
    if not (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and 0 < len(event["id"]) <= 255
        and isinstance(event.get("eventType"), str)
        and 0 < len(event["eventType"]) <= 255
        and isinstance(event.get("object"), dict)
    ):
        raise WebhookPayloadInvalid()
    return event


# --- listing (payments.reconcile) ------------------------------------------------------------------------------


def transactions_pages(*, page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
    """Every transaction of the store, a page at a time: ``GET {CREEM_API_BASE}/v1/transactions/search`` with
    ``page_number`` and ``page_size``, answered ``{"items": [...], "pagination": {"next_page": n or null, ...}}``
    (docs.creem.io/api-reference/endpoint/get-transactions). Its documented filters are a customer, an order or a
    product, not a date: the caller keeps what it wants by ``created_at``. A transaction: ``id``, ``amount``,
    ``amount_paid``, ``currency``, ``type`` (payment / invoice), ``status``, ``refunded_amount``, ``order``,
    ``subscription``, ``customer``, ``period_start``, ``period_end``, ``created_at`` (milliseconds). A failure raises
    ``PaymentProviderError``. Call it with no transaction open."""
    ensure_configured()
    page: int | None = 1
    while page is not None:
        query = urllib.parse.urlencode({"page_number": page, "page_size": page_size})
        answer = _call("GET", f"/v1/transactions/search?{query}", what=f"the transactions (page {page})")
        items = answer.get("items") if isinstance(answer, dict) else None
        if not isinstance(items, list):
            raise PaymentProviderError(details={"provider": "creem"})
        yield [item for item in items if isinstance(item, dict)]
        pagination = answer.get("pagination") if isinstance(answer.get("pagination"), dict) else {}
        following = pagination.get("next_page")
        page = following if isinstance(following, int) and following > page else None


def _call(method: str, path: str, *, what: str, body: dict[str, Any] | None = None) -> Any:
    """One call of Creem's API (``CREEM_API_BASE``, authenticated by the API key): its JSON answer; a refusal or no
    answer is a ``PaymentProviderError`` (logged, naming ``what`` was asked)."""
    headers = {API_KEY_HEADER: settings.CREEM_API_KEY, "Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(f"{settings.CREEM_API_BASE.rstrip('/')}{path}", method=method, headers=headers,
                                     data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request, timeout=settings.CREEM_TIMEOUT_SECONDS) as response:  # noqa: S310
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        message = _error_message(exc)
        logger.warning("Creem refused %s: %s %s", what, exc.code, message)
        raise PaymentProviderError(details={"provider": "creem", "provider_message": message}) from exc
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        logger.warning("Creem could not be reached for %s: %s", what, exc)
        raise PaymentProviderError(details={"provider": "creem"}) from exc
