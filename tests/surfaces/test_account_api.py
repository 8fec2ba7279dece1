"""account-api.txt under /auth/account/: every documented request and query parameter, each field of each
documented object with its type, agreement with the native API on the same data (the same figures, the same
queries), bad input refused without a write, and who may see what (JWT Bearer, Token, session)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.models import Role
from credits.models import LedgerEntry, TransactionType
from credits.services import credits_adjust, credits_debit, credits_grant, hold_create
from tests.accounts.test_jwt import bearer, pair_for
from tests.api_helpers import assert_utc, error_of, full_state, invalid_field, iso_z
from tests.conftest import Member, client_for, make_member
from tests.credits.test_api_transactions import build_history
from tests.credits.test_usage_stats import midnight, rollup, today
from tests.payments.recharge_support import auto_recharge_set

pytestmark = pytest.mark.django_db

USAGE = "/auth/account/usage"
CREDITS = "/auth/account/credits"
LEDGER = "/auth/account/ledger"
SUMMARY = "/auth/account/summary"
SURFACE_PATHS = [USAGE, CREDITS, LEDGER, SUMMARY]

NATIVE_STATS = "/api/billing/usage/stats/"
NATIVE_ACCOUNT = "/api/billing/account/"
NATIVE_LEDGER = "/api/billing/transactions/"
NATIVE_SUMMARY = "/api/billing/summary/"


# The document's objects: each field and its type.
USAGE_STATS = {
    "user_id": "integer",
    "period": "string",
    "total_requests": "integer",
    "successful_requests": "integer",
    "failed_requests": "integer",
    "credits_consumed": "float",
    "requests_by_endpoint": "object",
    "period_start": "datetime",
    "period_end": "datetime",
}
CREDIT_BALANCE = {
    "user_id": "integer",
    "balance": "float",
    "reserved": "float",
    "available": "float",
    "currency": "string",
    "last_updated": "datetime",
    "auto_reload_enabled": "boolean",
    "auto_reload_threshold": "float",
    "auto_reload_amount": "float",
}
LEDGER_ENTRY = {
    "id": "string",  # the document says integer: the entry's UUID (the module docstring says why)
    "user_id": "integer",
    "type": "string",
    "amount": "float",
    "balance_after": "float",
    "description": "string",
    "reference": "string",
    "metadata": "object",
    "created_at": "datetime",
}
ACCOUNT_SUMMARY = {
    "user_id": "integer",
    "email": "string",
    "credit_balance": "object",
    "subscription": "object",
    "usage_this_month": "object",
    "total_requests_all_time": "integer",
    "account_created_at": "datetime",
    "last_login_at": "datetime",
}
# What each object adds to the document's fields: the exact strings beside the numbers, and native extras.
USAGE_EXTRAS = {"credits_consumed_exact", "account_id", "input_tokens", "output_tokens", "buckets"}
BUCKET_FIELDS = (set(USAGE_STATS) - {"user_id", "period"}) | {"credits_consumed_exact", "input_tokens",
                                                              "output_tokens"}
BALANCE_EXTRAS = {"balance_exact", "reserved_exact", "available_exact", "auto_reload_threshold_exact",
                  "auto_reload_amount_exact"}
ENTRY_EXTRAS = {"amount_exact", "balance_after_exact", "sequence", "transaction_type"}
SUMMARY_EXTRAS = {"account_id"}


# --- helpers -------------------------------------------------------------------------------------------------


def ok(response, *, exact: bool = False) -> Any:  # noqa: ANN001
    """The body of a 200; with ``exact``, its JSON numbers with a fraction read as Decimals (what the text says,
    where a float would round past ~15 significant digits)."""
    assert response.status_code == 200, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    return json.loads(response.content, parse_float=Decimal) if exact else response.json()


def get(client, url: str, *, exact: bool = False, **params: Any) -> Any:  # noqa: ANN001
    return ok(client.get(url, params), exact=exact)


def is_type(value: Any, kind: str, *, nullable: bool = False) -> bool:
    """The document's types: a float is a JSON number (an int or a float once parsed)."""
    if value is None:
        return nullable
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "datetime":
        assert_utc(value)  # ISO 8601, UTC
        return True
    raise AssertionError(kind)


def assert_object(body: dict, fields: dict[str, str], extras: set[str], nullable: set[str] = frozenset()) -> None:
    assert set(body) == set(fields) | extras, set(body) ^ (set(fields) | extras)
    for name, kind in fields.items():
        assert is_type(body[name], kind, nullable=name in nullable), (name, kind, body[name])


def exact(surface: dict, native: dict, name: str, native_name: str | None = None) -> None:
    """The surface's number ``name`` is the native decimal string's value, and ``name_exact`` that string (the
    surface's body read with ``exact``)."""
    text = native[native_name or name]
    assert surface[f"{name}_exact"] == text
    if text is None:
        assert surface[name] is None
    else:
        assert Decimal(str(surface[name])) == Decimal(text), (name, surface[name], text)


def jwt_for(member: Member, platform_key: str | None = None) -> str:
    return pair_for(member, **({"platform_key": platform_key} if platform_key else {}))["access"]


@pytest.fixture
def jwt(member) -> APIClient:  # noqa: ANN001
    """The member's client with a JWT Bearer token, as the document authenticates."""
    return bearer(jwt_for(member))


def entries_of(member: Member) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(account_id=member.account.id).order_by("-sequence"))


# --- authentication and who sees what ------------------------------------------------------------------------


@pytest.mark.parametrize("url", SURFACE_PATHS)
def test_every_endpoint_answers_a_jwt_bearer(jwt, member, url):
    body = get(jwt, url)
    assert (body["data"][0] if url == LEDGER else body)["user_id"] == member.user.pk


@pytest.mark.parametrize("url", SURFACE_PATHS)
def test_a_token_and_a_session_work_too(member, url):
    ok(client_for(member).get(url))
    session = Client()
    session.force_login(member.user)
    ok(session.get(url))


@pytest.mark.parametrize("url", SURFACE_PATHS)
@pytest.mark.parametrize("authorization", [None, "Bearer not-a-jwt", "Token 0123456789abcdef"])
def test_no_valid_credentials_is_401(member, url, authorization):
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    before = full_state()
    response = client.get(url)
    error_of(response, 401)
    assert response.has_header("WWW-Authenticate")
    assert full_state() == before


@pytest.mark.parametrize("url", SURFACE_PATHS)
def test_a_jwt_of_another_platform_is_refused(member, outsider, url):
    # the same user in both platforms: the globex token never reaches the acme account
    make_member(outsider.platform, member.user.username)
    globex = jwt_for(member, platform_key="globex")
    error = error_of(bearer(globex, "acme").get(url), 403, "not_a_member")
    assert error["details"] == {"token_platform": "globex"}
    # an admin of another platform only: refused in acme
    error_of(bearer(jwt_for(outsider), "acme").get(url), 403, "not_a_member")
    # without the header, the globex token acts in globex: its own (empty) account there, not acme's
    body = get(bearer(globex), CREDITS)
    assert body["balance"] == 0 and body["user_id"] == member.user.pk


def test_a_user_sees_only_their_own_ledger(member, other_member):
    build_history(member)
    credits_debit(account_id=other_member.account.id, amount=Decimal("7"), description="theirs")
    mine = get(client_for(member), LEDGER, limit=100)["data"]
    theirs = get(client_for(other_member), LEDGER, limit=100)["data"]
    assert {row["id"] for row in mine} == {str(e.id) for e in entries_of(member) if e.balance_delta != 0}
    assert {row["id"] for row in theirs} == {str(e.id) for e in entries_of(other_member)}
    assert {row["user_id"] for row in mine} == {member.user.pk}
    assert {row["user_id"] for row in theirs} == {other_member.user.pk}
    # nothing names another account here: the native platform_key and account_id are unknown parameters
    invalid_field(client_for(member).get(LEDGER, {"platform_key": "acme"}), "platform_key")
    invalid_field(client_for(member).get(USAGE, {"account_id": str(other_member.account.id)}), "account_id")


def test_an_admin_sees_their_own_account_not_the_platforms(admin, member):
    build_history(member)
    assert get(client_for(admin), LEDGER)["data"] == []
    assert get(client_for(admin), CREDITS)["user_id"] == admin.user.pk
    assert get(client_for(admin), SUMMARY)["user_id"] == admin.user.pk


# --- usage -----------------------------------------------------------------------------------------------------


def test_usage_by_default_is_this_month_with_every_documented_field(jwt, member):
    day = today()
    first = day.replace(day=1)
    rollup(member, day, "/v1/chat", ok=3, failed=1, credits="1.250000", tokens_in=300, tokens_out=900)
    rollup(member, first, "/v1/embed", ok=2, credits="0.000002")
    rollup(member, first - timedelta(days=1), "/v1/chat", ok=100, credits="99")  # last month
    body = get(jwt, USAGE)
    assert_object(body, USAGE_STATS, USAGE_EXTRAS)
    assert body["user_id"] == member.user.pk
    assert body["period"] == "monthly"
    assert (body["total_requests"], body["successful_requests"], body["failed_requests"]) == (6, 5, 1)
    assert body["credits_consumed"] == 1.250002 and body["credits_consumed_exact"] == "1.250002"
    assert body["requests_by_endpoint"] == {"/v1/chat": 4, "/v1/embed": 2}
    assert assert_utc(body["period_start"]) == midnight(first)
    assert assert_utc(body["period_end"]) <= datetime.now(UTC)
    (bucket,) = body["buckets"]
    assert set(bucket) == BUCKET_FIELDS
    assert bucket["credits_consumed"] == 1.250002


@pytest.mark.parametrize(
    ("period", "starts"),
    [
        ("daily", ["2025-03-01", "2025-03-02", "2025-03-03", "2025-03-04"]),
        ("monthly", ["2025-03-01"]),
        ("yearly", ["2025-01-01"]),
    ],
)
def test_usage_per_period_from_and_to(jwt, member, period, starts):
    rollup(member, date(2025, 3, 2), "/a", ok=2, credits="0.10")
    rollup(member, date(2025, 3, 4), "/b", ok=0, failed=1, credits="0.05")
    rollup(member, date(2025, 3, 5), "/a", ok=50, credits="5")  # after the range
    body = get(jwt, USAGE, period=period, **{"from": "2025-03-01", "to": "2025-03-04T10:00:00Z"})
    assert_object(body, USAGE_STATS, USAGE_EXTRAS)
    assert body["period"] == period
    assert (body["total_requests"], body["failed_requests"]) == (3, 1)
    assert body["credits_consumed"] == 0.15 and body["credits_consumed_exact"] == "0.15"
    assert body["period_start"] == "2025-03-01T00:00:00Z"
    assert body["period_end"] == "2025-03-04T10:00:00Z"
    assert [b["period_start"][:10] for b in body["buckets"]] == starts
    for bucket in body["buckets"]:
        assert set(bucket) == BUCKET_FIELDS
        assert is_type(bucket["credits_consumed"], "float")
        assert Decimal(str(bucket["credits_consumed"])) == Decimal(bucket["credits_consumed_exact"])


def test_usage_from_alone_runs_to_now(jwt, member):
    rollup(member, today(), ok=4)
    body = get(jwt, USAGE, **{"from": iso_z(midnight(today()) - timedelta(days=3))})
    assert body["total_requests"] == 4
    assert datetime.now(UTC) - assert_utc(body["period_end"]) < timedelta(minutes=1)


@pytest.mark.parametrize(
    "params",
    [{}, {"period": "daily"}, {"period": "yearly", "from": "2024-02-03", "to": "2025-03-04"},
     {"period": "monthly", "from": "2025-03-01T12:00:00+02:00"}],
)
def test_usage_agrees_with_the_native_statistics(member, params):
    rollup(member, today(), "/v1/chat", ok=3, failed=1, credits="12345678.123456789012")
    rollup(member, date(2025, 3, 2), "/v1/chat", ok=2, credits="0.000001")
    rollup(member, date(2024, 6, 2), "/v1/embed", ok=1, credits="3")
    client = client_for(member)
    surface, native = get(client, USAGE, exact=True, **params), get(client, NATIVE_STATS, **params)
    same = ("user_id", "account_id", "period", "total_requests", "successful_requests", "failed_requests",
            "input_tokens", "output_tokens", "requests_by_endpoint", "period_start")
    assert {k: surface[k] for k in same} == {k: native[k] for k in same}
    exact(surface, native, "credits_consumed")
    assert len(surface["buckets"]) == len(native["buckets"])
    for mine, theirs in zip(surface["buckets"], native["buckets"], strict=True):
        assert {k: mine[k] for k in BUCKET_FIELDS if "credits" not in k} == {
            k: theirs[k] for k in BUCKET_FIELDS if "credits" not in k}
        exact(mine, theirs, "credits_consumed")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"period": "weekly"}, "period"),
        ({"period": "Daily"}, "period"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2025-02-30"}, "from"),
        ({"to": "2025-13-01"}, "to"),
        ({"from": "2025-03-05", "to": "2025-03-04"}, "to"),
        ({"from": "2000-01-01", "to": "2025-01-01", "period": "daily"}, "to"),  # over 366 buckets
        ({"account_id": "x"}, "account_id"),
        ({"limit": "5"}, "limit"),
        ({"format": "json"}, "format"),
    ],
)
def test_usage_bad_input_is_a_400_naming_the_field_and_writes_nothing(jwt, member, params, field):
    before = full_state()
    invalid_field(jwt.get(USAGE, params), field)
    assert full_state() == before


# --- credits ---------------------------------------------------------------------------------------------------


def test_credits_has_every_documented_field(jwt, member):
    hold_create(account_id=member.account.id, amount=Decimal("30.25"))
    auto_recharge_set(member.account.pk, enabled=True, threshold_usd=Decimal("5"), amount_usd=Decimal("25.5"))
    body = get(jwt, CREDITS)
    assert_object(body, CREDIT_BALANCE, BALANCE_EXTRAS)
    assert body == {
        "user_id": member.user.pk,
        "balance": 100, "balance_exact": "100.00",
        "reserved": 30.25, "reserved_exact": "30.25",
        "available": 69.75, "available_exact": "69.75",
        "currency": "USD",
        "last_updated": body["last_updated"],
        "auto_reload_enabled": True,
        "auto_reload_threshold": 5, "auto_reload_threshold_exact": "5.00",
        "auto_reload_amount": 25.5, "auto_reload_amount_exact": "25.50",
    }
    member.account.refresh_from_db()
    assert assert_utc(body["last_updated"]) == member.account.last_entry_at


def test_credits_without_auto_reload_has_null_amounts(jwt, member):
    body = get(jwt, CREDITS)
    assert_object(body, CREDIT_BALANCE, BALANCE_EXTRAS,
                  nullable={"auto_reload_threshold", "auto_reload_amount"})
    assert body["auto_reload_enabled"] is False
    assert body["auto_reload_threshold"] is None and body["auto_reload_threshold_exact"] is None
    assert body["auto_reload_amount"] is None and body["auto_reload_amount_exact"] is None


def test_credits_agree_with_the_native_account_and_the_summary(member):
    hold_create(account_id=member.account.id, amount=Decimal("0.000125"))
    auto_recharge_set(member.account.pk, enabled=False, threshold_usd=Decimal("7.25"), amount_usd=Decimal("20"))
    client = client_for(member)
    body, native = get(client, CREDITS, exact=True), get(client, NATIVE_ACCOUNT)
    exact(body, native, "balance")
    exact(body, native, "reserved")
    exact(body, native, "available", "available_credits")
    exact(body, native, "auto_reload_threshold", "auto_recharge_threshold_usd")
    exact(body, native, "auto_reload_amount", "auto_recharge_amount_usd")
    assert (body["currency"], body["last_updated"], body["auto_reload_enabled"]) == (
        native["currency"], native["last_updated"], native["auto_recharge_enabled"])
    # the same object as the summary's credit_balance (which the native summary builds its own way)
    assert get(client, SUMMARY, exact=True)["credit_balance"] == body
    native_balance = get(client, NATIVE_SUMMARY)["credit_balance"]
    for name in ("balance", "reserved", "available", "auto_reload_threshold", "auto_reload_amount"):
        exact(body, native_balance, name)


def test_credits_takes_no_query_parameter(jwt, member):
    before = full_state()
    invalid_field(jwt.get(CREDITS, {"platform_key": "acme"}), "platform_key")
    assert full_state() == before


# --- ledger ----------------------------------------------------------------------------------------------------


def test_ledger_by_default_lists_every_balance_move_newest_first(jwt, member):
    history = build_history(member)  # ten rows: four of them only reserve or release credits
    body = get(jwt, LEDGER)
    assert set(body) == {"data", "total", "limit", "offset"}
    moved = [entry for entry in history if entry.balance_delta != 0]
    assert (body["total"], body["limit"], body["offset"]) == (len(moved), 50, 0) == (6, 50, 0)
    assert [row["id"] for row in body["data"]] == [str(entry.id) for entry in moved]
    for row, entry in zip(body["data"], moved, strict=True):
        assert_object(row, LEDGER_ENTRY, ENTRY_EXTRAS)
        assert row["user_id"] == member.user.pk
        assert row["sequence"] == entry.sequence
        assert row["transaction_type"] == entry.transaction_type
        expected = "adjustment" if entry.transaction_type == TransactionType.ADJUSTMENT else (
            "credit" if entry.balance_delta > 0 else "debit")
        assert row["type"] == expected
        assert Decimal(str(row["amount"])) == entry.balance_delta
        assert Decimal(str(row["balance_after"])) == entry.balance_after
        assert (row["description"], row["reference"], row["metadata"]) == (
            entry.description, entry.reference, entry.metadata)
        assert assert_utc(row["created_at"]) == entry.created_at
    assert {row["type"] for row in body["data"]} == {"credit", "debit", "adjustment"}


@pytest.mark.parametrize(
    ("kind", "native_filter"),
    [
        (None, {"direction": "either"}),
        ("credit", {"direction": "credit", "exclude_type": "adjustment"}),
        ("debit", {"direction": "debit", "exclude_type": "adjustment"}),
        ("adjustment", {"transaction_type": "adjustment"}),
    ],
)
def test_ledger_types_agree_with_the_native_listing(member, kind, native_filter):
    build_history(member)
    credits_adjust(account_id=member.account.id, amount=Decimal("2.000001"), description="bonus", actor=None)
    client = client_for(member)
    params = {"type": kind} if kind else {}
    body = get(client, LEDGER, exact=True, **params)
    native = get(client, NATIVE_LEDGER, limit=50, offset=0, **native_filter)
    assert body["total"] == native["count"] > 0
    assert [row["id"] for row in body["data"]] == [row["id"] for row in native["results"]]
    for row, theirs in zip(body["data"], native["results"], strict=True):
        exact(row, theirs, "amount", "balance_change")
        exact(row, theirs, "balance_after", "credits_balance_after")
        assert {k: row[k] for k in ("description", "reference", "metadata", "created_at", "sequence")} == {
            k: theirs[k] for k in ("description", "reference", "metadata", "created_at", "sequence")}
        if kind == "adjustment":
            assert row["type"] == "adjustment"
        elif kind == "credit":  # the balance went up, not by a manual adjustment
            assert row["amount"] > 0 and row["type"] == "credit"
        elif kind == "debit":
            assert row["amount"] < 0 and row["type"] == "debit"


def test_ledger_from_and_to_are_inclusive_instants(jwt, member):
    history = [entry for entry in build_history(member) if entry.balance_delta != 0]  # newest first
    newest, oldest = history[1], history[-2]
    params = {"from": iso_z(oldest.created_at), "to": iso_z(newest.created_at)}
    body = get(jwt, LEDGER, **params)
    assert [row["id"] for row in body["data"]] == [str(entry.id) for entry in history[1:-1]]
    assert body["total"] == len(history) - 2
    native = get(client_for(member), NATIVE_LEDGER, direction="either", limit=50,
                 created_from=params["from"], created_to=params["to"])
    assert [row["id"] for row in native["results"]] == [row["id"] for row in body["data"]]
    # from alone, to alone; a date as `from` is its UTC midnight, as `to` the whole day
    assert get(jwt, LEDGER, **{"from": params["from"]})["total"] == len(history) - 1
    assert get(jwt, LEDGER, to=params["to"])["total"] == len(history) - 1
    assert get(jwt, LEDGER, **{"from": (date.today() + timedelta(days=30)).isoformat()})["total"] == 0
    assert get(jwt, LEDGER, type="debit", to="2000-01-01")["data"] == []
    first_day = history[-1].created_at.astimezone(UTC).date().isoformat()
    last_day = history[0].created_at.astimezone(UTC).date().isoformat()
    assert get(jwt, LEDGER, to=last_day)["total"] == len(history)  # the whole of the last day
    assert get(jwt, LEDGER, **{"from": first_day, "to": last_day})["total"] == len(history)


def test_ledger_pages_with_limit_and_offset(jwt, member):
    moved = [str(entry.id) for entry in build_history(member) if entry.balance_delta != 0]
    assert len(moved) == 6
    seen = []
    for offset in range(0, 6, 4):
        body = get(jwt, LEDGER, limit=4, offset=offset)
        assert (body["total"], body["limit"], body["offset"]) == (6, 4, offset)
        seen += [row["id"] for row in body["data"]]
    assert seen == moved
    assert get(jwt, LEDGER, limit=100)["limit"] == 100
    past = get(jwt, LEDGER, offset=500)
    assert (past["data"], past["total"], past["offset"]) == ([], 6, 500)
    assert [row["id"] for row in get(jwt, LEDGER, limit=1, offset=5)["data"]] == moved[5:]


def test_ledger_default_limit_is_50_and_max_100(jwt, member):
    for n in range(60):
        credits_debit(account_id=member.account.id, amount=Decimal("0.01"), description=f"call {n}")
    body = get(jwt, LEDGER)
    assert (len(body["data"]), body["total"], body["limit"]) == (50, 61, 50)
    assert len(get(jwt, LEDGER, limit=100)["data"]) == 61
    invalid_field(jwt.get(LEDGER, {"limit": "101"}), "limit")


def test_ledger_metadata_and_long_amounts_are_exact(jwt, member):
    credits_grant(account_id=member.account.id, amount=Decimal("12345678901.123456"),
                  description="big", reference="pi_big", metadata={"rate": 1.5, "tiny": 0.1, "n": [1, 2.25]})
    response = jwt.get(LEDGER, {"limit": 1})
    row = ok(response)["data"][0]
    assert row["metadata"] == {"rate": 1.5, "tiny": 0.1, "n": [1, 2.25]}
    assert row["amount_exact"] == "12345678901.123456" and row["reference"] == "pi_big"
    # the JSON text holds the exact decimal (a double would keep only ~15-17 significant digits)
    parsed = json.loads(response.content, parse_float=Decimal)
    assert parsed["data"][0]["amount"] == Decimal("12345678901.123456")
    assert parsed["data"][0]["balance_after"] == Decimal("12345679001.123456")
    assert b'"amount":12345678901.123456,' in response.content


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"offset": "1000000001"}, "offset"),
        ({"limit": "-1"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"offset": "abc"}, "offset"),
        ({"type": "refund"}, "type"),
        ({"type": "CREDIT"}, "type"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2025-02-30"}, "to"),
        ({"from": "2025-03-05", "to": "2025-03-04T23:59:59Z"}, "to"),
        ({"page": "1"}, "page"),
        ({"direction": "credit"}, "direction"),
        ({"created_from": "2025-01-01"}, "created_from"),
        ({"pagination": "cursor"}, "pagination"),
        ({"platform_key": "acme"}, "platform_key"),
    ],
)
def test_ledger_bad_input_is_a_400_naming_the_field_and_writes_nothing(jwt, member, params, field):
    before = full_state()
    error = invalid_field(jwt.get(LEDGER, params), field)
    assert set(error["details"]) == {field}
    if field not in ("created_from", "direction"):  # the native names never show: the fields as sent here
        assert not any(name in json.dumps(error) for name in ("created_", "direction", "transaction_type"))
    assert full_state() == before


@pytest.mark.parametrize("query", ["type=credit&type=debit", "limit=1&limit=2", "from=2025-01-01&from=2025-01-02"])
def test_a_query_parameter_given_twice_is_a_400(jwt, member, query):
    name = query.split("=")[0]
    error = invalid_field(jwt.get(f"{LEDGER}?{query}"), name)
    assert error["details"][name] == ["Given more than once."]


def test_empty_values_are_the_defaults_as_natively(jwt, member):
    build_history(member)
    assert get(jwt, LEDGER, type="", limit="", offset="", **{"from": "", "to": ""}) == get(jwt, LEDGER)
    usage = get(jwt, USAGE, period="", **{"from": "", "to": ""})
    assert usage["period"] == "monthly" and usage["period_start"] == get(jwt, USAGE)["period_start"]


# --- summary ---------------------------------------------------------------------------------------------------


def test_summary_has_every_documented_field(jwt, member):
    user = member.user
    user.email, user.last_login = "mia@example.com", datetime.now(UTC) - timedelta(hours=3)
    user.save(update_fields=["email", "last_login"])
    rollup(member, today(), "/v1/chat", ok=3, failed=1, credits="0.75")
    rollup(member, today().replace(day=1) - timedelta(days=40), "/v1/chat", ok=40, credits="4")
    hold_create(account_id=member.account.id, amount=Decimal("30.25"))
    body = get(jwt, SUMMARY)
    assert_object(body, ACCOUNT_SUMMARY, SUMMARY_EXTRAS, nullable={"subscription"})
    assert (body["user_id"], body["email"]) == (user.pk, "mia@example.com")
    assert body["subscription"] is None
    assert body["total_requests_all_time"] == 44
    assert assert_utc(body["last_login_at"]) == user.last_login
    member.account.refresh_from_db()
    assert assert_utc(body["account_created_at"]) == member.account.created_at
    balance = body["credit_balance"]
    assert_object(balance, CREDIT_BALANCE, BALANCE_EXTRAS, nullable={"auto_reload_threshold", "auto_reload_amount"})
    assert (balance["balance"], balance["reserved"], balance["available"]) == (100, 30.25, 69.75)
    usage = body["usage_this_month"]
    assert_object(usage, USAGE_STATS, USAGE_EXTRAS)
    assert (usage["period"], usage["total_requests"], usage["credits_consumed"]) == ("monthly", 4, 0.75)
    assert assert_utc(usage["period_start"]) == midnight(today().replace(day=1))


def test_summary_nulls_and_the_subscription(jwt, member):
    from subscriptions.models import Plan
    from subscriptions.services import subscription_start

    body = get(jwt, SUMMARY)
    assert body["email"] is None and body["last_login_at"] is None and body["subscription"] is None
    plan = Plan.objects.create(platform=member.platform, slug="growth", name="Growth", price_monthly=2000,
                               price_yearly=20000, credits_included="100")
    subscription_start(account_id=member.account.id, plan_id=plan.id, billing_cycle="monthly", provider="manual")
    body = get(jwt, SUMMARY)
    assert is_type(body["subscription"], "object")
    assert body["subscription"] == get(client_for(member), NATIVE_SUMMARY)["subscription"]
    assert body["subscription"]["plan"]["slug"] == "growth"


def test_summary_agrees_with_the_native_summary(member):
    rollup(member, today(), "/v1/chat", ok=3, credits="98765432109.000000000001")
    auto_recharge_set(member.account.pk, enabled=True, threshold_usd=Decimal("5"), amount_usd=Decimal("25.5"))
    client = client_for(member)
    body, native = get(client, SUMMARY, exact=True), get(client, NATIVE_SUMMARY)
    for name in ("user_id", "account_id", "email", "subscription", "total_requests_all_time",
                 "account_created_at", "last_login_at"):
        assert body[name] == native[name], name
    for name in ("balance", "reserved", "available", "auto_reload_threshold", "auto_reload_amount"):
        exact(body["credit_balance"], native["credit_balance"], name)
    exact(body["usage_this_month"], native["usage_this_month"], "credits_consumed")
    assert body["usage_this_month"]["credits_consumed_exact"] == "98765432109.000000000001"
    assert body["usage_this_month"]["requests_by_endpoint"] == native["usage_this_month"]["requests_by_endpoint"]


@pytest.mark.parametrize("url", [SUMMARY, USAGE, CREDITS])
def test_an_x_platform_key_picks_the_platform_as_natively(member, outsider, url):
    make_member(outsider.platform, member.user.username)
    error_of(client_for(member).get(url), 400, "platform_ambiguous")
    assert ok(client_for(member, platform_key="globex").get(url))["user_id"] == member.user.pk


# --- the same queries as the native endpoints -----------------------------------------------------------------


def _queries(client, url: str, params: dict) -> tuple[int, int]:  # noqa: ANN001
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params)
    return response.status_code, len(captured.captured_queries)


@pytest.mark.parametrize(
    ("url", "params", "native_url", "native_params"),
    [
        (USAGE, {}, NATIVE_STATS, {}),
        (USAGE, {"period": "daily", "from": "2025-03-01", "to": "2025-03-31"}, NATIVE_STATS,
         {"period": "daily", "from": "2025-03-01", "to": "2025-03-31"}),
        (CREDITS, {}, NATIVE_ACCOUNT, {}),
        (LEDGER, {}, NATIVE_LEDGER, {"direction": "either", "limit": 50, "offset": 0}),
        (LEDGER, {"type": "credit", "limit": 2, "offset": 1}, NATIVE_LEDGER,
         {"direction": "credit", "limit": 2, "offset": 1}),
        (LEDGER, {"type": "adjustment", "from": "2000-01-01", "to": "2100-01-01"}, NATIVE_LEDGER,
         {"transaction_type": "adjustment", "created_from": "2000-01-01", "created_to": "2100-01-01", "limit": 50}),
        (SUMMARY, {}, NATIVE_SUMMARY, {}),
        (LEDGER, {"limit": 0}, NATIVE_LEDGER, {"limit": 0}),  # refused natively, after the same queries
    ],
)
@pytest.mark.parametrize("auth", ["token", "jwt"])
def test_the_surface_runs_the_native_queries(member, url, params, native_url, native_params, auth):
    build_history(member)
    rollup(member, today(), ok=2, credits="0.5")
    auto_recharge_set(member.account.pk, enabled=True, threshold_usd=Decimal("5"), amount_usd=Decimal("25"))
    client = bearer(jwt_for(member)) if auth == "jwt" else client_for(member)
    _queries(client, native_url, native_params)  # warm: what a first request loads once
    native_status, native_count = _queries(client, native_url, native_params)
    status, count = _queries(client, url, params)
    assert status == native_status
    assert count == native_count, (url, count, native_count)


def test_refusals_of_the_surface_itself_run_no_query(member):
    client = client_for(member)
    assert _queries(client, LEDGER, {"type": "nope"}) == (400, 0)
    assert _queries(client, USAGE, {"unknown": "1"}) == (400, 0)


# --- schema ----------------------------------------------------------------------------------------------------


def test_the_schema_documents_each_endpoint(schema):
    from tests.test_service_endpoints import _is_error_envelope

    expected = {USAGE: {"period", "from", "to"}, CREDITS: set(), LEDGER: {"type", "from", "to", "limit", "offset"},
                SUMMARY: set()}
    for url, params in expected.items():
        op = schema["paths"][url]["get"]
        assert op["operationId"] == f"account_api_{url.rsplit('/', 1)[1]}"
        assert op["tags"] == ["account-api"] and op["summary"]
        assert {p["name"] for p in op.get("parameters", []) if p["in"] == "query"} == params
        for code in ("400", "401", "403", "404"):
            assert _is_error_envelope(schema, op["responses"][code])


def test_real_responses_match_the_schema(schema, member):
    from tests.test_service_endpoints import _check

    build_history(member)
    rollup(member, today(), ok=2, credits="0.5")
    credits_grant(account_id=member.account.id, amount=Decimal("1"), description="m", metadata={"x": 1.5})
    client = client_for(member)
    for url, params in [(USAGE, {}), (USAGE, {"period": "daily", "from": "2025-01-01"}), (CREDITS, {}),
                        (LEDGER, {}), (LEDGER, {"type": "adjustment"}), (SUMMARY, {})]:
        _check(schema, url, "get", client.get(url, params))
    auto_recharge_set(member.account.pk, enabled=True, threshold_usd=Decimal("5"), amount_usd=Decimal("25"))
    _check(schema, CREDITS, "get", client.get(CREDITS))
    _check(schema, LEDGER, "get", client.get(LEDGER, {"limit": "x"}))
    _check(schema, SUMMARY, "get", APIClient().get(SUMMARY))
    admin = make_member(member.platform, "adam", Role.ADMIN)
    _check(schema, SUMMARY, "get", client_for(admin).get(SUMMARY))


def test_the_default_ledger_is_counted_at_constant_cost(jwt, member):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    build_history(member)
    jwt.get(LEDGER)
    with CaptureQueriesContext(connection) as queries:
        body = get(jwt, LEDGER)

    assert body["total"] == len([e for e in entries_of(member) if e.transaction_type not in ("reserve", "release")])
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)
