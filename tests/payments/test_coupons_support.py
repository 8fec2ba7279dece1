"""Support of the coupon tests: a local HTTP fake of the Stripe endpoints checkout with a coupon needs (Checkout
Sessions in modes payment and subscription, with ``discounts``, and ``/v1/coupons``), driven by the real ``stripe``
library; coupons made through the admin API; a paid session's webhook. No test here."""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.api_helpers import post_json
from tests.conftest import Member, client_for
from tests.payments import stripe_subscriptions
from tests.payments.conftest import CANCEL_URL, CHECKOUT_URL, SECRET_KEY, SUCCESS_URL

COUPONS_URL = "/api/billing/admin/coupons/"
REDEEM_URL = "/api/billing/coupons/redeem/"
_ids = itertools.count(1)


@dataclass
class CouponStripe:
    """Stripe's Checkout Sessions and Coupons, as far as checkout with a discount uses them. A session's
    ``amount_total`` is its line item less the coupon named in ``discounts`` (an unknown coupon is Stripe's 400);
    ``percent_rounding`` is how this Stripe rounds a percentage's half cent."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    coupons: dict[str, dict[str, Any]] = field(default_factory=dict)
    prices: dict[str, int] = field(default_factory=dict)  # a subscription's Stripe price -> its unit amount
    percent_rounding: str = ROUND_HALF_UP
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, request: Request) -> dict[str, str] | Response:
        form = request.form.to_dict()
        with self.lock:
            self.requests.append({"path": request.path, "form": form, "headers": dict(request.headers)})
        if request.headers.get("Authorization") != f"Bearer {SECRET_KEY}":
            return _error(401, "authentication_error", "Invalid API Key provided")
        return form

    def coupon(self, request: Request) -> Response:
        form = self._record(request)
        if isinstance(form, Response):
            return form
        coupon_id = form.get("id", f"auto_{next(_ids)}")
        if coupon_id in self.coupons:
            return _error(400, "invalid_request_error", "Coupon already exists.", code="resource_already_exists")
        if form.get("duration") not in ("once", "forever", "repeating"):
            return _error(400, "invalid_request_error", "Missing required param: duration.")
        if ("percent_off" in form) == ("amount_off" in form):
            return _error(400, "invalid_request_error", "Give exactly one of amount_off and percent_off.")
        if "amount_off" in form and form.get("currency") != "usd":
            return _error(400, "invalid_request_error", "currency is required with amount_off.")
        body = {"id": coupon_id, "object": "coupon", "duration": form["duration"], "name": form.get("name"),
                "percent_off": float(form["percent_off"]) if "percent_off" in form else None,
                "amount_off": int(form["amount_off"]) if "amount_off" in form else None,
                "currency": form.get("currency"), "valid": True, "_form": form}
        with self.lock:
            self.coupons[coupon_id] = body
        return _json({k: v for k, v in body.items() if k != "_form"})

    def session(self, request: Request) -> Response:
        form = self._record(request)
        if isinstance(form, Response):
            return form
        if form.get("mode") == "payment":
            subtotal = int(form["line_items[0][price_data][unit_amount]"]) * int(form["line_items[0][quantity]"])
            currency = form["line_items[0][price_data][currency]"]
        elif form.get("mode") == "subscription" and "line_items[0][price]" in form:
            subtotal = self.prices.get(form["line_items[0][price]"], 1000) * int(form["line_items[0][quantity]"])
            currency = "usd"
        else:
            return _error(400, "invalid_request_error", "unsupported session")
        discount = 0
        coupon_id = form.get("discounts[0][coupon]")
        if coupon_id is not None:
            coupon = self.coupons.get(coupon_id)
            if coupon is None:
                return _error(400, "invalid_request_error", f"No such coupon: '{coupon_id}'")
            if coupon["percent_off"] is not None:
                exact = Decimal(subtotal) * Decimal(coupon["_form"]["percent_off"]) / 100
                discount = int(exact.quantize(Decimal(1), rounding=self.percent_rounding))
            else:
                discount = min(coupon["amount_off"], subtotal)
        session_id = f"cs_test_c{next(_ids):06d}"
        body = {
            "id": session_id, "object": "checkout.session", "mode": form["mode"], "status": "open",
            "payment_status": "unpaid", "client_reference_id": form.get("client_reference_id"),
            "metadata": {k[len("metadata["):-1]: v for k, v in form.items()
                         if k.startswith("metadata[") and k.count("[") == 1},
            "amount_subtotal": subtotal, "amount_total": subtotal - discount,
            "total_details": {"amount_discount": discount}, "currency": currency, "customer": form.get("customer"),
            "payment_intent": None, "subscription": None, "url": f"https://checkout.stripe.test/c/pay/{session_id}",
        }
        return _json(body)

    def of(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]


def _json(body: Any) -> Response:
    return Response(json.dumps(body), status=200, content_type="application/json")


def _error(status: int, kind: str, message: str, code: str | None = None) -> Response:
    error = {"type": kind, "message": message} | ({"code": code} if code else {})
    return Response(json.dumps({"error": error}), status=status, content_type="application/json")


@pytest.fixture
def coupon_stripe(settings, httpserver: HTTPServer) -> CouponStripe:  # noqa: ANN001
    stripe_subscriptions.stripe_fake_settings(settings, httpserver)
    fake = CouponStripe()
    httpserver.expect_request("/v1/checkout/sessions", method="POST").respond_with_handler(fake.session)
    httpserver.expect_request("/v1/coupons", method="POST").respond_with_handler(fake.coupon)
    return fake


def make_coupon(admin: Member, code: str = "SAVE20", kind: str = "percent_off", value: Any = "20", **fields: Any):
    """A coupon through the admin API; returns its JSON."""
    response = post_json(client_for(admin), COUPONS_URL, {"code": code, "kind": kind, "value": value} | fields)
    assert response.status_code == 201, response.content
    return response.json()


def redeem(member: Member, code: Any):  # noqa: ANN201
    return post_json(client_for(member), REDEEM_URL, {"code": code})


def top_up(member: Member, amount: str = "25.00", **fields: Any):  # noqa: ANN201
    body = {"channel": "stripe", "type": "top_up", "amount": amount, "success_url": SUCCESS_URL,
            "cancel_url": CANCEL_URL} | fields
    return post_json(client_for(member), CHECKOUT_URL, body)


def paid_session_event(order: Any, *, amount_total: int, event_id: str | None = None) -> dict[str, Any]:
    """``checkout.session.completed`` (paid) of a top-up order (a model instance)."""
    return {
        "id": event_id or f"evt_test_c{next(_ids):06d}", "object": "event", "api_version": "2025-09-30.clover",
        "created": int(time.time()), "livemode": False, "pending_webhooks": 1, "type": "checkout.session.completed",
        "data": {"object": {
            "id": order.provider_checkout_id, "object": "checkout.session", "mode": "payment", "status": "complete",
            "payment_status": "paid", "client_reference_id": str(order.id), "metadata": {"order_id": str(order.id)},
            "amount_total": amount_total, "currency": "usd", "customer": "cus_test_1",
            "payment_intent": f"pi_test_c{next(_ids):06d}",
        }},
    }

