"""The entitlements API: /entitlements/, /entitlements/me/, /ai-plans/ (the platform's view, the operators'
catalogue writes) and seat assignments; who may call what, and bad input refused with nothing written."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from django.apps import apps
from django.urls import Resolver404, resolve
from django.utils import timezone

from accounts.models import Role
from accounts.services import operator_ensure
from credits.services import model_price_create
from entitlements import selectors
from entitlements.api.views import EntitlementsViewSet, MyEntitlementViewSet
from entitlements.models import (
    AIPlan,
    AIPlanModel,
    ChargeKind,
    SeatAssignment,
    SeatCharge,
    SeatSubscription,
    SeatWindow,
    Tier,
    WindowKind,
)
from entitlements.services import seat_assign, seats_grant
from entitlements.windows import week_bounds
from tests.api_helpers import assert_money, assert_utc, error_of, invalid_field, iso_z, post_json
from tests.conftest import client_for, make_member, make_platform
from tests.entitlements.conftest import make_ai_plan

pytestmark = pytest.mark.django_db

ENTITLEMENTS_URL = "/api/billing/entitlements/"
ME_URL = "/api/billing/entitlements/me/"
PLANS_URL = "/api/billing/ai-plans/"

LIST_FIELDS = {"id", "name", "slug", "tier", "icon", "weekly_budget", "session_budget", "overage", "purchasable",
               "billing_cycle", "price_per_seat", "price_per_seat_cents", "currency", "is_active"}
SEAT_FIELDS = {"total", "assigned", "unassigned", "over_assigned"}
ASSIGNMENT_FIELDS = {"username", "display_name", "assigned_at", "assigned_by", "weekly_cost_used",
                     "session_cost_used"}
CATALOGUE_FIELDS = LIST_FIELDS | {"stripe_price_id", "models", "platforms", "created_at", "updated_at"}


def plan_url(ref: object) -> str:
    return f"{PLANS_URL}{ref}/"


def seats_url(ref: object, username: str | None = None) -> str:
    return f"{PLANS_URL}{ref}/seats/" + (f"{username}/" if username else "")


def send(client, method: str, url: str, body: object):  # noqa: ANN001, ANN201
    raw = body if isinstance(body, str) else json.dumps(body)
    return getattr(client, method)(url, data=raw, content_type="application/json")


def catalogue_state() -> tuple:
    """Every row the catalogue and seat endpoints can write: equal before and after a refused request."""
    plans = sorted(AIPlan.objects.values_list(
        "slug", "name", "tier", "icon", "weekly_budget", "session_budget", "overage", "purchasable", "billing_cycle",
        "price_per_seat_cents", "currency", "stripe_price_id", "is_active", "updated_at"))
    models = sorted(AIPlanModel.objects.values_list("plan__slug", "model", "display_name", "tier"))
    offered = sorted(AIPlan.platforms.through.objects.values_list("aiplan__slug", "platform__platform_key"))
    seats = sorted(SeatAssignment.objects.values_list("platform_id", "ai_plan__slug", "user__username"))
    counts = tuple(model.objects.count() for model in apps.get_app_config("entitlements").get_models())
    return plans, models, offered, seats, counts


@pytest.fixture
def operator(db) -> str:  # noqa: ANN001
    _user, token = operator_ensure(username="root")
    return token.key


@pytest.fixture
def rate_card(platform, other_platform):  # noqa: ANN001, ANN201
    for model in ("gpt-4o-mini", "gpt-4o"):
        model_price_create(platform=platform, model=model, input_per_million=D("1"), output_per_million=D("2"),
                           actor=None)
    # a model priced on another platform's rate card only still counts as on "a" rate card
    model_price_create(platform=other_platform, model="o1", input_per_million=D("15"), output_per_million=D("60"),
                       actor=None)


@pytest.fixture
def seated_plan(platform, ai_plan, owner, member):  # noqa: ANN001, ANN201
    """The advanced plan with 3 seats on acme, one of them the member's."""
    seats_grant(platform=platform, ai_plan=ai_plan, quantity=3)
    seat_assign(platform=platform, ai_plan=ai_plan, username=member.user.username, actor=owner.user)
    return ai_plan


def charge(platform, user, plan, amount: str, at, *, window_start=None) -> SeatCharge:  # noqa: ANN001
    """A seat charge of ``amount`` at ``at`` (with the windows it belongs to): what the usage path writes."""
    week_start, week_end = week_bounds(at, platform.time_zone)
    weekly, _ = SeatWindow.objects.get_or_create(platform=platform, user=user, kind=WindowKind.WEEKLY,
                                                 starts_at=week_start, defaults={"ends_at": week_end})
    session_start = window_start or at
    session, _ = SeatWindow.objects.get_or_create(platform=platform, user=user, kind=WindowKind.SESSION,
                                                  starts_at=session_start,
                                                  defaults={"ends_at": session_start + timedelta(hours=6)})
    for window in (weekly, session):
        window.spent += D(amount)
        window.save()
    return SeatCharge.objects.create(
        platform=platform, user=user, ai_plan=plan, kind=ChargeKind.SPEND, weekly_window=weekly,
        session_window=session, spent_delta=D(amount), reserved_delta=0, weekly_budget=plan.weekly_budget,
        session_budget=plan.session_budget, weekly_spent_after=weekly.spent, session_spent_after=session.spent,
        created_at=at)


# --- GET /entitlements/ ---------------------------------------------------------------------------------------


def test_the_overview_shows_the_plans_offered_their_seats_and_the_seats_spending(
        platform, other_platform, owner, member, other_member, seated_plan):
    everyday = make_ai_plan("everyday", Tier.EVERYDAY, weekly_budget=D("0.50"), session_budget=D("0.10"),
                            icon="star")
    seats_grant(platform=platform, ai_plan=everyday, quantity=2)
    elsewhere = make_ai_plan("globex-only", Tier.STRATEGIC)
    elsewhere.platforms.add(other_platform)
    make_ai_plan("retired", is_active=False)
    synced = timezone.now() - timedelta(minutes=5)
    SeatSubscription.objects.filter(ai_plan=everyday).update(synced_at=synced)
    now = timezone.now()
    charge(platform, member.user, seated_plan, "0.125", now)
    charge(platform, member.user, seated_plan, "0.0000004", now, window_start=now - timedelta(hours=7))

    response = client_for(owner).get(ENTITLEMENTS_URL)

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"plans", "total_seats", "assigned_seats", "weekly_usage", "monthly_usage", "last_refresh"}
    assert [p["slug"] for p in body["plans"]] == ["advanced", "everyday"]
    advanced, daily = body["plans"]
    assert set(advanced) == {"id", "name", "slug", "tier", "icon", "weekly_budget", "session_budget", "purchasable",
                             "seats"}
    assert advanced["id"] == str(seated_plan.pk) and advanced["tier"] == "advanced"
    assert (advanced["weekly_budget"], advanced["session_budget"]) == ("2.00", "0.40")
    assert advanced["seats"] == {"total": 3, "assigned": 1, "unassigned": 2, "over_assigned": 0}
    assert daily["seats"] == {"total": 2, "assigned": 0, "unassigned": 2, "over_assigned": 0}
    assert daily["icon"] == "star" and daily["weekly_budget"] == "0.50"
    assert (body["total_seats"], body["assigned_seats"]) == (5, 1)
    assert body["weekly_usage"] == body["monthly_usage"] == "0.1250004"
    assert body["last_refresh"] == iso_z(synced)


def test_the_overview_of_a_platform_without_seats_or_plans(owner):
    body = client_for(owner).get(ENTITLEMENTS_URL).json()
    assert body == {"plans": [], "total_seats": 0, "assigned_seats": 0, "weekly_usage": "0.00",
                    "monthly_usage": "0.00", "last_refresh": None}


def test_the_overview_reports_over_assigned_seats(platform, owner, member, other_member, ai_plan):
    seats_grant(platform=platform, ai_plan=ai_plan, quantity=2)
    for who in (member, other_member):
        seat_assign(platform=platform, ai_plan=ai_plan, username=who.user.username, actor=owner.user)
    seats_grant(platform=platform, ai_plan=ai_plan, quantity=1)  # the quantity lowered below the assignments

    plan = client_for(owner).get(ENTITLEMENTS_URL).json()["plans"][0]

    assert plan["seats"] == {"total": 1, "assigned": 2, "unassigned": 0, "over_assigned": 1}


def test_the_week_and_the_month_start_at_midnight_in_the_platforms_time_zone(platform, member, ai_plan):
    platform.time_zone = "America/New_York"
    platform.save()
    now = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)  # Tuesday 3 March, 10:00 in New York
    # Monday 2 March 00:00 New York is 05:00Z; Sunday 1 March 00:00 New York is 05:00Z the day before.
    for at, amount in [("2026-03-02T04:59:59Z", "1"), ("2026-03-02T05:00:00Z", "2"), ("2026-03-01T04:59:59Z", "4"),
                       ("2026-03-01T05:00:00Z", "8"), ("2026-03-03T15:00:00Z", "16")]:
        charge(platform, member.user, ai_plan, amount, datetime.fromisoformat(at))

    spending = selectors.seat_spending_of(platform=platform, now=now)

    assert spending.weekly == D("18")  # from Monday 00:00 local
    assert spending.monthly == D("27")  # from the 1st 00:00 local (not the 4 of February's last hours)


def test_members_may_not_see_the_overview(member):
    error_of(client_for(member).get(ENTITLEMENTS_URL), 403, "admin_required")


def test_another_platforms_admin_sees_their_own_platform_and_nothing_of_this_one(
        platform, outsider, seated_plan):
    body = client_for(outsider).get(ENTITLEMENTS_URL).json()
    assert body["plans"][0]["seats"] == {"total": 0, "assigned": 0, "unassigned": 0, "over_assigned": 0}
    assert body["total_seats"] == 0
    error_of(client_for(outsider, platform_key="acme").get(ENTITLEMENTS_URL), 403, "not_a_member")


def test_an_operator_reads_the_platform_it_names(operator, seated_plan):
    body = client_for(token=operator, platform_key="acme").get(ENTITLEMENTS_URL).json()
    assert body["assigned_seats"] == 1
    error_of(client_for(token=operator).get(ENTITLEMENTS_URL), 400, "platform_ambiguous")
    error_of(client_for(token=operator, platform_key="nosuch").get(ENTITLEMENTS_URL), 404, "platform_not_found")


def test_anonymous_callers_are_refused(db):  # noqa: ANN001
    for url in (ENTITLEMENTS_URL, ME_URL, PLANS_URL, plan_url("advanced")):
        error_of(client_for().get(url), 401)


def test_the_overview_takes_no_query_parameter_and_no_write(owner):
    invalid_field(client_for(owner).get(ENTITLEMENTS_URL, {"include_seats": "true"}), "include_seats")
    error_of(post_json(client_for(owner), ENTITLEMENTS_URL, {}), 405, "method_not_allowed")


def test_the_overview_route_leaves_entitlements_refresh_to_its_own_view():
    for path in ("/api/billing/entitlements/refresh/", "/api/billing/entitlements/me/"):
        try:
            match = resolve(path)
        except Resolver404:
            continue
        assert getattr(match.func, "cls", None) is not EntitlementsViewSet, path
    assert resolve(ME_URL).func.cls is MyEntitlementViewSet


# --- GET /entitlements/me/ ------------------------------------------------------------------------------------


def test_a_member_without_a_seat_has_none(member, owner):
    assert client_for(member).get(ME_URL).json() == {"seat": None}
    assert client_for(owner).get(ME_URL).json() == {"seat": None}


def test_a_member_sees_their_seat_its_models_and_budgets(platform, other_platform, member, seated_plan):
    AIPlanModel.objects.create(plan=seated_plan, model="gpt-4o", display_name="GPT-4o", tier=Tier.ADVANCED)
    everyday = make_ai_plan("everyday", Tier.EVERYDAY)
    AIPlanModel.objects.create(plan=everyday, model="gpt-4o-mini", display_name="", tier=Tier.EVERYDAY)
    AIPlanModel.objects.create(plan=everyday, model="gpt-4o", display_name="", tier=Tier.ADVANCED)  # listed twice
    strategic = make_ai_plan("strategic", Tier.STRATEGIC)
    AIPlanModel.objects.create(plan=strategic, model="o1", tier=Tier.STRATEGIC)  # above the seat's tier
    globex = make_ai_plan("globex-only", Tier.EVERYDAY)
    globex.platforms.add(other_platform)
    # a plan not offered to acme: its model is still in the catalogue, at a tier the seat covers
    AIPlanModel.objects.create(plan=globex, model="llama", tier=Tier.EVERYDAY)
    retired = make_ai_plan("retired", Tier.EVERYDAY, is_active=False)
    AIPlanModel.objects.create(plan=retired, model="old", tier=Tier.EVERYDAY)  # not active
    now = timezone.now()
    charge(platform, member.user, seated_plan, "0.25", now)

    response = client_for(member).get(ME_URL)

    assert response.status_code == 200, response.content
    seat = response.json()["seat"]
    assert set(seat) == {"ai_plan", "tier", "assigned_at", "models", "budgets"}
    assert seat["ai_plan"] == {"id": str(seated_plan.pk), "slug": "advanced", "name": "Advanced",
                               "tier": "advanced", "icon": ""}
    assert seat["tier"] == "advanced"
    assert_utc(seat["assigned_at"])
    assert seat["models"] == [
        {"id": "gpt-4o", "name": "GPT-4o", "tier": "advanced"},
        {"id": "gpt-4o-mini", "name": "gpt-4o-mini", "tier": "everyday"},
        {"id": "llama", "name": "llama", "tier": "everyday"},
    ]
    weekly, session = seat["budgets"]["weekly"], seat["budgets"]["session"]
    assert weekly == {"budget": "2.00", "used": "0.25", "reserved": "0.00", "remaining": "1.75",
                      "resets_at": iso_z(week_bounds(now, platform.time_zone)[1])}
    assert session == {"budget": "0.40", "used": "0.25", "reserved": "0.00", "remaining": "0.15",
                       "resets_at": iso_z(now + timedelta(hours=6))}


def test_a_seat_without_an_open_session_has_no_session_reset(member, seated_plan):
    session = client_for(member).get(ME_URL).json()["seat"]["budgets"]["session"]
    assert session == {"budget": "0.40", "used": "0.00", "reserved": "0.00", "remaining": "0.40", "resets_at": None}


def test_entitled_models_follow_the_tier_ranks(platform):
    for slug, tier in [("e", Tier.EVERYDAY), ("a", Tier.ADVANCED), ("s", Tier.STRATEGIC)]:
        plan = make_ai_plan(slug, tier)
        AIPlanModel.objects.create(plan=plan, model=f"model-{slug}", tier=tier)
    names = {plan.slug: [m.model for m in selectors.entitled_models(platform=platform, ai_plan=plan)]
             for plan in AIPlan.objects.all()}
    assert names == {"e": ["model-e"], "a": ["model-a", "model-e"], "s": ["model-a", "model-e", "model-s"]}


def test_another_platforms_member_cannot_read_a_seat_here(outsider, seated_plan):
    error_of(client_for(outsider, platform_key="acme").get(ME_URL), 403, "not_a_member")
    assert client_for(outsider).get(ME_URL).json() == {"seat": None}  # their own platform: no seat


def test_an_operator_outside_the_platform_has_no_seat_there(operator, seated_plan):
    error_of(client_for(token=operator, platform_key="acme").get(ME_URL), 403, "not_a_member")


# --- GET /ai-plans/ -------------------------------------------------------------------------------------------


def test_owners_list_the_plans_offered_without_seats_unless_asked(platform, other_platform, owner, seated_plan):
    make_ai_plan("everyday", Tier.EVERYDAY, price_per_seat_cents=1000, stripe_price_id="price_everyday")
    make_ai_plan("globex-only").platforms.add(other_platform)

    body = client_for(owner).get(PLANS_URL).json()

    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 2 and [p["slug"] for p in body["results"]] == ["advanced", "everyday"]
    advanced, everyday = body["results"]
    assert set(advanced) == LIST_FIELDS  # no seats, no stripe_price_id
    assert advanced["price_per_seat"] == "25.00" and advanced["price_per_seat_cents"] == 2500
    assert everyday["price_per_seat"] == "10.00"
    assert advanced | {"id": None} == {
        "id": None, "name": "Advanced", "slug": "advanced", "tier": "advanced", "icon": "", "weekly_budget": "2.00",
        "session_budget": "0.40", "overage": "refuse", "purchasable": True, "billing_cycle": "monthly",
        "price_per_seat": "25.00", "price_per_seat_cents": 2500, "currency": "USD", "is_active": True}

    with_seats = client_for(owner).get(PLANS_URL, {"include_seats": "true"}).json()["results"]
    assert with_seats[0]["seats"] == {"total": 3, "assigned": 1, "unassigned": 2, "over_assigned": 0}
    assert set(with_seats[1]["seats"]) == SEAT_FIELDS
    assert all("seats" not in p for p in client_for(owner).get(PLANS_URL, {"include_seats": "false"}).json()["results"])


def test_the_listing_pages(admin):
    for index in range(3):
        make_ai_plan(f"plan-{index}")
    body = client_for(admin).get(PLANS_URL, {"page_size": 2}).json()
    assert body["count"] == 3 and len(body["results"]) == 2 and body["next"]
    assert [p["slug"] for p in client_for(admin).get(PLANS_URL, {"page_size": 2, "page": 2}).json()["results"]] == [
        "plan-2"]


@pytest.mark.parametrize("value", ["yes", "1", "True", "", "true,false"])
def test_include_seats_is_strictly_true_or_false(owner, ai_plan, value):
    response = client_for(owner).get(f"{PLANS_URL}?include_seats={value}")
    if value == "":
        assert response.status_code == 200  # an empty parameter is a parameter not given
        return
    invalid_field(response, "include_seats")


@pytest.mark.parametrize("url", [ENTITLEMENTS_URL, ME_URL, PLANS_URL, plan_url("advanced")])
@pytest.mark.parametrize("param", ["include_seat", "platform_key", "format", "page_sise"])
def test_every_read_refuses_an_unknown_query_parameter(owner, ai_plan, url, param):
    if url == PLANS_URL and param == "page_sise":
        param = "pagesize"
    invalid_field(client_for(owner).get(url, {param: "1"}), param)


def test_the_listing_refuses_unknown_and_repeated_parameters(owner):
    invalid_field(client_for(owner).get(PLANS_URL, {"includeSeats": "true"}), "includeSeats")
    invalid_field(client_for(owner).get(f"{PLANS_URL}?include_seats=true&include_seats=false"), "include_seats")


def test_operators_also_see_the_stripe_price_id(operator, platform, ai_plan):
    plan = client_for(token=operator, platform_key="acme").get(PLANS_URL).json()["results"][0]
    assert plan["stripe_price_id"] == ""
    assert set(plan) == LIST_FIELDS | {"stripe_price_id"}


def test_members_may_not_list_the_plans(member, ai_plan):
    error_of(client_for(member).get(PLANS_URL), 403, "admin_required")
    error_of(client_for(member).get(plan_url("advanced")), 403, "admin_required")


# --- GET /ai-plans/{id or slug}/ ------------------------------------------------------------------------------


def test_a_plan_with_its_assignments_and_models(platform, owner, member, other_member, seated_plan):
    member.user.first_name, member.user.last_name = "Mia", "Wong"
    member.user.save()
    seat_assign(platform=platform, ai_plan=seated_plan, username=other_member.user.username, actor=None)
    AIPlanModel.objects.create(plan=seated_plan, model="gpt-4o", display_name="GPT-4o", tier=Tier.ADVANCED)
    AIPlanModel.objects.create(plan=seated_plan, model="gpt-4o-mini", tier=Tier.EVERYDAY)
    now = timezone.now()
    charge(platform, member.user, seated_plan, "0.30", now)

    by_id = client_for(owner).get(plan_url(seated_plan.pk))
    by_slug = client_for(owner).get(plan_url("advanced"))

    assert by_id.status_code == 200, by_id.content
    body = by_id.json()
    assert body == by_slug.json()
    assert set(body) == LIST_FIELDS | {"seats", "models"}
    assert {k: body["seats"][k] for k in SEAT_FIELDS} == {"total": 3, "assigned": 2, "unassigned": 1,
                                                          "over_assigned": 0}
    mia, max_ = body["seats"]["assignments"]
    assert set(mia) == ASSIGNMENT_FIELDS
    assert (mia["username"], mia["display_name"], mia["assigned_by"]) == ("mia", "Mia Wong", "olivia")
    assert (mia["weekly_cost_used"], mia["session_cost_used"]) == ("0.30", "0.30")
    assert (max_["username"], max_["display_name"], max_["assigned_by"]) == ("max", "max", None)
    assert (max_["weekly_cost_used"], max_["session_cost_used"]) == ("0.00", "0.00")
    assert_utc(mia["assigned_at"])
    assert body["models"] == [{"id": "gpt-4o", "name": "GPT-4o", "tier": "advanced"},
                              {"id": "gpt-4o-mini", "name": "gpt-4o-mini", "tier": "everyday"}]


@pytest.mark.parametrize("ref", ["nosuch", "00000000-0000-0000-0000-000000000000", "x" * 300, "globex-only",
                                 "retired"])
def test_a_plan_not_offered_to_the_platform_is_not_found(owner, other_platform, ref):
    make_ai_plan("globex-only").platforms.add(other_platform)
    make_ai_plan("retired", is_active=False)
    error = error_of(client_for(owner).get(plan_url(ref)), 404, "ai_plan_not_found")
    assert len(error["details"]["ai_plan"]) <= 100


def test_another_platforms_admin_sees_none_of_this_platforms_seats(outsider, seated_plan):
    body = client_for(outsider).get(plan_url("advanced")).json()
    assert body["seats"]["assignments"] == [] and body["seats"]["total"] == 0
    error_of(client_for(outsider, platform_key="acme").get(plan_url("advanced")), 403, "not_a_member")


# --- POST /ai-plans/, PATCH /ai-plans/{id}/ (operators) -------------------------------------------------------

VALID = {
    "slug": "strategic",
    "name": "Strategic AI",
    "tier": "strategic",
    "weekly_budget": "5.00",
    "session_budget": "1.25",
}


def create(client, **body):  # noqa: ANN001, ANN003, ANN201
    return post_json(client, PLANS_URL, VALID | body)


def test_an_operator_creates_a_plan_with_its_models_and_platforms(operator, rate_card, platform):
    response = create(client_for(token=operator), icon="rocket", overage="credits", purchasable=False,
                      billing_cycle="yearly", price_per_seat_cents=12000, stripe_price_id="price_strategic_1",
                      models=[{"model": "o1", "display_name": "o1", "tier": "strategic"},
                              {"model": "gpt-4o", "tier": "advanced"}],
                      platforms=["acme"])

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == CATALOGUE_FIELDS
    plan = AIPlan.objects.get(slug="strategic")
    assert response["Location"] == plan_url(plan.pk)
    assert body["id"] == str(plan.pk)
    assert (body["weekly_budget"], body["session_budget"], body["price_per_seat"]) == ("5.00", "1.25", "120.00")
    assert body["models"] == [{"model": "gpt-4o", "display_name": "", "tier": "advanced"},
                              {"model": "o1", "display_name": "o1", "tier": "strategic"}]
    assert body["platforms"] == ["acme"]
    assert (plan.tier, plan.overage, plan.purchasable, plan.billing_cycle, plan.stripe_price_id) == (
        "strategic", "credits", False, "yearly", "price_strategic_1")
    assert (plan.weekly_budget, plan.session_budget, plan.price_per_seat_cents) == (D("5"), D("1.25"), 12000)
    assert sorted(plan.models.values_list("model", "tier")) == [("gpt-4o", "advanced"), ("o1", "strategic")]
    assert list(plan.platforms.values_list("platform_key", flat=True)) == ["acme"]


def test_a_created_plan_takes_the_defaults(operator):
    body = create(client_for(token=operator)).json()
    assert {k: body[k] for k in ("icon", "overage", "purchasable", "billing_cycle", "price_per_seat_cents",
                                 "currency", "stripe_price_id", "is_active", "models", "platforms")} == {
        "icon": "", "overage": "refuse", "purchasable": True, "billing_cycle": "monthly", "price_per_seat_cents": 0,
        "currency": "USD", "stripe_price_id": "", "is_active": True, "models": [], "platforms": []}
    assert body["price_per_seat"] == "0.00"


def test_budgets_may_be_json_numbers_read_exactly(operator):
    response = post_json(client_for(token=operator), PLANS_URL,
                         '{"slug": "exact", "name": "Exact", "tier": "everyday", "weekly_budget": 0.000003, '
                         '"session_budget": 0.000001}')
    assert response.status_code == 201, response.content
    assert AIPlan.objects.get(slug="exact").weekly_budget == D("0.000003")


@pytest.mark.parametrize("role", ["owner", "admin", "member"])
def test_only_operators_write_the_catalogue(request, role, ai_plan, rate_card):
    caller = request.getfixturevalue(role)
    before = catalogue_state()
    error_of(create(client_for(caller)), 403, "operator_required")
    error_of(send(client_for(caller), "patch", plan_url("advanced"), {"name": "Mine"}), 403, "operator_required")
    assert catalogue_state() == before


BAD_FIELDS = [
    ("tier", "premium"), ("tier", 1), ("tier", None), ("overage", "ignore"), ("billing_cycle", "annual"),
    ("billing_cycle", "weekly"), ("currency", "EUR"),
    ("weekly_budget", "-1.00"), ("weekly_budget", "0"), ("weekly_budget", 0), ("weekly_budget", "NaN"),
    ("weekly_budget", "Infinity"), ("weekly_budget", "1e3"), ("weekly_budget", "1000000000.01"),
    ("weekly_budget", "99999999999999999999999"), ("weekly_budget", "5.0000001"), ("weekly_budget", True),
    ("weekly_budget", [5]), ("weekly_budget", " 5.00"), ("weekly_budget", None),
    ("session_budget", "-0.01"), ("session_budget", "0.00"), ("session_budget", "5.01"),
    ("price_per_seat_cents", -1), ("price_per_seat_cents", 12.5), ("price_per_seat_cents", "100"),
    ("price_per_seat_cents", True), ("price_per_seat_cents", 1_000_000_001), ("price_per_seat_cents", 2**63),
    ("slug", "Has Caps"), ("slug", ""), ("slug", "-dash"), ("slug", "a" * 101), ("slug", 7),
    ("slug", "01234567-89ab-cdef-0123-456789abcdef"),
    ("name", ""), ("name", "   "), ("name", "x" * 201), ("name", "bad\x00name"), ("name", "tab\there"),
    ("icon", "i" * 65), ("icon", 3),
    ("stripe_price_id", "prod_123"), ("stripe_price_id", "price 1"), ("stripe_price_id", None),
    ("purchasable", "true"), ("purchasable", 1), ("is_active", None),
    ("models", "gpt-4o"), ("models", [{"model": "gpt-4o"}]), ("models", [{"model": "gpt-4o", "tier": "huge"}]),
    ("models", [{"model": "gpt-4o", "tier": "advanced", "price": 1}]),
    ("models", [{"model": "bad model", "tier": "advanced"}]),
    ("models", [{"model": "gpt-4o", "tier": "advanced"}, {"model": "gpt-4o", "tier": "advanced"}]),
    ("models", [{"model": "not-priced-anywhere", "tier": "advanced"}]),
    ("models", [{"model": "gpt-4o", "display_name": "x" * 201, "tier": "advanced"}]),
    ("platforms", "acme"), ("platforms", ["nosuch"]), ("platforms", ["acme", "acme"]), ("platforms", [1]),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_a_bad_value_is_a_400_naming_the_field_and_nothing_is_written(operator, rate_card, platform, field, value):
    before = catalogue_state()
    invalid_field(create(client_for(token=operator), **{field: value}), field)
    assert catalogue_state() == before


@pytest.mark.parametrize("missing", sorted(VALID))
def test_a_required_field_missing_is_a_400(operator, missing):
    body = {k: v for k, v in VALID.items() if k != missing}
    invalid_field(post_json(client_for(token=operator), PLANS_URL, body), missing)
    assert not AIPlan.objects.exists()


def test_unknown_fields_are_refused(operator):
    error = invalid_field(create(client_for(token=operator), weeklyBudget="1.00", seats=3), "weeklyBudget")
    assert error["details"]["seats"] == ["Unknown field."]
    invalid_field(create(client_for(token=operator), models=[{"model": "gpt-4o", "tier": "everyday", "x": 1}]),
                  "models")
    assert not AIPlan.objects.exists()


@pytest.mark.parametrize("body", ["[]", '"plan"', "null", "{", '{"slug": NaN}', '{"weekly_budget": Infinity}'])
def test_a_body_that_is_not_an_object_is_refused(operator, body):
    response = post_json(client_for(token=operator), PLANS_URL, body)
    assert response.status_code == 400, response.content
    error_of(response, 400)
    assert not AIPlan.objects.exists()


def test_a_model_not_on_any_rate_card_is_named_in_the_error(operator, rate_card):
    error = invalid_field(create(client_for(token=operator), models=[
        {"model": "gpt-4o", "tier": "advanced"}, {"model": "claude-9", "tier": "advanced"}]), "models")
    assert "claude-9" in error["details"]["models"][0] and "rate card" in error["details"]["models"][0]
    assert "gpt-4o," not in error["details"]["models"][0]


def test_a_model_above_the_plans_tier_is_refused(operator, rate_card):
    error = invalid_field(create(client_for(token=operator), tier="everyday", weekly_budget="1", session_budget="1",
                                 models=[{"model": "o1", "tier": "strategic"}]), "models")
    assert "above the plan's tier" in error["details"]["models"][0]
    assert not AIPlan.objects.exists()


def test_a_model_has_one_tier_across_the_active_plans(operator, rate_card, ai_plan):
    AIPlanModel.objects.create(plan=ai_plan, model="gpt-4o", tier=Tier.ADVANCED)
    error = invalid_field(create(client_for(token=operator), models=[{"model": "gpt-4o", "tier": "strategic"}]),
                          "models")
    assert 'gpt-4o is "advanced" in the plan "advanced"' in error["details"]["models"][0]
    assert create(client_for(token=operator), models=[{"model": "gpt-4o", "tier": "advanced"}]).status_code == 201
    # a retired plan's tiers do not count
    ai_plan.is_active = False
    ai_plan.save()
    body = create(client_for(token=operator), slug="other", models=[{"model": "gpt-4o-mini", "tier": "strategic"}])
    assert body.status_code == 201, body.content


def test_the_session_budget_may_equal_the_weekly_one(operator):
    assert create(client_for(token=operator), weekly_budget="1.25", session_budget="1.25").status_code == 201


@pytest.mark.parametrize(("field", "value"), [("slug", "advanced"), ("stripe_price_id", "price_taken")])
def test_a_slug_or_stripe_price_in_use_is_a_409(operator, field, value):
    make_ai_plan("advanced", stripe_price_id="price_taken")
    before = catalogue_state()
    body = VALID | {field: value}
    error = error_of(post_json(client_for(token=operator), PLANS_URL, body), 409, "ai_plan_conflict")
    assert field in error["details"]
    assert catalogue_state() == before


def test_an_operator_needs_no_platform_to_write_the_catalogue_and_its_membership_does_not_matter(operator, platform):
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.get(username="root")
    from accounts.services import member_add

    member_add(platform=platform, username="root", role=Role.MEMBER)
    make_member(make_platform("initech"), "root")
    assert create(client_for(token=operator)).status_code == 201  # two memberships, no X-Platform-Key
    assert root.is_superuser


def test_an_operator_patches_a_plan_and_replaces_its_lists(operator, rate_card, platform, other_platform):
    plan = AIPlan.objects.get(pk=create(client_for(token=operator), platforms=["acme"], models=[
        {"model": "o1", "tier": "strategic"}, {"model": "gpt-4o", "tier": "advanced"}]).json()["id"])

    response = send(client_for(token=operator), "patch", plan_url("strategic"), {
        "name": "Strategic+", "weekly_budget": "6", "models": [{"model": "gpt-4o-mini", "display_name": "Mini",
                                                                "tier": "everyday"}],
        "platforms": ["globex", "acme"]})

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["name"], body["weekly_budget"], body["session_budget"]) == ("Strategic+", "6.00", "1.25")
    assert body["models"] == [{"model": "gpt-4o-mini", "display_name": "Mini", "tier": "everyday"}]
    assert body["platforms"] == ["acme", "globex"]
    plan.refresh_from_db()
    assert plan.name == "Strategic+" and plan.weekly_budget == D("6")
    assert list(plan.models.values_list("model", flat=True)) == ["gpt-4o-mini"]

    # fields not sent stay, lists not sent stay; an empty list offers it to every platform
    body = send(client_for(token=operator), "patch", plan_url(plan.pk), {"platforms": []}).json()
    assert body["platforms"] == [] and body["name"] == "Strategic+" and len(body["models"]) == 1
    assert send(client_for(token=operator), "patch", plan_url(plan.pk), {}).json() == body


def test_an_operator_patches_a_retired_plan_by_slug(operator):
    make_ai_plan("old", is_active=False)
    body = send(client_for(token=operator), "patch", plan_url("old"), {"is_active": True}).json()
    assert body["is_active"] is True and AIPlan.objects.get(slug="old").is_active


@pytest.mark.parametrize(("body", "field"), [
    ({"slug": "renamed"}, "slug"),
    ({"session_budget": "2.01"}, "session_budget"),  # above the stored weekly budget 2.00
    ({"weekly_budget": "0.39"}, "session_budget"),  # below the stored session budget 0.40
    ({"tier": "everyday"}, "models"),  # the plan lists an advanced model
    ({"models": [{"model": "nope", "tier": "advanced"}]}, "models"),
    ({"platforms": ["acme", "nosuch"]}, "platforms"),
    ({"tier": "gold"}, "tier"),
    ({"price_per_seat_cents": 1.5}, "price_per_seat_cents"),
    ({"unknown": 1}, "unknown"),
])
def test_a_bad_patch_is_a_400_and_nothing_changes(operator, rate_card, ai_plan, body, field):
    AIPlanModel.objects.create(plan=ai_plan, model="gpt-4o", tier=Tier.ADVANCED)
    before = catalogue_state()
    invalid_field(send(client_for(token=operator), "patch", plan_url(ai_plan.pk), body), field)
    assert catalogue_state() == before


def test_a_patch_keeps_the_slug_when_sent_unchanged(operator, ai_plan):
    assert send(client_for(token=operator), "patch", plan_url(ai_plan.pk),
                {"slug": "advanced", "icon": "bolt"}).json()["icon"] == "bolt"


def test_a_patch_taking_another_plans_stripe_price_is_a_409(operator, ai_plan):
    make_ai_plan("other", stripe_price_id="price_other")
    before = catalogue_state()
    error_of(send(client_for(token=operator), "patch", plan_url(ai_plan.pk), {"stripe_price_id": "price_other"}),
             409, "ai_plan_conflict")
    assert catalogue_state() == before


def test_a_patch_of_an_unknown_plan_is_a_404(operator):
    error_of(send(client_for(token=operator), "patch", plan_url("nosuch"), {"name": "x"}), 404, "ai_plan_not_found")


def test_plans_are_never_deleted_or_replaced(operator, owner, ai_plan):
    for client in (client_for(token=operator), client_for(owner)):
        error_of(client.delete(plan_url(ai_plan.pk)), 405, "method_not_allowed")
        error_of(send(client, "put", plan_url(ai_plan.pk), VALID), 405, "method_not_allowed")
    assert AIPlan.objects.filter(pk=ai_plan.pk).exists()


# --- seats ----------------------------------------------------------------------------------------------------


def test_an_owner_assigns_a_seat(platform, owner, member, ai_plan):
    seats_grant(platform=platform, ai_plan=ai_plan, quantity=1)

    response = post_json(client_for(owner), seats_url("advanced"), {"username": "mia"})

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == ASSIGNMENT_FIELDS
    assert (body["username"], body["display_name"], body["assigned_by"]) == ("mia", "mia", "olivia")
    assert (body["weekly_cost_used"], body["session_cost_used"]) == ("0.00", "0.00")
    assert_utc(body["assigned_at"])
    assignment = SeatAssignment.objects.get()
    assert (assignment.user_id, assignment.ai_plan_id, assignment.assigned_by_id) == (
        member.user.pk, ai_plan.pk, owner.user.pk)


def test_an_admin_and_an_operator_assign_seats_by_id(platform, admin, operator, member, other_member, ai_plan):
    seats_grant(platform=platform, ai_plan=ai_plan, quantity=2)
    assert post_json(client_for(admin), seats_url(ai_plan.pk), {"username": "mia"}).json()["assigned_by"] == "adam"
    operator_client = client_for(token=operator, platform_key="acme")
    assert post_json(operator_client, seats_url(ai_plan.pk), {"username": "max"}).json()["assigned_by"] == "root"
    assert SeatAssignment.objects.count() == 2


@pytest.mark.parametrize(("setup", "username", "status", "code"), [
    ("seats", "nobody", 404, "member_not_found"),
    ("seats", "gina", 404, "member_not_found"),  # a member of another platform
    ("seats", "root", 404, "member_not_found"),  # an operator, not a member
    ("assigned", "mia", 409, "seat_already_assigned"),
    ("full", "max", 409, "no_seat_available"),
    ("none", "mia", 409, "no_seat_available"),
])
def test_an_assignment_the_services_refuse_writes_nothing(platform, owner, member, other_member, outsider, operator,
                                                          ai_plan, setup, username, status, code):
    if setup != "none":
        seats_grant(platform=platform, ai_plan=ai_plan, quantity=1)
    if setup in ("assigned", "full"):
        seat_assign(platform=platform, ai_plan=ai_plan, username="mia", actor=None)
    before = catalogue_state()
    error_of(post_json(client_for(owner), seats_url("advanced"), {"username": username}), status, code)
    assert catalogue_state() == before


def test_a_member_holding_a_seat_on_another_plan_cannot_get_a_second(platform, owner, member, ai_plan):
    everyday = make_ai_plan("everyday", Tier.EVERYDAY)
    for plan in (ai_plan, everyday):
        seats_grant(platform=platform, ai_plan=plan, quantity=1)
    seat_assign(platform=platform, ai_plan=everyday, username="mia", actor=None)
    before = catalogue_state()
    error_of(post_json(client_for(owner), seats_url("advanced"), {"username": "mia"}), 409, "seat_already_assigned")
    assert catalogue_state() == before


@pytest.mark.parametrize("body", [{}, {"username": ""}, {"username": 5}, {"username": None}, {"username": ["mia"]},
                                  {"username": "mia", "plan": "x"}, {"user": "mia"}, {"username": "m" * 151}])
def test_a_bad_assignment_body_is_a_400(platform, owner, member, ai_plan, body):
    seats_grant(platform=platform, ai_plan=ai_plan, quantity=1)
    before = catalogue_state()
    response = post_json(client_for(owner), seats_url("advanced"), body)
    error_of(response, 400, "invalid")
    assert catalogue_state() == before


def test_seats_of_an_unknown_plan_are_not_found(platform, owner, member, other_platform):
    make_ai_plan("globex-only").platforms.add(other_platform)
    before = catalogue_state()
    for ref in ("nosuch", "globex-only"):
        error_of(post_json(client_for(owner), seats_url(ref), {"username": "mia"}), 404, "ai_plan_not_found")
        error_of(client_for(owner).delete(seats_url(ref, "mia")), 404, "ai_plan_not_found")
    assert catalogue_state() == before


def test_members_and_other_platforms_may_not_assign_seats(platform, member, outsider, ai_plan):
    seats_grant(platform=platform, ai_plan=ai_plan, quantity=2)
    before = catalogue_state()
    error_of(post_json(client_for(member), seats_url("advanced"), {"username": "mia"}), 403, "admin_required")
    error_of(post_json(client_for(outsider, platform_key="acme"), seats_url("advanced"), {"username": "mia"}), 403,
             "not_a_member")
    # in their own platform, acme's member is no member of theirs
    error_of(post_json(client_for(outsider), seats_url("advanced"), {"username": "mia"}), 404, "member_not_found")
    assert catalogue_state() == before


def test_an_owner_frees_a_seat(platform, owner, member, seated_plan):
    response = client_for(owner).delete(seats_url("advanced", "mia"))

    assert response.status_code == 204, response.content
    assert not SeatAssignment.objects.exists()
    error_of(client_for(owner).delete(seats_url("advanced", "mia")), 404, "seat_not_assigned")


@pytest.mark.parametrize(("username", "code"), [("max", "seat_not_assigned"), ("nobody", "member_not_found"),
                                                ("gina", "member_not_found")])
def test_freeing_a_seat_nobody_holds_writes_nothing(platform, owner, other_member, outsider, seated_plan, username,
                                                    code):
    before = catalogue_state()
    error_of(client_for(owner).delete(seats_url("advanced", username)), 404, code)
    assert catalogue_state() == before


def test_freeing_a_seat_on_another_plan_than_the_members_is_refused(platform, owner, member, seated_plan):
    everyday = make_ai_plan("everyday", Tier.EVERYDAY)
    before = catalogue_state()
    error_of(client_for(owner).delete(seats_url(everyday.slug, "mia")), 404, "seat_not_assigned")
    assert catalogue_state() == before


def test_members_may_not_free_seats(member, seated_plan):
    error_of(client_for(member).delete(seats_url("advanced", "mia")), 403, "admin_required")
    assert SeatAssignment.objects.count() == 1


def test_the_seat_routes_take_only_their_methods(owner, seated_plan):
    error_of(client_for(owner).get(seats_url("advanced")), 405, "method_not_allowed")
    error_of(post_json(client_for(owner), seats_url("advanced", "mia"), {}), 405, "method_not_allowed")
    assert SeatAssignment.objects.count() == 1


def test_money_fields_are_decimal_strings(owner, seated_plan):
    plan = client_for(owner).get(plan_url("advanced")).json()
    for value in (plan["weekly_budget"], plan["session_budget"], plan["price_per_seat"]):
        assert_money(value)
