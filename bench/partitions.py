"""History partitioned by month: the service's reads at 1,000,000 and 10,000,000 ledger rows, against the same
reads of the same data in plain (unpartitioned) tables.

Each size has a pair of databases of its own, holding the same generated data:

- ``billing_bench_part_<size>``: at migration head: the ledger (``credits_ledger_entry``) and the usage events
  (``credits_usageevent``) partitioned by UTC month (credits 0013), months from January 2026 (created first
  with ``credits.partitions.partitions_ensure(since=2026-01-01)``) through three ahead, and the default
  partition;
- ``billing_bench_flat_<size>``: migrated, then taken back to ``credits 0012`` (the same tables, plain, with
  their unique constraints and foreign keys): the baseline.

(``<size>``: ``1m``, ``10m``. A pair per size, so that each table holds exactly the rows it is measured at.)

The data, set-based (``INSERT ... SELECT`` over ``generate_series``, in slices of the sequence, ordered by
``created_at``: rows land in time order, as the service writes them): ``size / rows-per-account`` members of
one platform (default 1,000 rows each: 1,000 accounts at 1M, 10,000 at 10M), each with a ledger spread over
the 12 months of 2026 (``created_at`` increasing along ``sequence``) in a cycle of ten rows: a top-up
(``add``, keyed ``order:<seq>``), a grant (``add``), a check-in (keyed), three adjustments (+/-) and four
usage debits (``subtract``, keyed ``usage:<request_id>`` as ``call_key`` keys them); ``balance_after`` the
running sum. One usage event per usage debit (``request_id`` unique per account, ``recorded_at`` =
``occurred_at`` = the row's ``created_at``, ``ledger_entry_id`` its row); the usage rollups summed from the
events; each account's balance, ``last_sequence``, counters and ``last_entry_at`` set to match. Every id is
derived from (member, sequence) (``md5(...)::uuid``): both databases of a size hold the very same rows
(checked every run on 20 accounts). Loading runs with ``session_replication_role = replica`` (no triggers: the
usage events' reference check would probe the ledger row by row); in the partitioned database each statement
then claims its rows' keys in ``credits_ledger_key`` / ``credits_usage_key`` itself, as the statement triggers
would have. Then the tables' indexes are rebuilt (``REINDEX``: inserting in time order across thousands of
accounts leaves them about half empty; rebuilt, the four databases fit in ~14 GB) and ``VACUUM (ANALYZE)``.
Generated data is kept and reused when its counts match (a database of this script's found half-loaded is
dropped and loaded again).

Measured on each side, warm (every draw run once untimed first, and a few again after each switch of database:
a new session), in rounds alternating which side goes first, each query ``--iterations`` times a round on
accounts and parameters drawn at random with a fixed seed (the same draws on both sides), through the
service's own code:

 1. ``ledger_slice``: an account's first page (newest 20), as ``GET /api/billing/transactions/`` page 1;
 2. ``ledger_keyset``: a deep keyset page (``before`` a random sequence in the older half);
 3. ``ledger_slice`` with ``from_date``/``to_date`` of one month: the page and its count;
 4. the same with ``transaction_type=subtract`` (the count is then a ``COUNT`` over the month's rows of the
    type);
 5. ``platform_ledger_list``: the platform's newest 20 rows, as its cursor pagination reads them (21);
 6. one row by id within an account (``filter(account=...).get(pk=...)``, what a detail view's ``get_object``
    does: the API has no transaction detail endpoint today);
 7. the idempotency replay look-up ``LedgerEntry.objects.filter(account_id=..., idempotency_key=...).first()``
    (``credits.ledger._prior_entry``: through the key table when partitioned), of a key that exists;
 8. ``usage_call_get``: a usage event by (account, request_id), with its ledger row;
 9. ``usage_stats`` of an account over one month (daily buckets: reads the rollups, which are not
    partitioned);
10. an account's whole ledger as ``verify_ledger`` reads it (``credits.verification._ledger_chunks``).

Prints per size and query the median and p95 (ms) of each side and the ratio partitioned / flat of the
medians; then the summary with the "flatness" (partitioned at the largest size / at the smallest), the
partitions and the tables' sizes, the load times, and the load average before and after. Every query whose
partitioned median is over 1.5 x the flat one at the largest size gets its statements' ``EXPLAIN (ANALYZE,
BUFFERS)`` on both sides (``--explain``: every query's).

    .venv/bin/python bench/partitions.py [--sizes 1000000,10000000] [--rows-per-account 1000] [--rounds 3]
                                         [--iterations 300] [--seed 14] [--explain]

The first run loads the data (both sides: ~75 s at 1M, ~20 min at 10M; 13.6 GB on disk for the four
databases); then a run takes ~5 min. To throw the data away: ``DROP DATABASE billing_bench_part_10m`` (and
``billing_bench_flat_10m``, ``billing_bench_part_1m``, ``billing_bench_flat_1m``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_service.settings")

from _common import load_average, server_facts, setup_django  # noqa: E402

PLATFORM_KEY = "bench-partitions"
USER_PREFIX = "bpart-"
YEAR = 2026
FLAT_TARGET = ("credits", "0012_ledger_daily_rollup")
PARTITIONED = ("credits", "0013_partitioned_history")
SLOWER = 1.5  # partitioned / flat above this: EXPLAIN printed
USAGE_RESIDUES = (2, 3, 5, 7)  # sequence % 10 of the usage debits (one usage event each)
ROWS_PER_STATEMENT = 250_000


def label(size: int) -> str:
    if size % 1_000_000 == 0:
        return f"{size // 1_000_000}m"
    return f"{size // 1000}k" if size % 1000 == 0 else str(size)


def db_name(side: str, size: int) -> str:
    return f"billing_bench_{side}_{label(size)}"


def account_uuid(n: int) -> uuid.UUID:  # md5('A' || n)::uuid
    return uuid.UUID(hashlib.md5(f"A{n}".encode()).hexdigest())


def entry_uuid(n: int, g: int) -> uuid.UUID:  # md5('L' || n || ':' || g)::uuid
    return uuid.UUID(hashlib.md5(f"L{n}:{g}".encode()).hexdigest())


def usage_rows(rows: int) -> int:
    return sum(1 for g in range(1, rows + 1) if g % 10 in USAGE_RESIDUES)


# --- the databases -----------------------------------------------------------------------------------------


def _server_params() -> dict:
    from django.conf import settings

    db = settings.DATABASES["default"]  # loading settings starts the embedded server if needed
    return {"host": db["HOST"] or None, "port": db["PORT"] or None, "user": db["USER"] or None,
            "password": db["PASSWORD"] or None}


def _applied(name: str) -> set[tuple[str, str]] | None:
    """The migrations applied in database ``name`` (None: no such database)."""
    import psycopg

    params = _server_params()
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return None
    with psycopg.connect(dbname=name, autocommit=True, **params) as conn:
        if not conn.execute("SELECT to_regclass('django_migrations') IS NOT NULL").fetchone()[0]:
            return set()
        return {tuple(row) for row in conn.execute("SELECT app, name FROM django_migrations")}


def open_database(side: str, size: int, *, fresh: bool = False) -> str:
    """Points Django's connection at the side's database, created and migrated if needed: ``part`` to head
    (``_common.setup_django``), ``flat`` to head then back to ``credits 0012``. An existing flat database is
    only pointed at (a migrate to head would partition it)."""
    from django.apps import apps
    from django.core.management import call_command
    from django.db import connection

    name = db_name(side, size)
    if apps.ready:
        connection.close()
    applied = None if fresh else _applied(name)
    if side == "flat" and applied and FLAT_TARGET in applied and PARTITIONED not in applied:
        if apps.ready:
            connection.settings_dict["NAME"] = name
        else:
            import django
            from django.conf import settings

            settings.DATABASES["default"]["NAME"] = name
            django.setup()
        return name
    setup_django(name, fresh=fresh)  # creates it if missing, migrates it to head
    if side == "flat":
        call_command("migrate", *FLAT_TARGET, interactive=False, verbosity=0)
    return name


def use_database(side: str, size: int) -> None:
    """Switches Django's connection to an existing bench database (the next query opens a new session)."""
    from django.db import connection

    connection.close()
    connection.settings_dict["NAME"] = db_name(side, size)


# --- generated data ----------------------------------------------------------------------------------------

# One slice of the sequence (g0..g1) of every account n, with its instant: the year spread evenly over the
# rows, plus a fixed offset per account under one step (so created_at increases along the sequence).
SLICE = """
SELECT n, g, g %% 10 AS r,
       timestamptz '2026-01-01 00:00:00+00'
         + make_interval(secs => (g - 1) * %(step)s::float8 + (n * 7919) %% %(spread)s) AS at
  FROM generate_series(%(g0)s::int, %(g1)s::int) AS g CROSS JOIN generate_series(1, %(accounts)s::int) AS n
"""

# A cycle of ten rows (by sequence % 10): grant, top-up, usage, usage, check-in, usage, adjustment +, usage,
# adjustment -, adjustment -. balance_after = 10.10 per full cycle + the running sum within the cycle (never
# negative).
LEDGER_ROWS = """
SELECT md5('L' || n || ':' || g)::uuid, md5('A' || n)::uuid, %(platform)s, g,
       (ARRAY['add', 'add', 'subtract', 'subtract', 'checkin', 'subtract', 'adjustment', 'subtract',
              'adjustment', 'adjustment'])[r + 1],
       'completed',
       (ARRAY[5.00, 10.00, -1.00, -1.00, 0.10, -1.00, 0.25, -1.00, -0.25, -1.00])[r + 1]::numeric(20, 6), 0,
       ((g / 10) * 10.10
        + (ARRAY[0, 10.00, 9.00, 8.00, 8.10, 7.10, 7.35, 6.35, 6.10, 5.10])[r + 1])::numeric(20, 6), 0,
       CASE r WHEN 1 THEN 10.00 END,
       CASE WHEN r = 7 THEN 'AI usage: text-embedding-3-small · embeddings'
            WHEN r IN (2, 3, 5) THEN 'AI usage: gpt-4o · chat.completions'
            ELSE (ARRAY['Grant', 'Top-up', '', '', 'Daily check-in', '', 'Goodwill credit', '', 'Correction',
                        'Correction'])[r + 1] END,
       CASE WHEN r IN (2, 3, 5, 7) THEN 'r' || g ELSE '' END, '{}'::jsonb, NULL::int, NULL::uuid,
       NULL::uuid,
       CASE WHEN r IN (2, 3, 5, 7) THEN 'usage:r' || g WHEN r = 1 THEN 'order:' || g
            WHEN r = 4 THEN 'checkin:' || g END,
       '', at
  FROM s ORDER BY at
"""
LEDGER_COLUMNS = ("id, account_id, platform_id, sequence, transaction_type, status, balance_delta, "
                  "reserved_delta, balance_after, reserved_after, payment_amount_usd, description, "
                  "reference, metadata, actor_id, hold_id, refund_of_id, idempotency_key, request_hash, "
                  "created_at")
EVENT_ROWS = """
SELECT md5('E' || n || ':' || g)::uuid, md5('A' || n)::uuid, %(platform)s, 'r' || g,
       CASE r WHEN 7 THEN 'embeddings' ELSE 'chat.completions' END,
       CASE r WHEN 7 THEN 'text-embedding-3-small' ELSE 'gpt-4o' END,
       1000 + g %% 500, CASE r WHEN 7 THEN 0 ELSE 200 + g %% 100 END, 1, 1, 0, '', 'amount', NULL::bigint,
       true, '', '{}'::jsonb, md5('L' || n || ':' || g)::uuid, NULL::uuid, '', at, at
  FROM s WHERE r IN (2, 3, 5, 7) ORDER BY at
"""
EVENT_COLUMNS = ("id, account_id, platform_id, request_id, endpoint, model, input_tokens, output_tokens, "
                 "cost, charged, funded, funded_by, priced_by, price_id, success, description, metadata, "
                 "ledger_entry_id, hold_id, request_hash, occurred_at, recorded_at")

# Plain tables: the rows. Partitioned: the rows, and their keys claimed as the statement triggers claim them
# (credits.partitions.KEY_CLAIMS, from the rows the statement wrote).
FLAT_INSERTS = (
    f"WITH s AS ({SLICE}) INSERT INTO credits_ledger_entry ({LEDGER_COLUMNS}) {LEDGER_ROWS}",
    f"WITH s AS ({SLICE}) INSERT INTO credits_usageevent ({EVENT_COLUMNS}) {EVENT_ROWS}",
)
PART_INSERTS = (
    f"WITH s AS ({SLICE}), new_rows AS (INSERT INTO credits_ledger_entry ({LEDGER_COLUMNS}) {LEDGER_ROWS} "
    f"RETURNING account_id, idempotency_key, id, created_at) "
    f"INSERT INTO credits_ledger_key (account_id, idempotency_key, entry_id, created_at) "
    f"SELECT account_id, idempotency_key, id, created_at FROM new_rows WHERE idempotency_key IS NOT NULL",
    f"WITH s AS ({SLICE}), new_rows AS (INSERT INTO credits_usageevent ({EVENT_COLUMNS}) {EVENT_ROWS} "
    f"RETURNING account_id, request_id, id, recorded_at) "
    f"INSERT INTO credits_usage_key (account_id, request_id, event_id, recorded_at) "
    f"SELECT account_id, request_id, id, recorded_at FROM new_rows",
)

MEMBERS_SQL = (
    """
    INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff,
                           is_active, date_joined)
    SELECT '!', false, %(prefix)s || lpad(n::text, 6, '0'), '', '', '', false, true, now()
      FROM generate_series(1, %(n)s) AS n
    ON CONFLICT (username) DO NOTHING
    """,
    """
    INSERT INTO accounts_membership (platform_id, user_id, role, created_at)
    SELECT %(platform)s, u.id, 'member', now()
      FROM generate_series(1, %(n)s) AS n JOIN auth_user u ON u.username = %(prefix)s || lpad(n::text, 6, '0')
    ON CONFLICT (platform_id, user_id) DO NOTHING
    """,
    """
    INSERT INTO credits_creditaccount
           (id, platform_id, user_id, currency, balance, reserved, last_sequence, count_add,
            count_subtract, count_reserve, count_release, count_rollover, count_refund, count_adjustment,
            last_entry_at, created_at)
    SELECT md5('A' || n)::uuid, %(platform)s, u.id, 'USD', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, NULL, now()
      FROM generate_series(1, %(n)s) AS n JOIN auth_user u ON u.username = %(prefix)s || lpad(n::text, 6, '0')
    ON CONFLICT DO NOTHING
    """,
)

ROLLUPS_SQL = """
INSERT INTO credits_usagerollup (account_id, day, endpoint, total_requests, successful_requests,
                                 failed_requests, credits_consumed, input_tokens, output_tokens)
SELECT account_id, (recorded_at AT TIME ZONE 'UTC')::date, endpoint, count(*),
       count(*) FILTER (WHERE success), count(*) FILTER (WHERE NOT success), sum(cost),
       sum(COALESCE(input_tokens, 0)), sum(COALESCE(output_tokens, 0))
  FROM credits_usageevent WHERE platform_id = %(platform)s GROUP BY 1, 2, 3
"""

SYNC_SQL = """
UPDATE credits_creditaccount AS a
   SET balance = t.balance, reserved = 0, last_sequence = t.n, last_entry_at = t.last_at,
       count_add = t.n_add, count_subtract = t.n_subtract, count_adjustment = t.n_adjustment,
       count_checkin = t.n_checkin
  FROM (SELECT account_id, count(*) AS n, sum(balance_delta) AS balance, max(created_at) AS last_at,
               count(*) FILTER (WHERE transaction_type = 'add') AS n_add,
               count(*) FILTER (WHERE transaction_type = 'subtract') AS n_subtract,
               count(*) FILTER (WHERE transaction_type = 'adjustment') AS n_adjustment,
               count(*) FILTER (WHERE transaction_type = 'checkin') AS n_checkin
          FROM credits_ledger_entry WHERE platform_id = %(platform)s GROUP BY account_id) AS t
 WHERE a.id = t.account_id
"""

HISTORY_TABLES = ("credits_ledger_entry", "credits_usageevent", "credits_ledger_key", "credits_usage_key",
                  "credits_usagerollup")


def _scalar(query: str, params: Any = None) -> Any:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchone()[0]


def _platform():  # noqa: ANN202
    from accounts.services import platform_create

    platform, _ = platform_create(platform_key=PLATFORM_KEY, name="Benchmark: partitioned history")
    return platform


def _present(side: str, platform_id: int) -> dict[str, int]:
    found = {
        "accounts": _scalar("SELECT count(*) FROM credits_creditaccount "
                            "WHERE platform_id = %s AND user_id IS NOT NULL", [platform_id]),
        "ledger": _scalar("SELECT count(*) FROM credits_ledger_entry"),
        "events": _scalar("SELECT count(*) FROM credits_usageevent"),
        "synced": _scalar("SELECT COALESCE(sum(last_sequence), 0) FROM credits_creditaccount "
                          "WHERE platform_id = %s", [platform_id]),
        "rollups": int(_scalar("SELECT EXISTS (SELECT 1 FROM credits_usagerollup)")),
    }
    if side == "part":
        found["ledger_keys"] = _scalar("SELECT count(*) FROM credits_ledger_key")
        found["usage_keys"] = _scalar("SELECT count(*) FROM credits_usage_key")
    return found


def _expected(side: str, size: int, per_account: int) -> dict[str, int]:
    accounts = size // per_account
    events = accounts * usage_rows(per_account)
    found = {"accounts": accounts, "ledger": size, "events": events, "synced": size, "rollups": 1}
    if side == "part":
        keyed = sum(1 for g in range(1, per_account + 1) if g % 10 in (*USAGE_RESIDUES, 1, 4))
        found["ledger_keys"] = accounts * keyed
        found["usage_keys"] = events
    return found


def ensure_data(side: str, size: int, per_account: int) -> float | None:
    """The side's database of ``size``, holding its generated data; the seconds its loading took (None: it was
    there)."""
    from django.db import connection, transaction

    open_database(side, size)
    platform = _platform()
    expected = _expected(side, size, per_account)
    present = _present(side, platform.pk)
    if present == expected:
        return None
    if present["ledger"] or present["events"] or present["synced"]:
        print(f"  {db_name(side, size)} holds {present}, expected {expected}: dropped, loaded again",
              flush=True)
        open_database(side, size, fresh=True)
        platform = _platform()
    started = time.perf_counter()
    accounts = size // per_account
    with transaction.atomic(), connection.cursor() as cursor:
        for statement in MEMBERS_SQL:
            cursor.execute(statement, {"prefix": USER_PREFIX, "n": accounts, "platform": platform.pk})
    if side == "part":
        from credits.partitions import partitions_ensure

        partitions_ensure(since=date(YEAR, 1, 1))
    step = 365 * 86400 / per_account
    per_slice = max(1, ROWS_PER_STATEMENT // accounts)
    inserts = PART_INSERTS if side == "part" else FLAT_INSERTS
    for g0 in range(1, per_account + 1, per_slice):
        params = {"g0": g0, "g1": min(per_account, g0 + per_slice - 1), "accounts": accounts, "step": step,
                  "spread": max(1, int(step * 0.9)), "platform": platform.pk}
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = replica")  # no triggers: see the docstring
            for statement in inserts:
                cursor.execute(statement, params)
        print(f"\r  loading {db_name(side, size)}: {params['g1'] * accounts:,} ledger rows "
              f"({time.perf_counter() - started:.0f} s)", end="", flush=True)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(ROLLUPS_SQL, {"platform": platform.pk})
        cursor.execute(SYNC_SQL, {"platform": platform.pk})
    print(f"\r  loading {db_name(side, size)}: {size:,} ledger rows, rollups and accounts "
          f"({time.perf_counter() - started:.0f} s); REINDEX, VACUUM (ANALYZE)...", end="", flush=True)
    with connection.cursor() as cursor:
        for table in [t for t in HISTORY_TABLES if side == "part" or "_key" not in t]:
            cursor.execute(f"REINDEX TABLE {table}")  # see the docstring
        for table in [t for t in HISTORY_TABLES if side == "part" or "_key" not in t]:
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        cursor.execute("VACUUM (ANALYZE) credits_creditaccount")
    elapsed = time.perf_counter() - started
    print(f" done ({elapsed:.0f} s)", flush=True)
    present = _present(side, platform.pk)
    if present != expected:
        raise SystemExit(f"{db_name(side, size)}: loaded {present}, expected {expected}")
    return elapsed


def fingerprint(account_ids: list[uuid.UUID]) -> tuple:
    """What the side holds for these accounts (to check both sides hold the same rows)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), sum(balance_after), md5(string_agg(id::text || sequence || created_at::text || "
            "COALESCE(idempotency_key, ''), ',' ORDER BY account_id, sequence)) FROM credits_ledger_entry "
            "WHERE account_id = ANY(%s)", [account_ids])
        ledger = cursor.fetchone()
        cursor.execute(
            "SELECT count(*), md5(string_agg(id::text || request_id || ledger_entry_id::text "
            "|| recorded_at::text, ',' ORDER BY account_id, request_id)) FROM credits_usageevent "
            "WHERE account_id = ANY(%s)",
            [account_ids])
        events = cursor.fetchone()
        cursor.execute("SELECT count(*), sum(total_requests) FROM credits_usagerollup "
                       "WHERE account_id = ANY(%s)", [account_ids])
        rollups = cursor.fetchone()
    return ledger, events, rollups


def table_facts() -> dict[str, tuple[int, int]]:
    """Per history table: (leaf partitions, bytes with indexes and TOAST); the rows of the default partitions
    (None: not partitioned); the database's size."""
    from django.db import connection

    facts: dict[str, Any] = {}
    with connection.cursor() as cursor:
        for table in HISTORY_TABLES:  # a plain table: one "leaf"; a missing one: none
            cursor.execute(
                "SELECT CASE WHEN t.relkind = 'p' THEN (SELECT count(*) FROM pg_partition_tree(t.oid) "
                "WHERE isleaf) ELSE 1 END, CASE WHEN t.relkind = 'p' THEN (SELECT "
                "sum(pg_total_relation_size(relid)) FROM pg_partition_tree(t.oid) WHERE isleaf) "
                "ELSE pg_total_relation_size(t.oid) END "
                "FROM pg_class t WHERE t.oid = to_regclass(%s)", [table])
            facts[table] = cursor.fetchone() or (0, 0)
        facts["default rows"] = None
        if _scalar("SELECT to_regclass('credits_ledger_entry_default') IS NOT NULL"):
            facts["default rows"] = _scalar("SELECT (SELECT count(*) FROM credits_ledger_entry_default) "
                                            "+ (SELECT count(*) FROM credits_usageevent_default)")
        facts["database"] = _scalar("SELECT pg_database_size(current_database())")
    return facts


# --- the reads ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    n: int  # the member
    account_id: uuid.UUID
    before: int  # a deep keyset position
    month: int
    entry_id: uuid.UUID  # a row of the account
    key: str  # an idempotency key of the account
    request_id: str  # a usage event of the account


def samples(size: int, per_account: int, iterations: int, seed: int) -> list[Sample]:
    rng = random.Random(seed)
    accounts = size // per_account
    usage = [g for g in range(1, per_account + 1) if g % 10 in USAGE_RESIDUES]
    found = []
    for _ in range(iterations):
        n = rng.randint(1, accounts)
        found.append(Sample(
            n=n, account_id=account_uuid(n), before=rng.randint(21, max(21, per_account // 2)),
            month=rng.randint(1, 12), entry_id=entry_uuid(n, rng.randint(1, per_account)),
            key=f"usage:r{rng.choice(usage)}", request_id=f"r{rng.choice(usage)}"))
    return found


def month_bounds(month: int) -> tuple[date, date]:
    first = date(YEAR, month, 1)
    following = date(YEAR + month // 12, month % 12 + 1, 1)
    return first, following - timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    run: Callable[[Sample, Any, Any], Any]  # (sample, its account, the platform)


def queries() -> list[Query]:
    from django.db import connection

    from billing_service.pagination import QuerySetRows
    from credits.models import LedgerEntry
    from credits.selectors import (
        LedgerFilter,
        ledger_entry_by_key,
        ledger_keyset,
        ledger_slice,
        platform_ledger_list,
        usage_call_get,
        usage_stats,
    )
    from credits.verification import VERIFY_ROWS_PER_CHUNK, _ledger_chunks

    every = LedgerFilter()

    def month(s: Sample, **kwargs: Any) -> LedgerFilter:
        first, last = month_bounds(s.month)
        return LedgerFilter(from_date=first, to_date=last, **kwargs)

    def replay(s: Sample, account: Any, _: Any) -> Any:
        """The service's look-up of a key's row (``credits.ledger._prior_entry``): through the key table when
        partitioned; on the plain tables, as the service looked it up before (their unique index of keys)."""
        if connection.settings_dict["NAME"].startswith("billing_bench_part"):
            return ledger_entry_by_key(account_id=s.account_id, key=s.key)
        return LedgerEntry.objects.filter(account_id=s.account_id, idempotency_key=s.key).first()

    def stats(s: Sample, account: Any, _: Any) -> Any:
        first, last = month_bounds(s.month)
        return usage_stats(account=account, period="daily", start=first, end=last)

    return [
        Query("1 first page (newest 20)",
              lambda s, a, p: ledger_slice(account=a, flt=every, offset=0, limit=20)),
        Query("2 deep keyset page",
              lambda s, a, p: ledger_keyset(account=a, flt=every, before=s.before, after=None, limit=20)),
        Query("3 month: page + count",
              lambda s, a, p: ledger_slice(account=a, flt=month(s), offset=0, limit=20)),
        Query("4 month + type: page + count",
              lambda s, a, p: ledger_slice(account=a, flt=month(s, transaction_type="subtract"), offset=0,
                                           limit=20)),
        Query("5 platform newest 20",
              lambda s, a, p: QuerySetRows(platform_ledger_list(platform=p)).keyset(direction=None,
                                                                                    position=None, limit=20)),
        Query("6 row by id",
              lambda s, a, p: LedgerEntry.objects.filter(account=a).get(pk=s.entry_id)),
        Query("7 idempotency replay", replay),
        Query("8 usage_call_get",
              lambda s, a, p: usage_call_get(account_id=s.account_id, request_id=s.request_id)),
        Query("9 usage_stats (a month)", stats),
        Query("10 whole ledger (verify)",
              lambda s, a, p: sum(len(c) for c in _ledger_chunks([s.account_id], VERIFY_ROWS_PER_CHUNK))),
    ]


def _context(draws: list[Sample]) -> tuple[dict, Any]:
    from accounts.models import Platform
    from credits.models import CreditAccount

    accounts = CreditAccount.objects.in_bulk(list({s.account_id for s in draws}))
    return accounts, Platform.objects.get(platform_key=PLATFORM_KEY)


def _check(query: Query, result: Any, per_account: int) -> None:
    """Every read finds what it looks for (a miss would time nothing)."""
    number = query.name.split()[0]
    if number in ("6", "7") and result is None:
        raise SystemExit(f"{query.name}: nothing found")
    if number == "8" and (result[1] is None or result[1].ledger_entry is None):
        raise SystemExit(f"{query.name}: no usage event found")
    if number in ("1", "2", "3", "4", "5"):
        rows = result[1] if isinstance(result[0], int) else result[0]
        if len(rows) != 20:
            raise SystemExit(f"{query.name}: {len(rows)} rows")
    if number == "10" and result != per_account:
        raise SystemExit(f"{query.name}: {result} rows")


def run_pass(reads: list[Query], draws: list[Sample], *, timed: bool, check: int = 0
             ) -> dict[str, list[float]]:
    """Each query on each draw, in turn; the ms of each call (``check``: rows per account, checking what each
    call found)."""
    accounts, platform = _context(draws)
    clock = time.perf_counter
    times: dict[str, list[float]] = {}
    for query in reads:
        spent = times[query.name] = []
        for s in draws:
            account = accounts[s.account_id]
            t0 = clock()
            result = query.run(s, account, platform)
            spent.append((clock() - t0) * 1000)
            if check:
                _check(query, result, check)
    return times if timed else {}


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def measure(size: int, reads: list[Query], draws: list[Sample], rounds: int, per_account: int
            ) -> dict[str, dict[str, list[list[float]]]]:
    """Every query on every draw, per side, in rounds alternating the order of the sides: the ms of each call,
    per side, query and round."""
    results: dict[str, dict[str, list[list[float]]]] = {"part": {}, "flat": {}}
    for side in results:  # warm: every draw once, checked
        use_database(side, size)
        run_pass(reads, draws, timed=False, check=per_account)
    for r in range(rounds):
        for side in (("part", "flat") if r % 2 == 0 else ("flat", "part")):
            use_database(side, size)
            run_pass(reads, draws[:20], timed=False)  # the new session's caches
            for name, spent in run_pass(reads, draws, timed=True).items():
                results[side].setdefault(name, []).append(spent)
        print(f"  {label(size)}: round {r + 1}/{rounds} done (load average {load_average()})", flush=True)
    return results


# --- EXPLAIN -----------------------------------------------------------------------------------------------


def explain(query: Query, draw: Sample) -> None:
    """The statements one call of ``query`` runs, each with its EXPLAIN (ANALYZE, BUFFERS) on this side."""
    from billing_service.db import server_bound_cursor
    from credits import sql
    from django.db import connection

    statements: list[tuple[str, Any]] = []

    def capture(execute, sql_text, params, many, context):  # noqa: ANN001, ANN202
        statements.append((sql_text, params))
        return execute(sql_text, params, many, context)

    accounts, platform = _context([draw])
    with connection.execute_wrapper(capture):
        query.run(draw, accounts[draw.account_id], platform)
    if query.name.startswith("8"):  # its first statement runs on a psycopg cursor of its own (prepared)
        with server_bound_cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql.FIND_CALLS,
                           [[draw.account_id], [draw.request_id]])
            print(f"    -- {sql.FIND_CALLS}")
            for (line,) in cursor.fetchall():
                print("       " + line)
    for sql_text, params in statements:
        if not sql_text.lstrip().upper().startswith("SELECT"):
            continue
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql_text, params)
            plan = [line for (line,) in cursor.fetchall()]
        print(f"    -- {connection.ops.compose_sql(sql_text, params)}")
        for line in plan:
            print("       " + line)


def explain_queries(size: int, reads: list[Query], draw: Sample) -> None:
    for query in reads:
        for side in ("part", "flat"):
            use_database(side, size)
            print(f"\n=== {query.name}, {db_name(side, size)}")
            explain(query, draw)


# --- report ------------------------------------------------------------------------------------------------


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--rows-per-account", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=300, help="draws per query, per side and round")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE every query at each size")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    per_account = args.rows_per_account
    if any(size % per_account for size in sizes) or per_account < 100:
        raise SystemExit("each size must be a multiple of --rows-per-account (>= 100)")
    load_before = load_average()

    loads: dict[tuple[str, int], float | None] = {}
    for size in sizes:
        for side in ("part", "flat"):
            loads[side, size] = ensure_data(side, size, per_account)
    version, sync_commit = server_facts()
    print(f"\nreads on history partitioned by month vs the same reads on plain tables ({version}, "
          f"synchronous_commit={sync_commit}, {os.cpu_count()} CPUs, load average before: {load_before})")

    reads = queries()
    results: dict[int, dict[str, dict[str, list[list[float]]]]] = {}
    facts: dict[tuple[str, int], dict] = {}
    for size in sizes:
        draws = samples(size, per_account, args.iterations, args.seed)
        sample_ids = sorted({s.account_id for s in draws[:20]}, key=str)
        prints = {}
        for side in ("part", "flat"):
            use_database(side, size)
            prints[side] = fingerprint(sample_ids)
            facts[side, size] = table_facts()
        if prints["part"] != prints["flat"]:
            raise SystemExit(f"the two sides of {label(size)} differ: {prints}")
        print(f"  {label(size)}: the same rows on both sides ({len(sample_ids)} accounts checked: "
              f"{prints['part'][0][0]:,} ledger rows, {prints['part'][1][0]:,} events); "
              f"{args.iterations} draws x {args.rounds} rounds per query and side")
        results[size] = measure(size, reads, draws, args.rounds, per_account)
    print(f"load average after the reads: {load_average()}")

    def calls(size: int, side: str, name: str) -> list[float]:
        return [ms for spent in results[size][side][name] for ms in spent]

    def med(size: int, side: str, name: str) -> float:
        return statistics.median(calls(size, side, name))

    def per_round(size: int, name: str) -> str:
        return ", ".join(f"{statistics.median(part) / statistics.median(flat):.2f}" for part, flat
                         in zip(results[size]["part"][name], results[size]["flat"][name], strict=True))

    for size in sizes:
        print(f"\n{size:,} ledger rows ({size // per_account:,} accounts of {per_account:,}), "
              f"{size // per_account * usage_rows(per_account):,} usage events; ms per call")
        header = (f"{'query':<30} {'part p50':>9} {'p95':>7} {'flat p50':>9} {'p95':>7} {'part/flat':>9}  "
                  f"(per round)")
        print(header)
        print("-" * len(header))
        for q in reads:
            part, flat = calls(size, "part", q.name), calls(size, "flat", q.name)
            p50, f50 = med(size, "part", q.name), med(size, "flat", q.name)
            print(f"{q.name:<30} {p50:>9.3f} {p95(part):>7.3f} {f50:>9.3f} {p95(flat):>7.3f} "
                  f"{p50 / f50:>9.2f}  ({per_round(size, q.name)})")

    print("\nmedians, ms (ratio: partitioned / flat; flatness: partitioned at the largest size / at the "
          "smallest, and the same of flat)")
    small, large = sizes[0], sizes[-1]
    header = f"{'query':<30}" + "".join(f" {label(s) + ' part':>9} {label(s) + ' flat':>9} {'ratio':>6}"
                                        for s in sizes)
    if len(sizes) > 1:
        header += f" {'flatness':>9} {'(flat)':>7}"
    print(header)
    print("-" * len(header))
    slower = []
    for q in reads:
        line = f"{q.name:<30}"
        for s in sizes:
            part, flat = med(s, "part", q.name), med(s, "flat", q.name)
            line += f" {part:>9.3f} {flat:>9.3f} {part / flat:>6.2f}"
        if len(sizes) > 1:
            line += (f" {med(large, 'part', q.name) / med(small, 'part', q.name):>9.2f}"
                     f" {med(large, 'flat', q.name) / med(small, 'flat', q.name):>7.2f}")
        print(line)
        if med(large, "part", q.name) > SLOWER * med(large, "flat", q.name):
            slower.append(q)

    print("\ntables: size with indexes (leaf partitions); rows in the default partitions; load time")
    header = f"{'database':<24}" + "".join(f" {t.removeprefix('credits_'):>18}" for t in HISTORY_TABLES) + \
        f" {'database':>10} {'default':>8} {'load':>7}"
    print(header)
    print("-" * len(header))
    for size in sizes:
        for side in ("part", "flat"):
            f = facts[side, size]
            cells = ""
            for table in HISTORY_TABLES:
                leaves, total = f[table]
                cell = "-" if not leaves else _mb(total) + (f" ({leaves})" if leaves > 1 else "")
                cells += f" {cell:>18}"
            load = loads[side, size]
            default = "-" if f["default rows"] is None else f["default rows"]
            print(f"{db_name(side, size):<24}{cells} {_mb(f['database']):>10} {default:>8} "
                  f"{'reused' if load is None else f'{load:.0f} s':>7}")

    if args.explain or slower:
        draw = samples(large, per_account, 1, args.seed + 1)[0]
        targets = reads if args.explain else slower
        print(f"\nEXPLAIN (ANALYZE, BUFFERS) at {large:,} rows, member {draw.n}: "
              + ("every query" if args.explain else f"the queries over {SLOWER} x flat: "
                 + ", ".join(q.name for q in targets)))
        explain_queries(large, targets, draw)
    print(f"\nload average after: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
