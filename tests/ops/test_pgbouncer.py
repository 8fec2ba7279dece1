"""The service behind a real PgBouncer in transaction pooling mode (Debian's 1.18: no named prepared statements),
two server connections used in turns, so consecutive transactions of one client land on different ones.

First the hazard is shown to be real here (the hot paths' prepared statements and a WITH HOLD cursor break
without the setting); then every kind of database work runs through PgBouncer with ``DATABASE_POOLER=pgbouncer``:
the hot debit (also from many threads), a usage event alone and in a batch (``COPY``), a hold reserved and
captured, a signed Stripe webhook, listings page by page (offset and cursor), ``verify_ledger``'s
``.iterator()``, and a real gunicorn served with ``DATABASE_URL`` pointing at PgBouncer. Skipped without the
binary (``scripts/ensure-pgbouncer``)."""

from __future__ import annotations

import threading
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, connections, transaction

from credits.models import CreditAccount, LedgerEntry, UsageEvent
from credits.services import credits_debit
from tests.api_helpers import post_json
from tests.conftest import Member, client_for
from tests.credits.test_ledger_invariants_hypothesis import assert_ledger_invariants
from tests.ops.pgbouncer import PgBouncer, pgbouncer_binary, pgbouncer_version
from tests.payments.conftest import deliver, session_event, start_top_up
from tests.servers import Gunicorn, connection_pointed_at

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(pgbouncer_binary() is None, reason="no pgbouncer binary: scripts/ensure-pgbouncer"),
]

D = Decimal
USAGE_URL = "/api/billing/usage/"
BATCH_URL = "/api/billing/usage/batch/"
RESERVATIONS_URL = "/api/billing/reservations/"
TRANSACTIONS_URL = "/api/billing/transactions/"
ADMIN_TRANSACTIONS_URL = "/api/billing/admin/credits/transactions/"


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def usage_body(member: Member, request_id: str, amount: str = "0.25") -> dict:
    return {"account_id": str(member.account.id), "request_id": request_id, "endpoint": "/v1/chat",
            "amount": amount}


# --- the hazard is real here ---------------------------------------------------------------------------------


def test_consecutive_transactions_of_one_client_take_turns_on_the_server_connections(pooled):
    with pooled("pgbouncer"):
        pids = [backend_pid() for _ in range(6)]  # autocommit: each statement its own transaction
        with transaction.atomic():
            inside = {backend_pid() for _ in range(4)}
    assert len(set(pids)) == 2, pids
    assert all(a != b for a, b in zip(pids, pids[1:])), pids  # round robin: never the same one twice running
    assert len(inside) == 1  # a transaction keeps its server connection


def test_without_the_setting_the_hot_paths_prepared_statements_break(pooled, member):
    """DATABASE_POOLER=none behind PgBouncer 1.18: the debit's statement is prepared on one server connection and
    run by name on the other."""
    with pooled("none"), pytest.raises(DatabaseError, match=r"prepared statement \"_pg3_\d+\" (does not|already) exist"):
        for _ in range(4):
            credits_debit(account_id=member.account.id, amount=D("1"), description="through pgbouncer")


def test_without_disabled_server_side_cursors_an_iterator_breaks(pooled, member):
    """``.iterator()`` outside a transaction is a WITH HOLD cursor (verify_ledger's and ledger_verify's): each
    FETCH is a transaction of its own, and the next one reaches the other server connection."""
    import psycopg

    for _ in range(3):
        credits_debit(account_id=member.account.id, amount=D("1"), description="rows to fetch")
    rows = LedgerEntry.objects.filter(account=member.account).order_by("sequence")
    # Django's error for the FETCH; closing the cursor then fails the same way, raised as psycopg's
    with pooled("pgbouncer", server_side_cursors=True), pytest.raises((DatabaseError, psycopg.DatabaseError),
                                                                      match="cursor .* does not exist"):
        list(rows.iterator(chunk_size=1))
    with pooled("pgbouncer"):  # DISABLE_SERVER_SIDE_CURSORS, as DATABASE_POOLER=pgbouncer sets it
        assert [e.sequence for e in rows.iterator(chunk_size=1)] == [1, 2, 3, 4]


def test_the_admin_console_alone_tells_pgbouncer_apart(pgbouncer):
    """Why DATABASE_POOLER is declared, not detected: through a client connection PgBouncer passes on the
    server's own answers (SHOW VERSION is PostgreSQL's error, server_version PostgreSQL's); only its admin
    console, a database of its own that needs an admin or stats user, names it."""
    import psycopg

    with psycopg.connect(**pgbouncer.conninfo(pgbouncer.dbname), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute("SHOW VERSION")
        direct = connection.settings_dict
        with psycopg.connect(host=direct["HOST"], port=direct["PORT"], user=direct["USER"] or None,
                             dbname=pgbouncer.dbname) as plain:
            assert conn.info.parameter_status("server_version") == plain.info.parameter_status("server_version")
    [(version,)] = pgbouncer.admin("SHOW VERSION")
    assert version.startswith("PgBouncer ")


# --- through PgBouncer with DATABASE_POOLER=pgbouncer ---------------------------------------------------------


def test_the_hot_debit_through_pgbouncer(pooled, member):
    before = CreditAccount.objects.get(pk=member.account.id).balance
    with pooled("pgbouncer"):
        seen = set()
        for _ in range(10):  # three transactions a turn: the debits take turns on the two server connections
            credits_debit(account_id=member.account.id, amount=D("0.5"), description="through pgbouncer")
            seen |= {backend_pid(), backend_pid()}
        assert connection.connection.prepare_threshold is None  # nothing was prepared
        assert len(seen) == 2
    assert CreditAccount.objects.get(pk=member.account.id).balance == before - 5
    assert_ledger_invariants(member.account)


def test_the_hot_debit_from_many_threads_through_a_pool_of_two(pooled, member):
    threads, each = 8, 10
    before = CreditAccount.objects.get(pk=member.account.id).balance
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def work() -> None:
        try:
            barrier.wait()
            for _ in range(each):
                credits_debit(account_id=member.account.id, amount=D("0.01"), description="many threads")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    with pooled("pgbouncer"):
        pool = [threading.Thread(target=work) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    assert errors == []
    assert CreditAccount.objects.get(pk=member.account.id).balance == before - D("0.01") * threads * each
    assert_ledger_invariants(member.account)


def test_usage_events_single_and_batch_through_pgbouncer(pooled, owner, member):
    before = CreditAccount.objects.get(pk=member.account.id).balance
    with pooled("pgbouncer"):
        client = client_for(owner)
        for i in range(3):
            response = post_json(client, USAGE_URL, usage_body(member, f"single-{i}"))
            assert response.status_code == 201, response.content
        again = post_json(client, USAGE_URL, usage_body(member, "single-0"))  # a retry replays
        assert again.status_code == 200, again.content
        events = [usage_body(member, f"batch-{i}") for i in range(25)]  # many rows: COPY
        response = post_json(client, BATCH_URL, {"events": events})
        assert response.status_code == 200, response.content
        assert response.json()["recorded"] == 25
    assert UsageEvent.objects.filter(account=member.account).count() == 28
    assert CreditAccount.objects.get(pk=member.account.id).balance == before - D("0.25") * 28
    assert_ledger_invariants(member.account)


def test_a_hold_reserved_then_captured_through_pgbouncer(pooled, owner, member):
    before = CreditAccount.objects.get(pk=member.account.id).balance
    with pooled("pgbouncer"):
        client = client_for(owner)
        response = post_json(client, RESERVATIONS_URL, {"account_id": str(member.account.id), "amount": "30",
                                                        "request_id": "held-call"})
        assert response.status_code == 201, response.content
        hold = response.json()
        response = post_json(client, f"{RESERVATIONS_URL}{hold['id']}/capture/",
                             {"amount": "12.5", "endpoint": "/v1/chat"})
        assert response.status_code == 200, response.content
        again = post_json(client, f"{RESERVATIONS_URL}{hold['id']}/capture/", {"amount": "12.5", "endpoint": "/v1/chat"})
        assert again.status_code == 409, again.content
    account = CreditAccount.objects.get(pk=member.account.id)
    assert (account.balance, account.reserved) == (before - D("12.5"), 0)
    assert UsageEvent.objects.get(account=member.account, request_id="held-call").charged == D("12.5")
    assert_ledger_invariants(member.account)


def test_a_signed_stripe_webhook_through_pgbouncer(pooled, fake_stripe, member):  # noqa: F811
    before = CreditAccount.objects.get(pk=member.account.id).balance
    with pooled("pgbouncer"):
        order = start_top_up(member, "25.50")
        event = session_event("checkout.session.completed", order)
        for duplicate in (False, True):
            response = deliver(event)
            assert response.status_code == 200, response.content
            assert (response.json()["status"], response.json()["duplicate"]) == ("processed", duplicate)
    assert CreditAccount.objects.get(pk=member.account.id).balance == before + D("25.50")
    assert LedgerEntry.objects.filter(reference=f"order:{order['id']}").count() == 1


def test_listings_page_by_page_through_pgbouncer(pooled, owner, member):
    for i in range(12):
        credits_debit(account_id=member.account.id, amount=D("0.1"), description=f"row {i}")
    expected = list(LedgerEntry.objects.filter(account=member.account).order_by("-sequence").values_list("id", flat=True))
    with pooled("pgbouncer"):
        client = client_for(member)
        seen, url = [], f"{TRANSACTIONS_URL}?page_size=5"
        while url:
            body = client.get(url).json()
            assert body["count"] == len(expected)
            seen += [row["id"] for row in body["results"]]
            url = body["next"]
        cursor_seen, url = [], f"{TRANSACTIONS_URL}?pagination=cursor&page_size=4"
        while url:
            response = client.get(url)
            assert response.status_code == 200, response.content
            cursor_seen += [row["id"] for row in response.json()["results"]]
            url = response.json()["next"]
        admin_page = client_for(owner).get(f"{ADMIN_TRANSACTIONS_URL}?limit=3&offset=3")
        assert admin_page.status_code == 200, admin_page.content
    assert seen == cursor_seen == [str(x) for x in expected]
    assert [row["id"] for row in admin_page.json()["results"]] == seen[3:6]


def test_verify_ledger_iterates_through_pgbouncer(pooled, member, other_member):
    out = StringIO()
    with pooled("pgbouncer"):
        call_command("verify_ledger", stdout=out)
    checked = CreditAccount.objects.count()
    assert checked >= 2
    assert out.getvalue().strip() == f"checked {checked} account(s), 0 with problems"


# --- a real server: gunicorn with DATABASE_URL pointing at PgBouncer -----------------------------------------------


def _usage_load(server: Gunicorn, owner: Member, member: Member, run: str, threads: int = 6, each: int = 8):
    """Threads on keep-alive connections posting usage events and reading the ledger; the statuses seen."""
    statuses: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def work(t: int) -> None:
        conn = server.connection()
        barrier.wait()
        try:
            for i in range(each):
                got = [server.request("POST", USAGE_URL, usage_body(member, f"{run}-{t}-{i}", "0.01"),
                                      owner.token, conn=conn)[0],
                       server.request("GET", f"{TRANSACTIONS_URL}?page_size=5", None, member.token, conn=conn)[0]]
                with lock:
                    statuses.extend(got)
        finally:
            conn.close()

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return statuses


def test_gunicorn_behind_pgbouncer_serves_the_hot_paths_only_with_the_setting(pgbouncer, owner, member):
    url = pgbouncer.database_url(pgbouncer.dbname)
    before = CreditAccount.objects.get(pk=member.account.id).balance
    assert len(pgbouncer.warm(pgbouncer.dbname)) == 2
    with Gunicorn({"DATABASE_URL": url, "DATABASE_POOLER": "pgbouncer"}) as server:
        statuses = _usage_load(server, owner, member, "pooled")
    assert sorted(set(statuses)) == [200, 201], statuses
    recorded = statuses.count(201)
    assert recorded == 48
    assert CreditAccount.objects.get(pk=member.account.id).balance == before - D("0.01") * recorded
    assert_ledger_invariants(member.account)

    # both server connections open again (one may have closed with the first server's connections)
    assert len(pgbouncer.warm(pgbouncer.dbname)) == 2
    with Gunicorn({"DATABASE_URL": url, "DATABASE_POOLER": "none"}) as server:
        statuses = []
        for i in range(8):
            conn = server.connection(timeout=5)
            try:
                statuses.append(server.request("POST", USAGE_URL, usage_body(member, f"direct-setting-{i}", "0.01"),
                                               owner.token, conn=conn)[0])
            except TimeoutError:
                statuses.append(0)  # a request left waiting (no answer in 5 s)
            finally:
                conn.close()
    # prepared statements run by name on the other server connection: 500s (and, at times, a request that hangs)
    assert set(statuses) - {201}, statuses
    assert_ledger_invariants(member.account)  # what did commit is sound


@pytest.mark.skipif(
    pgbouncer_binary() is None or pgbouncer_version(pgbouncer_binary()) < (1, 22, 1),
    reason="PgBouncer >= 1.22.1 (max_prepared_statements, DEALLOCATE ALL, COPY fixed) is not installed here")
def test_with_pgbouncer_tracking_prepared_statements_they_stay_on(pooled, pgbouncer, owner, member):
    """DATABASE_POOLER=pgbouncer-prepared behind a PgBouncer that carries prepared statements across server
    connections: the hot paths keep theirs."""
    settings_dict = connection.settings_dict
    with PgBouncer(settings_dict, pool_size=2, max_prepared_statements=200) as bouncer:
        bouncer.warm(settings_dict["NAME"])
        with connection_pointed_at(connection, HOST=bouncer.host, PORT=str(bouncer.port), POOLER="pgbouncer-prepared",
                                   DISABLE_SERVER_SIDE_CURSORS=True):
            for i in range(6):
                credits_debit(account_id=member.account.id, amount=D("0.5"), description="prepared")
                response = post_json(client_for(owner), USAGE_URL, usage_body(member, f"prep-{i}"))
                assert response.status_code == 201, response.content
            assert connection.connection.prepare_threshold is not None
            assert connection.connection._prepared._names  # statements were prepared
    assert_ledger_invariants(member.account)
