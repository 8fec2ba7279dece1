"""Stripe billing against localstripe: the real ``stripe`` library makes customers, cards, plans, subscriptions,
invoices, payment intents and refunds in a localstripe started for the module, and localstripe posts its own
signed events to our endpoint, served over HTTP by pytest-django's ``live_server``.

localstripe (1.15) differs from Stripe in a few ways; this module makes up for each, and nothing else:
- It speaks an older API version (events say ``2017-08-15``): ``invoice.subscription``, ``line.plan`` and
  ``line.period``, ``subscription.items.data[].plan`` and periods on the subscription. Real accounts pinned to
  older versions send these too, and the service reads them (payments/providers/stripe.py).
- Prices: it has Plans only (what prices were before 2018); a Plan's id serves as the plan's Stripe price id,
  so Plans are made with ids in ``price_…`` (the service accepts only those as price ids).
- ``invoice.paid``: it sends ``invoice.payment_succeeded`` only (the service handles both alike); a test that
  wants ``invoice.paid`` too builds it from the invoice it retrieves from localstripe.
- Invoice lines: Stripe copies the subscription's metadata onto a subscription line (in the older shape the last
  place an invoice names the account); localstripe copies the subscription *item*'s. Subscriptions are made with
  the same metadata on their item, so the line carries what Stripe's would.
- ``charge.refunded``: it refunds but sends no event. ``charge_refunded`` builds the event from the charge as
  localstripe then shows it (its real ``amount_refunded`` and ``refunds``), signed with the library's helper.
- Checkout Sessions: it has none. The idempotent front answers ``POST /v1/checkout/sessions`` itself
  (``CheckoutSessions``); ``complete_payment`` / ``complete_subscription`` then do in localstripe what Checkout
  does when the customer pays (a customer with a card, then a PaymentIntent carrying
  ``payment_intent_data.metadata`` or a subscription carrying ``subscription_data.metadata``) and return the
  ``checkout.session.completed`` event Stripe would send, for the test to post signed.
- Deliveries: each event is posted once, about a second after it happened, all at once (in any order), with no
  retry. ``settle`` waits, bounded, until every event localstripe made since a mark is stored by the endpoint and
  no longer ``received``; the fixture settles at teardown too, so no delivery lands in the next test. (Its
  client hangs up once it has the status line, so the live server may log "Broken pipe": harmless, the event
  was stored and processed before the answer was written.)
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests

from payments import recharge
from payments.models import WebhookEvent, WebhookProvider, WebhookStatus
from payments.webhooks.stripe_handlers import HANDLERS as STRIPE_HANDLERS
from tests.payments.conftest import APP_ORIGIN, WEBHOOK_SECRET, WEBHOOK_URL, signature_header
from tests.payments.local_servers import SECRET_KEY, LocalStripe, start_localstripe, stop

API_VERSION = "2017-08-15"  # what localstripe's events say
CARD = "4242424242424242"
# What the endpoint is subscribed to: what the service handles, and invoice.created (stored, ignored).
SUBSCRIBED_EVENTS = sorted(set(STRIPE_HANDLERS) | {"invoice.created"})

_ids = itertools.count(1)


def _prefixed(form: Mapping[str, str], prefix: str) -> dict[str, str]:
    """``metadata[order_id]=…`` form fields under ``prefix`` (``metadata``) as a dict."""
    start = f"{prefix}["
    depth = prefix.count("[") + 1
    return {k[len(start):-1]: v for k, v in form.items() if k.startswith(start) and k.count("[") == depth}


@dataclass
class CheckoutSessions:
    """``POST /v1/checkout/sessions``, answered like Stripe (an open, unpaid session with a URL)."""

    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        if headers.get("Authorization") != f"Bearer {SECRET_KEY}":
            return _error(401, "authentication_error", "Invalid API Key provided")
        form = dict(parse_qsl(body.decode()))
        mode = form.get("mode")
        if mode not in ("payment", "subscription") or "success_url" not in form:
            return _error(400, "invalid_request_error", "mode and success_url are required")
        if mode == "payment" and "line_items[0][price_data][unit_amount]" not in form:
            return _error(400, "invalid_request_error", "a payment session needs line_items with price_data")
        if mode == "subscription" and "line_items[0][price]" not in form:
            return _error(400, "invalid_request_error", "a subscription session needs a recurring price")
        session_id = f"cs_test_ls{next(_ids):06d}"
        amount = None
        if mode == "payment":
            amount = int(form["line_items[0][price_data][unit_amount]"]) * int(form["line_items[0][quantity]"])
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": mode,
            "status": "open",
            "payment_status": "unpaid",
            "client_reference_id": form.get("client_reference_id"),
            "metadata": _prefixed(form, "metadata"),
            "amount_total": amount,
            "currency": form.get("line_items[0][price_data][currency]", "usd"),
            "customer": form.get("customer"),
            "customer_email": form.get("customer_email"),
            "payment_intent": None,
            "subscription": None,
            "success_url": form["success_url"],
            "cancel_url": form.get("cancel_url"),
            "url": f"https://checkout.stripe.test/c/pay/{session_id}",
        }
        with self.lock:
            self.sessions[session_id] = {"form": form, "session": session}
        return 200, json.dumps(session).encode()


def _error(status: int, kind: str, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"error": {"type": kind, "message": message}}).encode()


def event_of(event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    """A Stripe event about ``obj``, as this (localstripe) account would send it."""
    return {
        "id": f"evt_test_ls{next(_ids):06d}",
        "object": "event",
        "api_version": API_VERSION,
        "created": int(time.time()),
        "livemode": False,
        "type": event_type,
        "data": {"object": obj},
    }


@dataclass
class LocalStripeBilling:
    local: LocalStripe
    checkout: CheckoutSessions
    endpoint: str = ""  # our webhook endpoint's URL (live_server)

    def client(self):
        return self.local.client()

    # --- objects in localstripe, made with the stripe library ---------------------------------------------------

    def price(self, *, amount: int, interval: str = "month") -> str:
        """A recurring price (a localstripe Plan); its id is what our plan names as its Stripe price."""
        client = self.client()
        product = client.v1.products.create(params={"name": f"Plan {next(_ids)}"})
        plan = client.v1.plans.create(params={
            "id": f"price_test_ls{next(_ids):06d}", "product": product.id, "amount": amount, "currency": "usd",
            "interval": interval,
        })
        return plan.id

    def customer_with_card(self, card: str = CARD) -> tuple[str, str]:
        """A customer whose invoices are paid with a card (its default payment method)."""
        customer, method = self.local.customer_with_card(card)
        self.client().v1.customers.update(customer, params={"invoice_settings": {"default_payment_method": method}})
        return customer, method

    def subscribe(self, customer: str, price: str, metadata: dict[str, str]) -> dict[str, Any]:
        """A subscription to ``price``, its first invoice paid at once with the customer's card. The metadata
        goes on the item as well (see the module docstring: how localstripe fills invoice lines)."""
        return self.client().v1.subscriptions.create(params={
            "customer": customer, "items": [{"plan": price, "metadata": metadata}], "metadata": metadata,
        }).to_dict()

    def retrieve(self, kind: str, object_id: str) -> dict[str, Any]:
        return getattr(self.client().v1, kind).retrieve(object_id).to_dict()

    def refund(self, payment_intent: str, amount: int) -> dict[str, Any]:
        return self.client().v1.refunds.create(params={"payment_intent": payment_intent, "amount": amount}).to_dict()

    def charge_refunded(self, charge_id: str) -> dict[str, Any]:
        """``charge.refunded`` about the charge as localstripe shows it now (localstripe sends none itself)."""
        return event_of("charge.refunded", self.retrieve("charges", charge_id))

    # --- Checkout, done the way Stripe does it when the customer pays ----------------------------------------

    def _session(self, session_id: str) -> tuple[dict[str, str], dict[str, Any]]:
        with self.checkout.lock:
            found = self.checkout.sessions[session_id]
        return found["form"], dict(found["session"])

    def complete_payment(self, session_id: str, card: str = CARD) -> dict[str, Any]:
        """The customer pays a ``payment`` session: a PaymentIntent for its amount, confirmed with a card and
        carrying ``payment_intent_data.metadata``. Returns the ``checkout.session.completed`` event."""
        form, session = self._session(session_id)
        customer, method = self.local.customer_with_card(card)
        intent = self.client().v1.payment_intents.create(params={
            "amount": session["amount_total"], "currency": session["currency"], "customer": customer,
            "payment_method": method, "confirm": True,
            "metadata": _prefixed(form, "payment_intent_data[metadata]"),
        })
        assert intent.status == "succeeded", intent
        session |= {"status": "complete", "payment_status": "paid", "customer": customer,
                    "payment_intent": intent.id}
        return event_of("checkout.session.completed", session)

    def complete_subscription(self, session_id: str, card: str = CARD) -> tuple[dict[str, Any], dict[str, Any]]:
        """The customer subscribes through a ``subscription`` session: a customer with a card and a
        subscription to the session's price carrying ``subscription_data.metadata``. Returns the
        ``checkout.session.completed`` event and the subscription."""
        form, session = self._session(session_id)
        customer = form.get("customer") or self.customer_with_card(card)[0]
        subscription = self.subscribe(customer, form["line_items[0][price]"],
                                      _prefixed(form, "subscription_data[metadata]"))
        invoice = self.retrieve("invoices", subscription["latest_invoice"])
        session |= {"status": "complete", "payment_status": "paid", "customer": customer,
                    "subscription": subscription["id"], "amount_total": invoice["amount_paid"],
                    "currency": invoice["currency"]}
        return event_of("checkout.session.completed", session), subscription

    # --- our endpoint ------------------------------------------------------------------------------------------

    def post(self, event: dict[str, Any]) -> requests.Response:
        """POSTs the event to our endpoint over HTTP, signed with the library's helper, as Stripe does."""
        payload = json.dumps(event)
        return requests.post(self.endpoint, data=payload, timeout=30, headers={
            "Content-Type": "application/json", "Stripe-Signature": signature_header(payload),
        })

    def redeliver(self, event_id: str) -> requests.Response:
        """The event again, as localstripe keeps it (``GET /v1/events/<id>``), signed afresh like a redelivery."""
        return self.post(self.retrieve("events", event_id))

    def mark(self) -> set[str]:
        """The ids of localstripe's events so far; ``settle`` waits for the ones made after."""
        return {event.id for event in self.client().v1.events.list(params={"limit": 100}).auto_paging_iter()}

    def settle(self, mark: set[str], timeout: float = 20.0) -> dict[str, tuple[str, str]]:
        """Waits until every event localstripe made since ``mark``, of a type the endpoint is subscribed to,
        is stored by the endpoint and settled (not ``received``). Returns event id -> (type, status)."""
        made = {
            event.id: event.type
            for event in self.client().v1.events.list(params={"limit": 100}).auto_paging_iter()
            if event.id not in mark and event.type in SUBSCRIBED_EVENTS
        }
        deadline = time.monotonic() + timeout
        while True:
            rows = dict(
                WebhookEvent.objects.filter(provider=WebhookProvider.STRIPE, event_id__in=made)
                .exclude(status=WebhookStatus.RECEIVED)
                .values_list("event_id", "status")
            )
            if len(rows) == len(made):
                return {event_id: (made[event_id], rows[event_id]) for event_id in made}
            if time.monotonic() > deadline:
                missing = sorted(f"{made[e]} {e}" for e in made if e not in rows)
                raise AssertionError(f"localstripe's events never settled at {self.endpoint}: {missing}")
            time.sleep(0.05)


def statuses(settled: dict[str, tuple[str, str]]) -> dict[str, str]:
    """event type -> status (one event of each type expected)."""
    types = [event_type for event_type, _ in settled.values()]
    assert len(types) == len(set(types)), types
    return dict(settled.values())


# --- fixtures (imported by the test modules that use them) ---------------------------------------------------


@pytest.fixture(scope="module")
def localstripe_billing_server():
    """A localstripe of the module's own: the endpoint registered with it stays registered until it stops, so
    no other module's localstripe events reach this module's live server (or the other way round)."""
    local, front = start_localstripe()
    checkout = CheckoutSessions()
    local.routes[("POST", "/v1/checkout/sessions")] = checkout.create
    yield LocalStripeBilling(local=local, checkout=checkout)
    front.shutdown()
    stop(local.proc)


@pytest.fixture
def localstripe_billing(settings, transactional_db, live_server, localstripe_billing_server):
    """The app pointed at localstripe, and localstripe posting its events to the app's endpoint."""
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_API_BASE = localstripe_billing_server.local.url
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_WEBHOOK_TOLERANCE = 300
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.STRIPE_TIMEOUT_SECONDS = 10
    settings.CHECKOUT_ALLOWED_ORIGINS = [APP_ORIGIN]
    billing = localstripe_billing_server
    billing.endpoint = f"{live_server.url}{WEBHOOK_URL}"
    billing.local.webhook_register("billing-service", url=billing.endpoint, secret=settings.STRIPE_WEBHOOK_SECRET,
                                   events=SUBSCRIBED_EVENTS)
    mark = billing.mark()
    yield billing
    billing.settle(mark)  # every delivery of this test lands before its database is flushed
