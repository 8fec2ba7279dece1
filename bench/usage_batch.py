"""Batch usage ingestion: events/s through POST /api/billing/usage/batch/ vs raw psycopg writing the same rows.

1,000 funded accounts; every batch holds 1,000 events, one per account (amount given, a new request_id each).

- ``project``:  a real gunicorn server started by this script exactly as ``make run`` serves (3 workers x 4
                gthread threads, ``--preload``, access log on), ``DATABASE_URL`` pointing at the bench database;
                C client threads (default 2) each post batches on a keep-alive ``http.client`` connection,
                bodies encoded before the clock starts. Counted: the ``recorded`` of each response.
- ``baseline``: raw psycopg 3, one connection per thread, the same C threads, one transaction per batch
                writing the rows the service writes for it: lock the accounts (``SELECT ... ORDER BY id FOR
                UPDATE``, which also reads the balances and sequences the ledger rows carry), COPY the 1,000
                ledger rows, ``UPDATE credits_creditaccount ... FROM unnest(...)``, COPY the 1,000 usage events,
                upsert the rollups (``INSERT ... SELECT FROM unnest ... ON CONFLICT DO UPDATE``), COMMIT. What the
                service derives from the input alone (request hashes, labels) is computed before the clock.

Sides alternate over several rounds; prints events/s per side per round, CPU per 1,000 events (this client,
the gunicorn processes, the PostgreSQL backends), the medians and the ratio project/baseline (target: the
project >= 20,000 events/s on this 2-core machine). Then verifies: events = recorded + baseline rows, rollups
= events, each sampled account's subtract rows = its events, ``ledger_verify`` of a sample of accounts.

``--sweep`` first runs the project alone at 1..4 client threads (two passes, 1-4 then 4-1) to find the
concurrency that maximises its throughput. ``--phases`` first prints the CPU per phase of the baseline's
transaction (client and PostgreSQL), with the foreign-key checks on and off. (The ``--proposed`` side of issue 8
is gone: both of its changes, binary arrays and the regex text check, are in the app.)

Own database: ``billing_bench_usage_batch`` (``BENCH_DATABASE_NAME`` overrides), DROPPED AND RE-CREATED every
run (a run writes a few million rows; ``--keep`` reuses it).

    .venv/bin/python bench/usage_batch.py [--threads 2] [--seconds 10] [--rounds 3] [--sweep] [--phases] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BackendCpu,
    Request,
    Server,
    ensure_members,
    load_average,
    proc_cpu,
    run_load,
    server_facts,
    setup_django,
)

BENCH_DB = os.environ.get("BENCH_DATABASE_NAME", "billing_bench_usage_batch")
PLATFORM_KEY = "bench-usage-batch"
ACCOUNTS = 1000
FUNDS, FLOOR = Decimal(1000000000), Decimal(100000000)
AMOUNT = Decimal("0.0125")
ENDPOINTS = ["/v1/chat/completions", "/v1/embeddings", "/v1/images/generations"]
TARGET = 20_000
RECORDED = re.compile(rb'"recorded":\s*(\d+)')


# --- the project's side: pre-encoded batches ---------------------------------------------------------


def encode_batch(accounts: list[str], prefix: str, endpoint: str) -> bytes:
    order = accounts[:]
    random.shuffle(order)
    events = ",".join(
        f'{{"account_id":"{a}","request_id":"{prefix}-{k}","endpoint":"{endpoint}","amount":"{AMOUNT}"}}'
        for k, a in enumerate(order)
    )
    return f'{{"events":[{events}]}}'.encode()


def project_work(accounts: list[str], *, run: str, tag: str, threads: int, per_thread: int) -> list:
    return [
        [Request("POST", "/api/billing/usage/batch/",
                 encode_batch(accounts, f"{run}-p{tag}-{t}-{b}", ENDPOINTS[b % len(ENDPOINTS)]))
         for b in range(per_thread)]
        for t in range(threads)
    ]


def recorded(body: bytes) -> int:
    found = RECORDED.search(body, 0, 200)
    if found is None:
        raise RuntimeError(f"no 'recorded' in {body[:200]!r}")
    return int(found.group(1))


# --- the baseline: raw psycopg -----------------------------------------------------------------------

LOCK = """
SELECT id, platform_id, balance, reserved, last_sequence, count_subtract, last_entry_at, clock_timestamp()
  FROM credits_creditaccount WHERE id = ANY(%s) ORDER BY id FOR UPDATE
"""
COPY_LEDGER = """
COPY credits_ledger_entry (id, account_id, platform_id, sequence, transaction_type, status, balance_delta,
     reserved_delta, balance_after, reserved_after, payment_amount_usd, description, reference, metadata, actor_id,
     hold_id, refund_of_id, idempotency_key, request_hash, created_at) FROM STDIN
"""
UPDATE_ACCOUNTS = """
UPDATE credits_creditaccount AS a
   SET balance = v.balance, last_sequence = v.last_sequence, count_subtract = v.count_subtract,
       last_entry_at = v.last_entry_at
  FROM unnest(%s::uuid[], %s::numeric[], %s::bigint[], %s::bigint[], %s::timestamptz[])
       AS v(id, balance, last_sequence, count_subtract, last_entry_at)
 WHERE a.id = v.id
"""
COPY_EVENTS = """
COPY credits_usageevent (id, account_id, platform_id, request_id, endpoint, model, input_tokens, output_tokens,
     cost, charged, funded_by, priced_by, price_id, success, description, metadata, ledger_entry_id, hold_id,
     request_hash, occurred_at, recorded_at) FROM STDIN
"""
UPSERT_ROLLUPS = """
INSERT INTO credits_usagerollup AS r (account_id, day, endpoint, total_requests, successful_requests,
       failed_requests, credits_consumed, input_tokens, output_tokens)
SELECT * FROM unnest(%s::uuid[], %s::date[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[], %s::numeric[],
                     %s::bigint[], %s::bigint[])
ON CONFLICT (account_id, day, endpoint) DO UPDATE SET
       total_requests = r.total_requests + EXCLUDED.total_requests,
       successful_requests = r.successful_requests + EXCLUDED.successful_requests,
       failed_requests = r.failed_requests + EXCLUDED.failed_requests,
       credits_consumed = r.credits_consumed + EXCLUDED.credits_consumed,
       input_tokens = r.input_tokens + EXCLUDED.input_tokens,
       output_tokens = r.output_tokens + EXCLUDED.output_tokens
"""


def baseline_batch(accounts: list[uuid.UUID], prefix: str, endpoint: str) -> list[tuple]:
    """One batch's events as the service would derive them from the input before touching the database:
    (account_id, request_id, endpoint, cost, request_hash, ledger label, ledger key)."""
    from credits.services import UsageInput

    order = accounts[:]
    random.shuffle(order)
    events = []
    for k, account_id in enumerate(order):
        request_id = f"{prefix}-{k}"
        digest = UsageInput(account_id=account_id, request_id=request_id, endpoint=endpoint, amount=AMOUNT).digest()
        events.append((account_id, request_id, endpoint, AMOUNT, digest, f"AI usage: {endpoint}",
                       f"usage:{request_id}"))
    return events


class Baseline:
    """Each thread: its own autocommit-off psycopg connection, one transaction per batch."""

    def __init__(self, conninfo: dict) -> None:
        self.conninfo = conninfo

    def run(self, work: list[list[list[tuple]]], *, seconds: float) -> dict:
        import psycopg

        threads = len(work)
        state: dict = {}
        done = [0] * threads
        ends = [0.0] * threads
        latencies: list[list[float]] = [[] for _ in range(threads)]
        errors: list[BaseException] = []
        db_cpu = [0.0] * threads

        def go() -> None:
            state["client_cpu"] = time.process_time()
            state["start"] = time.perf_counter()

        barrier = threading.Barrier(threads, action=go)

        def worker(i: int) -> None:
            conn = None
            try:
                conn = psycopg.connect(**self.conninfo)
                pid = conn.info.backend_pid
                before = proc_cpu(pid)
                barrier.wait()
                deadline = state["start"] + seconds
                n = 0
                for events in work[i]:
                    t0 = time.perf_counter()
                    if t0 >= deadline:
                        break
                    self.write(conn, events)
                    latencies[i].append(time.perf_counter() - t0)
                    n += len(events)
                else:
                    if time.perf_counter() < deadline:
                        raise RuntimeError(f"baseline thread {i} ran out of batches ({len(work[i])})")
                done[i], ends[i] = n, time.perf_counter()
                after = proc_cpu(pid)
                db_cpu[i] = after - before if before is not None and after is not None else float("nan")
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                barrier.abort()
            finally:
                if conn is not None:
                    conn.close()

        pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        if errors:
            raise errors[0]
        client_cpu = time.process_time() - state["client_cpu"]
        elapsed = max(ends) - state["start"]
        lat = sorted(x for per in latencies for x in per)
        total = sum(done)
        return {"requests": len(lat), "units": total, "elapsed": elapsed, "unit_rate": total / elapsed,
                "p50_ms": lat[len(lat) // 2] * 1000, "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
                "client_cpu": client_cpu, "server_cpu": 0.0, "db_cpu": sum(db_cpu)}

    @staticmethod
    def write(conn, events: list[tuple], lap=lambda mark: None) -> None:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(LOCK, [sorted({e[0] for e in events})], prepare=True)
            state = {row[0]: list(row[1:]) for row in cur.fetchall()}
            lap("lock")
            now = None
            ledger_rows, event_rows = [], []
            rollups: dict[tuple, list] = defaultdict(lambda: [0, Decimal(0)])
            for account_id, request_id, endpoint, cost, digest, label, key in events:
                s = state[account_id]  # platform_id, balance, reserved, last_sequence, count_subtract, last, now
                at = s[5] if s[5] is not None and s[5] > s[6] else s[6]
                now = now or s[6]
                balance = s[1] - cost
                if balance < s[2]:
                    raise RuntimeError("baseline: account out of credits")
                s[1], s[3], s[4], s[5] = balance, s[3] + 1, s[4] + 1, at
                entry_id, event_id = uuid.uuid4(), uuid.uuid4()
                ledger_rows.append((
                    entry_id, account_id, s[0], s[3], "subtract", "completed", -cost, 0, balance, s[2], None, label,
                    request_id, json.dumps({"usage_event_id": str(event_id), "endpoint": endpoint, "model": ""}),
                    None, None, None, key, digest, at,
                ))
                event_rows.append((
                    event_id, account_id, s[0], request_id, endpoint, "", None, None, cost, cost, "", "amount", None, True, "",
                    "{}", entry_id, None, digest, now, now,
                ))
                bucket = rollups[(account_id, now.astimezone(UTC).date(), endpoint)]
                bucket[0] += 1
                bucket[1] += cost
            lap("python rows")
            with cur.copy(COPY_LEDGER) as copy:
                for row in ledger_rows:
                    copy.write_row(row)
            lap("COPY ledger")
            ids = sorted(state)
            cur.execute(UPDATE_ACCOUNTS, [ids, [state[a][1] for a in ids], [state[a][3] for a in ids],
                                          [state[a][4] for a in ids], [state[a][5] for a in ids]], prepare=True)
            lap("UPDATE accounts")
            with cur.copy(COPY_EVENTS) as copy:
                for row in event_rows:
                    copy.write_row(row)
            lap("COPY events")
            keys = sorted(rollups)
            cur.execute(UPSERT_ROLLUPS, [
                [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
                [rollups[k][0] for k in keys], [rollups[k][0] for k in keys], [0] * len(keys),
                [rollups[k][1] for k in keys], [0] * len(keys), [0] * len(keys),
            ], prepare=True)
            lap("rollup upsert")
        lap("COMMIT")


def baseline_work(accounts: list[uuid.UUID], *, run: str, tag: str, threads: int, per_thread: int) -> list:
    return [
        [baseline_batch(accounts, f"{run}-r{tag}-{t}-{b}", ENDPOINTS[b % len(ENDPOINTS)]) for b in range(per_thread)]
        for t in range(threads)
    ]


# --- where the baseline's time goes --------------------------------------------------------------------


def phases(conninfo: dict, account_ids: list[uuid.UUID], batches: int = 10) -> None:
    """CPU of this process and of the PostgreSQL backend per phase of the baseline's transaction, single
    thread, with the foreign-key checks as they are and then switched off for the session
    (``session_replication_role = replica``, superuser only: the rows are valid either way), to show what the
    deferred FK checks cost at COMMIT."""
    import psycopg

    marks = ["lock", "python rows", "COPY ledger", "UPDATE accounts", "COPY events", "rollup upsert", "COMMIT"]
    print(f"phases of the baseline's transaction, {batches} batches each, CPU per 1,000 events "
          "(this process / the PostgreSQL backend):")
    for label, setup in (("FK checks on", None), ("FK checks off", "SET session_replication_role = replica")):
        conn = psycopg.connect(**conninfo)
        try:
            if setup:
                conn.execute(setup)
                conn.commit()
            pid = conn.info.backend_pid
            totals = {m: [0.0, 0.0] for m in marks}
            for b in range(batches):
                events = baseline_batch(account_ids, f"phase-{uuid.uuid4().hex[:8]}-{b}", ENDPOINTS[b % 3])
                clock = [time.process_time(), proc_cpu(pid)]

                def lap(mark: str) -> None:
                    now = [time.process_time(), proc_cpu(pid)]
                    totals[mark][0] += now[0] - clock[0]
                    totals[mark][1] += now[1] - clock[1]
                    clock[:] = now

                Baseline.write(conn, events, lap=lap)
        finally:
            conn.close()
        print(f"  {label:<14} " + ", ".join(
            f"{m} {c / batches * 1000:.0f}/{d / batches * 1000:.0f} ms" for m, (c, d) in totals.items())
            + f"; total {sum(c for c, _ in totals.values()) / batches * 1000:.0f}/"
            f"{sum(d for _, d in totals.values()) / batches * 1000:.0f} ms")
    print()


# --- main --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="client threads posting batches concurrently")
    parser.add_argument("--seconds", type=float, default=10.0, help="per side per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds per side before round 1 (discarded)")
    parser.add_argument("--sweep", action="store_true", help="first run the project at 1..4 client threads")
    parser.add_argument("--keep", action="store_true", help="reuse the bench database instead of re-creating it")
    parser.add_argument("--phases", action="store_true",
                        help="first: CPU per phase of the baseline's transaction, with and without FK checks")
    args = parser.parse_args()

    conninfo = setup_django(BENCH_DB, fresh=not args.keep)

    from django.db import connection

    from accounts.models import Role
    from accounts.services import api_token_issue, member_add, platform_create

    platform, _ = platform_create(platform_key=PLATFORM_KEY, name="Benchmark: batch usage ingestion")
    membership, _ = member_add(platform=platform, username="bench-batch-backend", role=Role.OWNER)
    token = api_token_issue(user=membership.user, name="bench")  # keys are shown once: one per run
    account_ids = ensure_members(platform, "batch", ACCOUNTS, funds=FUNDS, floor=FLOOR)
    version, sync_commit = server_facts()
    connection.close()

    run = uuid.uuid4().hex[:8]
    print(f"Batch usage ingestion: batches of 1,000 events over {ACCOUNTS:,} accounts (one event each), "
          f"{args.threads} client threads, {args.seconds:g} s per side, {args.rounds} rounds (order alternates)")
    print(f"database {BENCH_DB!r} ({version}, synchronous_commit={sync_commit}); gunicorn as `make run` "
          f"(3 workers x 4 threads, gthread); run {run}")
    print(f"load average before: {load_average()} on {os.cpu_count()} CPUs")
    print()
    if args.phases:
        phases(conninfo, account_ids)
    sides = _Sides(conninfo, run=run, token=token.key, account_ids=account_ids)
    try:
        with Server(conninfo) as server:
            sides.server = server
            sides.measure(args)
    finally:
        sides.backends.close()
    print(f"load average after:  {load_average()}")
    print()
    consistent, ok = _verify(platform, run=run, written=sides.written, account_ids=account_ids)
    _summary(sides.results)
    return 0 if consistent and ok else 1


_HEADER = (f"{'round':>5}  {'side':<9} {'events':>8} {'secs':>5} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8}  "
           f"CPU per 1,000 events: client, gunicorn, postgres")


class _Sides:
    """The two sides' load, run against one gunicorn (``server``) and the raw baseline, with what they wrote."""

    def __init__(self, conninfo: dict, *, run: str, token: str, account_ids: list[uuid.UUID]) -> None:
        self.run, self.account_ids = run, account_ids
        self.account_strs = [str(a) for a in account_ids]
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        self.backends = BackendCpu(conninfo)
        self.baseline = Baseline(conninfo)
        self.server: Server | None = None
        self.written = {"project": 0, "baseline": 0}
        self.results: dict[str, list[dict]] = {"project": [], "baseline": []}
        self.estimate: dict[str, float] = {}
        self.seq = iter(range(1_000_000))

    def side(self, side: str, threads: int, seconds: float) -> dict:
        estimate = self.estimate.get(side, 60_000 if side == "baseline" else 30_000)
        per_thread = int(estimate * seconds * 2.5 / 1000 / threads) + 3
        tag = str(next(self.seq))
        if side == "baseline":
            work = baseline_work(self.account_ids, run=self.run, tag=tag, threads=threads, per_thread=per_thread)
            res = self.baseline.run(work, seconds=seconds)
        else:
            work = project_work(self.account_strs, run=self.run, tag=tag, threads=threads, per_thread=per_thread)
            res = run_load(self.server.port, work, headers=self.headers, seconds=seconds, expect=200,
                           count=recorded, server=self.server, backends=self.backends)
            if res["units"] != res["requests"] * 1000:
                raise RuntimeError(f"recorded {res['units']} of {res['requests'] * 1000} events")
        self.written[side] += res["units"]
        self.estimate[side] = max(self.estimate.get(side, 0), res["unit_rate"])
        return res

    def measure(self, args: argparse.Namespace) -> None:
        """The warm-up, the optional concurrency sweep, then the rounds (side order alternating)."""
        sides = list(self.results)
        for side in sides:
            self.side(side, args.threads, args.warmup)
        if args.sweep:
            print("sweep: the project alone at 1..4 client threads, two passes (1-4, then 4-1)")
            print(_HEADER)
            print("-" * len(_HEADER))
            sweep: dict[int, list[float]] = defaultdict(list)
            for threads in (1, 2, 3, 4, 4, 3, 2, 1):
                res = self.side("project", threads, args.seconds)
                sweep[threads].append(res["unit_rate"])
                print(_line(f"c={threads}", "project", res), flush=True)
            print("median events/s per concurrency: "
                  + ", ".join(f"c={c}: {statistics.median(v):,.0f}" for c, v in sorted(sweep.items())))
            print()
        print(_HEADER)
        print("-" * len(_HEADER))
        for r in range(args.rounds):
            order = sides[r % len(sides):] + sides[: r % len(sides)]
            if r % 2:
                order = order[::-1]
            for side in order:
                res = self.side(side, args.threads, args.seconds)
                self.results[side].append(res)
                print(_line(str(r + 1), side, res, server_cpu=side != "baseline"), flush=True)


def _line(label: str, side: str, res: dict, server_cpu: bool = True) -> str:
    k = res["units"] / 1000
    return (f"{label:>5}  {side:<9} {res['units']:>8,} {res['elapsed']:>5.1f} {res['unit_rate']:>9,.0f} "
            f"{res['p50_ms']:>8.0f} {res['p99_ms']:>8.0f}  {res['client_cpu'] / k * 1000:>7.0f} ms "
            + (f"{res['server_cpu'] / k * 1000:>7.0f} ms" if server_cpu else f"{'-':>10}")
            + f" {res['db_cpu'] / k * 1000:>7.0f} ms")


def _verify(platform: object, *, run: str, written: dict, account_ids: list[uuid.UUID]) -> tuple[bool, bool]:
    """events = recorded + baseline rows, rollups = events, each sampled account's subtract rows = its events;
    ``ledger_verify`` of the sample."""
    from django.db import connection

    from credits.models import CreditAccount, UsageEvent, UsageRollup
    from credits.verification import ledger_verify

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM credits_usageevent WHERE platform_id = %s AND request_id LIKE %s",
                       [platform.pk, f"{run}-%"])
        events = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM credits_usageevent WHERE platform_id = %s", [platform.pk])
        all_events = cursor.fetchone()[0]
        cursor.execute("SELECT coalesce(sum(total_requests), 0) FROM credits_usagerollup r "
                       "JOIN credits_creditaccount a ON a.id = r.account_id WHERE a.platform_id = %s", [platform.pk])
        rolled = cursor.fetchone()[0]
    expected = sum(written.values())
    sample = random.sample(account_ids, 20)
    problems = []
    for account in CreditAccount.objects.filter(pk__in=sample):
        n = UsageEvent.objects.filter(account=account).count()
        r = sum(x.total_requests for x in UsageRollup.objects.filter(account=account))
        if not (account.count_subtract == n == r):
            problems.append(f"{account.pk}: subtract rows {account.count_subtract}, events {n}, rollups {r}")
    consistent = events == expected and rolled == all_events and not problems
    print(f"events of this run {events:,} = recorded {written['project']:,} + baseline {written['baseline']:,}; "
          f"rollup total {rolled:,} = events {all_events:,}; 20 sampled accounts: subtract rows = events = rollups: "
          f"{'consistent' if consistent else 'MISMATCH ' + '; '.join(problems[:3])}")
    started = time.perf_counter()
    checks = [ledger_verify(account=a) for a in CreditAccount.objects.filter(pk__in=sample)]
    ok = all(c.ok for c in checks)
    print(f"ledger_verify of the 20 sampled accounts: ok={ok} ({time.perf_counter() - started:.1f} s)"
          + ("" if ok else f" problems={[c.problems[:3] for c in checks if not c.ok][:3]}"))
    print()
    return consistent, ok


def _summary(results: dict[str, list[dict]]) -> None:
    def med(side: str, key: str) -> float:
        return statistics.median(x[key] / (x["units"] / 1000 if key.endswith("cpu") else 1) for x in results[side])

    labels = {"project": "POST /usage/batch/ (gunicorn)", "baseline": "raw psycopg, same rows"}
    for side, label in labels.items():
        print(f"{side:<9} ({label:<29}) median {med(side, 'unit_rate'):7,.0f} events/s; CPU per 1,000 events: "
              f"client {med(side, 'client_cpu') * 1000:4.0f} ms, gunicorn {med(side, 'server_cpu') * 1000:4.0f} ms, "
              f"postgres {med(side, 'db_cpu') * 1000:4.0f} ms")

    def cpu(res: dict) -> float:
        return (res["client_cpu"] + res["server_cpu"] + res["db_cpu"]) / res["units"]

    pairs = list(zip(results["project"], results["baseline"], strict=True))
    per_round = [p["unit_rate"] / b["unit_rate"] for p, b in pairs]
    print(f"ratio project/baseline = {med('project', 'unit_rate') / med('baseline', 'unit_rate'):.2f} "
          f"(per round {', '.join(f'{x:.2f}' for x in per_round)}; CPU per event baseline/project "
          f"{statistics.median(cpu(b) / cpu(p) for p, b in pairs):.2f})")
    rate = med("project", "unit_rate")
    print(f"project {rate:,.0f} events/s  (target >= {TARGET:,}: {'MET' if rate >= TARGET else 'MISSED'})")


if __name__ == "__main__":
    sys.exit(main())
