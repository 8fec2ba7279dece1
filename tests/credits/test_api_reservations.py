"""Holds over HTTP: /api/billing/reservations/ (list, create), /{id}/ (retrieve), /{id}/capture/ and
/{id}/release/."""

from __future__ import annotations

import copy
import io
import json
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from credits.errors import RequestIdHeld
from credits.models import CreditAccount, Hold, HoldStatus, LedgerEntry, UsageEvent
from credits.services import UsageInput, credits_debit, credits_grant, hold_create, usage_record
from tests.api_helpers import assert_utc, db_snapshot, error_of, invalid_field, post_json
from tests.conftest import client_for
from tests.credits.test_ledger_invariants_hypothesis import assert_ledger_invariants
from tests.test_service_endpoints import _check

pytestmark = pytest.mark.django_db

D = Decimal
URL = "/api/billing/reservations/"
MISSING = object()
HOLD_FIELDS = {
    "id",
    "account_id",
    "status",
    "amount",
    "funded",
    "captured_amount",
    "request_id",
    "reference",
    "expires_at",
    "settled_at",
    "created_at",
}
ROW_FIELDS = {
    "id",
    "transaction_type",
    "status",
    "credits_amount",
    "credits_balance_after",
    "description",
    "reference",
    "metadata",
    "created_at",
    "balance_change",
    "reserved_change",
    "reserved_after",
    "sequence",
    "hold_id",
}


def hold_url(hold_id: object, action: str | None = None) -> str:
    return f"{URL}{hold_id}/" + (f"{action}/" if action else "")


def reserve(client, account_id, amount="30", request_id="call-1", **fields):  # noqa: ANN001, ANN003, ANN201
    return post_json(
        client, URL, {"account_id": str(account_id), "amount": amount, "request_id": request_id, **fields}
    )


def capture(client, hold_id, amount="12.5", endpoint="/v1/chat", **fields):  # noqa: ANN001, ANN003, ANN201
    return post_json(client, hold_url(hold_id, "capture"), {"amount": amount, "endpoint": endpoint, **fields})


def release(client, hold_id):  # noqa: ANN001, ANN201
    return post_json(client, hold_url(hold_id, "release"), {})


def figures(account) -> tuple[Decimal, Decimal, Decimal]:  # noqa: ANN001
    account = CreditAccount.objects.get(pk=account.pk)
    return account.balance, account.reserved, account.available


def everything() -> tuple:
    """db_snapshot, the holds' states and the usage events: what a refused request must leave as it was."""
    return (
        db_snapshot(),
        sorted(Hold.objects.values_list("id", "status", "captured_amount", "settled_at")),
        UsageEvent.objects.count(),
    )


def expire(hold_id: object) -> None:
    Hold.objects.filter(pk=hold_id).update(expires_at=timezone.now() - timedelta(seconds=1))


@pytest.fixture
def held(admin, member) -> dict:  # noqa: ANN001
    """An active 30-credit hold on the member's 100-credit account, made over HTTP."""
    response = reserve(client_for(admin), member.account.id, "30", "call-1")
    assert response.status_code == 201, response.content
    return response.json()


# --- create -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owner_or_admin_reserves_credits(request, member, role):
    caller = request.getfixturevalue(role)
    response = reserve(client_for(caller), member.account.id, "30", "call-1", reference="chat-42")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == HOLD_FIELDS | {"transaction_id", "available_credits"}
    hold = Hold.objects.get(pk=body["id"])
    entry = LedgerEntry.objects.get(pk=body["transaction_id"])
    assert (entry.transaction_type, entry.hold_id, entry.account_id) == (
        "reserve",
        hold.id,
        member.account.id,
    )
    assert (entry.balance_delta, entry.reserved_delta, entry.actor_id) == (0, D("30"), caller.user.pk)
    assert (hold.status, hold.amount, hold.request_id, hold.reference) == (
        "active",
        D("30"),
        "call-1",
        "chat-42",
    )
    assert hold.created_by_id == caller.user.pk
    assert body["status"] == "active"
    assert (body["amount"], body["captured_amount"], body["settled_at"]) == ("30.00", None, None)
    assert (body["account_id"], body["request_id"], body["reference"]) == (
        str(member.account.id),
        "call-1",
        "chat-42",
    )
    assert body["available_credits"] == "70.00"
    assert assert_utc(body["expires_at"]) == hold.expires_at == entry.created_at + timedelta(seconds=900)
    assert assert_utc(body["created_at"]) == hold.created_at
    assert "Idempotent-Replayed" not in response
    assert figures(member.account) == (D("100"), D("30"), D("70"))
    assert_ledger_invariants(member.account)


@pytest.mark.parametrize("expires_in", [1, 60, 86_400])
def test_expires_in_sets_the_expiry(admin, member, expires_in):
    body = reserve(client_for(admin), member.account.id, expires_in=expires_in).json()
    entry = LedgerEntry.objects.get(pk=body["transaction_id"])
    assert assert_utc(body["expires_at"]) == entry.created_at + timedelta(seconds=expires_in)


def test_the_platform_account_can_be_reserved_on(admin, platform):
    pool = CreditAccount.objects.get(platform=platform, user__isnull=True)
    credits_grant(account_id=pool.id, amount=D("5"))
    response = reserve(client_for(admin), pool.id, "5")
    assert response.status_code == 201, response.content
    assert response.json()["available_credits"] == "0.00"
    assert figures(pool) == (D("5"), D("5"), D("0"))


@pytest.mark.parametrize(("raw", "expected"), [("12.5", "12.50"), ("1e-6", "0.000001"), ("7", "7.00")])
def test_json_number_amounts_are_taken_exactly(admin, member, raw, expected):
    text = f'{{"account_id": "{member.account.id}", "amount": {raw}, "request_id": "n-1"}}'
    response = post_json(client_for(admin), URL, text)
    assert response.status_code == 201, response.content
    assert response.json()["amount"] == expected
    assert Hold.objects.get(pk=response.json()["id"]).amount == D(expected)


def test_reservation_beyond_available_is_402_and_writes_nothing(admin, member):
    client = client_for(admin)
    assert reserve(client, member.account.id, "60", "a").status_code == 201
    before = everything()
    error = error_of(reserve(client, member.account.id, "40.000001", "b"), 402, "insufficient_credits")
    assert error["details"] == {"available": "40.00", "required": "40.000001"}
    assert everything() == before
    # exactly what is available can be held, and the refused request_id was not used up
    assert reserve(client, member.account.id, "40", "b").status_code == 201
    assert figures(member.account) == (D("100"), D("100"), D("0"))
    error_of(reserve(client, member.account.id, "0.000001", "c"), 402, "insufficient_credits")


def test_same_request_id_and_body_returns_the_same_hold(admin, member, held):
    client = client_for(admin)
    before = everything()
    for amount in ("30", "30.00", "30.000000"):  # the same amount, written differently
        again = reserve(client, member.account.id, amount, "call-1")
        assert again.status_code == 200, again.content
        assert again["Idempotent-Replayed"] == "true"
        assert again.json() == held
    assert everything() == before
    assert Hold.objects.count() == 1


def test_a_replay_shows_the_hold_as_it_is_now(admin, member, held):
    client = client_for(admin)
    assert capture(client, held["id"], "10").status_code == 200
    credits_debit(account_id=member.account.id, amount=D("90"))  # nothing left: a new hold would be 402
    before = everything()
    again = reserve(client, member.account.id, "30", "call-1")
    assert again.status_code == 200, again.content
    body = again.json()
    assert (body["id"], body["transaction_id"]) == (held["id"], held["transaction_id"])
    assert (body["status"], body["captured_amount"], body["available_credits"]) == (
        "captured",
        "10.00",
        "0.00",
    )
    assert everything() == before


@pytest.mark.parametrize(
    "change",
    [{"amount": "31"}, {"expires_in": 901}, {"reference": "other"}, {"expires_in": 60}],
    ids=["amount", "expires_in", "reference", "shorter"],
)
def test_same_request_id_with_another_body_is_409(admin, member, held, change):
    before = everything()
    body = {"account_id": str(member.account.id), "amount": "30", "request_id": "call-1"} | change
    error = error_of(post_json(client_for(admin), URL, body), 409, "idempotency_conflict")
    assert error["details"] == {"request_id": "call-1"}
    assert everything() == before


def test_a_client_idempotency_key_never_takes_a_request_id(admin, member):
    """Keys clients choose live in their own namespace (``client:``): an adjustment's Idempotency-Key and a
    hold's request_id never meet."""
    client = client_for(admin)
    adjusted = post_json(
        client,
        "/api/billing/admin/credits/manual/",
        {"account_id": str(member.account.id), "amount": "1", "description": "x"},
        HTTP_IDEMPOTENCY_KEY="call-9",
    )
    assert adjusted.status_code == 201
    assert reserve(client, member.account.id, "1", "call-9").status_code == 201


@pytest.mark.parametrize("amount", ["1", "0"])
def test_a_request_id_recorded_as_usage_cannot_be_held(admin, member, platform, amount):
    """A request_id names one AI call: once recorded as a usage event (charged, or free with no ledger row), a
    hold with it is a 409 (its capture could never record its event)."""
    usage_record(platform=platform, usage=UsageInput(account_id=member.account.id, request_id="call-9",
                                                     endpoint="/x", amount=D(amount)))
    before = everything()
    error = error_of(reserve(client_for(admin), member.account.id, "1", "call-9"), 409, "request_id_recorded")
    assert error["details"] == {"request_id": "call-9"}
    assert everything() == before


def test_request_ids_are_per_account(admin, member, other_member, held):
    response = reserve(client_for(admin), other_member.account.id, "30", "call-1")
    assert response.status_code == 201
    assert response.json()["id"] != held["id"]
    assert figures(other_member.account) == (D("50"), D("30"), D("20"))


# --- capture ------------------------------------------------------------------------------------------------


def test_capture_below_the_hold_records_usage_charges_it_and_releases_the_rest(admin, member, held):
    response = capture(
        client_for(admin), held["id"], "12.5", model="gpt-x", input_tokens=1200, output_tokens=300
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == HOLD_FIELDS | {"transactions", "usage_event_id", "available_credits"}
    assert (body["id"], body["status"], body["captured_amount"]) == (held["id"], "captured", "12.50")
    assert_utc(body["settled_at"])
    charge, rest = body["transactions"]
    assert set(charge) == ROW_FIELDS and set(rest) == ROW_FIELDS
    assert (charge["transaction_type"], charge["balance_change"], charge["reserved_change"]) == (
        "subtract",
        "-12.50",
        "-12.50",
    )
    assert (rest["transaction_type"], rest["balance_change"], rest["reserved_change"]) == (
        "release",
        "0.00",
        "-17.50",
    )
    assert charge["hold_id"] == rest["hold_id"] == held["id"]
    assert body["available_credits"] == "87.50"
    event = UsageEvent.objects.get(pk=body["usage_event_id"])
    assert (event.hold_id, event.request_id, event.account_id) == (
        Hold.objects.get().id,
        "call-1",
        member.account.id,
    )
    assert (event.endpoint, event.model, event.input_tokens, event.output_tokens) == (
        "/v1/chat",
        "gpt-x",
        1200,
        300,
    )
    assert (event.cost, event.success, str(event.ledger_entry_id)) == (D("12.5"), True, charge["id"])
    entries = LedgerEntry.objects.filter(hold_id=held["id"]).order_by("sequence")
    assert [str(e.id) for e in entries] == [held["transaction_id"], charge["id"], rest["id"]]
    assert all(e.actor_id == admin.user.pk for e in entries)
    hold = Hold.objects.get()
    assert (hold.status, hold.captured_amount) == (HoldStatus.CAPTURED, D("12.5"))
    assert figures(member.account) == (D("87.5"), D("0"), D("87.5"))
    assert_ledger_invariants(member.account)


def test_capture_of_the_whole_hold_writes_only_the_charge(admin, member, held):
    body = capture(client_for(admin), held["id"], "30").json()
    assert [(t["transaction_type"], t["balance_change"]) for t in body["transactions"]] == [
        ("subtract", "-30.00")
    ]
    assert body["available_credits"] == "70.00"
    assert_ledger_invariants(member.account)


def test_capture_of_zero_releases_everything(admin, member, held):
    body = capture(client_for(admin), held["id"], "0").json()
    assert (body["status"], body["captured_amount"]) == ("captured", "0.00")
    assert [(t["transaction_type"], t["reserved_change"]) for t in body["transactions"]] == [
        ("release", "-30.00")
    ]
    event = UsageEvent.objects.get(pk=body["usage_event_id"])
    assert (event.cost, event.ledger_entry_id) == (0, None)
    assert figures(member.account) == (D("100"), D("0"), D("100"))


def test_a_failed_call_is_recorded_and_charged_nothing(admin, member, held):
    body = capture(client_for(admin), held["id"], "5", success=False).json()
    assert (body["status"], body["captured_amount"], body["available_credits"]) == (
        "captured",
        "0.00",
        "100.00",
    )
    assert [t["transaction_type"] for t in body["transactions"]] == ["release"]
    event = UsageEvent.objects.get(pk=body["usage_event_id"])
    assert (event.success, event.cost) == (False, 0)
    assert figures(member.account) == (D("100"), D("0"), D("100"))


def test_capture_above_the_hold_takes_the_excess_from_available(admin, member, held):
    credits_debit(account_id=member.account.id, amount=D("60"))  # balance 40, reserved 30: available 10
    body = capture(client_for(admin), held["id"], "40").json()
    [charge] = body["transactions"]
    assert (charge["balance_change"], charge["reserved_change"]) == ("-40.00", "-30.00")
    assert (body["captured_amount"], body["available_credits"]) == ("40.00", "0.00")
    assert figures(member.account) == (D("0"), D("0"), D("0"))
    assert_ledger_invariants(member.account)


def test_capture_beyond_hold_and_available_is_402_and_writes_nothing(admin, member, held):
    credits_debit(account_id=member.account.id, amount=D("60"))  # available 10
    client = client_for(admin)
    before = everything()
    error = error_of(capture(client, held["id"], "40.000001"), 402, "insufficient_credits")
    assert error["details"] == {"available": "10.00", "required": "10.000001"}
    assert everything() == before
    assert Hold.objects.get().status == "active"
    # the hold is still there to be captured
    assert capture(client, held["id"], "40").status_code == 200
    assert_ledger_invariants(member.account)


def test_capturing_an_expired_hold_is_409_and_releases_it(admin, member, held):
    expire(held["id"])
    client = client_for(admin)
    error = error_of(capture(client, held["id"], "10"), 409, "hold_expired")
    assert error["details"] == {"hold_id": held["id"]}
    hold = Hold.objects.get()
    assert (hold.status, hold.captured_amount) == (HoldStatus.EXPIRED, None)
    assert hold.settled_at is not None
    release_row = LedgerEntry.objects.get(hold=hold, transaction_type="release")
    assert (release_row.reserved_delta, release_row.description) == (D("-30"), "Hold expired")
    assert not UsageEvent.objects.exists()
    assert figures(member.account) == (D("100"), D("0"), D("100"))
    # it is settled now: a second touch is a plain 409
    before = everything()
    error = error_of(capture(client, held["id"], "10"), 409, "hold_not_active")
    assert error["details"] == {"status": "expired"}
    error_of(release(client, held["id"]), 409, "hold_not_active")
    assert everything() == before
    assert client.get(hold_url(held["id"])).json()["status"] == "expired"
    assert_ledger_invariants(member.account)


def test_a_direct_usage_call_with_a_held_request_id_is_refused_and_the_hold_still_captures(
    admin, member, platform, held
):
    """The regression: a direct usage call that took an active hold's request_id made every later capture a 409,
    and the hold stayed active until it expired. Now the direct call is the 409, over HTTP as in the service."""
    client = client_for(admin)
    before = everything()
    body = {"account_id": str(member.account.id), "request_id": "call-1", "endpoint": "/x", "amount": "1"}
    error = error_of(post_json(client, "/api/billing/usage/", body), 409, "request_id_held")
    assert error["details"] == {"hold_id": held["id"], "hold_status": "active"}
    with pytest.raises(RequestIdHeld):
        usage_record(platform=platform, usage=UsageInput(account_id=member.account.id, request_id="call-1",
                                                         endpoint="/x", amount=D("0"), success=False))
    batch = post_json(client, "/api/billing/usage/batch/", {"events": [body]}).json()
    assert batch["results"][0]["status"] == "rejected"
    assert batch["results"][0]["error"]["code"] == "request_id_held"
    assert everything() == before
    captured = capture(client, held["id"], "5")
    assert captured.status_code == 200, captured.content
    # once captured (or released) the request_id still names that call
    error_of(post_json(client, "/api/billing/usage/", body), 409, "request_id_held")
    assert_ledger_invariants(member.account)


@pytest.mark.parametrize(
    ("first", "second"),
    [("capture", "capture"), ("capture", "release"), ("release", "release"), ("release", "capture")],
)
def test_a_hold_is_captured_or_released_once(admin, member, held, first, second):
    client = client_for(admin)
    settle = {
        "capture": lambda: capture(client, held["id"], "5"),
        "release": lambda: release(client, held["id"]),
    }
    assert settle[first]().status_code == 200
    before = everything()
    error = error_of(settle[second](), 409, "hold_not_active")
    assert error["details"] == {"status": "captured" if first == "capture" else "released"}
    assert everything() == before
    assert_ledger_invariants(member.account)


# --- release ------------------------------------------------------------------------------------------------


def test_release_frees_the_whole_hold(admin, member, held):
    response = release(client_for(admin), held["id"])
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == HOLD_FIELDS | {"transactions", "available_credits"}
    assert (body["status"], body["captured_amount"], body["available_credits"]) == (
        "released",
        None,
        "100.00",
    )
    assert_utc(body["settled_at"])
    [row] = body["transactions"]
    assert (row["transaction_type"], row["reserved_change"], row["hold_id"]) == (
        "release",
        "-30.00",
        held["id"],
    )
    assert LedgerEntry.objects.get(pk=row["id"]).actor_id == admin.user.pk
    assert not UsageEvent.objects.exists()
    assert figures(member.account) == (D("100"), D("0"), D("100"))
    assert_ledger_invariants(member.account)


def test_releasing_an_expired_hold_answers_200_with_status_expired(admin, member, held):
    expire(held["id"])
    body = release(client_for(admin), held["id"]).json()
    assert (body["status"], body["available_credits"]) == ("expired", "100.00")
    [row] = body["transactions"]
    assert (row["transaction_type"], row["description"]) == ("release", "Hold expired")
    assert Hold.objects.get().status == HoldStatus.EXPIRED
    assert_ledger_invariants(member.account)


def test_the_expiry_command_releases_expired_holds_and_later_touches_are_409(admin, member, held):
    client = client_for(admin)
    lasting = reserve(client, member.account.id, "20", "call-2").json()
    expire(held["id"])
    out = io.StringIO()
    call_command("release_expired_holds", stdout=out)

    assert out.getvalue() == "released 1 expired hold(s)\n"
    assert {str(k): v for k, v in Hold.objects.values_list("id", "status")} == {
        held["id"]: "expired",
        lasting["id"]: "active",
    }
    assert figures(member.account) == (D("100"), D("20"), D("80"))
    before = everything()
    assert error_of(release(client, held["id"]), 409, "hold_not_active")["details"] == {"status": "expired"}
    assert error_of(capture(client, held["id"]), 409, "hold_not_active")["details"] == {"status": "expired"}
    assert everything() == before
    assert_ledger_invariants(member.account)


# --- retrieve and list --------------------------------------------------------------------------------------


def test_retrieve_shows_one_hold(admin, member, held):
    client = client_for(admin)
    got = client.get(hold_url(held["id"]))
    assert got.status_code == 200
    assert got.json() == {k: v for k, v in held.items() if k in HOLD_FIELDS}
    capture(client, held["id"], "3")
    body = client.get(hold_url(held["id"].upper())).json()  # a UUID in capitals names the same hold
    assert (body["status"], body["captured_amount"]) == ("captured", "3.00")
    assert_utc(body["settled_at"])


@pytest.fixture
def many_holds(admin, member, other_member, outsider) -> list[dict]:  # noqa: ANN001
    """Five holds of acme's members in several states, newest last; and one of globex that must never show."""
    client = client_for(admin)
    made = [
        reserve(client, account.id, "1", f"r{i}").json()
        for i, account in enumerate([member.account, other_member.account] * 2 + [member.account])
    ]
    capture(client, made[0]["id"], "1")
    release(client, made[1]["id"])
    hold_create(account_id=outsider.account.id, amount=D("1"), idempotency_key="theirs")
    return made


def listing(client, **params) -> dict:  # noqa: ANN001, ANN003
    response = client.get(URL, params)
    assert response.status_code == 200, response.content[:500]
    return response.json()


def ids(rows: list[dict]) -> list[str]:
    return [r["id"] for r in rows]


def test_list_newest_first_with_pages(admin, many_holds):
    client = client_for(admin)
    newest_first = ids(many_holds)[::-1]
    body = listing(client)
    assert set(body) == {"count", "next", "previous", "results"}
    assert (body["count"], ids(body["results"]), body["next"], body["previous"]) == (
        5,
        newest_first,
        None,
        None,
    )
    assert all(set(r) == HOLD_FIELDS for r in body["results"])
    first = listing(client, page_size=2)
    assert (first["count"], ids(first["results"])) == (5, newest_first[:2])
    assert parse_qs(urlsplit(first["next"]).query) == {"page_size": ["2"], "page": ["2"]}
    second = client.get(first["next"]).json()
    assert ids(second["results"]) == newest_first[2:4]
    last = client.get(second["next"]).json()
    assert (ids(last["results"]), last["next"]) == (newest_first[4:], None)
    assert parse_qs(urlsplit(second["previous"]).query) == {"page_size": ["2"]}
    assert parse_qs(urlsplit(last["previous"]).query) == {"page_size": ["2"], "page": ["2"]}
    error_of(client.get(URL, {"page": 4, "page_size": 2}), 404)


def test_list_cursor_pagination_walks_every_hold(admin, many_holds):
    client = client_for(admin)
    seen, url, params = [], URL, {"pagination": "cursor", "page_size": 2}
    while url:
        body = client.get(url, params).json()
        assert "count" not in body
        seen += ids(body["results"])
        url, params = body["next"], None
    assert seen == ids(many_holds)[::-1]
    error_of(client.get(URL, {"cursor": "garbage"}), 400, "invalid")


def test_list_filters_by_status_and_account(admin, member, other_member, outsider, many_holds):
    client = client_for(admin)
    assert ids(listing(client, status="captured")["results"]) == [many_holds[0]["id"]]
    assert ids(listing(client, status="released")["results"]) == [many_holds[1]["id"]]
    assert listing(client, status="expired")["count"] == 0
    mine = listing(client, account_id=str(member.account.id))
    assert ids(mine["results"]) == [many_holds[4]["id"], many_holds[2]["id"], many_holds[0]["id"]]
    both = listing(client, account_id=str(other_member.account.id), status="active")
    assert ids(both["results"]) == [many_holds[3]["id"]]
    # another platform's account is simply not there
    assert listing(client, account_id=str(outsider.account.id)) == {
        "count": 0,
        "next": None,
        "previous": None,
        "results": [],
    }
    theirs = listing(client_for(outsider))
    assert theirs["count"] == 1 and theirs["results"][0]["request_id"] == "theirs"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", "pending"),
        ("status", "ACTIVE"),
        ("account_id", "nope"),
        ("account_id", "123"),
        ("page", "0"),
        ("page_size", "101"),
        ("page", "x"),
    ],
)
def test_list_rejects_bad_query_parameters(admin, many_holds, field, value):
    invalid_field(client_for(admin).get(URL, {field: value}), field)


# --- who may call -------------------------------------------------------------------------------------------


def _every_call(hold_id: str, account_id: object) -> list[tuple[str, str, dict | None]]:
    return [
        ("get", URL, None),
        ("post", URL, {"account_id": str(account_id), "amount": "1", "request_id": "x"}),
        ("get", hold_url(hold_id), None),
        ("post", hold_url(hold_id, "capture"), {"amount": "1", "endpoint": "/x"}),
        ("post", hold_url(hold_id, "release"), {}),
    ]


def _call(client, method: str, url: str, body: dict | None):  # noqa: ANN001, ANN202
    return client.get(url) if method == "get" else post_json(client, url, body)


def test_members_cannot_touch_holds(member, held):
    before = everything()
    for method, url, body in _every_call(held["id"], member.account.id):
        error_of(_call(client_for(member), method, url, body), 403, "admin_required")
    assert everything() == before


def test_without_credentials_every_endpoint_is_401(member, held):
    before = everything()
    for method, url, body in _every_call(held["id"], member.account.id):
        error_of(_call(APIClient(), method, url, body), 401, "not_authenticated")
        error_of(_call(client_for(token="bogus"), method, url, body), 401, "authentication_failed")
    assert everything() == before


def test_another_platforms_admin_gets_404(outsider, member, held):
    client = client_for(outsider)
    before = everything()
    error = error_of(reserve(client, member.account.id, "1", "x"), 404, "account_not_found")
    assert error["details"] == {"account_id": str(member.account.id)}
    error_of(client.get(hold_url(held["id"])), 404, "hold_not_found")
    error_of(capture(client, held["id"], "1"), 404, "hold_not_found")
    error_of(release(client, held["id"]), 404, "hold_not_found")
    assert everything() == before
    assert Hold.objects.get().status == "active"


def test_their_accounts_and_holds_are_404_to_us(admin, outsider):
    theirs = hold_create(account_id=outsider.account.id, amount=D("1")).hold
    client = client_for(admin)
    before = everything()
    error_of(reserve(client, outsider.account.id, "1", "x"), 404, "account_not_found")
    globex = CreditAccount.objects.get(platform=outsider.platform, user__isnull=True)
    error_of(reserve(client, globex.id, "1", "x"), 404, "account_not_found")
    error_of(reserve(client, "00000000-0000-0000-0000-000000000000", "1", "x"), 404, "account_not_found")
    error_of(client.get(hold_url(theirs.id)), 404, "hold_not_found")
    error_of(capture(client, theirs.id, "1"), 404, "hold_not_found")
    error_of(release(client, theirs.id), 404, "hold_not_found")
    assert everything() == before


@pytest.mark.parametrize(
    "bad_id",
    ["not-a-uuid", "123", "00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-00000000000g"],
)
def test_malformed_or_unknown_hold_ids_are_404(admin, held, bad_id):
    client = client_for(admin)
    before = everything()
    error_of(client.get(hold_url(bad_id)), 404, "hold_not_found")
    error_of(capture(client, bad_id, "1"), 404, "hold_not_found")
    error_of(post_json(client, hold_url(bad_id, "capture"), {"amount": "oops"}), 404, "hold_not_found")
    error_of(release(client, bad_id), 404, "hold_not_found")
    assert everything() == before


def test_wrong_methods_are_405(admin, held):
    client = client_for(admin)
    error_of(client.delete(URL), 405, "method_not_allowed")
    error_of(client.get(hold_url(held["id"], "capture")), 405, "method_not_allowed")
    error_of(post_json(client, hold_url(held["id"]), {}), 405, "method_not_allowed")


# --- bad input ----------------------------------------------------------------------------------------------

BAD_CREATE = [
    ("amount", "0"),
    ("amount", "0.000000"),
    ("amount", "-1"),
    ("amount", "-0.01"),
    ("amount", "NaN"),
    ("amount", "Infinity"),
    ("amount", "-Infinity"),
    ("amount", "1.0000001"),
    ("amount", "1e-7"),
    ("amount", "1000000000.000001"),
    ("amount", "1e400"),
    ("amount", "1" * 2000),
    ("amount", "abc"),
    ("amount", ""),
    ("amount", True),
    ("amount", []),
    ("amount", {}),
    ("amount", None),
    ("amount", MISSING),
    ("expires_in", 0),
    ("expires_in", -1),
    ("expires_in", 86_401),
    ("expires_in", 10**30),
    ("expires_in", 1.5),
    ("expires_in", 900.0),
    ("expires_in", "900"),
    ("expires_in", True),
    ("expires_in", None),
    ("expires_in", [900]),
    ("account_id", "not-a-uuid"),
    ("account_id", "1234"),
    ("account_id", 42),
    ("account_id", None),
    ("account_id", ""),
    ("account_id", MISSING),
    ("request_id", ""),
    ("request_id", "   "),
    ("request_id", None),
    ("request_id", MISSING),
    ("request_id", 42),
    ("request_id", "r" * 256),
    ("request_id", "a\nb"),
    ("request_id", ["x"]),
    ("reference", "r" * 256),
    ("reference", 5),
    ("reference", None),
    ("reference", "a\x00b"),
    ("expires_at", "2030-01-01T00:00:00Z"),  # not a field: refused, not ignored
]


@pytest.mark.parametrize(("field", "value"), BAD_CREATE, ids=[f"{f}={v!r:.24}" for f, v in BAD_CREATE])
def test_bad_reservation_field_is_400_naming_it_and_writes_nothing(admin, member, field, value):
    body = {"account_id": str(member.account.id), "amount": "5", "request_id": "bad-1"}
    if value is MISSING:
        del body[field]
    else:
        body[field] = value
    before = everything()
    error = invalid_field(post_json(client_for(admin), URL, body), field)
    assert error["code"] == "invalid"
    assert set(error["details"]) == {field}
    assert everything() == before
    # the request_id was not used up
    good = post_json(
        client_for(admin), URL, {"account_id": str(member.account.id), "amount": "5", "request_id": "bad-1"}
    )
    assert good.status_code == 201


BAD_CAPTURE = [
    ("amount", "-1"),
    ("amount", "-0.01"),
    ("amount", "NaN"),
    ("amount", "Infinity"),
    ("amount", "1.0000001"),
    ("amount", "1000000000.5"),
    ("amount", "abc"),
    ("amount", ""),
    ("amount", True),
    ("amount", None),
    ("amount", MISSING),
    ("amount", []),
    ("endpoint", MISSING),
    ("endpoint", None),
    ("endpoint", ""),
    ("endpoint", "   "),
    ("endpoint", 5),
    ("endpoint", "e" * 201),
    ("endpoint", "a\tb"),
    ("model", 5),
    ("model", "m" * 101),
    ("model", None),
    ("input_tokens", -1),
    ("input_tokens", 1.5),
    ("input_tokens", "10"),
    ("input_tokens", True),
    ("input_tokens", 10**12 + 1),
    ("output_tokens", -1),
    ("output_tokens", "7"),
    ("success", "true"),
    ("success", 1),
    ("success", None),
    ("success", "yes"),
    ("cost", "5"),  # not a field
]


@pytest.mark.parametrize(("field", "value"), BAD_CAPTURE, ids=[f"{f}={v!r:.24}" for f, v in BAD_CAPTURE])
def test_bad_capture_field_is_400_naming_it_and_writes_nothing(admin, member, held, field, value):
    body = {"amount": "5", "endpoint": "/v1/chat"}
    if value is MISSING:
        del body[field]
    else:
        body[field] = value
    before = everything()
    error = invalid_field(post_json(client_for(admin), hold_url(held["id"], "capture"), body), field)
    assert error["code"] == "invalid"
    assert set(error["details"]) == {field}
    assert everything() == before
    assert Hold.objects.get().status == "active"


@pytest.mark.parametrize(
    "raw", ['{"amount": ', "not json", "", '{"amount": NaN}', "[]", '"text"', "42", "null"]
)
def test_malformed_or_non_object_bodies_are_400(admin, member, held, raw):
    client = client_for(admin)
    before = everything()
    for url in (URL, hold_url(held["id"], "capture")):
        error = error_of(post_json(client, url, raw), 400)
        assert error["code"] in {"malformed_request", "invalid"}
    assert everything() == before


def test_optional_capture_fields_may_be_null_tokens_or_omitted(admin, member, held):
    body = capture(client_for(admin), held["id"], "1", input_tokens=None, output_tokens=None).json()
    event = UsageEvent.objects.get(pk=body["usage_event_id"])
    assert (event.model, event.input_tokens, event.output_tokens, event.success) == ("", None, None, True)


# --- the schema ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict:
    response = Client().get("/api/schema/?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


OPERATIONS = [
    (URL, "get", "billing_reservations_list", {"200"}),
    (URL, "post", "billing_reservations_create", {"200", "201", "402", "409"}),
    (f"{URL}{{hold_id}}/", "get", "billing_reservations_retrieve", {"200"}),
    (f"{URL}{{hold_id}}/capture/", "post", "billing_reservations_capture", {"200", "402", "409"}),
    (f"{URL}{{hold_id}}/release/", "post", "billing_reservations_release", {"200", "409"}),
]


@pytest.mark.parametrize(("path", "method", "operation_id", "statuses"), OPERATIONS)
def test_every_endpoint_is_documented(schema, path, method, operation_id, statuses):
    op = schema["paths"][path][method]
    assert op["operationId"] == operation_id
    assert op["summary"] and op["description"]
    assert statuses | {"400", "401", "403", "404"} <= set(op["responses"])
    for code in set(op["responses"]) - {"200", "201"}:
        assert (
            op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
            == "#/components/schemas/Error"
        )
    if "{hold_id}" in path:
        [param] = [p for p in op["parameters"] if p["in"] == "path"]
        assert (param["name"], param["schema"]["format"]) == ("hold_id", "uuid")


def test_the_documented_bodies_and_parameters(schema):
    components = schema["components"]["schemas"]
    create = schema["paths"][URL]["post"]
    request = components[
        create["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    ]
    assert set(request["required"]) == {"account_id", "amount", "request_id"}
    assert request["properties"]["expires_in"]["maximum"] == 86_400
    assert request["properties"]["expires_in"]["default"] == 900
    assert "insufficient_credits" in create["responses"]["402"]["description"]
    assert "idempotency_conflict" in create["responses"]["409"]["description"]
    capture_op = schema["paths"][f"{URL}{{hold_id}}/capture/"]["post"]
    assert "hold_expired" in capture_op["responses"]["409"]["description"]
    assert "hold_not_active" in capture_op["responses"]["409"]["description"]
    params = {p["name"]: p for p in schema["paths"][URL]["get"]["parameters"] if p["in"] == "query"}
    assert {"status", "account_id", "page", "page_size", "pagination", "cursor"} <= set(params)
    assert set(params["status"]["schema"]["enum"]) == set(HoldStatus.values)
    assert params["account_id"]["schema"]["format"] == "uuid"


def test_real_responses_match_the_schema(schema, admin, member, outsider):
    schema = copy.deepcopy(schema)
    client = client_for(admin)
    created = reserve(client, member.account.id, "10", "s-1")
    _check(schema, URL, "post", created)
    _check(schema, URL, "post", reserve(client, member.account.id, "10", "s-1"))  # replay, 200
    _check(schema, URL, "post", reserve(client, member.account.id, "11", "s-1"))  # 409
    _check(schema, URL, "post", reserve(client, member.account.id, "1000", "s-2"))  # 402
    _check(schema, URL, "post", reserve(client, member.account.id, "-1", "s-3"))  # 400
    hold_id = created.json()["id"]
    other = reserve(client, member.account.id, "10", "s-4").json()["id"]
    _check(schema, URL, "get", client.get(URL))
    _check(schema, URL, "get", client.get(URL, {"pagination": "cursor", "page_size": 1}))
    _check(schema, f"{URL}{{hold_id}}/", "get", client.get(hold_url(hold_id)))
    _check(schema, f"{URL}{{hold_id}}/", "get", client_for(outsider).get(hold_url(hold_id)))  # 404
    _check(schema, f"{URL}{{hold_id}}/capture/", "post", capture(client, hold_id, "1000"))  # 402
    _check(schema, f"{URL}{{hold_id}}/capture/", "post", capture(client, hold_id, "4"))
    _check(schema, f"{URL}{{hold_id}}/capture/", "post", capture(client, hold_id, "4"))  # 409
    _check(schema, f"{URL}{{hold_id}}/release/", "post", release(client, other))
    _check(schema, f"{URL}{{hold_id}}/release/", "post", release(client, other))  # 409
    _check(schema, f"{URL}{{hold_id}}/release/", "post", release(client_for(member), other))  # 403
