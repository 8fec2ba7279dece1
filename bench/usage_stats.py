"""Usage statistics at 1,000,000 events: GET /api/billing/usage/stats/ vs a GROUP BY over the raw events.

One member's account holds 1,000,000 usage events spread over the last 365 days (five endpoints, 4 % failed,
a new request_id each), the ledger rows that charged them, and the daily rollups built from them. Measured in
the same run, interleaved:

- ``stats``: ``GET /api/billing/usage/stats/?period=monthly&from=<365 days ago>&to=<now>`` in-process through
             the whole stack (DRF ``APIClient`` with the member's token: middleware, token auth, tenant
             resolution, query validation, the selector over ``credits_usagerollup``, serializer, JSON)
- ``raw``:   the same figures straight from the events: ``SELECT date_trunc('month', occurred_at AT TIME ZONE
             'UTC'), endpoint, count(*), count(*) FILTER (WHERE success), ..., sum(cost), sum(tokens) FROM
             credits_usageevent WHERE account_id = ... AND occurred_at in the same whole UTC days GROUP BY 1, 2``
             on a raw psycopg connection

Every stats response is checked against the raw figures (totals and every bucket). Prints p50 and p90 of both,
per round, and the ratio raw/stats of the p50s. Targets: stats p50 <= 20 ms and raw/stats >= 20.

The data is generated set-based (a temporary table of the events from ``generate_series``, then one INSERT per
table: a grant and a ``subtract`` row per successful event, in order, with running balances; the events
pointing at their ledger rows; the account's balance and counters; the rollups with one ``INSERT ... SELECT
... GROUP BY`` over the events) and reused by later runs in the same month (checked by count); a new month
generates a new member (the range is relative to now). ``--explain`` prints EXPLAIN ANALYZE of both queries.

Own database: ``billing_bench_usage_stats`` (``BENCH_DATABASE_NAME`` overrides), created and migrated if missing.

``--proposed`` adds a third side, ``proposed``: the same request to a bench-only copy of the endpoint with the
changes proposed in bench/README.md (``bench/_stats_proposed.py``), routed in this process only, checked to
answer exactly what the real endpoint answers, interleaved with it.

    .venv/bin/python bench/usage_stats.py [--requests 30] [--rounds 3] [--explain] [--verify-ledger] [--proposed]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_average, server_facts, setup_django

BENCH_DB = os.environ.get("BENCH_DATABASE_NAME", "billing_bench_usage_stats")
PLATFORM_KEY = "bench-usage-stats"
EVENTS = 1_000_000
DAYS = 365
URL = "/api/billing/usage/stats/"
PROPOSED_URL = "/api/bench/usage-stats-proposed/"
TARGET_P50_MS, TARGET_RATIO = 20.0, 20.0
LEFTOVER = Decimal(1000)

GENERATE_SQL = """
CREATE TEMPORARY TABLE bench_gen ON COMMIT DROP AS
SELECT g, gen_random_uuid() AS event_id, CASE WHEN success THEN gen_random_uuid() END AS entry_id,
       'req-' || g AS request_id, endpoint, model, success, occurred_at, input_tokens, output_tokens,
       CASE WHEN success THEN 0.001 * (1 + g %% 7) ELSE 0 END::numeric(20, 6) AS cost,
       encode(sha256(('req-' || g)::bytea), 'hex') AS request_hash
  FROM (SELECT g,
               (ARRAY['/v1/chat/completions', '/v1/chat/completions', '/v1/chat/completions', '/v1/embeddings',
                      '/v1/embeddings', '/v1/images/generations', '/v1/audio/transcriptions',
                      '/v1/moderations'])[1 + g %% 8] AS endpoint,
               (ARRAY['gpt-large', 'gpt-large', 'gpt-small', 'embed-3', 'embed-3', 'image-2', 'whisper-1',
                      'moderation-1'])[1 + g %% 8] AS model,
               g %% 25 <> 0 AS success,
               %(start)s::timestamptz + (g - 1) * (%(span)s::interval / %(n)s) AS occurred_at,
               100 + g %% 900 AS input_tokens, 50 + g %% 400 AS output_tokens
          FROM generate_series(1, %(n)s::bigint) AS g) AS s;

CREATE TEMPORARY TABLE bench_charged ON COMMIT DROP AS
SELECT *, row_number() OVER (ORDER BY g) AS n, sum(cost) OVER (ORDER BY g ROWS UNBOUNDED PRECEDING) AS spent
  FROM bench_gen WHERE success;

INSERT INTO credits_ledger_entry
       (id, account_id, platform_id, sequence, transaction_type, status, balance_delta, reserved_delta,
        balance_after, reserved_after, description, reference, metadata, request_hash, created_at)
SELECT gen_random_uuid(), %(account_id)s, %(platform_id)s, 1, 'add', 'completed', t.total, 0, t.total, 0,
       'bench funds', '', '{}'::jsonb, '', %(start)s::timestamptz - interval '1 second'
  FROM (SELECT sum(cost) + %(leftover)s AS total FROM bench_gen) AS t;

INSERT INTO credits_ledger_entry
       (id, account_id, platform_id, sequence, transaction_type, status, balance_delta, reserved_delta,
        balance_after, reserved_after, description, reference, metadata, idempotency_key, request_hash, created_at)
SELECT c.entry_id, %(account_id)s, %(platform_id)s, 1 + c.n, 'subtract', 'completed', -c.cost, 0,
       t.total - c.spent, 0, 'AI usage: ' || c.model || ' · ' || c.endpoint, c.request_id,
       jsonb_build_object('usage_event_id', c.event_id::text, 'endpoint', c.endpoint, 'model', c.model),
       'usage:' || c.request_id, c.request_hash, c.occurred_at
  FROM bench_charged AS c, (SELECT sum(cost) + %(leftover)s AS total FROM bench_gen) AS t
 ORDER BY c.n;

INSERT INTO credits_usageevent
       (id, account_id, platform_id, request_id, endpoint, model, input_tokens, output_tokens, cost, priced_by,
        price_id, success, description, metadata, ledger_entry_id, hold_id, request_hash, occurred_at, recorded_at)
SELECT event_id, %(account_id)s, %(platform_id)s, request_id, endpoint, model, input_tokens, output_tokens, cost,
       'amount', NULL, success, '', '{}'::jsonb, entry_id, NULL, request_hash, occurred_at, occurred_at
  FROM bench_gen ORDER BY g;

UPDATE credits_creditaccount AS a
   SET balance = %(leftover)s, reserved = 0, last_sequence = 1 + t.charged, count_add = 1,
       count_subtract = t.charged, last_entry_at = t.last_at
  FROM (SELECT count(*) AS charged, max(occurred_at) AS last_at FROM bench_charged) AS t
 WHERE a.id = %(account_id)s;

INSERT INTO credits_usagerollup
       (account_id, day, endpoint, total_requests, successful_requests, failed_requests, credits_consumed,
        input_tokens, output_tokens)
SELECT account_id, (occurred_at AT TIME ZONE 'UTC')::date, endpoint, count(*), count(*) FILTER (WHERE success),
       count(*) FILTER (WHERE NOT success), sum(cost), sum(coalesce(input_tokens, 0)),
       sum(coalesce(output_tokens, 0))
  FROM credits_usageevent WHERE account_id = %(account_id)s
 GROUP BY 1, 2, 3;
"""

# The same figures as the endpoint, from the raw events, for the same whole UTC days.
RAW_SQL = """
SELECT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date AS month, endpoint, count(*) AS total,
       count(*) FILTER (WHERE success) AS successful, count(*) FILTER (WHERE NOT success) AS failed,
       sum(cost) AS credits, sum(coalesce(input_tokens, 0)) AS tokens_in, sum(coalesce(output_tokens, 0)) AS tokens_out
  FROM credits_usageevent
 WHERE account_id = %(account_id)s AND occurred_at >= %(lo)s AND occurred_at < %(hi)s
 GROUP BY 1, 2
"""


def ensure_member(platform):
    """This month's member with exactly EVENTS usage events (generated if missing)."""
    from django.db import connection, transaction

    from accounts.services import api_token_issue, member_add
    from credits.models import CreditAccount, UsageEvent
    from credits.partitions import partitions_ensure
    from credits.selectors import account_for

    now = datetime.now(UTC)
    attempt = 0
    while True:
        username = f"usage-1m-{now:%Y%m}" + (f"-{attempt}" if attempt else "")
        membership, _ = member_add(platform=platform, username=username)
        token = api_token_issue(user=membership.user, name="bench")  # keys are shown once: one per run
        account = account_for(platform=platform, user=membership.user)
        present = UsageEvent.objects.filter(account=account).count()
        if present == EVENTS and account.count_subtract > 0:
            return token, account, False
        if present == 0 and account.last_sequence == 0:
            break
        attempt += 1  # a broken earlier attempt: start over with a fresh member
    started = time.perf_counter()
    print(f"  generating {EVENTS:,} usage events, their ledger rows and rollups for {username} ...", end=" ",
          flush=True)
    partitions_ensure(since=(now - timedelta(days=DAYS)).date())  # the generated months (not the default one)
    with transaction.atomic(), connection.cursor() as cursor:
        CreditAccount.objects.select_for_update().filter(pk=account.pk).first()
        cursor.execute(GENERATE_SQL, {
            "account_id": account.id, "platform_id": platform.id, "n": EVENTS, "leftover": LEFTOVER,
            "start": now.replace(microsecond=0) - timedelta(days=DAYS), "span": timedelta(days=DAYS),
        })
    print(f"{time.perf_counter() - started:.1f} s", flush=True)
    account.refresh_from_db()
    return token, account, True


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30, help="stats requests per round")
    parser.add_argument("--raw", type=int, default=5, help="raw queries per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=10, help="stats requests (and 1 raw query), discarded")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the stats query and the raw one")
    parser.add_argument("--verify-ledger", action="store_true", help="also ledger_verify the account (slow)")
    parser.add_argument("--proposed", action="store_true",
                        help="also time the changes proposed in bench/README.md (bench/_stats_proposed.py)")
    args = parser.parse_args()
    sides = ["stats", "raw"] + (["proposed"] if args.proposed else [])

    conninfo = setup_django(BENCH_DB)

    import psycopg
    from django.db import connection
    from rest_framework.test import APIClient

    from accounts.services import platform_create
    from credits.verification import ledger_verify

    print(f"Usage statistics: GET {URL} (monthly, 365 days) vs GROUP BY over the raw events, {EVENTS:,} events")
    platform, _ = platform_create(platform_key=PLATFORM_KEY, name="Benchmark: usage statistics")
    token, account, generated = ensure_member(platform)
    with connection.cursor() as cursor:
        for table in ("credits_usageevent", "credits_usagerollup", "credits_ledger_entry"):
            cursor.execute(f"{'VACUUM (ANALYZE)' if generated else 'ANALYZE'} {table}")
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('credits_usageevent')), "
                       "(SELECT count(*) FROM credits_usagerollup WHERE account_id = %s)", [account.pk])
        size, rollups = cursor.fetchone()
    version, _ = server_facts()
    print(f"database {BENCH_DB!r} ({version}): credits_usageevent {size}, {rollups:,} rollup rows for the account "
          f"({'generated now' if generated else 'reused'})")

    now = datetime.now(UTC)
    start = now - timedelta(days=DAYS)
    params = {"period": "monthly", "from": start.date().isoformat(), "to": now.isoformat().replace("+00:00", "Z")}
    # The endpoint counts whole UTC days: from the start of the first one to the end of the last one.
    lo = datetime.combine(start.date(), datetime.min.time(), UTC)
    hi = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    raw_params = {"account_id": account.pk, "lo": lo, "hi": hi}

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    raw_conn = psycopg.connect(autocommit=True, **conninfo)

    def raw_query() -> tuple[float, list]:
        started = time.perf_counter()
        rows = raw_conn.execute(RAW_SQL, raw_params).fetchall()
        return (time.perf_counter() - started) * 1000, rows

    _, raw_rows = raw_query()
    expected = {
        "total_requests": sum(r[2] for r in raw_rows), "successful_requests": sum(r[3] for r in raw_rows),
        "failed_requests": sum(r[4] for r in raw_rows), "credits_consumed": sum(r[5] for r in raw_rows),
        "input_tokens": sum(r[6] for r in raw_rows), "output_tokens": sum(r[7] for r in raw_rows),
    }
    by_month: dict[date, int] = {}
    for r in raw_rows:
        by_month[r[0]] = by_month.get(r[0], 0) + r[2]

    if args.proposed:
        import _stats_proposed

        _stats_proposed.add_route()
        original, proposed = client.get(URL, params).json(), client.get(PROPOSED_URL, params).json()
        if original != proposed:
            raise SystemExit(f"the proposed endpoint answers differently:\n{original}\n{proposed}")
        for period in ("daily", "yearly"):
            other = {**params, "period": period, "from": (now - timedelta(days=40)).date().isoformat()}
            if client.get(URL, other).json() != client.get(PROPOSED_URL, other).json():
                raise SystemExit(f"the proposed endpoint answers differently for {period}")

    def stats(url: str = URL) -> float:
        started = time.perf_counter()
        response = client.get(url, params)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"HTTP {response.status_code}: {response.content[:300]!r}")
        body = response.json()
        got = {k: body[k] for k in expected}
        got["credits_consumed"] = Decimal(got["credits_consumed"])
        buckets = {datetime.fromisoformat(b["period_start"].replace("Z", "+00:00")).date(): b["total_requests"]
                   for b in body["buckets"] if b["total_requests"]}
        if got != expected or buckets != by_month:
            raise SystemExit(f"stats disagree with the raw events: {got} vs {expected}; {buckets} vs {by_month}")
        return elapsed

    for _ in range(args.warmup):
        stats()
        if args.proposed:
            stats(PROPOSED_URL)
    raw_query()
    if args.explain:
        explain(client, params, raw_conn, raw_params)

    print(f"range {params['from']} .. {params['to']} (monthly, {len(by_month)} buckets with events): "
          f"{expected['total_requests']:,} events, {expected['failed_requests']:,} failed, "
          f"{expected['credits_consumed']} credits")
    print(f"load average before: {load_average()} on {os.cpu_count()} CPUs")
    samples = {side: [] for side in sides}
    round_p50 = {side: [] for side in sides}
    every = max(1, args.requests // args.raw)
    for r in range(args.rounds):
        this = {side: [] for side in sides}
        for i in range(args.requests):
            if i % every == (0 if r % 2 == 0 else every - 1) and len(this["raw"]) < args.raw:
                this["raw"].append(raw_query()[0])
            if args.proposed and (i + r) % 2:
                this["proposed"].append(stats(PROPOSED_URL))
            this["stats"].append(stats())
            if args.proposed and not (i + r) % 2:
                this["proposed"].append(stats(PROPOSED_URL))
        while len(this["raw"]) < args.raw:
            this["raw"].append(raw_query()[0])
        for side in this:
            samples[side].extend(this[side])
            round_p50[side].append(statistics.median(this[side]))
    print(f"load average after:  {load_average()}")
    print()
    raw_conn.close()

    header = f"{'side':<8} {'n':>4} {'p50 ms':>8} {'p90 ms':>8}   p50 per round (ms)"
    print(header)
    print("-" * len(header))
    p50 = {}
    for side in sides:
        p50[side] = statistics.median(samples[side])
        print(f"{side:<8} {len(samples[side]):>4} {p50[side]:>8.2f} {percentile(samples[side], 0.9):>8.2f}   "
              + " ".join(f"{x:7.2f}" for x in round_p50[side]))
    print()

    if args.verify_ledger:
        started = time.perf_counter()
        check = ledger_verify(account=account)
        print(f"ledger_verify(1M account): ok={check.ok} ({time.perf_counter() - started:.1f} s)"
              + ("" if check.ok else f" problems={check.problems[:5]}"))
        print()
    ratio = p50["raw"] / p50["stats"]
    met = p50["stats"] <= TARGET_P50_MS and ratio >= TARGET_RATIO
    print(f"stats p50 {p50['stats']:.2f} ms, raw GROUP BY p50 {p50['raw']:.2f} ms: ratio raw/stats = {ratio:.1f}  "
          f"(targets p50 <= {TARGET_P50_MS:g} ms, ratio >= {TARGET_RATIO:g}: {'MET' if met else 'MISSED'})")
    if args.proposed:
        print(f"proposed p50 {p50['proposed']:.2f} ms: ratio raw/proposed = {p50['raw'] / p50['proposed']:.1f}, "
              f"stats/proposed = {p50['stats'] / p50['proposed']:.2f}  (experiment: the changes proposed in "
              "bench/README.md)")
    return 0 if met else 1


def explain(client, params: dict, raw_conn, raw_params: dict) -> None:
    """Every query of one stats request, and the raw query, with EXPLAIN ANALYZE."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        client.get(URL, params)
    print(f"\n=== stats: {len(captured.captured_queries)} queries")
    for query in captured.captured_queries:
        sql = query["sql"]
        print(f"--- {query['time']} s: {sql}")
        if "credits_usagerollup" in sql:
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
                for (line,) in cursor.fetchall():
                    print("    " + line)
    print("\n=== raw")
    for (line,) in raw_conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + RAW_SQL, raw_params).fetchall():
        print("    " + line)
    print()


if __name__ == "__main__":
    sys.exit(main())
