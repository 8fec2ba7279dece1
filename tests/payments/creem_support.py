"""Creem for the payments tests: a local HTTP fake of ``POST /v1/checkouts`` (pytest-httpserver) that checks
what the provider module sends, and webhook deliveries shaped as Creem documents them
(docs.creem.io/learn/webhooks/event-types), signed as Creem signs them: ``creem-signature`` = hex
HMAC-SHA256 of the raw body keyed with the webhook secret (docs.creem.io/skills/creem-api/WEBHOOKS)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from accounts.models import Platform
from subscriptions.models import Plan
from subscriptions.services import plan_create
from tests.api_helpers import post_json
from tests.conftest import Member, client_for

API_KEY = "creem_test_key_123"
WEBHOOK_SECRET = "whsec_creem_test_456"
APP_ORIGIN = "https://app.acme.test"
SUCCESS_URL = f"{APP_ORIGIN}/billing?paid=1"
CANCEL_URL = f"{APP_ORIGIN}/billing"
CHECKOUT_URL = "/api/billing/checkout/"
ORDERS_URL = "/api/billing/orders/"
WEBHOOK_URL = "/api/billing/webhooks/creem/"
PRODUCT_ID = "prod_pro_monthly"
PERIOD_1 = datetime(2026, 10, 12, 11, 58, 38, tzinfo=UTC)
PERIOD_2 = datetime(2026, 11, 12, 11, 58, 38, tzinfo=UTC)
PERIOD_3 = datetime(2026, 12, 12, 11, 58, 38, tzinfo=UTC)

_ids = itertools.count(1)


@dataclass
class FakeCreem:
    """``POST /v1/checkouts``: checks what the provider module sends and answers like Creem does."""

    server: HTTPServer
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_status: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, request: Request) -> Response:
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError:
            body = None
        with self.lock:
            self.requests.append({"json": body, "headers": dict(request.headers)})
        if request.headers.get("x-api-key") != API_KEY:
            return self._error(403, "Invalid API key")
        is_json = request.headers.get("Content-Type", "").startswith("application/json")
        if not is_json or not isinstance(body, dict):
            return self._error(400, "JSON body expected")
        if self.fail_status is not None:
            return self._error(self.fail_status, "Something went wrong")
        if not isinstance(body.get("product_id"), str):
            return self._error(400, ["product_id must be a string"])
        checkout_id = f"ch_test_{next(_ids):06d}"
        answer = {
            "id": checkout_id,
            "mode": "test",
            "object": "checkout",
            "status": "pending",
            "request_id": body.get("request_id"),
            "product": body["product_id"],
            "units": 1,
            "checkout_url": f"https://checkout.creem.test/checkout/{checkout_id}",
            "success_url": body.get("success_url"),
            "metadata": body.get("metadata"),
        }
        return Response(json.dumps(answer), status=200, content_type="application/json")

    @staticmethod
    def _error(status: int, message: Any) -> Response:
        return Response(json.dumps({"status": status, "error": "Error", "message": message}), status=status,
                        content_type="application/json")

    @property
    def last(self) -> dict[str, Any]:
        return self.requests[-1]


@pytest.fixture
def fake_creem(settings, httpserver: HTTPServer) -> FakeCreem:  # noqa: ANN001
    settings.CREEM_API_KEY = API_KEY
    settings.CREEM_API_BASE = httpserver.url_for("/").rstrip("/")
    settings.CREEM_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.CREEM_TIMEOUT_SECONDS = 10
    settings.CHECKOUT_ALLOWED_ORIGINS = [APP_ORIGIN]
    fake = FakeCreem(httpserver)
    httpserver.expect_request("/v1/checkouts", method="POST").respond_with_handler(fake.handle)
    return fake


def creem_plan(platform: Platform, slug: str = "pro", **fields: Any) -> Plan:
    values: dict[str, Any] = {
        "name": slug.title(), "price_monthly": 2000, "price_yearly": 20000, "credits_included": "500",
        "creem_product_id": PRODUCT_ID,
    } | fields
    from decimal import Decimal

    values["credits_included"] = Decimal(values["credits_included"])
    return plan_create(platform=platform, slug=slug, **values)


def checkout(member: Member, **fields: Any):  # noqa: ANN201
    body = {"channel": "creem", "type": "subscription", "success_url": SUCCESS_URL,
            "cancel_url": CANCEL_URL} | fields
    return post_json(client_for(member), CHECKOUT_URL, {k: v for k, v in body.items() if v is not None})


def start_subscription_checkout(member: Member, plan: Plan) -> dict[str, Any]:
    """A pending Creem subscription order made through the API; returns it as the API shows it."""
    response = checkout(member, plan_id=str(plan.pk))
    assert response.status_code == 201, response.content
    return client_for(member).get(f"{ORDERS_URL}{response.json()['order_id']}/").json()


# --- events (shapes from docs.creem.io/learn/webhooks/event-types) ------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _product(product_id: str = PRODUCT_ID, billing_period: str = "every-month") -> dict[str, Any]:
    return {"id": product_id, "name": "Pro", "price": 2000, "currency": "USD", "billing_type": "recurring",
            "billing_period": billing_period, "status": "active", "mode": "test"}


def _event(event_type: str, obj: dict[str, Any], *, event_id: str | None, created: datetime | None) -> dict:
    created_ms = int((created or datetime.now(UTC)).timestamp() * 1000)
    return {"id": event_id or f"evt_test_{next(_ids):06d}", "eventType": event_type, "created_at": created_ms,
            "object": obj}


def subscription_object(
    order: dict[str, Any] | None, *, subscription_id: str = "sub_test_1", status: str = "active",
    period_start: datetime | None = PERIOD_1, product_id: str = PRODUCT_ID,
    canceled_at: datetime | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": subscription_id, "object": "subscription", "product": _product(product_id),
        "customer": {"id": "cust_test_1", "object": "customer", "email": "buyer@example.com"},
        "collection_method": "charge_automatically", "status": status,
        "last_transaction_id": "tran_test_1",
        "canceled_at": _iso(canceled_at) if canceled_at else None,
        "metadata": ({"order_id": order["id"]} if order else {}) if metadata is None else metadata,
        "mode": "test",
    }
    if period_start is not None:
        obj["current_period_start_date"] = _iso(period_start)
        obj["current_period_end_date"] = _iso(period_start + timedelta(days=31))
    return obj


def checkout_completed(
    order: dict[str, Any], *, subscription_id: str = "sub_test_1", with_period: bool = False,
    event_id: str | None = None, created: datetime | None = None, request_id: Any = "order",
    product_id: str = PRODUCT_ID, amount: int = 2000,
) -> dict[str, Any]:
    subscription = {"id": subscription_id, "object": "subscription", "product": product_id,
                    "customer": "cust_test_1", "status": "active", "metadata": {"order_id": order["id"]}}
    if with_period:
        subscription["current_period_start_date"] = _iso(PERIOD_1)
        subscription["current_period_end_date"] = _iso(PERIOD_1 + timedelta(days=31))
    obj = {
        "id": order["provider_checkout_id"], "object": "checkout",
        "request_id": order["id"] if request_id == "order" else request_id,
        "order": {"id": "ord_test_1", "customer": "cust_test_1", "product": product_id, "amount": amount,
                  "currency": "USD", "status": "paid", "type": "recurring", "mode": "test"},
        "product": _product(product_id),
        "customer": {"id": "cust_test_1", "object": "customer", "email": "buyer@example.com"},
        "subscription": subscription, "custom_fields": [], "status": "completed",
        "metadata": {"order_id": order["id"]}, "mode": "test",
    }
    return _event("checkout.completed", obj, event_id=event_id, created=created)


def subscription_event(event_type: str, order: dict[str, Any] | None, *, event_id: str | None = None,
                       created: datetime | None = None, **fields: Any) -> dict[str, Any]:
    return _event(event_type, subscription_object(order, **fields), event_id=event_id, created=created)


def refund_created(order: dict[str, Any], *, refund_amount: int = 2000, amount_paid: int = 2000,
                   period_start: datetime = PERIOD_1, subscription_id: str = "sub_test_1",
                   refund_id: str | None = None, event_id: str | None = None) -> dict[str, Any]:
    obj = {
        "id": refund_id or f"ref_test_{next(_ids):06d}", "object": "refund", "status": "succeeded",
        "refund_amount": refund_amount, "refund_currency": "USD", "reason": "requested_by_customer",
        "transaction": {"id": "tran_test_1", "object": "transaction", "amount": amount_paid,
                        "amount_paid": amount_paid, "currency": "USD", "type": "invoice",
                        "status": "refunded", "refunded_amount": refund_amount, "order": "ord_test_1",
                        "subscription": subscription_id,
                        "period_start": int(period_start.timestamp() * 1000),
                        "period_end": int((period_start + timedelta(days=31)).timestamp() * 1000)},
        "subscription": {"id": subscription_id, "object": "subscription", "product": PRODUCT_ID},
        "checkout": {"id": order["provider_checkout_id"], "object": "checkout", "request_id": order["id"],
                     "status": "completed", "metadata": {"order_id": order["id"]}},
        "order": {"id": "ord_test_1", "product": PRODUCT_ID, "amount": amount_paid, "currency": "USD",
                  "status": "paid", "type": "recurring"},
        "customer": {"id": "cust_test_1", "object": "customer"},
        "created_at": int(time.time() * 1000), "mode": "test",
    }
    return _event("refund.created", obj, event_id=event_id, created=None)


def sign(payload: str | bytes, secret: str = WEBHOOK_SECRET) -> str:
    raw = payload.encode() if isinstance(payload, str) else payload
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def deliver(  # noqa: ANN201
    event: dict[str, Any] | str, *, header: str | None = "sign", secret: str = WEBHOOK_SECRET
):
    """POSTs the event as Creem does: raw JSON with ``creem-signature`` (``header="sign"``), the given header,
    or none (``header=None``)."""
    payload = event if isinstance(event, str) else json.dumps(event)
    extra = {}
    if header == "sign":
        extra["HTTP_CREEM_SIGNATURE"] = sign(payload, secret)
    elif header is not None:
        extra["HTTP_CREEM_SIGNATURE"] = header
    return Client().post(WEBHOOK_URL, data=payload, content_type="application/json", **extra)
