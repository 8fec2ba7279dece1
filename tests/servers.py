"""Servers the tests run in processes of their own, and this process's Django connection pointed at another server.

- ``Gunicorn``: the service served by gunicorn (gthread) on a free port of 127.0.0.1, in a process group of its own,
  its output in a log file. Ready once ``/healthz`` answers 200 and every worker runs (if not, the error carries the
  log's tail); stopped by its process group (TERM, then KILL), workers included. ``request`` sends it one JSON call.
- ``service_env``: the environment such a server (or ``manage.py``) starts with: this process's, less what would
  point it at a database or configure this process only.
- ``connection_pointed_at``: a Django connection's settings changed for a ``with`` block, restored after it.

Importing this module imports no Django (tests/faults/harness.py and ``make chaos`` run without it): only
``connection_pointed_at`` imports it, when called.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

ROOT = Path(__file__).resolve().parents[1]

# Not passed on to a server: what points it at a database (DATABASE_URL, DATABASE_REPLICA_URLS, DATABASE_POOLER...:
# each caller sets its own) or belongs to this process (pytest's settings module and test database name, a broker
# or metrics folder a test may have set up for itself).
_NOT_INHERITED_PREFIXES = ("DATABASE_",)
_NOT_INHERITED = {"DJANGO_SETTINGS_MODULE", "CELERY_BROKER_URL", "TEST_DATABASE_NAME", "PROMETHEUS_MULTIPROC_DIR"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(**overrides: str) -> dict[str, str]:
    """This process's environment without its database and test settings, with connections kept (CONN_MAX_AGE),
    warnings and errors logged as text; then ``overrides`` (``DATABASE_URL`` at least, or the server would start the
    shared embedded PostgreSQL)."""
    base = {k: v for k, v in os.environ.items()
            if k not in _NOT_INHERITED and not k.startswith(_NOT_INHERITED_PREFIXES)}
    return {**base, "CONN_MAX_AGE": "600", "LOG_LEVEL": "WARNING", "LOG_FORMAT": "text", **overrides}


# --- processes (read from /proc) -------------------------------------------------------------------------------------


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command (state, ppid, ...), or None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie no longer does)."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = proc_stat(int(entry))
            if fields is not None and fields[0] != "Z" and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> None:
    """Returns once ``predicate()`` is true; raises TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout:.0f} s")
        time.sleep(interval)


# --- HTTP ------------------------------------------------------------------------------------------------------------


def request(port: int, method: str, path: str, body: Any = None, token: str | None = None, *,
            headers: Mapping[str, str] | None = None, timeout: float = 30.0,
            conn: http.client.HTTPConnection | None = None) -> tuple[int, Any]:
    """One JSON call to 127.0.0.1:``port``: (status, the JSON answer ({} when empty), or its text when not JSON).
    On ``conn`` (a keep-alive connection, left open) or on a new connection (closed). Raises OSError when no answer
    came (http.client's own errors as ConnectionError, a timeout as TimeoutError)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token:
        sent["Authorization"] = f"Token {token}"
    try:
        conn.request(method, path, body=json.dumps(body).encode() if body is not None else None, headers=sent)
        response = conn.getresponse()
        raw = response.read()
    except http.client.HTTPException as exc:
        raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        if own:
            conn.close()
    if not raw:
        return response.status, {}
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw.decode(errors="replace")[:500]


# --- gunicorn --------------------------------------------------------------------------------------------------------


class Gunicorn:
    """The service under gunicorn (gthread, ``workers`` x ``threads``, ``--preload`` if asked, ``args`` added) on a
    free port, with ``service_env(**env)``. Its output goes to ``log`` (appended), or to a temporary file removed when
    it stops. A context manager (started and ready on the way in, stopped on the way out), or ``start`` then
    ``wait_ready`` (several servers starting at once), then ``stop``."""

    def __init__(self, env: Mapping[str, str], *, workers: int = 2, threads: int = 4, preload: bool = False,
                 args: Sequence[str] = (), log: Path | None = None, name: str = "server") -> None:
        self.name = name
        self.env = service_env(**env)
        self.workers = workers
        self.threads = threads
        self.args = [*(["--preload"] if preload else []), *args]
        self.port = free_port()
        self.own_log = log is None
        if log is None:
            fd, path = tempfile.mkstemp(prefix=f"gunicorn-{name}-", suffix=".log")
            os.close(fd)
            log = Path(path)
        self.log = log
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Gunicorn:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Gunicorn:
        gunicorn = Path(sys.executable).with_name("gunicorn")
        with open(self.log, "ab") as out:  # a file, not a pipe: nobody reads it while the server runs
            self.proc = subprocess.Popen(
                [str(gunicorn), "billing_service.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
                 "--workers", str(self.workers), "--worker-class", "gthread", "--threads", str(self.threads),
                 "--no-control-socket", *self.args],
                cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends the workers too, and nothing else
            )
        return self

    def worker_pids(self) -> list[int]:
        return children(self.proc.pid) if self.proc is not None else []

    def wait_ready(self, timeout: float = 90) -> None:
        """Until /healthz answers 200 and every worker runs. RuntimeError with the log's tail if the server exits or
        is not ready in time."""

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status, _ = self.request("GET", "/healthz", timeout=5)
            except OSError:
                return False
            return status == 200 and len(self.worker_pids()) == self.workers

        try:
            wait_until(ready, timeout, f"gunicorn {self.name} ready", interval=0.1)
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}\n{self.log_tail()}") from None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def connection(self, timeout: float = 30.0) -> http.client.HTTPConnection:
        """A keep-alive connection to the server (for ``request(..., conn=...)``; the caller closes it)."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str, path: str, body: Any = None, token: str | None = None, **kwargs: Any
                ) -> tuple[int, Any]:
        """``request`` (above) to this server."""
        return request(self.port, method, path, body, token, **kwargs)

    def stop(self) -> None:
        """TERM to the process group (the master and its workers), KILL after 20 s; a temporary log removed."""
        proc, self.proc = self.proc, None
        try:
            if proc is not None and proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
                except ProcessLookupError:
                    pass
        finally:
            if self.own_log:
                self.log.unlink(missing_ok=True)


# --- Django ----------------------------------------------------------------------------------------------------------


@contextmanager
def connection_pointed_at(connection: str | BaseDatabaseWrapper = "default", /, **settings: Any
                          ) -> Iterator[BaseDatabaseWrapper]:
    """This process's Django connection (an alias, or the connection itself) closed and its settings updated with
    ``settings`` (``HOST``, ``PORT``, ``NAME``...) for the block; closed again and its settings restored after it.
    Connections that threads open meanwhile follow too (they read the same settings dict)."""
    if isinstance(connection, str):
        from django.db import connections

        connection = connections[connection]
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(settings)
    try:
        yield connection
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
