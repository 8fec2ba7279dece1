"""account-api.txt, served under ``/auth/account/`` by the native views. Every endpoint needs a caller (JWT Bearer
as the document says; a Token or a session works too): the native view authenticates, as natively.

- ``GET usage``: the native usage statistics (``GET /api/billing/usage/stats/``: ``period``, ``from``, ``to``) as
  a UsageStats object. Beyond the document it keeps the native ``account_id``, ``input_tokens``,
  ``output_tokens`` and ``buckets`` (the same figures per day, month or year of ``period``, oldest first).
  ``from`` and ``to`` count whole UTC days. Without ``to``, ``to`` is now; without ``from``, ``from`` is the first
  day of the month of ``to`` (the document's "start of current month" whenever ``to`` is in the current month).
- ``GET credits``: the native credit account (``GET /api/billing/account/``) as a CreditBalance object. It holds
  every field of it at the lowest cost (the summary would add two usage aggregates); its ``user_id`` is the
  caller, whose account it is (``caller_id``).
- ``GET ledger``: the native ledger listing (``GET /api/billing/transactions/``), newest first, as
  ``{"data": [CreditLedgerEntry...], "total", "limit", "offset"}``: ``total`` counts every entry the filters
  match; ``limit`` (default 50, max 100) and ``offset`` (default 0) echo the page. ``type`` maps onto the native
  filters: none -> ``direction=either`` (every entry that moved the balance: holds, which only move credits
  between available and reserved, are left out), ``credit`` -> ``direction=credit`` (the balance went up),
  ``debit`` -> ``direction=debit`` (it went down), both leaving out manual adjustments (``exclude_type``), and
  ``adjustment`` -> ``transaction_type=adjustment``. ``from`` and ``to`` are inclusive (ISO 8601 date-times; a bare
  date is its whole UTC day). An entry's ``type`` is ``adjustment`` for a manual adjustment, else ``credit`` or
  ``debit`` by the sign of the balance change: a filter and the entries it lists agree. ``id`` is
  the entry's UUID (a string, where the document says integer: it is the entry's identity everywhere else in
  the API); ``sequence`` is its position in the account's ledger (1, 2, 3... with no gap); ``transaction_type``
  is the native kind (``add``, ``subtract``, ``refund``...).
- ``GET summary``: the native summary (``GET /api/billing/summary/``) as an AccountSummary object, its
  ``credit_balance`` and ``usage_this_month`` shaped as above, ``subscription`` the native subscription object (or
  null), plus the native ``account_id``.

Numbers: every field the document types ``float`` (balances, amounts, thresholds, ``credits_consumed``, in the
buckets too) is a JSON number written exactly from the native decimal (``ExactJSONRenderer``: "121.50" -> 121.5,
never rounded), and always has beside it ``<field>_exact``: the native decimal string, unchanged ("121.50"), for
clients that read numbers as doubles (which round beyond 15 significant digits). A null amount (no auto-reload
threshold) is null in both. Integers, strings, booleans and times (ISO 8601 UTC strings) are the native values.

Errors are the native envelope ``{"error": {"code", "message", "details"}}`` with the native status, the fields
named as this API names them (``from``, ``to``, ``type``, ``limit``, ``offset``). A query parameter an endpoint does
not take, or one given twice, is a 400 naming it, as natively."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.urls import path
from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from billing_service.errors import InvalidInput
from billing_service.schema import ERROR_RESPONSES, SERVICE_RESPONSES, extend_schema
from billing_service.surfaces import ExactNumberField, SurfaceView, native_view, number
from credits.api.metering_views import UsageStatsViewSet
from credits.api.views import LedgerEntryViewSet
from credits.models import TransactionType
from payments.api.account_views import AccountSummaryViewSet, CreditAccountViewSet
from subscriptions.api.serializers import SubscriptionSerializer

TAG = "account-api"
DEFAULT_LIMIT = 50

# The native views, as their routers mount them.
NATIVE = {
    "usage": native_view(UsageStatsViewSet, "billing-usage-stats", True, get="retrieve"),
    "account": native_view(CreditAccountViewSet, "billing-account", True, get="retrieve"),
    "ledger": native_view(LedgerEntryViewSet, "billing-transactions", get="list"),
    "summary": native_view(AccountSummaryViewSet, "billing-summary", True, get="retrieve"),
}

# ``type`` as the native ledger filters take it.
LEDGER_TYPES: dict[str | None, dict[str, str]] = {
    None: {"direction": "either"},
    "credit": {"direction": "credit", "exclude_type": TransactionType.ADJUSTMENT},
    "debit": {"direction": "debit", "exclude_type": TransactionType.ADJUSTMENT},
    "adjustment": {"transaction_type": TransactionType.ADJUSTMENT},
}


# --- shapes -----------------------------------------------------------------------------------------------


def amount(name: str, native: str | None) -> dict[str, Any]:
    """An amount as this API writes it: ``name``, a JSON number, and ``name_exact``, the native string."""
    return {name: number(native), f"{name}_exact": native}


def plain(value: Any) -> Any:
    """A native JSON value (a row's ``metadata``) with its floats as the decimals their JSON text writes
    (``ExactJSONRenderer`` writes no float)."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def usage_figures(native: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "total_requests": native["total_requests"],
        "successful_requests": native["successful_requests"],
        "failed_requests": native["failed_requests"],
        **amount("credits_consumed", native["credits_consumed"]),
        "input_tokens": native["input_tokens"],
        "output_tokens": native["output_tokens"],
        "requests_by_endpoint": native["requests_by_endpoint"],
        "period_start": native["period_start"],
        "period_end": native["period_end"],
    }


def usage_stats(native: Mapping[str, Any]) -> dict[str, Any]:
    """The native usage statistics as a UsageStats object."""
    return {
        "user_id": native["user_id"],
        "account_id": native["account_id"],
        "period": native["period"],
        **usage_figures(native),
        "buckets": [usage_figures(bucket) for bucket in native["buckets"]],
    }


def credit_balance(native: Mapping[str, Any]) -> dict[str, Any]:
    """The native summary's ``credit_balance`` (``CreditBalanceSerializer``'s names) as a CreditBalance object."""
    return {
        "user_id": native["user_id"],
        **amount("balance", native["balance"]),
        **amount("reserved", native["reserved"]),
        **amount("available", native["available"]),
        "currency": native["currency"],
        "last_updated": native["last_updated"],
        "auto_reload_enabled": native["auto_reload_enabled"],
        **amount("auto_reload_threshold", native["auto_reload_threshold"]),
        **amount("auto_reload_amount", native["auto_reload_amount"]),
    }


def credit_balance_of_account(native: Mapping[str, Any], user_id: int) -> dict[str, Any]:
    """The native credit account (``CreditAccountSerializer``) as a CreditBalance object: the same figures as
    the summary's ``credit_balance``, under its names."""
    return credit_balance({
        "user_id": user_id,
        "balance": native["balance"],
        "reserved": native["reserved"],
        "available": native["available_credits"],
        "currency": native["currency"],
        "last_updated": native["last_updated"],
        "auto_reload_enabled": native["auto_recharge_enabled"],
        "auto_reload_threshold": native["auto_recharge_threshold_usd"],
        "auto_reload_amount": native["auto_recharge_amount_usd"],
    })


def entry_type(row: Mapping[str, Any]) -> str:
    if row["transaction_type"] == TransactionType.ADJUSTMENT:
        return "adjustment"
    return "debit" if Decimal(row["balance_change"]) < 0 else "credit"


def ledger_entry(row: Mapping[str, Any], user_id: int) -> dict[str, Any]:
    """A native ledger row as a CreditLedgerEntry: ``amount`` is the signed change of the balance."""
    return {
        "id": row["id"],
        "sequence": row["sequence"],
        "user_id": user_id,
        "type": entry_type(row),
        "transaction_type": row["transaction_type"],
        **amount("amount", row["balance_change"]),
        **amount("balance_after", row["credits_balance_after"]),
        "description": row["description"],
        "reference": row["reference"],
        "metadata": plain(row["metadata"]),
        "created_at": row["created_at"],
    }


def summary(native: Mapping[str, Any]) -> dict[str, Any]:
    """The native summary as an AccountSummary object."""
    return {
        "user_id": native["user_id"],
        "account_id": native["account_id"],
        "email": native["email"],
        "credit_balance": credit_balance(native["credit_balance"]),
        "subscription": plain(native["subscription"]),
        "usage_this_month": usage_stats(native["usage_this_month"]),
        "total_requests_all_time": native["total_requests_all_time"],
        "account_created_at": native["account_created_at"],
        "last_login_at": native["last_login_at"],
    }


def caller_id(native: Response) -> int:
    """The id of the user the native view authenticated: the owner of the account it answered about (these
    endpoints never name another account).

    The surface does not authenticate (``SurfaceView``): its own ``request.user`` is not loaded, and loading it
    would cost queries. The native view set ``user`` on its own DRF request, which its response keeps in
    ``renderer_context`` (``APIView.finalize_response``): the user is already loaded there, so this runs no
    query."""
    return native.renderer_context["request"].user.pk


# --- views -----------------------------------------------------------------------------------------------


class AccountApiView(SurfaceView):
    """A view of account-api.txt: the native error envelope, the fields named as this API names them."""


# --- schema ----------------------------------------------------------------------------------------------


def _number(help_text: str, *, allow_null: bool = False) -> serializers.Field:
    return ExactNumberField(allow_null=allow_null, help_text=f"{help_text} A JSON number written exactly from "
                            "the decimal.")


def _exact(name: str, *, allow_null: bool = False) -> serializers.Field:
    return serializers.CharField(allow_null=allow_null, help_text=f"`{name}` as an exact decimal string.")


def _amount_fields(name: str, help_text: str, *, allow_null: bool = False) -> dict[str, serializers.Field]:
    return {name: _number(help_text, allow_null=allow_null), f"{name}_exact": _exact(name, allow_null=allow_null)}


def _usage_fields() -> dict[str, serializers.Field]:
    return {
        "total_requests": serializers.IntegerField(help_text="Total API requests."),
        "successful_requests": serializers.IntegerField(help_text="Successful requests."),
        "failed_requests": serializers.IntegerField(help_text="Failed requests."),
        **_amount_fields("credits_consumed", "Credits consumed (exact, up to 12 decimals)."),
        "input_tokens": serializers.IntegerField(help_text="Input tokens reported with the requests."),
        "output_tokens": serializers.IntegerField(help_text="Output tokens reported with the requests."),
        "requests_by_endpoint": serializers.DictField(
            child=serializers.IntegerField(), help_text="Request counts by endpoint, busiest first."
        ),
    }


UsageBucketSchema = inline_serializer(name="AccountApiUsageBucket", many=True, fields={
    **_usage_fields(),
    "period_start": serializers.DateTimeField(help_text="The bucket's first instant (UTC midnight)."),
    "period_end": serializers.DateTimeField(help_text="The first instant after the bucket (exclusive)."),
})

UsageStatsSchema = inline_serializer(name="AccountApiUsageStats", fields={
    "user_id": serializers.IntegerField(help_text="User ID."),
    "account_id": serializers.UUIDField(help_text="The credit account."),
    "period": serializers.ChoiceField(choices=["daily", "monthly", "yearly"], help_text="Time period."),
    **_usage_fields(),
    "period_start": serializers.DateTimeField(help_text="Period start time (the requested start)."),
    "period_end": serializers.DateTimeField(help_text="Period end time (the requested end)."),
    "buckets": UsageBucketSchema,
})

CreditBalanceSchema = inline_serializer(name="AccountApiCreditBalance", fields={
    "user_id": serializers.IntegerField(help_text="User ID."),
    **_amount_fields("balance", "Total balance, reserved credits included."),
    **_amount_fields("reserved", "Reserved (held) credits."),
    **_amount_fields("available", "Available for use: balance less reserved."),
    "currency": serializers.CharField(help_text="Currency code."),
    "last_updated": serializers.DateTimeField(allow_null=True, help_text="Time of the last ledger entry."),
    "auto_reload_enabled": serializers.BooleanField(help_text="Auto-reload enabled."),
    **_amount_fields("auto_reload_threshold", "Trigger threshold (USD); null when unset.", allow_null=True),
    **_amount_fields("auto_reload_amount", "Reload amount (USD); null when unset.", allow_null=True),
})

LedgerEntrySchema = inline_serializer(name="AccountApiLedgerEntry", many=True, fields={
    "id": serializers.UUIDField(help_text="Entry ID."),
    "sequence": serializers.IntegerField(help_text="Position in the account's ledger: 1, 2, 3... with no gap."),
    "user_id": serializers.IntegerField(help_text="User ID."),
    # A pattern, not an enum: an enum component named for "type" would rename the native ones (TypeEnum).
    "type": serializers.RegexField(r"^(credit|debit|adjustment)$", help_text="Transaction type: credit, debit, "
                                   "adjustment."),
    "transaction_type": serializers.ChoiceField(choices=TransactionType.choices, help_text="The native kind."),
    **_amount_fields("amount", "Signed change of the balance."),
    **_amount_fields("balance_after", "Balance after the transaction."),
    "description": serializers.CharField(help_text="Transaction description."),
    "reference": serializers.CharField(help_text="External reference (payment ID, etc.)."),
    "metadata": serializers.DictField(help_text="Additional metadata."),
    "created_at": serializers.DateTimeField(help_text="Transaction timestamp."),
})

LedgerSchema = inline_serializer(name="AccountApiLedger", fields={
    "data": LedgerEntrySchema,
    "total": serializers.IntegerField(help_text="Entries matching the filters."),
    "limit": serializers.IntegerField(help_text="Entries per page."),
    "offset": serializers.IntegerField(help_text="Entries skipped."),
})

SummarySchema = inline_serializer(name="AccountApiSummary", fields={
    "user_id": serializers.IntegerField(help_text="User ID."),
    "account_id": serializers.UUIDField(help_text="The credit account."),
    "email": serializers.EmailField(allow_null=True, help_text="User email; null when none is set."),
    "credit_balance": CreditBalanceSchema,
    "subscription": SubscriptionSerializer(allow_null=True, help_text="The current subscription, or null."),
    "usage_this_month": UsageStatsSchema,
    "total_requests_all_time": serializers.IntegerField(help_text="Total lifetime requests."),
    "account_created_at": serializers.DateTimeField(help_text="Account creation time."),
    "last_login_at": serializers.DateTimeField(allow_null=True, help_text="Last login time; null if never."),
})

PLATFORM_HEADER = OpenApiParameter(
    "X-Platform-Key", str, OpenApiParameter.HEADER,
    description="The platform to act in: needed by a Token user who belongs to several (a JWT names its own).",
)
ERRORS = {**ERROR_RESPONSES, **SERVICE_RESPONSES}


def _responses(body: Any) -> dict[int, Any]:
    return {200: body, **ERRORS}


class UsageView(AccountApiView):
    @extend_schema(
        operation_id="account_api_usage", tags=[TAG], summary="Account usage",
        description="Usage statistics of your account over a period (the native `GET /api/billing/usage/stats/`). "
        "`from` and `to` count whole UTC days; at most 366 buckets of `period`.",
        parameters=[
            PLATFORM_HEADER,
            OpenApiParameter("period", str, enum=["daily", "monthly", "yearly"],
                             description="Time period (default monthly)."),
            OpenApiParameter("from", str, description="Start, ISO 8601 date or date-time (default: the first day "
                             "of the month of `to`)."),
            OpenApiParameter("to", str, description="End, ISO 8601 date or date-time (default: now)."),
        ],
        responses=_responses(UsageStatsSchema),
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        query = {"period": params.get("period"), "from": params.get("from"), "to": params.get("to")}
        return self.reply(self.forward(request, NATIVE["usage"], query=query), usage_stats)


class CreditsView(AccountApiView):
    @extend_schema(
        operation_id="account_api_credits", tags=[TAG], summary="Credit balance",
        description="Your balance, reserved and available credits and auto-reload settings (the native "
        "`GET /api/billing/account/`).",
        parameters=[PLATFORM_HEADER],
        responses=_responses(CreditBalanceSchema),
    )
    def get(self, request: Request) -> Response:
        native = self.forward(request, NATIVE["account"], query={})
        return self.reply(native, lambda body: credit_balance_of_account(body, caller_id(native)))


class LedgerView(AccountApiView):
    field_names = {"created_from": "from", "created_to": "to", "direction": "type", "transaction_type": "type",
                   "exclude_type": "type"}

    @extend_schema(
        operation_id="account_api_ledger", tags=[TAG], summary="Credit ledger",
        description="Your credit transactions, newest first (the native `GET /api/billing/transactions/`), with "
        "`total`, `limit` and `offset`. Without `type`: every entry that moved the balance (holds are left out).",
        parameters=[
            PLATFORM_HEADER,
            OpenApiParameter("type", str, enum=["credit", "debit", "adjustment"],
                             description="credit: the balance went up; debit: it went down (manual adjustments "
                             "left out of both); adjustment: manual adjustments."),
            OpenApiParameter("from", str, description="Entries at or after this instant (ISO 8601; a date is its "
                             "UTC midnight)."),
            OpenApiParameter("to", str, description="Entries at or before this instant (ISO 8601; a date: the "
                             "whole day, UTC)."),
            OpenApiParameter("limit", int, description="Results per page (default 50, max 100)."),
            OpenApiParameter("offset", int, description="Pagination offset (default 0)."),
        ],
        responses=_responses(LedgerSchema),
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        kind = params.get("type") or None  # empty: no filter, as the native filters read an empty value
        if kind not in LEDGER_TYPES:
            raise InvalidInput("Invalid input: type.",
                               details={"type": ["Must be one of: credit, debit, adjustment."]})
        query = {
            **LEDGER_TYPES[kind],
            "created_from": params.get("from"),
            "created_to": params.get("to"),
            **self.paging(request, offset="offset", limit="limit", default_limit=DEFAULT_LIMIT),
        }
        native = self.forward(request, NATIVE["ledger"], query=query)

        def page(body: Mapping[str, Any]) -> dict[str, Any]:
            user_id = caller_id(native)
            return {
                "data": [ledger_entry(row, user_id) for row in body["results"]],
                "total": body["count"],
                "limit": self.limit,  # valid: the native view took them
                "offset": self.offset,
            }

        return self.reply(native, page)


class SummaryView(AccountApiView):
    @extend_schema(
        operation_id="account_api_summary", tags=[TAG], summary="Account summary",
        description="Your credit balance, subscription, this month's usage and lifetime requests (the native "
        "`GET /api/billing/summary/`).",
        parameters=[PLATFORM_HEADER],
        responses=_responses(SummarySchema),
    )
    def get(self, request: Request) -> Response:
        return self.reply(self.forward(request, NATIVE["summary"], query={}), summary)


urlpatterns = [
    path("usage", UsageView.as_view(), name="account-api-usage"),
    path("credits", CreditsView.as_view(), name="account-api-credits"),
    path("ledger", LedgerView.as_view(), name="account-api-ledger"),
    path("summary", SummaryView.as_view(), name="account-api-summary"),
]
