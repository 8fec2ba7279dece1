"""What the metering benchmarks share: their own database, members created set-based, a real gunicorn server
run as ``make run`` runs it, and an HTTP load generator (threads, keep-alive ``http.client`` connections,
bodies encoded before the clock starts).

Not a benchmark itself; imported by ``usage_http.py``, ``usage_batch.py`` and ``usage_stats.py``.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_service.settings")

# How `make run` serves (Makefile: WEB_CONCURRENCY=3, WEB_THREADS=4).
GUNICORN_FLAGS = ["--workers", "3", "--worker-class", "gthread", "--threads", "4", "--access-logfile", "-",
                  "--preload"]


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- a database of our own -------------------------------------------------------------------------


def setup_django(bench_db: str, *, fresh: bool = False) -> dict:
    """Points Django at ``bench_db`` on the configured server (created if missing; dropped first with
    ``fresh``), migrates it; returns psycopg connection parameters for it."""
    import django
    import psycopg
    from django.conf import settings
    from django.core.management import call_command
    from psycopg import sql

    if not bench_db.startswith("billing_bench_"):
        raise SystemExit(f"refusing to work in {bench_db!r}: bench databases are named billing_bench_*")
    db = settings.DATABASES["default"]  # loading settings starts the embedded server if needed
    params = {"host": db["HOST"] or None, "port": db["PORT"] or None, "user": db["USER"] or None,
              "password": db["PASSWORD"] or None}
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        if fresh:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(bench_db)))
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [bench_db]).fetchone():
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(bench_db)))
            except psycopg.errors.DuplicateDatabase:
                pass
    db["NAME"] = bench_db
    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    return {**params, "dbname": bench_db}


def database_url(conninfo: dict) -> str:
    """A DATABASE_URL for the same server and database (psycopg connection parameters ``conninfo``)."""
    from billing_service.embedded_db import database_url as url_of

    return url_of({"USER": conninfo["user"], "PASSWORD": conninfo["password"], "HOST": conninfo["host"],
                   "PORT": conninfo["port"], "NAME": conninfo["dbname"]})


def server_facts() -> tuple[str, str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        sync_commit = cursor.fetchone()[0]
        cursor.execute("SELECT version()")
        version = cursor.fetchone()[0].split(" on ")[0]
    return version, sync_commit


# --- members, set-based ----------------------------------------------------------------------------


def ensure_members(platform, prefix: str, n: int, *, funds: Decimal, floor: Decimal) -> list:
    """``n`` members of ``platform`` (users ``<prefix>-00001``...), each with a credit account holding at least
    ``floor`` (topped up to ``funds`` with one ``add`` row each, through ``credits.ledger.post_many``).
    Users, memberships and accounts are created with three INSERT ... SELECT statements. Returns the account
    ids, in user order."""
    from django.db import connection, transaction

    from credits import ledger
    from credits.ledger import Posting
    from credits.models import TransactionType

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff,
                                   is_active, date_joined)
            SELECT '!', false, %(prefix)s || '-' || lpad(g::text, 5, '0'), '', '', '', false, true, now()
              FROM generate_series(1, %(n)s) AS g
            ON CONFLICT (username) DO NOTHING
            """,
            {"prefix": prefix, "n": n},
        )
        users = """SELECT id FROM auth_user WHERE username IN
                   (SELECT %(prefix)s || '-' || lpad(g::text, 5, '0') FROM generate_series(1, %(n)s) AS g)"""
        cursor.execute(
            f"""
            INSERT INTO accounts_membership (platform_id, user_id, role, created_at)
            SELECT %(platform)s, u.id, 'member', now() FROM ({users}) AS u
            ON CONFLICT (platform_id, user_id) DO NOTHING
            """,
            {"prefix": prefix, "n": n, "platform": platform.pk},
        )
        cursor.execute(
            f"""
            INSERT INTO credits_creditaccount
                   (id, platform_id, user_id, currency, balance, reserved, last_sequence, count_add,
                    count_subtract, count_reserve, count_release, count_rollover, count_refund, count_adjustment,
                    last_entry_at, created_at)
            SELECT gen_random_uuid(), %(platform)s, u.id, 'USD', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, NULL, now()
              FROM ({users}) AS u
            ON CONFLICT DO NOTHING
            """,
            {"prefix": prefix, "n": n, "platform": platform.pk},
        )
        cursor.execute(
            f"""
            SELECT a.id, a.balance - a.reserved FROM credits_creditaccount a JOIN auth_user u ON u.id = a.user_id
             WHERE a.platform_id = %(platform)s AND a.user_id IN ({users}) ORDER BY u.username
            """,
            {"prefix": prefix, "n": n, "platform": platform.pk},
        )
        found = cursor.fetchall()
        if len(found) != n:
            raise RuntimeError(f"expected {n} accounts, found {len(found)}")
        top_ups = [(account_id, Posting(transaction_type=TransactionType.ADD, balance_delta=funds - available,
                                        description="bench funds"))
                   for account_id, available in found if available < floor]
        if top_ups:
            ledger.post_many(top_ups)
    return [account_id for account_id, _ in found]


# --- the server, as `make run` serves --------------------------------------------------------------


def member_keys(prefix: str, limit: int | None = None) -> list[str]:
    """An API key for each member ``<prefix>-*`` (by username, at most ``limit``): the same keys every run (derived
    from the user's id), stored hashed as any key is (``ApiToken``), so a rerun finds them in place."""
    import hashlib

    from django.contrib.auth import get_user_model

    from accounts.models import ApiToken, secret_digest

    users = list(get_user_model().objects.filter(username__startswith=f"{prefix}-").order_by("username")
                 .values_list("id", flat=True)[:limit])
    keys = [hashlib.sha1(f"bench-key:{user_id}".encode()).hexdigest() for user_id in users]
    ApiToken.objects.bulk_create([ApiToken(digest=secret_digest(key), prefix=key[:8], name="bench", user_id=user_id)
                                  for user_id, key in zip(users, keys)], ignore_conflicts=True, batch_size=1000)
    return keys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """gunicorn with `make run`'s flags, pointed at the bench database with DATABASE_URL, in its own process
    group (so that stopping it stops its workers and nothing else). Use as a context manager: the server is
    stopped on the way out, whatever happened."""

    def __init__(self, conninfo: dict, *, env: dict[str, str] | None = None,
                 app: str = "billing_service.wsgi:application") -> None:
        self.app = app
        self.port = free_port()
        self.env = {**os.environ, "DATABASE_URL": database_url(conninfo), "BENCH_ENDPOINTS": "1", **(env or {})}
        self.env.pop("DJANGO_SETTINGS_MODULE", None)  # wsgi.py sets it, as under `make run`
        self.log = tempfile.NamedTemporaryFile(prefix="bench-gunicorn-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        gunicorn = Path(sys.executable).with_name("gunicorn")
        # `make run`'s flags; plus no control socket, so that a bench server never takes over the shared default
        # one (~/.gunicorn/gunicorn.ctl) of a server someone else runs (it has no part in serving requests)
        cmd = [str(gunicorn), self.app, "--bind", f"127.0.0.1:{self.port}", *GUNICORN_FLAGS, "--no-control-socket"]
        if not self.app.startswith("billing_service."):
            cmd += ["--pythonpath", str(Path(__file__).resolve().parent)]  # a bench-only wrapper module
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        previous = signal.getsignal(signal.SIGTERM)

        def on_term(signum, frame) -> None:
            self.stop()
            signal.signal(signal.SIGTERM, previous)
            raise SystemExit(143)

        signal.signal(signal.SIGTERM, on_term)
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                conn.close()
                if response.status == 200 and len(self.worker_pids()) == 3:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn not healthy after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(Path(self.log.name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the group of the server we started (start_new_session)
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        finally:
            self.log.close()
            try:
                os.unlink(self.log.name)
            except OSError:
                pass

    def worker_pids(self) -> list[int]:
        if self.proc is None:
            return []
        try:
            import psutil

            return [p.pid for p in psutil.Process(self.proc.pid).children()]
        except Exception:  # noqa: BLE001
            return []

    def cpu_seconds(self) -> float:
        """CPU (user + system) used so far by the master and its workers."""
        return sum(proc_cpu(pid) or 0.0 for pid in [self.proc.pid, *self.worker_pids()])


def _die_with_parent() -> None:
    """In the server's process, before exec: SIGTERM when the bench process dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def proc_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) of a local process; None if it is not there."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class BackendCpu:
    """CPU of the PostgreSQL backends connected to the bench database (other than ``own``), when the server
    runs on this machine. Backends are long-lived (CONN_MAX_AGE), so a before/after difference per pid is
    their work in between; one that appears in between counts from zero."""

    def __init__(self, conninfo: dict) -> None:
        import psycopg

        self.conn = psycopg.connect(autocommit=True, **conninfo)
        self.own = self.conn.info.backend_pid

    def snapshot(self) -> dict[int, float]:
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> %s", [self.own]
        ).fetchall()
        return {pid: cpu for (pid,) in rows if (cpu := proc_cpu(pid)) is not None}

    @staticmethod
    def used(before: dict[int, float], after: dict[int, float]) -> float:
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())

    def close(self) -> None:
        self.conn.close()


# --- load --------------------------------------------------------------------------------------------


class Request:
    """One prepared request. ``headers`` replace the run's shared headers for this request (a webhook
    delivery carries its own signature); ``tag`` names what it sent (an event id), reported back as ``sent``."""

    __slots__ = ("body", "headers", "method", "path", "tag")

    def __init__(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str] | None = None, tag: str = ""
    ) -> None:
        self.method, self.path, self.body, self.headers, self.tag = method, path, body, headers, tag


def run_load(
    port: int,
    work: Sequence[Sequence[Request]],
    *,
    headers: dict[str, str] | None = None,
    seconds: float,
    expect: int,
    count: Callable[[bytes], int] | None = None,
    server: Server | None = None,
    backends: BackendCpu | None = None,
) -> dict:
    """One thread per entry of ``work``, each on its own keep-alive connection, sending its requests in order
    (already encoded) until ``seconds`` have passed since they all lined up on a barrier. Every response must
    have status ``expect``; ``count(body)`` says how many units (events) a response carries (default 1).
    Returns requests, units, rates, latency percentiles and CPU (this process, the server's processes, the
    PostgreSQL backends)."""
    threads = len(work)
    state: dict = {}
    done = [0] * threads
    units = [0] * threads
    latencies: list[list[float]] = [[] for _ in range(threads)]
    ends = [0.0] * threads
    errors: list[BaseException] = []
    statuses: Counter = Counter()
    sent: list[set[str]] = [set() for _ in range(threads)]
    lock = threading.Lock()

    def go() -> None:
        state["server_cpu"] = server.cpu_seconds() if server else 0.0
        state["backends"] = backends.snapshot() if backends else {}
        state["client_cpu"] = time.process_time()
        state["start"] = time.perf_counter()

    barrier = threading.Barrier(threads, action=go)

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            requests = work[i]
            barrier.wait()
            deadline = state["start"] + seconds
            clock = time.perf_counter
            lat = latencies[i]
            n = got = 0
            for req in requests:
                t0 = clock()
                if t0 >= deadline:
                    break
                conn.request(req.method, req.path, body=req.body, headers=req.headers or headers or {})
                response = conn.getresponse()
                body = response.read()
                lat.append(clock() - t0)
                if response.status != expect:
                    with lock:
                        statuses[response.status] += 1
                        if len(errors) < 3:
                            errors.append(RuntimeError(f"HTTP {response.status} on {req.path}: {body[:300]!r}"))
                    continue
                n += 1
                got += count(body) if count else 1
                if req.tag:
                    sent[i].add(req.tag)
            else:
                if clock() < deadline:
                    with lock:
                        errors.append(RuntimeError(f"thread {i} ran out of prepared requests ({len(requests)})"))
            done[i], units[i], ends[i] = n, got, clock()
        except BaseException as exc:  # noqa: BLE001
            with lock:
                errors.append(exc)
            barrier.abort()
        finally:
            conn.close()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} error(s), statuses {dict(statuses)}; first: {errors[0]}") from errors[0]
    client_cpu = time.process_time() - state["client_cpu"]
    server_cpu = (server.cpu_seconds() - state["server_cpu"]) if server else float("nan")
    db_cpu = BackendCpu.used(state["backends"], backends.snapshot()) if backends else float("nan")
    elapsed = max(ends) - state["start"]
    total, total_units = sum(done), sum(units)
    lat = sorted(x for per in latencies for x in per)
    return {
        "requests": total,
        "units": total_units,
        "elapsed": elapsed,
        "rate": total / elapsed,
        "unit_rate": total_units / elapsed,
        "p50_ms": lat[len(lat) // 2] * 1000,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        "client_cpu": client_cpu,
        "server_cpu": server_cpu,
        "db_cpu": db_cpu,
        "spread": (min(done), max(done)),
        "sent": set().union(*sent),
    }


# --- two sides over HTTP, alternated ------------------------------------------------------------------------


def compare_sides(conninfo: dict, sides: Sequence[str], work: Callable[[str], Sequence[Sequence[Request]]], *,
                  rounds: int, seconds: float, warmup: float, target: float) -> dict[str, list[dict]]:
    """Serves the app with gunicorn as ``make run`` does, warms each side up, then runs ``rounds`` rounds of
    every side (alternating their order), ``work(side)`` each time, and prints each run, the medians (req/s) and
    the ratio of the second side to the first against ``target``. Returns every run by side."""
    results: dict[str, list[dict]] = {side: [] for side in sides}
    backends = BackendCpu(conninfo)
    try:
        with Server(conninfo, app="billing_service.wsgi:application") as server:
            for side in sides:
                run_load(server.port, work(side), seconds=warmup, expect=200)
            header = f"{'round':>5}  {'side':<8} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7}"
            print(header)
            print("-" * len(header))
            for r in range(rounds):
                for side in (sides if r % 2 == 0 else list(sides)[::-1]):
                    res = run_load(server.port, work(side), seconds=seconds, expect=200, server=server,
                                   backends=backends)
                    results[side].append(res)
                    print(f"{r + 1:>5}  {side:<8} {res['requests']:>8} {res['rate']:>7.0f} {res['p50_ms']:>7.2f} "
                          f"{res['p99_ms']:>7.2f}", flush=True)
    finally:
        backends.close()
    print(f"\nload average after:  {load_average()}")
    base, measured = sides
    medians = {side: statistics.median(x["rate"] for x in results[side]) for side in sides}
    per_round = [m["rate"] / b["rate"] for m, b in zip(results[measured], results[base], strict=True)]
    for side in sides:
        print(f"{side:<8} median {medians[side]:6.0f} req/s")
    ratio = medians[measured] / medians[base]
    print(f"ratio {measured}/{base} = {ratio:.2f} (per round {', '.join(f'{x:.2f}' for x in per_round)}; "
          f"target >= {target}: {'MET' if ratio >= target else 'MISSED'})")
    return results
