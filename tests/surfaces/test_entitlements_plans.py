"""entitlements-plans-api.txt served by the native views (``payments/surfaces/entitlements_plans.py``): every
documented request and response field with its type, the same values as the native API on the same data, bad
input refused with the field named and nothing written, who may call it, and the same SQL as the native
endpoint."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Role
from accounts.services import operator_ensure
from entitlements.models import AIPlan, AIPlanModel, SeatSubscription, Tier
from entitlements.services import seat_assign, seats_grant
from entitlements.sync import seat_subscription_sync
from tests.api_helpers import assert_utc, error_of, invalid_field, post_json
from tests.conftest import Member, client_for, make_member
from tests.entitlements.conftest import make_ai_plan
from tests.entitlements.test_api import catalogue_state, charge
from tests.payments import test_seats_support
from tests.payments.test_seats_support import seats_metadata
from tests.test_service_endpoints import _check

pytestmark = pytest.mark.django_db

ENTITLEMENTS = "/api/ai-entitlements"
REFRESH = "/api/ai-entitlements/_refresh"
PLANS = "/api/ai-plans"
SUBSCRIPTIONS = "/api/ai-subscriptions"

NATIVE_ENTITLEMENTS = "/api/billing/entitlements/"
NATIVE_REFRESH = "/api/billing/entitlements/refresh/"
NATIVE_PLANS = "/api/billing/ai-plans/"
NATIVE_SUBSCRIPTIONS = "/api/billing/ai-subscriptions/"
NATIVE_PAGE = {"offset": "0", "limit": "100"}  # what the surface asks of the native listings by default

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PRICE = "price_seats_advanced"

stripe_seats = test_seats_support.stripe_seats  # the fixture: a local fake of Stripe's subscriptions

ENTITLEMENT_FIELDS = {"plans", "totalSeats", "assignedSeats", "weeklyUsage", "monthlyUsage", "lastRefresh"}
ENTITLED_PLAN_FIELDS = {"id", "name", "slug", "tier", "weeklyBudget", "sessionBudget", "purchasable", "seats"}
SEAT_FIELDS = {"total", "assigned", "unassigned"}
PLAN_FIELDS = {"id", "name", "slug", "tier", "icon", "weeklyBudget", "sessionBudget", "purchasable", "billingCycle",
               "pricePerSeat", "currency"}
ASSIGNMENT_FIELDS = {"username", "displayName", "assignedAt", "assignedBy", "weeklyCostUsed", "sessionCostUsed"}
MODEL_FIELDS = {"id", "name", "tier"}
SUBSCRIPTION_FIELDS = {"id", "tenantId", "planSlug", "billingCycle", "status", "quantity", "startDate", "endDate",
                       "nextBillingDate", "pricePerSeat", "totalAmount", "currency"}
REFRESH_FIELDS = {"refreshed", "plansUpdated", "seatsUpdated", "timestamp"}

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# --- types -----------------------------------------------------------------------------------------------------


def read(response) -> Any:  # noqa: ANN001
    """The JSON body with numbers as they were written: an integer as int, any other number as an exact
    Decimal."""
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    return json.loads(response.content, parse_float=D)


def ok(response) -> Any:  # noqa: ANN001
    assert response.status_code == 200, (response.status_code, response.content[:500])
    return read(response)


def is_string(value: Any) -> bool:
    return isinstance(value, str)


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, D)) and not isinstance(value, bool)


def is_id(value: Any) -> bool:
    return isinstance(value, str) and bool(UUID_RE.match(value))


def is_date(value: Any) -> bool:
    assert_utc(value)  # ISO 8601, UTC
    return True


def same_number(surface: Any, native: str) -> bool:
    return is_number(surface) and D(surface) == D(native)


# --- the data --------------------------------------------------------------------------------------------------


@dataclass
class World:
    everyday: AIPlan
    advanced: AIPlan
    strategic: AIPlan
    globex_only: AIPlan
    acme_subscriptions: list[SeatSubscription]
    globex_subscriptions: list[SeatSubscription]


def stripe_seats_of(platform, plan, subscription_id: str, **state: Any) -> SeatSubscription:  # noqa: ANN001
    values = {"quantity": 1, "status": "active", "billing_cycle": plan.billing_cycle, "started_at": T0,
              "ends_at": None, "next_billing_at": None} | state
    return seat_subscription_sync(platform=platform, ai_plan=plan, provider="stripe",
                                  provider_subscription_id=subscription_id, provider_customer_id="cus_seats",
                                  **values)[0]


@pytest.fixture
def world(platform, other_platform, owner, member, other_member, outsider) -> World:  # noqa: ANN001
    """Acme's AI plans (everyday, advanced, strategic yearly) with seats, assignments, spending, models and seat
    subscriptions in every state; Globex's own plan, seats and assignment."""
    everyday = make_ai_plan("everyday", Tier.EVERYDAY, name="Everyday AI", icon="star", weekly_budget=D("0.50"),
                            session_budget=D("0.10"), price_per_seat_cents=1000)
    advanced = make_ai_plan("advanced", Tier.ADVANCED, name="Advanced AI", icon="sparkles", stripe_price_id=PRICE)
    strategic = make_ai_plan("strategic", Tier.STRATEGIC, name="Strategic AI", billing_cycle="yearly",
                             weekly_budget=D("10.000001"), session_budget=D("2.5"), price_per_seat_cents=9999)
    globex_only = make_ai_plan("globex-only", Tier.STRATEGIC, name="Globex AI")
    globex_only.platforms.add(other_platform)
    make_ai_plan("retired", is_active=False)
    AIPlanModel.objects.create(plan=advanced, model="claude-3-5-sonnet", display_name="Claude 3.5 Sonnet",
                               tier=Tier.ADVANCED)
    AIPlanModel.objects.create(plan=advanced, model="gpt-4o-mini", tier=Tier.EVERYDAY)

    acme = [
        seats_grant(platform=platform, ai_plan=everyday, quantity=5)[0],
        stripe_seats_of(platform, advanced, "sub_adv", quantity=3, next_billing_at=T0 + timedelta(days=31)),
        seats_grant(platform=platform, ai_plan=strategic, quantity=2)[0],
        stripe_seats_of(platform, strategic, "sub_str_old", quantity=2, status="canceled",
                        started_at=T0 - timedelta(days=400), ends_at=T0 - timedelta(days=35)),
        stripe_seats_of(platform, advanced, "sub_adv_old", status="expired", started_at=T0 - timedelta(days=100),
                        ends_at=T0 - timedelta(days=60)),
        stripe_seats_of(platform, everyday, "sub_ev", status="past_due", next_billing_at=T0 + timedelta(days=3)),
    ]
    member.user.first_name, member.user.last_name = "Mia", "Wong"
    member.user.save()
    seat_assign(platform=platform, ai_plan=advanced, username=member.user.username, actor=owner.user)
    seat_assign(platform=platform, ai_plan=everyday, username=other_member.user.username, actor=None)
    now = timezone.now()
    charge(platform, member.user, advanced, "0.125", now)
    charge(platform, member.user, advanced, "0.0000004", now, window_start=now - timedelta(hours=7))

    globex = [seats_grant(platform=other_platform, ai_plan=advanced, quantity=9)[0],
              seats_grant(platform=other_platform, ai_plan=globex_only, quantity=4)[0]]
    seat_assign(platform=other_platform, ai_plan=advanced, username=outsider.user.username, actor=None)
    return World(everyday, advanced, strategic, globex_only, acme, globex)


@pytest.fixture
def operator_key(db) -> str:  # noqa: ANN001
    _user, token = operator_ensure(username="root")
    return token.key


def state() -> tuple:
    """Everything these endpoints could write."""
    return catalogue_state(), list(SeatSubscription.objects.order_by("id").values())


def get(who: Member, url: str, query: dict[str, Any] | None = None):  # noqa: ANN201
    return client_for(who).get(url, query or {})


# --- GET /api/ai-entitlements ------------------------------------------------------------------------------------


def test_entitlements_have_every_documented_field_with_its_type(world, owner):
    body = ok(get(owner, ENTITLEMENTS))

    assert set(body) == ENTITLEMENT_FIELDS
    assert isinstance(body["plans"], list) and is_integer(body["totalSeats"]) and is_integer(body["assignedSeats"])
    assert is_number(body["weeklyUsage"]) and is_number(body["monthlyUsage"]) and is_date(body["lastRefresh"])
    assert [p["slug"] for p in body["plans"]] == ["advanced", "everyday", "strategic"]
    for plan in body["plans"]:
        assert set(plan) == ENTITLED_PLAN_FIELDS
        assert is_id(plan["id"]) and all(is_string(plan[k]) for k in ("name", "slug", "tier"))
        assert is_number(plan["weeklyBudget"]) and is_number(plan["sessionBudget"])
        assert plan["purchasable"] is True
        assert set(plan["seats"]) == SEAT_FIELDS and all(is_integer(v) for v in plan["seats"].values())
    advanced, everyday, strategic = body["plans"]
    assert advanced | {"weeklyBudget": None, "sessionBudget": None} == {
        "id": str(world.advanced.pk), "name": "Advanced AI", "slug": "advanced", "tier": "advanced",
        "weeklyBudget": None, "sessionBudget": None, "purchasable": True,
        "seats": {"total": 3, "assigned": 1, "unassigned": 2}}
    assert (advanced["weeklyBudget"], advanced["sessionBudget"]) == (2, D("0.4"))
    assert everyday["seats"] == {"total": 6, "assigned": 1, "unassigned": 5}  # 5 manual + 1 past due
    assert (everyday["weeklyBudget"], everyday["sessionBudget"]) == (D("0.5"), D("0.1"))
    assert strategic["seats"] == {"total": 2, "assigned": 0, "unassigned": 2}
    assert strategic["weeklyBudget"] == D("10.000001")  # exact
    assert (body["totalSeats"], body["assignedSeats"]) == (11, 2)
    assert body["weeklyUsage"] == body["monthlyUsage"] == D("0.1250004")


def test_entitlements_agree_with_the_native_api(world, admin):
    surface, native = ok(get(admin, ENTITLEMENTS)), ok(get(admin, NATIVE_ENTITLEMENTS))

    assert len(surface["plans"]) == len(native["plans"])
    for ours, theirs in zip(surface["plans"], native["plans"], strict=True):
        assert {k: ours[k] for k in ("id", "name", "slug", "tier", "purchasable")} == {
            k: theirs[k] for k in ("id", "name", "slug", "tier", "purchasable")}
        assert same_number(ours["weeklyBudget"], theirs["weekly_budget"])
        assert same_number(ours["sessionBudget"], theirs["session_budget"])
        assert ours["seats"] == {k: theirs["seats"][k] for k in SEAT_FIELDS}
    assert (surface["totalSeats"], surface["assignedSeats"]) == (native["total_seats"], native["assigned_seats"])
    assert same_number(surface["weeklyUsage"], native["weekly_usage"])
    assert same_number(surface["monthlyUsage"], native["monthly_usage"])
    assert surface["lastRefresh"] == native["last_refresh"]


def test_entitlements_of_a_platform_without_plans_or_seats(owner):
    assert ok(get(owner, ENTITLEMENTS)) == {"plans": [], "totalSeats": 0, "assignedSeats": 0, "weeklyUsage": 0,
                                            "monthlyUsage": 0, "lastRefresh": None}


# --- POST /api/ai-entitlements/_refresh ------------------------------------------------------------------------


def test_the_refresh_of_a_platform_without_stripe_seats_answers_without_stripe(settings, platform, admin):
    settings.STRIPE_SECRET_KEY = ""  # not even configured: nothing to read
    seats_grant(platform=platform, ai_plan=make_ai_plan(), quantity=2)
    before = state()

    response = client_for(admin).post(REFRESH)  # no body, as the document sends it

    body = ok(response)
    assert set(body) == REFRESH_FIELDS
    assert body["refreshed"] is True and (body["plansUpdated"], body["seatsUpdated"]) == (0, 0)
    assert is_integer(body["plansUpdated"]) and is_integer(body["seatsUpdated"]) and is_date(body["timestamp"])
    assert ok(post_json(client_for(admin), REFRESH, {}))["refreshed"] is True  # an empty JSON object too
    assert state() == before


def test_the_refresh_reads_stripe_and_counts_as_the_native_one(stripe_seats, platform, admin):
    plan = make_ai_plan(stripe_price_id=PRICE)
    stripe_seats_of(platform, plan, "sub_seats_1", quantity=3, as_of=T0)
    stripe_seats.subscription("sub_seats_1", quantity=6, price_id=PRICE, metadata=seats_metadata(platform, plan))

    body = ok(post_json(client_for(admin), REFRESH, {}))

    assert (body["refreshed"], body["plansUpdated"], body["seatsUpdated"]) == (True, 1, 1)
    assert SeatSubscription.objects.get().quantity == 6
    again, native = ok(client_for(admin).post(REFRESH)), ok(post_json(client_for(admin), NATIVE_REFRESH, {}))
    assert (again["plansUpdated"], again["seatsUpdated"]) == (native["plans_updated"], native["seats_updated"]) == (
        0, 0)


def test_the_refresh_refuses_a_body_field_or_a_query_parameter_before_stripe(stripe_seats, platform,
                                                                            admin):
    plan = make_ai_plan(stripe_price_id=PRICE)
    stripe_seats_of(platform, plan, "sub_seats_1", quantity=3, as_of=T0)
    stripe_seats.subscription("sub_seats_1", quantity=6, price_id=PRICE, metadata=seats_metadata(platform, plan))
    before = state()

    invalid_field(post_json(client_for(admin), REFRESH, {"force": True}), "force")
    invalid_field(client_for(admin).post(f"{REFRESH}?force=true"), "force")
    error_of(client_for(admin).post(REFRESH, data="[1]", content_type="application/json"), 400)

    assert stripe_seats.requests == [] and state() == before


def test_members_and_strangers_cannot_refresh(stripe_seats, platform, member, outsider):
    plan = make_ai_plan(stripe_price_id=PRICE)
    stripe_seats_of(platform, plan, "sub_seats_1", quantity=3, as_of=T0)
    before = state()
    error_of(client_for(member).post(REFRESH), 403, "admin_required")
    error_of(client_for(outsider, platform_key="acme").post(REFRESH), 403, "not_a_member")
    error_of(APIClient().post(REFRESH), 401)
    assert stripe_seats.requests == [] and state() == before


# --- GET /api/ai-plans -------------------------------------------------------------------------------------------


def test_the_plans_are_a_hal_page_with_every_documented_field(world, owner):
    body = ok(get(owner, PLANS))

    assert set(body) == {"_links", "_embedded", "start", "count", "total"}
    assert body["_links"] == {"self": {"href": "/api/ai-plans"}}
    assert set(body["_embedded"]) == {"inf:ai-plan"}
    plans = body["_embedded"]["inf:ai-plan"]
    assert (body["start"], body["count"], body["total"]) == (0, 3, 3)
    assert all(is_integer(body[k]) for k in ("start", "count", "total"))
    assert [p["slug"] for p in plans] == ["advanced", "everyday", "strategic"]
    for plan in plans:
        assert set(plan) == PLAN_FIELDS  # no seats unless asked
        assert is_id(plan["id"]) and all(is_string(plan[k]) for k in ("name", "slug", "tier", "icon", "currency"))
        assert all(is_number(plan[k]) for k in ("weeklyBudget", "sessionBudget", "pricePerSeat"))
        assert plan["purchasable"] is True and plan["billingCycle"] in ("monthly", "annual")
    advanced, everyday, strategic = plans
    assert advanced == {
        "id": str(world.advanced.pk), "name": "Advanced AI", "slug": "advanced", "tier": "advanced",
        "icon": "sparkles", "weeklyBudget": 2, "sessionBudget": D("0.4"), "purchasable": True,
        "billingCycle": "monthly", "pricePerSeat": 25, "currency": "USD"}
    assert (everyday["icon"], everyday["tier"], everyday["pricePerSeat"]) == ("star", "everyday", 10)
    assert (strategic["billingCycle"], strategic["pricePerSeat"]) == ("annual", D("99.99"))  # our "yearly"


@pytest.mark.parametrize("value", ["true", "false", ""])
def test_include_seats_adds_the_seats_of_each_plan(world, admin, value):
    response = get(admin, PLANS, {"includeSeats": value})
    body = ok(response)
    assert body["_links"]["self"] == {"href": f"/api/ai-plans?includeSeats={value}"}
    plans = body["_embedded"]["inf:ai-plan"]
    if value != "true":  # false, or empty (not given, as natively)
        assert all(set(p) == PLAN_FIELDS for p in plans)
        return
    assert all(set(p) == PLAN_FIELDS | {"seats"} for p in plans)
    assert [p["seats"] for p in plans] == [{"total": 3, "assigned": 1, "unassigned": 2},
                                           {"total": 6, "assigned": 1, "unassigned": 5},
                                           {"total": 2, "assigned": 0, "unassigned": 2}]
    assert all(is_integer(v) for p in plans for v in p["seats"].values())


@pytest.mark.parametrize("include", [None, "true"])
def test_the_plans_agree_with_the_native_api(world, owner, include):
    query, native_query = ({}, NATIVE_PAGE) if include is None else (
        {"includeSeats": include}, NATIVE_PAGE | {"include_seats": include})
    surface, native = ok(get(owner, PLANS, query)), ok(get(owner, NATIVE_PLANS, native_query))

    assert surface["total"] == native["count"] and surface["count"] == len(native["results"])
    for ours, theirs in zip(surface["_embedded"]["inf:ai-plan"], native["results"], strict=True):
        for name in ("id", "name", "slug", "tier", "icon", "purchasable", "currency"):
            assert ours[name] == theirs[name]
        assert ours["billingCycle"] == {"monthly": "monthly", "yearly": "annual"}[theirs["billing_cycle"]]
        for name, native_name in (("weeklyBudget", "weekly_budget"), ("sessionBudget", "session_budget"),
                                  ("pricePerSeat", "price_per_seat")):
            assert same_number(ours[name], theirs[native_name])
        assert ("seats" in ours) == ("seats" in theirs)
        if "seats" in ours:
            assert ours["seats"] == {k: theirs["seats"][k] for k in SEAT_FIELDS}


def test_the_plans_page_from_start_with_limit(world, owner):
    first = ok(get(owner, PLANS, {"limit": "2"}))
    assert (first["start"], first["count"], first["total"]) == (0, 2, 3)
    assert first["_links"] == {"self": {"href": "/api/ai-plans?limit=2"},
                               "next": {"href": "/api/ai-plans?limit=2&start=2"}}
    last = ok(get(owner, PLANS, {"limit": "2", "start": "2", "includeSeats": "true"}))
    assert (last["start"], last["count"], last["total"]) == (2, 1, 3)
    assert [p["slug"] for p in last["_embedded"]["inf:ai-plan"]] == ["strategic"]
    assert "seats" in last["_embedded"]["inf:ai-plan"][0]
    assert set(last["_links"]) == {"self", "prev"} and "start" not in last["_links"]["prev"]["href"]
    middle = ok(get(owner, PLANS, {"start": "1", "limit": "1"}))
    assert [p["slug"] for p in middle["_embedded"]["inf:ai-plan"]] == ["everyday"]
    assert set(middle["_links"]) == {"self", "next", "prev"}
    past = ok(get(owner, PLANS, {"start": "10"}))
    assert (past["start"], past["count"], past["total"], past["_embedded"]["inf:ai-plan"]) == (10, 0, 3, [])


@pytest.mark.parametrize(("query", "field"), [
    ({"includeSeats": "maybe"}, "includeSeats"),
    ({"includeSeats": "True"}, "includeSeats"),
    ({"includeSeats": "1"}, "includeSeats"),
    ({"start": "-1"}, "start"),
    ({"start": "x"}, "start"),
    ({"limit": "0"}, "limit"),
    ({"limit": "101"}, "limit"),
    ({"include_seats": "true"}, "include_seats"),  # the native name is not this API's
    ({"offset": "1"}, "offset"),
    ({"page": "1"}, "page"),
    ({"format": "json"}, "format"),
    ({"planSlug": "advanced"}, "planSlug"),
])
def test_a_bad_plans_query_is_a_400_naming_the_field(world, owner, query, field):
    before = state()
    error = invalid_field(get(owner, PLANS, query), field)
    assert set(error["details"]) == {field}
    assert state() == before


def test_a_plans_parameter_given_twice_is_refused(world, owner):
    invalid_field(client_for(owner).get(f"{PLANS}?includeSeats=true&includeSeats=false"), "includeSeats")


# --- GET /api/ai-plans/{id} --------------------------------------------------------------------------------------


def test_a_plan_has_its_seats_assignments_and_models_with_every_documented_field(world, owner):
    body = ok(get(owner, f"{PLANS}/{world.advanced.pk}"))

    assert set(body) == PLAN_FIELDS | {"seats", "models"}
    assert body["id"] == str(world.advanced.pk) and body["icon"] == "sparkles"
    assert (body["weeklyBudget"], body["sessionBudget"], body["pricePerSeat"]) == (2, D("0.4"), 25)
    assert (body["billingCycle"], body["currency"], body["purchasable"]) == ("monthly", "USD", True)
    seats = body["seats"]
    assert set(seats) == SEAT_FIELDS | {"assignments"}
    assert {k: seats[k] for k in SEAT_FIELDS} == {"total": 3, "assigned": 1, "unassigned": 2}
    (mia,) = seats["assignments"]
    assert set(mia) == ASSIGNMENT_FIELDS
    assert (mia["username"], mia["displayName"], mia["assignedBy"]) == ("mia", "Mia Wong", "olivia")
    assert is_date(mia["assignedAt"])
    assert (mia["weeklyCostUsed"], mia["sessionCostUsed"]) == (D("0.1250004"), D("0.125"))
    assert body["models"] == [{"id": "claude-3-5-sonnet", "name": "Claude 3.5 Sonnet", "tier": "advanced"},
                              {"id": "gpt-4o-mini", "name": "gpt-4o-mini", "tier": "everyday"}]
    assert all(set(m) == MODEL_FIELDS and all(is_string(v) for v in m.values()) for m in body["models"])
    assert ok(get(owner, f"{PLANS}/advanced")) == body  # by slug too, as natively


def test_an_assignment_without_an_assigner_has_a_null_one(world, owner):
    (max_,) = ok(get(owner, f"{PLANS}/everyday"))["seats"]["assignments"]
    assert (max_["username"], max_["displayName"], max_["assignedBy"]) == ("max", "max", None)
    assert (max_["weeklyCostUsed"], max_["sessionCostUsed"]) == (0, 0)
    assert ok(get(owner, f"{PLANS}/strategic"))["seats"]["assignments"] == []


@pytest.mark.parametrize("ref", ["advanced", "everyday", "strategic"])
def test_a_plan_agrees_with_the_native_api(world, owner, ref):
    ours, theirs = ok(get(owner, f"{PLANS}/{ref}")), ok(get(owner, f"{NATIVE_PLANS}{ref}/"))
    for name in ("id", "name", "slug", "tier", "icon", "purchasable", "currency"):
        assert ours[name] == theirs[name]
    assert ours["billingCycle"] == {"monthly": "monthly", "yearly": "annual"}[theirs["billing_cycle"]]
    assert same_number(ours["pricePerSeat"], theirs["price_per_seat"])
    assert {k: ours["seats"][k] for k in SEAT_FIELDS} == {k: theirs["seats"][k] for k in SEAT_FIELDS}
    assert len(ours["seats"]["assignments"]) == len(theirs["seats"]["assignments"])
    for a, b in zip(ours["seats"]["assignments"], theirs["seats"]["assignments"], strict=True):
        assert (a["username"], a["displayName"], a["assignedAt"], a["assignedBy"]) == (
            b["username"], b["display_name"], b["assigned_at"], b["assigned_by"])
        assert same_number(a["weeklyCostUsed"], b["weekly_cost_used"])
        assert same_number(a["sessionCostUsed"], b["session_cost_used"])
    assert ours["models"] == theirs["models"]


@pytest.mark.parametrize("ref", ["nosuch", "00000000-0000-0000-0000-000000000000", "retired", "x" * 300])
def test_an_unknown_plan_is_a_404_naming_the_id(world, owner, ref):
    before = state()
    error = error_of(get(owner, f"{PLANS}/{ref}"), 404, "ai_plan_not_found")
    assert set(error["details"]) == {"id"} and error["details"]["id"] == ref[:100]
    assert state() == before


def test_a_plan_takes_no_query_parameter(world, owner):
    invalid_field(get(owner, f"{PLANS}/advanced", {"includeSeats": "true"}), "includeSeats")


# --- GET /api/ai-subscriptions -----------------------------------------------------------------------------------


def test_the_subscriptions_have_every_documented_field_with_its_type(world, owner):
    body = ok(get(owner, SUBSCRIPTIONS))

    assert set(body) == {"subscriptions", "start", "count", "total"}
    assert (body["start"], body["count"], body["total"]) == (0, 6, 6)
    rows = body["subscriptions"]
    assert {row["id"] for row in rows} == {str(s.pk) for s in world.acme_subscriptions}
    for row in rows:
        assert set(row) == SUBSCRIPTION_FIELDS
        assert is_id(row["id"]) and all(is_string(row[k]) for k in ("tenantId", "planSlug", "status", "currency"))
        assert row["billingCycle"] in ("monthly", "annual") and is_integer(row["quantity"])
        assert is_date(row["startDate"])
        assert row["endDate"] is None or is_date(row["endDate"])
        assert row["nextBillingDate"] is None or is_date(row["nextBillingDate"])
        assert is_number(row["pricePerSeat"]) and is_number(row["totalAmount"])
        assert row["tenantId"] == "acme"
    by_id = {row["id"]: row for row in rows}
    assert by_id[str(world.acme_subscriptions[1].pk)] == {
        "id": str(world.acme_subscriptions[1].pk), "tenantId": "acme", "planSlug": "advanced",
        "billingCycle": "monthly", "status": "active", "quantity": 3, "startDate": "2026-01-01T00:00:00Z",
        "endDate": None, "nextBillingDate": "2026-02-01T00:00:00Z", "pricePerSeat": 25, "totalAmount": 75,
        "currency": "USD"}
    canceled = by_id[str(world.acme_subscriptions[3].pk)]
    assert (canceled["billingCycle"], canceled["status"], canceled["endDate"]) == (
        "annual", "canceled", "2025-11-27T00:00:00Z")
    assert (canceled["pricePerSeat"], canceled["totalAmount"]) == (D("99.99"), D("199.98"))


def test_the_subscriptions_agree_with_the_native_api(world, admin):
    surface, native = ok(get(admin, SUBSCRIPTIONS)), ok(get(admin, NATIVE_SUBSCRIPTIONS, NATIVE_PAGE))
    assert surface["total"] == native["count"]
    for ours, theirs in zip(surface["subscriptions"], native["results"], strict=True):  # same order: newest first
        for name, native_name in (("id", "id"), ("tenantId", "tenant_id"), ("planSlug", "plan_slug"),
                                  ("status", "status"), ("quantity", "quantity"), ("startDate", "start_date"),
                                  ("endDate", "end_date"), ("nextBillingDate", "next_billing_date"),
                                  ("currency", "currency")):
            assert ours[name] == theirs[native_name]
        assert ours["billingCycle"] == {"monthly": "monthly", "yearly": "annual"}[theirs["billing_cycle"]]
        assert same_number(ours["pricePerSeat"], theirs["price_per_seat"])
        assert same_number(ours["totalAmount"], theirs["total_amount"])


def _slugs(owner: Member, **query: str) -> list[str]:
    rows = ok(get(owner, SUBSCRIPTIONS, query))["subscriptions"]
    return sorted(f"{row['planSlug']}:{row['billingCycle']}:{row['status']}" for row in rows)


def test_the_subscriptions_filter_by_plan_cycle_and_status(world, owner):
    assert _slugs(owner, planSlug="advanced") == ["advanced:monthly:active", "advanced:monthly:expired"]
    assert _slugs(owner, billingCycle="annual") == ["strategic:annual:active", "strategic:annual:canceled"]
    assert _slugs(owner, billingCycle="monthly") == [
        "advanced:monthly:active", "advanced:monthly:expired", "everyday:monthly:active",
        "everyday:monthly:past_due"]
    assert _slugs(owner, status="active") == [
        "advanced:monthly:active", "everyday:monthly:active", "strategic:annual:active"]
    assert _slugs(owner, status="canceled") == ["strategic:annual:canceled"]
    assert _slugs(owner, status="expired") == ["advanced:monthly:expired"]
    assert _slugs(owner, status="past_due") == ["everyday:monthly:past_due"]
    assert _slugs(owner, planSlug="strategic", billingCycle="annual", status="active") == [
        "strategic:annual:active"]
    assert _slugs(owner, planSlug="nope") == []
    assert len(_slugs(owner, billingCycle="", status="", planSlug="")) == 6  # empty: not given, as natively


@pytest.mark.parametrize(("query", "native_query"), [
    ({"billingCycle": "annual", "status": "active"}, {"billing_cycle": "yearly", "status": "active"}),
    ({"planSlug": "advanced"}, {"plan_slug": "advanced"}),
])
def test_the_filtered_subscriptions_are_the_native_ones(world, owner, query, native_query):
    surface = ok(get(owner, SUBSCRIPTIONS, query))
    native = ok(get(owner, NATIVE_SUBSCRIPTIONS, NATIVE_PAGE | native_query))
    assert [row["id"] for row in surface["subscriptions"]] == [row["id"] for row in native["results"]]


def test_the_subscriptions_page_from_start_with_limit(world, owner):
    every = [row["id"] for row in ok(get(owner, SUBSCRIPTIONS))["subscriptions"]]
    page = ok(get(owner, SUBSCRIPTIONS, {"start": "4", "limit": "3"}))
    assert (page["start"], page["count"], page["total"]) == (4, 2, 6)
    assert [row["id"] for row in page["subscriptions"]] == every[4:]


@pytest.mark.parametrize(("query", "field"), [
    ({"billingCycle": "weekly"}, "billingCycle"),
    ({"billingCycle": "yearly"}, "billingCycle"),  # our name, not this API's
    ({"billingCycle": "Monthly"}, "billingCycle"),
    ({"status": "bogus"}, "status"),
    ({"status": "trialing"}, "status"),
    ({"planSlug": "x" * 101}, "planSlug"),
    ({"start": "-1"}, "start"),
    ({"limit": "101"}, "limit"),
    ({"plan_slug": "advanced"}, "plan_slug"),
    ({"billing_cycle": "monthly"}, "billing_cycle"),
    ({"page_size": "2"}, "page_size"),
    ({"includeSeats": "true"}, "includeSeats"),
])
def test_a_bad_subscriptions_query_is_a_400_naming_the_field(world, owner, query, field):
    before = state()
    error = invalid_field(get(owner, SUBSCRIPTIONS, query), field)
    assert set(error["details"]) == {field}
    assert state() == before


def test_a_subscriptions_parameter_given_twice_is_refused(world, owner):
    invalid_field(client_for(owner).get(f"{SUBSCRIPTIONS}?status=active&status=canceled"), "status")


# --- who may call what -----------------------------------------------------------------------------------------

READS = [ENTITLEMENTS, PLANS, f"{PLANS}/advanced", SUBSCRIPTIONS]


@pytest.mark.parametrize("url", READS)
def test_anonymous_callers_get_the_native_401(world, url):
    for client in (APIClient(), client_for(token="not-a-token")):
        response, native = client.get(url), client.get(_native_url(url))
        error = error_of(response, 401)
        assert error == read(native)["error"]
        assert response["WWW-Authenticate"] == native["WWW-Authenticate"]


@pytest.mark.parametrize("url", READS)
def test_plain_members_get_403(world, member, url):
    error_of(get(member, url), 403, "admin_required")


@pytest.mark.parametrize("url", READS)
def test_another_platforms_admin_cannot_name_this_platform(world, outsider, url):
    error_of(client_for(outsider, platform_key="acme").get(url), 403, "not_a_member")


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN])
@pytest.mark.parametrize("url", READS)
def test_owners_and_admins_may_read(world, platform, role, url):
    ok(get(make_member(platform, f"someone-{role}", role), url))


def test_an_operator_reads_the_platform_it_names(world, operator_key):
    client = client_for(token=operator_key, platform_key="acme")
    assert ok(client.get(ENTITLEMENTS))["totalSeats"] == 11
    assert ok(client.get(SUBSCRIPTIONS))["total"] == 6
    assert "stripePriceId" not in ok(client.get(PLANS))["_embedded"]["inf:ai-plan"][0]


def test_another_platforms_plan_is_a_404(world, owner):
    error = error_of(get(owner, f"{PLANS}/{world.globex_only.pk}"), 404, "ai_plan_not_found")
    assert error["details"] == {"id": str(world.globex_only.pk)}
    error_of(get(owner, f"{PLANS}/globex-only"), 404, "ai_plan_not_found")
    assert "globex-only" not in [p["slug"] for p in ok(get(owner, PLANS))["_embedded"]["inf:ai-plan"]]


def test_another_platforms_admin_sees_none_of_this_platforms_data(world, outsider):
    acme_ids = {str(s.pk) for s in world.acme_subscriptions}
    client = client_for(outsider)

    overview = ok(client.get(ENTITLEMENTS))
    assert [(p["slug"], p["seats"]) for p in overview["plans"]] == [
        ("advanced", {"total": 9, "assigned": 1, "unassigned": 8}),
        ("everyday", {"total": 0, "assigned": 0, "unassigned": 0}),
        ("globex-only", {"total": 4, "assigned": 0, "unassigned": 4}),
        ("strategic", {"total": 0, "assigned": 0, "unassigned": 0})]
    assert (overview["totalSeats"], overview["assignedSeats"], overview["weeklyUsage"]) == (13, 1, 0)

    advanced = ok(client.get(f"{PLANS}/advanced"))
    assert [a["username"] for a in advanced["seats"]["assignments"]] == ["gina"]
    subscriptions = ok(client.get(SUBSCRIPTIONS))
    assert {row["id"] for row in subscriptions["subscriptions"]} == {str(s.pk) for s in world.globex_subscriptions}
    assert {row["tenantId"] for row in subscriptions["subscriptions"]} == {"globex"}
    for url in (ENTITLEMENTS, PLANS + "?includeSeats=true", f"{PLANS}/advanced", f"{PLANS}/everyday", SUBSCRIPTIONS):
        text = client.get(url).content.decode()
        assert "mia" not in text and "acme" not in text and not any(i in text for i in acme_ids), url


def test_only_the_documented_methods_are_taken(world, owner):
    client = client_for(owner)
    before = state()
    for url, method in ((ENTITLEMENTS, "post"), (REFRESH, "get"), (PLANS, "post"), (f"{PLANS}/advanced", "patch"),
                        (f"{PLANS}/advanced", "delete"), (SUBSCRIPTIONS, "post")):
        error_of(getattr(client, method)(url), 405)
    assert state() == before


# --- the same SQL as the native endpoint ---------------------------------------------------------------------------


def _native_url(url: str) -> str:
    if url == ENTITLEMENTS:
        return NATIVE_ENTITLEMENTS
    if url.startswith(f"{PLANS}/"):
        return f"{NATIVE_PLANS}{url.rsplit('/', 1)[1]}/"
    return {PLANS: NATIVE_PLANS, SUBSCRIPTIONS: NATIVE_SUBSCRIPTIONS}[url]


def _statements(call) -> list[str]:  # noqa: ANN001
    with CaptureQueriesContext(connection) as captured:
        response = call()
    assert response.status_code < 500
    # The moments the spending windows are read at differ between two calls: compare the statements without them.
    return [re.sub(r"'\d{4}-\d{2}-\d{2}T?[\d:.]+(\+00:00)?'", "'<moment>'", q["sql"])
            for q in captured.captured_queries]


@pytest.mark.parametrize(("url", "query", "native_query"), [
    (ENTITLEMENTS, {}, {}),
    (PLANS, {}, NATIVE_PAGE),
    (PLANS, {"includeSeats": "true", "start": "1", "limit": "2"}, {"include_seats": "true", "offset": "1",
                                                                   "limit": "2"}),
    (f"{PLANS}/advanced", {}, {}),
    (SUBSCRIPTIONS, {}, NATIVE_PAGE),
    (SUBSCRIPTIONS, {"planSlug": "advanced", "billingCycle": "annual", "status": "active"},
     NATIVE_PAGE | {"plan_slug": "advanced", "billing_cycle": "yearly", "status": "active"}),
])
@pytest.mark.parametrize("who", ["owner", "member"])
def test_the_surface_runs_the_native_endpoints_queries(request, world, url, query, native_query, who):
    client = client_for(request.getfixturevalue(who))
    surface = _statements(lambda: client.get(url, query))
    native = _statements(lambda: client.get(_native_url(url), native_query))
    assert len(surface) == len(native) and surface == native
    assert native or who == "member"  # (a member is refused before any statement through Django's connection)


def test_the_refresh_runs_the_native_refresh_queries(settings, platform, admin):
    settings.STRIPE_SECRET_KEY = ""
    seats_grant(platform=platform, ai_plan=make_ai_plan(), quantity=2)
    client = client_for(admin)
    surface = _statements(lambda: post_json(client, REFRESH, {}))
    native = _statements(lambda: post_json(client, NATIVE_REFRESH, {}))
    assert len(surface) == len(native) and surface == native


def test_a_refused_query_runs_no_query(world, owner):
    client = client_for(owner)
    assert _statements(lambda: client.get(PLANS, {"bogus": "1"})) == []
    assert _statements(lambda: client.get(SUBSCRIPTIONS, {"billingCycle": "weekly"})) == []


# --- the schema ----------------------------------------------------------------------------------------------------

OPERATIONS = {
    ("/api/ai-entitlements", "get"): ("ai_entitlements_retrieve", set()),
    ("/api/ai-entitlements/_refresh", "post"): ("ai_entitlements_refresh", set()),
    ("/api/ai-plans", "get"): ("ai_entitlements_plans_list", {"includeSeats", "start", "limit"}),
    ("/api/ai-plans/{id}", "get"): ("ai_entitlements_plans_retrieve", set()),
    ("/api/ai-subscriptions", "get"): ("ai_entitlements_subscriptions_list",
                                       {"planSlug", "billingCycle", "status", "start", "limit"}),
}


def test_the_schema_documents_each_operation_and_its_query(schema):
    for (url, method), (operation_id, query) in OPERATIONS.items():
        operation = schema["paths"][url][method]
        assert operation["operationId"] == operation_id and operation["tags"] == ["entitlements-plans-api"]
        assert {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"} == query
        assert {"200", "400", "401", "403", "404"} <= set(operation["responses"])
    documented = {(url, method) for url, item in schema["paths"].items() for method in item
                  if url.startswith("/api/ai-")}
    assert documented == set(OPERATIONS)


def test_real_responses_match_the_schema(schema, world, owner, member, settings):
    settings.STRIPE_SECRET_KEY = ""
    client = client_for(owner)
    for url, query in ((ENTITLEMENTS, {}), (PLANS, {}), (PLANS, {"includeSeats": "true", "limit": "1", "start": "1"}),
                       (f"{PLANS}/advanced", {}), (f"{PLANS}/everyday", {}), (SUBSCRIPTIONS, {}),
                       (SUBSCRIPTIONS, {"billingCycle": "weekly"}), (f"{PLANS}/nosuch", {})):
        path = "/api/ai-plans/{id}" if url.startswith(f"{PLANS}/") else url
        _check(schema, path, "get", client.get(url, query))
        _check(schema, path, "get", client_for(member).get(url, query))
        _check(schema, path, "get", APIClient().get(url, query))
    _check(schema, REFRESH, "post", APIClient().post(REFRESH))
    _check(schema, REFRESH, "post", client_for(member).post(REFRESH))
    error_of(client.post(REFRESH), 503, "payment_provider_not_configured")  # Stripe seats, and no Stripe here
    _check(schema, REFRESH, "post", client.post(REFRESH))
    _check(schema, ENTITLEMENTS, "get", client_for(token="x").get(ENTITLEMENTS))
