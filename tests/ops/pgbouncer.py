"""A real PgBouncer (Debian's package, ``scripts/ensure-pgbouncer``) in transaction pooling mode, started on a free
port of 127.0.0.1 in front of the configured PostgreSQL: for tests/ops/test_pgbouncer.py, bench/pgbouncer.py and
``make test-pgbouncer``.

Its ini lives in a temporary folder of its own: ``pool_mode = transaction``, a small ``default_pool_size`` and
``server_round_robin = 1``, so that consecutive transactions of one client take turns on the server connections
(PgBouncer's default is LIFO: without concurrency a client would keep meeting the same one, and a prepared
statement would seem to work). Every database name is passed through (``* =``) to the target server; clients are
trusted (``auth_type = trust``, listening on 127.0.0.1 only), PgBouncer logs in to PostgreSQL as the configured
user. Run as root, PgBouncer refuses to start unless told whom to become (``-u``): it becomes the owner of the
target's socket folder (the embedded server's ``pgserver``), who can reach that socket, or ``nobody`` for TCP.

    .venv/bin/python -m tests.ops.pgbouncer -- <command>   # <command> with DATABASE_URL through it, then stops
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from tests.servers import free_port


def pgbouncer_binary() -> str | None:
    """Debian installs it in /usr/sbin, which is not on every user's PATH."""
    found = shutil.which("pgbouncer")
    if found:
        return found
    return next((p for p in ("/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer") if os.access(p, os.X_OK)), None)


def pgbouncer_version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"PgBouncer (\d+)\.(\d+)(?:\.(\d+))?", out)
    if not match:
        raise RuntimeError(f"unrecognised pgbouncer --version: {out!r}")
    return tuple(int(x or 0) for x in match.groups())


class PgBouncer:
    """``target``: Django connection settings (HOST, PORT, USER, PASSWORD) of the PostgreSQL to pool. Use as a
    context manager; stopped (its server connections closed) on the way out."""

    def __init__(self, target: Mapping[str, object], *, pool_size: int = 2, round_robin: bool = True,
                 max_prepared_statements: int = 0, binary: str | None = None) -> None:
        self.binary = binary or pgbouncer_binary()
        if self.binary is None:
            raise RuntimeError("no pgbouncer binary (scripts/ensure-pgbouncer installs Debian's)")
        self.version = pgbouncer_version(self.binary)
        if max_prepared_statements and self.version < (1, 21):
            raise RuntimeError(f"PgBouncer {self.version} has no max_prepared_statements (1.21+)")
        self.target = target
        self.user = str(target.get("USER") or "postgres")
        self.pool_size = pool_size
        self.round_robin = round_robin
        self.max_prepared_statements = max_prepared_statements
        self.host = "127.0.0.1"
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        self.log = self.dir / "pgbouncer.log"
        self.proc: subprocess.Popen | None = None

    # --- configuration ----------------------------------------------------------------------------------------

    def _run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None
        host = str(self.target.get("HOST") or "")
        if host.startswith("/"):
            return pwd.getpwuid(os.stat(host).st_uid).pw_name
        return "nobody"

    def _ini(self) -> str:
        server = []
        if self.target.get("HOST"):
            server.append(f"host={self.target['HOST']}")
        if self.target.get("PORT"):
            server.append(f"port={self.target['PORT']}")
        server.append(f"user={self.user}")
        if self.target.get("PASSWORD"):
            server.append(f"password={self.target['PASSWORD']}")
        lines = [
            "[databases]",
            f"* = {' '.join(server)}",
            "",
            "[pgbouncer]",
            f"listen_addr = {self.host}",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {self.dir / 'userlist.txt'}",
            f"admin_users = {self.user}",
            "pool_mode = transaction",
            f"default_pool_size = {self.pool_size}",
            "max_client_conn = 1000",
            "max_db_connections = 0",
            f"server_round_robin = {int(self.round_robin)}",
            "ignore_startup_parameters = extra_float_digits",
            f"logfile = {self.log}",
            "log_connections = 0",
            "log_disconnections = 0",
        ]
        if self.max_prepared_statements:
            lines.append(f"max_prepared_statements = {self.max_prepared_statements}")
        return "\n".join(lines) + "\n"

    # --- life -------------------------------------------------------------------------------------------------

    def __enter__(self) -> PgBouncer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(self._ini())
        (self.dir / "userlist.txt").write_text(f'"{self.user}" ""\n')
        cmd = [self.binary]
        run_as = self._run_as()
        if run_as:
            entry = pwd.getpwnam(run_as)
            for path in (self.dir, *self.dir.iterdir()):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            cmd += ["-u", run_as]
        cmd.append(str(ini))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pgbouncer did not listen on {self.port}:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # immediate shutdown: its server connections close
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # --- how to reach it ---------------------------------------------------------------------------------------

    def conninfo(self, dbname: str) -> dict:
        """psycopg.connect() keywords for ``dbname`` through PgBouncer."""
        return {"host": self.host, "port": self.port, "user": self.user, "dbname": dbname}

    def database_url(self, dbname: str) -> str:
        return f"postgres://{self.user}@{self.host}:{self.port}/{dbname}"

    def admin(self, command: str) -> list[tuple]:
        """A command of PgBouncer's admin console (``SHOW POOLS``, ``SHOW VERSION``): its own database
        ``pgbouncer``, simple query protocol only."""
        import psycopg

        with psycopg.connect(**self.conninfo("pgbouncer"), autocommit=True) as conn:
            cursor = psycopg.ClientCursor(conn)  # the simple query protocol
            cursor.execute(command)
            return cursor.fetchall() if cursor.description else []

    def warm(self, dbname: str) -> set[int]:
        """Opens the pool's server connections to ``dbname`` (each client holds one in a transaction at the same
        time); returns their backend pids."""
        import psycopg

        conns = [psycopg.connect(**self.conninfo(dbname)) for _ in range(self.pool_size)]
        try:
            pids = {conn.execute("SELECT pg_backend_pid()").fetchone()[0] for conn in conns}
            for conn in conns:
                conn.commit()  # a server connection left in a transaction would be closed, not pooled
        finally:
            for conn in conns:
                conn.close()
        return pids


def main(argv: list[str]) -> int:
    """Starts PgBouncer in front of the configured PostgreSQL (the embedded one unless DATABASE_URL is set), runs
    the command after ``--`` with ``DATABASE_URL`` pointing at it (same database) and ``DATABASE_POOLER`` set
    (``--pooler``, default pgbouncer), stops PgBouncer, exits with the command's status."""
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print("usage: python -m tests.ops.pgbouncer [--pool-size N] [--pooler P] -- <command>", file=sys.stderr)
        return 2
    options, command = argv[: argv.index("--")], argv[argv.index("--") + 1:]
    pool_size = int(options[options.index("--pool-size") + 1]) if "--pool-size" in options else 2
    pooler = options[options.index("--pooler") + 1] if "--pooler" in options else "pgbouncer"
    if pgbouncer_binary() is None:
        print("no pgbouncer here (scripts/ensure-pgbouncer installs Debian's as root)", file=sys.stderr)
        return 1
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_service.settings")
    from django.conf import settings

    target = settings.DATABASES["default"]  # loading settings starts the embedded server if needed

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(143)  # unwinds the with: PgBouncer is stopped, not left behind

    signal.signal(signal.SIGTERM, on_term)
    with PgBouncer(target, pool_size=pool_size) as bouncer:
        env = {**os.environ, "DATABASE_URL": bouncer.database_url(str(target["NAME"])), "DATABASE_POOLER": pooler}
        print(f"pgbouncer {'.'.join(map(str, bouncer.version))} on {bouncer.host}:{bouncer.port}, transaction "
              f"pooling, pool size {pool_size}, DATABASE_POOLER={pooler}", flush=True)
        return subprocess.call(command, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
