"""The daily check-in over HTTP: POST /api/billing/checkin/ vs the bare authenticated endpoint, same server.

A real gunicorn server as ``make run`` serves it (``bench/_common.Server``, ``BENCH_ENDPOINTS=1`` routes
``/api/bench/noop/``: token authentication, ``IsAuthenticated``, ``{"ok": true}``). A check-in is once per member
and day, so every run creates its own members (users, memberships, credit accounts and API tokens, set-based) and
each check-in request is a different member's; the ``noop`` side sends the same members' tokens. Two sides,
alternated over several rounds, N client threads (default 16) on keep-alive connections:

- ``noop``:    POST /api/bench/noop/ (token authentication only)
- ``checkin``: POST /api/billing/checkin/ (201: the day's check-in row and its ``checkin`` ledger row)

Target (issue 11): checkin/noop >= 0.5 (medians of req/s). Then checks the rows: check-ins = 201 responses =
``checkin`` ledger rows of this run's members, each account's balance its credits.

Own database: ``billing_bench_checkin`` (``BENCH_DATABASE_NAME`` overrides), created and migrated if missing.

    .venv/bin/python bench/checkin_http.py [--threads 16] [--seconds 6] [--rounds 3] [--members 60000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import uuid
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (BackendCpu, Request, Server, ensure_members, load_average, member_keys, run_load, server_facts,
                     setup_django)

BENCH_DB = os.environ.get("BENCH_DATABASE_NAME", "billing_bench_checkin")
PLATFORM_KEY = "bench-checkin"
CREDITS_PER_DAY = Decimal("0.25")
TARGET = 0.5
SIDES = ["noop", "checkin"]
PATHS = {"noop": "/api/bench/noop/", "checkin": "/api/billing/checkin/"}
EXPECT = {"noop": 200, "checkin": 201}


def _set_up(run: str, members: int) -> tuple:
    """The platform with its check-in on, and ``members`` new members of this run with their API tokens."""
    from accounts.services import platform_create
    from credits.services.checkin import checkin_config_set

    platform, _ = platform_create(platform_key=PLATFORM_KEY, name="Benchmark: check-in over HTTP")
    checkin_config_set(platform=platform, actor=None, enabled=True, credits_per_day=CREDITS_PER_DAY,
                       streak_bonuses={}, monthly_cap=None, time_zone="UTC")
    prefix = f"ck{run}"
    account_ids = ensure_members(platform, prefix, members, funds=Decimal(0), floor=Decimal(0))
    tokens = member_keys(prefix)
    return platform, tokens, account_ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--members", type=int, default=90000, help="new members of this run (one check-in each)")
    args = parser.parse_args()

    conninfo = setup_django(BENCH_DB)
    run = uuid.uuid4().hex[:8]
    platform, tokens, account_ids = _set_up(run, args.members)
    from django.db import connection

    version, sync_commit = server_facts()
    connection.close()
    print(f"Check-in over HTTP vs the bare authenticated endpoint: {args.threads} connections, {args.seconds:g} s "
          f"per side, {args.rounds} rounds; gunicorn as `make run`; {len(tokens)} new members")
    print(f"database {BENCH_DB!r} ({version}, synchronous_commit={sync_commit}); run {run}")
    print(f"load average before: {load_average()} on {os.cpu_count()} CPUs\n")
    unused = iter(tokens)  # each check-in a member who has not checked in yet
    results: dict[str, list[dict]] = {side: [] for side in SIDES}
    checked_in = 0
    backends = BackendCpu(conninfo)
    try:
        with Server(conninfo, app="billing_service.wsgi:application") as server:
            per_thread = {"noop": 3000, "checkin": 0}

            def work(side: str, n: int) -> list[list[Request]]:
                if side == "noop":
                    pool = tokens[:n * args.threads]
                    return [[Request("POST", PATHS[side], b"{}", headers=_headers(pool[(t * n + i) % len(pool)]))
                             for i in range(n)] for t in range(args.threads)]
                return [[Request("POST", PATHS[side], b"{}", headers=_headers(next(unused))) for _ in range(n)]
                        for _ in range(args.threads)]

            res = run_load(server.port, work("checkin", 400), seconds=args.warmup, expect=201)
            checked_in += res["requests"]
            rate = max(res["rate"], 50.0)
            run_load(server.port, work("noop", 1500), seconds=args.warmup, expect=200)
            header = f"{'round':>5}  {'side':<8} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7}"
            print(header)
            print("-" * len(header))
            for r in range(args.rounds):
                for side in (SIDES if r % 2 == 0 else SIDES[::-1]):
                    # enough prepared check-ins for 1.5 times the fastest rate seen, at least 1,500 req/s (the bare
                    # endpoint's order of magnitude here; each check-in takes a member of its own)
                    n = 3000 if side == "noop" else int(max(rate, 1500.0) * args.seconds * 1.5 / args.threads) + 100
                    res = run_load(server.port, work(side, n), seconds=args.seconds, expect=EXPECT[side],
                                   server=server, backends=backends)
                    if side == "checkin":
                        checked_in += res["requests"]
                        rate = max(rate, res["rate"])
                    results[side].append(res)
                    print(f"{r + 1:>5}  {side:<8} {res['requests']:>8} {res['rate']:>7.0f} {res['p50_ms']:>7.2f} "
                          f"{res['p99_ms']:>7.2f}", flush=True)
    except StopIteration:
        print(f"ran out of new members: run again with more than --members {args.members}")
        return 1
    finally:
        backends.close()
    print(f"\nload average after:  {load_average()}")
    ok = _verify(account_ids, checked_in)
    noop = statistics.median(x["rate"] for x in results["noop"])
    done = statistics.median(x["rate"] for x in results["checkin"])
    per_round = [c["rate"] / n["rate"] for c, n in zip(results["checkin"], results["noop"], strict=True)]
    print(f"noop     median {noop:6.0f} req/s\ncheckin  median {done:6.0f} req/s")
    print(f"ratio checkin/noop = {done / noop:.2f} (per round {', '.join(f'{x:.2f}' for x in per_round)}; "
          f"target >= {TARGET}: {'MET' if done / noop >= TARGET else 'MISSED'})")
    return 0 if ok else 1


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}", "Content-Type": "application/json"}


def _verify(account_ids: list, checked_in: int) -> bool:
    from django.db.models import Sum

    from credits.models import Checkin, CreditAccount, LedgerEntry

    rows = Checkin.objects.filter(account_id__in=account_ids).count()
    entries = LedgerEntry.objects.filter(account_id__in=account_ids, transaction_type="checkin").count()
    balance = CreditAccount.objects.filter(pk__in=account_ids).aggregate(s=Sum("balance"))["s"] or 0
    ok = rows == entries == checked_in and balance == CREDITS_PER_DAY * rows
    print(f"check-ins {rows:,} = checkin ledger rows {entries:,} = 201 responses {checked_in:,}; balances "
          f"{balance} = {CREDITS_PER_DAY} x check-ins: {'consistent' if ok else 'MISMATCH'}")
    return ok


if __name__ == "__main__":
    sys.exit(main())
