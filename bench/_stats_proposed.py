"""The changes bench/README.md proposes for GET /api/billing/usage/stats/, as a bench-only copy of the endpoint
(``bench/usage_stats.py --proposed`` routes it in its own process at ``/api/bench/usage-stats-proposed/`` and
checks that it answers byte for byte what the real one answers). Not app code. Same query validation
(``UsageStatsQuerySerializer``), same ``UsageStats``/``UsageBucket`` objects; what changes:

1. tenant and account: the caller's membership and account with two prepared SQL statements instead of the
   ORM (``membership_list_for_user``, ``account_for``), which compiles each query on every request;
2. the rollup aggregation (``credits.selectors.usage_stats``): the same GROUP BY as one prepared SQL
   statement instead of the ORM ``annotate/values/annotate`` query (compiled on every request);
3. the response built by hand (``stats_json``, the same keys and formats as ``UsageStatsSerializer``) instead
   of the nested DRF serializer (13 bucket serializers with 7 fields each for a monthly year).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response

from billing_service.db import server_bound_cursor
from billing_service.money import format_money
from credits import selectors
from credits.api.metering_serializers import UsageStatsQuerySerializer
from credits.api.metering_views import UsageStatsViewSet, caller_or_named_account

try:  # the query validation the real view uses (it moved to billing_service.validation)
    from billing_service.validation import validated as _valid
except ImportError:  # pragma: no cover
    from credits.api.views import _valid
from credits.models import CreditAccount
from credits.selectors import UsageBucket, UsageStats

_TRUNC = {"daily": "day", "monthly": "month", "yearly": "year"}
_ROLLUPS = (
    "SELECT date_trunc(%s, day::timestamp)::date, endpoint, sum(total_requests), sum(successful_requests), "
    "sum(failed_requests), sum(credits_consumed), sum(input_tokens), sum(output_tokens) "
    "FROM credits_usagerollup WHERE account_id = %s AND day >= %s AND day <= %s GROUP BY 1, 2"
)
_ACCOUNT_FIELDS = [f.attname for f in CreditAccount._meta.concrete_fields]
_ACCOUNT = (
    f"SELECT {', '.join(f.column for f in CreditAccount._meta.concrete_fields)} FROM credits_creditaccount "
    "WHERE platform_id = %s AND user_id = %s"
)
_KEYS = ("bucket", "endpoint", "total", "successful", "failed", "credits", "tokens_in", "tokens_out")


def usage_stats_fast(*, account: CreditAccount, period: str, start: datetime, end: datetime) -> UsageStats:
    """``credits.selectors.usage_stats`` with its query prepared."""
    first_day, last_day = selectors._utc_day(start), selectors._utc_day(end)
    stats = UsageStats(
        account=account, period=period, period_start=selectors._as_instant(start),
        period_end=selectors._as_instant(end), first_day=first_day, last_day=last_day, buckets=[],
    )
    buckets: dict[date, UsageBucket] = {}
    day = selectors.usage_bucket_start(first_day, period)
    while day <= last_day:
        following = selectors.usage_bucket_next(day, period)
        buckets[day] = UsageBucket(period_start=selectors._day_start(day), period_end=selectors._day_start(following))
        day = following
    with server_bound_cursor() as cursor:
        cursor.execute(_ROLLUPS, [_TRUNC[period], account.pk, first_day, last_day], prepare=True)
        rows = cursor.fetchall()
    for values in rows:
        row = dict(zip(_KEYS, values, strict=True))
        buckets[row["bucket"]].add(row)
        stats.add(row)
    stats.buckets = list(buckets.values())
    stats.sort_endpoints()
    for bucket in stats.buckets:
        bucket.sort_endpoints()
    return stats


def _instant(value: datetime) -> str:
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _figures(f: Any) -> dict[str, Any]:
    return {
        "total_requests": f.total_requests,
        "successful_requests": f.successful_requests,
        "failed_requests": f.failed_requests,
        "credits_consumed": format_money(f.credits_consumed),
        "input_tokens": f.input_tokens,
        "output_tokens": f.output_tokens,
        "requests_by_endpoint": dict(f.requests_by_endpoint),
    }


def stats_json(stats: UsageStats) -> dict[str, Any]:
    """What ``UsageStatsSerializer(stats).data`` gives, key for key."""
    return {
        **_figures(stats),
        "user_id": stats.account.user_id,
        "account_id": str(stats.account.id),
        "period": stats.period,
        "period_start": _instant(stats.period_start),
        "period_end": _instant(stats.period_end),
        "buckets": [
            {**_figures(b), "period_start": _instant(b.period_start), "period_end": _instant(b.period_end)}
            for b in stats.buckets
        ],
    }


class ProposedUsageStatsViewSet(UsageStatsViewSet):
    def retrieve(self, request: Request) -> Response:
        query = _valid(UsageStatsQuerySerializer, request.query_params)
        account = None
        if query.get("account_id") is None and self.tenant.membership is not None:
            with server_bound_cursor() as cursor:
                cursor.execute(_ACCOUNT, [self.tenant.platform.pk, request.user.pk], prepare=True)
                row = cursor.fetchone()
            account = CreditAccount.from_db("default", _ACCOUNT_FIELDS, row) if row else None
        if account is None:
            account = caller_or_named_account(self, request, query.get("account_id"))
        stats = usage_stats_fast(account=account, period=query["period"], start=query["from"], end=query["to"])
        return Response(stats_json(stats))


def add_route() -> None:
    from django.urls import clear_url_caches, path

    from billing_service import urls

    if not any(getattr(p, "name", None) == "bench-usage-stats-proposed" for p in urls.urlpatterns):
        urls.urlpatterns.append(
            path("api/bench/usage-stats-proposed/", ProposedUsageStatsViewSet.as_view({"get": "retrieve"}),
                 name="bench-usage-stats-proposed")
        )
        clear_url_caches()
