"""verify_ledger at scale: the whole ledger checked at 1,000,000 and 10,000,000 rows, against a baseline.

For each size, a platform of its own holds ``size / rows-per-account`` members (default 1,000 rows each: 1,000 accounts
at 1M, 10,000 at 10M), their ledgers generated with set-based SQL (``INSERT ... SELECT generate_series``: valid
rows, sequence 1..N without a gap, add / adjustment / subtract mixed, ``balance_after`` the running sum per account,
``created_at`` non-decreasing; each account's balance and counters set to match). Then, alternated:

- ``verify_ledger``: ``manage.py verify_ledger --platform KEY`` (accounts in batches, their rows in keyset-paged
  chunks through the ORM, the fold of ``credits.selectors``, holds and usage summed per batch);
- ``baseline``: raw psycopg reading the same rows in one server-side cursor (``ORDER BY account_id, sequence``,
  20,000 rows a fetch) into the same fold: the reading and folding verify_ledger cannot avoid.

Prints each side's time, rows per second and the ratio verify_ledger / baseline. Generated data is kept and reused
(checked by count). Runs in its own database (``billing_bench_verify``).

    .venv/bin/python bench/verify_ledger.py [--sizes 1000000,10000000] [--rows-per-account 1000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from io import StringIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_service.settings")

from _common import ensure_members, load_average, server_facts, setup_django  # noqa: E402

BENCH_DB = os.environ.get("BENCH_DATABASE_NAME", "billing_bench_verify")

GENERATE_SQL = """
INSERT INTO credits_ledger_entry
       (id, account_id, platform_id, sequence, transaction_type, status, balance_delta, reserved_delta,
        balance_after, reserved_after, payment_amount_usd, description, reference, metadata, actor_id,
        hold_id, refund_of_id, idempotency_key, request_hash, created_at)
SELECT gen_random_uuid(), a.id, a.platform_id, g, kind, 'completed', delta, 0,
       sum(delta) OVER (PARTITION BY a.id ORDER BY g ROWS UNBOUNDED PRECEDING), 0,
       CASE WHEN kind = 'add' THEN delta END,
       CASE kind WHEN 'add' THEN 'Top-up' WHEN 'adjustment' THEN 'Goodwill credit' ELSE 'AI usage' END,
       '', '{}'::jsonb, NULL, NULL, NULL, NULL, '', now() - interval '30 days' + g * interval '1 second'
  FROM credits_creditaccount a
 CROSS JOIN LATERAL (
        SELECT g,
               CASE g %% 10 WHEN 1 THEN 'add' WHEN 6 THEN 'adjustment' ELSE 'subtract' END AS kind,
               CASE g %% 10 WHEN 1 THEN 10.00 WHEN 6 THEN 0.25 ELSE -1.00 END::numeric(20, 6) AS delta
          FROM generate_series(1, %(rows)s::bigint) AS g
       ) AS s
 WHERE a.id = ANY(%(accounts)s)
"""

SYNC_SQL = """
UPDATE credits_creditaccount AS a
   SET balance = t.balance, reserved = 0, last_sequence = t.n, last_entry_at = t.last_at,
       count_add = t.n_add, count_subtract = t.n_subtract, count_adjustment = t.n_adjustment
  FROM (SELECT account_id, count(*) AS n, sum(balance_delta) AS balance, max(created_at) AS last_at,
               count(*) FILTER (WHERE transaction_type = 'add') AS n_add,
               count(*) FILTER (WHERE transaction_type = 'subtract') AS n_subtract,
               count(*) FILTER (WHERE transaction_type = 'adjustment') AS n_adjustment
          FROM credits_ledger_entry WHERE account_id = ANY(%(accounts)s) GROUP BY account_id) AS t
 WHERE a.id = t.account_id
"""


def ensure_ledger(size: int, per_account: int):  # noqa: ANN201
    """The platform ``verify-<size>`` whose members' ledgers hold ``size`` rows in all."""
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from django.db import connection, transaction

    from accounts.services import platform_create
    from credits.models import LedgerEntry
    from credits.partitions import partitions_ensure

    key = f"verify-{size}"
    platform, _ = platform_create(platform_key=key, name=f"Benchmark: verify_ledger at {size:,} rows")
    accounts = ensure_members(platform, f"v{size}", size // per_account, funds=Decimal(0), floor=Decimal(0))
    present = LedgerEntry.objects.filter(platform=platform).count()
    if present == size:
        return key
    if present:
        raise SystemExit(f"{key} holds {present} rows, not {size}: drop {BENCH_DB} and run again")
    started = time.perf_counter()
    partitions_ensure(since=(datetime.now(UTC) - timedelta(days=31)).date())  # rows go back 30 days
    batch = 200
    for i in range(0, len(accounts), batch):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(GENERATE_SQL, {"accounts": accounts[i:i + batch], "rows": per_account})
            cursor.execute(SYNC_SQL, {"accounts": accounts[i:i + batch]})
        print(f"\r  generating {key}: {min(i + batch, len(accounts)) * per_account:,} rows "
              f"({time.perf_counter() - started:.0f} s)", end="", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE credits_ledger_entry")
        cursor.execute("ANALYZE credits_creditaccount")
    print()
    return key


def run_ours(key: str) -> tuple[float, str]:
    from django.core.management import call_command

    out = StringIO()
    started = time.perf_counter()
    call_command("verify_ledger", "--platform", key, "--progress", "off", stdout=out, stderr=sys.stderr)
    return time.perf_counter() - started, out.getvalue().strip()


def run_baseline(conninfo: dict, key: str) -> tuple[float, int]:
    import psycopg

    from credits.verification import _LedgerFold

    started = time.perf_counter()
    rows = 0
    with psycopg.connect(**conninfo) as conn:
        with conn.cursor(name="verify_baseline") as cursor:
            cursor.itersize = 20_000
            cursor.execute(
                "SELECT l.account_id, l.sequence, l.transaction_type, l.balance_delta, l.reserved_delta, "
                "l.balance_after, l.reserved_after, l.created_at FROM credits_ledger_entry l "
                "JOIN credits_creditaccount a ON a.id = l.account_id JOIN accounts_platform p ON p.id = a.platform_id "
                "WHERE p.platform_key = %s ORDER BY l.account_id, l.sequence", [key])
            folds: dict = {}
            for row in cursor:
                fold = folds.get(row[0])
                if fold is None:
                    fold = folds[row[0]] = _LedgerFold()
                fold.add(row)
                rows += 1
    problems = sum(len(f.problems) for f in folds.values())
    if problems:
        raise SystemExit(f"baseline found {problems} problems")
    return time.perf_counter() - started, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--rows-per-account", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    conninfo = setup_django(BENCH_DB)
    version, sync_commit = server_facts()
    print(f"verify_ledger vs a raw psycopg read into the same fold ({version}, synchronous_commit={sync_commit}, "
          f"{os.cpu_count()} CPUs, load average before: {load_average()})")
    sizes = [int(s) for s in args.sizes.split(",")]
    keys = {size: ensure_ledger(size, args.rows_per_account) for size in sizes}
    print(f"{'rows':>11}  {'round':>5}  {'verify_ledger':>14}  {'baseline':>9}  {'ratio':>6}  report")
    for size in sizes:
        for n in range(1, args.rounds + 1):
            ours, report = run_ours(keys[size])
            base, rows = run_baseline(conninfo, keys[size])
            assert rows == size, (rows, size)
            print(f"{size:>11,}  {n:>5}  {ours:>12.1f} s  {base:>7.1f} s  {ours / base:>6.2f}  {report} "
                  f"({size / ours:,.0f} rows/s vs {size / base:,.0f})", flush=True)
    print(f"load average after: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
