"""Stripe webhook deliveries per second, 20 % of them duplicates, vs a baseline endpoint that verifies the signature
and performs the same database writes in raw psycopg, same server.

A real gunicorn server started as ``make run`` serves (``bench/_common.py``: 3 workers x 4 threads, gthread,
``--preload``, access log on), with ``DATABASE_URL`` pointing at the bench database, ``BENCH_ENDPOINTS=1`` and a
``STRIPE_WEBHOOK_SECRET`` (plus a dummy ``STRIPE_SECRET_KEY``). Three sides, alternated over rounds (order
rotates every round):

- ``verify``:   POST /api/bench/webhook-verify/ (``payments/api/bench_views.py``): public, only
                ``payments.providers.stripe.webhook_event_verify`` (the webhook view's own check), then
                ``{"received": true}``: the floor of the HTTP stack
- ``baseline``: POST /api/bench/webhook-baseline/ (same module): the same check, then in raw psycopg and one
                transaction the writes a paid top-up needs: store the event by its id (a duplicate stops there),
                lock the order, post the ledger row, mark the order paid; no rule checked
- ``webhook``:  POST /api/billing/webhooks/stripe/, the real endpoint: verify, store the event once by its id,
                process it through the routing table (top-up order locked, checked, credited through the ledger,
                marked paid, parked refunds looked for)

Before each round of the two writing sides, N pending top-up orders are created (ORM ``bulk_create``, what a
checkout leaves: account, user, amount, credits, Stripe checkout session id, status pending) and one
``checkout.session.completed`` event is built per order (mode payment, payment_status paid, amount_total = the
order's cents, usd, ``client_reference_id`` and ``metadata.order_id``); every 5th delivery is a duplicate of an
earlier event (same event id, same signed body). Bodies and ``Stripe-Signature`` headers
(``stripe.WebhookSignature.generate_signature_header``, timestamp = now, tolerance 300 s) are all built before the
clock starts. The ``verify`` side gets the same kind of deliveries (same sizes, same 20 % duplicates), for orders
that are never created. N threads (default 16), each on its own keep-alive ``http.client`` connection, lined up on
a barrier.

Prints deliveries/s, p50/p99 and CPU per delivery (this client, the gunicorn processes, the PostgreSQL backends)
per side per round, the medians, ``ratio webhook/baseline`` (target >= 0.5; webhook/verify for reference), then
checks what was written, for each writing side: every order of this run credited at most once (``add`` ledger rows
with reference ``order:<id>``: exactly 1 for each paid order, 0 for the others), paid orders = distinct events
delivered, WebhookEvent rows = distinct events.

Own database: ``billing_bench_webhooks`` (``BENCH_DATABASE_NAME`` overrides), created and migrated if missing.

    .venv/bin/python bench/webhooks.py [--threads 16] [--seconds 6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BackendCpu, Request, Server, ensure_members, load_average, run_load, server_facts, setup_django

BENCH_DB = os.environ.get("BENCH_DATABASE_NAME", "billing_bench_webhooks")
PLATFORM_KEY = "bench-webhooks"
ACCOUNTS = 100
WEBHOOK_SECRET = "whsec_bench_webhooks_secret"
AMOUNT = Decimal("25.00")
DUPLICATE_EVERY = 5  # every 5th delivery repeats an earlier event: 20 %
TARGET = 0.5
SIDES = ["verify", "baseline", "webhook"]
WRITING = ["baseline", "webhook"]
PATHS = {"verify": "/api/bench/webhook-verify/", "baseline": "/api/bench/webhook-baseline/",
         "webhook": "/api/billing/webhooks/stripe/"}
APP_URL = "https://app.bench.test/billing"


def event_body(event_id: str, order_id: str, session_id: str, payment_intent: str) -> str:
    return json.dumps({
        "id": event_id,
        "object": "event",
        "api_version": "2025-09-30.clover",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "type": "checkout.session.completed",
        "data": {"object": {
            "id": session_id,
            "object": "checkout.session",
            "mode": "payment",
            "status": "complete",
            "payment_status": "paid",
            "client_reference_id": order_id,
            "metadata": {"order_id": order_id},
            "amount_total": int(AMOUNT * 100),
            "currency": "usd",
            "customer": None,
            "payment_intent": payment_intent,
        }},
    }, separators=(",", ":"))


def orders_create(platform, accounts: list[tuple], n: int, tag: str) -> list[tuple[str, str]]:
    """``n`` pending top-ups as a Stripe checkout leaves them; returns (order id, checkout session id)."""
    from payments.models import Channel, Order, OrderStatus, OrderType

    orders = [
        Order(id=uuid.uuid4(), platform=platform, account_id=accounts[i % len(accounts)][0],
              user_id=accounts[i % len(accounts)][1], type=OrderType.TOP_UP, channel=Channel.STRIPE,
              status=OrderStatus.PENDING, currency="USD", amount_usd=AMOUNT, credits=AMOUNT, success_url=APP_URL,
              cancel_url=APP_URL, checkout_url=f"https://checkout.stripe.test/c/pay/cs_bench_{tag}_{i}",
              provider_checkout_id=f"cs_bench_{tag}_{i}")
        for i in range(n)
    ]
    Order.objects.bulk_create(orders, batch_size=2000)
    return [(str(o.id), o.provider_checkout_id) for o in orders]


def deliveries(orders: list[tuple[str, str]], *, path: str, tag: str, total: int, threads: int, rng: random.Random):
    """``total`` signed deliveries, every DUPLICATE_EVERY-th one a redelivery of an earlier event, dealt round-robin
    to the threads; returns (per-thread lists of signed requests, number of distinct events)."""
    import stripe

    stamp = int(time.time())
    events: list[Request] = []
    sequence = []
    for i in range(total):
        if i % DUPLICATE_EVERY == DUPLICATE_EVERY - 1 and events:
            # an event sent a little earlier (within the last few hundred deliveries): a redelivery, possibly
            # while the first delivery is still being processed on another connection
            sequence.append(events[rng.randrange(max(0, len(events) - 300), len(events))])
            continue
        order_id, session_id = orders[len(events)]
        event_id = f"evt_bench_{tag}_{len(events)}"
        body = event_body(event_id, order_id, session_id, f"pi_bench_{tag}_{len(events)}")
        header = stripe.WebhookSignature.generate_signature_header(body, WEBHOOK_SECRET, timestamp=stamp)
        item = Request("POST", path, body.encode(),
                       headers={"Content-Type": "application/json", "Stripe-Signature": header}, tag=event_id)
        events.append(item)
        sequence.append(item)
    return [sequence[t::threads] for t in range(threads)], len(events)


def written_check(side: str, created: list[str], sent: set[str]) -> tuple[bool, int]:
    """What one writing side wrote: each of its orders credited at most once, paid orders = distinct events it
    delivered, one processed event row per distinct event. Returns (consistent, orders credited twice)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT o.status, coalesce(l.n, 0) AS adds, count(*)
              FROM payments_order o
              LEFT JOIN (SELECT reference, count(*) AS n FROM credits_ledger_entry
                          WHERE transaction_type = 'add' AND reference = ANY(%s) GROUP BY reference) l
                     ON l.reference = 'order:' || o.id::text
             WHERE o.id = ANY(%s::uuid[])
             GROUP BY 1, 2 ORDER BY 1, 2
            """,
            [[f"order:{o}" for o in created], created],
        )
        groups = cursor.fetchall()
        cursor.execute(
            "SELECT count(*), count(DISTINCT event_id), count(*) FILTER (WHERE status = 'processed') "
            "FROM payments_webhookevent WHERE provider = 'stripe' AND event_id = ANY(%s)",
            [list(sent)],
        )
        event_rows, distinct_rows, processed = cursor.fetchone()
    paid = sum(c for status, _, c in groups if status == "paid")
    paid_once = sum(c for status, adds, c in groups if status == "paid" and adds == 1)
    double = sum(c for _, adds, c in groups if adds > 1)
    stray = sum(c for status, adds, c in groups if status != "paid" and adds != 0)
    print(f"{side}: orders {len(created):,}: {', '.join(f'{s} with {a} add row(s): {c:,}' for s, a, c in groups)}")
    print(f"{side}: distinct events delivered (200) {len(sent):,}; paid orders {paid:,}, each with exactly 1 add row "
          f"{paid_once:,}; credited more than once {double}; credited but not paid {stray}; WebhookEvent rows "
          f"{event_rows:,} (distinct ids {distinct_rows:,}, processed {processed:,})")
    consistent = (double == 0 and stray == 0 and paid == paid_once == len(sent)
                  and event_rows == distinct_rows == processed == len(sent))
    print(f"{side}: double credits: {double} -> {'OK' if consistent else 'MISMATCH'}")
    return consistent, double


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=16, help="client connections")
    parser.add_argument("--seconds", type=float, default=6.0, help="per side per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per side before round 1 (discarded)")
    args = parser.parse_args()

    conninfo = setup_django(BENCH_DB)

    from django.db import connection

    from accounts.services import platform_create
    from credits.models import CreditAccount

    platform, _ = platform_create(platform_key=PLATFORM_KEY, name="Benchmark: Stripe webhooks")
    account_ids = ensure_members(platform, "webhooks", ACCOUNTS, funds=Decimal(0), floor=Decimal(0))
    accounts = list(CreditAccount.objects.filter(pk__in=account_ids).values_list("id", "user_id"))
    version, sync_commit = server_facts()
    connection.close()

    run = uuid.uuid4().hex[:10]
    rng = random.Random(run)
    created: dict[str, list[str]] = {side: [] for side in WRITING}  # order ids of this run
    distinct_sent: dict[str, set[str]] = {side: set() for side in WRITING}  # event ids answered 200

    def prepare(side: str, tag: str, total: int) -> tuple[list[list], int]:
        unique = total - total // DUPLICATE_EVERY + 1
        if side in WRITING:
            orders = orders_create(platform, accounts, unique, f"{run}_{tag}")
            created[side].extend(o for o, _ in orders)
            connection.close()
        else:  # verified only: the orders need not exist
            orders = [(str(uuid.uuid4()), f"cs_bench_{run}_{tag}_{i}") for i in range(unique)]
        return deliveries(orders, path=PATHS[side], tag=f"{run}_{tag}", total=total, threads=args.threads, rng=rng)

    print(f"Stripe webhook deliveries over HTTP: {args.threads} connections, {args.seconds:g} s per side, "
          f"{args.rounds} rounds (side order rotates); gunicorn as `make run` (3 workers x 4 threads, gthread)")
    print(f"database {BENCH_DB!r} ({version}, synchronous_commit={sync_commit}); {ACCOUNTS} accounts; "
          f"checkout.session.completed of {AMOUNT} USD top-ups, 1 delivery in {DUPLICATE_EVERY} a duplicate; run {run}")
    print(f"load average before: {load_average()} on {os.cpu_count()} CPUs")
    print()

    results: dict[str, list[dict]] = {side: [] for side in SIDES}
    env = {"STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET, "STRIPE_WEBHOOK_TOLERANCE": "300",
           "STRIPE_SECRET_KEY": "sk_test_bench_dummy"}
    backends = BackendCpu(conninfo)
    try:
        with Server(conninfo, env=env) as server:
            estimate = {}
            for side in SIDES:  # warm-up: every worker thread connects, imports and plans everything
                work, _ = prepare(side, "w" + side[0], 20000)  # fast machines: enough for the whole warm-up
                res = run_load(server.port, work, seconds=args.warmup, expect=200)
                estimate[side] = res["rate"]
                if side in WRITING:
                    distinct_sent[side] |= res["sent"]

            header = (f"{'round':>5}  {'side':<8} {'deliveries':>10} {'secs':>5} {'deliv/s':>8} {'p50 ms':>7} "
                      f"{'p99 ms':>7}  CPU per delivery: {'client':>7} {'gunicorn':>9} {'postgres':>9}")
            print(header)
            print("-" * len(header))
            for r in range(args.rounds):
                for side in SIDES[r % len(SIDES):] + SIDES[:r % len(SIDES)]:
                    # generous: connections are not served evenly, and the warm-up rate is an underestimate
                    total = int(estimate[side] * args.seconds * 5) + 100 * args.threads
                    work, _ = prepare(side, f"r{r}{side[0]}", total)  # signed just now: well within 300 s
                    res = run_load(server.port, work, seconds=args.seconds, expect=200, server=server,
                                   backends=backends)
                    del work
                    estimate[side] = max(estimate[side], res["rate"])
                    results[side].append(res)
                    if side in WRITING:
                        distinct_sent[side] |= res["sent"]
                    n = res["requests"]
                    print(f"{r + 1:>5}  {side:<8} {n:>10} {res['elapsed']:>5.1f} {res['rate']:>8.0f} "
                          f"{res['p50_ms']:>7.2f} {res['p99_ms']:>7.2f}  {'':>17} "
                          f"{res['client_cpu'] / n * 1e6:>4.0f} us {res['server_cpu'] / n * 1e6:>6.0f} us "
                          f"{res['db_cpu'] / n * 1e6:>6.0f} us", flush=True)
    finally:
        backends.close()
    print(f"load average after:  {load_average()}")
    print()

    # --- what was written --------------------------------------------------------------------------
    consistent, double = True, 0
    for side in WRITING:
        ok, doubled = written_check(side, created[side], distinct_sent[side])
        consistent, double = consistent and ok, double + doubled
    print()

    def med(side: str, key: str) -> float:
        return statistics.median(x[key] / (x["requests"] if key.endswith("cpu") else 1) for x in results[side])

    for side in SIDES:
        print(f"{side:<8} median {med(side, 'rate'):6.0f} deliveries/s, p50 {med(side, 'p50_ms'):5.2f} ms, "
              f"p99 {med(side, 'p99_ms'):6.2f} ms; CPU/delivery client {med(side, 'client_cpu') * 1e6:4.0f} us, "
              f"gunicorn {med(side, 'server_cpu') * 1e6:5.0f} us, postgres {med(side, 'db_cpu') * 1e6:5.0f} us")

    def cpu_per(res: dict) -> float:  # client + gunicorn + postgres: what bounds the rate on 2 cores
        return (res["client_cpu"] + res["server_cpu"] + res["db_cpu"]) / res["requests"]

    per_round = [w["rate"] / b["rate"] for w, b in zip(results["webhook"], results["baseline"], strict=True)]
    ratio = med("webhook", "rate") / med("baseline", "rate")
    cpu = statistics.median(cpu_per(b) / cpu_per(w) for w, b in zip(results["webhook"], results["baseline"], strict=True))
    met = ratio >= TARGET and consistent
    print(f"ratio webhook/verify = {med('webhook', 'rate') / med('verify', 'rate'):.2f}; "
          f"baseline/verify = {med('baseline', 'rate') / med('verify', 'rate'):.2f}")
    print(f"ratio webhook/baseline = {ratio:.2f}  (per round {', '.join(f'{x:.2f}' for x in per_round)}; "
          f"CPU per delivery baseline/webhook {cpu:.2f})")
    print(f"target: ratio >= {TARGET} and 0 double credits: {'MET' if met else 'MISSED'} "
          f"(ratio {'met' if ratio >= TARGET else 'missed'}, double credits {double})")
    return 0 if consistent else 1


if __name__ == "__main__":
    sys.exit(main())
