"""A seat's budget windows (issue 10): the calendar week in the platform's time zone (``week_bounds``, pure) across
daylight-saving changes and clocks that skip or repeat midnight, and end to end through ``usage_record`` with an
injected clock: the 6-hour session opened by a request, the week renewed at Monday 00:00 local, a platform whose
time zone changes in the middle of a week.

The clock: the credits services read ``django.utils.timezone.now`` (``credits.services.usage.timezone``); the
usage path quotes the seat at ``priced.recorded_at``, that moment. The tests set it through that module."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accounts.models import Platform, time_zone_known
from credits.models import CreditAccount, LedgerEntry
from credits.services import UsageInput, usage_record
from entitlements.errors import BudgetExceeded
from entitlements.models import SeatCharge, SeatWindow, Tier, WindowKind
from entitlements.services import seat_assign, seats_grant
from entitlements.windows import SESSION, session_bounds, week_bounds
from tests.conftest import make_member
from tests.entitlements.conftest import make_ai_plan

D = Decimal
H = timedelta(hours=1)
US = timedelta(microseconds=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- week_bounds: named weeks ----------------------------------------------------------------------------------

# (zone, a moment of the week, its start, its end): the weeks across the daylight-saving changes of 2026, and the
# zones whose clocks skip or repeat a midnight, as zoneinfo has them.
WEEKS = [
    ("UTC", utc(2026, 3, 4, 12), utc(2026, 3, 2), utc(2026, 3, 9)),
    # Paris: summer time from Sunday 2026-03-29 02:00 (to 03:00), back on Sunday 2026-10-25 03:00 (to 02:00).
    ("Europe/Paris", utc(2026, 3, 29, 12), utc(2026, 3, 22, 23), utc(2026, 3, 29, 22)),  # 167 h
    ("Europe/Paris", utc(2026, 3, 29, 0, 59, 59), utc(2026, 3, 22, 23), utc(2026, 3, 29, 22)),
    ("Europe/Paris", utc(2026, 10, 25, 0, 30), utc(2026, 10, 18, 22), utc(2026, 10, 25, 23)),  # 02:30, first
    ("Europe/Paris", utc(2026, 10, 25, 1, 30), utc(2026, 10, 18, 22), utc(2026, 10, 25, 23)),  # 02:30, again
    ("Europe/Paris", utc(2026, 10, 21), utc(2026, 10, 18, 22), utc(2026, 10, 25, 23)),  # 169 h
    # New York: from Sunday 2026-03-08 02:00 (to 03:00), back on Sunday 2026-11-01 02:00 (to 01:00).
    ("America/New_York", utc(2026, 3, 8, 12), utc(2026, 3, 2, 5), utc(2026, 3, 9, 4)),  # 167 h
    ("America/New_York", utc(2026, 11, 1, 5, 30), utc(2026, 10, 26, 4), utc(2026, 11, 2, 5)),  # 01:30, first
    ("America/New_York", utc(2026, 11, 1, 6, 30), utc(2026, 10, 26, 4), utc(2026, 11, 2, 5)),  # 01:30, again
    # Santiago skips Sunday 2026-09-06 00:00 (to 01:00) and repeats Saturday 23:00 on 2026-04-04.
    ("America/Santiago", utc(2026, 9, 6, 3, 59, 59), utc(2026, 8, 31, 4), utc(2026, 9, 7, 3)),  # 167 h
    ("America/Santiago", utc(2026, 9, 6, 4), utc(2026, 8, 31, 4), utc(2026, 9, 7, 3)),
    ("America/Santiago", utc(2026, 4, 5, 3, 30), utc(2026, 3, 30, 3), utc(2026, 4, 6, 4)),  # 169 h
    # Beirut skips Sunday 2026-03-29 00:00 (to 01:00).
    ("Asia/Beirut", utc(2026, 3, 28, 22), utc(2026, 3, 22, 22), utc(2026, 3, 29, 21)),  # 167 h
    # Tehran skipped Monday 2021-03-22 00:00 (to 01:00, at 20:30 UTC): that week starts the moment it skips it.
    ("Asia/Tehran", utc(2021, 3, 21, 20, 29, 59), utc(2021, 3, 14, 20, 30), utc(2021, 3, 21, 20, 30)),  # 168 h
    ("Asia/Tehran", utc(2021, 3, 21, 20, 30), utc(2021, 3, 21, 20, 30), utc(2021, 3, 28, 19, 30)),  # 167 h
    # Tehran set Monday 2020-09-21 00:00 back to Sunday 23:00 (at 19:30 UTC): the repeated Sunday hour ends the
    # old week, the new one starts at Monday 00:00 (+03:30), reached once.
    ("Asia/Tehran", utc(2020, 9, 20, 19, 45), utc(2020, 9, 13, 19, 30), utc(2020, 9, 20, 20, 30)),  # 169 h
    ("Asia/Tehran", utc(2020, 9, 20, 20, 30), utc(2020, 9, 20, 20, 30), utc(2020, 9, 27, 20, 30)),
    # Jerusalem set Monday 2001-09-24 01:00 back to 00:00: Monday 00:00 came twice; the week starts at the first.
    ("Asia/Jerusalem", utc(2001, 9, 23, 22, 30), utc(2001, 9, 23, 21), utc(2001, 9, 30, 22)),  # 169 h
    ("Asia/Jerusalem", utc(2001, 9, 23, 20, 59, 59), utc(2001, 9, 16, 21), utc(2001, 9, 23, 21)),
]


@pytest.mark.parametrize(("zone", "now", "start", "end"), WEEKS,
                         ids=[f"{z}-{n:%Y%m%dT%H%M%S}" for z, n, _, _ in WEEKS])
def test_week_bounds_of_named_weeks(zone, now, start, end):
    assert week_bounds(now, zone) == (start, end)
    assert start <= now < end


@pytest.mark.parametrize(("zone", "start", "hours"), [
    ("Europe/Paris", utc(2026, 3, 22, 23), 167), ("Europe/Paris", utc(2026, 10, 18, 22), 169),
    ("America/New_York", utc(2026, 3, 2, 5), 167), ("America/New_York", utc(2026, 10, 26, 4), 169),
    ("Europe/Paris", utc(2026, 6, 14, 22), 168), ("UTC", utc(2026, 3, 30), 168),
])
def test_a_week_across_a_daylight_saving_change_lasts_167_or_169_hours(zone, start, hours):
    got_start, end = week_bounds(start + 3 * 24 * H, zone)
    assert got_start == start
    assert end - start == hours * H


@pytest.mark.parametrize(("zone", "monday"), [
    ("UTC", utc(2026, 3, 30)), ("Europe/Paris", utc(2026, 3, 29, 22)), ("Europe/Paris", utc(2026, 10, 25, 23)),
    ("America/New_York", utc(2026, 3, 9, 4)), ("America/New_York", utc(2026, 11, 2, 5)),
    ("Europe/Paris", utc(2026, 3, 22, 23)), ("America/New_York", utc(2026, 10, 26, 4)),
])
def test_monday_midnight_local_is_where_one_week_ends_and_the_next_begins(zone, monday):
    """The last microsecond of Sunday is in the week that ends at Monday 00:00 local; Monday 00:00 is in the next."""
    before_start, before_end = week_bounds(monday - US, zone)
    after_start, after_end = week_bounds(monday, zone)
    assert before_end == monday == after_start
    assert before_start < monday - US < before_end
    local = monday.astimezone(zoneinfo.ZoneInfo(zone))
    assert (local.weekday(), local.time()) == (0, time(0))
    assert (monday - US).astimezone(zoneinfo.ZoneInfo(zone)).weekday() == 6


# --- week_bounds: every instant, every zone --------------------------------------------------------------------

ZONES = sorted(z for z in zoneinfo.available_timezones() if time_zone_known(z))
FIRST, LAST = date(1970, 1, 5), date(2037, 12, 28)  # Mondays


@st.composite
def instants(draw: st.DrawFn) -> tuple[str, datetime]:
    """A zone and an instant: anywhere in 1970-2037, or within three hours of a local Monday 00:00 (where the
    daylight-saving changes of zones that change at midnight fall)."""
    zone = draw(st.sampled_from(ZONES))
    if draw(st.booleans()):
        seconds = draw(st.integers(0, int((datetime(2038, 1, 1) - datetime(1970, 1, 1)).total_seconds())))
        return zone, utc(1970, 1, 1) + timedelta(seconds=seconds, microseconds=draw(st.integers(0, 999_999)))
    weeks = draw(st.integers(0, (LAST - FIRST).days // 7))
    monday = datetime.combine(FIRST + timedelta(weeks=weeks), time(0), tzinfo=zoneinfo.ZoneInfo(zone))
    shift = timedelta(seconds=draw(st.integers(-3 * 3600, 3 * 3600)), microseconds=draw(st.integers(-1, 1)))
    return zone, monday.astimezone(UTC) + shift


def _wall_clock_reached(instant: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    """What the local clock would read at ``instant`` had it not changed there: its reading just before."""
    return ((instant - US).astimezone(zone) + US).replace(tzinfo=None)


@settings(max_examples=600, deadline=None)
@given(instants())
def test_every_instant_is_in_the_week_that_week_bounds_gives(drawn):
    zone_name, now = drawn
    zone = zoneinfo.ZoneInfo(zone_name)
    start, end = week_bounds(now, zone_name)
    assert start <= now < end
    # The week of now's local date: it starts at the Monday 00:00 local before it (or the moment the clocks skip
    # that midnight) and ends seven days of wall clock later.
    monday = now.astimezone(zone).date() - timedelta(days=now.astimezone(zone).weekday())
    assert _wall_clock_reached(start, zone) == datetime.combine(monday, time(0))
    assert _wall_clock_reached(end, zone) == datetime.combine(monday + timedelta(days=7), time(0))
    # Weeks tile time: the next one starts where this one ends, the previous one ends where this one starts.
    assert week_bounds(end, zone_name)[0] == end
    assert week_bounds(start - US, zone_name)[1] == start


def test_session_bounds_are_six_hours_from_the_request():
    now = utc(2026, 3, 29, 1, 30)
    assert session_bounds(now) == (now, now + 6 * H) and SESSION == 6 * H


# --- end to end: sessions and weeks through usage_record -------------------------------------------------------


@pytest.fixture
def clock(monkeypatch):  # noqa: ANN001, ANN201
    """The moment the credits services read (``timezone.now``), set by the test: ``clock.at = ...``."""

    class Clock:
        at = utc(2027, 3, 3, 10)

    monkeypatch.setattr("credits.services.usage.timezone.now", lambda: Clock.at)
    return Clock


@pytest.fixture
def plan(db):  # noqa: ANN001, ANN201
    return make_ai_plan("windows", Tier.ADVANCED, weekly_budget=D("1.00"), session_budget=D("0.60"))


@pytest.fixture
def seated(platform, plan):  # noqa: ANN001, ANN201
    seats_grant(platform=platform, ai_plan=plan, quantity=1)
    member = make_member(platform, "seated", credits="10")
    seat_assign(platform=platform, ai_plan=plan, username="seated", actor=None)
    return member


def spend(platform, member, clock, moment: datetime, amount: str, request_id: str):  # noqa: ANN001, ANN201
    clock.at = moment
    return usage_record(platform=platform, usage=UsageInput(
        account_id=member.account.id, request_id=request_id, endpoint="/v1/chat", amount=D(amount)))


def windows(kind: str) -> list[tuple[datetime, datetime, Decimal]]:
    return [(w.starts_at, w.ends_at, w.spent.normalize())
            for w in SeatWindow.objects.filter(kind=kind).order_by("starts_at")]


def assert_windows_are_their_charges() -> None:
    for window in SeatWindow.objects.all():
        charges = SeatCharge.objects.filter(**{f"{window.kind}_window": window})
        assert window.spent == sum((c.spent_delta for c in charges), D(0)), window
        assert window.reserved == sum((c.reserved_delta for c in charges), D(0)), window


@pytest.mark.django_db
def test_a_session_runs_six_hours_from_the_request_that_opens_it(platform, seated, clock):
    t = utc(2027, 3, 3, 10, 15, 30, 250_000)
    spend(platform, seated, clock, t, "0.10", "r1")
    assert windows(WindowKind.SESSION) == [(t, t + 6 * H, D("0.1"))]
    spend(platform, seated, clock, t + 6 * H - timedelta(seconds=1), "0.20", "r2")  # 5h59m59s: the same session
    assert windows(WindowKind.SESSION) == [(t, t + 6 * H, D("0.3"))]
    spend(platform, seated, clock, t + 6 * H, "0.05", "r3")  # 6h exactly: a new one
    assert windows(WindowKind.SESSION) == [(t, t + 6 * H, D("0.3")), (t + 6 * H, t + 12 * H, D("0.05"))]
    assert windows(WindowKind.WEEKLY) == [(utc(2027, 3, 1), utc(2027, 3, 8), D("0.35"))]
    assert_windows_are_their_charges()


@pytest.mark.django_db
def test_a_refused_request_opens_no_session(platform, seated, clock):
    """A refusal writes nothing: the next session opens at the next accepted request, not at the refused one."""
    t = utc(2027, 3, 3, 10)
    spend(platform, seated, clock, t, "0.60", "r1")
    with pytest.raises(BudgetExceeded) as refused:
        spend(platform, seated, clock, t + 5 * H, "0.01", "r2")
    assert refused.value.details == {"budget": "session", "remaining": "0", "resets_at": "2027-03-03T16:00:00Z"}
    assert refused.value.retry_after == 3600
    spend(platform, seated, clock, t + 7 * H, "0.01", "r3")
    assert [w[:2] for w in windows(WindowKind.SESSION)] == [(t, t + 6 * H), (t + 7 * H, t + 13 * H)]


@pytest.mark.django_db
def test_the_week_renews_at_monday_midnight_in_the_platforms_time_zone(platform, seated, clock):
    """Paris, winter (UTC+1): Sunday 23:59 and Monday 00:00 local are in different weeks, and Monday 00:00 UTC
    (01:00 in Paris) is not where anything renews."""
    Platform.objects.filter(pk=platform.pk).update(time_zone="Europe/Paris")
    spend(platform, seated, clock, utc(2027, 1, 7, 9), "0.40", "thursday")  # Thursday 10:00 Paris
    spend(platform, seated, clock, utc(2027, 1, 10, 22, 59), "0.10", "sunday-23:59")  # Sunday 23:59 Paris
    spend(platform, seated, clock, utc(2027, 1, 10, 23), "0.20", "monday-00:00")  # Monday 00:00 Paris
    spend(platform, seated, clock, utc(2027, 1, 11, 0, 30), "0.05", "monday-01:30")

    assert windows(WindowKind.WEEKLY) == [
        (utc(2027, 1, 3, 23), utc(2027, 1, 10, 23), D("0.5")),
        (utc(2027, 1, 10, 23), utc(2027, 1, 17, 23), D("0.25")),
    ]
    # the session Sunday 23:59 opened runs on into Monday: it is not the week's
    sunday = utc(2027, 1, 10, 22, 59)
    assert windows(WindowKind.SESSION)[-1] == (sunday, sunday + 6 * H, D("0.35"))
    assert_windows_are_their_charges()


@pytest.mark.django_db
def test_a_spent_week_is_refused_until_monday_midnight_local(platform, seated, clock):
    Platform.objects.filter(pk=platform.pk).update(time_zone="America/New_York")
    spend(platform, seated, clock, utc(2027, 1, 7, 15), "0.50", "thursday")
    spend(platform, seated, clock, utc(2027, 1, 10, 15), "0.50", "sunday-10:00")  # the week's 1.00 is spent
    with pytest.raises(BudgetExceeded) as refused:
        spend(platform, seated, clock, utc(2027, 1, 11, 4, 59, 59), "0.01", "sunday-23:59:59")
    assert refused.value.details == {"budget": "weekly", "remaining": "0", "resets_at": "2027-01-11T05:00:00Z"}
    assert refused.value.retry_after == 1
    assert spend(platform, seated, clock, utc(2027, 1, 11, 5), "0.01", "monday-00:00").event.funded == D("0.01")
    assert [w[2] for w in windows(WindowKind.WEEKLY)] == [D("1"), D("0.01")]
    assert CreditAccount.objects.get(pk=seated.account.pk).balance == D("10")
    assert not LedgerEntry.objects.filter(account=seated.account, transaction_type="subtract").exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("zone", "next_week"), [
    # eastward: the Paris week holding Monday 00:30 UTC began at 23:00 UTC, before the UTC week ended: it starts
    # when that one ended
    ("Europe/Paris", (utc(2027, 1, 11), utc(2027, 1, 17, 23))),
    # westward: the New York week holding Monday 00:30 UTC ends at 05:00 UTC that day: from the UTC week's end to
    # then, a short week, never a second budget for hours the old week already counted
    ("America/New_York", (utc(2027, 1, 11), utc(2027, 1, 11, 5))),
])
def test_a_time_zone_changed_mid_week_applies_from_the_next_week_window(platform, seated, clock, zone, next_week):
    """The week window open when the platform's time zone changes runs to its end and keeps its spending (the
    change gives no fresh budget mid-week); the first request after it ends opens the week of the new zone that
    holds that moment, starting no earlier than the old window's end (``entitlements.funding.seats_read``)."""
    spend(platform, seated, clock, utc(2027, 1, 6, 10), "0.30", "wednesday")
    old = (utc(2027, 1, 4), utc(2027, 1, 11))
    assert windows(WindowKind.WEEKLY) == [(*old, D("0.3"))]

    Platform.objects.filter(pk=platform.pk).update(time_zone=zone)
    spend(platform, seated, clock, utc(2027, 1, 7, 10), "0.30", "thursday")
    spend(platform, seated, clock, utc(2027, 1, 10, 23, 30), "0.10", "sunday-23:30-utc")
    assert windows(WindowKind.WEEKLY) == [(*old, D("0.7"))]  # the old week window, still open, took them

    spend(platform, seated, clock, utc(2027, 1, 11, 0, 30), "0.20", "monday-00:30-utc")
    assert sorted(windows(WindowKind.WEEKLY)) == sorted([(*old, D("0.7")), (*next_week, D("0.2"))])
    assert_windows_are_their_charges()
