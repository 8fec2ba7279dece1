"""The budget windows of a seat, as pure functions of a moment: the calendar week in the platform's time zone
(Monday 00:00 to the next Monday 00:00, whatever the daylight-saving changes in between) and the 6-hour session
that the first request after the previous session's end opens."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache

from entitlements.models import SESSION_HOURS

SESSION = timedelta(hours=SESSION_HOURS)


@lru_cache(maxsize=256)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def week_bounds(now: datetime, time_zone: str) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the calendar week holding ``now`` in ``time_zone``: from Monday 00:00 local to the
    next Monday 00:00 local (a week across a daylight-saving change lasts 167 or 169 hours). A Monday 00:00 that
    the clocks skip is the moment they skip it."""
    zone = _zone(time_zone)
    local = now.astimezone(zone)
    monday = local.date() - timedelta(days=local.weekday())
    start = datetime.combine(monday, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(monday + timedelta(days=7), time(0), tzinfo=zone).astimezone(UTC)
    return start, end


def session_bounds(now: datetime) -> tuple[datetime, datetime]:
    """The session a request at ``now`` opens when none is open."""
    return now, now + SESSION
