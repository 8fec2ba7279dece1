"""Seat-funded usage over HTTP: POST /api/billing/usage/ of a member holding a seat vs the same event of a member
paying with credits, same server, same run.

The server is ``make run``'s (``bench/_common.Server``: gunicorn, 3 workers x 4 gthread threads, ``--preload``).
Four sides, alternated over several rounds (order rotates), each N client threads (default 16) on keep-alive
connections, a new request_id per request (201 expected), ``{account_id, request_id, endpoint, amount}``:

- ``credits``:     spread over 100 members paying with credits (the one-statement path)
- ``seat``:        spread over 100 members each holding a seat (budgets large enough never to refuse): the
                   seat's windows and charge row written in the usage transaction (``entitlements.funding``)
- ``credits_one``: every request on ONE credit account (all threads contend for its row lock)
- ``seat_one``:    every request on ONE seat (the same contention, plus the seat's windows)

Targets (issue 10): seat/credits >= 0.9 and seat_one/credits_one >= 0.8 (medians of req/s). Then checks the
rows: events = 201 responses, each seat event funded (charged 0), the windows' spending equals the seat
charges' and the events' funded sums, ``ledger_verify`` of the accounts.

Own database: ``billing_bench_seats`` (``BENCH_DATABASE_NAME`` overrides), created and migrated if missing.

    .venv/bin/python bench/seat_usage.py [--threads 16] [--seconds 6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import uuid
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BackendCpu, Request, Server, ensure_members, load_average, run_load, server_facts, setup_django

BENCH_DB = os.environ.get("BENCH_DATABASE_NAME", "billing_bench_seats")
PLATFORM_KEY = "bench-seats"
MEMBERS = 100
FUNDS, FLOOR = Decimal(1000000000), Decimal(10000000)
BUDGET = Decimal("90000000000000")  # never refuses
AMOUNT = "0.0125"
SIDES = ["credits", "seat", "credits_one", "seat_one"]
TARGETS = {"seat": ("credits", 0.9), "seat_one": ("credits_one", 0.8)}


def prepare(side: str, *, run: str, tag: str, threads: int, per_thread: int, accounts: dict[str, list[str]]) -> list:
    pool = accounts[side]
    work = []
    for t in range(threads):
        reqs = []
        for i in range(per_thread):
            event = {"account_id": pool[(t * per_thread + i) % len(pool)], "request_id": f"{run}-{tag}-{side}-{t}-{i}",
                     "endpoint": "/v1/chat/completions", "amount": AMOUNT}
            reqs.append(Request("POST", "/api/billing/usage/", json.dumps(event, separators=(",", ":")).encode()))
        work.append(reqs)
    return work


def _set_up() -> tuple:
    """The platform, its backend's token, 100 + 1 credit-paying members, 100 + 1 seated members (one plan, a
    manual contract for 101 seats)."""
    from django.contrib.auth import get_user_model

    from accounts.models import Role
    from accounts.services import api_token_issue, member_add, platform_create
    from entitlements.models import AIPlan, SeatAssignment
    from entitlements.services import seat_assign, seats_grant

    platform, _ = platform_create(platform_key=PLATFORM_KEY, name="Benchmark: seat-funded usage")
    owner, _ = member_add(platform=platform, username="bench-seats-backend", role=Role.OWNER)
    token = api_token_issue(user=owner.user, name="bench")  # keys are shown once: one per run
    plan, _ = AIPlan.objects.get_or_create(slug="bench-seat", defaults={
        "name": "Bench seat", "tier": "strategic", "weekly_budget": BUDGET, "session_budget": BUDGET})
    seats_grant(platform=platform, ai_plan=plan, quantity=MEMBERS + 1)
    credit_ids = [str(a) for a in ensure_members(platform, "credit", MEMBERS + 1, funds=FUNDS, floor=FLOOR)]
    seat_ids = [str(a) for a in ensure_members(platform, "seat", MEMBERS + 1, funds=FUNDS, floor=FLOOR)]
    seated = set(SeatAssignment.objects.filter(platform=platform).values_list("user__username", flat=True))
    for user in get_user_model().objects.filter(username__startswith="seat-").order_by("username"):
        if user.username not in seated:
            seat_assign(platform=platform, ai_plan=plan, username=user.username, actor=owner.user)
    accounts = {"credits": credit_ids[1:], "seat": seat_ids[1:], "credits_one": credit_ids[:1],
                "seat_one": seat_ids[:1]}
    return platform, token, accounts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args()

    conninfo = setup_django(BENCH_DB)
    platform, token, accounts = _set_up()
    from django.db import connection

    version, sync_commit = server_facts()
    connection.close()
    run = uuid.uuid4().hex[:10]
    headers = {"Authorization": f"Token {token.key}", "Content-Type": "application/json"}
    print(f"Seat-funded vs credit-funded usage over HTTP: {args.threads} connections, {args.seconds:g} s per side, "
          f"{args.rounds} rounds; gunicorn as `make run`")
    print(f"database {BENCH_DB!r} ({version}, synchronous_commit={sync_commit}); run {run}")
    print(f"load average before: {load_average()} on {os.cpu_count()} CPUs\n")
    results, sent = _rounds(args, conninfo, run=run, headers=headers, accounts=accounts)
    print(f"load average after:  {load_average()}\n")
    ok = _verify(platform, run=run, sent=sent, accounts=accounts)
    _summary(results)
    return 0 if ok else 1


def _rounds(args: argparse.Namespace, conninfo: dict, *, run: str, headers: dict, accounts: dict) -> tuple:
    sent = dict.fromkeys(SIDES, 0)
    results: dict[str, list[dict]] = {side: [] for side in SIDES}
    backends = BackendCpu(conninfo)
    try:
        with Server(conninfo, app="billing_service.wsgi:application") as server:
            estimate = {}
            for side in SIDES:
                work = prepare(side, run=run, tag="w", threads=args.threads, per_thread=1500, accounts=accounts)
                res = run_load(server.port, work, headers=headers, seconds=args.warmup, expect=201)
                estimate[side] = res["rate"]
                sent[side] += res["requests"]
            header = f"{'round':>5}  {'side':<12} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7}"
            print(header)
            print("-" * len(header))
            for r in range(args.rounds):
                order = SIDES[r % len(SIDES):] + SIDES[: r % len(SIDES)]
                for side in order[::-1] if r % 2 else order:
                    per_thread = int(max(estimate.values()) * args.seconds * 4 / args.threads) + 300
                    work = prepare(side, run=run, tag=f"r{r}", threads=args.threads, per_thread=per_thread,
                                   accounts=accounts)
                    res = run_load(server.port, work, headers=headers, seconds=args.seconds, expect=201,
                                   server=server, backends=backends)
                    del work
                    results[side].append(res)
                    sent[side] += res["requests"]
                    print(f"{r + 1:>5}  {side:<12} {res['requests']:>8} {res['rate']:>7.0f} {res['p50_ms']:>7.2f} "
                          f"{res['p99_ms']:>7.2f}", flush=True)
    finally:
        backends.close()
    return results, sent


def _verify(platform: object, *, run: str, sent: dict, accounts: dict) -> bool:
    from django.db.models import Sum

    from credits.models import CreditAccount, UsageEvent
    from credits.verification import ledger_verify
    from entitlements.models import SeatCharge, SeatWindow

    events = UsageEvent.objects.filter(platform=platform, request_id__startswith=f"{run}-")
    seat_ids = accounts["seat"] + accounts["seat_one"]
    seat_events = events.filter(account_id__in=seat_ids)
    unfunded = seat_events.exclude(charged=0).count() + seat_events.exclude(funded_by="seat:bench-seat").count()
    funded = UsageEvent.objects.filter(account_id__in=seat_ids).aggregate(s=Sum("funded"))["s"] or 0
    charges = SeatCharge.objects.filter(platform=platform).aggregate(s=Sum("spent_delta"))["s"] or 0
    weekly = SeatWindow.objects.filter(platform=platform, kind="weekly").aggregate(s=Sum("spent"))["s"] or 0
    sessions = SeatWindow.objects.filter(platform=platform, kind="session").aggregate(s=Sum("spent"))["s"] or 0
    total = events.count()
    consistent = total == sum(sent.values()) and unfunded == 0 and funded == charges == weekly == sessions
    print(f"events of this run {total:,} = 201 responses {sum(sent.values()):,}; seat events not funded by the seat: "
          f"{unfunded}; all-time funded {funded} = seat charges {charges} = weekly windows {weekly} = sessions "
          f"{sessions}: {'consistent' if consistent else 'MISMATCH'}")
    checked = [ledger_verify(account=a) for a in CreditAccount.objects.filter(pk__in=seat_ids[:5] + accounts["credits"][:5])]
    ok = all(c.ok for c in checked)
    print(f"ledger_verify of 10 accounts: ok={ok}\n")
    return consistent and ok


def _summary(results: dict[str, list[dict]]) -> None:
    def med(side: str) -> float:
        return statistics.median(x["rate"] for x in results[side])

    for side in SIDES:
        print(f"{side:<12} median {med(side):6.0f} req/s, p50 {statistics.median(x['p50_ms'] for x in results[side]):5.2f} ms")
    for side, (base, target) in TARGETS.items():
        ratio = med(side) / med(base)
        per_round = [s["rate"] / b["rate"] for s, b in zip(results[side], results[base], strict=True)]
        print(f"ratio {side}/{base} = {ratio:.2f} (per round {', '.join(f'{x:.2f}' for x in per_round)}; "
              f"target >= {target}: {'MET' if ratio >= target else 'MISSED'})")


if __name__ == "__main__":
    sys.exit(main())
