"""The hot paths through PgBouncer (transaction pooling) vs direct: the hot debit and the usage event over HTTP.

A real PgBouncer (Debian's, ``scripts/ensure-pgbouncer``; started by this script with ``tests/ops/pgbouncer.py``,
in front of the same PostgreSQL, ``pool_mode = transaction``, ``default_pool_size`` 10 by default, PgBouncer's
default LIFO reuse). Three sides, alternated over several rounds (order rotates), on the same database:

- ``direct``:     straight to PostgreSQL, ``DATABASE_POOLER`` unset: the hot statements prepared (as today).
- ``unprepared``: straight to PostgreSQL, but as ``DATABASE_POOLER=pgbouncer`` runs (nothing prepared): the cost
                  of giving up prepared statements alone.
- ``pgbouncer``:  through PgBouncer with ``DATABASE_POOLER=pgbouncer``: the hop and the unprepared statements.

1. Hot debit: N threads (default 16) call ``credits.services.credits_debit`` on ONE account, in this process, each
   on its own Django connection (as bench/debit_hot.py's project side).
2. Usage event: POST /api/billing/usage/ (a new request_id each, 100 funded accounts) from N keep-alive client
   connections to a real gunicorn per side, started as ``make run`` serves (bench/_common.py ``Server``), with
   ``DATABASE_URL`` (and ``DATABASE_POOLER``) set for that side.

Prints each run, the medians, the ratios pgbouncer/direct and unprepared/direct, and CPU per operation (this
process, gunicorn, the PostgreSQL backends, PgBouncer); then checks the rows (``ledger_verify``).

Own database: ``billing_bench_pgbouncer`` (``BENCH_DATABASE_NAME`` overrides), created and migrated if missing.

    .venv/bin/python bench/pgbouncer.py [--threads 16] [--seconds 6] [--rounds 3] [--pool-size 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import uuid
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    ROOT,
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
from debit_hot import ProjectSide, run_side  # noqa: E402

sys.path.insert(0, str(ROOT))
from tests.ops.pgbouncer import PgBouncer, pgbouncer_binary  # noqa: E402

BENCH_DB = os.environ.get("BENCH_DATABASE_NAME", "billing_bench_pgbouncer")
PLATFORM_KEY = "bench-pgbouncer"
ACCOUNTS = 100
FUNDS, FLOOR = Decimal(1000000000), Decimal(10000000)
DEBIT = Decimal("0.01")
SIDES = ["direct", "unprepared", "pgbouncer"]
POOLER = {"direct": "none", "unprepared": "pgbouncer", "pgbouncer": "pgbouncer"}


def rotate(r: int) -> list[str]:
    order = SIDES[r % len(SIDES):] + SIDES[: r % len(SIDES)]
    return order[::-1] if r % 2 else order


# --- 1. the hot debit, in this process ----------------------------------------------------------------------


def point_django(side: str, direct: dict, bouncer: PgBouncer) -> None:
    """The default connection's settings (shared by every thread's connection) for ``side``."""
    from django.db import connection

    connection.close()
    settings_dict = connection.settings_dict
    settings_dict.update(direct)
    if side == "pgbouncer":
        settings_dict.update(HOST=bouncer.host, PORT=str(bouncer.port))
    settings_dict["POOLER"] = POOLER[side]
    settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = side != "direct"


def debit_rounds(args: argparse.Namespace, account_id: uuid.UUID, conninfo: dict, bouncer: PgBouncer) -> dict:
    from django.db import connection

    direct = {k: connection.settings_dict[k] for k in ("HOST", "PORT", "POOLER", "DISABLE_SERVER_SIDE_CURSORS")
              if k in connection.settings_dict}
    side_runner = ProjectSide(account_id, conninfo)
    backends = BackendCpu(conninfo)
    results: dict[str, list[dict]] = {side: [] for side in SIDES}
    written = 0
    try:
        for side in SIDES:  # warm-up
            point_django(side, direct, bouncer)
            written += run_side(side_runner, threads=args.threads, seconds=1.0)["debits"]
        header = (f"{'round':>5}  {'side':<11} {'debits':>7} {'debits/s':>9} {'p50 ms':>7} {'p99 ms':>7}  "
                  f"CPU per debit: {'client':>7} {'postgres':>9} {'pgbouncer':>9}")
        print(header)
        print("-" * len(header))
        for r in range(args.rounds):
            for side in rotate(r):
                point_django(side, direct, bouncer)
                db_before, pgb_before = backends.snapshot(), proc_cpu(bouncer.proc.pid) or 0.0
                res = run_side(side_runner, threads=args.threads, seconds=args.seconds)
                # Direct connections live for one run (run_side measures their backends); PgBouncer's server
                # connections outlive it (measured here, before and after)
                res["db_cpu"] = (BackendCpu.used(db_before, backends.snapshot()) if side == "pgbouncer"
                                 else res["server_us"] * res["debits"] / 1e6)
                res["pgb_cpu"] = (proc_cpu(bouncer.proc.pid) or 0.0) - pgb_before
                n = res["debits"]
                written += n
                results[side].append(res)
                print(f"{r + 1:>5}  {side:<11} {n:>7} {res['rate']:>9.0f} {res['p50_ms']:>7.2f} {res['p99_ms']:>7.2f}"
                      f"  {'':>14} {res['client_us']:>4.0f} us {res['db_cpu'] / n * 1e6:>6.0f} us "
                      f"{res['pgb_cpu'] / n * 1e6:>6.0f} us", flush=True)
    finally:
        backends.close()
        point_django("direct", direct, bouncer)
    results["written"] = written  # type: ignore[assignment]
    return results


# --- 2. the usage event over HTTP ---------------------------------------------------------------------------


def usage_work(side: str, *, run: str, tag: str, threads: int, per_thread: int, accounts: list[str]) -> list:
    work = []
    for t in range(threads):
        reqs = []
        for i in range(per_thread):
            body = {"account_id": accounts[(t * per_thread + i) % len(accounts)], "request_id":
                    f"{run}-{tag}-{side}-{t}-{i}", "endpoint": "/v1/chat/completions", "amount": "0.0125"}
            reqs.append(Request("POST", "/api/billing/usage/", json.dumps(body, separators=(",", ":")).encode()))
        work.append(reqs)
    return work


def usage_rounds(args: argparse.Namespace, conninfo: dict, bouncer: PgBouncer, *, token: str,
                 accounts: list[str], run: str) -> tuple[dict, int]:
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    envs = {"direct": {"DATABASE_POOLER": "none"}, "unprepared": {"DATABASE_POOLER": "pgbouncer"},
            "pgbouncer": {"DATABASE_POOLER": "pgbouncer", "DATABASE_URL": bouncer.database_url(conninfo["dbname"])}}
    results: dict[str, list[dict]] = {side: [] for side in SIDES}
    sent = 0
    backends = BackendCpu(conninfo)
    servers = {side: Server(conninfo, env=envs[side]) for side in SIDES}
    try:
        for server in servers.values():
            server.__enter__()
        estimate = {}
        for side in SIDES:
            res = run_load(servers[side].port, usage_work(side, run=run, tag="w", threads=args.threads,
                                                          per_thread=800, accounts=accounts),
                           headers=headers, seconds=2.0, expect=201)
            estimate[side], sent = res["rate"], sent + res["requests"]
        header = (f"{'round':>5}  {'side':<11} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7}  "
                  f"CPU per request: {'client':>7} {'gunicorn':>9} {'postgres':>9} {'pgbouncer':>9}")
        print(header)
        print("-" * len(header))
        for r in range(args.rounds):
            for side in rotate(r):
                per_thread = int(max(estimate.values()) * args.seconds * 4 / args.threads) + 300
                work = usage_work(side, run=run, tag=f"r{r}", threads=args.threads, per_thread=per_thread,
                                  accounts=accounts)
                pgb_before = proc_cpu(bouncer.proc.pid) or 0.0
                res = run_load(servers[side].port, work, headers=headers, seconds=args.seconds, expect=201,
                               server=servers[side], backends=backends)
                res["pgb_cpu"] = (proc_cpu(bouncer.proc.pid) or 0.0) - pgb_before
                estimate[side] = max(estimate[side], res["rate"])
                results[side].append(res)
                n = res["requests"]
                sent += n
                print(f"{r + 1:>5}  {side:<11} {n:>8} {res['rate']:>7.0f} {res['p50_ms']:>7.2f} {res['p99_ms']:>7.2f}"
                      f"  {'':>16} {res['client_cpu'] / n * 1e6:>4.0f} us {res['server_cpu'] / n * 1e6:>6.0f} us "
                      f"{res['db_cpu'] / n * 1e6:>6.0f} us {res['pgb_cpu'] / n * 1e6:>6.0f} us", flush=True)
    finally:
        for server in servers.values():
            server.stop()
        backends.close()
    return results, sent


# --- summary -------------------------------------------------------------------------------------------------


def summary(title: str, results: dict, unit: str) -> None:
    medians = {side: statistics.median(x["rate"] for x in results[side]) for side in SIDES}
    print(f"{title}:")
    for side in SIDES:
        print(f"  {side:<11} median {medians[side]:7.0f} {unit}")
    for side in ("pgbouncer", "unprepared"):
        per_round = [s["rate"] / d["rate"] for s, d in zip(results[side], results["direct"], strict=True)]
        print(f"  ratio {side}/direct = {medians[side] / medians['direct']:.2f} "
              f"(per round {', '.join(f'{x:.2f}' for x in per_round)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=16, help="debit threads, HTTP client connections")
    parser.add_argument("--seconds", type=float, default=6.0, help="per side per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pool-size", type=int, default=10, help="PgBouncer's default_pool_size")
    parser.add_argument("--only", choices=["debit", "usage"], help="one of the two benchmarks")
    args = parser.parse_args()
    if pgbouncer_binary() is None:
        print("no pgbouncer binary: scripts/ensure-pgbouncer installs Debian's (root with apt-get)")
        return 1

    conninfo = setup_django(f"billing_bench_{BENCH_DB.removeprefix('billing_bench_')}")
    from django.db import connection

    from accounts.models import Role
    from accounts.services import member_add, platform_create
    from credits.models import CreditAccount
    from credits.selectors import account_for
    from credits.verification import ledger_verify
    from credits.services import credits_grant

    platform, _ = platform_create(platform_key=PLATFORM_KEY, name="Benchmark: PgBouncer")
    membership, _ = member_add(platform=platform, username=f"hot-{uuid.uuid4().hex[:12]}")
    hot = account_for(platform=platform, user=membership.user)
    credits_grant(account_id=hot.id, amount=FUNDS, description="bench funds")
    _, token = member_add(platform=platform, username="bench-pgbouncer-backend", role=Role.OWNER)
    accounts = [str(a) for a in ensure_members(platform, "pgb", ACCOUNTS, funds=FUNDS, floor=FLOOR)]
    version, sync_commit = server_facts()
    connection.close()

    with PgBouncer(connection.settings_dict, pool_size=args.pool_size, round_robin=False) as bouncer:
        print(f"PgBouncer {'.'.join(map(str, bouncer.version))}, transaction pooling, default_pool_size "
              f"{args.pool_size}; database {conninfo['dbname']!r} ({version}, synchronous_commit={sync_commit})")
        print(f"{args.threads} threads/connections, {args.seconds:g} s per side, {args.rounds} rounds (order rotates)")
        print(f"load average before: {load_average()} on {os.cpu_count()} CPUs\n")
        debits = usage = None
        if args.only in (None, "debit"):
            print("1. Hot debit: credits_debit on ONE account, in this process")
            debits = debit_rounds(args, hot.id, conninfo, bouncer)
            print()
        if args.only in (None, "usage"):
            print("2. Usage event: POST /api/billing/usage/ to gunicorn as `make run` serves, one server per side")
            usage, _ = usage_rounds(args, conninfo, bouncer, token=getattr(token, "key", token), accounts=accounts,
                                    run=uuid.uuid4().hex[:10])
            print()
    print(f"load average after:  {load_average()}\n")

    hot = CreditAccount.objects.get(pk=hot.pk)
    checks = [ledger_verify(account=hot)] + [ledger_verify(account=a) for a in
                                             CreditAccount.objects.filter(pk__in=accounts[:10])]
    ok = all(c.ok for c in checks)
    consistent = debits is None or hot.balance == FUNDS - DEBIT * debits["written"]
    print(f"ledger_verify (hot account + 10 usage accounts): ok={ok}; hot balance {hot.balance}: "
          f"{'consistent' if consistent else 'MISMATCH'}\n")
    if debits:
        summary("Hot debit", debits, "debits/s")
    if usage:
        summary("Usage event over HTTP", usage, "req/s")
    return 0 if ok and consistent else 1


if __name__ == "__main__":
    sys.exit(main())
