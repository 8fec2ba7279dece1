"""A backup restores: pg_dump of a database holding every kind of ledger activity, restored with pg_restore into a
fresh database, is a database the service runs on (every migration recorded) whose ledger verify_ledger finds exact,
row for row the same as the original's. The programs are the wheel's, of the server's own version (README,
"Backups and restore")."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connections

from billing_service.embedded_db import binaries, database_url
from credits.services import credits_debit, credits_grant
from credits.services.holds import hold_capture, hold_create
from tests.conftest import make_member

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)

# What must come back identical: the ledger and the accounts' state, row for row.
FINGERPRINT = (
    "SELECT (SELECT md5(string_agg(concat_ws('|', id, account_id, sequence, transaction_type, balance_delta, "
    "reserved_delta, balance_after, reserved_after, idempotency_key, created_at), ',' ORDER BY account_id, sequence)) "
    "FROM credits_ledger_entry), (SELECT md5(string_agg(concat_ws('|', id, balance, reserved, last_sequence), ',' "
    "ORDER BY id)) FROM credits_creditaccount), (SELECT count(*) FROM credits_hold)"
)


def _run(program: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binaries() / program), *args], capture_output=True, text=True, timeout=120,
                          check=True)


def _fingerprint(url: str) -> tuple:
    with psycopg.connect(url) as conn:
        return conn.execute(FINGERPRINT).fetchone()


@pytest.fixture
def fresh_database():  # noqa: ANN201
    db = settings.DATABASES["default"]
    name = f"restore_{uuid.uuid4().hex[:12]}"
    admin = database_url({**db, "NAME": "postgres"})
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield database_url({**db, "NAME": name})
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_dump_restores_into_a_fresh_database_with_the_ledger_exact(platform, tmp_path, fresh_database):
    if not (binaries() / "pg_dump").exists():
        pytest.skip("no pg_dump beside the embedded server")
    if settings.DATABASE_POOLER != "none":  # make test-pgbouncer
        pytest.skip("pg_dump and pg_restore set session state (search_path): they reach the server itself, never "
                    "through a transaction pooler (README, Backups and restore)")
    alice, bob = make_member(platform, "alice", credits="50"), make_member(platform, "bob", credits="5")
    credits_debit(account_id=alice.account.id, amount=Decimal("1.25"), description="call", idempotency_key="c-1")
    held = hold_create(account_id=bob.account.id, amount=Decimal("2"), idempotency_key="h-1")
    hold_capture(hold_id=held.hold.id, amount=Decimal("1.5"))
    hold_create(account_id=alice.account.id, amount=Decimal("3"), idempotency_key="h-2")  # still active: reserved
    credits_grant(account_id=bob.account.id, amount=Decimal("0.000001"), description="dust")
    source = database_url(settings.DATABASES["default"])
    connections.close_all()

    dump = tmp_path / "billing.dump"
    _run("pg_dump", "--format=custom", "--no-owner", f"--file={dump}", source)
    _run("pg_restore", "--no-owner", "--exit-on-error", f"--dbname={fresh_database}", str(dump))

    assert _fingerprint(fresh_database) == _fingerprint(source)
    env = {**os.environ, "DATABASE_URL": fresh_database}
    migrated = subprocess.run([sys.executable, "manage.py", "migrate", "--check"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr  # nothing left to apply
    verified = subprocess.run([sys.executable, "manage.py", "verify_ledger", "--progress", "off"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.strip().endswith(", 0 with problems")
    with psycopg.connect(fresh_database) as conn:  # the restored ledger keeps its guards: rows stay immutable
        with pytest.raises(psycopg.Error):
            conn.execute("UPDATE credits_ledger_entry SET balance_delta = 0")
