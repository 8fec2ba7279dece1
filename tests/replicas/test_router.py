"""The router and the replica choice in this process, against the real replica (an alias added at runtime, as
settings.py adds ``replica_0`` for ``DATABASE_REPLICA_URLS``): where reads go, the lag limit, a replica that refuses
connections or dies in the middle of a call, and the settings that build the aliases."""

from __future__ import annotations

import logging
import runpy
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib import messages
from django.contrib.messages.storage.cookie import CookieStorage
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, router, transaction
from django.template import engines
from django.template.response import TemplateResponse
from django.test import RequestFactory

from accounts.models import Platform
from billing_service import db_router
from billing_service.db_router import (
    LaggingChangelistMixin,
    lagging_reads,
    reads_may_lag,
    replica_choose,
    replica_lag,
    replicas_reset,
)
from tests.replicas.cluster import Replication

pytestmark = pytest.mark.django_db(transaction=True)

ALIAS = "replica_0"
SETTINGS_PY = Path(db_router.__file__).with_name("settings.py")


@pytest.fixture
def replica(replication: Replication, settings, transactional_db, django_db_blocker) -> Iterator[Replication]:  # noqa: ANN001
    """``replica_0`` on our replica, routed as settings.py routes it; the default connection stays the test
    database's (a primary that is not its primary, which is all these tests need). Added after the test's
    database set-up (``transactional_db``), and connected with ``django_db_blocker.unblock()``: Django's test case
    refuses to connect an alias its test does not declare, and this one did not exist when it was declared."""
    base = dict(connections["default"].settings_dict)
    connections.settings[ALIAS] = {
        **base, "HOST": str(replication.dir), "PORT": str(replication.replica.port), "NAME": "billing",
        "USER": "postgres", "PASSWORD": "", "OPTIONS": {"connect_timeout": 2}, "TEST": {"MIRROR": "default"},
    }
    settings.DATABASE_REPLICAS = [ALIAS]
    settings.DATABASE_ROUTERS = ["billing_service.db_router.ReplicaRouter"]
    settings.DATABASE_REPLICA_RETRY_SECONDS = 60
    settings.DATABASE_REPLICA_MAX_LAG_SECONDS = None
    replicas_reset()
    replication.wait_replayed()
    try:
        with django_db_blocker.unblock():
            yield replication
    finally:
        connections[ALIAS].close()
        del connections[ALIAS]
        del connections.settings[ALIAS]
        replicas_reset()


def _ask() -> bool:
    """Whether the ORM's read of the moment reaches a standby."""
    alias = router.db_for_read(Platform)
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        return cursor.fetchone()[0]


def test_reads_go_to_the_replica_only_inside_the_context_and_outside_a_transaction(replica: Replication) -> None:
    assert router.db_for_read(Platform) == "default" and not _ask()
    with reads_may_lag() as alias:
        assert alias == ALIAS
        assert router.db_for_read(Platform) == ALIAS and _ask()
        assert Platform.objects.all().db == ALIAS
        assert router.db_for_write(Platform) == "default"
        assert Platform.objects.select_for_update().db == "default"
        with transaction.atomic():  # a read inside a transaction on the primary stays there
            assert router.db_for_read(Platform) == "default" and not _ask()
        with reads_may_lag() as inner:  # nested: the outer choice
            assert inner == ALIAS
    assert router.db_for_read(Platform) == "default"


def test_a_replica_lagging_more_than_the_limit_is_left_out_until_it_catches_up(replica: Replication, settings) -> None:  # noqa: ANN001
    settings.DATABASE_REPLICA_MAX_LAG_SECONDS = 0.5
    assert replica_lag(ALIAS) == 0  # caught up, receiving
    assert replica_choose() == ALIAS
    replica.pause_replay()
    try:
        with replica.primary.connect() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS lag_probe (n int)")
            conn.execute("INSERT INTO lag_probe VALUES (1)")
        replica.wait_received()
        deadline = time.monotonic() + 10
        while replica_lag(ALIAS) <= 0.5:
            assert time.monotonic() < deadline, "the replica's lag never grew"
            time.sleep(0.05)
        replicas_reset()  # forget the lag measured a moment ago (kept LAG_CHECK_SECONDS)
        assert replica_choose() == "default"
        with reads_may_lag() as alias:
            assert alias == "default" and router.db_for_read(Platform) == "default"
    finally:
        replica.resume_replay()
    replicas_reset()
    assert replica_choose() == ALIAS


def test_a_replica_refusing_connections_is_skipped_for_the_back_off(replica: Replication, settings, caplog) -> None:  # noqa: ANN001
    conn = connections[ALIAS]
    conn.settings_dict["PORT"] = "5999"  # nothing listens there
    with caplog.at_level(logging.WARNING, logger="billing_service.db_router"):
        started = time.monotonic()
        assert replica_choose() == "default"
        assert time.monotonic() - started < 2
        conn.settings_dict["PORT"] = str(replica.replica.port)  # it is back...
        assert replica_choose() == "default"  # ...but not tried again before the back-off has passed
    assert [r.getMessage() for r in caplog.records].count(
        "replica replica_0 is unreachable: reading from the primary for 60s") == 1

    settings.DATABASE_REPLICA_RETRY_SECONDS = 0.2
    conn.settings_dict["PORT"] = "5999"
    replicas_reset()
    assert replica_choose() == "default"
    conn.settings_dict["PORT"] = str(replica.replica.port)
    deadline = time.monotonic() + 5
    while replica_choose() != ALIAS:
        assert time.monotonic() < deadline, "the replica was never tried again"
        time.sleep(0.05)


def test_a_replica_dying_during_a_call_has_the_call_read_again_from_the_primary(replica: Replication) -> None:
    calls: list[tuple[str, bool]] = []

    @lagging_reads
    def read() -> bool:
        alias = router.db_for_read(Platform)
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid(), pg_is_in_recovery()")
            pid, standby = cursor.fetchone()
        calls.append((alias, standby))
        if len(calls) == 1:
            assert replica.replica.value("SELECT pg_terminate_backend(%s, 10000)", (pid,))
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")  # its connection is gone
        return standby

    assert read() is False
    assert calls == [(ALIAS, True), ("default", False)]
    assert replica_choose() == "default"  # left out for the back-off
    replicas_reset()
    assert replica_choose() == ALIAS


def test_an_error_of_the_primary_inside_a_lagging_call_is_not_retried(replica: Replication) -> None:
    calls = []

    @lagging_reads
    def read() -> None:
        calls.append(1)
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    with pytest.raises(Exception, match="no_such_table"):
        read()
    assert calls == [1]


class _RecordingAdmin:
    """Stands for ModelAdmin under the mixin: records where the changelist's reads would go."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def changelist_view(self, request, extra_context=None):  # noqa: ANN001, ANN201
        self.seen.append(router.db_for_read(Platform))
        template = engines["django"].from_string("{{ where }}")
        return TemplateResponse(request, template, {"where": router.db_for_read(Platform)})

    def has_view_or_change_permission(self, request) -> bool:  # noqa: ANN001
        self.seen.append(f"permissions:{router.db_for_read(Platform)}")
        return True


class _Admin(LaggingChangelistMixin, _RecordingAdmin):
    pass


def test_admin_lists_read_the_replica_except_the_page_after_a_write(replica: Replication) -> None:
    factory = RequestFactory()
    admin = _Admin()
    listing = factory.get("/admin/credits/ledgerentry/")
    listing._messages = CookieStorage(listing)
    response = admin.changelist_view(listing)
    # Permissions from the primary, the list from the replica, rendered inside (a TemplateResponse reads late).
    assert admin.seen == ["permissions:default", ALIAS] and response.content == ALIAS.encode()

    admin.seen.clear()
    after_save = factory.get("/admin/credits/ledgerentry/")
    after_save._messages = CookieStorage(after_save)
    after_save._messages.add(messages.SUCCESS, "The entry was changed successfully.")
    admin.changelist_view(after_save)
    action = factory.post("/admin/credits/ledgerentry/", {"action": "revoke"})
    action._messages = CookieStorage(action)
    admin.changelist_view(action)
    assert admin.seen == ["default", "default"]


# --- settings.py: DATABASE_REPLICA_URLS -> replica_0, replica_1... ------------------------------------------------


def load_settings(monkeypatch, **env: str) -> dict:  # noqa: ANN001
    monkeypatch.setenv("DATABASE_URL", "postgres://billing@primary.internal:5432/billing")
    for name in ("DATABASE_REPLICA_URLS", "DATABASE_REPLICA_MAX_LAG_SECONDS", "DATABASE_REPLICA_RETRY_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS_PY))


def test_settings_build_one_alias_per_replica_url(monkeypatch) -> None:  # noqa: ANN001
    loaded = load_settings(
        monkeypatch,
        DATABASE_REPLICA_URLS="postgres://ro:p%2Cw@replica-a:5432/billing, postgres://ro@replica-b/billing?connect_timeout=7",
        DATABASE_REPLICA_MAX_LAG_SECONDS="3", DATABASE_REPLICA_RETRY_SECONDS="4",
    )
    databases = loaded["DATABASES"]
    assert list(databases) == ["default", "replica_0", "replica_1"]
    assert loaded["DATABASE_REPLICAS"] == ["replica_0", "replica_1"]
    assert loaded["DATABASE_ROUTERS"] == ["billing_service.db_router.ReplicaRouter"]
    first, second = databases["replica_0"], databases["replica_1"]
    assert (first["HOST"], first["USER"], first["PASSWORD"]) == ("replica-a", "ro", "p,w")
    assert first["TEST"] == {"MIRROR": "default"}  # the test suite creates no database for it
    assert first["OPTIONS"]["connect_timeout"] == 2 and int(second["OPTIONS"]["connect_timeout"]) == 7
    assert first["CONN_HEALTH_CHECKS"] is True
    assert (loaded["DATABASE_REPLICA_MAX_LAG_SECONDS"], loaded["DATABASE_REPLICA_RETRY_SECONDS"]) == (3.0, 4.0)


def test_settings_without_replicas_route_nothing(monkeypatch) -> None:  # noqa: ANN001
    loaded = load_settings(monkeypatch)
    assert list(loaded["DATABASES"]) == ["default"]
    assert loaded["DATABASE_ROUTERS"] == [] and loaded["DATABASE_REPLICA_MAX_LAG_SECONDS"] is None
    with pytest.raises(ImproperlyConfigured):
        load_settings(monkeypatch, DATABASE_REPLICA_URLS="mysql://ro@replica/billing")
