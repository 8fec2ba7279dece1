"""The entitlements Django admin (beside the API): AI plans written through the catalogue's services, seats
assigned and freed through the seat services, budget windows and charges read-only."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from credits.services import model_price_create
from entitlements.models import AIPlan, AIPlanModel, ChargeKind, SeatAssignment, SeatCharge, SeatWindow, Tier
from entitlements.services import seat_assign, seats_grant
from tests.entitlements.conftest import make_ai_plan
from tests.entitlements.test_api import catalogue_state

pytestmark = pytest.mark.django_db

ASSIGNMENTS = "admin:entitlements_seatassignment_changelist"


@pytest.fixture
def root(db):  # noqa: ANN001, ANN201
    return get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-only")


@pytest.fixture
def browser(root) -> Client:  # noqa: ANN001
    client = Client()
    client.force_login(root)
    return client


@pytest.fixture
def priced(platform):  # noqa: ANN001, ANN201
    for model in ("gpt-4o", "gpt-4o-mini"):
        model_price_create(platform=platform, model=model, input_per_million=D("1"), output_per_million=D("2"),
                           actor=None)


@pytest.mark.parametrize("name", ["aiplan", "seatsubscription", "seatassignment", "seatwindow", "seatcharge"])
def test_changelists_render(browser, platform, member, ai_plan, name):
    response = browser.get(reverse(f"admin:entitlements_{name}_changelist"), {"q": "mia"})
    assert response.status_code == 200


# --- seat assignments through the services --------------------------------------------------------------------


def _assign(browser, platform, plan, username):  # noqa: ANN001, ANN202
    return browser.post(reverse("admin:entitlements_seatassignment_add"),
                        {"platform": platform.pk, "ai_plan": plan.pk, "username": username})


def test_the_add_form_assigns_a_seat_through_the_service(browser, root, platform, member, ai_plan):
    seats_grant(platform=platform, ai_plan=ai_plan, quantity=1)
    assert browser.get(reverse("admin:entitlements_seatassignment_add")).status_code == 200

    response = _assign(browser, platform, ai_plan, "mia")

    assert response.status_code == 302 and response["Location"] == reverse(ASSIGNMENTS)
    assignment = SeatAssignment.objects.get()
    assert (assignment.user_id, assignment.assigned_by_id) == (member.user.pk, root.pk)


@pytest.mark.parametrize(("setup", "username", "message"), [
    ("seats", "nobody", b"No member of this platform"),
    ("seats", "gina", b"No member of this platform"),
    ("none", "mia", b"Every seat of this AI plan is assigned"),
    ("assigned", "mia", b"already holds a seat"),
])
def test_the_add_form_shows_the_services_refusals_and_writes_nothing(browser, platform, member, outsider, ai_plan,
                                                                     setup, username, message):
    if setup != "none":
        seats_grant(platform=platform, ai_plan=ai_plan, quantity=2)
    if setup == "assigned":
        seat_assign(platform=platform, ai_plan=ai_plan, username="mia", actor=None)
    before = catalogue_state()
    response = _assign(browser, platform, ai_plan, username)
    assert response.status_code == 200 and message in response.content
    assert catalogue_state() == before


def test_the_add_form_refuses_a_plan_not_offered_to_the_platform(browser, platform, other_platform, member):
    plan = make_ai_plan("globex-only")
    plan.platforms.add(other_platform)
    response = _assign(browser, platform, plan, "mia")
    assert response.status_code == 200 and b"Not offered to the platform acme" in response.content
    assert not SeatAssignment.objects.exists()


def test_assignments_are_freed_by_the_action_and_never_edited_or_deleted_directly(browser, platform, member,
                                                                                  ai_plan):
    seats_grant(platform=platform, ai_plan=ai_plan, quantity=1)
    assignment = seat_assign(platform=platform, ai_plan=ai_plan, username="mia", actor=None)
    change = reverse("admin:entitlements_seatassignment_change", args=[assignment.pk])
    assert browser.post(change, {}).status_code == 403
    assert browser.post(reverse("admin:entitlements_seatassignment_delete", args=[assignment.pk]),
                        {"post": "yes"}).status_code == 403
    assert SeatAssignment.objects.exists()

    response = browser.post(reverse(ASSIGNMENTS), {"action": "unassign_seats", "_selected_action": [assignment.pk]})

    assert response.status_code == 302
    assert not SeatAssignment.objects.exists()


def test_staff_without_the_permissions_can_neither_assign_nor_free(platform, member, ai_plan):
    staff = get_user_model().objects.create_user("staff", password="pw-for-tests-only", is_staff=True)
    client = Client()
    client.force_login(staff)
    seats_grant(platform=platform, ai_plan=ai_plan, quantity=1)
    assert client.post(reverse("admin:entitlements_seatassignment_add"),
                       {"platform": platform.pk, "ai_plan": ai_plan.pk, "username": "mia"}).status_code == 403
    assert not SeatAssignment.objects.exists()


# --- windows and charges: read-only ---------------------------------------------------------------------------


def test_windows_and_charges_are_read_only(browser, platform, member, ai_plan):
    now = timezone.now()
    week = SeatWindow.objects.create(platform=platform, user=member.user, kind="weekly", starts_at=now,
                                     ends_at=now + timedelta(days=7), spent=D("0.0000004"))
    session = SeatWindow.objects.create(platform=platform, user=member.user, kind="session", starts_at=now,
                                        ends_at=now + timedelta(hours=6), spent=D("0.0000004"))
    charge = SeatCharge.objects.create(
        platform=platform, user=member.user, ai_plan=ai_plan, kind=ChargeKind.SPEND, weekly_window=week,
        session_window=session, spent_delta=D("0.0000004"), reserved_delta=0, weekly_budget=D("2"),
        session_budget=D("0.4"), weekly_spent_after=D("0.0000004"), session_spent_after=D("0.0000004"),
        created_at=now)
    listing = browser.get(reverse("admin:entitlements_seatcharge_changelist"))
    assert b"0.0000004" in listing.content
    for name, row in (("seatwindow", week), ("seatcharge", charge)):
        assert browser.get(reverse(f"admin:entitlements_{name}_add")).status_code == 403
        assert browser.get(reverse(f"admin:entitlements_{name}_change", args=[row.pk])).status_code == 200
        assert browser.post(reverse(f"admin:entitlements_{name}_change", args=[row.pk]), {}).status_code == 403
        assert browser.post(reverse(f"admin:entitlements_{name}_delete", args=[row.pk]),
                            {"post": "yes"}).status_code == 403
    assert SeatWindow.objects.count() == 2 and SeatCharge.objects.count() == 1


# --- AI plans through the catalogue's services ----------------------------------------------------------------


def _plan_form(**fields: object) -> dict:
    data = {"slug": "strategic", "name": "Strategic", "tier": "strategic", "icon": "", "weekly_budget": "5.00",
            "session_budget": "1.00", "overage": "refuse", "purchasable": "on", "billing_cycle": "monthly",
            "price_per_seat_cents": "4000", "currency": "USD", "stripe_price_id": "", "is_active": "on",
            "models-TOTAL_FORMS": "0", "models-INITIAL_FORMS": "0", "models-MIN_NUM_FORMS": "0",
            "models-MAX_NUM_FORMS": "1000"}
    return data | fields


def _models(*rows: tuple[str, str], initial: list[AIPlanModel] | None = None) -> dict:
    data = {"models-TOTAL_FORMS": str(len(rows)), "models-INITIAL_FORMS": str(len(initial or []))}
    for index, (model, tier) in enumerate(rows):
        data |= {f"models-{index}-model": model, f"models-{index}-display_name": "", f"models-{index}-tier": tier}
        if initial and index < len(initial):
            data |= {f"models-{index}-id": initial[index].pk, f"models-{index}-plan": initial[index].plan_id}
    return data


def test_an_operator_adds_a_plan_with_its_models_through_the_service(browser, platform, priced):
    response = browser.post(reverse("admin:entitlements_aiplan_add"),
                            _plan_form(platforms=[platform.pk], **_models(("gpt-4o", "advanced"))))

    assert response.status_code == 302, response.content[:3000]
    plan = AIPlan.objects.get(slug="strategic")
    assert list(plan.models.values_list("model", "tier")) == [("gpt-4o", "advanced")]
    assert list(plan.platforms.all()) == [platform]
    assert response["Location"].startswith(reverse("admin:entitlements_aiplan_changelist"))


@pytest.mark.parametrize(("fields", "message"), [
    (_models(("claude-9", "advanced")), b"rate card"),
    (_models(("gpt-4o", "advanced"), ("gpt-4o", "advanced")), b""),
    (_models(("gpt-4o", "strategic")) | {"tier": "everyday", "weekly_budget": "1", "session_budget": "1"},
     b"above the plan"),
    ({"session_budget": "6.00"}, b""),
    ({"slug": "00000000-0000-0000-0000-000000000000"}, b"UUID"),
    ({"weekly_budget": "1e3"}, b""),
])
def test_the_plan_form_shows_the_catalogues_refusals_and_writes_nothing(browser, priced, fields, message):
    before = catalogue_state()
    response = browser.post(reverse("admin:entitlements_aiplan_add"), _plan_form(**fields))
    assert response.status_code == 200
    assert message in response.content
    assert b"errornote" in response.content or b"errorlist" in response.content
    assert catalogue_state() == before


def test_an_operator_changes_a_plan_and_its_models_through_the_service(browser, priced, ai_plan):
    kept = AIPlanModel.objects.create(plan=ai_plan, model="gpt-4o", tier=Tier.ADVANCED)
    url = reverse("admin:entitlements_aiplan_change", args=[ai_plan.pk])
    assert browser.get(url).status_code == 200

    form = _plan_form(slug="ignored", name="Advanced 2", tier="advanced", weekly_budget="3.00", session_budget="0.50")
    response = browser.post(url, form | _models(("gpt-4o", "advanced"), ("gpt-4o-mini", "everyday"), initial=[kept]))

    assert response.status_code == 302, response.content[:3000]
    ai_plan.refresh_from_db()
    assert (ai_plan.slug, ai_plan.name, ai_plan.weekly_budget) == ("advanced", "Advanced 2", D("3"))
    assert sorted(ai_plan.models.values_list("model", flat=True)) == ["gpt-4o", "gpt-4o-mini"]


def test_plans_cannot_be_deleted_in_the_admin(browser, ai_plan):
    assert browser.post(reverse("admin:entitlements_aiplan_delete", args=[ai_plan.pk]), {"post": "yes"}).status_code \
        == 403
    assert AIPlan.objects.filter(pk=ai_plan.pk).exists()
