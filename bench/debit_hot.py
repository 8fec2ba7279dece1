"""Hot-account debit throughput: ``credits.services.credits_debit`` vs raw psycopg doing the same SQL.

N threads (default 16) debit ONE account as fast as they can for a fixed time, each thread on its own
database connection. Two sides, alternated over several rounds in the same run, on the same database:

- project:  ``credits_debit(account_id=..., amount=...)`` through Django (its ORM connection per thread).
- baseline: psycopg 3, one autocommit connection per thread, the minimal lock-free single statement: a CTE
            whose conditional ``UPDATE credits_creditaccount ... WHERE balance - reserved >= amount
            RETURNING ...`` feeds the ``INSERT`` of a complete, valid ledger row (sequence, balance_after,
            reserved_after, created_at, type counter, last_entry_at).

Prints debits/s per side per round, the medians, and ``ratio project/baseline`` (target >= 0.8), then
checks the account with ``credits.selectors.ledger_verify``.

Runs in its own database (``billing_bench_debit`` on the configured server, created and migrated if
missing; ``BENCH_DATABASE_NAME`` overrides) and on a fresh account every run, so it never touches other
data and the verification reads only this run's rows.

    .venv/bin/python bench/debit_hot.py [--threads 16] [--seconds 6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_service.settings")

BENCH_DB = os.environ.get("BENCH_DATABASE_NAME", "billing_bench_debit")
AMOUNT = Decimal("0.01")
FUNDS = Decimal("1000000000")  # a billion credits: never runs out at 0.01 a debit
DESCRIPTION = "bench debit"


# --- a database of our own -------------------------------------------------------------------------


def setup_django() -> dict:
    """Points Django at the bench database (created on the same server if missing), migrates it."""
    import django
    import psycopg
    from django.conf import settings
    from django.core.management import call_command
    from psycopg import sql

    db = settings.DATABASES["default"]  # loading settings starts the embedded server if needed
    params = {"host": db["HOST"] or None, "port": db["PORT"] or None, "user": db["USER"] or None,
              "password": db["PASSWORD"] or None}
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]).fetchone():
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))
            except psycopg.errors.DuplicateDatabase:
                pass
    db["NAME"] = BENCH_DB
    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    return {**params, "dbname": BENCH_DB}


# --- the two sides -----------------------------------------------------------------------------------

BASELINE_SQL = """
WITH acct AS (
    UPDATE credits_creditaccount
       SET balance = balance - %(amount)s,
           last_sequence = last_sequence + 1,
           count_subtract = count_subtract + 1,
           last_entry_at = GREATEST(clock_timestamp(), last_entry_at)
     WHERE id = %(account_id)s AND balance - reserved >= %(amount)s
 RETURNING id, platform_id, balance, reserved, last_sequence, last_entry_at
)
INSERT INTO credits_ledger_entry
       (id, account_id, platform_id, sequence, transaction_type, status, balance_delta, reserved_delta,
        balance_after, reserved_after, description, reference, metadata, request_hash, created_at)
SELECT %(id)s, id, platform_id, last_sequence, 'subtract', 'completed', -%(amount)s, 0,
       balance, reserved, %(description)s, '', '{}'::jsonb, '', last_entry_at
  FROM acct
RETURNING sequence, balance_after
"""


class Side:
    name = ""

    def __init__(self, account_id: uuid.UUID, conninfo: dict) -> None:
        self.account_id = account_id
        self.conninfo = conninfo

    def open(self) -> object: ...
    def debit(self, handle: object) -> bool: ...
    def close(self, handle: object) -> None: ...


class ProjectSide(Side):
    name = "project"

    def open(self) -> object:
        from django.db import connection

        connection.ensure_connection()
        return None

    def debit(self, handle: object) -> bool:
        from credits.services import credits_debit

        credits_debit(account_id=self.account_id, amount=AMOUNT, description=DESCRIPTION)
        return True

    def close(self, handle: object) -> None:
        from django.db import connection

        connection.close()


class BaselineSide(Side):
    name = "baseline"

    def open(self) -> object:
        import psycopg

        return psycopg.connect(autocommit=True, **self.conninfo)

    def debit(self, conn) -> bool:  # noqa: ANN001
        row = conn.execute(
            BASELINE_SQL,
            {"amount": AMOUNT, "account_id": self.account_id, "id": uuid.uuid4(), "description": DESCRIPTION},
        ).fetchone()
        if row is None:
            raise RuntimeError("baseline debit refused: account out of credits?")
        return True

    def close(self, conn) -> None:  # noqa: ANN001
        if conn is not None:
            conn.close()


def run_side(side: Side, *, threads: int, seconds: float) -> dict:
    """All threads connect, line up on a barrier, then debit until the deadline."""
    state: dict = {}
    counts = [0] * threads
    latencies: list[list[float]] = [[] for _ in range(threads)]
    ends = [0.0] * threads
    errors: list[BaseException] = []

    def go() -> None:
        state["start"] = time.perf_counter()

    barrier = threading.Barrier(threads, action=go)

    def worker(i: int) -> None:
        handle = None
        try:
            handle = side.open()
            barrier.wait()
            deadline = state["start"] + seconds
            lat = latencies[i]
            n = 0
            clock = time.perf_counter
            while True:
                t0 = clock()
                if t0 >= deadline:
                    break
                side.debit(handle)
                lat.append(clock() - t0)
                n += 1
            counts[i] = n
            ends[i] = clock()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            barrier.abort()
        finally:
            side.close(handle)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    elapsed = max(ends) - state["start"]
    total = sum(counts)
    lat = sorted(x for per in latencies for x in per)
    return {
        "side": side.name,
        "debits": total,
        "elapsed": elapsed,
        "rate": total / elapsed,
        "p50_ms": lat[len(lat) // 2] * 1000,
        "p99_ms": lat[int(len(lat) * 0.99)] * 1000,
        "spread": (min(counts), max(counts)),
    }


# --- main --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=6.0, help="per side per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds per side before round 1 (discarded)")
    args = parser.parse_args()

    conninfo = setup_django()

    from django.db import connection

    from accounts.services import member_add, platform_create
    from credits.models import LedgerEntry
    from credits.selectors import account_for, ledger_verify
    from credits.services import credits_grant

    platform, _ = platform_create(platform_key="bench-debit", name="Benchmark: hot-account debit")
    membership, _ = member_add(platform=platform, username=f"hot-{uuid.uuid4().hex[:12]}")
    account = account_for(platform=platform, user=membership.user)
    credits_grant(account_id=account.id, amount=FUNDS, description="bench funds")
    with connection.cursor() as cur:
        cur.execute("SHOW synchronous_commit")
        sync_commit = cur.fetchone()[0]
        cur.execute("SELECT version()")
        version = cur.fetchone()[0].split(" on ")[0]
    connection.close()  # the main thread's connection stays out of the way while the workers run

    print(f"Hot-account debit: {args.threads} threads on ONE account, {args.seconds:g} s per side, "
          f"{args.rounds} rounds (alternating order)")
    print(f"database {BENCH_DB!r} ({version}, synchronous_commit={sync_commit}); account {account.id}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print()

    sides = {"project": ProjectSide(account.id, conninfo), "baseline": BaselineSide(account.id, conninfo)}
    if args.warmup > 0:
        for side in sides.values():
            run_side(side, threads=args.threads, seconds=args.warmup)

    results: dict[str, list[dict]] = {"project": [], "baseline": []}
    header = f"{'round':>5}  {'side':<9} {'debits':>7} {'secs':>6} {'debits/s':>9} {'p50 ms':>7} {'p99 ms':>7}"
    print(header)
    print("-" * len(header))
    for r in range(args.rounds):
        order = ("project", "baseline") if r % 2 == 0 else ("baseline", "project")
        for name in order:
            res = run_side(sides[name], threads=args.threads, seconds=args.seconds)
            results[name].append(res)
            print(f"{r + 1:>5}  {name:<9} {res['debits']:>7} {res['elapsed']:>6.2f} {res['rate']:>9.0f} "
                  f"{res['p50_ms']:>7.2f} {res['p99_ms']:>7.2f}")
    print()

    med = {name: statistics.median(x["rate"] for x in rs) for name, rs in results.items()}
    per_round = [p["rate"] / b["rate"] for p, b in zip(results["project"], results["baseline"], strict=True)]
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"per-round ratios project/baseline: {', '.join(f'{x:.2f}' for x in per_round)}")

    check = ledger_verify(account=account)
    rows = LedgerEntry.objects.filter(account=account).count()
    expected = 1 + sum(x["debits"] for rs in results.values() for x in rs)
    expected_all = rows  # warm-up debits are real rows too
    print(f"ledger_verify({account.id}): ok={check.ok} rows={rows} last_sequence={account.last_sequence} "
          f"balance={account.balance}" + ("" if check.ok else f" problems={check.problems[:5]}"))
    measured_ok = account.last_sequence == expected_all and expected <= rows
    expected_balance = FUNDS - AMOUNT * (rows - 1)
    print(f"balance check: funds - 0.01 x {rows - 1} debits = {expected_balance} "
          f"({'matches' if account.balance == expected_balance and measured_ok else 'MISMATCH'})")
    print()
    print(f"project  (credits_debit)      median {med['project']:.0f} debits/s")
    print(f"baseline (raw psycopg CTE)    median {med['baseline']:.0f} debits/s")
    ratio = med["project"] / med["baseline"]
    print(f"ratio project/baseline = {ratio:.2f}  (target >= 0.80: {'MET' if ratio >= 0.8 else 'MISSED'})")
    return 0 if check.ok else 1


if __name__ == "__main__":
    sys.exit(main())
