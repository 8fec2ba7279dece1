"""Hand-made bad input, one rule per kind of value (``billing_service.inputs``): every case is a 400 naming the
field (or a 404 for an id in the URL), with nothing written.

Regression cases of hostile testing: amounts in other scripts' digits, with "_", "+", spaces or an exponent
moved credits; "page=٣" read as 3; a NUL in the URL answered 500; usage text took DEL, which reservations
refused; an occurred_at before year 1 in UTC debited the account, then answered 500 for good."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from credits.models import ModelPrice, UsageEvent
from subscriptions.models import Plan
from tests.api_helpers import error_of, full_state, invalid_field, iso_z, post_json
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

LENIENT_AMOUNTS = ["٣", "５", "٥.٠٠", "1_000", "+5", " 5.00 ", "5.00 ", "1E+2", "1e2", "5.", ".5", "0x10",
                   "Infinity", "NaN", "-", "", "1,5", "١٠"]


@pytest.fixture
def hold(owner, member):  # noqa: ANN001, ANN201
    response = post_json(client_for(owner), "/api/billing/reservations/",
                         {"account_id": str(member.account.id), "amount": "5", "request_id": "held-1"})
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def plan(platform):  # noqa: ANN001, ANN201
    return Plan.objects.create(platform=platform, slug="pro", name="Pro", price_monthly=1000, price_yearly=10000,
                               credits_included=Decimal("100"))


def _amount_requests(member, hold, plan):  # noqa: ANN001, ANN202
    """(path, body, field) of every body that carries a decimal amount, with ``{}`` where the amount goes."""
    account = str(member.account.id)
    return [
        ("/api/billing/admin/credits/manual/", {"account_id": account, "description": "x"}, "amount"),
        ("/api/billing/usage/", {"account_id": account, "request_id": "u-1", "endpoint": "/chat"}, "amount"),
        ("/api/billing/reservations/", {"account_id": account, "request_id": "h-2"}, "amount"),
        (f"/api/billing/reservations/{hold['id']}/capture/", {"endpoint": "/chat"}, "amount"),
        ("/api/billing/admin/models/", {"model": "m-1", "output_per_million": "1"}, "input_per_million"),
        ("/api/billing/admin/plans/", {"slug": "basic", "name": "Basic", "price_monthly": 100, "price_yearly": 1000},
         "credits_included"),
    ]


@pytest.mark.parametrize("value", LENIENT_AMOUNTS)
def test_an_amount_that_is_not_a_plain_decimal_string_is_refused_everywhere(owner, member, hold, plan, value):
    client = client_for(owner)
    for path, body, field in _amount_requests(member, hold, plan):
        before = full_state()
        invalid_field(post_json(client, path, {**body, field: value}), field)
        assert full_state() == before, path


@pytest.mark.parametrize("value", LENIENT_AMOUNTS)
def test_a_lenient_amount_in_a_batch_rejects_that_event_only(owner, member, value):
    events = [
        {"account_id": str(member.account.id), "request_id": "b-1", "endpoint": "/chat", "amount": value},
        {"account_id": str(member.account.id), "request_id": "b-2", "endpoint": "/chat", "amount": "0.50"},
    ]
    body = post_json(client_for(owner), "/api/billing/usage/batch/", {"events": events}).json()
    assert [r["status"] for r in body["results"]] == ["rejected", "recorded"]
    assert "amount" in body["results"][0]["error"]["details"]
    assert list(UsageEvent.objects.values_list("request_id", flat=True)) == ["b-2"]


@pytest.mark.parametrize("value", LENIENT_AMOUNTS)
def test_a_lenient_amount_in_settings_is_refused(member, value):
    before = full_state()
    response = client_for(member).patch("/api/billing/account/", {"auto_recharge_threshold_usd": value},
                                        format="json")
    invalid_field(response, "auto_recharge_threshold_usd")
    assert full_state() == before


def test_plain_decimal_strings_and_json_numbers_are_taken(owner, member):
    client = client_for(owner)
    for i, value in enumerate(["5", "5.5", "5.000001", "-0.25", 2, Decimal("0.75")]):
        body = {"account_id": str(member.account.id), "amount": value, "description": "x"}
        response = client.post("/api/billing/admin/credits/manual/", body, format="json",
                               HTTP_IDEMPOTENCY_KEY=f"k-{i}")
        assert response.status_code == 201, (value, response.content)


@pytest.mark.parametrize("value", ["٣", "５", "+1", "1_0", " 1", "1.0", "0x1", "1e1", "", "-1", "99999999999999999999"])
@pytest.mark.parametrize(
    ("path", "field", "role"),
    [
        ("/api/billing/transactions/", "page", "member"),
        ("/api/billing/transactions/", "page_size", "member"),
        ("/api/billing/admin/credits/transactions/", "page", "owner"),
        ("/api/billing/orders/", "page_size", "member"),
        ("/api/billing/plans/", "page", "member"),
        ("/api/billing/admin/plans/", "page_size", "owner"),
        ("/api/billing/admin/models/", "page", "owner"),
        ("/api/billing/reservations/", "page", "owner"),
    ],
)
def test_an_integer_query_parameter_takes_ascii_digits_only(request, path, field, role, value):
    caller = request.getfixturevalue(role)
    response = client_for(caller).get(path, {field: value})
    if value == "":  # an empty parameter is an absent one
        assert response.status_code == 200, response.content
    else:
        invalid_field(response, field)


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/billing/transactions/", {"from_date": "٢٠٢٥-٠١-٠١"}, "from_date"),
        ("/api/billing/transactions/", {"to_date": "2025-1-1"}, "to_date"),
        ("/api/billing/usage/stats/", {"from": "٢٠٢٥-٠١-٠١"}, "from"),
        ("/api/billing/usage/stats/", {"from": "2025-W01-1"}, "from"),
        ("/api/billing/usage/stats/", {"to": "2025-01-01 10:00:00"}, "to"),
        ("/api/billing/usage/stats/", {"to": "2025-01-01T10:00:00.1234567Z"}, "to"),
        ("/api/billing/admin/plans/", {"is_active": "yes"}, "is_active"),
        ("/api/billing/admin/plans/", {"is_active": "1"}, "is_active"),
    ],
)
def test_dates_and_flags_in_query_strings_are_strict(owner, path, params, field):
    invalid_field(client_for(owner).get(path, params), field)


@pytest.mark.parametrize(
    "value",
    ["0001-01-01T00:00:00+05:00", "1999-12-31T23:59:59Z", "2000-01-01T04:59:59+05:00", "٢٠٢٥-٠١-٠١T00:00:00Z",
     "2025-W01-1T00:00:00", "20250101T000000Z", "2025-01-01", "2025-01-01T00:00:00.1234567Z", "9999-12-31T23:59:59-01:00"],
)
@pytest.mark.parametrize("success", [True, False])
def test_occurred_at_outside_the_sane_range_is_a_400_that_writes_nothing(owner, member, value, success):
    client = client_for(owner)
    body = {"account_id": str(member.account.id), "request_id": "r-early", "endpoint": "/chat", "amount": "1",
            "success": success, "occurred_at": value}
    before = full_state()
    for _ in range(2):  # a retry answers the same
        invalid_field(post_json(client, "/api/billing/usage/", body), "occurred_at")
    batch = post_json(client, "/api/billing/usage/batch/", {"events": [body]}).json()
    assert batch["results"][0]["status"] == "rejected"
    assert "occurred_at" in batch["results"][0]["error"]["details"]
    assert full_state() == before


def test_occurred_at_at_the_floor_and_a_little_ahead_is_taken(owner, member):
    client = client_for(owner)
    for i, at in enumerate(["2000-01-01T00:00:00Z", "2000-01-01T05:00:00+05:00",
                            iso_z(timezone.now() + timedelta(minutes=4))]):
        body = {"account_id": str(member.account.id), "request_id": f"r-{i}", "endpoint": "/chat", "amount": "1",
                "occurred_at": at}
        assert post_json(client, "/api/billing/usage/", body).status_code == 201


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "1999-12-31T23:59:59Z", "٢٠٣٠-٠١-٠١T00:00:00Z"])
def test_effective_from_before_2000_or_in_other_digits_is_a_400(owner, value):
    before = full_state()
    response = post_json(client_for(owner), "/api/billing/admin/models/",
                         {"model": "m-1", "input_per_million": "1", "output_per_million": "1", "effective_from": value})
    invalid_field(response, "effective_from")
    assert full_state() == before


# --- text: one rule --------------------------------------------------------------------------------------

CONTROL = ["\x7f", "\x01", "\x1b[31m", "\x85", "\x9f", "a\nb", "\t"]


@pytest.mark.parametrize("char", CONTROL)
def test_control_characters_are_refused_in_every_text_field(owner, member, hold, char):
    client = client_for(owner)
    account = str(member.account.id)
    cases = [
        ("/api/billing/usage/", {"account_id": account, "request_id": "u", "endpoint": "/c", "amount": "1"},
         ["request_id", "endpoint", "model", "description"]),
        ("/api/billing/reservations/", {"account_id": account, "request_id": "h", "amount": "1"},
         ["request_id", "reference"]),
        (f"/api/billing/reservations/{hold['id']}/capture/", {"endpoint": "/c", "amount": "1"}, ["endpoint", "model"]),
        ("/api/billing/admin/credits/manual/", {"account_id": account, "amount": "1", "description": "d"},
         ["description", "reference"]),
        ("/api/billing/admin/plans/", {"slug": "p", "name": "P", "price_monthly": 1, "price_yearly": 1,
                                        "credits_included": "1"}, ["name"]),
    ]
    for path, body, fields in cases:
        for field in fields:
            before = full_state()
            invalid_field(post_json(client, path, {**body, field: f"x{char}y"}), field)
            assert full_state() == before, (path, field)


def test_a_usage_text_field_with_del_is_rejected_in_a_batch(owner, member):
    event = {"account_id": str(member.account.id), "request_id": "r\x7f", "endpoint": "/chat", "amount": "1"}
    body = post_json(client_for(owner), "/api/billing/usage/batch/", {"events": [event]}).json()
    assert body["results"][0]["status"] == "rejected"
    assert not UsageEvent.objects.exists()


# --- what reaches SQL from the URL ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/billing/admin/models/%00/",
        "/api/billing/admin/models/a%00b/",
        "/api/billing/reservations/%00/",
        "/api/billing/orders/%00/",
        "/api/billing/admin/plans/%00/",
        "/api/billing/admin/credits/transactions/?username=%00",
        "/api/billing/admin/models/?model=a%00",
        "/api/billing/transactions/?cursor=%00",
        "/api/billing/account/?platform_key=%00",
        "/api/billing/transactions/?transaction_type=add%00",
    ],
)
def test_a_nul_in_the_url_is_a_4xx_never_a_500(owner, path):
    response = client_for(owner).get(path)
    assert response.status_code in (400, 404), (response.status_code, response.content)
    error_of(response, response.status_code)


@pytest.mark.parametrize(
    "path",
    [
        "/api/billing/admin/models/" + "m" * 5000 + "/",
        "/api/billing/admin/models/" + "a/" * 200,
        "/api/billing/reservations/" + "0" * 5000 + "/",
        "/api/billing/orders/" + "f" * 5000 + "/",
        "/api/billing/admin/plans/" + "z" * 5000 + "/",
    ],
)
def test_an_over_long_id_in_the_path_is_a_404(owner, path):
    error_of(client_for(owner).get(path), 404)


@pytest.mark.parametrize("key", ["ACME", "a" * 64, "acme x", "ácme", "acme\x7f"])
def test_a_malformed_platform_header_is_refused_without_a_query(member, key, django_assert_max_num_queries):
    client = client_for(member)
    with django_assert_max_num_queries(1):  # authentication only
        response = client.get("/api/billing/account/", HTTP_X_PLATFORM_KEY=key)
    error_of(response, 403, "not_a_member")


@pytest.mark.parametrize("value", ["a" * 64, "ACME", "acme\x7f"])
def test_a_malformed_platform_key_parameter_is_refused(owner, value):
    response = client_for(owner).get("/api/billing/account/", {"platform_key": value})
    assert response.status_code in (400, 403), response.content
    error_of(response, response.status_code)


def test_strict_uuids_in_bodies(owner, member):
    account = member.account.id
    for value in [account.hex, f"{{{account}}}", f"urn:uuid:{account}", int(account), str(account) + " "]:
        before = full_state()
        response = post_json(client_for(owner), "/api/billing/admin/credits/manual/",
                             {"account_id": value, "amount": "1", "description": "x"})
        invalid_field(response, "account_id")
        assert full_state() == before


def test_rate_card_version_effective_in_2000_is_taken(owner):
    response = post_json(client_for(owner), "/api/billing/admin/models/",
                         {"model": "m-2000", "input_per_million": "1", "output_per_million": "1",
                          "effective_from": "2000-01-01T00:00:00Z"})
    assert response.status_code == 201, response.content
    assert ModelPrice.objects.get(model="m-2000").effective_from == datetime(2000, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "status"),
    [("Token abc\x00def", 400), ("Token " + "a" * 5000, 401), ("Token \x7f", 401), ("Token " + "A" * 40, 401),
     ("Token " + "g" * 40, 401)],
)
def test_a_malformed_token_is_refused_without_a_query(member, header, status, django_assert_max_num_queries):
    client = client_for()
    client.credentials(HTTP_AUTHORIZATION=header)
    with django_assert_max_num_queries(0):
        response = client.get("/api/billing/account/")
    error_of(response, status)


def test_a_nul_in_any_header_is_a_400(member):
    error_of(client_for(member).get("/api/billing/account/", HTTP_X_REQUEST_ID="a\x00b"), 400, "malformed_request")
