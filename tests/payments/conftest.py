"""Stripe for the payments tests: the real ``stripe`` library against a local HTTP fake of the Checkout
Sessions API (pytest-httpserver), and webhook deliveries signed with the library's own helper
(``stripe.WebhookSignature.generate_signature_header``)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import stripe
from django.test import Client
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.api_helpers import post_json
from tests.conftest import Member, client_for

SECRET_KEY = "sk_test_fake_123"
WEBHOOK_SECRET = "whsec_test_secret_456"
APP_ORIGIN = "https://app.acme.test"
SUCCESS_URL = f"{APP_ORIGIN}/billing?paid=1&session={{CHECKOUT_SESSION_ID}}"
CANCEL_URL = f"{APP_ORIGIN}/billing"
CHECKOUT_URL = "/api/billing/checkout/"
ORDERS_URL = "/api/billing/orders/"
WEBHOOK_URL = "/api/billing/webhooks/stripe/"

_ids = itertools.count(1)


@dataclass
class FakeStripe:
    """The Checkout Sessions endpoint: checks what the library sends and answers like Stripe does."""

    server: HTTPServer
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_status: int | None = None  # answer every request with this error status
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, request: Request) -> Response:
        form = request.form.to_dict()
        with self.lock:
            self.requests.append({"form": form, "headers": dict(request.headers)})
        if request.headers.get("Authorization") != f"Bearer {SECRET_KEY}":
            return self._error(401, "authentication_error", "Invalid API Key provided")
        if not request.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            return self._error(400, "invalid_request_error", "form-encoded body expected")
        if self.fail_status is not None:
            return self._error(self.fail_status, "api_error", "Something went wrong on Stripe's end.")
        if "customer" in form and ("customer_email" in form or "customer_creation" in form):
            return self._error(400, "invalid_request_error", "customer_email and customer_creation cannot be "
                               "used with customer.")
        if form.get("mode") == "setup":
            return self._setup_session(form)
        missing = [k for k in ("mode", "success_url", "line_items[0][quantity]") if k not in form]
        if missing:
            return self._error(400, "invalid_request_error", f"Missing required param: {missing[0]}.")
        session_id = f"cs_test_{next(_ids):06d}"
        unit = int(form["line_items[0][price_data][unit_amount]"])
        quantity = int(form["line_items[0][quantity]"])
        body = {
            "id": session_id,
            "object": "checkout.session",
            "mode": form["mode"],
            "status": "open",
            "payment_status": "unpaid",
            "client_reference_id": form.get("client_reference_id"),
            "metadata": {k[len("metadata["):-1]: v for k, v in form.items() if k.startswith("metadata[")},
            "amount_total": unit * quantity,
            "currency": form["line_items[0][price_data][currency]"],
            "customer": form.get("customer"),
            "payment_intent": None,
            "success_url": form["success_url"],
            "cancel_url": form.get("cancel_url"),
            "url": f"https://checkout.stripe.test/c/pay/{session_id}",
        }
        return Response(json.dumps(body), status=200, content_type="application/json")

    def _setup_session(self, form: dict[str, str]) -> Response:
        """Mode ``setup``: no line items; a currency (or payment method types); no payment intent data."""
        if "line_items[0][quantity]" in form or any(k.startswith("payment_intent_data") for k in form):
            return self._error(400, "invalid_request_error", "line_items and payment_intent_data are for payment "
                               "mode.")
        if "currency" not in form and "payment_method_types[0]" not in form:
            return self._error(400, "invalid_request_error", "currency is required in setup mode.")
        session_id = f"cs_test_{next(_ids):06d}"
        body = {
            "id": session_id, "object": "checkout.session", "mode": "setup", "status": "open",
            "payment_status": "no_payment_required", "customer": form.get("customer"), "setup_intent": None,
            "metadata": {k[len("metadata["):-1]: v for k, v in form.items() if k.startswith("metadata[")},
            "success_url": form["success_url"], "cancel_url": form.get("cancel_url"),
            "url": f"https://checkout.stripe.test/c/setup/{session_id}",
        }
        return Response(json.dumps(body), status=200, content_type="application/json")

    @staticmethod
    def _error(status: int, kind: str, message: str) -> Response:
        return Response(json.dumps({"error": {"type": kind, "message": message}}), status=status,
                        content_type="application/json")

    @property
    def last(self) -> dict[str, Any]:
        return self.requests[-1]


@pytest.fixture
def fake_stripe(settings, httpserver: HTTPServer) -> FakeStripe:  # noqa: ANN001
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_API_BASE = httpserver.url_for("/").rstrip("/")
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_WEBHOOK_TOLERANCE = 300
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.STRIPE_TIMEOUT_SECONDS = 10
    settings.CHECKOUT_ALLOWED_ORIGINS = [APP_ORIGIN]
    fake = FakeStripe(httpserver)
    httpserver.expect_request("/v1/checkout/sessions", method="POST").respond_with_handler(fake.handle)
    return fake


def checkout(member: Member, amount: Any = "25.00", **fields: Any):  # noqa: ANN201
    body = {"channel": "stripe", "type": "top_up", "amount": amount, "success_url": SUCCESS_URL,
            "cancel_url": CANCEL_URL} | fields
    return post_json(client_for(member), CHECKOUT_URL, {k: v for k, v in body.items() if v is not None})


def start_top_up(member: Member, amount: str = "25.00") -> dict[str, Any]:
    """A pending top-up made through the API; returns its order as the API shows it."""
    response = checkout(member, amount)
    assert response.status_code == 201, response.content
    return client_for(member).get(f"{ORDERS_URL}{response.json()['order_id']}/").json()


# --- events ----------------------------------------------------------------------------------------------------


def session_event(
    event_type: str,
    order: dict[str, Any],
    *,
    payment_status: str = "paid",
    amount_total: int | None = None,
    currency: str = "usd",
    event_id: str | None = None,
    session_id: str | None = None,
    mode: str = "payment",
    client_reference_id: Any = "order",
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Stripe event about the order's Checkout Session, shaped as Stripe sends it."""
    order_id = order["id"]
    cents = int(round(float(order["amount_usd"]) * 100)) if amount_total is None else amount_total
    return {
        "id": event_id or f"evt_test_{next(_ids):06d}",
        "object": "event",
        "api_version": "2025-09-30.clover",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "type": event_type,
        "data": {
            "object": {
                "id": session_id or order["provider_checkout_id"],
                "object": "checkout.session",
                "mode": mode,
                "status": "complete",
                "payment_status": payment_status,
                "client_reference_id": order_id if client_reference_id == "order" else client_reference_id,
                "metadata": {"order_id": order_id} if metadata is None else metadata,
                "amount_total": cents,
                "currency": currency,
                "customer": "cus_test_1",
                "payment_intent": "pi_test_1",
            }
        },
    }


def signature_header(payload: str, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)


def deliver(event: dict[str, Any] | str, *, header: str | None = "sign", **sign: Any):  # noqa: ANN201
    """POSTs the event to the webhook endpoint as Stripe does: raw JSON, signed (``header="sign"``), or with
    the given header, or none (``header=None``)."""
    payload = event if isinstance(event, str) else json.dumps(event)
    extra = {}
    if header == "sign":
        extra["HTTP_STRIPE_SIGNATURE"] = signature_header(payload, **sign)
    elif header is not None:
        extra["HTTP_STRIPE_SIGNATURE"] = header
    return Client().post(WEBHOOK_URL, data=payload, content_type="application/json", **extra)


from tests.payments.creem_support import fake_creem  # noqa: E402, F401 - for tests/payments/test_creem_*
