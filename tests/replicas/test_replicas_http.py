"""The service (gunicorn) on a real primary with a real streaming replica (``DATABASE_REPLICA_URLS``).

The replica's replay is paused (``pg_wal_replay_pause()``: it keeps receiving WAL and applies none), so a row
written through the API exists on the primary only: a listing that misses it read the replica, a read that sees it
read the primary. Then the replica is stopped (listings answer from the primary at once) and started again
(listings go back to it once its back-off has passed)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.replicas.cluster import Replication
from tests.replicas.conftest import Seeded
from tests.servers import Gunicorn

# The test database must exist (the primary's schema is copied from it); no test here uses it otherwise.
pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal
USAGE_URL = "/api/billing/usage/"
ACCOUNT_URL = "/api/billing/account/"
TRANSACTIONS_URL = "/api/billing/transactions/"
ADMIN_TRANSACTIONS_URL = "/api/billing/admin/credits/transactions/"
MANUAL_URL = "/api/billing/admin/credits/manual/"


def stats_url() -> str:
    today = datetime.now(UTC).date().isoformat()
    return f"/api/billing/usage/stats/?period=daily&from={today}&to={today}"


def usage(server: Gunicorn, seeded: Seeded, request_id: str, amount: str = "1.25") -> tuple[int, dict]:
    body = {"account_id": seeded.member_account_id, "request_id": request_id, "endpoint": "/v1/chat",
            "amount": amount}
    return server.request("POST", USAGE_URL, body, seeded.owner_token)


def listing_ids(server: Gunicorn, token: str, url: str = TRANSACTIONS_URL) -> list[str]:
    status, body = server.request("GET", url, token=token)
    assert status == 200, body
    return [row["id"] for row in body["results"]]


def available(server: Gunicorn, seeded: Seeded) -> Decimal:
    status, body = server.request("GET", ACCOUNT_URL, token=seeded.member_token)
    assert status == 200, body
    return D(body["available_credits"])


def stats_requests(server: Gunicorn, seeded: Seeded) -> int:
    status, body = server.request("GET", stats_url(), token=seeded.member_token)
    assert status == 200, body
    return body["total_requests"]


@pytest.fixture
def replay_paused(replication: Replication):  # noqa: ANN201
    replication.wait_replayed()
    replication.pause_replay()
    try:
        yield replication
    finally:
        replication.resume_replay()


def test_lagging_listings_read_the_replica_and_the_account_after_a_debit_reads_the_primary(
    server: Gunicorn, seeded: Seeded, replay_paused: Replication
) -> None:
    before_ids = listing_ids(server, seeded.member_token)
    before_admin = listing_ids(server, seeded.owner_token, ADMIN_TRANSACTIONS_URL)
    before_requests = stats_requests(server, seeded)
    before_available = available(server, seeded)

    status, recorded = usage(server, seeded, "lag-1")
    assert status == 201, recorded
    debit_id = recorded["transaction"]["id"]
    replay_paused.wait_received()  # on the replica's disk, not applied: the replica lags, by construction

    # Read-your-writes: the account right after the debit, from the primary.
    assert available(server, seeded) == before_available - D("1.25")
    # History and statistics may lag: served by the replica, which has not applied the debit.
    assert listing_ids(server, seeded.member_token) == before_ids
    assert debit_id not in listing_ids(server, seeded.owner_token, ADMIN_TRANSACTIONS_URL)
    assert listing_ids(server, seeded.owner_token, ADMIN_TRANSACTIONS_URL) == before_admin
    assert stats_requests(server, seeded) == before_requests

    # An idempotent replay is decided on the primary: the same event, not a second debit.
    status, again = usage(server, seeded, "lag-1")
    assert status == 200, again
    assert again["transaction"]["id"] == debit_id
    body = {"account_id": seeded.member_account_id, "amount": "2.00", "description": "goodwill"}
    headers = {"Idempotency-Key": "replica-adjust-1"}
    first = server.request("POST", MANUAL_URL, body, seeded.owner_token, headers=headers)
    replayed = server.request("POST", MANUAL_URL, body, seeded.owner_token, headers=headers)
    assert (first[0], replayed[0]) == (201, 200), (first, replayed)
    assert replayed[1]["id"] == first[1]["id"]
    assert available(server, seeded) == before_available - D("1.25") + D("2.00")
    assert first[1]["id"] not in listing_ids(server, seeded.member_token)

    # Once the replica applies what it received, the listings show it.
    replay_paused.resume_replay()
    ids = listing_ids(server, seeded.member_token)
    assert ids[:2] == [first[1]["id"], debit_id]
    assert stats_requests(server, seeded) == before_requests + 1
    replay_paused.pause_replay()  # the fixture resumes it


def test_a_replica_that_is_down_leaves_the_listings_to_the_primary_until_it_is_back(
    server: Gunicorn, seeded: Seeded, replication: Replication
) -> None:
    replication.wait_replayed()
    before_requests = stats_requests(server, seeded)  # the worker keeps a connection to the replica
    replication.replica.stop("fast")
    try:
        status, recorded = usage(server, seeded, "down-1")
        assert status == 201, recorded
        started = time.monotonic()
        # Still answered, from the primary (the row just written is there), without waiting for the dead replica.
        assert listing_ids(server, seeded.member_token)[0] == recorded["transaction"]["id"]
        assert stats_requests(server, seeded) == before_requests + 1
        assert time.monotonic() - started < 5
    finally:
        replication.replica.start()
    replication.wait_replayed()

    # Back: once its back-off (1 s here) has passed, lagging reads go to the replica again.
    replication.pause_replay()
    try:
        before_available = available(server, seeded)
        status, recorded = usage(server, seeded, "back-1")
        assert status == 201, recorded
        deadline = time.monotonic() + 15
        while recorded["transaction"]["id"] in listing_ids(server, seeded.member_token):
            assert time.monotonic() < deadline, "listings never went back to the replica"
            time.sleep(0.2)
        assert available(server, seeded) == before_available - D("1.25")  # the account: still the primary's
    finally:
        replication.resume_replay()
    assert listing_ids(server, seeded.member_token)[0] == recorded["transaction"]["id"]
