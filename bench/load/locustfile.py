"""The load test of ``make load`` (README, "Load test"): a realistic mix of calls against a running server.

Each simulated user is one member of the platform (``prepare.py users`` made them and wrote their keys to the file
named by ``LOAD_USERS_FILE``). The platform's backend (``load-backend``, an admin token shared by every user, as one
backend serves every end-user) reports the member's AI calls; the member reads their own account and history; Stripe
delivers webhooks. One task is picked per turn, with these weights (``MIX``):

- 70 usage event: ``POST /api/billing/usage/``, a new request_id, priced by the rate card from model and tokens
  (2 in 3) or by ``amount``; 3 % of calls failed (``success: false``, charged nothing); 2 % a client retry of the
  previous event (same request_id and body: 200, the first result);
- 10 hold: ``POST /api/billing/reservations/``, then ``…/{id}/capture/`` (3 in 4: the real cost, by amount or the
  rate card) or ``…/{id}/release/`` (the call was not made): two requests;
- 10 listing: ``GET /api/billing/transactions/`` (page 1, a type filter, keyset pages; half the time then the
  page its ``next`` link names) or ``GET /api/billing/usage/stats/`` (daily, monthly), as the member;
- 5 account read: ``GET /api/billing/account/``, as the member;
- 5 Stripe webhook: ``POST /api/billing/webhooks/stripe/``, signed with ``STRIPE_WEBHOOK_SECRET`` (Stripe's scheme:
  ``t=<ts>,v1=HMAC-SHA256(secret, "<ts>.<body>")``): 40 % a paid ``checkout.session.completed`` for one of the
  member's pending top-up orders (the order becomes paid, 25.00 credited once), 20 % a redelivery of an event sent
  before (200, ``duplicate``), 40 % an event type the service does not handle (stored ``ignored``), as most of a
  real endpoint's deliveries are.

Every answer is checked (status and the body's key facts); anything else is counted as an error. Think time
between tasks: uniform 0 to ``LOAD_THINK_MS`` ms (default 100). Nothing here imports Django: this runs in
locust's gevent process.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import random
import time
import uuid

from locust import HttpUser, between, events, task

MIX = {"usage": 70, "hold": 10, "listing": 10, "account": 5, "webhook": 5}
USAGE = "/api/billing/usage/"
RESERVATIONS = "/api/billing/reservations/"
TRANSACTIONS = "/api/billing/transactions/"
STATS = "/api/billing/usage/stats/"
ACCOUNT = "/api/billing/account/"
WEBHOOK = "/api/billing/webhooks/stripe/"
# The demo rate card (seed_demo_billing): model, typical input and output tokens.
CALLS = [("/v1/chat/completions", "gpt-4o-mini", 900, 400), ("/v1/chat/completions", "claude-3-haiku", 1500, 600),
         ("/v1/embeddings", "gpt-4o-mini", 2000, 0)]
IGNORED_TYPES = ["payment_intent.created", "charge.succeeded", "customer.updated", "invoice.created"]
THINK = int(os.environ.get("LOAD_THINK_MS", "100")) / 1000

_setup: dict | None = None
_members = itertools.count()


def setup() -> dict:
    """What ``prepare.py users`` wrote, read once per process."""
    global _setup
    if _setup is None:
        path = os.environ.get("LOAD_USERS_FILE")
        if not path:
            raise RuntimeError("LOAD_USERS_FILE is not set: run `make load`, or bench/load/prepare.py users FILE")
        with open(path) as f:
            _setup = json.load(f)
    return _setup


def stripe_signature(body: bytes, secret: str, timestamp: int) -> str:
    signed = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={signed}"


class BillingUser(HttpUser):
    wait_time = between(0, THINK)

    def on_start(self) -> None:
        data = setup()
        members = data["members"]
        self.member = members[next(_members) % len(members)]
        self.account_id = self.member["account_id"]
        self.as_backend = {"Authorization": f"Token {data['backend_key']}"}
        self.as_member = {"Authorization": f"Token {self.member['key']}"}
        self.orders = list(self.member["orders"])
        self.sent_events: list[tuple[bytes, str]] = []  # (body, event id) of webhooks delivered
        self.last_usage: dict | None = None
        self.secret = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
        self.rng = random.Random()

    def _request_id(self, kind: str) -> str:
        return f"load-{kind}-{uuid.uuid4().hex}"

    def _priced(self) -> dict:
        endpoint, model, tokens_in, tokens_out = self.rng.choice(CALLS)
        if self.rng.random() < 2 / 3:
            return {"endpoint": endpoint, "model": model,
                    "input_tokens": int(tokens_in * self.rng.uniform(0.2, 3)),
                    "output_tokens": int(tokens_out * self.rng.uniform(0.2, 3))}
        return {"endpoint": endpoint, "model": model, "amount": f"{self.rng.randint(1, 5000) / 100000:.5f}"}

    # --- 70: usage events -------------------------------------------------------------------------------------

    @task(MIX["usage"])
    def usage(self) -> None:
        if self.last_usage is not None and self.rng.random() < 0.02:
            body, expected = self.last_usage, 200  # the client retries: the first result, nothing written
            name = "usage (retry)"
        else:
            body = {"account_id": self.account_id, "request_id": self._request_id("usage"), **self._priced(),
                    "metadata": {"conversation": uuid.uuid4().hex[:12]}}
            if self.rng.random() < 0.03:
                body["success"] = False
            self.last_usage, expected, name = body, 201, "usage"
        with self.client.post(USAGE, json=body, headers=self.as_backend, name=name, catch_response=True) as r:
            if r.status_code != expected:
                r.failure(f"{r.status_code} {r.text[:200]}")
            elif r.json()["usage_event"]["request_id"] != body["request_id"]:
                r.failure("another event answered")

    # --- 10: holds ------------------------------------------------------------------------------------------

    @task(MIX["hold"])
    def hold(self) -> None:
        body = {"account_id": self.account_id, "request_id": self._request_id("hold"), "amount": "0.50",
                "reference": "load test", "expires_in": 600}
        with self.client.post(RESERVATIONS, json=body, headers=self.as_backend, name="hold: reserve",
                              catch_response=True) as r:
            if r.status_code != 201 or r.json().get("status") != "active":
                r.failure(f"{r.status_code} {r.text[:200]}")
                return
            hold_id = r.json()["id"]
        if self.rng.random() < 0.75:
            priced = self._priced()
            if "amount" in priced:
                priced["amount"] = f"{self.rng.randint(1, 50) / 100:.2f}"  # within the hold
            path, name, body, status = f"{RESERVATIONS}{hold_id}/capture/", "hold: capture", priced, "captured"
        else:
            path, name, body, status = f"{RESERVATIONS}{hold_id}/release/", "hold: release", None, "released"
        with self.client.post(path, json=body, headers=self.as_backend, name=name, catch_response=True) as r:
            if r.status_code != 200 or r.json().get("status") != status:
                r.failure(f"{r.status_code} {r.text[:200]}")

    # --- 10: listings -----------------------------------------------------------------------------------------

    @task(MIX["listing"])
    def listing(self) -> None:
        pick = self.rng.random()
        if pick < 0.55:
            path, name = f"{TRANSACTIONS}?page_size=20", "transactions: page 1"
        elif pick < 0.7:
            path, name = f"{TRANSACTIONS}?transaction_type=subtract&page_size=20", "transactions: by type"
        elif pick < 0.8:
            path, name = f"{TRANSACTIONS}?pagination=cursor&page_size=50", "transactions: cursor"
        else:
            period = "daily" if pick < 0.9 else "monthly"
            path, name = f"{STATS}?period={period}", "usage stats"
        with self.client.get(path, headers=self.as_member, name=name, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code} {r.text[:200]}")
                return
            following = r.json().get("next") if name.startswith("transactions") else None
        if following and self.rng.random() < 0.5:  # the member reads on: the page the answer links to
            with self.client.get(following, headers=self.as_member, name="transactions: next page",
                                 catch_response=True) as r:
                if r.status_code != 200:
                    r.failure(f"{r.status_code} {r.text[:200]}")

    # --- 5: account reads -------------------------------------------------------------------------------------

    @task(MIX["account"])
    def account(self) -> None:
        with self.client.get(ACCOUNT, headers=self.as_member, name="account", catch_response=True) as r:
            if r.status_code != 200 or r.json().get("account_id") != self.account_id:
                r.failure(f"{r.status_code} {r.text[:200]}")

    # --- 5: Stripe webhooks -----------------------------------------------------------------------------------

    @task(MIX["webhook"])
    def webhook(self) -> None:
        pick = self.rng.random()
        if pick < 0.2 and self.sent_events:
            body, event_id = self.rng.choice(self.sent_events)
            name, expected = "webhook: redelivery", None  # the first outcome, duplicate: true
        elif pick < 0.6 and self.orders:
            order = self.orders.pop()
            event_id = f"evt_load_{uuid.uuid4().hex}"
            body = self._event(event_id, "checkout.session.completed", {
                "id": order["session"], "object": "checkout.session", "mode": "payment", "status": "complete",
                "payment_status": "paid", "client_reference_id": order["id"], "metadata": {"order_id": order["id"]},
                "amount_total": order["cents"], "currency": "usd", "customer": None,
                "payment_intent": f"pi_load_{uuid.uuid4().hex[:16]}"})
            name, expected = "webhook: checkout paid", "processed"
        else:
            event_id = f"evt_load_{uuid.uuid4().hex}"
            body = self._event(event_id, self.rng.choice(IGNORED_TYPES),
                               {"id": f"obj_load_{uuid.uuid4().hex[:16]}", "object": "unknown"})
            name, expected = "webhook: ignored type", "ignored"
        headers = {"Content-Type": "application/json",
                   "Stripe-Signature": stripe_signature(body, self.secret, int(time.time()))}
        with self.client.post(WEBHOOK, data=body, headers=headers, name=name, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code} {r.text[:200]}")
                return
            answer = r.json()
            if answer.get("event_id") != event_id or (expected and answer.get("status") != expected) or (
                    answer.get("duplicate") != (expected is None)):
                r.failure(f"unexpected receipt {answer}")
                return
        if expected is not None:
            self.sent_events.append((body, event_id))

    def _event(self, event_id: str, event_type: str, obj: dict) -> bytes:
        return json.dumps({"id": event_id, "object": "event", "api_version": "2025-09-30.clover",
                           "created": int(time.time()), "livemode": False, "pending_webhooks": 1,
                           "type": event_type, "data": {"object": obj}}, separators=(",", ":")).encode()


# --- the summary printed at the end ----------------------------------------------------------------------------


def summary_lines(stats) -> list[str]:  # noqa: ANN001
    """One line per request name and the total: requests, errors, req/s, p50/p95/p99 (ms, locust's
    approximation: rounded to 10 ms above 100 ms)."""
    rows = sorted(stats.entries.values(), key=lambda e: -e.num_requests) + [stats.total]
    width = max(len(e.name) for e in rows) + 2
    lines = [f"{'name':<{width}}{'requests':>9}{'errors':>8}{'req/s':>9}{'p50':>7}{'p95':>7}{'p99':>7}{'max':>8}"]
    for e in rows:
        if not e.num_requests:
            continue
        p = e.get_response_time_percentile
        lines.append(f"{e.name:<{width}}{e.num_requests:>9,}{e.num_failures:>8,}{e.total_rps:>9.1f}"
                     f"{p(0.5):>7.0f}{p(0.95):>7.0f}{p(0.99):>7.0f}{e.max_response_time:>8.0f}")
    return lines


@events.quitting.add_listener
def _print_summary(environment, **_kw) -> None:  # noqa: ANN001
    stats = environment.stats
    print("\n=== load test summary (times in ms) ===")
    for line in summary_lines(stats):
        print(line)
    errors = sorted(stats.errors.values(), key=lambda e: -e.occurrences)
    for e in errors[:10]:
        print(f"error x{e.occurrences}: {e.method} {e.name}: {str(e.error)[:300]}")
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
