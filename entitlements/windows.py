"""The budget windows of a seat, as pure functions of a moment: the calendar week in the platform's time zone
(Monday 00:00 to the next Monday 00:00, whatever the daylight-saving changes in between) and the 6-hour session
that the first request after the previous session's end opens."""

from __future__ import annotations

from datetime import datetime, timedelta

from billing_service.local_time import local_date, local_midnight
from entitlements.models import SESSION_HOURS

SESSION = timedelta(hours=SESSION_HOURS)


def week_bounds(now: datetime, time_zone: str) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the calendar week holding ``now`` in ``time_zone``: from Monday 00:00 local to the
    next Monday 00:00 local (a week across a daylight-saving change lasts 167 or 169 hours). A Monday 00:00 that
    the clocks skip is the moment they skip it."""
    today = local_date(now, time_zone)
    monday = today - timedelta(days=today.weekday())
    return local_midnight(monday, time_zone), local_midnight(monday + timedelta(days=7), time_zone)


def session_bounds(now: datetime) -> tuple[datetime, datetime]:
    """The session a request at ``now`` opens when none is open."""
    return now, now + SESSION
