"""Transaction listing latency: GET /api/billing/transactions/ page 1 at 1,000,000 ledger rows vs 10,000.

Two members of one platform, one with 1,000,000 ledger rows and one with 10,000, are listed through the
whole Django stack in-process (DRF ``APIClient`` with their API tokens: middleware, token auth, tenant
resolution, filters, selector, serializer, JSON), for three cases:

- ``all``:   no filter
- ``type``:  ``?transaction_type=add``
- ``dates``: ``?from_date=2025-01-11&to_date=2025-01-20`` (a third of the rows, in the middle)

Requests for the two accounts are interleaved in the same run, so machine noise hits both alike. Prints
p50 and p90 per case and size, and the ratio 1M/10k of the p50s. Targets: ratio <= 1.5 and
p50 <= 50 ms at 1,000,000.

The rows are generated with set-based SQL (``INSERT ... SELECT generate_series``), not through the
service, but they are valid ledger rows: sequence 1..N without a gap, add / subtract / adjustment mixed,
``created_at`` spread over 30 days and non-decreasing along the sequence, ``balance_after`` the running sum,
nothing reserved; the account's balance, last_sequence, count_<type> and last_entry_at are set to match.
Generated data is kept and reused by the next run (checked by count); the table is analyzed.

Runs in its own database (``billing_bench_list`` on the configured server, created and migrated if
missing; ``BENCH_DATABASE_NAME`` overrides).

    .venv/bin/python bench/transactions_list.py [--requests 60] [--rounds 3] [--explain] [--verify-big]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_service.settings")

BENCH_DB = os.environ.get("BENCH_DATABASE_NAME", "billing_bench_list")
PLATFORM_KEY = "bench-list"
BIG, SMALL = 1_000_000, 10_000
BASE = datetime(2025, 1, 1, tzinfo=UTC)
DAYS = 30
URL = "/api/billing/transactions/"
CASES = {
    "all": {},
    "type": {"transaction_type": "add"},
    "dates": {"from_date": "2025-01-11", "to_date": "2025-01-20"},
}
TARGET_RATIO, TARGET_P50_MS = 1.5, 50.0


# --- a database of our own -------------------------------------------------------------------------


def setup_django() -> None:
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


# --- data --------------------------------------------------------------------------------------------

# Every 10 rows: one top-up (+10.00, paid 10.00), one adjustment (+0.25), eight usage debits (-1.00):
# +2.25 per 10 rows, and the running balance never drops below 7.00 - never negative.
GENERATE_SQL = """
INSERT INTO credits_ledger_entry
       (id, account_id, platform_id, sequence, transaction_type, status, balance_delta, reserved_delta,
        balance_after, reserved_after, payment_amount_usd, description, reference, metadata, actor_id,
        hold_id, refund_of_id, idempotency_key, request_hash, created_at)
SELECT gen_random_uuid(), %(account_id)s, %(platform_id)s, g, kind, 'completed', delta, 0,
       sum(delta) OVER (ORDER BY g ROWS UNBOUNDED PRECEDING), 0,
       CASE WHEN kind = 'add' THEN delta END,
       CASE kind WHEN 'add' THEN 'Top-up' WHEN 'adjustment' THEN 'Goodwill credit' ELSE 'AI usage' END,
       '', '{}'::jsonb, NULL, NULL, NULL, NULL, '',
       %(base)s::timestamptz + (g - 1) * (%(span)s::interval / %(n)s)
  FROM (
        SELECT g,
               CASE g %% 10 WHEN 1 THEN 'add' WHEN 6 THEN 'adjustment' ELSE 'subtract' END AS kind,
               CASE g %% 10 WHEN 1 THEN 10.00 WHEN 6 THEN 0.25 ELSE -1.00 END::numeric(20, 6) AS delta
          FROM generate_series(1, %(n)s::bigint) AS g
       ) AS s
 ORDER BY g
"""

SYNC_ACCOUNT_SQL = """
UPDATE credits_creditaccount AS a
   SET balance = t.balance, reserved = 0, last_sequence = t.n, last_entry_at = t.last_at,
       count_add = t.n_add, count_subtract = t.n_subtract, count_adjustment = t.n_adjustment,
       count_reserve = 0, count_release = 0, count_rollover = 0, count_refund = 0
  FROM (SELECT count(*) AS n, sum(balance_delta) AS balance, max(created_at) AS last_at,
               count(*) FILTER (WHERE transaction_type = 'add') AS n_add,
               count(*) FILTER (WHERE transaction_type = 'subtract') AS n_subtract,
               count(*) FILTER (WHERE transaction_type = 'adjustment') AS n_adjustment
          FROM credits_ledger_entry WHERE account_id = %(account_id)s) AS t
 WHERE a.id = %(account_id)s
"""


def ensure_member(platform, rows: int):  # noqa: ANN001, ANN201
    """A member whose account holds exactly ``rows`` generated ledger rows (reused if already there)."""
    from django.db import connection, transaction

    from accounts.services import api_token_issue, member_add
    from credits.models import CreditAccount, LedgerEntry
    from credits.partitions import partitions_ensure
    from credits.selectors import account_for

    attempt = 0
    while True:
        username = f"ledger-{rows}" + (f"-{attempt}" if attempt else "")
        membership, _ = member_add(platform=platform, username=username)
        token = api_token_issue(user=membership.user, name="bench")  # keys are shown once: one per run
        account = account_for(platform=platform, user=membership.user)
        present = LedgerEntry.objects.filter(account=account).count()
        if present == rows and account.last_sequence == rows:
            return membership, token, account, False
        if present == 0:
            break
        attempt += 1  # someone else's rows (append-only: cannot be removed): use a fresh member
    started = time.perf_counter()
    print(f"  generating {rows:,} ledger rows for {username} ...", end=" ", flush=True)
    partitions_ensure(since=BASE.date())  # the generated months (else their rows land in the default partition)
    with transaction.atomic(), connection.cursor() as cursor:
        CreditAccount.objects.select_for_update().filter(pk=account.pk).first()
        cursor.execute(GENERATE_SQL, {"account_id": account.id, "platform_id": platform.id, "n": rows,
                                      "base": BASE, "span": timedelta(days=DAYS)})
        cursor.execute(SYNC_ACCOUNT_SQL, {"account_id": account.id})
    print(f"{time.perf_counter() - started:.1f} s", flush=True)
    account.refresh_from_db()
    return membership, token, account, True


def expected_counts(account) -> dict[str, int]:  # noqa: ANN001
    from credits.models import LedgerEntry

    lo, hi = BASE + timedelta(days=10), BASE + timedelta(days=20)
    return {
        "all": account.last_sequence,
        "type": account.count_add,
        "dates": LedgerEntry.objects.filter(account=account, created_at__gte=lo, created_at__lt=hi).count(),
    }


# --- measuring ---------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60, help="per case, size and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=10, help="requests per case and size, discarded")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE every query of each case at 1M")
    parser.add_argument("--verify-big", action="store_true", help="also ledger_verify the 1M account (slow)")
    args = parser.parse_args()

    setup_django()

    from django.db import connection
    from rest_framework.test import APIClient

    from accounts.services import platform_create
    from credits.verification import ledger_verify

    print(f"Transaction listing: GET {URL} page 1, {BIG:,} vs {SMALL:,} ledger rows, in-process (APIClient)")
    platform, _ = platform_create(platform_key=PLATFORM_KEY, name="Benchmark: transaction listing")
    accounts = {}
    generated = False
    for rows in (BIG, SMALL):
        _, token, account, fresh = ensure_member(platform, rows)
        accounts[rows] = (token, account)
        generated |= fresh
    with connection.cursor() as cursor:
        if generated:
            cursor.execute("VACUUM (ANALYZE) credits_ledger_entry")
        else:
            cursor.execute("ANALYZE credits_ledger_entry")
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('credits_ledger_entry'))")
        size = cursor.fetchone()[0]
    print(f"database {BENCH_DB!r}: credits_ledger_entry {size} ({'generated now' if generated else 'reused'})")

    clients, expected = {}, {}
    for rows, (token, account) in accounts.items():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        clients[rows] = client
        expected[rows] = expected_counts(account)

    def get(rows: int, case: str) -> float:
        started = time.perf_counter()
        response = clients[rows].get(URL, CASES[case])
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise SystemExit(f"{case} at {rows}: HTTP {response.status_code} {response.content[:300]!r}")
        body = response.json()
        if body["count"] != expected[rows][case] or len(body["results"]) != 20:
            raise SystemExit(f"{case} at {rows}: count {body['count']} (expected {expected[rows][case]}), "
                             f"{len(body['results'])} results")
        return elapsed * 1000

    for rows in accounts:
        for case in CASES:
            for _ in range(args.warmup):
                get(rows, case)

    if args.explain:
        explain_cases(clients[BIG])

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    samples = {(rows, case): [] for rows in accounts for case in CASES}
    round_p50 = {key: [] for key in samples}
    for _ in range(args.rounds):
        this_round = {key: [] for key in samples}
        for i in range(args.requests):
            for case in CASES:
                # interleaved, first one size then the other, so both see the same noise and neither always
                # runs right after the other
                for rows in (BIG, SMALL) if i % 2 == 0 else (SMALL, BIG):
                    this_round[(rows, case)].append(get(rows, case))
        for key, values in this_round.items():
            samples[key].extend(values)
            round_p50[key].append(statistics.median(values))
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()

    header = (f"{'case':<6} {'rows':>10} {'p50 ms':>7} {'p90 ms':>7}   p50 per round (ms)   "
              f"[{args.rounds} x {args.requests} requests]")
    print(header)
    print("-" * len(header))
    p50 = {}
    for case in CASES:
        for rows in accounts:
            key = (rows, case)
            p50[key] = statistics.median(samples[key])
            print(f"{case:<6} {rows:>10,} {p50[key]:>7.2f} {percentile(samples[key], 0.9):>7.2f}   "
                  + " ".join(f"{x:6.2f}" for x in round_p50[key]))
    print()

    started = time.perf_counter()
    check = ledger_verify(account=accounts[SMALL][1])
    print(f"ledger_verify(10k account): ok={check.ok} ({time.perf_counter() - started:.2f} s)"
          + ("" if check.ok else f" problems={check.problems[:5]}"))
    if args.verify_big:
        started = time.perf_counter()
        check_big = ledger_verify(account=accounts[BIG][1])
        print(f"ledger_verify(1M account): ok={check_big.ok} ({time.perf_counter() - started:.2f} s)"
              + ("" if check_big.ok else f" problems={check_big.problems[:5]}"))
    print()

    met = True
    for case in CASES:
        ratio = p50[(BIG, case)] / p50[(SMALL, case)]
        ok = ratio <= TARGET_RATIO and p50[(BIG, case)] <= TARGET_P50_MS
        met &= ok
        print(f"{case:<6} p50 1M {p50[(BIG, case)]:6.2f} ms  10k {p50[(SMALL, case)]:6.2f} ms  "
              f"ratio 1M/10k = {ratio:.2f}  (targets ratio <= {TARGET_RATIO}, p50 <= {TARGET_P50_MS:g} ms: "
              f"{'MET' if ok else 'MISSED'})")
    return 0 if met and check.ok else 1


def explain_cases(client) -> None:  # noqa: ANN001
    """Every query one request of each case issues at 1M rows, with its EXPLAIN ANALYZE."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for case, params in CASES.items():
        with CaptureQueriesContext(connection) as captured:
            client.get(URL, params)
        print(f"\n=== {case}: {len(captured.captured_queries)} queries")
        for query in captured.captured_queries:
            sql = query["sql"]
            print(f"--- {query['time']} s: {sql}")
            if sql.lstrip().upper().startswith("SELECT") and "credits_ledger_entry" in sql:
                with connection.cursor() as cursor:
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS, TIMING) " + sql)
                    for (line,) in cursor.fetchall():
                        print("    " + line)
    print()


if __name__ == "__main__":
    sys.exit(main())
