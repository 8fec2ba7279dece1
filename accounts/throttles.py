"""Rate limits of the public endpoints (the payment providers' webhooks, the JWT endpoints): requests per client
address and scope in fixed windows, counted in PostgreSQL (``RateCounter``: one upsert per request) so that every
worker of every web server shares one count. Beyond the limit, 429 ``throttled`` with ``Retry-After``.

Rates are settings (``RATE_LIMITS``: scope -> "N/second|minute|hour|day"); the client address is the one the login
limits use (``accounts.services.client_address``: ``REMOTE_ADDR``, or behind ``TRUSTED_PROXY_COUNT`` proxies the
address the nearest of them saw)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.throttling import BaseThrottle

from accounts.services import client_address

_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}

_COUNT = (
    "INSERT INTO accounts_ratecounter (key, window_start, count) VALUES (%s, %s, 1) "
    "ON CONFLICT (key, window_start) DO UPDATE SET count = accounts_ratecounter.count + 1 RETURNING count"
)
_PURGE = "DELETE FROM accounts_ratecounter WHERE starts_with(key, %s) AND window_start < %s"


def rate_parse(rate: str) -> tuple[int, int]:
    """"100/minute" -> (100, 60). A bad rate is a configuration error, raised at startup by the settings."""
    number, _, period = rate.partition("/")
    if not number.isdigit() or int(number) < 1 or period not in _PERIODS:
        raise ValueError(f"a rate is N/second, N/minute, N/hour or N/day with N >= 1, not {rate!r}")
    return int(number), _PERIODS[period]


class AddressRateThrottle(BaseThrottle):
    """``scope``'s rate (``RATE_LIMITS[scope]``) per client address. A view sets ``throttle_scope``."""

    def allow_request(self, request: Any, view: Any) -> bool:
        scope = getattr(view, "throttle_scope", None)
        rate = settings.RATE_LIMITS.get(scope) if scope else None
        if not rate:
            return True
        limit, seconds = rate_parse(rate)
        now = timezone.now()
        start = datetime.fromtimestamp(math.floor(now.timestamp() / seconds) * seconds, tz=UTC)
        self._wait = max(1, math.ceil((start + timedelta(seconds=seconds) - now).total_seconds()))
        key = f"{scope}:{client_address(request.META) or 'unknown'}"
        # Its own transaction, committed whatever the request does next: a refused request still counts.
        with transaction.atomic(durable=not connection.in_atomic_block), connection.cursor() as cursor:
            cursor.execute(_COUNT, [key[:200], start])
            count = cursor.fetchone()[0]
            if count == 1:  # a window opens: forget this scope's that have closed, every address's
                cursor.execute(_PURGE, [f"{scope}:", start - timedelta(seconds=seconds)])
        return count <= limit

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)


def rate_limits_check(app_configs: Any = None, **kwargs: Any) -> list:
    """A system check (``manage.py check``, and every start): each of ``RATE_LIMITS`` is a rate or empty."""
    from django.core import checks

    problems = []
    for scope, rate in settings.RATE_LIMITS.items():
        try:
            if rate:
                rate_parse(rate)
        except ValueError as exc:
            problems.append(checks.Error(f"RATE_LIMITS[{scope!r}]: {exc}", id="accounts.E001"))
    return problems
