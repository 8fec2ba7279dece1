"""Whole flows over HTTP: what a member, the platform's backend and Stripe see and send, nothing else.

These tests import none of the service's modules (no models, services, selectors or other test helpers that
do): a platform and its people are made with the documented management commands, every other step is an HTTP
request to a public endpoint or a signed delivery to a webhook endpoint, and every check reads an HTTP answer.
So an internal refactor cannot break them; only a change of the API can.

Stripe is the real ``stripe`` library on our side, talking to a local fake of the Checkout Sessions API
(pytest-httpserver: localstripe has no Checkout), and webhook events signed with the library's own helper."""

from __future__ import annotations

import io
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import stripe
from django.core.management import call_command
from django.test import Client
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

SECRET_KEY = "sk_test_e2e_123"
WEBHOOK_SECRET = "whsec_test_e2e_456"
APP_ORIGIN = "https://app.e2e.test"
WEBHOOK_URL = "/api/billing/webhooks/stripe/"

_ids = itertools.count(1)


def _next_id(prefix: str) -> str:
    return f"{prefix}_e2e_{next(_ids):06d}"


@dataclass
class StripeCheckout:
    """Stripe's side of a Checkout Session: it opens the sessions our service asks for (checking the request
    as Stripe would) and, once the customer has paid, tells what Stripe's events would carry."""

    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {SECRET_KEY}":
            return _error(401, "authentication_error", "Invalid API Key provided")
        form = request.form.to_dict()
        if form.get("mode") != "payment" or "line_items[0][quantity]" not in form:
            return _error(400, "invalid_request_error", "this fake opens payment sessions only")
        session_id = _next_id("cs")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": "payment",
            "status": "open",
            "payment_status": "unpaid",
            "client_reference_id": form.get("client_reference_id"),
            "metadata": {k[len("metadata["):-1]: v for k, v in form.items() if k.startswith("metadata[")},
            "amount_total": int(form["line_items[0][price_data][unit_amount]"])
            * int(form["line_items[0][quantity]"]),
            "currency": form["line_items[0][price_data][currency]"],
            "customer": form.get("customer"),
            "payment_intent": None,
            "success_url": form["success_url"],
            "cancel_url": form.get("cancel_url"),
            "url": f"https://checkout.stripe.test/c/pay/{session_id}",
        }
        with self.lock:
            self.sessions[session_id] = session
        return Response(json.dumps(session), status=200, content_type="application/json")

    def session_at(self, url: str) -> dict[str, Any]:
        """The session whose checkout page is ``url`` (what the member was sent to)."""
        (session,) = [s for s in self.sessions.values() if s["url"] == url]
        return session

    def page_of(self, order_id: str) -> str:
        """The checkout page Stripe opened for the order (the session names it in its metadata)."""
        (session,) = [s for s in self.sessions.values() if s["metadata"]["order_id"] == order_id]
        return session["url"]

    def pay(self, url: str) -> dict[str, Any]:
        """The member pays on the page at ``url``: the session completes and gets its payment intent and
        customer; returns the ``checkout.session.completed`` event Stripe then sends."""
        session = self.session_at(url)
        session.update(status="complete", payment_status="paid", payment_intent=_next_id("pi"),
                       customer=session["customer"] or _next_id("cus"))
        return stripe_event("checkout.session.completed", dict(session))

    def refund(self, url: str, cents: int) -> dict[str, Any]:
        """Stripe refunds ``cents`` of the session's charge (cumulative): the ``charge.refunded`` event."""
        session = self.session_at(url)
        amount = session["amount_total"]
        charge = {
            "id": f"ch_for_{session['payment_intent']}",
            "object": "charge",
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": cents,
            "refunded": cents == amount,
            "currency": session["currency"],
            "payment_intent": session["payment_intent"],
            "metadata": {},
            "paid": True,
            "status": "succeeded",
        }
        return stripe_event("charge.refunded", charge)


def _error(status: int, kind: str, message: str) -> Response:
    return Response(json.dumps({"error": {"type": kind, "message": message}}), status=status,
                    content_type="application/json")


def stripe_event(event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _next_id("evt"),
        "object": "event",
        "api_version": "2025-09-30.clover",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "type": event_type,
        "data": {"object": obj},
    }


def deliver(event: dict[str, Any]):  # noqa: ANN201
    """POSTs the event as Stripe does: its JSON, signed now with the endpoint's secret by the library's helper
    (a redelivery is signed again, with a new timestamp, as Stripe does)."""
    payload = json.dumps(event)
    signature = stripe.WebhookSignature.generate_signature_header(payload, WEBHOOK_SECRET)
    return Client().post(WEBHOOK_URL, data=payload, content_type="application/json",
                         HTTP_STRIPE_SIGNATURE=signature)


@pytest.fixture
def stripe_checkout(settings, httpserver: HTTPServer) -> StripeCheckout:  # noqa: ANN001
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_API_BASE = httpserver.url_for("/").rstrip("/")
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_WEBHOOK_TOLERANCE = 300
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.STRIPE_TIMEOUT_SECONDS = 10
    settings.CHECKOUT_ALLOWED_ORIGINS = [APP_ORIGIN]
    fake = StripeCheckout()
    httpserver.expect_request("/v1/checkout/sessions", method="POST").respond_with_handler(fake.handle)
    return fake


# --- people, made the documented way ---------------------------------------------------------------------------


def create_platform(key: str, name: str) -> None:
    call_command("create_platform", key, name=name, stdout=io.StringIO())


def add_member(platform_key: str, username: str, role: str) -> Client:
    """``manage.py add_member``; returns a client sending the token it printed."""
    out = io.StringIO()
    call_command("add_member", platform_key, username, role=role, stdout=out)
    printed = json.loads(out.getvalue())
    assert (printed["username"], printed["platform_key"], printed["role"]) == (username, platform_key, role)
    return Client(headers={"Authorization": f"Token {printed['token']}"})


def get(client: Client, url: str, **params: Any) -> dict[str, Any]:
    response = client.get(url, params)
    assert response.status_code == 200, (url, response.status_code, response.content[:500])
    return response.json()


def post(client: Client, url: str, body: dict[str, Any], status: int) -> dict[str, Any]:
    response = client.post(url, data=json.dumps(body), content_type="application/json")
    assert response.status_code == status, (url, response.status_code, response.content[:500])
    return response.json()
