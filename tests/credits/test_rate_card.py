"""The rate card: model_price_create, /api/billing/admin/models/ and its Django admin."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Role
from billing_service.errors import Conflict, InvalidInput
from credits.models import ModelPrice, PricingSource, UsageEvent
from credits.selectors import model_price_at
from credits.errors import ModelPriceConflict
from credits.services.rate_card import model_price_create
from credits.services import UsageInput, usage_record
from tests.api_helpers import assert_money, assert_utc, error_of, invalid_field, iso_z, post_json
from tests.conftest import client_for, make_member, make_platform

pytestmark = pytest.mark.django_db

MODELS_URL = "/api/billing/admin/models/"
VERSION_FIELDS = {
    "id",
    "model",
    "input_per_million",
    "output_per_million",
    "effective_from",
    "effective_until",
    "status",
    "description",
    "created_by",
    "created_at",
}


def model_url(model: str) -> str:
    return f"{MODELS_URL}{model}/"


def create(client, **body):  # noqa: ANN001, ANN003, ANN201
    payload = {"model": "gpt-4o", "input_per_million": "2.50", "output_per_million": "10.00", **body}
    return post_json(client, MODELS_URL, payload)


def seed(platform, model, input_price, output_price, at, description=""):  # noqa: ANN001, ANN201
    """A version straight in the database (the service refuses most past instants by design)."""
    return ModelPrice.objects.create(
        platform=platform,
        model=model,
        input_per_million=Decimal(input_price),
        output_per_million=Decimal(output_price),
        effective_from=at,
        description=description,
    )


# --- creating versions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owner_or_admin_adds_a_version_effective_now(request, role):
    caller = request.getfixturevalue(role)
    before = timezone.now()
    response = create(client_for(caller), description="launch price")
    after = timezone.now()
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == VERSION_FIELDS
    price = ModelPrice.objects.get(pk=body["id"])
    assert (price.platform_id, price.model, price.input_per_million, price.output_per_million) == (
        caller.platform.pk,
        "gpt-4o",
        Decimal("2.5"),
        Decimal("10"),
    )
    assert price.created_by_id == caller.user.pk
    assert price.description == "launch price"
    assert before <= price.effective_from <= after
    assert body["input_per_million"] == "2.50"
    assert body["output_per_million"] == "10.00"
    assert assert_utc(body["effective_from"]) == price.effective_from
    assert assert_utc(body["created_at"]) == price.created_at
    assert body["effective_until"] is None
    assert body["status"] == "current"
    assert body["created_by"] == caller.user.username
    assert body["description"] == "launch price"
    assert response["Location"] == model_url("gpt-4o")


def test_a_scheduled_version_leaves_the_current_one_in_effect(owner):
    client = client_for(owner)
    first = create(client).json()
    start = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    response = create(client, input_per_million="3", output_per_million="12", effective_from=iso_z(start))
    assert response.status_code == 201, response.content
    scheduled = response.json()
    assert scheduled["status"] == "scheduled"
    assert assert_utc(scheduled["effective_from"]) == start
    body = client.get(model_url("gpt-4o")).json()
    assert body["current"]["id"] == first["id"]
    assert [v["id"] for v in body["versions"]] == [scheduled["id"], first["id"]]
    assert [v["status"] for v in body["versions"]] == ["scheduled", "current"]
    assert body["versions"][1]["effective_until"] == scheduled["effective_from"]
    # a version added now, before the scheduled one, ends where the scheduled one begins
    middle = create(client, input_per_million="2.75").json()
    assert middle["status"] == "current"
    assert middle["effective_until"] == scheduled["effective_from"]


def test_offsets_and_naive_times_are_taken_as_instants(owner):
    start = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    shifted = start.astimezone(timezone.get_fixed_timezone(-300)).isoformat()  # same instant, UTC-05:00
    body = create(client_for(owner), effective_from=shifted).json()
    assert assert_utc(body["effective_from"]) == start
    naive = (start + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    body = create(client_for(owner), effective_from=naive).json()
    assert assert_utc(body["effective_from"]) == start + timedelta(hours=1)


def test_null_effective_from_means_now(owner):
    response = create(client_for(owner), effective_from=None)
    assert response.status_code == 201
    assert response.json()["status"] == "current"


def test_zero_prices_are_allowed(owner):
    response = create(client_for(owner), model="free-model", input_per_million="0", output_per_million=0)
    assert response.status_code == 201, response.content
    assert (response.json()["input_per_million"], response.json()["output_per_million"]) == ("0.00", "0.00")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("2.5", "2.50"), ("1e-6", "0.000001"), ("1000000000", "1000000000.00"), ("7", "7.00")],
)
def test_json_numbers_are_taken_exactly(owner, raw, expected):
    body = f'{{"model": "m1", "input_per_million": {raw}, "output_per_million": "1"}}'
    response = post_json(client_for(owner), MODELS_URL, body)
    assert response.status_code == 201, response.content
    assert response.json()["input_per_million"] == expected
    assert ModelPrice.objects.get(pk=response.json()["id"]).input_per_million == Decimal(expected)


@pytest.mark.parametrize(
    "model",
    ["meta-llama/Llama-3-70b", "llama3.1:8b", "claude-3-5-sonnet@20240620", "A+B_c", "a/b.c/d-1", "m" * 100],
)
def test_model_names_with_punctuation_work_in_urls(owner, model):
    assert create(client_for(owner), model=model).status_code == 201
    body = client_for(owner).get(model_url(model)).json()
    assert body["model"] == model
    assert len(body["versions"]) == 1


def test_same_instant_twice_is_a_409_and_writes_nothing(owner):
    at = iso_z((timezone.now() + timedelta(days=1)).replace(microsecond=123456))
    first = create(client_for(owner), effective_from=at).json()
    count = ModelPrice.objects.count()
    error = error_of(
        create(client_for(owner), effective_from=at, input_per_million="9"), 409, "model_price_version_exists"
    )
    assert error["details"]["existing_version_id"] == first["id"]
    assert error["details"]["input_per_million"] == "2.50"
    assert error["details"]["effective_from"] == at
    assert ModelPrice.objects.count() == count
    # the same instant for another model, or one microsecond later, is fine
    assert create(client_for(owner), effective_from=at, model="other").status_code == 201
    later = iso_z(datetime.fromisoformat(at.replace("Z", "+00:00")) + timedelta(microseconds=1))
    assert create(client_for(owner), effective_from=later).status_code == 201


def test_the_same_instant_on_another_platform_is_independent(owner, outsider):
    at = iso_z(timezone.now() + timedelta(days=1))
    assert create(client_for(owner), effective_from=at).status_code == 201
    assert create(client_for(outsider), effective_from=at).status_code == 201


def test_past_effective_from_is_refused_once_the_model_has_an_earlier_version(owner, platform):
    client = client_for(owner)
    seed(platform, "gpt-4o", "3", "12", timezone.now() - timedelta(days=1000))
    count = ModelPrice.objects.count()
    for ago in (timedelta(minutes=2), timedelta(days=400)):
        error = invalid_field(create(client, effective_from=iso_z(timezone.now() - ago)), "effective_from")
        assert error["code"] == "invalid"
        assert "past" in error["details"]["effective_from"][0]
    assert ModelPrice.objects.count() == count
    # within a minute (clock skew) is accepted
    assert create(client, effective_from=iso_z(timezone.now() - timedelta(seconds=30))).status_code == 201


def test_a_first_version_may_start_in_the_past(owner, platform):
    """Nothing was priced from the card before a model's first version: backdating it reprices nothing."""
    client = client_for(owner)
    start = (timezone.now() - timedelta(days=90)).replace(microsecond=0)
    response = create(client, model="late-model", effective_from=iso_z(start))
    assert response.status_code == 201, response.content
    # and a version before the earliest one is also safe
    earlier = create(client, model="late-model", effective_from=iso_z(start - timedelta(days=30)))
    assert earlier.status_code == 201
    assert earlier.json()["status"] == "superseded"
    assert earlier.json()["effective_until"] == iso_z(start)
    # but once versions exist, the time between them was priced: no backdating in between
    between = start + timedelta(days=10)
    invalid_field(create(client, model="late-model", effective_from=iso_z(between)), "effective_from")


def test_more_than_five_years_ahead_is_refused(owner):
    before = ModelPrice.objects.count()
    invalid_field(
        create(client_for(owner), effective_from=iso_z(timezone.now() + timedelta(days=5 * 365 + 2))),
        "effective_from",
    )
    assert ModelPrice.objects.count() == before
    assert (
        create(client_for(owner), effective_from=iso_z(timezone.now() + timedelta(days=4 * 365))).status_code
        == 201
    )


BAD_BODIES = [
    ("input_per_million", {"input_per_million": "-1"}),
    ("input_per_million", {"input_per_million": "-0.000001"}),
    ("input_per_million", {"input_per_million": "NaN"}),
    ("input_per_million", {"input_per_million": "Infinity"}),
    ("input_per_million", {"input_per_million": "-Infinity"}),
    ("input_per_million", {"input_per_million": "1e400"}),
    ("input_per_million", {"input_per_million": "0.0000001"}),
    ("input_per_million", {"input_per_million": "1000000000.000001"}),
    ("input_per_million", {"input_per_million": "99999999999999999999"}),
    ("input_per_million", {"input_per_million": "abc"}),
    ("input_per_million", {"input_per_million": ""}),
    ("input_per_million", {"input_per_million": True}),
    ("input_per_million", {"input_per_million": None}),
    ("input_per_million", {"input_per_million": ["1"]}),
    ("input_per_million", {"input_per_million": {"amount": "1"}}),
    ("output_per_million", {"output_per_million": "-5"}),
    ("output_per_million", {"output_per_million": "1.1234567"}),
    ("output_per_million", {"output_per_million": False}),
    ("model", {"model": ""}),
    ("model", {"model": None}),
    ("model", {"model": 123}),
    ("model", {"model": ["gpt-4o"]}),
    ("model", {"model": " gpt-4o"}),
    ("model", {"model": "gpt-4o "}),
    ("model", {"model": "gpt 4o"}),
    ("model", {"model": "gpt?4o"}),
    ("model", {"model": "gpt#4o"}),
    ("model", {"model": "-gpt"}),
    ("model", {"model": "gpt\n4o"}),
    ("model", {"model": "é-model"}),
    ("model", {"model": "m" * 101}),
    ("model", {"model": "a//b"}),
    ("model", {"model": "a/"}),
    ("model", {"model": "/a"}),
    ("model", {"model": "a/../b"}),
    ("model", {"model": "a/.b"}),
    ("effective_from", {"effective_from": "tomorrow"}),
    ("effective_from", {"effective_from": "2030-13-01T00:00:00Z"}),
    ("effective_from", {"effective_from": "2030-02-30"}),
    ("effective_from", {"effective_from": 1893456000}),
    ("effective_from", {"effective_from": True}),
    ("effective_from", {"effective_from": "99999-01-01T00:00:00Z"}),
    ("effective_from", {"effective_from": "0001-01-01T00:00:00+01:00"}),
    ("description", {"description": 7}),
    ("description", {"description": "x" * 201}),
    ("description", {"description": None}),
]


@pytest.mark.parametrize(
    ("field", "override"), BAD_BODIES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_BODIES)]
)
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(owner, field, override):
    create(client_for(owner))
    before = list(ModelPrice.objects.values_list("pk", flat=True))
    invalid_field(create(client_for(owner), **override), field)
    assert list(ModelPrice.objects.values_list("pk", flat=True)) == before


@pytest.mark.parametrize("missing", ["model", "input_per_million", "output_per_million"])
def test_required_fields(owner, missing):
    body = {"model": "gpt-4o", "input_per_million": "1", "output_per_million": "1"}
    del body[missing]
    invalid_field(post_json(client_for(owner), MODELS_URL, body), missing)
    assert not ModelPrice.objects.exists()


@pytest.mark.parametrize("raw", ["", "[]", "not json", '{"model": "x", "input_per_million": NaN}', "null"])
def test_malformed_bodies_are_400(owner, raw):
    response = post_json(client_for(owner), MODELS_URL, raw)
    assert response.status_code == 400
    error_of(response, 400)
    assert not ModelPrice.objects.exists()


# --- who may -----------------------------------------------------------------------------------------------


def test_members_cannot_read_or_manage_the_rate_card(member, owner):
    create(client_for(owner))
    count = ModelPrice.objects.count()
    client = client_for(member)
    error_of(create(client, model="mine"), 403, "admin_required")
    error_of(client.get(MODELS_URL), 403, "admin_required")
    error_of(client.get(model_url("gpt-4o")), 403, "admin_required")
    assert ModelPrice.objects.count() == count


def test_anonymous_and_bad_tokens_are_401(owner):
    create(client_for(owner))
    for client in (APIClient(), client_for(token="nope")):
        error_of(create(client), 401)
        error_of(client.get(MODELS_URL), 401)
        error_of(client.get(model_url("gpt-4o")), 401)
    assert ModelPrice.objects.count() == 1


def test_admins_of_another_platform_cannot_touch_this_one(owner, outsider):
    create(client_for(owner))
    foreign = client_for(outsider, platform_key="acme")
    error_of(create(foreign, model="x"), 403, "not_a_member")
    error_of(foreign.get(MODELS_URL), 403, "not_a_member")
    error_of(foreign.get(model_url("gpt-4o")), 403, "not_a_member")
    # in their own platform they see their own card only
    own = client_for(outsider)
    assert own.get(MODELS_URL).json()["count"] == 0
    error_of(own.get(model_url("gpt-4o")), 404, "model_not_found")
    assert create(own, input_per_million="5").status_code == 201
    assert ModelPrice.objects.get(platform__platform_key="globex").created_by_id == outsider.user.pk
    acme = client_for(owner).get(model_url("gpt-4o")).json()
    assert [v["input_per_million"] for v in acme["versions"]] == ["2.50"]


def test_a_user_of_two_platforms_picks_one_with_the_header(owner, platform):
    other = make_platform("initech")
    from accounts.services import member_add

    member_add(platform=other, username=owner.user.username, role=Role.MEMBER)
    error_of(create(client_for(owner)), 400, "platform_ambiguous")
    assert create(client_for(owner, platform_key="acme")).status_code == 201
    error_of(create(client_for(owner, platform_key="initech")), 403, "admin_required")


def test_versions_are_never_edited_or_deleted_over_http(owner):
    version = create(client_for(owner)).json()
    client = client_for(owner)
    for method in ("put", "patch", "delete"):
        error_of(getattr(client, method)(model_url("gpt-4o"), {"input_per_million": "0"}, format="json"), 405)
        error_of(getattr(client, method)(MODELS_URL, {"input_per_million": "0"}, format="json"), 405)
    assert ModelPrice.objects.get(pk=version["id"]).input_per_million == Decimal("2.5")


# --- listing ------------------------------------------------------------------------------------------------


def test_listing_shows_each_models_current_price_and_history(owner, platform):
    now = timezone.now()
    old = seed(platform, "gpt-4o", "5", "15", now - timedelta(days=60), "launch")
    cur = seed(platform, "gpt-4o", "2.5", "10", now - timedelta(days=10), "cut")
    nxt = seed(platform, "gpt-4o", "2", "8", now + timedelta(days=10), "next cut")
    mini = seed(platform, "gpt-4o-mini", "0.15", "0.6", now - timedelta(days=1))
    soon = seed(platform, "o5", "20", "80", now + timedelta(hours=1))
    body = client_for(owner).get(MODELS_URL).json()
    assert body["count"] == 3
    assert (body["next"], body["previous"]) == (None, None)
    assert [m["model"] for m in body["results"]] == ["gpt-4o", "gpt-4o-mini", "o5"]
    gpt = body["results"][0]
    assert gpt["current"]["id"] == cur.pk
    assert gpt["current"]["input_per_million"] == "2.50"
    assert [v["id"] for v in gpt["versions"]] == [nxt.pk, cur.pk, old.pk]
    assert [v["status"] for v in gpt["versions"]] == ["scheduled", "current", "superseded"]
    assert [v["effective_until"] for v in gpt["versions"]] == [
        None,
        iso_z(nxt.effective_from),
        iso_z(cur.effective_from),
    ]
    assert [v["description"] for v in gpt["versions"]] == ["next cut", "cut", "launch"]
    assert gpt["versions"][0]["created_by"] is None  # seeded without an actor
    for version in gpt["versions"]:
        assert set(version) == VERSION_FIELDS
        assert_money(version["input_per_million"])
        assert_money(version["output_per_million"])
    assert body["results"][1]["current"]["id"] == mini.pk
    assert body["results"][2]["current"] is None
    assert [v["id"] for v in body["results"][2]["versions"]] == [soon.pk]


def test_listing_filters_by_model_exactly(owner, platform):
    seed(platform, "gpt-4o", "1", "1", timezone.now())
    seed(platform, "gpt-4o-mini", "1", "1", timezone.now())
    body = client_for(owner).get(MODELS_URL, {"model": "gpt-4o"}).json()
    assert [m["model"] for m in body["results"]] == ["gpt-4o"]
    assert body["count"] == 1
    assert client_for(owner).get(MODELS_URL, {"model": "gpt"}).json() == {
        "count": 0,
        "next": None,
        "previous": None,
        "results": [],
    }


def test_listing_pages_by_model(owner, platform):
    for i in range(5):
        for days in (1, 2):
            seed(platform, f"model-{i}", "1", "1", timezone.now() - timedelta(days=days))
    client = client_for(owner)
    first = client.get(MODELS_URL, {"page_size": 2}).json()
    assert first["count"] == 5
    assert [m["model"] for m in first["results"]] == ["model-0", "model-1"]
    assert all(len(m["versions"]) == 2 for m in first["results"])
    third = client.get(first["next"].replace("http://testserver", "")).json()
    third = client.get(third["next"].replace("http://testserver", "")).json()
    assert [m["model"] for m in third["results"]] == ["model-4"]
    assert third["next"] is None
    assert third["count"] == 5
    error_of(client.get(MODELS_URL, {"page": 4, "page_size": 2}), 404)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": 0}, "page"),
        ({"page": "x"}, "page"),
        ({"page_size": 101}, "page_size"),
        ({"page_size": 0}, "page_size"),
        ({"model": "m" * 101}, "model"),
    ],
)
def test_listing_bad_query_is_400(owner, params, field):
    invalid_field(client_for(owner).get(MODELS_URL, params), field)


def test_listing_query_count_does_not_grow_with_versions(owner, platform, django_assert_max_num_queries):
    for i in range(20):
        for days in range(1, 6):
            seed(platform, f"model-{i:02}", "1", "1", timezone.now() - timedelta(days=days))
    client = client_for(owner)
    with django_assert_max_num_queries(8):
        body = client.get(MODELS_URL, {"page_size": 100}).json()
    assert len(body["results"]) == 20
    assert sum(len(m["versions"]) for m in body["results"]) == 100


def test_unknown_model_is_404(owner):
    error_of(client_for(owner).get(model_url("nope")), 404, "model_not_found")


# --- the service --------------------------------------------------------------------------------------------


def test_service_rejects_what_the_api_would_never_pass(platform, owner):
    base = {
        "platform": platform,
        "model": "m",
        "input_per_million": Decimal(1),
        "output_per_million": Decimal(1),
        "actor": owner.user,
    }
    for bad in (
        {"model": "bad name"},
        {"input_per_million": Decimal("-1")},
        {"output_per_million": Decimal("NaN")},
        {"input_per_million": 1.5},
        {"input_per_million": Decimal("0.0000001")},
        {"effective_from": datetime(2030, 1, 1)},
        {"description": "x" * 201},
    ):
        with pytest.raises(ValueError):
            model_price_create(**{**base, **bad})
    assert not ModelPrice.objects.exists()
    with pytest.raises(InvalidInput):
        model_price_create(**base, effective_from=timezone.now() + timedelta(days=3650))
    at = timezone.now() + timedelta(days=1)
    model_price_create(**base, effective_from=at)
    with pytest.raises(ModelPriceConflict) as caught:
        model_price_create(**base, effective_from=at)
    assert isinstance(caught.value, Conflict) and caught.value.status_code == 409


@pytest.mark.django_db(transaction=True)
def test_concurrent_versions_at_the_same_instant_one_wins(db):
    platform = make_platform("acme")
    admin = make_member(platform, "adam", Role.ADMIN)
    at = timezone.now() + timedelta(days=1)
    barrier = threading.Barrier(4)
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        try:
            barrier.wait()
            model_price_create(
                platform=platform,
                model="gpt-4o",
                input_per_million=Decimal(i),
                output_per_million=Decimal(i),
                effective_from=at,
                actor=admin.user,
            )
            result = "created"
        except ModelPriceConflict:
            result = "conflict"
        finally:
            connection.close()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict", "conflict", "conflict", "created"]
    assert ModelPrice.objects.filter(platform=platform, model="gpt-4o").count() == 1


# --- usage is priced by the version in effect, and keeps it -------------------------------------------------


def test_usage_is_priced_by_the_version_in_effect_and_keeps_its_id(owner, member, platform):
    client = client_for(owner)
    first = create(client, input_per_million="2.50", output_per_million="10.00").json()
    tomorrow = timezone.now() + timedelta(days=1)
    second = create(
        client, input_per_million="1.25", output_per_million="5", effective_from=iso_z(tomorrow)
    ).json()
    now_event = usage_record(
        platform=platform,
        usage=UsageInput(
            account_id=member.account.id,
            request_id="r1",
            endpoint="/chat",
            model="gpt-4o",
            input_tokens=1000,
            output_tokens=2000,
        ),
    )
    later_event = usage_record(
        platform=platform,
        usage=UsageInput(
            account_id=member.account.id,
            request_id="r2",
            endpoint="/chat",
            model="gpt-4o",
            input_tokens=1000,
            output_tokens=2000,
            occurred_at=tomorrow + timedelta(seconds=1),
        ),
    )
    # 1000 * 2.50 / 1e6 + 2000 * 10 / 1e6 = 0.0225; at the new version half of it
    assert (now_event.event.cost, now_event.event.price_id) == (Decimal("0.0225"), first["id"])
    assert (later_event.event.cost, later_event.event.price_id) == (Decimal("0.01125"), second["id"])
    # each charge explained line by line: model, tokens and the version
    for event in UsageEvent.objects.filter(account=member.account).select_related("price"):
        assert event.priced_by == PricingSource.RATE_CARD
        assert event.model == event.price.model == "gpt-4o"
        expected = (
            event.input_tokens * event.price.input_per_million
            + event.output_tokens * event.price.output_per_million
        ) / Decimal(1_000_000)
        assert event.cost == expected
    # a version backdated before the first one covers only time nothing was priced in: every event is
    # still explained by the version in effect when it occurred
    assert create(client, effective_from=iso_z(timezone.now() - timedelta(hours=1))).status_code == 201
    for event in UsageEvent.objects.filter(account=member.account):
        assert (
            model_price_at(platform_id=platform.pk, model="gpt-4o", at=event.occurred_at).pk == event.price_id
        )
    assert ModelPrice.objects.get(pk=first["id"]).input_per_million == Decimal("2.5")


# --- Django admin -------------------------------------------------------------------------------------------


def admin_form(platform, **values):  # noqa: ANN001, ANN003, ANN201
    form = {
        "platform": platform.pk,
        "model": "gpt-4o",
        "input_per_million": "2.5",
        "output_per_million": "10",
        "effective_from_0": "",
        "effective_from_1": "",
        "description": "via admin",
    }
    form.update(values)
    return form


def test_admin_adds_a_version_through_the_service(browser, operator, platform):
    assert browser.get(reverse("admin:credits_modelprice_add")).status_code == 200
    response = browser.post(reverse("admin:credits_modelprice_add"), admin_form(platform))
    assert response.status_code == 302, response.content[:3000]
    price = ModelPrice.objects.get()
    assert price.created_by_id == operator.pk
    assert (price.model, price.input_per_million, price.description) == (
        "gpt-4o",
        Decimal("2.5"),
        "via admin",
    )
    assert abs(price.effective_from - timezone.now()) < timedelta(minutes=1)
    # a scheduled one with an explicit time (UTC)
    at = (timezone.now() + timedelta(days=3)).astimezone(UTC)
    response = browser.post(
        reverse("admin:credits_modelprice_add"),
        admin_form(
            platform,
            effective_from_0=at.strftime("%Y-%m-%d"),
            effective_from_1=at.strftime("%H:%M:%S"),
            input_per_million="2",
        ),
    )
    assert response.status_code == 302
    assert ModelPrice.objects.filter(effective_from=at.replace(microsecond=0), created_by=operator).exists()


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"input_per_million": "-1"}, "input_per_million"),
        ({"output_per_million": "1000000001"}, "output_per_million"),
        ({"input_per_million": "0.0000001"}, "input_per_million"),
        ({"model": "bad name"}, "model"),
        ({"model": ""}, "model"),
    ],
)
def test_admin_form_refuses_bad_values(browser, platform, values, field):
    response = browser.post(reverse("admin:credits_modelprice_add"), admin_form(platform, **values))
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert not ModelPrice.objects.exists()


def test_admin_form_refuses_backdating_and_duplicates(browser, platform):
    seed(platform, "gpt-4o", "1", "1", timezone.now() - timedelta(days=5))
    past = timezone.now() - timedelta(days=1)
    response = browser.post(
        reverse("admin:credits_modelprice_add"),
        admin_form(
            platform, effective_from_0=past.strftime("%Y-%m-%d"), effective_from_1=past.strftime("%H:%M:%S")
        ),
    )
    assert response.status_code == 200
    assert "effective_from" in response.context["adminform"].form.errors
    future = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    seed(platform, "gpt-4o", "1", "1", future)
    response = browser.post(
        reverse("admin:credits_modelprice_add"),
        admin_form(
            platform,
            effective_from_0=future.strftime("%Y-%m-%d"),
            effective_from_1=future.strftime("%H:%M:%S"),
        ),
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert ModelPrice.objects.count() == 2


def test_admin_versions_cannot_be_changed_or_deleted(browser, platform):
    price = seed(platform, "gpt-4o", "1", "2", timezone.now())
    change_url = reverse("admin:credits_modelprice_change", args=[price.pk])
    assert browser.get(change_url).status_code == 200  # viewable
    assert browser.post(change_url, admin_form(platform, input_per_million="0")).status_code == 403
    assert (
        browser.post(reverse("admin:credits_modelprice_delete", args=[price.pk]), {"post": "yes"}).status_code
        == 403
    )
    price.refresh_from_db()
    assert price.input_per_million == Decimal("1")


def test_admin_changelists_search_and_filter(browser, platform, other_platform, member):
    seed(platform, "gpt-4o", "1", "2", timezone.now())
    seed(other_platform, "claude", "1", "2", timezone.now())
    url = reverse("admin:credits_modelprice_changelist")
    assert browser.get(url, {"q": "gpt"}).context["cl"].result_count == 1
    assert browser.get(url, {"platform__id__exact": other_platform.pk}).context["cl"].result_count == 1
    assert browser.get(url, {"model": "claude"}).status_code == 200
    usage_record(
        platform=platform,
        usage=UsageInput(
            account_id=member.account.id,
            request_id="r1",
            endpoint="/chat",
            model="gpt-4o",
            input_tokens=10,
            output_tokens=10,
        ),
    )
    for name in ("usageevent", "usagerollup"):
        changelist = reverse(f"admin:credits_{name}_changelist")
        response = browser.get(changelist, {"q": "mia"})
        assert response.status_code == 200
        assert response.context["cl"].result_count == 1
        assert browser.get(reverse(f"admin:credits_{name}_add")).status_code == 403


def test_admin_usage_events_and_rollups_are_read_only(browser, platform, member):
    seed(platform, "gpt-4o", "1", "2", timezone.now() - timedelta(seconds=1))
    result = usage_record(
        platform=platform,
        usage=UsageInput(
            account_id=member.account.id,
            request_id="r1",
            endpoint="/chat",
            model="gpt-4o",
            input_tokens=10,
            output_tokens=10,
        ),
    )
    event_url = reverse("admin:credits_usageevent_change", args=[result.event.pk])
    assert browser.get(event_url).status_code == 200
    assert browser.post(event_url, {"endpoint": "edited"}).status_code == 403
    assert (
        browser.post(
            reverse("admin:credits_usageevent_delete", args=[result.event.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    from credits.models import UsageRollup

    rollup = UsageRollup.objects.get(account=member.account)
    rollup_url = reverse("admin:credits_usagerollup_change", args=[rollup.pk])
    assert browser.get(rollup_url).status_code == 200
    assert browser.post(rollup_url, {"total_requests": "99"}).status_code == 403
    assert (
        browser.post(
            reverse("admin:credits_usagerollup_delete", args=[rollup.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    rollup.refresh_from_db()
    assert rollup.total_requests == 1
    assert UsageEvent.objects.get(pk=result.event.pk).endpoint == "/chat"


# --- schema -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict:
    return Client().get("/api/schema/?format=json").json()


def test_schema_documents_the_rate_card(schema):
    from tests.test_service_endpoints import _is_error_envelope

    listing = schema["paths"][MODELS_URL]["get"]
    creating = schema["paths"][MODELS_URL]["post"]
    one = schema["paths"][MODELS_URL + "{model}/"]["get"]
    assert (listing["operationId"], creating["operationId"], one["operationId"]) == (
        "billing_admin_models_list",
        "billing_admin_models_create",
        "billing_admin_models_retrieve",
    )
    for op in (listing, creating, one):
        assert op["summary"] and "rate card" in op["description"]
        for code in ("400", "401", "403", "404"):
            assert _is_error_envelope(schema, op["responses"][code]), code
    assert _is_error_envelope(schema, creating["responses"]["409"])
    assert "model_price_version_exists" in creating["responses"]["409"]["description"]
    assert "model_not_found" in one["responses"]["404"]["description"]
    ref = creating["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(body["required"]) == {"model", "input_per_million", "output_per_million"}
    assert body["properties"]["input_per_million"]["type"] == "string"
    assert body["properties"]["effective_from"]["format"] == "date-time"
    assert body["properties"]["model"]["maxLength"] == 100
    assert {p["name"] for p in listing["parameters"] if p["in"] == "query"} == {"model", "page", "page_size",
                                                                                      "offset", "limit"}


def test_real_rate_card_responses_match_the_schema(schema, owner, member, platform):
    from tests.test_service_endpoints import _check

    client = client_for(owner)
    seed(platform, "gpt-4o", "5", "15", timezone.now() - timedelta(days=3))
    _check(
        schema, MODELS_URL, "post", create(client, effective_from=iso_z(timezone.now() + timedelta(days=1)))
    )
    _check(
        schema,
        MODELS_URL,
        "post",
        create(client, model="o5", effective_from=iso_z(timezone.now() + timedelta(days=1))),
    )
    _check(schema, MODELS_URL, "get", client.get(MODELS_URL))
    _check(schema, MODELS_URL + "{model}/", "get", client.get(model_url("gpt-4o")))
    _check(schema, MODELS_URL + "{model}/", "get", client.get(model_url("o5")))  # current is null
    # errors
    _check(schema, MODELS_URL, "post", create(client, input_per_million="-1"))
    at = iso_z(timezone.now() + timedelta(days=2))
    create(client, effective_from=at)
    _check(schema, MODELS_URL, "post", create(client, effective_from=at))
    _check(schema, MODELS_URL, "post", create(client_for(member)))
    _check(schema, MODELS_URL, "get", APIClient().get(MODELS_URL))
    _check(schema, MODELS_URL + "{model}/", "get", client.get(model_url("nope")))
