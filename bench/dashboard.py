"""The admin's billing dashboard at 1,000,000 ledger rows: its server time vs the same reads in raw psycopg.

Data (generated once, set-based, and reused by the next run; checked by count): 20 platforms, 2,000 members
(100 each), 500 ledger rows per member (1,000,000) spread over the last 60 UTC days, in a cycle of 20 rows that
mixes every kind the dashboard tells apart: a paid top-up (+20.00, 20.00 USD), a check-in (+0.50), a grant
(+1.00 adjustment), usage given back (+0.30 refund), a take-back (-0.20 adjustment) and 15 usage debits (-0.90);
a usage rollup per member and day (120,000), 300 current subscriptions on 3 plans, 40 failed webhook events and
10 stalled recharges. The rows are written with ``INSERT ... SELECT generate_series`` (on the server, no
transfer: faster than COPY here), valid ledger rows (sequence 1..500 per account, running ``balance_after``,
never negative, accounts synced). Then the daily rollups are back-filled (``ledger_rollups_backfill``).

Measured, interleaved in the same run, medians over ``--requests`` x ``--rounds``:

- **dashboard**: ``GET /admin/payments/order/dashboard/`` through the whole Django stack in-process (test
  ``Client``, a logged-in superuser: sessions, ``admin_view``, the reads of ``payments.dashboard``, the template
  and its SVG charts), for every platform and for one platform;
- **baseline**: the same necessary reads (the platforms, the rollup window by day and type, the net before it, the
  live balances, subscriptions by plan, failed webhook counts and latest, recharges needing attention and latest,
  top accounts by usage) as hand-written SQL through raw psycopg, no rendering.

Also printed: one day's rollup refresh (``ledger_rollups_refresh_range`` of one full day, ~16,700 rows), the whole
back-fill, and for scale the 30 days' figures aggregated straight from the ledger (what the rollups avoid).

Runs in its own database (``billing_bench_dashboard``; ``BENCH_DATABASE_NAME`` overrides).

    .venv/bin/python bench/dashboard.py [--requests 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_service.settings")

from _common import ensure_members, load_average, server_facts, setup_django  # noqa: E402

BENCH_DB = os.environ.get("BENCH_DATABASE_NAME", "billing_bench_dashboard")
PLATFORMS, MEMBERS, ROWS_PER_MEMBER, DAYS = 20, 100, 500, 60
TOTAL = PLATFORMS * MEMBERS * ROWS_PER_MEMBER

GENERATE_SQL = """
INSERT INTO credits_ledger_entry
       (id, account_id, platform_id, sequence, transaction_type, status, balance_delta, reserved_delta,
        balance_after, reserved_after, payment_amount_usd, description, reference, metadata, actor_id,
        hold_id, refund_of_id, idempotency_key, request_hash, created_at)
SELECT gen_random_uuid(), s.account_id, s.platform_id, s.g, s.kind, 'completed', s.delta, 0,
       sum(s.delta) OVER (PARTITION BY s.account_id ORDER BY s.g ROWS UNBOUNDED PRECEDING), 0,
       CASE WHEN s.g %% 20 = 1 THEN 20.00 END, 'bench', '', '{}'::jsonb, NULL, NULL, NULL, NULL, '',
       %(base)s::timestamptz + (s.g - 1) * (%(span)s::interval / %(rows)s) + s.n * interval '1 second'
  FROM (
        SELECT a.id AS account_id, a.platform_id, a.n, g,
               CASE g %% 20 WHEN 1 THEN 'add' WHEN 5 THEN 'checkin' WHEN 9 THEN 'adjustment' WHEN 13 THEN 'refund'
                            WHEN 17 THEN 'adjustment' ELSE 'subtract' END AS kind,
               CASE g %% 20 WHEN 1 THEN 20.00 WHEN 5 THEN 0.50 WHEN 9 THEN 1.00 WHEN 13 THEN 0.30
                            WHEN 17 THEN -0.20 ELSE -0.90 END::numeric(20, 6) AS delta
          FROM (SELECT id, platform_id, row_number() OVER (ORDER BY id) AS n FROM credits_creditaccount
                 WHERE id = ANY(%(accounts)s)) AS a
         CROSS JOIN generate_series(1, %(rows)s) AS g
       ) AS s
"""

SYNC_SQL = """
UPDATE credits_creditaccount AS a
   SET balance = t.balance, last_sequence = t.n, last_entry_at = t.last_at, count_add = t.n_add,
       count_subtract = t.n_subtract, count_adjustment = t.n_adjustment, count_refund = t.n_refund,
       count_checkin = t.n_checkin
  FROM (SELECT account_id, count(*) AS n, sum(balance_delta) AS balance, max(created_at) AS last_at,
               count(*) FILTER (WHERE transaction_type = 'add') AS n_add,
               count(*) FILTER (WHERE transaction_type = 'subtract') AS n_subtract,
               count(*) FILTER (WHERE transaction_type = 'adjustment') AS n_adjustment,
               count(*) FILTER (WHERE transaction_type = 'refund') AS n_refund,
               count(*) FILTER (WHERE transaction_type = 'checkin') AS n_checkin
          FROM credits_ledger_entry WHERE account_id = ANY(%(accounts)s) GROUP BY account_id) AS t
 WHERE a.id = t.account_id
"""

USAGE_SQL = """
INSERT INTO credits_usagerollup (account_id, day, endpoint, total_requests, successful_requests, failed_requests,
                                 credits_consumed, input_tokens, output_tokens)
SELECT a.id, %(first)s::date + d, '/v1/chat', 12, 12, 0, 10.80 + (abs(hashtext(a.id::text)) %% 100) / 100.0, 0, 0
  FROM credits_creditaccount a CROSS JOIN generate_series(0, %(days)s - 1) AS d
 WHERE a.id = ANY(%(accounts)s)
ON CONFLICT DO NOTHING
"""


def generate(first_day) -> list:  # noqa: ANN001
    """Every row described in the module docstring; returns the platforms."""
    from django.db import connection, transaction

    from accounts.services import platform_create
    from credits.models import LedgerEntry
    from credits.partitions import partitions_ensure
    from credits.services import ledger_rollups_backfill
    from payments.models import WebhookEvent
    from payments.recharge_models import Recharge, RechargeStatus
    from subscriptions.models import Subscription
    from subscriptions.services import plan_create

    platforms = [platform_create(platform_key=f"dash-{i:02d}", name=f"Dashboard bench {i}")[0]
                 for i in range(PLATFORMS)]
    if LedgerEntry.objects.filter(platform__platform_key__startswith="dash-").count() >= TOTAL:
        return platforms
    started = time.perf_counter()
    print(f"  generating {TOTAL:,} ledger rows, {PLATFORMS * MEMBERS * DAYS:,} usage rollups ...", flush=True)
    accounts = []
    for platform in platforms:
        accounts += ensure_members(platform, f"dash-{platform.platform_key}", MEMBERS, funds=Decimal(0),
                                   floor=Decimal(0))
    base = datetime.combine(first_day, datetime.min.time(), tzinfo=UTC)
    partitions_ensure(since=first_day)  # the generated months (else their rows land in the default partition)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(GENERATE_SQL, {"accounts": accounts, "base": base, "span": timedelta(days=DAYS),
                                      "rows": ROWS_PER_MEMBER})
        cursor.execute(SYNC_SQL, {"accounts": accounts})
        cursor.execute(USAGE_SQL, {"accounts": accounts, "first": first_day, "days": DAYS})
    print(f"  ... {time.perf_counter() - started:.1f} s", flush=True)
    plans = [plan_create(platform=platforms[0], slug=f"plan-{i}", name=f"Plan {i}", price_monthly=1000 * (i + 1),
                         price_yearly=10000 * (i + 1), credits_included=Decimal(100)) for i in range(3)]
    Subscription.objects.bulk_create([
        Subscription(account_id=account_id, plan=plans[i % 3], status="active", billing_cycle="monthly",
                     provider="manual")
        for i, account_id in enumerate(accounts[:300])
    ])
    WebhookEvent.objects.bulk_create([
        WebhookEvent(provider="stripe", event_id=f"evt_bench_{i}", type="checkout.session.completed",
                     status="failed", payload={}, last_error="bench: order not known")
        for i in range(40)
    ])
    stalled = Recharge.objects.bulk_create([
        Recharge(account_id=account_id, amount_usd=Decimal("10.00"), credits=Decimal(10), provider_customer_id="c",
                 provider_payment_method_id="pm", status=RechargeStatus.PROCESSING, provider_payment_id=f"pi_{i}")
        for i, account_id in enumerate(accounts[300:310])
    ])
    Recharge.objects.filter(pk__in=[r.pk for r in stalled]).update(updated_at=base)
    started = time.perf_counter()
    written = ledger_rollups_backfill()
    print(f"  back-fill of the rollups: {written:,} buckets in {time.perf_counter() - started:.2f} s", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")
    return platforms


# --- the baseline: the same reads, hand-written, raw psycopg ----------------------------------------------------

BASELINE = [
    ("platforms", "SELECT id, platform_key, name FROM accounts_platform ORDER BY platform_key"),
    ("window", """SELECT day, transaction_type, sum(credits_in), sum(credits_out), sum(credits_in_paid),
                         sum(payment_usd), max(refreshed_at)
                    FROM credits_ledgerdailyrollup WHERE platform_id = ANY(%(ids)s) AND day BETWEEN %(first)s AND %(last)s
                   GROUP BY day, transaction_type"""),
    ("before", """SELECT sum(credits_in), sum(credits_out) FROM credits_ledgerdailyrollup
                   WHERE platform_id = ANY(%(ids)s) AND day < %(first)s"""),
    ("live", "SELECT sum(balance) FROM credits_creditaccount WHERE platform_id = ANY(%(ids)s)"),
    ("plans", """SELECT s.plan_id, p.slug, p.name, pl.platform_key, count(*) FILTER (WHERE s.status = 'active'),
                        count(*) FILTER (WHERE s.status = 'trialing'), count(*) FILTER (WHERE s.status = 'past_due'),
                        count(*)
                   FROM subscriptions_subscription s JOIN subscriptions_plan p ON p.id = s.plan_id
                   JOIN credits_creditaccount a ON a.id = s.account_id JOIN accounts_platform pl ON pl.id = a.platform_id
                  WHERE s.status IN ('trialing', 'active', 'past_due') AND a.platform_id = ANY(%(ids)s)
                  GROUP BY 1, 2, 3, 4 ORDER BY 8 DESC, 2"""),
    ("webhooks", "SELECT status, count(*) FROM payments_webhookevent WHERE status IN ('failed', 'parked') GROUP BY 1"),
    ("webhooks_latest", """SELECT id, event_id, provider, type, status, attempts, last_error, received_at
                             FROM payments_webhookevent WHERE status IN ('failed', 'parked')
                            ORDER BY received_at DESC LIMIT 10"""),
    ("recharges", """SELECT count(*) FILTER (WHERE r.status IN ('pending', 'processing') AND r.updated_at < %(stalled)s),
                            count(*) FILTER (WHERE (r.status IN ('pending', 'processing') AND r.updated_at < %(stalled)s)
                                             OR (r.status = 'failed' AND r.failure_reason = 'gave_up'
                                                 AND r.created_at >= %(gave_up)s))
                       FROM payments_recharge r JOIN credits_creditaccount a ON a.id = r.account_id
                      WHERE a.platform_id = ANY(%(ids)s)"""),
    ("recharges_latest", """SELECT r.*, a.platform_id, u.username FROM payments_recharge r
                              JOIN credits_creditaccount a ON a.id = r.account_id
                              LEFT JOIN auth_user u ON u.id = a.user_id
                             WHERE a.platform_id = ANY(%(ids)s)
                               AND ((r.status IN ('pending', 'processing') AND r.updated_at < %(stalled)s)
                                    OR (r.status = 'failed' AND r.failure_reason = 'gave_up'
                                        AND r.created_at >= %(gave_up)s))
                             ORDER BY r.created_at DESC LIMIT 10"""),
    ("top", """SELECT r.account_id, u.username, pl.platform_key, sum(r.credits_consumed), sum(r.total_requests)
                 FROM credits_usagerollup r JOIN credits_creditaccount a ON a.id = r.account_id
                 LEFT JOIN auth_user u ON u.id = a.user_id JOIN accounts_platform pl ON pl.id = a.platform_id
                WHERE a.platform_id = ANY(%(ids)s) AND r.day BETWEEN %(first)s AND %(last)s
                GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1 LIMIT 10"""),
]

DIRECT_SQL = """SELECT (created_at AT TIME ZONE 'UTC')::date, transaction_type, sum(balance_delta)
                  FROM credits_ledger_entry WHERE platform_id = ANY(%(ids)s) AND created_at >= %(start)s
                 GROUP BY 1, 2"""


def baseline(conn, ids: list[int], now: datetime) -> None:  # noqa: ANN001
    from payments import dashboard

    last = now.date()
    params = {"ids": ids, "first": last - timedelta(days=29), "last": last, "stalled": now - dashboard.STALLED_AFTER,
              "gave_up": now - dashboard.GAVE_UP_WITHIN}
    for _, query in BASELINE:
        conn.execute(query, params).fetchall()


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="per side, case and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    print(f"load average before: {load_average()}")
    conninfo = setup_django(BENCH_DB)

    import psycopg
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    from credits.services import ledger_rollups_refresh_range

    version, sync_commit = server_facts()
    print(f"{version}, synchronous_commit={sync_commit}, database {BENCH_DB!r}")
    today = datetime.now(UTC).date()
    platforms = generate(today - timedelta(days=DAYS - 1))
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM credits_ledger_entry")
        ledger_rows = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM credits_ledgerdailyrollup")
        rollup_rows = cursor.fetchone()[0]
    print(f"ledger rows: {ledger_rows:,}; daily rollup rows: {rollup_rows:,}")

    # One day's refresh (a full day in the middle of the data), as the beat runs it for today and yesterday.
    day = today - timedelta(days=10)
    refresh = []
    for _ in range(5):
        started = time.perf_counter()
        ledger_rollups_refresh_range(first=day, last=day)
        refresh.append(time.perf_counter() - started)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM credits_ledger_entry WHERE created_at >= %s AND created_at < %s",
                       [datetime.combine(day, datetime.min.time(), tzinfo=UTC),
                        datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)])
        day_rows = cursor.fetchone()[0]
    print(f"rollup refresh of one UTC day ({day_rows:,} ledger rows): median {median_ms(refresh):.1f} ms of 5")

    user = get_user_model().objects.filter(username="bench-root").first() or get_user_model().objects.create_superuser(
        "bench-root", "root@bench.test", "bench-pw")
    client = Client()
    client.force_login(user)
    url = reverse("admin:billing_dashboard")
    all_ids = [p.pk for p in platforms]
    cases = {"all platforms": ({}, all_ids), "one platform": ({"platform": platforms[0].platform_key},
                                                             [platforms[0].pk])}
    raw = psycopg.connect(autocommit=True, **conninfo)
    with raw.cursor() as cur:  # the direct aggregation the rollups replace, once, for scale
        started = time.perf_counter()
        cur.execute(DIRECT_SQL, {"ids": all_ids, "start": datetime.now(UTC) - timedelta(days=30)})
        cur.fetchall()
        direct = time.perf_counter() - started
    print(f"for scale: the 30 days' sums straight from the ledger (all platforms, raw SQL): {direct * 1000:.0f} ms")

    for _ in range(3):  # warm-up: connections, caches, templates
        for query, _ids in cases.values():
            assert client.get(url, query).status_code == 200
            baseline(raw, _ids, datetime.now(UTC))
    results = {name: {"dashboard": [], "baseline": []} for name in cases}
    for _ in range(args.rounds):
        for _ in range(args.requests):
            for name, (query, ids) in cases.items():
                started = time.perf_counter()
                response = client.get(url, query)
                results[name]["dashboard"].append(time.perf_counter() - started)
                assert response.status_code == 200
                started = time.perf_counter()
                baseline(raw, ids, datetime.now(UTC))
                results[name]["baseline"].append(time.perf_counter() - started)
    raw.close()
    print(f"\nGET {url} (Django test client, superuser) vs the same reads in raw psycopg; "
          f"medians of {args.rounds} x {args.requests}")
    print(f"{'case':<15} {'dashboard':>12} {'baseline':>12} {'ratio':>7}")
    for name, sides in results.items():
        ours, theirs = median_ms(sides["dashboard"]), median_ms(sides["baseline"])
        print(f"{name:<15} {ours:>9.1f} ms {theirs:>9.1f} ms {ours / theirs:>7.2f}")
    print(f"load average after: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
