"""Limits that agree with the contract (README, "Limits"): the largest body each endpoint takes, 413 beyond it
with the error envelope; chunked bodies refused with 411 (never read as ``{}``); 503 ``service_unavailable``
with ``Retry-After`` while the database does not answer.

The regressions of hostile testing: a valid 1,000-event batch carrying the metadata the README allows (4.2 MB)
got Django's generic 400 "Bad request."; a chunked body was read as empty; with PostgreSQL down the API answered
500 while /healthz answered 503."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import connection

from credits.models import UsageEvent
from tests.api_helpers import error_of, full_state
from tests.conftest import client_for
from tests.payments.conftest import WEBHOOK_SECRET, deliver
from tests.servers import connection_pointed_at

BATCH_URL = "/api/billing/usage/batch/"


def _events(account, n: int, metadata_chars: int) -> list[dict]:  # noqa: ANN001
    blob = "x" * metadata_chars
    return [{"account_id": str(account.id), "request_id": f"big-{i}", "endpoint": "/v1/chat/completions",
             "amount": "0.01", "metadata": {"blob": blob}} for i in range(n)]


@pytest.mark.django_db
def test_a_full_batch_with_the_largest_metadata_is_recorded(owner, member):
    events = _events(member.account, 1000, 4080)
    assert len(json.dumps(events[0]["metadata"])) <= 4096  # the README's limit for one event
    body = json.dumps({"events": events})
    assert len(body) > 4_000_000
    response = client_for(owner).post(BATCH_URL, data=body, content_type="application/json")
    assert response.status_code == 200, response.content[:300]
    assert response.json()["recorded"] == 1000
    assert UsageEvent.objects.filter(account=member.account).count() == 1000


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "limit"),
    [
        (BATCH_URL, settings.API_BATCH_MAX_BODY_BYTES),
        ("/api/billing/usage/", settings.API_MAX_BODY_BYTES),
        ("/api/billing/admin/credits/manual/", settings.API_MAX_BODY_BYTES),
        ("/api/billing/webhooks/stripe/", settings.API_MAX_BODY_BYTES),
    ],
)
def test_a_body_over_the_endpoints_limit_is_a_413_that_writes_nothing(owner, member, path, limit):
    before = full_state()
    padding = "x" * (limit + 1 - len('{"events": [], "pad": ""}'))
    body = '{"events": [], "pad": "' + padding + '"}'
    assert len(body) == limit + 1
    response = client_for(owner).post(path, data=body, content_type="application/json")
    error = error_of(response, 413, "request_too_large")
    assert error["details"] == {"max_bytes": limit, "content_length": limit + 1}
    assert full_state() == before


@pytest.mark.django_db
def test_a_body_at_the_limit_is_read(owner):
    limit = settings.API_MAX_BODY_BYTES
    body = '{"pad": "' + "x" * (limit - len('{"pad": ""}')) + '"}'
    response = client_for(owner).post("/api/billing/usage/", data=body, content_type="application/json")
    assert response.status_code == 400  # read and refused for what it says, not for its size
    assert "pad" in response.json()["error"]["details"]["non_field_errors"][0]


@pytest.mark.django_db
def test_a_chunked_body_is_a_411(owner, member):
    before = full_state()
    body = json.dumps({"account_id": str(member.account.id), "request_id": "c-1", "endpoint": "/x", "amount": "1"})
    response = client_for(owner).post("/api/billing/usage/", data=body, content_type="application/json",
                                      HTTP_TRANSFER_ENCODING="chunked")
    error_of(response, 411, "length_required")
    assert full_state() == before


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_over_a_socket_is_a_411(live_server, owner, member):
    before = full_state()
    body = json.dumps({"account_id": str(member.account.id), "request_id": "c-2", "endpoint": "/x", "amount": "1"})
    url = urlsplit(live_server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.putrequest("POST", "/api/billing/usage/")
    conn.putheader("Authorization", f"Token {owner.token}")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(f"{len(body):x}\r\n{body}\r\n0\r\n\r\n".encode())
    response = conn.getresponse()
    assert response.status == 411
    assert json.loads(response.read())["error"]["code"] == "length_required"
    conn.close()
    assert full_state() == before


@pytest.fixture
def database_down(django_db_blocker):  # noqa: ANN001, ANN201
    """The default connection points at a server that is not there (a socket directory with none in it)."""
    try:
        with connection_pointed_at(connection, HOST="/nonexistent-postgres-socket-dir", PORT="1"):
            yield
    finally:
        connection.ensure_connection()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/billing/account/"),
        ("get", "/api/billing/transactions/"),
        ("post", "/api/billing/usage/"),
        ("webhook", "/api/billing/webhooks/stripe/"),
        ("admin", "/admin/login/"),
    ],
)
def test_the_api_answers_503_with_retry_after_while_the_database_is_down(owner, method, path, request, settings):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    client = client_for(owner)
    event = json.dumps({"id": "evt_down", "object": "event", "type": "charge.refunded", "created": 1,
                        "data": {"object": {"id": "ch_1", "object": "charge"}}})
    request.getfixturevalue("database_down")
    if method == "webhook":  # a signed delivery: it gets as far as storing the event
        response = deliver(event)
    elif method == "admin":  # a Django view (not the REST framework's): logging in reads the users
        response = client.post(path, {"username": "olivia", "password": "x"})
    elif method == "post":
        response = client.post(path, data="{}", content_type="application/json")
    else:
        response = client.get(path)
    error = error_of(response, 503, "service_unavailable")
    assert error["message"]
    assert response["Retry-After"] == "5"
    health = client.get("/healthz")
    assert health.status_code == 503
