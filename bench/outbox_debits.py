"""Outbox throughput: balance alerts recorded inside usage debits vs the same debits without an alert rule.

Each of N threads (default 8) owns an account and repeats one cycle: a grant of 10 credits, then a usage event of
10 credits through ``credits.services.usage_record`` (the one-statement usage path: its debit, usage event and
rollup in one statement). Two sides, alternated over several rounds, on their own accounts:

- ``plain``: accounts without an alert threshold (the statement's alert CTE writes nothing);
- ``alert``: accounts with a threshold of 5: every debit takes ``available`` from 10 to 0, so the same statement
  also records two outbox events (``balance.low`` and ``balance.depleted``) and, after commit, sends the delivery
  task to the broker (a real Redis started here, as in production; no worker runs, so the events just wait).

Prints cycles/s per side per round, the medians, events recorded per second, and the ratio alert/plain (target of
issue 11: >= 0.9). Then checks that the outbox holds exactly two events per alert-side debit and that the
ledger of every account verifies.

Own database: ``billing_bench_outbox`` (``BENCH_DATABASE_NAME`` overrides), created and migrated if missing.

    .venv/bin/python bench/outbox_debits.py [--threads 8] [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

BENCH_DB = os.environ.get("BENCH_DATABASE_NAME", "billing_bench_outbox")
TARGET = 0.9
CYCLE = Decimal(10)
THRESHOLD = Decimal(5)


def _start_redis(workdir: str) -> tuple[subprocess.Popen, str]:
    from tests.payments.local_servers import start_redis

    return start_redis(workdir)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="bench-outbox-")
    redis, broker = _start_redis(workdir)
    os.environ["CELERY_BROKER_URL"] = broker  # before Django and Celery read their settings
    try:
        return _run(args)
    finally:
        redis.terminate()
        redis.wait(10)


def _run(args: argparse.Namespace) -> int:
    from _common import load_average, server_facts, setup_django

    setup_django(BENCH_DB)
    from django.db import connection, connections

    from accounts.models import Platform
    from accounts.outbound_models import OutboundEvent
    from accounts.services import member_add, platform_create
    from credits.selectors import account_for
    from credits.verification import ledger_verify
    from credits.services import UsageInput, alert_threshold_set, credits_grant, usage_record

    version, sync_commit = server_facts()
    run = uuid.uuid4().hex[:8]
    platform, _ = platform_create(platform_key="bench-outbox", name="Benchmark: outbox inside usage debits")
    sides: dict[str, list] = {}
    for side in ("plain", "alert"):
        accounts = []
        for i in range(args.threads):
            membership, _ = member_add(platform=platform, username=f"ob{run}-{side}-{i}")
            account = account_for(platform=platform, user=membership.user)
            if side == "alert":
                alert_threshold_set(platform=platform, threshold=THRESHOLD, account_id=account.pk)
            accounts.append(account.pk)
        sides[side] = accounts
    platform = Platform.objects.get(pk=platform.pk)
    events_before = OutboundEvent.objects.filter(platform=platform).count()
    connection.close()

    def worker(account_id, stop: threading.Event, counts: list, index: int) -> None:  # noqa: ANN001
        n = 0
        try:
            while not stop.is_set():
                credits_grant(account_id=account_id, amount=CYCLE, description="bench cycle")
                usage_record(platform=platform, usage=UsageInput(
                    account_id=account_id, request_id=f"{run}-{uuid.uuid4().hex}", endpoint="/bench",
                    amount=CYCLE))
                n += 1
        finally:
            counts[index] = n
            connections.close_all()

    def measure(side: str, seconds: float) -> float:
        stop, counts = threading.Event(), [0] * args.threads
        threads = [threading.Thread(target=worker, args=(a, stop, counts, i)) for i, a in enumerate(sides[side])]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        stop.set()
        for thread in threads:
            thread.join()
        return sum(counts) / (time.perf_counter() - started)

    print(f"PostgreSQL {version}, synchronous_commit={sync_commit}, {args.threads} threads, load {load_average()}")
    measure("plain", 1.0)
    measure("alert", 1.0)  # warm-up
    results: dict[str, list[float]] = {"plain": [], "alert": []}
    for rnd in range(1, args.rounds + 1):
        for side in ("plain", "alert") if rnd % 2 else ("alert", "plain"):
            rate = measure(side, args.seconds)
            results[side].append(rate)
            print(f"round {rnd} {side:5s} {rate:8.1f} debits/s")
    plain, alert = statistics.median(results["plain"]), statistics.median(results["alert"])
    print(f"median plain {plain:.1f} debits/s; alert {alert:.1f} debits/s = {2 * alert:.1f} events recorded/s")
    print(f"ratio alert/plain {alert / plain:.2f} (target >= {TARGET})")

    from credits.models import LedgerEntry

    debits = LedgerEntry.objects.filter(account_id__in=sides["alert"], transaction_type="subtract").count()
    events = OutboundEvent.objects.filter(platform=platform).count() - events_before
    plain_events = OutboundEvent.objects.filter(account_id__in=sides["plain"]).count()
    from credits.models import CreditAccount

    problems = [p for a in CreditAccount.objects.filter(pk__in=sides["plain"] + sides["alert"])
                for p in ledger_verify(account=a).problems]
    print(f"check: {debits} alert-side debits, {events} events (expected {2 * debits}), plain-side events "
          f"{plain_events}, ledger problems {len(problems)}")
    return 0 if events == 2 * debits and plain_events == 0 and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
