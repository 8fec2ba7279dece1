"""GET /api/billing/usage/stats/ and the usage_stats selector: figures from the daily rollups only."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from credits.models import CreditAccount, ModelPrice, UsageEvent, UsageRollup
from credits.selectors import usage_stats
from credits.services import UsageInput, credits_grant, usage_record
from tests.api_helpers import assert_money, assert_utc, error_of, invalid_field, iso_z
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

STATS_URL = "/api/billing/usage/stats/"
FIGURES = {
    "total_requests",
    "successful_requests",
    "failed_requests",
    "credits_consumed",
    "input_tokens",
    "output_tokens",
    "requests_by_endpoint",
}
STATS_FIELDS = FIGURES | {"user_id", "account_id", "period", "period_start", "period_end", "buckets"}
BUCKET_FIELDS = FIGURES | {"period_start", "period_end"}


def rollup(
    account,
    day: date,
    endpoint: str = "/v1/chat",
    ok: int = 1,
    failed: int = 0,
    credits: str = "0",
    tokens_in: int = 0,
    tokens_out: int = 0,
) -> UsageRollup:  # noqa: ANN001
    """A day's rollup written straight to the database, as the usage service would have kept it."""
    account_id = account.pk if isinstance(account, CreditAccount) else account.account.pk
    return UsageRollup.objects.create(
        account_id=account_id,
        day=day,
        endpoint=endpoint,
        total_requests=ok + failed,
        successful_requests=ok,
        failed_requests=failed,
        credits_consumed=Decimal(credits),
        input_tokens=tokens_in,
        output_tokens=tokens_out,
    )


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def stats(client, **params):  # noqa: ANN001, ANN003, ANN201
    response = client.get(STATS_URL, params)
    assert response.status_code == 200, response.content[:500]
    return response.json()


def today() -> date:
    return timezone.now().astimezone(UTC).date()


# --- the figures -----------------------------------------------------------------------------------------


def test_default_is_this_month_so_far_in_one_monthly_bucket(member):
    day = today()
    first = day.replace(day=1)
    rollup(member, day, "/v1/chat", ok=3, failed=1, credits="1.250000", tokens_in=300, tokens_out=900)
    rollup(member, day, "/v1/embed", ok=2, credits="0.000002", tokens_in=50)
    rollup(member, first, "/v1/chat", ok=1, credits="0.5")
    rollup(member, first - timedelta(days=1), "/v1/chat", ok=100, credits="99")  # last month: not counted
    before = timezone.now()
    body = stats(client_for(member))
    after = timezone.now()
    assert set(body) == STATS_FIELDS
    assert body["user_id"] == member.user.pk
    assert body["account_id"] == str(member.account.pk)
    assert body["period"] == "monthly"
    assert (body["total_requests"], body["successful_requests"], body["failed_requests"]) == (7, 6, 1)
    assert body["credits_consumed"] == "1.750002"
    assert (body["input_tokens"], body["output_tokens"]) == (350, 900)
    assert body["requests_by_endpoint"] == {"/v1/chat": 5, "/v1/embed": 2}
    assert list(body["requests_by_endpoint"]) == ["/v1/chat", "/v1/embed"]  # busiest first
    assert assert_utc(body["period_start"]) == midnight(first)
    assert before <= assert_utc(body["period_end"]) <= after
    (bucket,) = body["buckets"]
    assert set(bucket) == BUCKET_FIELDS
    assert assert_utc(bucket["period_start"]) == midnight(first)
    next_month = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    assert assert_utc(bucket["period_end"]) == midnight(next_month)
    assert {k: bucket[k] for k in FIGURES} == {k: body[k] for k in FIGURES}


def test_daily_buckets_cover_every_day_with_zeros(member):
    rollup(member, date(2025, 3, 2), "/a", ok=2, credits="0.10")
    rollup(member, date(2025, 3, 2), "/b", ok=0, failed=1)
    rollup(member, date(2025, 3, 4), "/a", ok=1, credits="0.05")
    rollup(member, date(2025, 3, 5), "/a", ok=50, credits="5")  # after the range
    rollup(member, date(2025, 2, 28), "/a", ok=50, credits="5")  # before it
    body = stats(client_for(member), period="daily", **{"from": "2025-03-01", "to": "2025-03-04"})
    assert body["period"] == "daily"
    assert [b["period_start"] for b in body["buckets"]] == [
        "2025-03-01T00:00:00Z",
        "2025-03-02T00:00:00Z",
        "2025-03-03T00:00:00Z",
        "2025-03-04T00:00:00Z",
    ]
    assert [b["period_end"] for b in body["buckets"]] == [
        "2025-03-02T00:00:00Z",
        "2025-03-03T00:00:00Z",
        "2025-03-04T00:00:00Z",
        "2025-03-05T00:00:00Z",
    ]
    assert [b["total_requests"] for b in body["buckets"]] == [0, 3, 0, 1]
    assert [b["failed_requests"] for b in body["buckets"]] == [0, 1, 0, 0]
    assert [b["credits_consumed"] for b in body["buckets"]] == ["0.00", "0.10", "0.00", "0.05"]
    assert [b["requests_by_endpoint"] for b in body["buckets"]] == [{}, {"/a": 2, "/b": 1}, {}, {"/a": 1}]
    assert (body["total_requests"], body["credits_consumed"]) == (4, "0.15")
    assert body["requests_by_endpoint"] == {"/a": 3, "/b": 1}
    assert body["period_start"] == "2025-03-01T00:00:00Z"
    assert body["period_end"] == "2025-03-04T00:00:00Z"
    for bucket in body["buckets"]:
        assert_money(bucket["credits_consumed"])


def test_monthly_buckets_have_natural_bounds_and_cross_the_year(member):
    rollup(member, date(2024, 11, 20), ok=1)  # before the range
    rollup(member, date(2024, 11, 30), ok=2)
    rollup(member, date(2024, 12, 31), ok=3)
    rollup(member, date(2025, 1, 1), ok=4)
    rollup(member, date(2025, 2, 10), ok=5)
    rollup(member, date(2025, 2, 11), ok=6)  # after the range
    body = stats(client_for(member), period="monthly", **{"from": "2024-11-30", "to": "2025-02-10"})
    assert [(b["period_start"], b["period_end"], b["total_requests"]) for b in body["buckets"]] == [
        ("2024-11-01T00:00:00Z", "2024-12-01T00:00:00Z", 2),
        ("2024-12-01T00:00:00Z", "2025-01-01T00:00:00Z", 3),
        ("2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z", 4),
        ("2025-02-01T00:00:00Z", "2025-03-01T00:00:00Z", 5),
    ]
    assert body["total_requests"] == 14


def test_yearly_buckets(member):
    rollup(member, date(2023, 6, 1), ok=1, credits="1")
    rollup(member, date(2024, 2, 29), ok=2, credits="2", tokens_in=7, tokens_out=9)
    rollup(member, date(2024, 12, 31), "/b", ok=3, credits="3")
    body = stats(client_for(member), period="yearly", **{"from": "2022-01-01", "to": "2024-12-31"})
    assert [(b["period_start"], b["total_requests"], b["credits_consumed"]) for b in body["buckets"]] == [
        ("2022-01-01T00:00:00Z", 0, "0.00"),
        ("2023-01-01T00:00:00Z", 1, "1.00"),
        ("2024-01-01T00:00:00Z", 5, "5.00"),
    ]
    assert body["buckets"][2]["period_end"] == "2025-01-01T00:00:00Z"
    assert body["buckets"][2]["requests_by_endpoint"] == {"/b": 3, "/v1/chat": 2}
    assert (body["input_tokens"], body["output_tokens"]) == (7, 9)


def test_times_count_whole_utc_days_and_are_echoed(member):
    rollup(member, date(2025, 3, 1), ok=1)
    rollup(member, date(2025, 3, 2), ok=2)
    rollup(member, date(2025, 3, 3), ok=4)
    client = client_for(member)
    # 23:59 on the 1st to 00:01 on the 3rd: all of the 1st, 2nd and 3rd
    body = stats(client, period="daily", **{"from": "2025-03-01T23:59:00Z", "to": "2025-03-03T00:01:00Z"})
    assert body["total_requests"] == 7
    assert (body["period_start"], body["period_end"]) == ("2025-03-01T23:59:00Z", "2025-03-03T00:01:00Z")
    assert len(body["buckets"]) == 3
    # offsets are converted first: 01:00 at +02:00 on the 2nd is 23:00 UTC on the 1st
    body = stats(client, period="daily", **{"from": "2025-03-02T01:00:00+02:00", "to": "2025-03-02T10:00:00"})
    assert body["total_requests"] == 3
    assert (body["period_start"], body["period_end"]) == ("2025-03-01T23:00:00Z", "2025-03-02T10:00:00Z")
    # one day
    assert stats(client, **{"from": "2025-03-02", "to": "2025-03-02"})["total_requests"] == 2


@pytest.mark.parametrize(
    "value",
    [
        "2025-03-02",
        "2025-03-02T12:00:00Z",
        "2025-03-02T12:00:00.123456+00:00",
        "2025-03-02T12:00",
        "20250302",
        "2025-03-02T12:00:00-03:00",
    ],
)
def test_iso_8601_forms_are_accepted(member, value):
    rollup(member, date(2025, 3, 2), ok=2)
    body = stats(client_for(member), **{"from": value, "to": "2025-03-31"})
    assert body["total_requests"] == 2


def test_to_alone_defaults_from_to_the_start_of_its_month(member):
    rollup(member, date(2025, 1, 31), ok=1)
    rollup(member, date(2025, 2, 1), ok=2)
    rollup(member, date(2025, 2, 14), ok=4)
    rollup(member, date(2025, 2, 15), ok=8)
    body = stats(client_for(member), to="2025-02-14T08:00:00Z")
    assert body["period_start"] == "2025-02-01T00:00:00Z"
    assert body["total_requests"] == 6


def test_from_alone_runs_to_now(member):
    rollup(member, today(), ok=3)
    rollup(member, today() - timedelta(days=40), ok=5)
    rollup(member, today() - timedelta(days=41), ok=100)
    body = stats(
        client_for(member), period="daily", **{"from": iso_z(midnight(today() - timedelta(days=40)))}
    )
    assert body["total_requests"] == 8
    assert len(body["buckets"]) == 41
    assert abs(assert_utc(body["period_end"]) - timezone.now()) < timedelta(minutes=1)


def test_only_the_callers_account_is_counted(member, other_member, platform):
    rollup(member, date(2025, 3, 1), ok=1)
    rollup(other_member, date(2025, 3, 1), ok=10)
    platform_account = CreditAccount.objects.get(platform=platform, user__isnull=True)
    rollup(platform_account, date(2025, 3, 1), ok=100)
    params = {"from": "2025-03-01", "to": "2025-03-01"}
    assert stats(client_for(member), **params)["total_requests"] == 1
    assert stats(client_for(other_member), **params)["total_requests"] == 10


def test_empty_values_count_as_absent(member):
    """As with every query string here (DRF, django-filter): `from=` is no `from`."""
    rollup(member, today(), ok=2)
    body = stats(client_for(member), period="", **{"from": "", "to": ""})
    assert body["period"] == "monthly"
    assert body["total_requests"] == 2
    assert body["period_start"] == iso_z(midnight(today().replace(day=1)))


def test_no_usage_is_all_zeros(member):
    body = stats(client_for(member), period="daily", **{"from": "2025-01-01", "to": "2025-01-02"})
    assert (body["total_requests"], body["successful_requests"], body["failed_requests"]) == (0, 0, 0)
    assert body["credits_consumed"] == "0.00"
    assert body["requests_by_endpoint"] == {}
    assert [b["total_requests"] for b in body["buckets"]] == [0, 0]


def test_the_bucket_limit(member):
    client = client_for(member)
    assert len(stats(client, period="daily", **{"from": "2024-01-01", "to": "2024-12-31"})["buckets"]) == 366
    error = invalid_field(
        client.get(STATS_URL, {"period": "daily", "from": "2024-01-01", "to": "2025-01-01"}), "to"
    )
    assert "367" in error["details"]["to"][0]
    assert (
        len(stats(client, period="monthly", **{"from": "2000-01-01", "to": "2030-06-30"})["buckets"]) == 366
    )
    invalid_field(
        client.get(STATS_URL, {"period": "monthly", "from": "2000-01-01", "to": "2030-07-01"}), "to"
    )
    assert len(stats(client, period="yearly", **{"from": "1900-01-01", "to": "2265-12-31"})["buckets"]) == 366
    invalid_field(client.get(STATS_URL, {"period": "yearly", "from": "1900-01-01", "to": "2266-01-01"}), "to")
    # without a period the default (monthly) applies
    invalid_field(client.get(STATS_URL, {"from": "1900-01-01", "to": "2266-01-01"}), "to")


def test_cost_does_not_grow_with_events_or_days(member, django_assert_max_num_queries):
    """One query on the rollups, however many there are (plus auth, tenancy and the account)."""
    client = client_for(member)
    start = date(2024, 1, 1)
    UsageRollup.objects.bulk_create(
        UsageRollup(
            account=member.account,
            day=start + timedelta(days=i),
            endpoint=f"/e{i % 3}",
            total_requests=10,
            successful_requests=10,
            credits_consumed=Decimal("0.01"),
        )
        for i in range(366 * 3)
    )
    with django_assert_max_num_queries(5):
        small = stats(client, period="daily", **{"from": "2024-01-01", "to": "2024-01-02"})
    with django_assert_max_num_queries(5):
        big = stats(client, period="yearly", **{"from": "2024-01-01", "to": "2027-12-31"})
    assert small["total_requests"] == 20
    assert big["total_requests"] == 366 * 3 * 10
    assert big["credits_consumed"] == "10.98"
    assert big["requests_by_endpoint"] == {"/e0": 3660, "/e1": 3660, "/e2": 3660}


def test_raw_events_are_not_read(member):
    """Statistics come from the rollups: an event without a rollup (impossible through the service) is not
    counted, a rollup without events is."""
    UsageEvent.objects.create(
        account=member.account,
        platform=member.platform,
        request_id="orphan",
        endpoint="/x",
        cost=Decimal(0),
        priced_by="amount",
        request_hash="h",
        occurred_at=midnight(date(2025, 3, 1)),
        recorded_at=midnight(date(2025, 3, 1)),
    )
    rollup(member, date(2025, 3, 1), "/y", ok=2)
    body = stats(client_for(member), **{"from": "2025-03-01", "to": "2025-03-01"})
    assert body["requests_by_endpoint"] == {"/y": 2}


def test_selector_directly(member):
    rollup(member, date(2025, 5, 31), "/a", ok=1, credits="0.1")
    rollup(member, date(2025, 6, 1), "/a", ok=1, credits="0.2")
    result = usage_stats(
        account=member.account, period="monthly", start=date(2025, 5, 15), end=date(2025, 6, 1)
    )
    assert (result.first_day, result.last_day) == (date(2025, 5, 15), date(2025, 6, 1))
    assert [b.credits_consumed for b in result.buckets] == [Decimal("0.1"), Decimal("0.2")]
    assert result.credits_consumed == Decimal("0.3")
    with pytest.raises(ValueError):
        usage_stats(account=member.account, period="weekly", start=date(2025, 1, 1), end=date(2025, 1, 2))
    with pytest.raises(ValueError):
        usage_stats(account=member.account, period="daily", start=date(2025, 1, 2), end=date(2025, 1, 1))


# --- who may see what -------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owners_and_admins_name_any_account_of_their_platform(request, role, member, platform):
    caller = request.getfixturevalue(role)
    rollup(member, date(2025, 3, 1), ok=4)
    body = stats(
        client_for(caller), account_id=str(member.account.pk), **{"from": "2025-03-01", "to": "2025-03-01"}
    )
    assert body["user_id"] == member.user.pk
    assert body["account_id"] == str(member.account.pk)
    assert body["total_requests"] == 4
    platform_account = CreditAccount.objects.get(platform=platform, user__isnull=True)
    rollup(platform_account, date(2025, 3, 1), ok=9)
    body = stats(
        client_for(caller), account_id=str(platform_account.pk), **{"from": "2025-03-01", "to": "2025-03-01"}
    )
    assert body["user_id"] is None
    assert body["total_requests"] == 9
    # without account_id, their own
    assert stats(client_for(caller), **{"from": "2025-03-01", "to": "2025-03-01"})["total_requests"] == 0


def test_members_cannot_name_an_account_not_even_their_own(member, other_member):
    client = client_for(member)
    error_of(client.get(STATS_URL, {"account_id": str(other_member.account.pk)}), 403, "admin_required")
    error_of(client.get(STATS_URL, {"account_id": str(member.account.pk)}), 403, "admin_required")


def test_accounts_of_other_platforms_and_unknown_ids_are_404(admin, outsider):
    client = client_for(admin)
    error = error_of(
        client.get(STATS_URL, {"account_id": str(outsider.account.pk)}), 404, "account_not_found"
    )
    assert error["details"] == {"account_id": str(outsider.account.pk)}
    error_of(
        client.get(STATS_URL, {"account_id": "00000000-0000-0000-0000-000000000000"}),
        404,
        "account_not_found",
    )
    # nor can the outsider reach in with the header
    error_of(
        client_for(outsider, platform_key="acme").get(STATS_URL, {"account_id": str(admin.account.pk)}),
        403,
        "not_a_member",
    )


def test_anonymous_and_bad_tokens_are_401():
    error_of(APIClient().get(STATS_URL), 401, "not_authenticated")
    error_of(client_for(token="nope").get(STATS_URL), 401, "authentication_failed")


def test_only_get(member):
    for method in ("post", "put", "patch", "delete"):
        error_of(getattr(client_for(member), method)(STATS_URL, {}, format="json"), 405)


BAD_QUERIES = [
    ("period", {"period": "weekly"}),
    ("period", {"period": "Monthly"}),
    ("from", {"from": "yesterday"}),
    ("from", {"from": "2025-02-30"}),
    ("from", {"from": "2025-13-01"}),
    ("from", {"from": "2025-01-01T25:00:00Z"}),
    ("from", {"from": "2025-01-01T10:00:00+25:00"}),
    ("from", {"from": " 2025-01-01"}),
    ("from", {"from": "1735689600"}),
    ("from", {"from": "9999-01-01"}),
    ("from", {"from": "0001-01-01T00:00:00+01:00"}),
    ("to", {"to": "01/02/2025"}),
    ("to", {"to": "2025-01-01T00:00:00ZZ"}),
    ("to", {"from": "2025-03-02", "to": "2025-03-01"}),
    ("to", {"from": "2025-03-01T12:00:00Z", "to": "2025-03-01T11:59:59Z"}),
    ("to", {"from": "2999-01-01"}),  # after now, with to defaulting to now
    ("account_id", {"account_id": "nope"}),
    ("account_id", {"account_id": "123"}),
]


@pytest.mark.parametrize(
    ("field", "params"), BAD_QUERIES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_QUERIES)]
)
def test_bad_queries_are_400_naming_the_field(admin, field, params):
    invalid_field(client_for(admin).get(STATS_URL, params), field)


# --- through the usage service ------------------------------------------------------------------------------


def test_recorded_usage_shows_up_in_the_stats(member, platform):
    credits_grant(account_id=member.account.id, amount=Decimal("10"))
    ModelPrice.objects.create(
        platform=platform,
        model="gpt-4o",
        input_per_million=Decimal("2.5"),
        output_per_million=Decimal("10"),
        effective_from=midnight(date(2024, 1, 1)),
    )
    day1_late = datetime(2025, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)
    day2_early = datetime(2025, 3, 2, 0, 0, 0, tzinfo=UTC)

    def record(request_id, **kwargs):  # noqa: ANN001, ANN003, ANN202
        defaults = {"endpoint": "/v1/chat", "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 1000}
        return usage_record(
            platform=platform,
            usage=UsageInput(account_id=member.account.id, request_id=request_id, **{**defaults, **kwargs}),
        )

    record("a", occurred_at=day1_late)  # 0.0125
    record("b", occurred_at=day2_early, endpoint="/v1/embed", model="", amount=Decimal("0.5"))
    record("c", occurred_at=day2_early, success=False)
    record("a", occurred_at=day1_late)  # a replay: counted once
    costs = sum(UsageEvent.objects.filter(account=member.account).values_list("cost", flat=True))
    body = stats(client_for(member), period="daily", **{"from": "2025-03-01", "to": "2025-03-02"})
    assert (body["total_requests"], body["successful_requests"], body["failed_requests"]) == (3, 2, 1)
    assert body["credits_consumed"] == "0.5125" == f"{costs:.4f}"
    assert body["requests_by_endpoint"] == {"/v1/chat": 2, "/v1/embed": 1}
    assert (body["input_tokens"], body["output_tokens"]) == (3000, 3000)
    assert [(b["total_requests"], b["credits_consumed"]) for b in body["buckets"]] == [
        (1, "0.0125"),
        (2, "0.50"),
    ]
    assert body["buckets"][1]["requests_by_endpoint"] == {"/v1/chat": 1, "/v1/embed": 1}


def test_recorded_usage_now_is_in_the_default_view(member, platform):
    usage_record(
        platform=platform,
        usage=UsageInput(
            account_id=member.account.id,
            request_id="now-1",
            endpoint="/v1/chat",
            amount=Decimal("1.5"),
        ),
    )
    usage_record(
        platform=platform,
        usage=UsageInput(
            account_id=member.account.id,
            request_id="now-2",
            endpoint="/v1/chat",
            amount=Decimal("0.25"),
        ),
    )
    body = stats(client_for(member))
    assert body["total_requests"] == 2
    assert body["credits_consumed"] == "1.75"
    assert (
        stats(client_for(member), period="daily", **{"from": today().isoformat()})["buckets"][-1][
            "total_requests"
        ]
        == 2
    )


# --- schema -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict:
    return Client().get("/api/schema/?format=json").json()


def test_schema_documents_the_stats(schema, member, admin):
    from tests.test_service_endpoints import _check, _is_error_envelope

    op = schema["paths"][STATS_URL]["get"]
    assert op["operationId"] == "billing_usage_stats_retrieve"
    assert op["summary"] and "rollups" in op["description"]
    params = {p["name"]: p for p in op["parameters"] if p["in"] == "query"}
    assert set(params) == {"period", "from", "to", "account_id"}
    assert params["period"]["schema"]["enum"] == ["daily", "monthly", "yearly"]
    assert params["account_id"]["schema"]["format"] == "uuid"
    for code in ("400", "401", "403", "404"):
        assert _is_error_envelope(schema, op["responses"][code])
    rollup(member, today(), ok=1, credits="0.5")
    _check(schema, STATS_URL, "get", client_for(member).get(STATS_URL))
    _check(
        schema,
        STATS_URL,
        "get",
        client_for(admin).get(STATS_URL, {"account_id": str(member.account.pk), "period": "daily"}),
    )
    _check(schema, STATS_URL, "get", client_for(member).get(STATS_URL, {"period": "hourly"}))
    _check(schema, STATS_URL, "get", client_for(member).get(STATS_URL, {"account_id": str(admin.account.pk)}))
    _check(
        schema,
        STATS_URL,
        "get",
        client_for(admin).get(STATS_URL, {"account_id": "00000000-0000-0000-0000-000000000000"}),
    )
    _check(schema, STATS_URL, "get", APIClient().get(STATS_URL))
