"""Platform administration: POST /api/billing/admin/credits/manual/ and GET /api/billing/admin/credits/transactions/."""

from __future__ import annotations

import base64
import json
from datetime import UTC, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from rest_framework.exceptions import ValidationError

from billing_service.idempotency import client_key
from billing_service.money import MoneyField
from credits.models import CreditAccount, LedgerEntry
from credits.verification import ledger_verify
from credits.services import credits_debit, credits_grant, hold_create
from tests.api_helpers import (
    ADMIN_TRANSACTIONS_URL,
    MANUAL_URL,
    assert_money,
    assert_utc,
    db_snapshot,
    error_of,
    invalid_field,
    post_json,
)
from tests.conftest import client_for, make_member

pytestmark = pytest.mark.django_db

ROW_FIELDS = {
    "id", "transaction_type", "status", "credits_amount", "credits_balance_after", "description", "reference",
    "metadata", "created_at", "balance_change", "reserved_change", "reserved_after", "sequence", "hold_id",
}


def adjust(client, account_id, amount, description="correction", **extra):  # noqa: ANN001, ANN003, ANN201
    return post_json(client, MANUAL_URL, {"account_id": str(account_id), "amount": amount,
                                          "description": description}, **extra)


def balance_of(account) -> Decimal:  # noqa: ANN001
    return CreditAccount.objects.get(pk=account.pk if hasattr(account, "pk") else account).balance


# --- manual adjustments -----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owner_or_admin_adds_credits(request, member, role):
    caller = request.getfixturevalue(role)
    response = adjust(client_for(caller), member.account.id, "12.50", "goodwill", reference="ticket-9")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == ROW_FIELDS
    entry = LedgerEntry.objects.get(pk=body["id"])
    assert (entry.account_id, entry.transaction_type, entry.balance_delta) == (
        member.account.id, "adjustment", Decimal("12.5")
    )
    assert entry.actor_id == caller.user.pk
    assert entry.description == "goodwill"
    assert entry.payment_amount_usd is None
    assert body["transaction_type"] == "adjustment"
    assert body["status"] == "completed"
    assert body["credits_amount"] == "12.50"
    assert body["balance_change"] == "12.50"
    assert body["credits_balance_after"] == "112.50"
    assert body["description"] == "goodwill"
    assert body["sequence"] == 2
    assert "payment_amount_usd" not in body
    assert assert_utc(body["created_at"]) == entry.created_at
    assert "Idempotent-Replayed" not in response
    assert balance_of(member.account) == Decimal("112.50")
    assert ledger_verify(account=member.account).ok
    # the member sees it in their own ledger
    mine = client_for(member).get("/api/billing/transactions/").json()
    assert mine["results"][0]["id"] == body["id"]


def test_reference_is_kept(admin, member):
    body = post_json(client_for(admin), MANUAL_URL, {
        "account_id": str(member.account.id), "amount": "1", "description": "x", "reference": "ticket-9",
    }).json()
    assert body["reference"] == "ticket-9"
    assert LedgerEntry.objects.get(pk=body["id"]).reference == "ticket-9"


def test_negative_adjustment_within_available_removes_credits(admin, member):
    response = adjust(client_for(admin), member.account.id, "-40.25")
    assert response.status_code == 201
    body = response.json()
    assert (body["credits_amount"], body["balance_change"], body["credits_balance_after"]) == (
        "40.25", "-40.25", "59.75"
    )
    assert balance_of(member.account) == Decimal("59.75")


def test_removing_exactly_everything_is_allowed(admin, member):
    assert adjust(client_for(admin), member.account.id, "-100").status_code == 201
    assert balance_of(member.account) == Decimal("0")


@pytest.mark.parametrize("amount", ["-100.000001", "-101", "-1000000000"])
def test_removal_beyond_available_is_402_and_writes_nothing(admin, member, amount):
    before = db_snapshot()
    error = error_of(adjust(client_for(admin), member.account.id, amount), 402, "insufficient_credits")
    assert error["details"]["available"] == "100.00"
    assert db_snapshot() == before


def test_reserved_credits_cannot_be_removed(admin, member):
    hold_create(account_id=member.account.id, amount=Decimal("60"))
    before = db_snapshot()
    error = error_of(adjust(client_for(admin), member.account.id, "-40.01"), 402, "insufficient_credits")
    assert error["details"]["available"] == "40.00"
    assert db_snapshot() == before
    assert adjust(client_for(admin), member.account.id, "-40").status_code == 201
    account = CreditAccount.objects.get(pk=member.account.id)
    assert (account.balance, account.reserved) == (Decimal("60"), Decimal("60"))


def test_admin_adjusts_the_platform_account(admin, platform):
    platform_account = CreditAccount.objects.get(platform=platform, user__isnull=True)
    response = adjust(client_for(admin), platform_account.id, "1000")
    assert response.status_code == 201
    assert balance_of(platform_account) == Decimal("1000")


@pytest.mark.parametrize(
    ("raw_amount", "expected"),
    [("12.5", "12.50"), ("0.1", "0.10"), ("1e-6", "0.000001"), ("5", "5.00"), ("-2.25", "-2.25"),
     ("123456.789012", "123456.789012"), ("1E+3", "1000.00")],
)
def test_json_numbers_are_taken_exactly(admin, member, raw_amount, expected):
    body = f'{{"account_id": "{member.account.id}", "amount": {raw_amount}, "description": "json number"}}'
    response = post_json(client_for(admin), MANUAL_URL, body)
    assert response.status_code == 201, response.content
    assert response.json()["balance_change"] == expected
    assert LedgerEntry.objects.get(pk=response.json()["id"]).balance_delta == Decimal(expected)
    assert balance_of(member.account) == Decimal("100") + Decimal(expected)


def test_member_cannot_adjust(member, other_member):
    before = db_snapshot()
    for target in (member, other_member):
        error_of(adjust(client_for(member), target.account.id, "10"), 403, "admin_required")
    assert db_snapshot() == before


def test_account_of_another_platform_is_404(admin, outsider):
    before = db_snapshot()
    error = error_of(adjust(client_for(admin), outsider.account.id, "10"), 404, "account_not_found")
    assert error["details"] == {"account_id": str(outsider.account.id)}
    assert db_snapshot() == before
    assert balance_of(outsider.account) == Decimal("10")
    # nor its platform account
    globex = CreditAccount.objects.get(platform=outsider.platform, user__isnull=True)
    error_of(adjust(client_for(admin), globex.id, "10"), 404, "account_not_found")


def test_unknown_account_is_404(admin):
    before = db_snapshot()
    error_of(adjust(client_for(admin), "00000000-0000-0000-0000-000000000000", "10"), 404, "account_not_found")
    assert db_snapshot() == before


# --- idempotency ------------------------------------------------------------------------------------------


def test_replay_with_the_same_key_and_body_returns_the_first_transaction(admin, member):
    client = client_for(admin)
    first = adjust(client, member.account.id, "5.00", HTTP_IDEMPOTENCY_KEY="adj-1")
    assert first.status_code == 201
    again = adjust(client, member.account.id, "5.00", HTTP_IDEMPOTENCY_KEY="adj-1")
    assert again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    # the same amount written differently is the same request
    third = adjust(client, member.account.id, "5", HTTP_IDEMPOTENCY_KEY="adj-1")
    assert third.status_code == 200 and third.json()["id"] == first.json()["id"]
    assert LedgerEntry.objects.filter(account=member.account, transaction_type="adjustment").count() == 1
    assert balance_of(member.account) == Decimal("105")


def test_replay_after_other_activity_still_returns_the_first_row(admin, member):
    client = client_for(admin)
    first = adjust(client, member.account.id, "-10", HTTP_IDEMPOTENCY_KEY="adj-1").json()
    credits_debit(account_id=member.account.id, amount=Decimal("89"), description="spent")
    # the removal would no longer fit, but a replay moves nothing
    again = adjust(client, member.account.id, "-10", HTTP_IDEMPOTENCY_KEY="adj-1")
    assert again.status_code == 200
    assert again.json() == first
    assert balance_of(member.account) == Decimal("1")


@pytest.mark.parametrize(
    "change",
    [{"amount": "6.00"}, {"amount": "-5.00"}, {"description": "another reason"}, {"reference": "other"}],
)
def test_same_key_with_a_different_body_is_409(admin, member, change):
    client = client_for(admin)
    body = {"account_id": str(member.account.id), "amount": "5.00", "description": "correction"}
    assert post_json(client, MANUAL_URL, body, HTTP_IDEMPOTENCY_KEY="adj-1").status_code == 201
    before = db_snapshot()
    response = post_json(client, MANUAL_URL, {**body, **change}, HTTP_IDEMPOTENCY_KEY="adj-1")
    error_of(response, 409, "idempotency_conflict")
    assert db_snapshot() == before


def test_idempotency_keys_are_scoped_per_account(admin, member, other_member):
    client = client_for(admin)
    first = adjust(client, member.account.id, "5.00", HTTP_IDEMPOTENCY_KEY="adj-1")
    second = adjust(client, other_member.account.id, "5.00", HTTP_IDEMPOTENCY_KEY="adj-1")
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]
    assert LedgerEntry.objects.filter(idempotency_key=client_key("adj-1")).count() == 2
    assert balance_of(member.account) == Decimal("105")
    assert balance_of(other_member.account) == Decimal("55")


def test_different_keys_make_different_rows(admin, member):
    client = client_for(admin)
    a = adjust(client, member.account.id, "1", HTTP_IDEMPOTENCY_KEY="adj-1")
    b = adjust(client, member.account.id, "1", HTTP_IDEMPOTENCY_KEY="adj-2")
    c = adjust(client, member.account.id, "1")
    d = adjust(client, member.account.id, "1")
    assert [r.status_code for r in (a, b, c, d)] == [201, 201, 201, 201]
    assert len({r.json()["id"] for r in (a, b, c, d)}) == 4
    assert balance_of(member.account) == Decimal("104")


def test_longest_valid_idempotency_key_is_accepted(admin, member):
    key = "k" * 255
    assert adjust(client_for(admin), member.account.id, "1", HTTP_IDEMPOTENCY_KEY=key).status_code == 201
    assert LedgerEntry.objects.filter(account=member.account, idempotency_key=client_key(key)).count() == 1


@pytest.mark.parametrize("key", ["k" * 256, "has space", "tab\tkey", "", "caf\u00e9"])
def test_invalid_idempotency_key_is_400_and_writes_nothing(admin, member, key):
    before = db_snapshot()
    response = adjust(client_for(admin), member.account.id, "1", HTTP_IDEMPOTENCY_KEY=key)
    invalid_field(response, "Idempotency-Key")
    assert db_snapshot() == before


# --- bad input --------------------------------------------------------------------------------------------


def _valid_body(account_id) -> dict:  # noqa: ANN001
    return {"account_id": str(account_id), "amount": "5.00", "description": "correction"}


MISSING = object()

BAD_FIELDS = [
    ("amount", 0),
    ("amount", "0"),
    ("amount", "0.00"),
    ("amount", "-0"),
    ("amount", "0.0000001"),
    ("amount", "NaN"),
    ("amount", "nan"),
    ("amount", "sNaN"),
    ("amount", "Infinity"),
    ("amount", "-Infinity"),
    ("amount", "inf"),
    ("amount", "1e400"),
    ("amount", "1.0000001"),
    ("amount", "-1.0000001"),
    ("amount", "1000000001"),
    ("amount", "-1000000001"),
    ("amount", "1000000000.000001"),
    ("amount", "99999999999999999999999"),
    ("amount", 99999999999999999999999),
    ("amount", "12,50"),
    ("amount", "abc"),
    ("amount", ""),
    ("amount", " "),
    ("amount", "1" * 2000),
    ("amount", True),
    ("amount", False),
    ("amount", []),
    ("amount", ["5"]),
    ("amount", {}),
    ("amount", {"value": "5"}),
    ("amount", None),
    ("amount", MISSING),
    ("description", MISSING),
    ("description", None),
    ("description", ""),
    ("description", "   "),
    ("description", "d" * 501),
    ("description", ["x"]),
    ("reference", "r" * 256),
    ("account_id", "not-a-uuid"),
    ("account_id", "1234"),
    ("account_id", 42),
    ("account_id", None),
    ("account_id", ""),
    ("account_id", MISSING),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS, ids=[f"{f}={v!r:.24}" for f, v in BAD_FIELDS])
def test_bad_field_is_400_naming_it_and_writes_nothing(admin, member, field, value):
    body = _valid_body(member.account.id)
    if value is MISSING:
        del body[field]
    else:
        body[field] = value
    before = db_snapshot()
    response = post_json(client_for(admin), MANUAL_URL, body, HTTP_IDEMPOTENCY_KEY="bad-1")
    error = invalid_field(response, field)
    assert error["code"] == "invalid"
    assert set(error["details"]) == {field}
    assert db_snapshot() == before
    assert not LedgerEntry.objects.filter(idempotency_key="bad-1").exists()
    # and the key was not used up: the good request with it still succeeds
    good = post_json(client_for(admin), MANUAL_URL, _valid_body(member.account.id), HTTP_IDEMPOTENCY_KEY="bad-1")
    assert good.status_code == 201


@pytest.mark.parametrize("raw_amount", ["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "1.0000001", "1e-7",
                                        "true", "null", "[]", "{}"])
def test_bad_json_number_literals(admin, member, raw_amount):
    body = f'{{"account_id": "{member.account.id}", "amount": {raw_amount}, "description": "x"}}'
    before = db_snapshot()
    response = post_json(client_for(admin), MANUAL_URL, body)
    error = error_of(response, 400)
    if raw_amount in ("NaN", "Infinity", "-Infinity"):
        # not JSON at all: the body is refused before any field is looked at
        assert error["code"] == "malformed_request"
    else:
        assert error["code"] == "invalid"
        assert set(error["details"]) == {"amount"}
    assert db_snapshot() == before


@pytest.mark.parametrize(
    "raw",
    ['{"account_id": ', "not json", '{"amount": "5",}', "", "\xff", '{"a": 1} trailing'],
)
def test_malformed_json_body_is_400(admin, member, raw):
    before = db_snapshot()
    error = error_of(post_json(client_for(admin), MANUAL_URL, raw), 400)
    assert error["code"] in {"malformed_request", "invalid"}
    assert db_snapshot() == before


@pytest.mark.parametrize("raw", ["[]", '"text"', "42", "null"])
def test_a_body_that_is_not_an_object_is_400(admin, member, raw):
    before = db_snapshot()
    error = error_of(post_json(client_for(admin), MANUAL_URL, raw), 400)
    assert error["code"] in {"invalid", "malformed_request"}
    assert db_snapshot() == before


def test_form_encoded_body_is_415(admin, member):
    before = db_snapshot()
    response = client_for(admin).post(MANUAL_URL, data=_valid_body(member.account.id))  # multipart
    error_of(response, 415, "unsupported_media_type")
    assert db_snapshot() == before


def test_get_on_manual_is_405(admin):
    error_of(client_for(admin).get(MANUAL_URL), 405, "method_not_allowed")


@pytest.mark.parametrize("value", ["-1", "-0.01"])
def test_money_field_refuses_negatives_where_they_are_not_allowed(value):
    """Where an API amount must be positive (the default MoneyField), a negative one is refused."""
    with pytest.raises(ValidationError) as caught:
        MoneyField().run_validation(value)
    assert "greater than zero" in str(caught.value.detail)
    assert MoneyField(allow_negative=True).run_validation(value) == Decimal(value)


# --- the platform's transactions ----------------------------------------------------------------------------


@pytest.fixture
def platform_rows(platform, owner, admin, member, other_member, outsider) -> list[LedgerEntry]:  # noqa: ANN001
    """Rows on several accounts of acme (and globex's own, which must never show)."""
    return write_platform_rows(platform, admin, member, other_member, outsider)


@pytest.fixture
def platform_rows_on_one_day(platform, owner, admin, outsider, ledger_clock) -> list[LedgerEntry]:  # noqa: ANN001
    """``platform_rows`` with mia's and max's funding rows (what the ``member`` and ``other_member`` fixtures
    grant) and every acme row stamped with the ledger clock's moment: one UTC day, whenever the test runs."""
    member, other_member = make_member(platform, "mia"), make_member(platform, "max")
    pool = CreditAccount.objects.get(platform=platform, user__isnull=True)
    ledger_clock.pin(member.account, other_member.account, pool)
    credits_grant(account_id=member.account.id, amount=Decimal("100.00"), description="test funds")
    credits_grant(account_id=other_member.account.id, amount=Decimal("50.00"), description="test funds")
    rows = write_platform_rows(platform, admin, member, other_member, outsider)
    assert {e.created_at for e in rows} == {ledger_clock.moment}
    return rows


def write_platform_rows(platform, admin, member, other_member, outsider) -> list[LedgerEntry]:  # noqa: ANN001
    credits_debit(account_id=member.account.id, amount=Decimal("0.5"), description="call")
    credits_grant(account_id=other_member.account.id, amount=Decimal("5"), payment_amount_usd=Decimal("5.00"),
                  description="top-up")
    pool = CreditAccount.objects.get(platform=platform, user__isnull=True)
    credits_grant(account_id=pool.id, amount=Decimal("1000"), description="pool")
    adjust(client_for(admin), member.account.id, "-1.25", "refund of a mistaken grant")
    credits_debit(account_id=outsider.account.id, amount=Decimal("1"), description="globex call")
    rows = list(LedgerEntry.objects.filter(platform=platform).order_by("-created_at", "-id"))
    assert len(rows) == 6
    return rows


def admin_listing(client, **params):  # noqa: ANN001, ANN003, ANN201
    response = client.get(ADMIN_TRANSACTIONS_URL, params)
    assert response.status_code == 200, response.content[:500]
    return response.json()


def ids(rows) -> list[str]:  # noqa: ANN001
    return [str(r.id) if isinstance(r, LedgerEntry) else r["id"] for r in rows]


def test_admin_lists_every_transaction_of_the_platform_newest_first(admin, member, other_member, platform_rows):
    body = admin_listing(client_for(admin))
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 6
    assert ids(body["results"]) == ids(platform_rows)
    times = [assert_utc(r["created_at"]) for r in body["results"]]
    assert times == sorted(times, reverse=True)
    by_id = {r["id"]: r for r in body["results"]}
    for entry in platform_rows:
        row = by_id[str(entry.id)]
        assert set(row) - {"payment_amount_usd"} == ROW_FIELDS | {"account_id", "username", "actor"}
        assert row["account_id"] == str(entry.account_id)
        assert row["username"] == (entry.account.user.username if entry.account.user_id else None)
        assert Decimal(row["credits_balance_after"]) == entry.balance_after
        assert_money(row["credits_amount"])
        assert ("payment_amount_usd" in row) == (entry.payment_amount_usd is not None)
    adjustment = next(r for r in body["results"] if r["transaction_type"] == "adjustment")
    assert (adjustment["username"], adjustment["actor"], adjustment["balance_change"]) == ("mia", "adam", "-1.25")
    pool = next(r for r in body["results"] if r["description"] == "pool")
    assert (pool["username"], pool["actor"]) == (None, None)
    assert next(r for r in body["results"] if r["description"] == "top-up")["payment_amount_usd"] == "5.00"


def test_admin_sees_only_their_own_platform(outsider, platform_rows):
    body = admin_listing(client_for(outsider))
    globex = LedgerEntry.objects.filter(platform=outsider.platform).order_by("-created_at", "-id")
    assert body["count"] == 2
    assert ids(body["results"]) == ids(globex)
    assert not set(ids(body["results"])) & set(ids(platform_rows))


def test_member_cannot_list_the_platform(member, platform_rows):
    error_of(client_for(member).get(ADMIN_TRANSACTIONS_URL), 403, "admin_required")


def test_filters_by_account_username_and_type(admin, member, other_member, outsider, platform_rows):
    client = client_for(admin)
    mine = [e for e in platform_rows if e.account_id == member.account.id]
    by_account = admin_listing(client, account_id=str(member.account.id))
    assert (by_account["count"], ids(by_account["results"])) == (len(mine), ids(mine))
    assert len(mine) == 3
    by_name = admin_listing(client, username="mia")
    assert ids(by_name["results"]) == ids(mine)
    subtract = admin_listing(client, username="mia", transaction_type="subtract")
    assert ids(subtract["results"]) == ids([e for e in mine if e.transaction_type == "subtract"])
    adds = admin_listing(client, transaction_type="add")
    assert ids(adds["results"]) == ids([e for e in platform_rows if e.transaction_type == "add"])
    assert adds["count"] == 4
    # another platform's account or member is simply not there
    assert admin_listing(client, account_id=str(outsider.account.id)) == {
        "count": 0, "next": None, "previous": None, "results": []
    }
    assert admin_listing(client, username="gina")["count"] == 0
    assert admin_listing(client, username="nobody")["count"] == 0


def test_date_filters_of_the_platform_listing(admin, platform_rows_on_one_day):
    platform_rows = platform_rows_on_one_day
    days = {e.created_at.astimezone(UTC).date() for e in platform_rows}
    assert len(days) == 1
    (day,) = days
    client = client_for(admin)
    one = timedelta(days=1)
    assert admin_listing(client, from_date=day.isoformat(), to_date=day.isoformat())["count"] == 6
    assert admin_listing(client, from_date="1970-01-01", to_date="9999-12-31")["count"] == 6
    assert admin_listing(client, from_date="0001-01-01", to_date="9999-12-31")["count"] == 6
    assert admin_listing(client, from_date="9999-12-31", to_date="9999-12-31")["count"] == 0
    assert admin_listing(client, from_date=(day + one).isoformat())["count"] == 0
    assert admin_listing(client, to_date=(day - one).isoformat())["count"] == 0
    assert ids(admin_listing(client, to_date=day.isoformat(), transaction_type="adjustment")["results"]) == ids(
        [e for e in platform_rows if e.transaction_type == "adjustment"]
    )


def test_platform_listing_pages(admin, platform_rows):
    client = client_for(admin)
    page1 = admin_listing(client, page_size=4)
    assert (page1["count"], ids(page1["results"]), page1["previous"]) == (6, ids(platform_rows[:4]), None)
    assert parse_qs(urlsplit(page1["next"]).query) == {"page_size": ["4"], "page": ["2"]}
    page2 = client.get(page1["next"]).json()
    assert (page2["count"], ids(page2["results"]), page2["next"]) == (6, ids(platform_rows[4:]), None)
    assert client.get(page2["previous"]).json() == page1
    error_of(client.get(ADMIN_TRANSACTIONS_URL, {"page_size": 4, "page": 3}), 404, "not_found")
    error_of(client.get(ADMIN_TRANSACTIONS_URL, {"username": "nobody", "page": 2}), 404, "not_found")
    exact = admin_listing(client, page_size=3, page=2)
    assert (exact["count"], ids(exact["results"]), exact["next"]) == (6, ids(platform_rows[3:]), None)
    error_of(client.get(ADMIN_TRANSACTIONS_URL, {"page_size": 3, "page": 3}), 404)


@pytest.mark.parametrize("size", [1, 2, 4, 6, 100])
def test_platform_cursor_pages_visit_every_row_once_forward_and_back(admin, platform_rows, size):
    client = client_for(admin)
    forward = [admin_listing(client, pagination="cursor", page_size=size)]
    while forward[-1]["next"]:
        forward.append(client.get(forward[-1]["next"]).json())
        assert len(forward) < 20
    assert forward[0]["previous"] is None
    assert all("count" not in page for page in forward)
    assert [r for p in forward for r in ids(p["results"])] == ids(platform_rows)
    backward = [forward[-1]]
    while backward[-1]["previous"]:
        backward.append(client.get(backward[-1]["previous"]).json())
        assert len(backward) < 20
    assert [ids(p["results"]) for p in reversed(backward)] == [ids(p["results"]) for p in forward]


def test_platform_cursor_with_a_filter(admin, member, platform_rows):
    client = client_for(admin)
    mine = [e for e in platform_rows if e.account_id == member.account.id]
    pages = [admin_listing(client, pagination="cursor", page_size=1, username="mia")]
    while pages[-1]["next"]:
        pages.append(client.get(pages[-1]["next"]).json())
    assert [r for p in pages for r in ids(p["results"])] == ids(mine)


def _cursor(payload) -> str:  # noqa: ANN001
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


ADMIN_BAD_QUERIES = [
    ({"account_id": "not-a-uuid"}, "account_id"),
    ({"account_id": "1234"}, "account_id"),
    ({"transaction_type": "foo"}, "transaction_type"),
    ({"from_date": "2026-13-01"}, "from_date"),
    ({"to_date": "01/02/2026"}, "to_date"),
    ({"from_date": "yesterday"}, "from_date"),
    ({"from_date": "2026-03-02", "to_date": "2026-03-01"}, "to_date"),
    ({"page": "0"}, "page"),
    ({"page": "-1"}, "page"),
    ({"page": "abc"}, "page"),
    ({"page_size": "0"}, "page_size"),
    ({"page_size": "101"}, "page_size"),
    ({"page_size": "abc"}, "page_size"),
    ({"cursor": "garbage!"}, "cursor"),
    ({"cursor": _cursor({"before": 5})}, "cursor"),
    ({"cursor": _cursor({"before": ["not a date", "00000000-0000-0000-0000-000000000000"]})}, "cursor"),
    ({"cursor": _cursor({"before": ["2026-01-01T00:00:00Z", "not-a-uuid"]})}, "cursor"),
    ({"cursor": _cursor({"before": ["2026-01-01T00:00:00Z", 7]})}, "cursor"),
    ({"cursor": _cursor({"before": ["2026-01-01T00:00:00Z"]})}, "cursor"),
    ({"cursor": _cursor({"after": {"at": "2026-01-01T00:00:00Z"}})}, "cursor"),
    ({"cursor": _cursor({"after": ["2026-02-30T00:00:00Z", "00000000-0000-0000-0000-000000000000"]})}, "cursor"),
    ({"cursor": _cursor({"sideways": ["2026-01-01T00:00:00Z", "00000000-0000-0000-0000-000000000000"]})}, "cursor"),
]


@pytest.mark.parametrize(("params", "field"), ADMIN_BAD_QUERIES,
                         ids=[f"{f}={list(p.values())[-1]!s:.20}" for p, f in ADMIN_BAD_QUERIES])
def test_bad_query_on_the_platform_listing_is_400(admin, params, field):
    before = db_snapshot()
    error = invalid_field(client_for(admin).get(ADMIN_TRANSACTIONS_URL, params), field)
    assert error["code"] == "invalid"
    assert db_snapshot() == before
