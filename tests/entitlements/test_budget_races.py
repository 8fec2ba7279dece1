"""No race overshoots a seat's budget (issue 10): real threads, each on its own connection, released together
(``run_together``), against one seat whose budgets fit exactly some of them.

After each race: exactly the requests that fit succeeded, the others were refused with ``BudgetExceeded`` and
wrote nothing; every window's ``spent`` / ``reserved`` is the sum of its ``SeatCharge`` rows and of what the
accepted requests asked; the credits paid exactly what the seat did not (``ledger_verify``).

``test_a_request_whose_clock_was_read_before_the_lock_joins_the_open_session`` orders, on ``tests.waits``, the
race the tests above leave to chance: the usage paths read their clock before the account's lock, so a request
that waited for the lock quotes at a moment before the session the request ahead of it opened. It must join that
session, not open a second one beside it with a whole budget of its own (which the windows' look-up once did:
every race above then overshot: 12 to 14 events of 0.07 funded by a session of 0.50, spread over 2 or 3
sessions)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import Q, Sum

from credits.locks import account_lock
from credits.models import CreditAccount, Hold, HoldStatus, LedgerEntry, UsageEvent
from credits.verification import ledger_verify
from credits.services import UsageInput, hold_create, usage_record, usage_record_batch
from entitlements.errors import BudgetExceeded
from entitlements.models import AIPlan, Overage, SeatAssignment, SeatCharge, SeatWindow, Tier, WindowKind
from entitlements.services import seat_assign, seat_unassign, seats_grant
from tests.conftest import make_member
from tests.credits.test_ledger_concurrency import errors_of, run_together
from tests.entitlements.conftest import make_ai_plan
from tests.waits import backend_tag, wait_until_blocked

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal
CREDITS = D("10")
THREADS = 16


# --- helpers ---------------------------------------------------------------------------------------------------


def seated_member(platform, plan: AIPlan, username: str = "seated"):  # noqa: ANN001, ANN201
    seats_grant(platform=platform, ai_plan=plan, quantity=2)
    member = make_member(platform, username, credits=str(CREDITS))
    seat_assign(platform=platform, ai_plan=plan, username=username, actor=None)
    return member


def use(platform, member, request_id: str, amount: Decimal):  # noqa: ANN001, ANN201
    return usage_record(platform=platform, usage=UsageInput(
        account_id=member.account.id, request_id=request_id, endpoint="/v1/chat", amount=amount))


def windows_of(member) -> list[SeatWindow]:  # noqa: ANN001
    return list(SeatWindow.objects.filter(user=member.user).order_by("kind", "starts_at"))


def shown(member) -> list[str]:  # noqa: ANN001
    """The member's windows, for a failure's message."""
    return [f"{w.kind} [{w.starts_at.isoformat()}, {w.ends_at.isoformat()}) spent {w.spent.normalize()} "
            f"reserved {w.reserved.normalize()}" for w in windows_of(member)]


def assert_windows_are_their_charges(member) -> None:  # noqa: ANN001
    """Each window's spent and reserved are the sums of its SeatCharge rows."""
    for window in windows_of(member):
        rows = SeatCharge.objects.filter(Q(weekly_window=window) | Q(session_window=window))
        sums = rows.aggregate(spent=Sum("spent_delta"), reserved=Sum("reserved_delta"))
        assert (window.spent, window.reserved) == (sums["spent"] or 0, sums["reserved"] or 0), window


def assert_one_window_each(member, spent: Decimal, reserved: Decimal = D(0)) -> None:  # noqa: ANN001
    """One weekly and one session window (the race happened within one session), each holding ``spent`` and
    ``reserved``."""
    found = [(w.kind, w.spent, w.reserved) for w in windows_of(member)]
    assert found == [(WindowKind.SESSION, spent, reserved), (WindowKind.WEEKLY, spent, reserved)], found


def assert_credits_untouched(member) -> None:  # noqa: ANN001
    account = CreditAccount.objects.get(pk=member.account.pk)
    assert (account.balance, account.reserved, account.carried_remainder) == (CREDITS, 0, 0)
    assert not LedgerEntry.objects.filter(account=account).exclude(transaction_type="add").exists()


def assert_ledger_sound(member) -> None:  # noqa: ANN001
    assert ledger_verify(account=CreditAccount.objects.get(pk=member.account.pk)).problems == []


def assert_windows_hold(member, spent: Decimal) -> None:  # noqa: ANN001
    """One weekly window holding ``spent``, and sessions holding it between them (how many sessions opened is
    the business of the tests above: the assignment tests below stay within every budget)."""
    windows = windows_of(member)
    weekly = [w.spent for w in windows if w.kind == WindowKind.WEEKLY]
    sessions = [w.spent for w in windows if w.kind == WindowKind.SESSION]
    assert (weekly, sum(sessions, D(0))) == ([spent], spent), shown(member)
    assert all(w.reserved == 0 for w in windows)


def ok(outcomes: list) -> list:
    return [value for kind, value in outcomes if kind == "ok"]


@pytest.fixture
def tight(db) -> AIPlan:  # noqa: ANN001
    """A session budget of 0.50: seven events of 0.07 fit (0.49), an eighth does not."""
    return make_ai_plan("tight", Tier.ADVANCED, weekly_budget=D("2.00"), session_budget=D("0.50"))


# --- (a) single events -----------------------------------------------------------------------------------------


def test_sixteen_events_on_a_budget_that_fits_seven(platform, tight):
    member = seated_member(platform, tight)
    amount, fit = D("0.07"), 7

    outcomes = run_together([lambda i=i: use(platform, member, f"call-{i}", amount) for i in range(THREADS)])

    recorded = ok(outcomes)
    assert errors_of(outcomes) == Counter({"BudgetExceeded": THREADS - fit}), shown(member)
    assert len(recorded) == fit
    assert all((r.event.funded, r.event.charged, r.event.funded_by) == (amount, 0, "seat:tight") for r in recorded)
    assert UsageEvent.objects.filter(account=member.account).count() == fit
    assert_one_window_each(member, fit * amount)
    assert_windows_are_their_charges(member)
    assert SeatCharge.objects.count() == fit
    assert_credits_untouched(member)
    assert_ledger_sound(member)


def test_a_request_whose_clock_was_read_before_the_lock_joins_the_open_session(platform, tight):
    """The usage path reads ``now`` (``_priced``: ``recorded_at``) before it takes the account's lock. A request
    that read its clock, then waited for the lock while another request of the member opened a session a moment
    later, quotes at a moment before that session began: it must still spend in it.

    Ordered here for certain: this thread holds the account's lock; the racer reads its clock and waits (proved
    by pg_locks); this thread records 0.40 (a session opens) and commits; the racer's 0.40 must then be refused:
    only 0.10 of the session's 0.50 is left."""
    member = seated_member(platform, tight)
    racer_pid: list[str] = []
    outcome: dict[str, object] = {}

    def racer() -> None:
        try:
            racer_pid.append(backend_tag())
            outcome["racer"] = use(platform, member, "racer", D("0.40"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome["racer"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=racer, daemon=True)
    with transaction.atomic():
        account_lock(account_id=member.account.id)
        thread.start()
        deadline = time.monotonic() + 20
        while not racer_pid and time.monotonic() < deadline:
            time.sleep(0.01)
        wait_until_blocked(racer_pid[0])  # its clock is read: it waits for the account
        first = use(platform, member, "first", D("0.40"))
    thread.join(30)
    assert not thread.is_alive()

    assert first.event.funded == D("0.40")
    sessions = [s for s in shown(member) if s.startswith("session")]
    assert isinstance(outcome["racer"], BudgetExceeded), (
        f"the racer was funded too: {outcome['racer']!r}; sessions {sessions}")
    assert_one_window_each(member, D("0.40"))


# --- (b) holds racing direct events ----------------------------------------------------------------------------


def test_holds_and_events_race_for_one_budget(platform, tight):
    """Eight holds of 0.10 and eight events of 0.10 on a session of 0.50: exactly five succeed, whichever."""
    member = seated_member(platform, tight)
    amount = D("0.10")

    def hold(i: int):  # noqa: ANN202
        return hold_create(account_id=member.account.id, amount=amount, idempotency_key=f"hold-{i}").hold

    workers = [lambda i=i: hold(i) for i in range(THREADS // 2)]
    workers += [lambda i=i: use(platform, member, f"call-{i}", amount) for i in range(THREADS // 2)]
    outcomes = run_together(workers)

    assert errors_of(outcomes) == Counter({"BudgetExceeded": THREADS - 5}), shown(member)
    holds = [v for v in ok(outcomes) if isinstance(v, Hold)]
    events = [v.event for v in ok(outcomes) if not isinstance(v, Hold)]
    assert len(holds) + len(events) == 5
    assert all((h.funded, h.amount) == (amount, amount) for h in holds)
    assert all((e.funded, e.charged) == (amount, 0) for e in events)
    assert Hold.objects.filter(account=member.account).count() == len(holds)
    assert UsageEvent.objects.filter(account=member.account).count() == len(events)
    assert_one_window_each(member, spent=len(events) * amount, reserved=len(holds) * amount)
    assert_windows_are_their_charges(member)
    active = Hold.objects.filter(account=member.account, status=HoldStatus.ACTIVE).aggregate(f=Sum("funded"))["f"]
    assert (active or 0) == len(holds) * amount
    assert_credits_untouched(member)
    assert_ledger_sound(member)


# --- (c) overage "credits": the seat pays up to its budget, exactly -------------------------------------------


def test_with_overage_credits_the_seat_pays_its_budget_exactly_and_credits_the_rest(platform):
    plan = make_ai_plan("flex", Tier.ADVANCED, weekly_budget=D("2.00"), session_budget=D("0.50"),
                        overage=Overage.CREDITS)
    member = seated_member(platform, plan)
    amount = D("0.0700000123")  # exact, below a quantum too: the credits carry a remainder
    total = THREADS * amount

    outcomes = run_together([lambda i=i: use(platform, member, f"call-{i}", amount) for i in range(THREADS)])

    assert errors_of(outcomes) == Counter(), [v for kind, v in outcomes if kind == "error"]
    events = list(UsageEvent.objects.filter(account=member.account))
    assert len(events) == THREADS
    assert all(e.funded + e.charged <= e.cost == amount for e in events)
    funded = sum((e.funded for e in events), D(0))
    charged = sum((e.charged for e in events), D(0))
    account = CreditAccount.objects.get(pk=member.account.pk)
    assert funded == D("0.50"), shown(member)
    assert charged + account.carried_remainder == total - D("0.50")
    assert account.balance == CREDITS - charged
    assert_one_window_each(member, D("0.50"))
    assert_windows_are_their_charges(member)
    assert sum(e.funded > 0 for e in events) == SeatCharge.objects.count()
    assert_ledger_sound(member)


# --- (d) batches racing single events --------------------------------------------------------------------------


def test_batches_and_single_events_race_for_one_budget(platform, tight):
    """Four batches of three events and eight single events, 0.07 each, on a session of 0.50: seven recorded."""
    member = seated_member(platform, tight)
    amount, fit = D("0.07"), 7

    def batch(n: int):  # noqa: ANN202
        events = [UsageInput(account_id=member.account.id, request_id=f"batch-{n}-{k}", endpoint="/v1/chat",
                             amount=amount) for k in range(3)]
        return lambda: usage_record_batch(platform=platform, events=events)

    workers = [batch(n) for n in range(4)]
    workers += [lambda i=i: use(platform, member, f"single-{i}", amount) for i in range(8)]
    outcomes = run_together(workers)

    batch_outcomes = [o for _, result in outcomes[:4] for o in result]
    assert not [v for kind, v in outcomes[:4] if kind == "error"]
    assert {o.status for o in batch_outcomes} <= {"recorded", "rejected"}
    assert all(o.error.code == "budget_exceeded" for o in batch_outcomes if o.status == "rejected")
    single_errors = errors_of(outcomes[4:])
    assert set(single_errors) <= {"BudgetExceeded"}
    recorded = sum(o.status == "recorded" for o in batch_outcomes) + sum(k == "ok" for k, _ in outcomes[4:])
    assert recorded == fit, shown(member)
    assert UsageEvent.objects.filter(account=member.account).count() == fit
    assert_one_window_each(member, fit * amount)
    assert_windows_are_their_charges(member)
    assert_credits_untouched(member)
    assert_ledger_sound(member)


# --- (e) an assignment change racing usage -------------------------------------------------------------------


def _wait_for_charges(count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while SeatCharge.objects.count() < count:
        assert time.monotonic() < deadline, "the seat never paid"
        time.sleep(0.005)


def assert_each_event_paid_once(member, refs: set[str]) -> list[UsageEvent]:  # noqa: ANN001
    """Every event is paid by the seat or by the credits, wholly: never both, never neither."""
    events = list(UsageEvent.objects.filter(account=member.account))
    for event in events:
        by_seat = (event.funded, event.charged) == (event.cost, 0) and event.funded_by in refs
        by_credits = (event.funded, event.charged, event.funded_by) == (0, event.cost, "")
        assert by_seat != by_credits, (event.request_id, event.cost, event.funded, event.charged, event.funded_by)
    charges = SeatCharge.objects.filter(kind="spend")
    seat_paid = {e.id: e.funded for e in events if e.funded}
    assert {c.usage_event_id: c.spent_delta for c in charges} == seat_paid
    return events


def test_unassigning_a_seat_while_its_member_records_usage(platform, tight):
    """Eight threads record three events each (0.02: all fit) while the seat is taken away: each event is
    the seat's (before) or the credits' (after), and the windows hold exactly the seat's."""
    member = seated_member(platform, tight)
    amount = D("0.02")

    def calls(n: int):  # noqa: ANN202
        return lambda: [use(platform, member, f"call-{n}-{k}", amount) for k in range(3)]

    def unassign() -> None:
        _wait_for_charges(4)
        seat_unassign(platform=platform, ai_plan=tight, username="seated")

    outcomes = run_together([calls(n) for n in range(8)] + [unassign])

    assert errors_of(outcomes) == Counter(), [v for kind, v in outcomes if kind == "error"]
    events = assert_each_event_paid_once(member, {"seat:tight"})
    assert len(events) == 24
    seat_paid = sum((e.funded for e in events), D(0))
    assert seat_paid >= 4 * amount
    assert not SeatAssignment.objects.exists()
    assert CreditAccount.objects.get(pk=member.account.pk).external_funding is False
    assert_windows_hold(member, seat_paid)
    assert_windows_are_their_charges(member)
    account = CreditAccount.objects.get(pk=member.account.pk)
    assert account.balance == CREDITS - sum((e.charged for e in events), D(0))
    assert_ledger_sound(member)


def test_moving_a_seat_to_another_plan_while_its_member_records_usage(platform, tight):
    """The same, while the seat moves to another plan (unassigned, then assigned again): each event is paid by
    the first plan, by the credits in between, or by the second plan; never in part."""
    other = make_ai_plan("other", Tier.ADVANCED, weekly_budget=D("3.00"), session_budget=D("0.90"))
    seats_grant(platform=platform, ai_plan=other, quantity=1)
    member = seated_member(platform, tight)
    amount = D("0.02")

    def calls(n: int):  # noqa: ANN202
        return lambda: [use(platform, member, f"call-{n}-{k}", amount) for k in range(3)]

    def move() -> None:
        _wait_for_charges(4)
        seat_unassign(platform=platform, ai_plan=tight, username="seated")
        seat_assign(platform=platform, ai_plan=other, username="seated", actor=None)

    outcomes = run_together([calls(n) for n in range(8)] + [move])

    assert errors_of(outcomes) == Counter(), [v for kind, v in outcomes if kind == "error"]
    events = assert_each_event_paid_once(member, {"seat:tight", "seat:other"})
    assert len(events) == 24
    for charge in SeatCharge.objects.select_related("usage_event", "ai_plan"):
        assert charge.usage_event.funded_by == f"seat:{charge.ai_plan.slug}"
    assert SeatAssignment.objects.get().ai_plan == other
    assert CreditAccount.objects.get(pk=member.account.pk).external_funding is True
    assert_windows_hold(member, sum((e.funded for e in events), D(0)))
    assert_windows_are_their_charges(member)
    assert_ledger_sound(member)
