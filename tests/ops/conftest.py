"""Fixtures of the operations tests: a real PgBouncer in transaction pooling mode in front of the test database
(tests/ops/pgbouncer.py), and ``pooled``: the service's own code run through it, in this process (the default
connection's settings pointed at PgBouncer for the length of a ``with`` block, threads included)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest

from tests.ops.pgbouncer import PgBouncer, pgbouncer_binary
from tests.payments.conftest import fake_stripe  # noqa: F401 - the Stripe webhook test's Checkout fake
from tests.servers import connection_pointed_at

__all__ = ["fake_stripe"]

NO_PGBOUNCER = "no pgbouncer binary: scripts/ensure-pgbouncer installs Debian's (root with apt-get)"


@pytest.fixture(scope="session")
def pgbouncer(django_db_setup, django_db_blocker) -> Iterator[PgBouncer]:  # noqa: ANN001
    """PgBouncer with two server connections to the test database, used in turns (``server_round_robin``).
    Depends on ``django_db_setup`` so that it stops (closing its server connections) before the test database
    is dropped."""
    if pgbouncer_binary() is None:
        pytest.skip(NO_PGBOUNCER)
    from django.db import connections

    settings_dict = connections["default"].settings_dict
    with PgBouncer(settings_dict, pool_size=2) as bouncer:
        bouncer.dbname = settings_dict["NAME"]
        pids = bouncer.warm(bouncer.dbname)
        assert len(pids) == 2, pids
        yield bouncer


@pytest.fixture
def pooled(pgbouncer: PgBouncer) -> Callable[..., AbstractContextManager[None]]:
    """``with pooled("pgbouncer"):`` runs the block's database work through PgBouncer, the default connection
    configured as ``DATABASE_POOLER=<pooler>`` would (settings.py: ``POOLER``, ``DISABLE_SERVER_SIDE_CURSORS``),
    or with ``server_side_cursors`` forced. Connections opened by threads meanwhile go through it too (they read
    the same settings dict). Needs ``django_db(transaction=True)``: PgBouncer's server connections see committed
    rows only."""

    @contextmanager
    def through(pooler: str = "pgbouncer", *, server_side_cursors: bool | None = None) -> Iterator[None]:
        # Both server connections open (an earlier test's failed transaction may have made PgBouncer close one):
        # with one alone, consecutive transactions would meet the same session and the hazard would hide.
        assert len(pgbouncer.warm(pgbouncer.dbname)) == 2
        with connection_pointed_at(
            "default", HOST=pgbouncer.host, PORT=str(pgbouncer.port), POOLER=pooler,
            DISABLE_SERVER_SIDE_CURSORS=(pooler != "none") if server_side_cursors is None else not server_side_cursors,
        ):
            yield

    return through
