"""Budgets on the usage path: a seat pays its member's usage within its weekly and session budgets, in the same
transaction as the event (single, batch, a hold's capture); what does not fit is refused, or with the plan's
overage "credits" paid with credits; a model above the seat's tier is refused; nothing is written on a refusal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone

from credits.errors import InsufficientCredits
from credits.models import CreditAccount, Hold, LedgerEntry, UsageEvent
from credits.verification import ledger_verify
from credits.services import UsageInput, hold_create, hold_release, usage_capture, usage_record, usage_record_batch
from entitlements.errors import BudgetExceeded, ModelNotEntitled
from entitlements.models import AIPlanModel, Overage, SeatAssignment, SeatCharge, SeatSubscription, SeatWindow, Tier
from entitlements.services import seat_assign, seat_unassign, seats_expire_due, seats_grant
from tests.api_helpers import post_json
from tests.conftest import client_for, make_member
from tests.entitlements.conftest import make_ai_plan

pytestmark = pytest.mark.django_db


@pytest.fixture
def plan(platform):  # noqa: ANN001, ANN201
    plan = make_ai_plan("advanced", Tier.ADVANCED, weekly_budget=D("2.00"), session_budget=D("0.50"))
    AIPlanModel.objects.create(plan=plan, model="mini", tier=Tier.EVERYDAY)
    AIPlanModel.objects.create(plan=plan, model="sonnet", tier=Tier.ADVANCED)
    strategic = make_ai_plan("strategic", Tier.STRATEGIC)
    AIPlanModel.objects.create(plan=strategic, model="opus", tier=Tier.STRATEGIC)
    seats_grant(platform=platform, ai_plan=plan, quantity=3)
    return plan


@pytest.fixture
def seated(platform, plan, owner):  # noqa: ANN001, ANN201
    member = make_member(platform, "seated", credits="10")
    seat_assign(platform=platform, ai_plan=plan, username="seated", actor=owner.user)
    return member


def use(platform, member, amount: str, request_id: str, model: str = "") -> object:  # noqa: ANN001
    return usage_record(platform=platform, usage=UsageInput(
        account_id=member.account.id, request_id=request_id, endpoint="/v1/chat", model=model, amount=D(amount)))


def written() -> tuple:
    return (LedgerEntry.objects.count(), UsageEvent.objects.count(), SeatCharge.objects.count(),
            sorted(SeatWindow.objects.values_list("kind", "spent", "reserved")))


def test_a_seat_pays_within_its_budgets_and_the_credits_stay(platform, seated):
    result = use(platform, seated, "0.30", "r1", model="sonnet")
    event = result.event
    assert (event.cost, event.charged, event.funded, event.funded_by) == (D("0.30"), 0, D("0.30"), "seat:advanced")
    assert result.entry is None
    assert CreditAccount.objects.get(pk=seated.account.pk).balance == D("10")
    windows = dict(SeatWindow.objects.values_list("kind", "spent"))
    assert windows == {"weekly": D("0.30"), "session": D("0.30")}
    (charge,) = SeatCharge.objects.all()
    assert (charge.kind, charge.spent_delta, charge.usage_event_id, charge.weekly_spent_after) == (
        "spend", D("0.30"), event.id, D("0.30"))
    assert ledger_verify(account=CreditAccount.objects.get(pk=seated.account.pk)).problems == []


def test_an_event_beyond_the_session_budget_is_refused_and_writes_nothing(platform, seated):
    use(platform, seated, "0.30", "r1")
    before = written()
    with pytest.raises(BudgetExceeded) as refused:
        use(platform, seated, "0.25", "r2")
    assert refused.value.details["budget"] == "session"
    assert refused.value.details["remaining"] == "0.2"
    assert written() == before
    assert use(platform, seated, "0.20", "r3").event.funded == D("0.20")  # exactly what remains fits


def test_a_replay_is_not_charged_twice(platform, seated):
    first = use(platform, seated, "0.30", "r1")
    again = use(platform, seated, "0.30", "r1")
    assert again.replayed and again.event.id == first.event.id
    assert SeatWindow.objects.get(kind="weekly").spent == D("0.30")


def test_a_model_above_the_tier_or_outside_the_catalogue_is_refused(platform, seated):
    with pytest.raises(ModelNotEntitled):
        use(platform, seated, "0.01", "r1", model="opus")
    with pytest.raises(ModelNotEntitled):
        use(platform, seated, "0.01", "r2", model="unknown-model")
    assert use(platform, seated, "0.01", "r3", model="mini").event.funded == D("0.01")


def test_overage_credits_pays_the_rest_with_credits(platform, plan, seated):
    plan.overage = Overage.CREDITS
    plan.save()
    event = use(platform, seated, "0.80", "r1").event
    assert (event.funded, event.charged) == (D("0.50"), D("0.30"))
    assert CreditAccount.objects.get(pk=seated.account.pk).balance == D("9.70")
    assert ledger_verify(account=CreditAccount.objects.get(pk=seated.account.pk)).problems == []


def test_overage_credits_refused_for_want_of_credits_writes_nothing(platform, plan, seated):
    plan.overage = Overage.CREDITS
    plan.save()
    before = written()
    with pytest.raises(InsufficientCredits):
        use(platform, seated, "20", "r1")
    assert written() == before


def test_a_new_session_opens_after_six_hours(platform, seated, monkeypatch):
    use(platform, seated, "0.50", "r1")
    with pytest.raises(BudgetExceeded):
        use(platform, seated, "0.01", "r2")
    later = timezone.now() + timedelta(hours=6, seconds=1)
    monkeypatch.setattr("credits.services.usage.timezone.now", lambda: later)
    assert use(platform, seated, "0.40", "r3").event.funded == D("0.40")
    assert SeatWindow.objects.filter(kind="session").count() == 2


def test_a_member_without_a_seat_pays_with_credits(platform, plan, seated, owner):
    seat_unassign(platform=platform, ai_plan=plan, username="seated")
    event = use(platform, seated, "0.30", "r1").event
    assert (event.funded, event.charged, event.funded_by) == (0, D("0.30"), "")


def test_batch_events_fund_in_order_and_refuse_what_does_not_fit(platform, seated, member):
    events = [UsageInput(account_id=seated.account.id, request_id=f"b{i}", endpoint="/x", amount=D("0.2"))
              for i in range(3)]
    events.append(UsageInput(account_id=member.account.id, request_id="m", endpoint="/x", amount=D("0")))
    outcomes = usage_record_batch(platform=platform, events=events)
    assert [o.status for o in outcomes] == ["recorded", "recorded", "rejected", "recorded"]
    assert outcomes[2].error.code == "budget_exceeded"
    assert SeatWindow.objects.get(kind="session").spent == D("0.4")
    assert SeatCharge.objects.count() == 2


def test_a_hold_reserves_its_capture_settles_and_its_release_gives_back(platform, seated):
    hold = hold_create(account_id=seated.account.id, amount=D("0.40"), idempotency_key="h1").hold
    assert (hold.funded, hold.amount) == (D("0.40"), D("0.40"))
    assert LedgerEntry.objects.filter(hold_id=hold.id).count() == 0
    with pytest.raises(BudgetExceeded):
        use(platform, seated, "0.20", "r1")  # only 0.10 of the session is not reserved
    replay = hold_create(account_id=seated.account.id, amount=D("0.40"), idempotency_key="h1")
    assert replay.replayed and replay.hold.id == hold.id
    result, event = usage_capture(platform=platform, hold_id=hold.id, amount=D("0.25"), endpoint="/x")
    assert (event.funded, event.charged, event.hold_id) == (D("0.25"), 0, hold.id)
    window = SeatWindow.objects.get(kind="session")
    assert (window.spent, window.reserved) == (D("0.25"), 0)
    second = hold_create(account_id=seated.account.id, amount=D("0.20"), idempotency_key="h2").hold
    hold_release(hold_id=second.id)
    window.refresh_from_db()
    assert (window.spent, window.reserved) == (D("0.25"), 0)
    assert ledger_verify(account=CreditAccount.objects.get(pk=seated.account.pk)).problems == []
    assert Hold.objects.get(pk=second.id).status == "released"


def test_a_reservation_that_does_not_fit_is_refused(platform, seated):
    with pytest.raises(BudgetExceeded):
        hold_create(account_id=seated.account.id, amount=D("0.60"), idempotency_key="h1")
    assert Hold.objects.count() == 0 and SeatCharge.objects.count() == 0


def test_over_http_a_refusal_is_429_with_retry_after(platform, seated, owner):
    body = {"account_id": str(seated.account.id), "request_id": "r1", "endpoint": "/x", "amount": "0.60"}
    response = post_json(client_for(owner), "/api/billing/usage/", body)
    assert response.status_code == 429, response.content
    error = response.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert set(error["details"]) == {"budget", "remaining", "resets_at"}
    assert 0 < int(response["Retry-After"]) <= 6 * 3600


def test_an_operators_contract_past_its_end_frees_the_seats_and_credits_pay_again(platform, plan, seated):
    use(platform, seated, "0.10", "r1")
    until = timezone.now() + timedelta(days=1)
    seats_grant(platform=platform, ai_plan=plan, quantity=3, until=until)
    assert seats_expire_due(now=until - timedelta(seconds=1)) == 0
    assert seats_expire_due(now=until) == 1
    assert SeatSubscription.objects.get(ai_plan=plan).status == "expired"
    assert not SeatAssignment.objects.filter(user=seated.user).exists()
    event = use(platform, seated, "0.10", "r2").event
    assert (event.funded, event.charged) == (0, D("0.10"))
    assert seats_expire_due(now=until) == 0  # once


def test_a_week_never_starts_before_the_last_one_ended_when_the_time_zone_moves_west(platform, seated, monkeypatch):
    sunday = datetime(2026, 12, 6, 12, tzinfo=UTC)  # the UTC week: Monday 11-30 00:00 to Monday 12-07 00:00
    monkeypatch.setattr("credits.services.usage.timezone.now", lambda: sunday)
    use(platform, seated, "0.30", "r1")
    platform.time_zone = "America/New_York"  # its week runs to Monday 12-07 05:00 UTC
    platform.save()
    after = datetime(2026, 12, 7, 0, 30, tzinfo=UTC)
    monkeypatch.setattr("credits.services.usage.timezone.now", lambda: after)
    use(platform, seated, "0.30", "r2")
    weeks = list(SeatWindow.objects.filter(kind="weekly").order_by("starts_at").values_list("starts_at", "ends_at"))
    assert weeks == [(datetime(2026, 11, 30, tzinfo=UTC), datetime(2026, 12, 7, tzinfo=UTC)),
                     (datetime(2026, 12, 7, tzinfo=UTC), datetime(2026, 12, 7, 5, tzinfo=UTC))]


def test_a_refusal_tells_the_platform_once_per_window(platform, seated, owner):
    """budget.exceeded outlives the refused request's rollback (its follow-up runs after it), once per member,
    budget and window, over HTTP and in batches alike."""
    from accounts import outbound
    from accounts.outbound_models import OutboundEvent

    outbound.endpoint_create(platform=platform, url="https://h.example.com/x", events=["budget.exceeded"])
    body = {"account_id": str(seated.account.id), "request_id": "r1", "endpoint": "/x", "amount": "0.60"}
    assert post_json(client_for(owner), "/api/billing/usage/", body).status_code == 429
    assert post_json(client_for(owner), "/api/billing/usage/", body | {"request_id": "r2"}).status_code == 429
    events = [UsageInput(account_id=seated.account.id, request_id="b1", endpoint="/x", amount=D("0.6"))]
    assert usage_record_batch(platform=platform, events=events)[0].error.code == "budget_exceeded"
    event = OutboundEvent.objects.get()
    assert (event.type, event.account_id) == ("budget.exceeded", seated.account.id)
    assert (event.data["budget"], event.data["ai_plan"], event.data["user_id"]) == (
        "session", "advanced", seated.membership.user_id)
