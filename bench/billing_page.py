"""The billing page over HTTP: GET /billing/ vs the GET /api/billing/account/ it shows, same server, same session.

The page's first response is its top, rendered from the native views (``payments/surfaces/billing_page.py``): the
account, the subscription and the seat, three native calls and a template; the sections below it (usage, history,
plans, card, orders: a native call each) are fetched by the page after its first paint, and are not counted here.
The baseline is the one call that shows the credits. A real gunicorn server as ``make run`` serves both
(``bench/_common.Server``); each client thread is a member of its own, signed in by a session cookie (made here
as a sign-in link would), with a little history. Two sides, alternated over several rounds:

- ``account``: GET /api/billing/account/ (session authentication)
- ``page``:    GET /billing/ (the page's first response)

Target (issue 13): page/account >= 0.5 (medians of req/s).

Own database: ``billing_bench_page`` (``BENCH_DATABASE_NAME`` overrides), created and migrated if missing.

    .venv/bin/python bench/billing_page.py [--threads 8] [--seconds 6] [--rounds 4]
"""

from __future__ import annotations

import argparse
import os
import sys
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Request, compare_sides, ensure_members, load_average, server_facts, setup_django

BENCH_DB = os.environ.get("BENCH_DATABASE_NAME", "billing_bench_page")
PLATFORM_KEY = "bench-page"
TARGET = 0.5
SIDES = ["account", "page"]
PATHS = {"account": "/api/billing/account/", "page": "/billing/"}


def _sessions(threads: int) -> list[str]:
    """One member per thread, each with credits and a session as the billing page's sign-in makes it."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    from accounts.services import platform_create
    from payments.surfaces.billing_page import SESSION_PLATFORM

    platform, _ = platform_create(platform_key=PLATFORM_KEY, name="Benchmark: the billing page")
    ensure_members(platform, "bp", threads, funds=Decimal("50"), floor=Decimal("10"))
    keys = []
    for user in get_user_model().objects.filter(username__startswith="bp-").order_by("username")[:threads]:
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session[SESSION_PLATFORM] = PLATFORM_KEY
        session.save()
        keys.append(session.session_key)
    return keys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args()

    conninfo = setup_django(BENCH_DB)
    sessions = _sessions(args.threads)
    from django.db import connection

    version, sync_commit = server_facts()
    connection.close()
    print(f"GET {PATHS['page']} vs GET {PATHS['account']}: {args.threads} connections (a member and session each), "
          f"{args.seconds:g} s per side, {args.rounds} rounds; gunicorn as `make run`")
    print(f"database {BENCH_DB!r} ({version}, synchronous_commit={sync_commit})")
    print(f"load average before: {load_average()} on {os.cpu_count()} CPUs\n")

    def work(side: str, n: int = 3000) -> list[list[Request]]:
        return [[Request("GET", PATHS[side], b"", headers={"Cookie": f"sessionid={sessions[t]}"})
                 for _ in range(n)] for t in range(args.threads)]

    compare_sides(conninfo, SIDES, work, rounds=args.rounds, seconds=args.seconds, warmup=args.warmup,
                  target=TARGET)
    return 0


if __name__ == "__main__":
    sys.exit(main())
