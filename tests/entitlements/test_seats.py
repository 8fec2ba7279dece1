"""Seats: an operator's manual contract (``seats_grant``), assignments within the seats, one seat per member."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from entitlements import selectors
from entitlements.errors import NoSeatAvailable, NotAPlatformMember, SeatAlreadyAssigned, SeatNotAssigned
from entitlements.models import AIPlan, SeatAssignment, SeatSubscription, Tier
from entitlements.services import seat_assign, seat_unassign, seats_grant
from tests.conftest import make_member
from tests.entitlements.conftest import make_ai_plan

pytestmark = pytest.mark.django_db


def seats(platform, plan):  # noqa: ANN001, ANN201
    return selectors.seats_of(platform_id=platform.pk, ai_plan_id=plan.pk)


def test_seats_grant_records_one_manual_contract_and_changes_it_when_run_again(platform, ai_plan):
    first, created = seats_grant(platform=platform, ai_plan=ai_plan, quantity=3)
    again, created_again = seats_grant(platform=platform, ai_plan=ai_plan, quantity=5)

    assert created and not created_again and first.pk == again.pk
    assert SeatSubscription.objects.get().quantity == 5
    assert seats(platform, ai_plan).total == 5


@pytest.mark.parametrize("quantity", [0, -1, 1.5, True, "3"])
def test_seats_grant_refuses_a_quantity_that_is_not_a_whole_positive_number(platform, ai_plan, quantity):
    with pytest.raises(ValueError, match="quantity"):
        seats_grant(platform=platform, ai_plan=ai_plan, quantity=quantity)
    assert not SeatSubscription.objects.exists()


def test_the_database_refuses_a_zero_quantity(platform, ai_plan):
    with pytest.raises(IntegrityError), transaction.atomic():
        SeatSubscription.objects.create(platform=platform, ai_plan=ai_plan, quantity=0, provider="manual",
                                        started_at=timezone.now())


def test_the_seats_grant_command_is_idempotent_and_prints_json(platform, ai_plan):
    out = StringIO()
    call_command("seats_grant", "acme", "advanced", "--quantity", "4", "--until", "2099-01-01", stdout=out)
    call_command("seats_grant", "acme", "advanced", "--quantity", "6", stdout=out)

    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["created"] is True and first["quantity"] == 4 and first["until"].startswith("2099-01-01")
    assert second["created"] is False and second["quantity"] == 6 and second["until"] is None
    assert second["total_seats"] == 6


@pytest.mark.parametrize(("args", "error"), [
    (["nope", "advanced", "--quantity", "1"], "no platform"),
    (["acme", "nope", "--quantity", "1"], "no active AI plan"),
    (["acme", "advanced", "--quantity", "0"], "quantity"),
    (["acme", "advanced", "--quantity", "2", "--until", "2001-01-01"], "future"),
    (["acme", "advanced", "--quantity", "2", "--until", "next week"], "ISO 8601"),
])
def test_the_seats_grant_command_refuses_bad_input_and_writes_nothing(platform, ai_plan, args, error):
    with pytest.raises(CommandError, match=error):
        call_command("seats_grant", *args, stdout=StringIO())
    assert not SeatSubscription.objects.exists()


def test_a_plan_offered_to_other_platforms_only_cannot_be_granted(platform, other_platform, ai_plan):
    ai_plan.platforms.add(other_platform)
    with pytest.raises(CommandError, match="no active AI plan"):
        call_command("seats_grant", "acme", "advanced", "--quantity", "1", stdout=StringIO())


def test_assignments_stay_within_the_seats(platform, ai_plan, admin):
    seats_grant(platform=platform, ai_plan=ai_plan, quantity=2)
    for name in ("ann", "bob", "cid"):
        make_member(platform, name)

    seat_assign(platform=platform, ai_plan=ai_plan, username="ann", actor=admin.membership.user)
    seat_assign(platform=platform, ai_plan=ai_plan, username="bob", actor=None)
    with pytest.raises(NoSeatAvailable):
        seat_assign(platform=platform, ai_plan=ai_plan, username="cid", actor=None)

    assert SeatAssignment.objects.count() == 2
    assert SeatAssignment.objects.get(user__username="ann").assigned_by == admin.membership.user
    assert (seats(platform, ai_plan).total, seats(platform, ai_plan).assigned) == (2, 2)


def test_a_member_holds_one_seat_per_platform(platform, ai_plan):
    other_plan = make_ai_plan("everyday", Tier.EVERYDAY, weekly_budget=Decimal("0.50"), session_budget=Decimal("0.10"))
    seats_grant(platform=platform, ai_plan=ai_plan, quantity=2)
    seats_grant(platform=platform, ai_plan=other_plan, quantity=2)
    make_member(platform, "ann")
    seat_assign(platform=platform, ai_plan=ai_plan, username="ann", actor=None)

    for plan in (ai_plan, other_plan):
        with pytest.raises(SeatAlreadyAssigned):
            seat_assign(platform=platform, ai_plan=plan, username="ann", actor=None)
    assert SeatAssignment.objects.count() == 1


def test_only_members_of_the_platform_get_a_seat(platform, other_platform, ai_plan, outsider):
    seats_grant(platform=platform, ai_plan=ai_plan, quantity=2)
    for username in ("gina", "nobody", ""):
        with pytest.raises(NotAPlatformMember):
            seat_assign(platform=platform, ai_plan=ai_plan, username=username, actor=None)
    assert not SeatAssignment.objects.exists()


def test_unassigning_frees_the_seat_and_a_seat_not_held_is_a_404(platform, ai_plan):
    seats_grant(platform=platform, ai_plan=ai_plan, quantity=1)
    make_member(platform, "ann")
    make_member(platform, "bob")
    seat_assign(platform=platform, ai_plan=ai_plan, username="ann", actor=None)

    with pytest.raises(SeatNotAssigned):
        seat_unassign(platform=platform, ai_plan=ai_plan, username="bob")
    seat_unassign(platform=platform, ai_plan=ai_plan, username="ann")
    seat_assign(platform=platform, ai_plan=ai_plan, username="bob", actor=None)
    with pytest.raises(SeatNotAssigned):
        seat_unassign(platform=platform, ai_plan=ai_plan, username="ann")


def test_a_lowered_quantity_keeps_the_assignments_and_refuses_new_ones(platform, ai_plan):
    seats_grant(platform=platform, ai_plan=ai_plan, quantity=3)
    for name in ("ann", "bob", "cid", "dee"):
        make_member(platform, name)
    for name in ("ann", "bob", "cid"):
        seat_assign(platform=platform, ai_plan=ai_plan, username=name, actor=None)

    seats_grant(platform=platform, ai_plan=ai_plan, quantity=1)

    now = seats(platform, ai_plan)
    assert (now.total, now.assigned, now.unassigned, now.over_assigned) == (1, 3, 0, 2)
    with pytest.raises(NoSeatAvailable):
        seat_assign(platform=platform, ai_plan=ai_plan, username="dee", actor=None)
    assert SeatAssignment.objects.count() == 3


def test_an_ended_contract_counts_no_seats(platform, ai_plan):
    subscription, _ = seats_grant(platform=platform, ai_plan=ai_plan, quantity=2,
                                  until=timezone.now() + timedelta(days=30))
    subscription.status = "expired"
    subscription.save()
    make_member(platform, "ann")
    with pytest.raises(NoSeatAvailable):
        seat_assign(platform=platform, ai_plan=ai_plan, username="ann", actor=None)


def test_the_database_keeps_budgets_positive_and_the_session_within_the_week(db):
    for fields in ({"weekly_budget": Decimal(0)}, {"session_budget": Decimal("-1")},
                   {"session_budget": Decimal("3"), "weekly_budget": Decimal("2")}, {"tier": "premium"}):
        with pytest.raises(IntegrityError), transaction.atomic():
            make_ai_plan("bad", **fields)
    assert not AIPlan.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_assignments_never_exceed_the_seats(platform, ai_plan):
    """Twelve members race for five seats: exactly five get one."""
    seats_grant(platform=platform, ai_plan=ai_plan, quantity=5)
    names = [f"racer{i}" for i in range(12)]
    for name in names:
        make_member(platform, name)
    barrier, outcomes = threading.Barrier(len(names)), []

    def claim(name: str) -> None:
        try:
            barrier.wait(30)
            seat_assign(platform=platform, ai_plan=ai_plan, username=name, actor=None)
            outcomes.append("seated")
        except NoSeatAvailable:
            outcomes.append("refused")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claim, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(outcomes) == ["refused"] * 7 + ["seated"] * 5
    assert SeatAssignment.objects.count() == 5


def test_create_operator_makes_a_superuser_with_a_token_and_is_idempotent(db):
    out = StringIO()
    call_command("create_operator", "opal", stdout=out)
    call_command("create_operator", "opal", stdout=out)

    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["username"] == second["username"] == "opal" and len(first["token"]) == 40
    assert second["token"] is None  # a key is shown once; the operator keeps the first
    user = get_user_model().objects.get(username="opal")
    assert user.is_superuser and user.is_staff and not user.has_usable_password()


def test_seed_demo_seats_gives_alice_a_seat_and_is_idempotent():
    call_command("seed_demo", stdout=StringIO())
    for _ in range(2):
        out = StringIO()
        call_command("seed_demo_seats", stdout=out)
        assert json.loads(out.getvalue()) == {"platform_key": "demo", "ai_plan": "everyday", "seats": 5,
                                              "seated": ["alice"]}
    assert list(SeatAssignment.objects.values_list("user__username", "ai_plan__slug")) == [("alice", "everyday")]
    assert SeatSubscription.objects.get().quantity == 5
