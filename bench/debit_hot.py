"""Hot-account debit throughput: ``credits.services.credits_debit`` vs raw psycopg doing the same SQL.

N threads (default 16) debit ONE account as fast as they can for a fixed time, each thread on its own
database connection. Two sides, alternated over several rounds in the same run, on the same database:

- project:  ``credits_debit(account_id=..., amount=...)`` through Django (its ORM connection per thread).
- baseline: psycopg 3, one autocommit connection per thread, the minimal lock-free single statement: a CTE
            whose conditional ``UPDATE credits_creditaccount ... WHERE balance - reserved >= amount
            RETURNING ...`` feeds the ``INSERT`` of a complete, valid ledger row (sequence, balance_after,
            reserved_after, created_at, type counter, last_entry_at).

Prints debits/s per side per round, the medians, and ``ratio project/baseline`` (target >= 0.8), then
checks the account with ``credits.verification.ledger_verify``.

Runs in its own database (``billing_bench_debit`` on the configured server, created and migrated if
missing; ``BENCH_DATABASE_NAME`` overrides) and on a fresh account every run, so it never touches other
data and the verification reads only this run's rows.

Besides throughput it reports CPU per debit: this process (client: Python, Django, psycopg) and, when the
server runs on this machine, the PostgreSQL backends serving the threads (from /proc). With two cores
shared by both, CPU per debit is what bounds throughput, and it is far less noisy than debits/s.

(The ``--proposed`` side of an earlier session is gone: the ledger's statements are prepared since.)

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
    def backend_pid(self, handle: object) -> int: ...


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

    def backend_pid(self, handle: object) -> int:
        from django.db import connection

        return connection.connection.info.backend_pid


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

    def backend_pid(self, conn) -> int:  # noqa: ANN001
        return conn.info.backend_pid


def backend_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) a local PostgreSQL backend has used; None if it is not local."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_side(side: Side, *, threads: int, seconds: float) -> dict:
    """All threads connect, line up on a barrier, then debit until the deadline."""
    state: dict = {}
    counts = [0] * threads
    latencies: list[list[float]] = [[] for _ in range(threads)]
    ends = [0.0] * threads
    errors: list[BaseException] = []

    pids: list[int] = [0] * threads
    server_cpu: list[float | None] = [None] * threads

    def go() -> None:
        state["client_cpu"] = time.process_time()
        state["start"] = time.perf_counter()

    barrier = threading.Barrier(threads, action=go)

    def worker(i: int) -> None:
        handle = None
        try:
            handle = side.open()
            pids[i] = side.backend_pid(handle)
            before = backend_cpu(pids[i])
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
            after = backend_cpu(pids[i])
            if before is not None and after is not None:
                server_cpu[i] = after - before
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
    client_cpu = time.process_time() - state.get("client_cpu", 0.0)
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
        "client_us": client_cpu / total * 1e6,
        "server_us": (sum(server_cpu) / total * 1e6) if None not in server_cpu else float("nan"),
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
    from credits.selectors import account_for
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

    names = ["project", "baseline"]
    sides = {"project": ProjectSide(account.id, conninfo), "baseline": BaselineSide(account.id, conninfo)}

    print(f"Hot-account debit: {args.threads} threads on ONE account, {args.seconds:g} s per side, "
          f"{args.rounds} rounds (side order alternates)")
    print(f"database {BENCH_DB!r} ({version}, synchronous_commit={sync_commit}); account {account.id}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print()

    written = 0
    if args.warmup > 0:
        for side in sides.values():
            written += run_side(side, threads=args.threads, seconds=args.warmup)["debits"]

    results: dict[str, list[dict]] = {name: [] for name in names}
    header = (f"{'round':>5}  {'side':<9} {'debits':>7} {'secs':>6} {'debits/s':>9} {'p50 ms':>7} {'p99 ms':>7}"
              f"  {'client CPU/debit':>16} {'server CPU/debit':>16}")
    print(header)
    print("-" * len(header))
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            res = run_side(sides[name], threads=args.threads, seconds=args.seconds)
            results[name].append(res)
            written += res["debits"]
            print(f"{r + 1:>5}  {name:<9} {res['debits']:>7} {res['elapsed']:>6.2f} {res['rate']:>9.0f} "
                  f"{res['p50_ms']:>7.2f} {res['p99_ms']:>7.2f}  {res['client_us']:>13.0f} us "
                  f"{res['server_us']:>13.0f} us", flush=True)
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    ok = _verify(account, written)
    _summary(results)
    return 0 if ok else 1


def _verify(account: object, written: int) -> bool:
    """``ledger_verify``, and rows = 1 grant + every debit counted, balance = funds - 0.01 x debits."""
    from credits.models import LedgerEntry
    from credits.verification import ledger_verify

    started = time.perf_counter()
    check = ledger_verify(account=account)
    rows = LedgerEntry.objects.filter(account=account).count()
    expected_balance = FUNDS - AMOUNT * written
    consistent = rows == written + 1 and account.last_sequence == rows and account.balance == expected_balance
    print(f"ledger_verify: ok={check.ok} ({time.perf_counter() - started:.1f} s)"
          + ("" if check.ok else f" problems={check.problems[:5]}"))
    print(f"rows {rows} = 1 grant + {written} debits, last_sequence {account.last_sequence}, "
          f"balance {account.balance} = {FUNDS} - 0.01 x {written}: {'consistent' if consistent else 'MISMATCH'}")
    print()
    return check.ok and consistent


def _summary(results: dict[str, list[dict]]) -> None:
    def med(name: str, key: str) -> float:
        return statistics.median(x[key] for x in results[name])

    labels = {"project": "credits_debit", "baseline": "raw psycopg CTE"}
    for name, label in labels.items():
        print(f"{name:<9} ({label:<23}) median {med(name, 'rate'):6.0f} debits/s, "
              f"CPU/debit client {med(name, 'client_us'):4.0f} us + server {med(name, 'server_us'):4.0f} us")
    per_round = [p["rate"] / b["rate"] for p, b in zip(results["project"], results["baseline"], strict=True)]
    print(f"project/baseline per round: {', '.join(f'{x:.2f}' for x in per_round)} "
          f"(median {statistics.median(per_round):.2f})")
    ratio = med("project", "rate") / med("baseline", "rate")
    print(f"ratio project/baseline = {ratio:.2f}  (target >= 0.80: {'MET' if ratio >= 0.8 else 'MISSED'})")


if __name__ == "__main__":
    sys.exit(main())
