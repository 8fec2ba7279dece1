"""The providers' side for the reconciliation tests.

Stripe: localstripe (from PyPI) behind the idempotent front of ``tests/payments/local_servers.py``, with the
stand-in Checkout Sessions of ``tests/payments/localstripe_billing.py``, and one more front, ``Lister``, for what the
reconciliation reads and localstripe lacks: Stripe's lists filtered by ``created[gte]`` (localstripe refuses
``created`` on payment intents, invoices and refunds) and newest first, paged with ``limit`` / ``starting_after``
exactly as Stripe pages them; and ``GET /v1/checkout/sessions`` over the stand-in sessions (each stamped with its
``created`` when made, and shown paid once the customer paid: ``pay``). Everything else goes through unchanged.
No webhook endpoint is registered with localstripe: a test delivers what our side sees, signed, and nothing else,
so what it leaves out is drift by construction.

Creem: ``GET /v1/transactions/search`` answered from a list the test fills (pytest-httpserver, beside the
``fake_creem`` checkout of ``tests/payments/creem_support.py``), paged by ``page_number`` / ``page_size`` with
Creem's ``pagination`` object (docs.creem.io/api-reference/endpoint/get-transactions)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.payments.conftest import APP_ORIGIN, WEBHOOK_SECRET
from tests.payments.local_servers import SECRET_KEY, free_port, start_localstripe, stop
from tests.payments.localstripe_billing import CheckoutSessions, LocalStripeBilling

LISTED_BY_LOCALSTRIPE = ("/v1/payment_intents", "/v1/invoices", "/v1/refunds")
SESSIONS = "/v1/checkout/sessions"


def _page(objects: list[dict[str, Any]], query: dict[str, str], path: str) -> dict[str, Any]:
    """Stripe's list: ``created[gte]`` (and ``status``) kept, newest first, ``limit`` after ``starting_after``."""
    gte = int(query.get("created[gte]", 0))
    kept = [obj for obj in objects if int(obj.get("created") or 0) >= gte]
    if "status" in query:
        kept = [obj for obj in kept if obj.get("status") == query["status"]]
    kept.sort(key=lambda obj: (int(obj.get("created") or 0), obj["id"]), reverse=True)
    if "starting_after" in query:
        ids = [obj["id"] for obj in kept]
        kept = kept[ids.index(query["starting_after"]) + 1:]
    limit = int(query.get("limit", 10))
    return {"object": "list", "url": path, "data": kept[:limit], "has_more": len(kept) > limit}


@dataclass
class Lister:
    upstream: str  # the idempotent front
    backend: str  # localstripe itself
    checkout: CheckoutSessions
    server: ThreadingHTTPServer | None = None
    url: str = ""

    def sessions(self) -> list[dict[str, Any]]:
        with self.checkout.lock:
            return [dict(found["session"]) for found in self.checkout.sessions.values()]

    def everything(self, path: str, headers: Any) -> list[dict[str, Any]]:
        request = urllib.request.Request(f"{self.backend}{path}?limit=100000", method="GET")
        request.add_header("Authorization", headers.get("Authorization") or "")
        with urllib.request.urlopen(request, timeout=20) as response:
            return json.loads(response.read())["data"]

    def start(self) -> None:
        lister = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # noqa: ANN002, ANN202
                pass

            def _answer(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "GET" and (parts.path == SESSIONS or parts.path in LISTED_BY_LOCALSTRIPE):
                    if self.headers.get("Authorization") != f"Bearer {SECRET_KEY}":
                        self._answer(401, b'{"error": {"type": "authentication_error"}}')
                        return
                    query = dict(parse_qsl(parts.query))
                    objects = (lister.sessions() if parts.path == SESSIONS
                               else lister.everything(parts.path, self.headers))
                    self._answer(200, json.dumps(_page(objects, query, parts.path)).encode())
                    return
                request = urllib.request.Request(lister.upstream + self.path, data=body or None, method=self.command)
                for name in ("Authorization", "Content-Type", "Stripe-Version", "Idempotency-Key"):
                    if self.headers.get(name):
                        request.add_header(name, self.headers[name])
                try:
                    with urllib.request.urlopen(request, timeout=20) as response:
                        self._answer(response.status, response.read())
                except urllib.error.HTTPError as exc:
                    self._answer(exc.code, exc.read())

            do_GET = do_POST = do_DELETE = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@dataclass
class ReconcileStripe:
    billing: LocalStripeBilling
    lister: Lister

    @property
    def checkout(self) -> CheckoutSessions:
        return self.billing.checkout

    def session(self, session_id: str) -> dict[str, Any]:
        with self.checkout.lock:
            return self.checkout.sessions[session_id]["session"]

    def pay(self, session_id: str) -> dict[str, Any]:
        """The customer pays the session (a PaymentIntent in localstripe); Stripe now lists it paid. Returns the
        ``checkout.session.completed`` event Stripe would send (not delivered: the test decides)."""
        event = self.billing.complete_payment(session_id)
        with self.checkout.lock:
            self.checkout.sessions[session_id]["session"] = dict(event["data"]["object"])
        return event


def _stamped(checkout: CheckoutSessions):  # noqa: ANN202
    """``POST /v1/checkout/sessions`` as the stand-in answers it, the session stamped with its ``created``."""
    def create(body: bytes, headers: Any) -> tuple[int, bytes]:
        status, payload = checkout.create(body, headers)
        if status == 200:
            session = json.loads(payload)
            session["created"] = int(time.time())
            with checkout.lock:
                checkout.sessions[session["id"]]["session"] = session
            payload = json.dumps(session).encode()
        return status, payload
    return create


@pytest.fixture
def reconcile_stripe_server():
    """A localstripe of the test's own: nothing of another test's is on the provider's side."""
    local, front = start_localstripe()
    checkout = CheckoutSessions()
    local.routes[("POST", SESSIONS)] = _stamped(checkout)
    lister = Lister(upstream=local.url, backend=local.backend_url, checkout=checkout)
    lister.start()
    yield ReconcileStripe(billing=LocalStripeBilling(local=local, checkout=checkout), lister=lister)
    lister.server.shutdown()
    front.shutdown()
    stop(local.proc)


@pytest.fixture
def reconcile_stripe(settings, reconcile_stripe_server: ReconcileStripe) -> ReconcileStripe:  # noqa: ANN001
    """The app pointed at localstripe through the lister; webhooks verified with the tests' secret."""
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_API_BASE = reconcile_stripe_server.lister.url
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_WEBHOOK_TOLERANCE = 300
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.STRIPE_TIMEOUT_SECONDS = 10
    settings.CHECKOUT_ALLOWED_ORIGINS = [APP_ORIGIN]
    return reconcile_stripe_server


# --- Creem -------------------------------------------------------------------------------------------------------


@dataclass
class CreemTransactions:
    items: list[dict[str, Any]] = field(default_factory=list)
    pages_served: int = 0

    def handle(self, request: Request) -> Response:
        from tests.payments.creem_support import API_KEY

        if request.headers.get("x-api-key") != API_KEY:
            return Response(json.dumps({"status": 403, "message": "Invalid API key"}), status=403,
                            content_type="application/json")
        number = int(request.args.get("page_number", 1))
        size = int(request.args.get("page_size", 10))
        pages = max((len(self.items) + size - 1) // size, 1)
        self.pages_served += 1
        body = {
            "items": self.items[(number - 1) * size:number * size],
            "pagination": {"total_records": len(self.items), "total_pages": pages, "current_page": number,
                           "next_page": number + 1 if number < pages else None,
                           "prev_page": number - 1 if number > 1 else None},
        }
        return Response(json.dumps(body), status=200, content_type="application/json")


@pytest.fixture
def creem_transactions(fake_creem, httpserver: HTTPServer) -> CreemTransactions:  # noqa: ANN001
    fake = CreemTransactions()
    httpserver.expect_request("/v1/transactions/search", method="GET").respond_with_handler(fake.handle)
    return fake
