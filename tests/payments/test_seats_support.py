"""Helpers of the seats tests (``test_seats*.py``; no tests here): AI plans sold through Stripe, seats checkouts
through the API, a local HTTP fake (pytest-httpserver) of the Stripe endpoints seats use (Checkout Sessions in
mode ``subscription``, subscriptions retrieved, listed and updated), and Stripe events about seats shaped as Stripe
sends them (API version 2025-09-30: price, quantity and period on the subscription's item), delivered signed
through ``tests.payments.conftest.deliver``."""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from entitlements.models import AIPlan, SeatAssignment, SeatSubscription, Tier
from payments.models import Order, WebhookEvent
from tests.api_helpers import post_json
from tests.conftest import Member, client_for
from tests.payments.conftest import CANCEL_URL, CHECKOUT_URL, SUCCESS_URL, WEBHOOK_SECRET
from tests.payments.stripe_subscriptions import FakeStripeBilling, stripe_error, stripe_fake_settings, stripe_json

AI_SUBSCRIPTIONS_URL = "/api/billing/ai-subscriptions/"
REFRESH_URL = "/api/billing/entitlements/refresh/"
DAY = 86400
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z

_ids = itertools.count(1)


def next_id(prefix: str) -> str:
    return f"{prefix}_test_seat{next(_ids):06d}"


def seat_plan(slug: str = "advanced", *, price_id: str | None = "price_seats_advanced", cents: int = 2500,
              **fields: Any) -> AIPlan:
    """An AI plan sold per seat through Stripe (``price_id``), offered to every platform unless told."""
    platforms = fields.pop("platforms", None)
    values = {"name": slug.title(), "tier": Tier.ADVANCED, "weekly_budget": Decimal("2.00"),
              "session_budget": Decimal("0.40"), "price_per_seat_cents": cents,
              "stripe_price_id": price_id or ""} | fields
    plan = AIPlan.objects.create(slug=slug, **values)
    if platforms:
        plan.platforms.set(platforms)
    return plan


def buy_seats(member: Member, ai_plan_id: Any, quantity: Any = 3, **fields: Any):  # noqa: ANN201
    body = {"channel": "stripe", "type": "seats", "ai_plan_id": ai_plan_id, "quantity": quantity,
            "success_url": SUCCESS_URL, "cancel_url": CANCEL_URL} | fields
    return post_json(client_for(member), CHECKOUT_URL, {k: v for k, v in body.items() if v is not None})


def seat_rows() -> tuple:
    """Everything seats write: compare before and after a refused request or a duplicate delivery."""
    return (
        list(Order.objects.order_by("id").values()),
        list(SeatSubscription.objects.order_by("id").values()),
        list(SeatAssignment.objects.order_by("id").values_list("platform_id", "ai_plan_id", "user_id")),
        list(WebhookEvent.objects.order_by("id").values_list("event_id", "status", "attempts")),
    )


# --- a fake of the Stripe endpoints seats call --------------------------------------------------------------------


@dataclass
class FakeStripeSeats(FakeStripeBilling):
    """Checkout Sessions (mode ``subscription``, ``FakeStripeBilling``'s) and subscriptions: kept in
    ``subscriptions`` (id -> the object Stripe would return), which tests fill with ``subscription``; every request
    is kept in ``requests``."""

    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def subscription_get(self, request: Request) -> Response:
        recorded = self._record(request)
        if isinstance(recorded, Response):
            return recorded
        found = self.subscriptions.get(request.path.rsplit("/", 1)[1])
        if found is None:
            return stripe_error(404, "invalid_request_error", "No such subscription")
        return stripe_json(found)

    def subscription_update(self, request: Request) -> Response:
        form = self._record(request)
        if isinstance(form, Response):
            return form
        found = self.subscriptions.get(request.path.rsplit("/", 1)[1])
        if found is None:
            return stripe_error(404, "invalid_request_error", "No such subscription")
        item = found["items"]["data"][0]
        if form.get("items[0][id]") != item["id"]:
            return stripe_error(400, "invalid_request_error", "No such subscription item")
        item["quantity"] = int(form["items[0][quantity]"])
        return stripe_json(found)

    def subscription_list(self, request: Request) -> Response:
        recorded = self._record(request)
        if isinstance(recorded, Response):
            return recorded
        customer = request.args.get("customer")
        data = [s for s in self.subscriptions.values() if s["customer"] == customer]
        return stripe_json({"object": "list", "data": data, "has_more": False, "url": "/v1/subscriptions"})

    def subscription(self, subscription_id: str, *, quantity: int, price_id: str, customer: str = "cus_seats",
                     status: str = "active", metadata: dict[str, str] | None = None) -> dict[str, Any]:
        """A subscription Stripe holds (what retrieve and list answer)."""
        obj = subscription_object(subscription_id, quantity=quantity, price_id=price_id, customer=customer,
                                  status=status, metadata=metadata or {})
        self.subscriptions[subscription_id] = obj
        return obj

    def calls(self, path_prefix: str = "/v1/") -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].startswith(path_prefix)]


@pytest.fixture
def stripe_seats(settings, httpserver: HTTPServer) -> FakeStripeSeats:  # noqa: ANN001
    stripe_fake_settings(settings, httpserver)
    fake = FakeStripeSeats()
    httpserver.expect_request("/v1/checkout/sessions", method="POST").respond_with_handler(fake.checkout)
    httpserver.expect_request("/v1/subscriptions", method="GET").respond_with_handler(fake.subscription_list)
    one = re.compile(r"^/v1/subscriptions/[A-Za-z0-9_]+$")
    httpserver.expect_request(one, method="GET").respond_with_handler(fake.subscription_get)
    httpserver.expect_request(one, method="POST").respond_with_handler(fake.subscription_update)
    return fake


# --- events ----------------------------------------------------------------------------------------------------


def seats_metadata(platform: Any, ai_plan: AIPlan, **extra: str) -> dict[str, str]:
    return {"kind": "seats", "platform_id": str(platform.pk), "ai_plan_id": str(ai_plan.pk)} | extra


def subscription_object(
    subscription_id: str, *, quantity: int, price_id: str, metadata: dict[str, str], status: str = "active",
    customer: str = "cus_seats", period_start: int = T0, period_end: int = T0 + 31 * DAY, start_date: int = T0,
    cancel_at_period_end: bool = False, cancel_at: int | None = None, canceled_at: int | None = None,
    ended_at: int | None = None, interval: str = "month",
) -> dict[str, Any]:
    return {
        "id": subscription_id,
        "object": "subscription",
        "status": status,
        "customer": customer,
        "created": start_date,
        "start_date": start_date,
        "cancel_at_period_end": cancel_at_period_end,
        "cancel_at": cancel_at,
        "canceled_at": canceled_at,
        "ended_at": ended_at,
        "trial_end": None,
        "metadata": metadata,
        "items": {
            "object": "list",
            "data": [{
                "id": f"si_{subscription_id}",
                "object": "subscription_item",
                "price": {"id": price_id, "object": "price", "recurring": {"interval": interval}},
                "quantity": quantity,
                "current_period_start": period_start,
                "current_period_end": period_end,
            }],
        },
    }


def event(event_type: str, obj: dict[str, Any], *, created: int | None = None,
          event_id: str | None = None) -> dict[str, Any]:
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


def subscription_event(event_type: str, subscription_id: str, *, created: int, **fields: Any) -> dict[str, Any]:
    """``customer.subscription.<event_type>`` about the subscription (``subscription_object``'s fields)."""
    return event(f"customer.subscription.{event_type}", subscription_object(subscription_id, **fields),
                 created=created)


def session_completed(order: Order, *, subscription_id: str, customer: str = "cus_seats",
                      payment_status: str = "paid", created: int | None = None) -> dict[str, Any]:
    """``checkout.session.completed`` of a seats order's session, as Stripe sends it."""
    return event("checkout.session.completed", {
        "id": order.provider_checkout_id,
        "object": "checkout.session",
        "mode": "subscription",
        "status": "complete",
        "payment_status": payment_status,
        "client_reference_id": str(order.id),
        "metadata": {"kind": "seats", "order_id": str(order.id), "platform_id": str(order.platform_id),
                     "ai_plan_id": str(order.ai_plan_id), "order_type": "seats", "quantity": str(order.quantity)},
        "amount_total": int(order.amount_usd * 100),
        "currency": "usd",
        "customer": customer,
        "subscription": subscription_id,
        "payment_intent": None,
    }, created=created)


def invoice_paid(subscription_id: str, *, metadata: dict[str, str], price_id: str, quantity: int) -> dict[str, Any]:
    return event("invoice.paid", {
        "id": next_id("in"), "object": "invoice", "status": "paid", "customer": "cus_seats", "currency": "usd",
        "amount_paid": 2500 * quantity, "billing_reason": "subscription_cycle",
        "parent": {"type": "subscription_details",
                   "subscription_details": {"subscription": subscription_id, "metadata": metadata}},
        "lines": {"object": "list", "data": [{
            "id": next_id("il"), "object": "line_item", "amount": 2500 * quantity, "currency": "usd",
            "quantity": quantity, "period": {"start": T0, "end": T0 + 31 * DAY}, "metadata": metadata,
            "parent": {"type": "subscription_item_details"},
            "pricing": {"type": "price_details", "price_details": {"price": price_id, "product": "prod_x"}},
        }]},
    })
