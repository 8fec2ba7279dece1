"""The billing-service-api surface over HTTP: GET /api/v1/credits/balance vs the native GET /api/billing/account/.

The surface forwards to the native view and reshapes its answer (``billing_service.surfaces``): the same
queries, no authentication of its own. This measures what the forwarding and reshaping cost. A real gunicorn
server as ``make run`` serves both (``bench/_common.Server``); two sides, alternated over several rounds, N client
threads (default 16) on keep-alive connections, each thread a member of its own (token authentication):

- ``native``:  GET /api/billing/account/ (the credit account: plan, balance, auto-recharge)
- ``surface``: GET /api/v1/credits/balance (the same view, its balance in that API's integer credits)

Target (issue 12): surface/native >= 0.9 (medians of req/s). Then checks a body of each side: the surface's
balance is the native balance in credit units.

Own database: ``billing_bench_surface`` (``BENCH_DATABASE_NAME`` overrides), created and migrated if missing.

    .venv/bin/python bench/surface_balance.py [--threads 16] [--seconds 6] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (Request, Server, compare_sides, ensure_members, load_average, member_keys, server_facts,
                     setup_django)

BENCH_DB = os.environ.get("BENCH_DATABASE_NAME", "billing_bench_surface")
PLATFORM_KEY = "bench-surface"
TARGET = 0.9
SIDES = ["native", "surface"]
PATHS = {"native": "/api/billing/account/", "surface": "/api/v1/credits/balance"}


def _set_up(threads: int) -> list[str]:
    """The platform and one member per client thread, each with credits and an API token."""
    from accounts.services import platform_create

    platform, _ = platform_create(platform_key=PLATFORM_KEY, name="Benchmark: surfaces")
    prefix = "sf"
    ensure_members(platform, prefix, threads, funds=Decimal("1234.56"), floor=Decimal("1000"))
    return member_keys(prefix, threads)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args()

    conninfo = setup_django(BENCH_DB)
    tokens = _set_up(args.threads)
    from django.db import connection

    version, sync_commit = server_facts()
    connection.close()
    print(f"GET {PATHS['surface']} vs GET {PATHS['native']}: {args.threads} connections, {args.seconds:g} s per "
          f"side, {args.rounds} rounds; gunicorn as `make run`")
    print(f"database {BENCH_DB!r} ({version}, synchronous_commit={sync_commit})")
    print(f"load average before: {load_average()} on {os.cpu_count()} CPUs\n")

    def work(side: str, n: int = 4000) -> list[list[Request]]:
        return [[Request("GET", PATHS[side], b"", headers={"Authorization": f"Token {tokens[t]}"})
                 for _ in range(n)] for t in range(args.threads)]

    with Server(conninfo, app="billing_service.wsgi:application") as server:  # the bodies of both sides agree
        ok = _agree(server.port, tokens[0])
    compare_sides(conninfo, SIDES, work, rounds=args.rounds, seconds=args.seconds, warmup=args.warmup,
                  target=TARGET)
    return 0 if ok else 1


def _agree(port: int, token: str) -> bool:
    """One body of each side: the surface's balance is the native one in credit units."""
    from django.conf import settings

    def get(path: str) -> dict:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Token {token}"})
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read(), parse_float=Decimal)

    native, surface = get(PATHS["native"]), get(PATHS["surface"])
    expected = Decimal(native["balance"]) / settings.BILLING_V1_CREDIT_UNIT
    ok = surface["success"] is True and surface["data"]["balance"] == expected
    print(f"bodies agree: native balance {native['balance']} = surface {surface['data']['balance']} credits of "
          f"{settings.BILLING_V1_CREDIT_UNIT}: {'OK' if ok else 'MISMATCH'}\n")
    return ok


if __name__ == "__main__":
    sys.exit(main())
