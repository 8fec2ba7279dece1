"""/api/billing/plans/, /api/billing/admin/plans/, /api/billing/subscription/; plan_create and plan_update."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from rest_framework.test import APIClient

from accounts.services import api_token_issue
from billing_service.errors import InvalidInput
from subscriptions.errors import PlanConflict, PlanNotFound
from subscriptions.models import Plan
from subscriptions.services import plan_create, plan_update, subscription_set_status
from tests.api_helpers import assert_money, assert_utc, error_of, invalid_field, post_json
from tests.conftest import client_for, make_member
from tests.subscriptions.conftest import make_plan, plan_rows, start

pytestmark = pytest.mark.django_db

PLANS_URL = "/api/billing/plans/"
ADMIN_PLANS_URL = "/api/billing/admin/plans/"
SUBSCRIPTION_URL = "/api/billing/subscription/"

PUBLIC_FIELDS = {
    "id",
    "slug",
    "name",
    "description",
    "price_monthly",
    "price_yearly",
    "currency",
    "credits_included",
    "features",
    "free_trial",
    "unlimited_credits",
    "rollover_policy",
    "rollover_cap",
}
ADMIN_FIELDS = PUBLIC_FIELDS | {
    "purchasable",
    "is_active",
    "stripe_price_monthly",
    "stripe_price_yearly",
    "creem_product_id",
    "sort_order",
    "created_at",
    "updated_at",
}
VALID = {
    "slug": "starter",
    "name": "Starter",
    "price_monthly": 999,
    "price_yearly": 9990,
    "credits_included": "10000",
}


def plan_url(plan_id: object) -> str:
    return f"{ADMIN_PLANS_URL}{plan_id}/"


def create(client, **body):
    return post_json(client, ADMIN_PLANS_URL, VALID | body)


def send(client, method: str, url: str, body):
    raw = body if isinstance(body, str) else json.dumps(body)
    return getattr(client, method)(url, data=raw, content_type="application/json")


# --- create ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owner_or_admin_creates_a_plan_with_defaults(request, role):
    caller = request.getfixturevalue(role)
    response = create(client_for(caller))
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == ADMIN_FIELDS
    plan = Plan.objects.get(pk=body["id"])
    assert response["Location"] == plan_url(plan.pk)
    assert plan.platform_id == caller.platform.pk
    assert body == {
        "id": str(plan.pk),
        "slug": "starter",
        "name": "Starter",
        "description": "",
        "price_monthly": 999,
        "price_yearly": 9990,
        "currency": "USD",
        "credits_included": "10000.00",
        "features": [],
        "free_trial": False,
        "unlimited_credits": False,
        "rollover_policy": "none",
        "rollover_cap": None,
        "purchasable": True,
        "is_active": True,
        "stripe_price_monthly": "",
        "stripe_price_yearly": "",
        "creem_product_id": "",
        "sort_order": 0,
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
    }
    assert_utc(body["created_at"])
    assert (plan.price_monthly, plan.credits_included, plan.features) == (999, Decimal("10000"), [])


def test_a_legacy_stripe_plan_id_is_a_price_id(admin):
    response = create(client_for(admin), stripe_price_monthly="plan_legacy_gold", stripe_price_yearly="price_1Yr")
    assert response.status_code == 201, response.content
    assert response.json()["stripe_price_monthly"] == "plan_legacy_gold"


def test_create_takes_every_field(admin):
    body = VALID | {
        "description": "For growing teams.\nBilled monthly or yearly.",
        "currency": "USD",
        "credits_included": "1234.000001",
        "features": ["Unlimited AI chat", "Priority support"],
        "free_trial": True,
        "unlimited_credits": True,
        "rollover_policy": "capped",
        "rollover_cap": "500.5",
        "purchasable": False,
        "is_active": False,
        "stripe_price_monthly": "price_1Mo",
        "stripe_price_yearly": "price_1Yr",
        "creem_product_id": "prod_abc",
        "sort_order": 7,
    }
    response = post_json(client_for(admin), ADMIN_PLANS_URL, body)
    assert response.status_code == 201, response.content
    out = response.json()
    for field, value in body.items():
        if field not in {"credits_included", "rollover_cap"}:
            assert out[field] == value, field
    assert (out["credits_included"], out["rollover_cap"]) == ("1234.000001", "500.50")
    assert_money(out["rollover_cap"])
    plan = Plan.objects.get(pk=out["id"])
    assert (plan.rollover_cap, plan.creem_product_id, plan.is_active) == (Decimal("500.5"), "prod_abc", False)


def test_credits_may_be_a_json_number(admin):
    response = create(client_for(admin), credits_included=250)
    assert response.status_code == 201
    assert response.json()["credits_included"] == "250.00"


def test_free_plans_cost_zero(admin):
    response = create(client_for(admin), price_monthly=0, price_yearly=0, credits_included="0")
    assert response.status_code == 201
    assert (response.json()["price_monthly"], response.json()["credits_included"]) == (0, "0.00")


BAD_CREATE = [
    # prices: JSON integers of cents from 0
    ("price_monthly", -1),
    ("price_monthly", 9.99),
    ("price_monthly", 10.0),
    ("price_monthly", "999"),
    ("price_monthly", True),
    ("price_monthly", None),
    ("price_monthly", 100_000_000_001),
    ("price_monthly", 10**30),
    ("price_monthly", [999]),
    ("price_yearly", -100),
    ("price_yearly", 1e3),
    ("price_yearly", False),
    # credits: a decimal
    ("credits_included", "-1"),
    ("credits_included", "abc"),
    ("credits_included", "NaN"),
    ("credits_included", "Infinity"),
    ("credits_included", "1.0000001"),
    ("credits_included", "1000000001"),
    ("credits_included", True),
    ("credits_included", None),
    ("credits_included", {}),
    # slug
    ("slug", ""),
    ("slug", "Growth"),
    ("slug", "has space"),
    ("slug", "-leading"),
    ("slug", "x" * 51),
    ("slug", "free_trial"),
    ("slug", "a/b"),
    ("slug", 42),
    ("slug", None),
    # text
    ("name", ""),
    ("name", "   "),
    ("name", "x" * 101),
    ("name", "bad\x00name"),
    ("name", "line\nbreak"),
    ("name", "\ud800"),
    ("name", 7),
    ("description", "x" * 2001),
    ("description", "nul\x00"),
    ("description", None),
    # enums
    ("currency", "EUR"),
    ("currency", "usd"),
    ("currency", None),
    ("rollover_policy", "some"),
    ("rollover_policy", ""),
    ("rollover_policy", 1),
    # features
    ("features", "Priority support"),
    ("features", {"a": 1}),
    ("features", [1, 2]),
    ("features", ["ok", None]),
    ("features", ["ok", ["nested"]]),
    ("features", [""]),
    ("features", ["   "]),
    ("features", ["dup", "dup"]),
    ("features", ["x" * 201]),
    ("features", ["f"] * 51),
    ("features", ["tab\there"]),
    ("features", None),
    # flags: JSON booleans only
    ("free_trial", "true"),
    ("free_trial", 1),
    ("unlimited_credits", None),
    ("purchasable", "yes"),
    ("is_active", 0),
    # provider ids
    ("stripe_price_monthly", "prod_123"),
    ("stripe_price_monthly", "price 1"),
    ("stripe_price_monthly", None),
    ("stripe_price_yearly", "price_" + "x" * 250),
    ("creem_product_id", "prod/1"),
    ("creem_product_id", 5),
    # sort order
    ("sort_order", -1),
    ("sort_order", 1.5),
    ("sort_order", "1"),
    ("sort_order", 1_000_001),
    # rollover cap: only with "capped", above 0
    ("rollover_cap", "10"),
    ("rollover_cap", "-5"),
    # unknown fields
    ("price", 100),
    ("platform", "globex"),
]


@pytest.mark.parametrize(("field", "value"), BAD_CREATE, ids=[f"{f}={v!r}"[:60] for f, v in BAD_CREATE])
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(admin, growth, field, value):
    before = plan_rows()
    response = create(client_for(admin), **{field: value})
    invalid_field(response, field)
    assert plan_rows() == before


@pytest.mark.parametrize("field", sorted(VALID))
def test_each_required_field_is_required(admin, field):
    body = {k: v for k, v in VALID.items() if k != field}
    invalid_field(post_json(client_for(admin), ADMIN_PLANS_URL, body), field)
    assert Plan.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rollover_policy": "capped"}, "rollover_cap"),
        ({"rollover_policy": "capped", "rollover_cap": None}, "rollover_cap"),
        ({"rollover_policy": "capped", "rollover_cap": "0"}, "rollover_cap"),
        ({"rollover_policy": "all", "rollover_cap": "10"}, "rollover_cap"),
        ({"rollover_policy": "none", "rollover_cap": "10"}, "rollover_cap"),
        ({"stripe_price_monthly": "price_same", "stripe_price_yearly": "price_same"}, "stripe_price_yearly"),
    ],
)
def test_rules_across_fields(admin, body, field):
    invalid_field(create(client_for(admin), **body), field)
    assert Plan.objects.count() == 0


def test_capped_with_a_cap_and_all_without_are_fine(admin):
    assert (
        create(client_for(admin), slug="a", rollover_policy="capped", rollover_cap="100").status_code == 201
    )
    assert create(client_for(admin), slug="b", rollover_policy="all", rollover_cap=None).status_code == 201


@pytest.mark.parametrize("raw", ["{", "[]", '"plan"', "null", "[1, 2]", '{"price_monthly": NaN}'])
def test_a_body_that_is_not_an_object_is_a_400(admin, raw):
    response = post_json(client_for(admin), ADMIN_PLANS_URL, raw)
    error_of(response, 400)
    assert Plan.objects.count() == 0


def test_several_bad_fields_are_all_named(admin):
    response = create(client_for(admin), price_monthly=-1, slug="BAD", features="x", colour="red")
    error = error_of(response, 400, "invalid")
    assert set(error["details"]) == {"price_monthly", "slug", "features", "colour"}
    assert error["details"]["colour"] == ["Unknown field."]


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_of_one_slug_make_one_plan():
    import threading

    from django.db import connection

    from tests.conftest import make_platform

    platform = make_platform("race")
    barrier, outcomes = threading.Barrier(4), []

    def run(i: int) -> None:
        try:
            barrier.wait()
            plan_create(
                platform=platform,
                slug="same",
                name=f"Same {i}",
                price_monthly=1,
                price_yearly=1,
                credits_included=Decimal(1),
                stripe_price_monthly=f"price_{i}",
            )
            outcomes.append("created")
        except PlanConflict as exc:
            outcomes.append(sorted(exc.details))
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes, key=str) == [["slug"], ["slug"], ["slug"], "created"]
    assert Plan.objects.filter(platform=platform).count() == 1


def test_a_slug_is_unique_per_platform(admin, outsider, growth):
    before = plan_rows()
    error = error_of(create(client_for(admin), slug="growth"), 409, "plan_conflict")
    assert set(error["details"]) == {"slug"}
    assert plan_rows() == before
    # another platform may use it
    assert create(client_for(outsider), slug="growth").status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"stripe_price_monthly": "price_growth_m"}, "stripe_price_monthly"),
        ({"stripe_price_monthly": "price_growth_y"}, "stripe_price_monthly"),  # another plan's yearly one
        ({"stripe_price_yearly": "price_growth_m"}, "stripe_price_yearly"),
    ],
)
def test_a_stripe_price_names_one_plan_of_the_platform(admin, outsider, growth, body, field):
    before = plan_rows()
    error = error_of(create(client_for(admin), **body), 409, "plan_conflict")
    assert field in error["details"] and "growth" in error["details"][field][0]
    assert plan_rows() == before
    assert create(client_for(outsider), **body).status_code == 201


def test_a_creem_product_names_one_plan_of_the_platform(admin):
    assert create(client_for(admin), slug="a", creem_product_id="prod_1").status_code == 201
    error = error_of(create(client_for(admin), slug="b", creem_product_id="prod_1"), 409, "plan_conflict")
    assert set(error["details"]) == {"creem_product_id"}


def test_members_cannot_manage_plans(member, growth):
    client = client_for(member)
    before = plan_rows()
    error_of(client.get(ADMIN_PLANS_URL), 403, "admin_required")
    error_of(create(client), 403, "admin_required")
    error_of(create(client, price_monthly="junk"), 403, "admin_required")  # 403 before any validation
    error_of(client.get(plan_url(growth.pk)), 403, "admin_required")
    error_of(send(client, "patch", plan_url(growth.pk), {"price_monthly": 1}), 403, "admin_required")
    error_of(send(client, "put", plan_url(growth.pk), VALID), 403, "admin_required")
    assert plan_rows() == before


def test_anonymous_callers_are_401(growth):
    for url in (PLANS_URL, ADMIN_PLANS_URL, plan_url(growth.pk), SUBSCRIPTION_URL):
        error_of(APIClient().get(url), 401)
    error_of(create(APIClient()), 401)
    assert Plan.objects.count() == 1


def test_delete_is_not_offered(admin, growth):
    error_of(client_for(admin).delete(plan_url(growth.pk)), 405, "method_not_allowed")
    assert Plan.objects.filter(pk=growth.pk).exists()


# --- admin listing and retrieval --------------------------------------------------------------------------


def test_admin_list_has_every_plan_of_the_platform_only(admin, outsider, growth, pro):
    hidden = make_plan(admin.platform, "legacy", is_active=False, sort_order=1)
    private = make_plan(admin.platform, "enterprise", purchasable=False, sort_order=9)
    make_plan(outsider.platform, "theirs")
    body = client_for(admin).get(ADMIN_PLANS_URL).json()
    assert body["count"] == 4
    assert [p["slug"] for p in body["results"]] == ["legacy", "growth", "pro", "enterprise"]
    assert set(body["results"][0]) == ADMIN_FIELDS
    assert body["results"][1]["stripe_price_monthly"] == "price_growth_m"
    only_active = client_for(admin).get(ADMIN_PLANS_URL, {"is_active": "false"}).json()
    assert [p["id"] for p in only_active["results"]] == [str(hidden.pk)]
    not_for_sale = client_for(admin).get(ADMIN_PLANS_URL, {"purchasable": "false"}).json()
    assert [p["id"] for p in not_for_sale["results"]] == [str(private.pk)]


def test_admin_list_pages(admin):
    for i in range(5):
        make_plan(admin.platform, f"p{i}", sort_order=i)
    page = client_for(admin).get(ADMIN_PLANS_URL, {"page_size": 2, "page": 2}).json()
    assert page["count"] == 5
    assert [p["slug"] for p in page["results"]] == ["p2", "p3"]
    assert page["next"] and page["previous"]
    error_of(client_for(admin).get(ADMIN_PLANS_URL, {"page": 9}), 404)
    for params, field in (
        ({"page_size": 0}, "page_size"),
        ({"page_size": 101}, "page_size"),
        ({"is_active": "maybe"}, "is_active"),
        ({"page": "x"}, "page"),
    ):
        invalid_field(client_for(admin).get(ADMIN_PLANS_URL, params), field)


def test_retrieve_one_plan(admin, growth):
    body = client_for(admin).get(plan_url(growth.pk)).json()
    assert set(body) == ADMIN_FIELDS
    assert (body["id"], body["slug"], body["features"]) == (str(growth.pk), "growth", ["Priority support"])


def test_another_platforms_plan_is_404(admin, outsider, growth):
    theirs = make_plan(outsider.platform, "theirs")
    before = plan_rows()
    for url in (
        plan_url(theirs.pk),
        plan_url("not-a-uuid"),
        plan_url("00000000-0000-0000-0000-000000000000"),
    ):
        error_of(client_for(admin).get(url), 404, "plan_not_found")
        error_of(send(client_for(admin), "patch", url, {"name": "Mine now"}), 404, "plan_not_found")
        error_of(send(client_for(admin), "put", url, VALID), 404, "plan_not_found")
    assert plan_rows() == before


# --- update ----------------------------------------------------------------------------------------------


def test_patch_changes_only_the_fields_sent(admin, growth):
    response = send(
        client_for(admin),
        "patch",
        plan_url(growth.pk),
        {"name": "Growth+", "features": ["A", "B"], "is_active": False},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["name"], body["features"], body["is_active"]) == ("Growth+", ["A", "B"], False)
    growth.refresh_from_db()
    assert (growth.name, growth.features, growth.is_active, growth.price_monthly) == (
        "Growth+",
        ["A", "B"],
        False,
        2900,
    )
    assert growth.stripe_price_monthly == "price_growth_m"


def test_put_needs_the_required_fields_and_keeps_omitted_optional_ones(admin, growth):
    before = plan_rows()
    invalid_field(
        send(client_for(admin), "put", plan_url(growth.pk), {"name": "Only a name"}), "price_monthly"
    )
    assert plan_rows() == before
    body = {"name": "Growth 2", "price_monthly": 2900, "price_yearly": 29000, "credits_included": "2000"}
    response = send(client_for(admin), "put", plan_url(growth.pk), body)
    assert response.status_code == 200, response.content
    growth.refresh_from_db()
    assert (growth.name, growth.credits_included, growth.features, growth.stripe_price_yearly) == (
        "Growth 2",
        Decimal("2000"),
        ["Priority support"],
        "price_growth_y",
    )


def test_put_of_a_fetched_plan_is_accepted(admin, growth):
    fetched = client_for(admin).get(plan_url(growth.pk)).json()
    response = send(client_for(admin), "put", plan_url(growth.pk), fetched | {"name": "Renamed"})
    assert response.status_code == 200, response.content
    assert response.json() == fetched | {"name": "Renamed", "updated_at": response.json()["updated_at"]}


def test_the_slug_is_fixed(admin, growth):
    before = plan_rows()
    error = invalid_field(send(client_for(admin), "patch", plan_url(growth.pk), {"slug": "growth-2"}), "slug")
    assert "growth" in error["details"]["slug"][0]
    assert plan_rows() == before
    assert send(client_for(admin), "patch", plan_url(growth.pk), {"slug": "growth"}).status_code == 200


def test_a_stripe_priced_cycle_changes_price_only_with_a_new_stripe_price(admin, growth):
    url = plan_url(growth.pk)
    before = plan_rows()
    error = invalid_field(send(client_for(admin), "patch", url, {"price_monthly": 3900}), "price_monthly")
    assert "price_growth_m" in error["details"]["price_monthly"][0]
    invalid_field(
        send(
            client_for(admin), "patch", url, {"price_yearly": 39000, "stripe_price_yearly": "price_growth_y"}
        ),
        "price_yearly",
    )
    assert plan_rows() == before

    response = send(
        client_for(admin), "patch", url, {"price_monthly": 3900, "stripe_price_monthly": "price_new_m"}
    )
    assert response.status_code == 200, response.content
    response = send(client_for(admin), "patch", url, {"price_yearly": 39000, "stripe_price_yearly": ""})
    assert response.status_code == 200, response.content
    growth.refresh_from_db()
    assert (growth.price_monthly, growth.stripe_price_monthly) == (3900, "price_new_m")
    assert (growth.price_yearly, growth.stripe_price_yearly) == (39000, "")
    # without a Stripe price the amount is free to change; the old id is free to reuse
    assert send(client_for(admin), "patch", url, {"price_yearly": 1}).status_code == 200
    assert create(client_for(admin), slug="reuse", stripe_price_monthly="price_growth_m").status_code == 201


def test_an_update_cannot_take_another_plans_ids(admin, growth, pro):
    before = plan_rows()
    error = error_of(
        send(client_for(admin), "patch", plan_url(pro.pk), {"stripe_price_yearly": "price_growth_m"}),
        409,
        "plan_conflict",
    )
    assert set(error["details"]) == {"stripe_price_yearly"}
    assert plan_rows() == before
    # a plan may swap its own prices
    swap = {"stripe_price_monthly": "price_growth_y", "stripe_price_yearly": "price_growth_m"}
    assert send(client_for(admin), "patch", plan_url(growth.pk), swap).status_code == 200


def test_rollover_rules_on_update(admin, growth):
    url = plan_url(growth.pk)
    invalid_field(send(client_for(admin), "patch", url, {"rollover_policy": "capped"}), "rollover_cap")
    invalid_field(send(client_for(admin), "patch", url, {"rollover_cap": "10"}), "rollover_cap")
    assert (
        send(client_for(admin), "patch", url, {"rollover_policy": "capped", "rollover_cap": "10"}).status_code
        == 200
    )
    assert send(client_for(admin), "patch", url, {"rollover_cap": "25"}).status_code == 200
    invalid_field(
        send(client_for(admin), "patch", url, {"rollover_policy": "all", "rollover_cap": "25"}),
        "rollover_cap",
    )
    invalid_field(send(client_for(admin), "patch", url, {"rollover_cap": None}), "rollover_cap")
    growth.refresh_from_db()
    assert (growth.rollover_policy, growth.rollover_cap) == ("capped", Decimal("25"))
    # leaving "capped" without naming the cap clears it
    response = send(client_for(admin), "patch", url, {"rollover_policy": "all"})
    assert response.status_code == 200
    assert (response.json()["rollover_policy"], response.json()["rollover_cap"]) == ("all", None)


BAD_PATCH = [
    ("price_monthly", -5),
    ("price_monthly", 1.5),
    ("price_yearly", "100"),
    ("credits_included", "-0.5"),
    ("credits_included", 1e400),
    ("features", ["a", 3]),
    ("name", ""),
    ("is_active", "false"),
    ("currency", "GBP"),
    ("rollover_policy", "everything"),
    ("sort_order", None),
    ("description", 5),
    ("stripe_price_monthly", "price bad"),
    ("unknown", 1),
]


@pytest.mark.parametrize(("field", "value"), BAD_PATCH, ids=[f"{f}={v!r}" for f, v in BAD_PATCH])
def test_bad_patch_is_a_400_naming_the_field_and_changes_nothing(admin, growth, field, value):
    before = plan_rows()
    raw = (
        json.dumps({field: value})
        if field != "credits_included" or value != 1e400
        else '{"credits_included": 1e400}'
    )
    response = send(client_for(admin), "patch", plan_url(growth.pk), raw)
    invalid_field(response, field)
    assert plan_rows() == before


def test_an_update_that_changes_nothing_writes_nothing(admin, growth):
    before = plan_rows()
    assert send(client_for(admin), "patch", plan_url(growth.pk), {"name": "Growth"}).status_code == 200
    assert send(client_for(admin), "patch", plan_url(growth.pk), {}).status_code == 200
    assert plan_rows() == before  # updated_at included


# --- the services directly ---------------------------------------------------------------------------------


def test_services_check_values_whatever_the_caller(platform, growth):
    with pytest.raises(InvalidInput) as exc:
        plan_create(
            platform=platform,
            slug="x",
            name="X",
            price_monthly=9.99,
            price_yearly=True,
            credits_included=1.5,
            features=("ok", 1),
        )
    assert {"price_monthly", "price_yearly", "credits_included", "features"} <= set(exc.value.details)
    with pytest.raises(InvalidInput):
        plan_update(plan_id=growth.pk, credits_included=Decimal("NaN"))
    with pytest.raises(PlanConflict):
        plan_create(
            platform=platform,
            slug="growth",
            name="Again",
            price_monthly=1,
            price_yearly=1,
            credits_included=Decimal(1),
        )
    with pytest.raises(PlanNotFound):
        plan_update(plan_id="00000000-0000-0000-0000-000000000000", name="x")
    with pytest.raises(PlanNotFound):
        plan_update(plan_id="junk", name="x")
    assert Plan.objects.count() == 1


@pytest.mark.parametrize(
    "change",
    [
        {"features": {"a": 1}},
        {"features": ["ok", 1]},
        {"features": "text"},
        {"rollover_policy": "capped"},
        {"rollover_cap": Decimal(5)},
        {"price_monthly": -1},
        {"currency": "EUR"},
        {"slug": "Bad Slug"},
        {"slug": "free_trial"},
        {"stripe_price_yearly": "price_growth_m"},
        {"sort_order": -1},
    ],
)
def test_postgres_enforces_the_plan_constraints_too(growth, change):
    with pytest.raises(IntegrityError), transaction.atomic():
        Plan.objects.filter(pk=growth.pk).update(**change)


# --- the catalogue (members) --------------------------------------------------------------------------------


def test_members_see_the_active_purchasable_plans_in_order(member, outsider, growth, pro):
    make_plan(member.platform, "legacy", is_active=False, sort_order=0)
    make_plan(member.platform, "enterprise", purchasable=False, sort_order=0)
    make_plan(member.platform, "basic", sort_order=1, price_monthly=500)
    make_plan(outsider.platform, "theirs", sort_order=0)
    response = client_for(member).get(PLANS_URL)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3 and body["next"] is None and body["previous"] is None
    assert [p["slug"] for p in body["results"]] == ["basic", "growth", "pro"]
    first = body["results"][1]
    assert set(first) == PUBLIC_FIELDS | {"is_current"}
    assert first == {
        "id": str(growth.pk),
        "slug": "growth",
        "name": "Growth",
        "description": "",
        "price_monthly": 2900,
        "price_yearly": 29000,
        "currency": "USD",
        "credits_included": "1000.00",
        "features": ["Priority support"],
        "free_trial": False,
        "unlimited_credits": False,
        "rollover_policy": "none",
        "rollover_cap": None,
        "is_current": False,
    }
    assert "stripe_price_monthly" not in response.content.decode()
    assert "price_growth_m" not in response.content.decode()


def test_is_current_marks_the_callers_plan(member, other_member, growth, pro):
    start(member.account, pro)
    mine = client_for(member).get(PLANS_URL).json()["results"]
    assert [(p["slug"], p["is_current"]) for p in mine] == [("growth", False), ("pro", True)]
    theirs = client_for(other_member).get(PLANS_URL).json()["results"]
    assert not any(p["is_current"] for p in theirs)


def test_is_current_ends_with_the_subscription(member, growth):
    sub = start(member.account, growth)
    subscription_set_status(subscription_id=sub.pk, status="canceled")
    assert not any(p["is_current"] for p in client_for(member).get(PLANS_URL).json()["results"])


def test_the_catalogue_is_per_platform_for_members_of_several(member, outsider, growth):
    theirs = make_plan(outsider.platform, "theirs")
    make_member(outsider.platform, member.user.username)  # mia joins globex too
    client = client_for(member)
    error_of(client.get(PLANS_URL), 400, "platform_ambiguous")
    acme = client_for(member, platform_key="acme").get(PLANS_URL).json()
    globex = client_for(member, platform_key="globex").get(PLANS_URL).json()
    assert [p["id"] for p in acme["results"]] == [str(growth.pk)]
    assert [p["id"] for p in globex["results"]] == [str(theirs.pk)]


def test_an_empty_catalogue(member):
    assert client_for(member).get(PLANS_URL).json() == {
        "count": 0,
        "next": None,
        "previous": None,
        "results": [],
    }


def test_operators_see_the_catalogue_of_the_platform_they_name(platform, growth):
    operator = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = client_for(token=api_token_issue(user=operator).key, platform_key="acme")
    body = client.get(PLANS_URL).json()
    assert [(p["slug"], p["is_current"]) for p in body["results"]] == [("growth", False)]
    assert client.get(ADMIN_PLANS_URL).json()["count"] == 1


# --- the caller's subscription ---------------------------------------------------------------------------


def test_subscription_is_null_on_the_free_trial(member):
    response = client_for(member).get(SUBSCRIPTION_URL)
    assert response.status_code == 200
    assert response.json() == {"subscription": None}


def test_subscription_shows_the_current_one(member, growth, pro):
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    sub = start(
        member.account,
        growth,
        billing_cycle="yearly",
        status="trialing",
        trial_end=t0,
        current_period_start=t0,
        current_period_end=t0 + timedelta(days=365),
    )
    body = client_for(member).get(SUBSCRIPTION_URL).json()["subscription"]
    assert body == {
        "id": str(sub.pk),
        "account_id": str(member.account.pk),
        "plan": {
            "id": str(growth.pk),
            "slug": "growth",
            "name": "Growth",
            "credits_included": "1000.00",
            "unlimited_credits": False,
            "free_trial": False,
        },
        "previous_plan": "free_trial",
        "status": "trialing",
        "billing_cycle": "yearly",
        "price": 29000,
        "currency": "USD",
        "current_period_start": "2026-03-01T00:00:00Z",
        "current_period_end": "2027-03-01T00:00:00Z",
        "trial_end": "2026-03-01T00:00:00Z",
        "cancel_at_period_end": False,
        "canceled_at": None,
        "provider": "stripe",
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
    }
    assert "sub_test" not in json.dumps(body) and "cus_test" not in json.dumps(body)
    from subscriptions.services import subscription_change_plan

    subscription_change_plan(subscription_id=sub.pk, plan_id=pro.pk)
    assert client_for(member).get(SUBSCRIPTION_URL).json()["subscription"]["previous_plan"] == "growth"
    subscription_set_status(subscription_id=sub.pk, status="expired")
    assert client_for(member).get(SUBSCRIPTION_URL).json() == {"subscription": None}


def test_each_member_sees_their_own_subscription(member, other_member, growth):
    start(member.account, growth)
    assert client_for(member).get(SUBSCRIPTION_URL).json()["subscription"]["plan"]["slug"] == "growth"
    assert client_for(other_member).get(SUBSCRIPTION_URL).json() == {"subscription": None}


def test_the_platforms_subscription_with_platform_key(admin, member, platform, growth):
    from credits.models import CreditAccount

    platform_account = CreditAccount.objects.get(platform=platform, user__isnull=True)
    start(platform_account, growth)
    body = client_for(admin).get(SUBSCRIPTION_URL, {"platform_key": "acme"}).json()
    assert body["subscription"]["account_id"] == str(platform_account.pk)
    assert client_for(admin).get(SUBSCRIPTION_URL).json() == {"subscription": None}
    error_of(client_for(member).get(SUBSCRIPTION_URL, {"platform_key": "acme"}), 403, "admin_required")


# --- the documented schemas ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict:
    from django.test import Client

    return Client().get("/api/schema/?format=json").json()


def test_real_responses_match_the_schema(schema, admin, member, outsider, growth, pro):
    from tests.api_helpers import ACCOUNT_URL
    from tests.test_service_endpoints import _check

    start(member.account, growth)
    detail = "/api/billing/admin/plans/{plan_id}/"
    admin_client, member_client = client_for(admin), client_for(member)
    _check(schema, PLANS_URL, "get", member_client.get(PLANS_URL))
    _check(schema, PLANS_URL, "get", member_client.get(PLANS_URL, {"page_size": 0}))
    _check(schema, PLANS_URL, "get", APIClient().get(PLANS_URL))
    _check(schema, SUBSCRIPTION_URL, "get", member_client.get(SUBSCRIPTION_URL))
    _check(schema, SUBSCRIPTION_URL, "get", admin_client.get(SUBSCRIPTION_URL))
    _check(schema, SUBSCRIPTION_URL, "get", member_client.get(SUBSCRIPTION_URL, {"platform_key": "acme"}))
    _check(schema, ACCOUNT_URL, "get", member_client.get(ACCOUNT_URL))
    _check(schema, ADMIN_PLANS_URL, "get", admin_client.get(ADMIN_PLANS_URL))
    _check(schema, ADMIN_PLANS_URL, "get", member_client.get(ADMIN_PLANS_URL))
    _check(schema, ADMIN_PLANS_URL, "post", create(admin_client, rollover_policy="capped", rollover_cap="1"))
    _check(schema, ADMIN_PLANS_URL, "post", create(admin_client, slug="growth"))
    _check(schema, ADMIN_PLANS_URL, "post", create(admin_client, price_monthly=-1))
    _check(schema, detail, "get", admin_client.get(plan_url(growth.pk)))
    _check(schema, detail, "get", client_for(outsider).get(plan_url(growth.pk)))
    _check(schema, detail, "put", send(admin_client, "put", plan_url(pro.pk), VALID | {"slug": "pro"}))
    _check(schema, detail, "patch", send(admin_client, "patch", plan_url(pro.pk), {"features": ["x"]}))
    _check(
        schema,
        detail,
        "patch",
        send(admin_client, "patch", plan_url(pro.pk), {"stripe_price_monthly": "price_growth_m"}),
    )
    _check(schema, detail, "patch", send(admin_client, "patch", plan_url(pro.pk), {"slug": "other"}))


def test_the_schema_documents_the_plan_input(schema):
    op = schema["paths"][ADMIN_PLANS_URL]["post"]
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(body["required"]) == set(VALID)
    props = body["properties"]
    assert props["price_monthly"]["type"] == "integer" and props["price_monthly"]["minimum"] == 0
    assert props["credits_included"]["type"] == "string"
    assert props["features"]["type"] == "array" and props["features"]["items"]["type"] == "string"
    assert {"201", "400", "403", "409"} <= set(op["responses"])
    patch = schema["paths"]["/api/billing/admin/plans/{plan_id}/"]["patch"]
    assert (
        "required"
        not in schema["components"]["schemas"][
            patch["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        ]
    )
    account = schema["components"]["schemas"]["CreditAccount"]["properties"]
    assert account["pricing_table"]["properties"]["plans"]["type"] == "array"
