"""Stripe subscriptions for the payments tests: a local HTTP fake (pytest-httpserver) of the Checkout Sessions
(mode ``subscription``) and Billing Portal endpoints, and events shaped as Stripe sends them (API version
2025-09-30: ``invoice.parent.subscription_details``, ``line.pricing.price_details``, subscription periods on
its items), delivered signed through ``tests.payments.conftest.deliver``."""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.api_helpers import post_json
from tests.conftest import Member, client_for
from tests.payments.conftest import (
    APP_ORIGIN,
    CANCEL_URL,
    CHECKOUT_URL,
    SECRET_KEY,
    SUCCESS_URL,
    WEBHOOK_SECRET,
)

PORTAL_URL = "/api/billing/portal/"
RETURN_URL = f"{APP_ORIGIN}/account"
DAY = 86400
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z: the first period's start

_ids = itertools.count(1)


def next_id(prefix: str) -> str:
    return f"{prefix}_test_s{next(_ids):06d}"


@dataclass
class FakeStripeBilling:
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_status: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, request: Request) -> dict[str, str] | Response:
        form = request.form.to_dict()
        with self.lock:
            self.requests.append({"method": request.method, "path": request.path, "form": form,
                                  "query": request.args.to_dict(), "headers": dict(request.headers)})
        if request.headers.get("Authorization") != f"Bearer {SECRET_KEY}":
            return stripe_error(401, "authentication_error", "Invalid API Key provided")
        if self.fail_status is not None:
            return stripe_error(self.fail_status, "api_error", "Something went wrong on Stripe's end.")
        return form

    def checkout(self, request: Request) -> Response:
        form = self._record(request)
        if isinstance(form, Response):
            return form
        if form.get("mode") != "subscription" or "line_items[0][price]" not in form:
            return stripe_error(400, "invalid_request_error", "a subscription session needs a recurring price")
        if "customer" in form and "customer_email" in form:
            return stripe_error(400, "invalid_request_error", "customer_email cannot be used with customer.")
        session_id = next_id("cs")
        body = {
            "id": session_id,
            "object": "checkout.session",
            "mode": "subscription",
            "status": "open",
            "payment_status": "unpaid",
            "client_reference_id": form.get("client_reference_id"),
            "customer": form.get("customer"),
            "subscription": None,
            "payment_intent": None,
            "metadata": {k[len("metadata["):-1]: v for k, v in form.items()
                         if k.startswith("metadata[") and k.count("[") == 1},
            "url": f"https://checkout.stripe.test/c/pay/{session_id}",
        }
        return stripe_json(body)

    def portal(self, request: Request) -> Response:
        form = self._record(request)
        if isinstance(form, Response):
            return form
        if not form.get("customer"):
            return stripe_error(400, "invalid_request_error", "Missing required param: customer.")
        session_id = next_id("bps")
        body = {
            "id": session_id,
            "object": "billing_portal.session",
            "customer": form["customer"],
            "return_url": form.get("return_url"),
            "url": f"https://billing.stripe.test/p/session/{session_id}",
        }
        return Response(json.dumps(body), status=200, content_type="application/json")

    @property
    def last(self) -> dict[str, Any]:
        return self.requests[-1]


def stripe_json(body: Any) -> Response:
    return Response(json.dumps(body), status=200, content_type="application/json")


def stripe_error(status: int, kind: str, message: str) -> Response:
    return Response(
        json.dumps({"error": {"type": kind, "message": message}}),
        status=status,
        content_type="application/json",
    )


def stripe_fake_settings(settings, httpserver: HTTPServer) -> None:  # noqa: ANN001
    """Points the Stripe client at the local fake ``httpserver``."""
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_API_BASE = httpserver.url_for("/").rstrip("/")
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_WEBHOOK_TOLERANCE = 300
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.STRIPE_TIMEOUT_SECONDS = 10
    settings.CHECKOUT_ALLOWED_ORIGINS = [APP_ORIGIN]


@pytest.fixture
def stripe_billing(settings, httpserver: HTTPServer) -> FakeStripeBilling:
    stripe_fake_settings(settings, httpserver)
    fake = FakeStripeBilling()
    httpserver.expect_request("/v1/checkout/sessions", method="POST").respond_with_handler(fake.checkout)
    httpserver.expect_request("/v1/billing_portal/sessions", method="POST").respond_with_handler(fake.portal)
    return fake


def subscribe(member: Member, plan_id: Any, billing_cycle: Any = "monthly", **fields: Any):
    body = {
        "channel": "stripe",
        "type": "subscription",
        "plan_id": plan_id,
        "billing_cycle": billing_cycle,
        "success_url": SUCCESS_URL,
        "cancel_url": CANCEL_URL,
    } | fields
    return post_json(client_for(member), CHECKOUT_URL, {k: v for k, v in body.items() if v is not None})


# --- events ----------------------------------------------------------------------------------------------------


def _event(
    event_type: str, obj: dict[str, Any], *, created: int | None, event_id: str | None
) -> dict[str, Any]:
    return {
        "id": event_id or next_id("evt"),
        "object": "event",
        "api_version": "2025-09-30.clover",
        "created": created if created is not None else int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "type": event_type,
        "data": {"object": obj},
    }


def session_completed(
    *,
    order_id: str,
    session_id: str,
    subscription_id: str,
    customer_id: str = "cus_test_sub",
    amount_total: int = 1000,
    payment_status: str = "paid",
    created: int | None = None,
    mode: str = "subscription",
    event_id: str | None = None,
) -> dict[str, Any]:
    return _event(
        "checkout.session.completed",
        {
            "id": session_id,
            "object": "checkout.session",
            "mode": mode,
            "status": "complete",
            "payment_status": payment_status,
            "client_reference_id": order_id,
            "metadata": {"order_id": order_id},
            "amount_total": amount_total,
            "currency": "usd",
            "customer": customer_id,
            "subscription": subscription_id,
            "payment_intent": None,
        },
        created=created,
        event_id=event_id,
    )


def invoice_paid(
    *,
    subscription_id: str,
    price_id: str,
    period_start: int,
    period_end: int,
    metadata: dict[str, str],
    amount_paid: int = 1000,
    payment_intent: str | None = None,
    billing_reason: str = "subscription_cycle",
    customer_id: str = "cus_test_sub",
    created: int | None = None,
    invoice_id: str | None = None,
    event_id: str | None = None,
    legacy: bool = False,
) -> dict[str, Any]:
    """``legacy``: the shape before API version 2025-03-31 (``invoice.subscription``, ``line.price``)."""
    line: dict[str, Any] = {
        "id": next_id("il"),
        "object": "line_item",
        "amount": amount_paid,
        "currency": "usd",
        "period": {"start": period_start, "end": period_end},
        "metadata": metadata,
    }
    invoice: dict[str, Any] = {
        "id": invoice_id or next_id("in"),
        "object": "invoice",
        "status": "paid",
        "customer": customer_id,
        "currency": "usd",
        "amount_paid": amount_paid,
        "billing_reason": billing_reason,
        "lines": {"object": "list", "data": [line]},
    }
    if legacy:
        line |= {"type": "subscription", "subscription": subscription_id, "price": {"id": price_id}}
        invoice |= {
            "subscription": subscription_id,
            "payment_intent": payment_intent,
            "subscription_details": {"metadata": metadata},
        }
    else:
        line |= {
            "parent": {"type": "subscription_item_details"},
            "pricing": {"type": "price_details", "price_details": {"price": price_id, "product": "prod_x"}},
        }
        invoice |= {
            "parent": {
                "type": "subscription_details",
                "subscription_details": {"subscription": subscription_id, "metadata": metadata},
            }
        }
        if payment_intent:  # since 2025-03-31 under ``payments`` (an includable list)
            invoice["payments"] = {
                "object": "list",
                "data": [
                    {
                        "object": "invoice_payment",
                        "payment": {"type": "payment_intent", "payment_intent": payment_intent},
                    }
                ],
            }
    return _event("invoice.paid", invoice, created=created, event_id=event_id)


def subscription_event(
    event_type: str,
    *,
    subscription_id: str,
    price_id: str,
    status: str = "active",
    period_start: int = T0,
    period_end: int = T0 + 31 * DAY,
    metadata: dict[str, str] | None = None,
    cancel_at_period_end: bool = False,
    trial_end: int | None = None,
    canceled_at: int | None = None,
    customer_id: str = "cus_test_sub",
    created: int | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    return _event(
        f"customer.subscription.{event_type}",
        {
            "id": subscription_id,
            "object": "subscription",
            "status": status,
            "customer": customer_id,
            "cancel_at_period_end": cancel_at_period_end,
            "canceled_at": canceled_at,
            "trial_end": trial_end,
            "metadata": metadata or {},
            "items": {
                "object": "list",
                "data": [
                    {
                        "id": next_id("si"),
                        "object": "subscription_item",
                        "price": {"id": price_id, "object": "price"},
                        "current_period_start": period_start,
                        "current_period_end": period_end,
                        "quantity": 1,
                    }
                ],
            },
        },
        created=created,
        event_id=event_id,
    )


def charge_refunded(
    *,
    charge_id: str,
    payment_intent: str,
    amount: int,
    amount_refunded: int,
    metadata: dict[str, str] | None = None,
    created: int | None = None,
    event_id: str | None = None,
    currency: str = "usd",
) -> dict[str, Any]:
    return _event(
        "charge.refunded",
        {
            "id": charge_id,
            "object": "charge",
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": amount_refunded,
            "refunded": amount_refunded == amount,
            "currency": currency,
            "payment_intent": payment_intent,
            "metadata": metadata or {},
            "paid": True,
            "status": "succeeded",
        },
        created=created,
        event_id=event_id,
    )
