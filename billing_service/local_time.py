"""Calendar days in a platform's time zone (``Platform.time_zone``, an IANA name): the one place a local date and a
local midnight are computed, for the check-in day (credits), a seat's week and the month's seat spending
(entitlements). A midnight the clocks skip is the moment they skip it."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, time
from functools import lru_cache


@lru_cache(maxsize=256)
def zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def local_date(now: datetime, time_zone: str) -> date:
    """The calendar day ``now`` falls on in ``time_zone``."""
    return now.astimezone(zone(time_zone)).date()


def local_midnight(day: date, time_zone: str) -> datetime:
    """00:00 of ``day`` in ``time_zone``, in UTC."""
    return datetime.combine(day, time(0), tzinfo=zone(time_zone)).astimezone(UTC)
