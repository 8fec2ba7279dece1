"""Shapes of the metering read and rate-card endpoints: the rate card, usage statistics, the account summary.

Serializers validate and shape only; the rules live in ``credits.services.rate_card`` and the reads in
``credits.selectors``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing_service.inputs import (
    InstantField,
    QueryIntegerField,
    StrictInputSerializer,
    StrictUUIDField,
    TextField,
)
from billing_service.money import MoneyField
from billing_service.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from credits.api.serializers import ExactOutField, MoneyOutField
from credits.selectors import PriceStatus, PriceVersion, UsagePeriod, usage_bucket_count
from credits.services.rate_card import (
    MODEL_NAME_HELP,
    MODEL_NAME_MAX_LENGTH,
    MODEL_NAME_RE,
    is_valid_model_name,
)

MAX_BUCKETS = 366
LAST_YEAR = 9998
ACCOUNT_ID_HELP = (
    "Another credit account of the platform, a member's or the platform's own (owners and admins only: "
    "members get 403; an account of another platform is 404)."
)  # a bucket of the year 9999 would end past what a datetime holds


@extend_schema_field({"type": "string", "pattern": MODEL_NAME_RE.pattern, "maxLength": MODEL_NAME_MAX_LENGTH})
class ModelNameField(TextField):
    default_error_messages = {"model_name": MODEL_NAME_HELP}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", MODEL_NAME_HELP)
        super().__init__(max_length=MODEL_NAME_MAX_LENGTH, blank=False, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if not is_valid_model_name(value):
            self.fail("model_name")
        return value


@extend_schema_field(
    {
        "type": "string",
        "description": "ISO 8601: a date (2025-01-31) or a date and time (2025-01-31T18:00:00Z; an offset is "
        "converted to UTC, none means UTC). Counted at UTC-day granularity.",
        "example": "2025-01-01",
    }
)
class IsoInstantField(InstantField):
    """An ISO 8601 date or date-time from a query string, as an aware UTC datetime (a date: its midnight)."""

    default_error_messages = {"out_of_range": f"Must be before {LAST_YEAR + 1}-01-01."}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_date=True, **kwargs)

    def to_internal_value(self, data: Any) -> datetime:
        moment = super().to_internal_value(data)
        if moment.year > LAST_YEAR:
            self.fail("out_of_range")
        return moment


# --- rate card -------------------------------------------------------------------------------------------


class ModelPriceInputSerializer(StrictInputSerializer):
    model = ModelNameField()
    input_per_million = MoneyField(
        allow_zero=True, help_text='Credits per million input tokens, a decimal string: "2.50" (0 allowed).'
    )
    output_per_million = MoneyField(
        allow_zero=True, help_text='Credits per million output tokens, a decimal string: "10.00" (0 allowed).'
    )
    effective_from = InstantField(
        required=False,
        allow_null=True,
        default=None,
        help_text="When this version takes effect (ISO 8601; no offset means UTC), not before "
        "2000-01-01T00:00:00Z. Default: now. May be in the future (at most 5 years). More than 60 seconds in the past only where no earlier version of the model "
        "exists (nothing was priced from the card then): usage already charged is never repriced.",
    )
    description = TextField(
        max_length=200,
        required=False,
        default="",
        help_text="Why the price changed (kept with the version).",
    )


class RateCardQuerySerializer(serializers.Serializer):
    model = TextField(
        required=False, max_length=MODEL_NAME_MAX_LENGTH, blank=False, help_text="Only this model (exact)."
    )
    page = QueryIntegerField(
        min_value=1, max_value=10_000_000, default=1, help_text="Page number (1-based)."
    )
    page_size = QueryIntegerField(
        min_value=1,
        max_value=MAX_PAGE_SIZE,
        default=DEFAULT_PAGE_SIZE,
        help_text="Models per page (max 100).",
    )


class ModelPriceVersionSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="price.id", help_text="The version id that usage events refer to.")
    model = serializers.CharField(source="price.model")
    input_per_million = MoneyOutField(
        source="price.input_per_million", help_text="Credits per million input tokens."
    )
    output_per_million = MoneyOutField(
        source="price.output_per_million", help_text="Credits per million output tokens."
    )
    effective_from = serializers.DateTimeField(source="price.effective_from")
    effective_until = serializers.DateTimeField(
        allow_null=True, help_text="When the next version takes over; null for the newest version."
    )
    status = serializers.ChoiceField(
        choices=[PriceStatus.CURRENT, PriceStatus.SCHEDULED, PriceStatus.SUPERSEDED],
        help_text="current: in effect now; scheduled: takes effect later; superseded: replaced.",
    )
    description = serializers.CharField(source="price.description")
    created_by = serializers.SerializerMethodField(help_text="Username of the admin who added it, if known.")
    created_at = serializers.DateTimeField(source="price.created_at")

    def get_created_by(self, version: PriceVersion) -> str | None:
        user = version.price.created_by
        return user.get_username() if user is not None else None


class RateCardModelSerializer(serializers.Serializer):
    model = serializers.CharField()
    current = ModelPriceVersionSerializer(
        allow_null=True, help_text="The version in effect now; null while the only versions are scheduled."
    )
    versions = ModelPriceVersionSerializer(many=True, help_text="Every version, newest effective_from first.")


# --- usage statistics ------------------------------------------------------------------------------------


class UsageStatsQuerySerializer(serializers.Serializer):
    period = serializers.ChoiceField(
        choices=list(UsagePeriod.CHOICES),
        default=UsagePeriod.MONTHLY,
        help_text="Bucket size (default monthly).",
    )
    from_ = IsoInstantField(
        required=False,
        help_text="Start (ISO 8601 date or date-time, UTC). Default: the first day of the month of `to`. "
        "The whole UTC day holding it is counted.",
    )
    to = IsoInstantField(
        required=False,
        help_text="End (ISO 8601 date or date-time, UTC), not before `from`. Default: now. The whole UTC day "
        "holding it is counted.",
    )
    account_id = StrictUUIDField(required=False, help_text=ACCOUNT_ID_HELP)

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        # "from" is a Python keyword: declared as from_, named from in the query string.
        renamed = {}
        for name, field in fields.items():
            renamed["from" if name == "from_" else name] = field
        return renamed

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        end = attrs.get("to") or timezone.now()
        start = attrs.get("from")
        if start is None:
            start = datetime(end.year, end.month, 1, tzinfo=UTC)
        if start > end:
            defaulted = "" if "to" in attrs else " (to defaults to now)"
            raise serializers.ValidationError({"to": [f"Must not be before from{defaulted}."]})
        period = attrs["period"]
        count = usage_bucket_count(period=period, first_day=start.date(), last_day=end.date())
        if count > MAX_BUCKETS:
            message = (
                f"The range spans {count} {period} buckets; at most {MAX_BUCKETS}: shorten it or choose a longer "
                "period."
            )
            raise serializers.ValidationError({"to": [message]})
        return {**attrs, "from": start, "to": end}


class AccountIdQuerySerializer(serializers.Serializer):
    account_id = StrictUUIDField(required=False, help_text=ACCOUNT_ID_HELP)


class UsageFiguresSerializer(serializers.Serializer):
    total_requests = serializers.IntegerField()
    successful_requests = serializers.IntegerField()
    failed_requests = serializers.IntegerField()
    credits_consumed = ExactOutField(
        help_text="The exact cost of the requests (decimal string, up to 12 decimals): the ledger's debits for "
        "them plus what is still carried."
    )
    input_tokens = serializers.IntegerField(help_text="Input tokens reported with the requests.")
    output_tokens = serializers.IntegerField(help_text="Output tokens reported with the requests.")
    requests_by_endpoint = serializers.DictField(
        child=serializers.IntegerField(), help_text="Requests per endpoint, busiest first."
    )


class UsageBucketSerializer(UsageFiguresSerializer):
    period_start = serializers.DateTimeField(help_text="The bucket's first instant (UTC midnight).")
    period_end = serializers.DateTimeField(help_text="The first instant after the bucket (exclusive).")


class UsageStatsSerializer(UsageFiguresSerializer):
    user_id = serializers.IntegerField(
        source="account.user_id",
        allow_null=True,
        help_text="The account's user; null for the platform's own account.",
    )
    account_id = serializers.UUIDField(source="account.id")
    period = serializers.ChoiceField(choices=list(UsagePeriod.CHOICES))
    period_start = serializers.DateTimeField(
        help_text="The requested start (counted from its UTC day's start)."
    )
    period_end = serializers.DateTimeField(help_text="The requested end (counted to its UTC day's end).")
    buckets = UsageBucketSerializer(
        many=True,
        help_text="The same figures per day, month or year (UTC) that the range touches, oldest first; empty "
        "ones included. The first and last may lie partly outside the range.",
    )


# --- account summary -------------------------------------------------------------------------------------


