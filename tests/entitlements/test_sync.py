"""``seat_subscription_sync``: a provider's seat subscription recorded by (provider, id), ordered by the state's
time, under the plan's seats lock; seats that stop counting free the plan's assignments when it has none left."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connections

from entitlements import selectors
from entitlements.errors import NoSeatAvailable
from entitlements.models import SeatAssignment, SeatStatus, SeatSubscription, Tier
from entitlements.services import seat_assign, seats_grant
from entitlements.sync import SeatSyncRefused, seat_subscription_sync
from tests.conftest import make_member
from tests.entitlements.conftest import make_ai_plan
from tests.waits import wait_for_lock_waiters

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def sync(platform, plan, *, sub: str = "sub_1", quantity: int = 3, status: str = SeatStatus.ACTIVE,
         as_of: datetime | None = at(10), **fields):  # noqa: ANN001, ANN003, ANN201
    values = {"provider_customer_id": "cus_1", "billing_cycle": "monthly", "started_at": T0, "ends_at": None,
              "next_billing_at": T0 + timedelta(days=31)} | fields
    return seat_subscription_sync(platform=platform, ai_plan=plan, provider="stripe", provider_subscription_id=sub,
                                  quantity=quantity, status=status, as_of=as_of, **values)


def seats(platform, plan):  # noqa: ANN001, ANN201
    return selectors.seats_of(platform_id=platform.pk, ai_plan_id=plan.pk)


def seat_members(platform, plan, *names: str) -> None:  # noqa: ANN001
    for name in names:
        make_member(platform, name)
        seat_assign(platform=platform, ai_plan=plan, username=name, actor=None)


def row_state(sub: str = "sub_1") -> tuple:
    row = SeatSubscription.objects.get(provider_subscription_id=sub)
    return (row.ai_plan_id, row.quantity, row.status, row.started_at, row.ends_at, row.next_billing_at, row.synced_at)


def test_the_first_report_creates_it_and_the_same_state_again_changes_nothing(platform, ai_plan):
    row, changed = sync(platform, ai_plan, quantity=3)
    again, changed_again = sync(platform, ai_plan, quantity=3)

    assert changed and not changed_again and row.pk == again.pk
    assert SeatSubscription.objects.count() == 1
    assert (row.quantity, row.status, row.provider, row.provider_customer_id, row.synced_at) == (
        3, "active", "stripe", "cus_1", at(10))
    assert seats(platform, ai_plan).total == 3


def test_a_newer_state_changes_the_quantity_and_an_older_one_changes_nothing(platform, ai_plan):
    sync(platform, ai_plan, quantity=3, as_of=at(10))
    _, raised = sync(platform, ai_plan, quantity=5, as_of=at(20))
    before = row_state()
    _, stale = sync(platform, ai_plan, quantity=2, status=SeatStatus.PAST_DUE, as_of=at(15))

    assert raised and not stale
    assert row_state() == before
    assert (before[1], before[2], before[6]) == (5, "active", at(20))


def test_a_state_of_the_same_second_applies_unless_it_reopens_an_ended_subscription(platform, ai_plan):
    sync(platform, ai_plan, quantity=3, as_of=at(10))
    _, same_second = sync(platform, ai_plan, quantity=4, as_of=at(10))
    _, ended = sync(platform, ai_plan, quantity=4, status=SeatStatus.CANCELED, as_of=at(30), ends_at=at(30))
    _, reopened = sync(platform, ai_plan, quantity=4, status=SeatStatus.ACTIVE, as_of=at(30))

    assert same_second and ended and not reopened
    assert row_state()[1:3] == (4, "canceled")


def test_deleted_before_created_stays_canceled(platform, ai_plan):
    """Out of order: the deletion (later) arrives first; the creation (earlier) then changes nothing."""
    _, first = sync(platform, ai_plan, quantity=3, status=SeatStatus.CANCELED, as_of=at(50), ends_at=at(50))
    _, late = sync(platform, ai_plan, quantity=3, status=SeatStatus.ACTIVE, as_of=at(10))

    assert first and not late
    assert row_state()[2] == "canceled" and seats(platform, ai_plan).total == 0


def test_a_quantity_below_the_assignments_keeps_them_and_refuses_new_ones(platform, ai_plan):
    sync(platform, ai_plan, quantity=3, as_of=at(10))
    seat_members(platform, ai_plan, "ann", "bob", "cid")
    make_member(platform, "dee")

    sync(platform, ai_plan, quantity=1, as_of=at(20))

    now = seats(platform, ai_plan)
    assert (now.total, now.assigned, now.over_assigned) == (1, 3, 2)
    assert SeatAssignment.objects.filter(ai_plan=ai_plan).count() == 3
    with pytest.raises(NoSeatAvailable):
        seat_assign(platform=platform, ai_plan=ai_plan, username="dee", actor=None)


def test_the_end_of_the_plans_last_seats_frees_its_assignments(platform, ai_plan):
    sync(platform, ai_plan, quantity=2, as_of=at(10))
    seat_members(platform, ai_plan, "ann", "bob")

    _, changed = sync(platform, ai_plan, quantity=2, status=SeatStatus.CANCELED, as_of=at(20), ends_at=at(20))

    assert changed and not SeatAssignment.objects.exists()
    row = SeatSubscription.objects.get()
    assert (row.status, row.ends_at, row.next_billing_at) == ("canceled", at(20), T0 + timedelta(days=31))


def test_an_end_with_other_seats_of_the_plan_left_keeps_the_assignments(platform, ai_plan):
    seats_grant(platform=platform, ai_plan=ai_plan, quantity=1)  # an operator's contract besides
    sync(platform, ai_plan, quantity=2, as_of=at(10))
    seat_members(platform, ai_plan, "ann", "bob", "cid")

    sync(platform, ai_plan, status=SeatStatus.EXPIRED, as_of=at(20), ends_at=at(20))

    assert SeatAssignment.objects.count() == 3
    assert (seats(platform, ai_plan).total, seats(platform, ai_plan).over_assigned) == (1, 2)


def test_a_quantity_of_zero_stops_the_seats_keeping_the_last_quantity_until_seats_come_back(platform, ai_plan):
    sync(platform, ai_plan, quantity=4, as_of=at(10))
    seat_members(platform, ai_plan, "ann")

    _, zeroed = sync(platform, ai_plan, quantity=0, as_of=at(20))
    assert zeroed and row_state()[1:3] == (4, "canceled")
    assert seats(platform, ai_plan).total == 0 and not SeatAssignment.objects.exists()

    _, back = sync(platform, ai_plan, quantity=2, as_of=at(30))
    assert back and row_state()[1:3] == (2, "active")


def test_a_first_report_of_no_seats_is_recorded_ended(platform, ai_plan):
    row, changed = sync(platform, ai_plan, quantity=0, as_of=at(10))
    assert changed and (row.quantity, row.status) == (1, "canceled")
    assert seats(platform, ai_plan).total == 0


def test_a_provisional_state_creates_it_and_never_changes_a_recorded_one(platform, ai_plan):
    created, changed = sync(platform, ai_plan, quantity=3, as_of=None, provisional=True, next_billing_at=None)
    assert changed and (created.quantity, created.status, created.synced_at) == (3, "active", None)

    # The subscription's own state applies, whatever its time; a provisional one again changes nothing.
    _, confirmed = sync(platform, ai_plan, quantity=3, as_of=at(-50), started_at=T0 - timedelta(minutes=1))
    _, again = sync(platform, ai_plan, quantity=9, as_of=None, provisional=True)
    assert confirmed and not again
    assert row_state()[1:] == (3, "active", T0 - timedelta(minutes=1), None, T0 + timedelta(days=31), at(-50))


def test_a_subscription_moved_to_another_plan_moves_its_seats(platform, ai_plan):
    other = make_ai_plan("everyday", Tier.EVERYDAY, weekly_budget=Decimal("1"), session_budget=Decimal("0.20"))
    sync(platform, ai_plan, quantity=2, as_of=at(10))
    seat_members(platform, ai_plan, "ann")

    _, moved = sync(platform, other, quantity=2, as_of=at(20))

    assert moved and row_state()[0] == other.pk
    assert (seats(platform, ai_plan).total, seats(platform, other).total) == (0, 2)
    assert not SeatAssignment.objects.exists()  # its old plan has no seats left


def test_another_platforms_subscription_is_refused(platform, other_platform, ai_plan):
    sync(platform, ai_plan, quantity=2)
    before = row_state()
    with pytest.raises(SeatSyncRefused):
        sync(other_platform, ai_plan, quantity=7, as_of=at(99))
    assert row_state() == before and SeatSubscription.objects.count() == 1


def test_an_end_in_the_second_it_started_is_kept_after_the_start(platform, ai_plan):
    row, _ = sync(platform, ai_plan, status=SeatStatus.EXPIRED, started_at=T0, ends_at=T0)
    assert row.ends_at > row.started_at


@pytest.mark.parametrize(("field", "value"), [
    ("provider", "manual"), ("provider", "paypal"), ("provider_subscription_id", ""), ("quantity", -1),
    ("quantity", 1.5), ("quantity", True), ("status", "trialing"), ("billing_cycle", "weekly"),
    ("started_at", datetime(2026, 1, 1)), ("as_of", "2026-01-01"), ("provider_customer_id", None),
])
def test_bad_arguments_are_refused_and_write_nothing(platform, ai_plan, field, value):
    arguments = {"platform": platform, "ai_plan": ai_plan, "provider": "stripe", "provider_subscription_id": "sub_1",
                 "provider_customer_id": "cus_1", "quantity": 2, "status": "active", "billing_cycle": "monthly",
                 "started_at": T0, "ends_at": None, "next_billing_at": None, "as_of": at(1)}
    with pytest.raises(ValueError, match=field.split("_")[0]):
        seat_subscription_sync(**arguments | {field: value})
    assert not SeatSubscription.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_reports_of_a_new_subscription_record_it_once_with_the_newest_state(platform, ai_plan):
    """Six states of one subscription (a refresh and webhooks) race for its first recording: one row, the newest
    state, whatever the order the seats lock let them in."""
    quantities = {at(seconds): seconds for seconds in (1, 2, 3, 4, 5, 6)}
    barrier, errors = threading.Barrier(len(quantities)), []

    def report(as_of: datetime) -> None:
        try:
            barrier.wait(30)
            sync(platform, ai_plan, quantity=quantities[as_of], as_of=as_of)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=report, args=(as_of,)) for as_of in quantities]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert SeatSubscription.objects.count() == 1
    assert row_state()[1] == 6 and row_state()[6] == at(6)


@pytest.mark.django_db(transaction=True)
def test_assignments_racing_a_lowered_quantity_never_exceed_the_seats_of_their_moment(platform, ai_plan):
    """Eight members race for seats while the quantity drops from 5 to 2: each assignment is counted against the
    quantity in force when it was made (before the drop: 5; after: 2), never more."""
    sync(platform, ai_plan, quantity=5, as_of=at(10))
    names = [f"racer{i}" for i in range(8)]
    for name in names:
        make_member(platform, name)
    outcomes: list[str] = []
    hold = threading.Event()
    held = threading.Event()

    def hold_the_seats_lock() -> None:
        from django.db import transaction

        from entitlements.locks import plan_seats_lock
        try:
            with transaction.atomic():
                plan_seats_lock(platform_id=platform.pk, ai_plan_id=ai_plan.pk)
                held.set()
                hold.wait(30)
        finally:
            connections.close_all()

    def claim(name: str) -> None:
        try:
            seat_assign(platform=platform, ai_plan=ai_plan, username=name, actor=None)
            outcomes.append("seated")
        except NoSeatAvailable:
            outcomes.append("refused")
        finally:
            connections.close_all()

    def lower() -> None:
        try:
            sync(platform, ai_plan, quantity=2, as_of=at(20))
            outcomes.append("lowered")
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_seats_lock)
    holder.start()
    assert held.wait(30)
    racers = [threading.Thread(target=claim, args=(name,)) for name in names[:4]]
    racers += [threading.Thread(target=lower)]
    racers += [threading.Thread(target=claim, args=(name,)) for name in names[4:]]
    for thread in racers:
        thread.start()
    wait_for_lock_waiters(len(racers))  # every one of them waits for the seats lock: they really race
    hold.set()
    for thread in [holder, *racers]:
        thread.join(60)

    assert "lowered" in outcomes and len(outcomes) == 9
    lowered_at = SeatSubscription.objects.get().updated_at
    made = list(SeatAssignment.objects.order_by("assigned_at").values_list("assigned_at", flat=True))
    for before, assigned_at in enumerate(made):
        in_force = 5 if assigned_at < lowered_at else 2
        assert before < in_force, (before, assigned_at, lowered_at)
    assert len(made) == outcomes.count("seated") <= 5
    assert seats(platform, ai_plan).total == 2
