"""Single usage event over HTTP: POST /api/billing/usage/ vs a bare authenticated DRF endpoint, same server.

A real gunicorn server, started by this script exactly as ``make run`` serves (``--workers 3 --worker-class
gthread --threads 4 --preload``, access log on) with ``DATABASE_URL`` pointing at the bench database and
``BENCH_ENDPOINTS=1`` (which routes ``/api/bench/noop/``: token authentication, ``IsAuthenticated``,
``{"ok": true}``). The load: N threads (default 16), each on its own keep-alive ``http.client`` connection,
sending bodies encoded before the clock starts. Three sides, alternated over several rounds (order rotates):

- ``noop``:      POST /api/bench/noop/ with the same body as ``amount`` (read by the server, not parsed)
- ``amount``:    POST /api/billing/usage/ ``{account_id, request_id, endpoint, amount}``
- ``rate_card``: POST /api/billing/usage/ ``{account_id, request_id, endpoint, model, input_tokens,
                 output_tokens}``, priced by a ModelPrice version (a cost in whole 0.000001: one statement)
- ``carried``:   the same at 0.40 / 1.30 per million tokens: a cost finer than 0.000001, debited in whole
                 0.000001 with the account's carried remainder (its read, then one statement that compares and
                 sets it; README, "Exact usage costs")

Every request is a new request_id (201 expected), spread over 100 funded accounts. Prints requests/s per side
per round, CPU per request (this client, the gunicorn processes, the PostgreSQL backends), medians and the
ratios usage/noop of the req/s (target >= 0.6), with the ratio of the CPU per request (steadier on a shared
machine: on two cores it is what bounds the rate); then checks the written rows (events = requests, rollups = events,
``ledger_verify`` of a sample of accounts). The server is stopped at the end, whatever happens.

Own database: ``billing_bench_usage_http`` (``BENCH_DATABASE_NAME`` overrides), created and migrated if missing.

    .venv/bin/python bench/usage_http.py [--threads 16] [--seconds 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BackendCpu,
    Request,
    Server,
    ensure_members,
    load_average,
    run_load,
    server_facts,
    setup_django,
)

BENCH_DB = os.environ.get("BENCH_DATABASE_NAME", "billing_bench_usage_http")
PLATFORM_KEY = "bench-usage-http"
ACCOUNTS = 100
FUNDS, FLOOR = Decimal(1000000000), Decimal(10000000)
AMOUNT = "0.0125"
MODEL = "bench-model-1"
MODEL_CARRIED = "bench-model-fraction"
ENDPOINT = "/v1/chat/completions"
TARGET = 0.45  # issue 9: not below 0.45 of the bare authenticated endpoint
SIDES = ["noop", "amount", "rate_card", "carried"]
PATHS = {"noop": "/api/bench/noop/", "amount": "/api/billing/usage/", "rate_card": "/api/billing/usage/",
         "carried": "/api/billing/usage/"}
EXPECT = {"noop": 200, "amount": 201, "rate_card": 201, "carried": 201}
BODY = {"noop": "amount", "amount": "amount", "rate_card": "rate_card", "carried": "carried"}


def body(side: str, account_id: str, request_id: str) -> bytes:
    event = {"account_id": account_id, "request_id": request_id, "endpoint": ENDPOINT}
    if side == "rate_card":
        event.update(model=MODEL, input_tokens=1200, output_tokens=350)
    elif side == "carried":  # 1201 x 0.40 + 351 x 1.30 micro-credits: 0.0009367
        event.update(model=MODEL_CARRIED, input_tokens=1201, output_tokens=351)
    else:
        event["amount"] = AMOUNT
    return json.dumps(event, separators=(",", ":")).encode()


def prepare(side: str, *, run: str, tag: str, threads: int, per_thread: int, accounts: list[str]) -> list:
    """Each thread's requests, encoded: a new request_id each, accounts in rotation."""
    work = []
    for t in range(threads):
        reqs = []
        for i in range(per_thread):
            account = accounts[(t * per_thread + i) % len(accounts)]
            payload = body(BODY[side], account, f"{run}-{tag}-{side}-{t}-{i}")
            reqs.append(Request("POST", PATHS[side], payload))
        work.append(reqs)
    return work


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=16, help="client connections")
    parser.add_argument("--seconds", type=float, default=8.0, help="per side per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per side before round 1 (discarded)")
    args = parser.parse_args()

    conninfo = setup_django(BENCH_DB)
    platform, token, account_ids = _set_up()
    from django.db import connection

    version, sync_commit = server_facts()
    connection.close()

    run = uuid.uuid4().hex[:10]
    headers = {"Authorization": f"Token {token.key}", "Content-Type": "application/json"}
    print(f"Single usage event over HTTP: {args.threads} connections, {args.seconds:g} s per side, "
          f"{args.rounds} rounds (side order rotates); gunicorn as `make run` (3 workers x 4 threads, gthread)")
    print(f"database {BENCH_DB!r} ({version}, synchronous_commit={sync_commit}); {ACCOUNTS} accounts; run {run}")
    print(f"load average before: {load_average()} on {os.cpu_count()} CPUs")
    print()
    results, sent = _rounds(args, conninfo, run=run, headers=headers, account_ids=account_ids)
    print(f"load average after:  {load_average()}")
    print()
    consistent, ok = _verify(platform, run=run, sent=sent, account_ids=account_ids)
    _summary(results)
    return 0 if consistent and ok else 1


def _set_up() -> tuple:
    """The bench platform, its backend's token, the funded accounts and the two rate-card models."""
    from accounts.models import Role
    from accounts.services import api_token_issue, member_add, platform_create
    from credits.models import ModelPrice
    from credits.services.rate_card import model_price_create

    platform, _ = platform_create(platform_key=PLATFORM_KEY, name="Benchmark: usage over HTTP")
    membership, _ = member_add(platform=platform, username="bench-http-backend", role=Role.OWNER)
    token = api_token_issue(user=membership.user, name="bench")  # keys are shown once: one per run
    account_ids = [str(a) for a in ensure_members(platform, "http", ACCOUNTS, funds=FUNDS, floor=FLOOR)]
    for model, prices in ((MODEL, ("3", "15")), (MODEL_CARRIED, ("0.40", "1.30"))):
        if not ModelPrice.objects.filter(platform=platform, model=model).exists():
            model_price_create(platform=platform, model=model, input_per_million=Decimal(prices[0]),
                               output_per_million=Decimal(prices[1]),
                               effective_from=datetime(2020, 1, 1, tzinfo=UTC), actor=None)
    return platform, token, account_ids


def _rounds(args: argparse.Namespace, conninfo: dict, *, run: str, headers: dict, account_ids: list[str]) -> tuple:
    """The warm-up, then the rounds (side order rotating): (results per side, requests sent per side)."""
    sides = SIDES
    sent = {side: 0 for side in sides}
    results: dict[str, list[dict]] = {side: [] for side in sides}
    backends = BackendCpu(conninfo)
    try:
        with Server(conninfo, app="billing_service.wsgi:application") as server:
            estimate = {}
            for side in sides:  # warm-up: every worker thread connects, imports and plans everything
                work = prepare(side, run=run, tag="w", threads=args.threads, per_thread=3000 // args.threads + 1500,
                               accounts=account_ids)
                res = run_load(server.port, work, headers=headers, seconds=args.warmup, expect=EXPECT[side])
                estimate[side] = res["rate"]
                sent[side] += res["requests"]

            header = (f"{'round':>5}  {'side':<11} {'requests':>8} {'secs':>5} {'req/s':>7} {'p50 ms':>7} "
                      f"{'p99 ms':>7}  CPU per request: {'client':>7} {'gunicorn':>9} {'postgres':>9}")
            print(header)
            print("-" * len(header))
            for r in range(args.rounds):
                order = sides[r % len(sides):] + sides[: r % len(sides)]
                if r % 2:
                    order = order[::-1]
                for side in order:
                    # generous: connections are not served evenly, and the warm-up rate is an underestimate
                    per_thread = int(max(estimate.values()) * args.seconds * 4 / args.threads) + 300
                    work = prepare(side, run=run, tag=f"r{r}", threads=args.threads, per_thread=per_thread,
                                   accounts=account_ids)
                    res = run_load(server.port, work, headers=headers, seconds=args.seconds, expect=EXPECT[side],
                                   server=server, backends=backends)
                    del work
                    estimate[side] = max(estimate[side], res["rate"])
                    results[side].append(res)
                    sent[side] += res["requests"]
                    n = res["requests"]
                    print(f"{r + 1:>5}  {side:<11} {n:>8} {res['elapsed']:>5.1f} {res['rate']:>7.0f} "
                          f"{res['p50_ms']:>7.2f} {res['p99_ms']:>7.2f}  {'':>16} "
                          f"{res['client_cpu'] / n * 1e6:>4.0f} us {res['server_cpu'] / n * 1e6:>6.0f} us "
                          f"{res['db_cpu'] / n * 1e6:>6.0f} us", flush=True)
    finally:
        backends.close()
    return results, sent


def _verify(platform: object, *, run: str, sent: dict, account_ids: list[str]) -> tuple[bool, bool]:
    """The rows written: events = 201 responses, rollups = events, charged events = subtract rows;
    ``ledger_verify`` of 10 accounts."""
    from django.db import connection

    from credits.models import CreditAccount, UsageEvent, UsageRollup
    from credits.verification import ledger_verify

    events = UsageEvent.objects.filter(platform=platform, request_id__startswith=f"{run}-").count()
    expected = sum(n for side, n in sent.items() if side != "noop")
    accounts = list(CreditAccount.objects.filter(pk__in=account_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(ledger_entry_id) FROM credits_usageevent WHERE account_id = ANY(%s::uuid[])",
            [account_ids],
        )
        all_events, charged = cursor.fetchone()
    rolled = sum(r.total_requests for r in UsageRollup.objects.filter(account_id__in=account_ids))
    subtracts = sum(a.count_subtract for a in accounts)
    consistent = events == expected and rolled == all_events and charged == subtracts
    print(f"usage events of this run {events:,} = 201 responses {expected:,}; all-time events {all_events:,} = "
          f"rollup total {rolled:,}; charged events {charged:,} = subtract rows {subtracts:,}: "
          f"{'consistent' if consistent else 'MISMATCH'}")
    started = time.perf_counter()
    checks = [ledger_verify(account=a) for a in accounts[:10]]
    ok = all(c.ok for c in checks)
    print(f"ledger_verify of 10 accounts: ok={ok} ({time.perf_counter() - started:.1f} s)"
          + ("" if ok else f" problems={[c.problems[:3] for c in checks if not c.ok]}"))
    print()
    return consistent, ok


def _summary(results: dict[str, list[dict]]) -> None:
    """Medians per side and the ratios usage/noop (of req/s, and of the CPU per request)."""
    def med(side: str, key: str) -> float:
        values = [x[key] / (x["requests"] if key.endswith("cpu") else 1) for x in results[side]]
        return statistics.median(values)

    for side in SIDES:
        print(f"{side:<11} median {med(side, 'rate'):6.0f} req/s, p50 {med(side, 'p50_ms'):5.2f} ms; CPU/request "
              f"client {med(side, 'client_cpu') * 1e6:4.0f} us, gunicorn {med(side, 'server_cpu') * 1e6:5.0f} us, "
              f"postgres {med(side, 'db_cpu') * 1e6:5.0f} us")

    def cpu_per_request(res: dict) -> float:  # client + gunicorn + postgres: what bounds the rate on 2 cores
        return (res["client_cpu"] + res["server_cpu"] + res["db_cpu"]) / res["requests"]

    for side in SIDES[1:]:
        per_round = [s["rate"] / b["rate"] for s, b in zip(results[side], results["noop"], strict=True)]
        ratio = med(side, "rate") / med("noop", "rate")
        cpu = statistics.median(cpu_per_request(b) / cpu_per_request(x)
                                for x, b in zip(results[side], results["noop"], strict=True))
        print(f"ratio {side}/noop = {ratio:.2f}  (per round {', '.join(f'{x:.2f}' for x in per_round)}; "
              f"CPU per request noop/{side} {cpu:.2f}; target >= {TARGET}: {'MET' if ratio >= TARGET else 'MISSED'})")


if __name__ == "__main__":
    sys.exit(main())
