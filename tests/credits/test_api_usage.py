"""Usage over HTTP: POST /api/billing/usage/ and POST /api/billing/usage/batch/.

Each test checks the status, the body and the database (what was written, or that nothing was)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from credits.models import CreditAccount, LedgerEntry, ModelPrice, UsageEvent, UsageRollup
from credits.services import credits_grant
from tests.api_helpers import assert_money, assert_utc, db_snapshot, error_of, invalid_field, iso_z, post_json
from tests.conftest import client_for, make_member
from tests.credits.test_ledger_invariants_hypothesis import assert_ledger_invariants

pytestmark = pytest.mark.django_db

D = Decimal
USAGE_URL = "/api/billing/usage/"
BATCH_URL = "/api/billing/usage/batch/"
ROW_FIELDS = {
    "id", "transaction_type", "status", "credits_amount", "credits_balance_after", "description", "reference",
    "metadata", "created_at", "balance_change", "reserved_change", "reserved_after", "sequence", "hold_id",
}
EVENT_FIELDS = {
    "id", "account_id", "request_id", "endpoint", "model", "input_tokens", "output_tokens", "cost", "priced_by",
    "charged", "funded", "funded_by", "price_version_id", "success", "description", "metadata", "transaction_id", "hold_id", "occurred_at",
    "recorded_at",
}
ITEM_FIELDS = {"request_id", "status", "transaction_id", "usage_event_id", "error"}


def body_for(account, request_id: str = "req-1", **fields):  # noqa: ANN001, ANN003, ANN201
    return {"account_id": str(account.id), "request_id": request_id, "endpoint": "/v1/chat", **fields}


def state() -> tuple:
    """Everything a usage request can write."""
    return (
        db_snapshot(),
        sorted(UsageEvent.objects.values_list("account_id", "request_id")),
        sorted(UsageRollup.objects.values_list("account_id", "day", "endpoint", "total_requests",
                                               "credits_consumed")),
    )


def available(account) -> Decimal:  # noqa: ANN001
    return CreditAccount.objects.get(pk=account.pk).available


@pytest.fixture
def admin_client(owner):  # noqa: ANN001, ANN201
    return client_for(owner)


@pytest.fixture
def gpt(platform):  # noqa: ANN001, ANN201
    """gpt-test: 2/8 credits per million tokens until 2026-03-01, then 3/12."""
    ModelPrice.objects.create(platform=platform, model="gpt-test", input_per_million=D("2"),
                              output_per_million=D("8"), effective_from=datetime(2026, 1, 1, tzinfo=UTC))
    return ModelPrice.objects.create(platform=platform, model="gpt-test", input_per_million=D("3"),
                                     output_per_million=D("12"), effective_from=datetime(2026, 3, 1, tzinfo=UTC))


# --- one event -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owner_or_admin_records_usage_and_gets_the_debit_and_the_event(request, member, role):
    caller = request.getfixturevalue(role)
    at = timezone.now().replace(microsecond=0) - timedelta(minutes=3)
    response = post_json(client_for(caller), USAGE_URL, body_for(
        member.account, "call-1", model="gpt-x", input_tokens=120, output_tokens=30, amount="1.25",
        description="Tutor chat", metadata={"conversation": "c-9", "turn": 3}, occurred_at=iso_z(at),
    ))
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"transaction", "usage_event", "available_credits"}
    row, ev = body["transaction"], body["usage_event"]
    assert set(row) == ROW_FIELDS and set(ev) == EVENT_FIELDS
    assert (row["transaction_type"], row["credits_amount"], row["balance_change"]) == ("subtract", "1.25", "-1.25")
    assert (row["credits_balance_after"], row["sequence"], row["reference"]) == ("98.75", 2, "call-1")
    assert "gpt-x" in row["description"] and "/v1/chat" in row["description"]
    assert row["metadata"]["usage_event_id"] == ev["id"]
    assert ev == {
        "id": ev["id"], "account_id": str(member.account.id), "request_id": "call-1", "endpoint": "/v1/chat",
        "model": "gpt-x", "input_tokens": 120, "output_tokens": 30, "cost": "1.25", "charged": "1.25", "funded": "0.00", "funded_by": "",
        "priced_by": "amount",
        "price_version_id": None, "success": True, "description": "Tutor chat",
        "metadata": {"conversation": "c-9", "turn": 3}, "transaction_id": row["id"], "hold_id": None,
        "occurred_at": iso_z(at), "recorded_at": ev["recorded_at"],
    }
    assert_utc(ev["recorded_at"])
    assert body["available_credits"] == "98.75"
    # the database agrees
    event = UsageEvent.objects.get(pk=ev["id"])
    entry = LedgerEntry.objects.get(pk=row["id"])
    assert (event.account_id, event.ledger_entry_id, event.cost) == (member.account.id, entry.id, D("1.25"))
    assert (entry.account_id, entry.balance_delta, entry.actor_id) == (member.account.id, D("-1.25"),
                                                                     caller.user.pk)
    assert available(member.account) == D("98.75")
    (rollup,) = UsageRollup.objects.filter(account=member.account)
    assert (rollup.day, rollup.endpoint, rollup.total_requests, rollup.credits_consumed) == (
        at.astimezone(UTC).date(), "/v1/chat", 1, D("1.25")
    )
    assert_ledger_invariants(member.account)


def test_usage_priced_from_the_rate_card_names_the_version(admin_client, member, gpt):
    response = post_json(admin_client, USAGE_URL, body_for(
        member.account, model="gpt-test", input_tokens=1000, output_tokens=500,
    ))
    assert response.status_code == 201, response.content
    ev = response.json()["usage_event"]
    # (1000 * 3 + 500 * 12) / 1e6 = 0.009
    assert (ev["cost"], ev["priced_by"], ev["price_version_id"]) == ("0.009", "rate_card", gpt.pk)
    assert ev["success"] is True  # the default
    assert response.json()["transaction"]["balance_change"] == "-0.009"
    assert response.json()["available_credits"] == "99.991"
    # an earlier occurred_at is priced by the version then in effect
    response = post_json(admin_client, USAGE_URL, body_for(
        member.account, "req-old", model="gpt-test", input_tokens=1000, output_tokens=500,
        occurred_at="2026-02-01T12:00:00+01:00",
    ))
    ev = response.json()["usage_event"]
    assert (ev["cost"], ev["occurred_at"]) == ("0.006", "2026-02-01T11:00:00Z")
    assert ev["price_version_id"] == ModelPrice.objects.get(model="gpt-test", input_per_million=2).pk
    assert_money(ev["cost"])


def test_a_failed_call_is_recorded_and_charges_nothing(admin_client, member, gpt):
    before = LedgerEntry.objects.count()
    response = post_json(admin_client, USAGE_URL, body_for(
        member.account, model="gpt-test", input_tokens=900, success=False,
    ))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["transaction"] is None
    assert (body["usage_event"]["cost"], body["usage_event"]["success"]) == ("0.00", False)
    assert body["usage_event"]["transaction_id"] is None
    assert body["available_credits"] == "100.00"
    assert LedgerEntry.objects.count() == before
    (rollup,) = UsageRollup.objects.filter(account=member.account)
    assert (rollup.total_requests, rollup.failed_requests, rollup.successful_requests) == (1, 1, 0)


def test_amounts_are_exact_from_strings_or_json_numbers(admin_client, member):
    raw = f'{{"account_id": "{member.account.id}", "request_id": "n1", "endpoint": "/e", "amount": 0.000001}}'
    response = post_json(admin_client, USAGE_URL, raw)
    assert response.status_code == 201, response.content
    assert response.json()["usage_event"]["cost"] == "0.000001"
    response = post_json(admin_client, USAGE_URL, body_for(member.account, "n2", amount=2))
    assert response.json()["usage_event"]["cost"] == "2.00"
    response = post_json(admin_client, USAGE_URL, body_for(member.account, "n3", amount="0"))
    assert response.status_code == 201 and response.json()["transaction"] is None
    assert available(member.account) == D("97.999999")


def test_the_same_event_again_is_a_200_with_the_first_result(admin_client, member):
    payload = body_for(member.account, "retry-1", amount="4.5", metadata={"a": [1, 2]})
    first = post_json(admin_client, USAGE_URL, payload)
    assert first.status_code == 201
    before = state()
    again = post_json(admin_client, USAGE_URL, payload)
    assert again.status_code == 200, again.content
    assert again.json() == first.json()
    assert state() == before
    # a failed event replayed
    failed = body_for(member.account, "retry-2", amount="4.5", success=False)
    assert post_json(admin_client, USAGE_URL, failed).status_code == 201
    replay = post_json(admin_client, USAGE_URL, failed)
    assert replay.status_code == 200 and replay.json()["transaction"] is None
    assert UsageEvent.objects.filter(request_id="retry-2").count() == 1


@pytest.mark.parametrize(
    "change",
    [{"amount": "4.51"}, {"endpoint": "/v1/other"}, {"model": "m2"}, {"success": False}, {"input_tokens": 1},
     {"metadata": {"a": 2}}, {"description": "other"}],
    ids=lambda change: next(iter(change)),
)
def test_the_same_request_id_with_other_content_is_a_409(admin_client, member, change):
    payload = body_for(member.account, "retry-1", amount="4.5", metadata={"a": 1})
    assert post_json(admin_client, USAGE_URL, payload).status_code == 201
    before = state()
    error = error_of(post_json(admin_client, USAGE_URL, {**payload, **change}), 409, "idempotency_conflict")
    assert error["details"] == {"request_id": "retry-1"}
    assert state() == before


def test_a_failed_event_then_a_successful_one_with_its_request_id_is_a_409(admin_client, member):
    payload = body_for(member.account, "flaky", amount="3", success=False)
    assert post_json(admin_client, USAGE_URL, payload).status_code == 201
    before = state()
    error_of(post_json(admin_client, USAGE_URL, {**payload, "success": True}), 409, "idempotency_conflict")
    assert state() == before
    assert available(member.account) == D("100")


def test_insufficient_credits_is_a_402_writing_nothing(admin_client, member, gpt):
    before = state()
    error = error_of(post_json(admin_client, USAGE_URL, body_for(member.account, amount="100.000001")), 402,
                     "insufficient_credits")
    assert error["details"] == {"available": "100.00", "required": "100.000001"}
    error_of(post_json(admin_client, USAGE_URL, body_for(member.account, model="gpt-test",
                                                          output_tokens=10**10)), 402, "insufficient_credits")
    assert state() == before
    # nothing was recorded under the request_id: a smaller call may use it
    assert post_json(admin_client, USAGE_URL, body_for(member.account, amount="100")).status_code == 201
    assert available(member.account) == 0


def test_members_cannot_record_usage(member, other_member):
    before = state()
    client = client_for(member)
    error_of(post_json(client, USAGE_URL, body_for(member.account, amount="1")), 403)
    error_of(post_json(client, USAGE_URL, body_for(other_member.account, amount="1")), 403)
    error_of(post_json(client, BATCH_URL, {"events": [body_for(member.account, amount="1")]}), 403)
    # even with an invalid body the answer is the 403
    error_of(post_json(client, USAGE_URL, {"amount": "-1"}), 403)
    assert state() == before


def test_anonymous_or_bad_token_is_a_401(member):
    before = state()
    for client in (client_for(), client_for(token="not-a-token")):
        error_of(post_json(client, USAGE_URL, body_for(member.account, amount="1")), 401)
        error_of(post_json(client, BATCH_URL, {"events": [body_for(member.account, amount="1")]}), 401)
    assert state() == before


def test_an_account_of_another_platform_is_a_404(admin_client, member, outsider):
    before = state()
    error = error_of(post_json(admin_client, USAGE_URL, body_for(outsider.account, amount="1")), 404,
                     "account_not_found")
    assert "globex" not in str(error)
    error_of(post_json(admin_client, USAGE_URL, body_for(CreditAccount(id=uuid.uuid4()), amount="1")), 404,
             "account_not_found")
    # and the other platform's admin cannot charge ours
    error_of(post_json(client_for(outsider), USAGE_URL, body_for(member.account, amount="1")), 404,
             "account_not_found")
    assert state() == before


def test_an_unpriced_model_without_an_amount_is_a_400(admin_client, member, outsider, gpt):
    before = state()
    error = error_of(post_json(admin_client, USAGE_URL, body_for(member.account, model="gpt-unknown",
                                                                 input_tokens=5)), 400, "model_not_priced")
    assert "model" in error["details"]
    # priced only on another platform
    ModelPrice.objects.create(platform=outsider.platform, model="theirs", input_per_million=1,
                              output_per_million=1, effective_from=datetime(2026, 1, 1, tzinfo=UTC))
    error_of(post_json(admin_client, USAGE_URL, body_for(member.account, model="theirs", input_tokens=5)), 400,
             "model_not_priced")
    # before the first version took effect
    error_of(post_json(admin_client, USAGE_URL, body_for(member.account, model="gpt-test", input_tokens=5,
                                                         occurred_at="2025-12-31T23:59:59Z")), 400,
             "model_not_priced")
    assert state() == before


def test_neither_amount_nor_model_is_a_400(admin_client, member):
    before = state()
    invalid_field(post_json(admin_client, USAGE_URL, body_for(member.account, input_tokens=5)), "amount")
    assert state() == before


def _long_metadata() -> dict:
    return {"blob": "x" * 4100}


BAD_FIELDS = [
    ("amount", "-1"), ("amount", "-0.000001"), ("amount", "NaN"), ("amount", "Infinity"), ("amount", "-Infinity"),
    ("amount", "sNaN"), ("amount", "1.0000001"), ("amount", "1e-7"), ("amount", "1000000000.000001"),
    ("amount", "1e30"), ("amount", 10**30), ("amount", "abc"), ("amount", ""), ("amount", True), ("amount", []),
    ("amount", {"v": 1}),
    ("input_tokens", -1), ("input_tokens", True), ("input_tokens", "12"), ("input_tokens", 10**12 + 1),
    ("input_tokens", 10**30), ("input_tokens", [1]), ("input_tokens", 1.5), ("input_tokens", 2.0),
    ("output_tokens", -5), ("output_tokens", False), ("output_tokens", 2**63),
    ("success", "true"), ("success", 1), ("success", None),
    ("request_id", ""), ("request_id", "   "), ("request_id", 123), ("request_id", "r" * 256),
    ("request_id", "a\nb"), ("request_id", ["r"]),
    ("endpoint", ""), ("endpoint", 7), ("endpoint", "/" + "e" * 200), ("endpoint", {"path": "/x"}),
    ("model", 5), ("model", "m" * 101), ("model", "m\x00"),
    ("description", 5), ("description", "d" * 501), ("description", "\x07"),
    ("metadata", "text"), ("metadata", [1, 2]), ("metadata", 5), ("metadata", _long_metadata()),
    ("metadata", {"k": "a\x00b"}), ("metadata", {"k\x00": 1}), ("metadata", {"k": ["\ud800"]}),
    ("metadata", {"deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}),
    ("request_id", "r\ud800"), ("description", "\udfff"), ("endpoint", "/v1/\ud83d"),
    ("occurred_at", "yesterday"), ("occurred_at", "2026-13-45T00:00:00Z"), ("occurred_at", 1767225600),
    ("occurred_at", "2026-02-30T10:00:00Z"), ("occurred_at", True),
    ("account_id", "not-a-uuid"), ("account_id", 12345), ("account_id", ""), ("account_id", None),
    ("account_id", ["x"]),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS, ids=[f"{f}={str(v)[:20]!r}" for f, v in BAD_FIELDS])
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(admin_client, member, field, value):
    before = state()
    payload = body_for(member.account, amount="1", model="gpt-x")
    payload[field] = value
    invalid_field(post_json(admin_client, USAGE_URL, payload), field)
    assert state() == before


def test_metadata_nested_far_too_deep_is_a_400_not_a_crash(admin_client, member):
    before = state()
    for depth in (100, 900):
        raw = (f'{{"account_id": "{member.account.id}", "request_id": "deep", "endpoint": "/e", "amount": "1", '
               f'"metadata": {{"a": {"[" * depth}{"]" * depth}}}}}')
        invalid_field(post_json(admin_client, USAGE_URL, raw), "metadata")
    assert state() == before
    nested = post_json(admin_client, USAGE_URL, body_for(member.account, amount="1",
                                                         metadata={"a": {"b": {"c": [1, {"d": "e"}]}}}))
    assert nested.status_code == 201
    assert nested.json()["usage_event"]["metadata"] == {"a": {"b": {"c": [1, {"d": "e"}]}}}


def test_a_future_occurred_at_is_a_400(admin_client, member):
    before = state()
    future = iso_z(timezone.now() + timedelta(hours=1))
    invalid_field(post_json(admin_client, USAGE_URL, body_for(member.account, amount="1", occurred_at=future)),
                  "occurred_at")
    assert state() == before


@pytest.mark.parametrize("missing", ["account_id", "request_id", "endpoint"])
def test_a_missing_required_field_is_a_400(admin_client, member, missing):
    before = state()
    payload = body_for(member.account, amount="1")
    del payload[missing]
    error = invalid_field(post_json(admin_client, USAGE_URL, payload), missing)
    assert error["code"] == "invalid"
    assert state() == before


def test_unknown_fields_wrong_bodies_and_malformed_json_are_400s(admin_client, member):
    before = state()
    error = error_of(post_json(admin_client, USAGE_URL, body_for(member.account, amount="1", cost="1")), 400)
    assert "cost" in str(error["details"])
    for body in ([body_for(member.account, amount="1")], "5", '"text"', "null"):
        error_of(post_json(admin_client, USAGE_URL, body), 400)
    error_of(post_json(admin_client, USAGE_URL, '{"account_id": '), 400, "malformed_request")
    # NaN and Infinity are not JSON
    text = '{"account_id": "%s", "request_id": "r", "endpoint": "/e", "amount": %s}'
    for literal in ("NaN", "Infinity", "-Infinity"):
        error_of(post_json(admin_client, USAGE_URL, text % (member.account.id, literal)), 400)
    assert state() == before
    # a JSON number with a fraction is read exactly: 0.1 is 0.1
    response = post_json(admin_client, USAGE_URL, text % (member.account.id, "0.1"))
    assert response.status_code == 201 and response.json()["usage_event"]["cost"] == "0.10"


def test_the_longest_request_id_and_fields_are_accepted(admin_client, member):
    payload = body_for(member.account, "r" * 255, endpoint="/" + "e" * 199, model="m" * 100,
                       description="d" * 500, amount="1", input_tokens=10**12, output_tokens=0)
    response = post_json(admin_client, USAGE_URL, payload)
    assert response.status_code == 201, response.content
    assert len(response.json()["transaction"]["description"]) <= 500
    assert post_json(admin_client, USAGE_URL, payload).status_code == 200
    error_of(post_json(admin_client, USAGE_URL, {**payload, "amount": "2"}), 409, "idempotency_conflict")
    assert available(member.account) == D("99")


# --- batches ---------------------------------------------------------------------------------------------


def test_a_batch_answers_each_event_in_order(admin_client, member, other_member, outsider, gpt):
    poor = make_member(member.platform, "poor").account
    credits_grant(account_id=poor.id, amount=D("5"))
    assert post_json(admin_client, USAGE_URL, body_for(member.account, "earlier", amount="1")).status_code == 201
    events = [
        body_for(member.account, "b0", amount="2"),                                   # recorded
        body_for(other_member.account, "b1", model="gpt-test", input_tokens=10**6),   # recorded: 3
        body_for(member.account, "b0", amount="2"),                                   # duplicate in the batch
        body_for(member.account, "earlier", amount="1"),                              # duplicate of earlier
        body_for(member.account, "earlier", amount="9"),                              # conflict
        body_for(member.account, "bad", amount="-1"),                                 # invalid
        "not an object",                                                              # invalid
        body_for(outsider.account, "theirs", amount="1"),                             # another platform's
        body_for(poor, "p0", amount="4"),                                             # recorded: 5 -> 1
        body_for(poor, "p1", amount="2"),                                             # insufficient
        body_for(poor, "p2", amount="1"),                                             # recorded: 1 -> 0
        body_for(member.account, "unpriced", model="nope", input_tokens=1),           # model_not_priced
        body_for(member.account, "free", model="nope", success=False),                # recorded, free
        {"request_id": "no-account", "endpoint": "/e", "amount": "1"},                # invalid
    ]
    response = post_json(admin_client, BATCH_URL, {"events": events})
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"recorded", "duplicates", "rejected", "results"}
    results = body["results"]
    assert all(set(item) == ITEM_FIELDS for item in results)
    assert [r["request_id"] for r in results] == [
        "b0", "b1", "b0", "earlier", "earlier", "bad", None, "theirs", "p0", "p1", "p2", "unpriced", "free",
        "no-account",
    ]
    assert [r["status"] for r in results] == [
        "recorded", "recorded", "duplicate", "duplicate", "rejected", "rejected", "rejected", "rejected",
        "recorded", "rejected", "recorded", "rejected", "recorded", "rejected",
    ]
    assert (body["recorded"], body["duplicates"], body["rejected"]) == (5, 2, 7)
    codes = {i: r["error"]["code"] for i, r in enumerate(results) if r["error"] is not None}
    assert codes == {4: "idempotency_conflict", 5: "invalid", 6: "invalid", 7: "account_not_found",
                     9: "insufficient_credits", 11: "model_not_priced", 13: "invalid"}
    for i in codes:
        assert set(results[i]["error"]) == {"code", "message", "details"}
        assert results[i]["transaction_id"] is None and results[i]["usage_event_id"] is None
    assert "amount" in results[5]["error"]["details"] and "amount" in results[5]["error"]["message"]
    assert "account_id" in results[13]["error"]["details"]
    assert results[9]["error"]["details"] == {"available": "1.00", "required": "2.00"}
    # recorded and duplicate items carry the event and its transaction, as stored
    for i in (0, 1, 8, 10, 12):
        event = UsageEvent.objects.get(pk=results[i]["usage_event_id"])
        assert event.request_id == results[i]["request_id"]
        assert (str(event.ledger_entry_id) if event.ledger_entry_id else None) == results[i]["transaction_id"]
    assert results[12]["transaction_id"] is None
    assert (results[2]["usage_event_id"], results[2]["transaction_id"]) == (
        results[0]["usage_event_id"], results[0]["transaction_id"]
    )
    earlier = UsageEvent.objects.get(request_id="earlier")
    assert (results[3]["usage_event_id"], results[3]["transaction_id"]) == (str(earlier.id),
                                                                            str(earlier.ledger_entry_id))
    assert UsageEvent.objects.get(pk=results[1]["usage_event_id"]).price_id == gpt.pk
    assert (available(member.account), available(other_member.account), available(poor)) == (
        D("97"), D("47"), D("0")
    )
    assert available(outsider.account) == D("10") and not UsageEvent.objects.filter(account=outsider.account)
    assert not UsageEvent.objects.filter(request_id__in=["bad", "p1", "unpriced", "no-account"]).exists()
    for account in (member.account, other_member.account, poor, outsider.account):
        assert_ledger_invariants(account)


def test_a_batch_rejects_unstorable_text_per_event_and_records_the_rest(admin_client, member):
    events = [
        body_for(member.account, "ok-1", amount="1"),
        body_for(member.account, "r\ud800", amount="1"),
        body_for(member.account, "nul", amount="1", metadata={"k": "a\x00b"}),
        body_for(member.account, "r" * 256, amount="1"),
        body_for(member.account, "ok-2", amount="1"),
    ]
    response = post_json(admin_client, BATCH_URL, {"events": events})
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["recorded", "rejected", "rejected", "rejected", "recorded"]
    # an invalid request_id is not echoed; the error names it
    assert [r["request_id"] for r in results] == ["ok-1", None, "nul", None, "ok-2"]
    assert "request_id" in results[1]["error"]["details"] and "request_id" in results[3]["error"]["details"]
    assert "metadata" in results[2]["error"]["details"]
    assert sorted(UsageEvent.objects.values_list("request_id", flat=True)) == ["ok-1", "ok-2"]
    assert available(member.account) == D("98")


def test_a_batch_sent_again_answers_duplicates_with_the_same_ids(admin_client, member, other_member):
    events = [body_for(acct, f"r{i}", amount="0.5") for i in range(4) for acct in (member.account,
                                                                                  other_member.account)]
    first = post_json(admin_client, BATCH_URL, {"events": events}).json()
    assert first["recorded"] == 8
    before = state()
    again = post_json(admin_client, BATCH_URL, {"events": events}).json()
    assert (again["recorded"], again["duplicates"], again["rejected"]) == (0, 8, 0)
    assert [(r["usage_event_id"], r["transaction_id"]) for r in again["results"]] == [
        (r["usage_event_id"], r["transaction_id"]) for r in first["results"]
    ]
    assert state() == before
    # and the single endpoint sees the batch's events
    replay = post_json(admin_client, USAGE_URL, events[0])
    assert replay.status_code == 200
    assert replay.json()["usage_event"]["id"] == first["results"][0]["usage_event_id"]


@pytest.mark.parametrize(
    "payload",
    [{}, {"events": None}, {"events": "x"}, {"events": {}}, {"events": {"0": {}}}, {"events": []}, [], "null",
     {"items": []}],
    ids=["no-events", "null", "string", "object", "object-of-events", "empty", "list-body", "null-body",
         "wrong-key"],
)
def test_a_malformed_batch_is_a_400_writing_nothing(admin_client, member, payload):
    before = state()
    error = error_of(post_json(admin_client, BATCH_URL, payload), 400)
    assert "events" in error["details"] or error["code"] == "malformed_request"
    assert state() == before


def test_more_than_a_thousand_events_is_a_400_writing_nothing(admin_client, member):
    before = state()
    events = [body_for(member.account, f"r{i}", amount="0.01") for i in range(1001)]
    invalid_field(post_json(admin_client, BATCH_URL, {"events": events}), "events")
    assert state() == before


def test_a_thousand_events_are_recorded_in_one_batch(admin_client, member, other_member, admin):
    accounts = [member.account, other_member.account, admin.account]
    credits_grant(account_id=admin.account.id, amount=D("20"))
    events = [body_for(accounts[i % 3], f"r{i}", amount="0.01", endpoint=f"/v1/e{i % 2}") for i in range(1000)]
    response = post_json(admin_client, BATCH_URL, {"events": events})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["recorded"], body["duplicates"], body["rejected"]) == (1000, 0, 0)
    assert [r["request_id"] for r in body["results"]] == [f"r{i}" for i in range(1000)]
    assert UsageEvent.objects.count() == 1000
    assert (available(member.account), available(other_member.account), available(admin.account)) == (
        D("100") - D("3.34"), D("50") - D("3.33"), D("20") - D("3.33")
    )
    assert sum(r.total_requests for r in UsageRollup.objects.all()) == 1000
    for account in accounts:
        assert_ledger_invariants(account)
