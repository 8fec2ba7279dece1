"""The daily check-in: ``checkin/`` (any member: claim today's credits, see today's state, the streak, the
last 30 days and the check-in credits about to expire) and ``admin/checkin/config/`` (owners and admins: turn it
on, the daily credits, streak bonuses, the monthly cap, the expiry of the credits, the platform's time zone)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.views import IsPlatformAdmin, IsPlatformMember, TenantGenericViewSet
from accounts.models import time_zone_known
from billing_service.inputs import StrictBooleanField, StrictInputSerializer, StrictIntegerField, TextField
from billing_service.money import MoneyField
from billing_service.schema import ERROR_RESPONSES, error_response, extend_schema
from credits.api.serializers import MoneyOutField
from credits.models import Checkin, CheckinConfig
from credits.services.checkin import HISTORY_DAYS, MAX_EXPIRY_DAYS, checkin, checkin_config_set, checkin_state_read
from credits.services.expiry import checkin_credits_expiring

TAGS = ["check-in"]
MAX_STREAK_DAY = 366


class CheckinRowSerializer(serializers.Serializer):
    day = serializers.DateField()
    streak = serializers.IntegerField()
    credits_awarded = MoneyOutField(source="credits")
    transaction_id = serializers.UUIDField(source="ledger_entry_id", allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True, help_text="When its credits expire; null: never.")
    expired_credits = MoneyOutField(allow_null=True, help_text="Once expired: what was left of its credits then.")


class CheckinDoneSerializer(serializers.Serializer):
    credits_awarded = MoneyOutField()
    streak = serializers.IntegerField()
    balance = MoneyOutField()
    next_checkin_at = serializers.DateTimeField()
    transaction_id = serializers.UUIDField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True, help_text="When these credits expire; null: never.")


class ExpiringSerializer(serializers.Serializer):
    amount = MoneyOutField(help_text="Check-in credits not spent yet that expire then.")
    expires_at = serializers.DateTimeField()


class CheckinStateSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    day = serializers.DateField(help_text="Today, in the platform's time zone.")
    checked_in_today = serializers.BooleanField()
    streak = serializers.IntegerField(help_text="Days in a row up to today (or yesterday, if not checked in yet).")
    next_checkin_at = serializers.DateTimeField()
    history = CheckinRowSerializer(many=True, help_text=f"The last {HISTORY_DAYS} days' check-ins, newest first.")
    credits_expire_after_days = serializers.IntegerField(allow_null=True, help_text="Null: check-in credits never "
                                                         "expire.")
    expiring = ExpiringSerializer(many=True, help_text="Unspent check-in credits and when they expire, the soonest "
                                                        "first (usage spends them first).")


class StreakBonusesField(serializers.DictField):
    """{"7": "5.00"}: a streak day (1..366) and its bonus credits."""

    child = MoneyField()

    def to_internal_value(self, data: object) -> dict:
        bonuses = super().to_internal_value(data)
        bad = [day for day in bonuses if not (day.isascii() and day.isdigit() and 1 <= int(day) <= MAX_STREAK_DAY)]
        if bad:
            raise serializers.ValidationError(f"Days of a streak are whole numbers from 1 to {MAX_STREAK_DAY}: {bad}.")
        return {str(int(day)): bonus for day, bonus in bonuses.items()}


class CheckinConfigSerializer(StrictInputSerializer):
    enabled = StrictBooleanField()
    credits_per_day = MoneyField(allow_zero=True, help_text='Credits a check-in grants: "1.00".')
    streak_bonuses = StreakBonusesField(required=False, default=dict,
                                        help_text='Extra credits on a day of a streak: {"7": "5.00"}.')
    monthly_cap = MoneyField(allow_zero=True, allow_null=True, required=False, default=None,
                             help_text="Credits check-ins may grant a member per calendar month; null: no cap.")
    credits_expire_after_days = StrictIntegerField(
        min_value=1, max_value=MAX_EXPIRY_DAYS, allow_null=True, required=False, default=None,
        help_text="Check-in credits not spent by the end of this many days after the check-in day expire; null: "
                  "never. Applies to later check-ins.")
    time_zone = TextField(max_length=64, required=False, help_text="The platform's IANA time zone (its check-in day, its seats' "
                                                    "weeks); unchanged when absent.")

    def validate_time_zone(self, value: str) -> str:
        if not time_zone_known(value):
            raise serializers.ValidationError("An IANA time zone name, e.g. 'Europe/Paris'.")
        return value


class CheckinConfigOutSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    credits_per_day = MoneyOutField()
    streak_bonuses = serializers.DictField(child=serializers.CharField())
    monthly_cap = MoneyOutField(allow_null=True)
    credits_expire_after_days = serializers.IntegerField(allow_null=True)
    time_zone = serializers.CharField()
    updated_at = serializers.DateTimeField(allow_null=True)


class CheckinViewSet(TenantGenericViewSet):
    """Your daily check-in (any member of the platform)."""

    permission_classes = [IsAuthenticated, IsPlatformMember]
    serializer_class = CheckinStateSerializer

    @extend_schema(
        operation_id="billing_checkin_create",
        summary="Check in: today's credits",
        request=None,
        responses={
            201: CheckinDoneSerializer,
            403: error_response("Not a member (not_a_member), or the check-in is off (checkin_disabled)."),
            409: error_response("Already checked in today (already_checked_in, details.next_checkin_at)."),
            **ERROR_RESPONSES,
        },
        tags=TAGS,
    )
    def create(self, request: Request) -> Response:
        result = checkin(platform=self.tenant.platform, user=request.user, actor=request.user)
        body = {"credits_awarded": result.checkin.credits, "streak": result.checkin.streak,
                "balance": result.balance, "next_checkin_at": result.next_checkin_at,
                "transaction_id": result.entry.id if result.entry else None,
                "expires_at": result.checkin.expires_at}
        return Response(CheckinDoneSerializer(body).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="billing_checkin_retrieve",
        summary="Your check-in: today, the streak, the last 30 days",
        responses={200: CheckinStateSerializer, **ERROR_RESPONSES},
        tags=TAGS,
    )
    def retrieve(self, request: Request) -> Response:
        now = timezone.now()
        state = checkin_state_read(platform=self.tenant.platform, user=request.user, now=now)
        today = state.day(now)
        history = list(Checkin.objects.filter(account_id=state.account_id, day__gt=today.day - timedelta(
            days=HISTORY_DAYS), day__lte=today.day).order_by("-day"))
        latest = history[0] if history else None
        current = latest is not None and latest.day >= today.day - timedelta(days=1)
        config = state.config
        body = {"enabled": bool(config and config.enabled), "day": today.day,
                "checked_in_today": latest is not None and latest.day == today.day,
                "streak": latest.streak if current else 0, "next_checkin_at": today.next_at, "history": history,
                "credits_expire_after_days": config.credits_expire_after_days if config else None,
                "expiring": checkin_credits_expiring(account_id=state.account_id, now=now)}
        return Response(CheckinStateSerializer(body).data)


class CheckinConfigViewSet(TenantGenericViewSet):
    """The platform's daily check-in (owners and admins)."""

    permission_classes = [IsAuthenticated, IsPlatformAdmin]
    serializer_class = CheckinConfigOutSerializer

    def _body(self, config: CheckinConfig | None) -> dict:
        platform = self.tenant.platform
        return CheckinConfigOutSerializer({
            "enabled": bool(config and config.enabled), "credits_per_day": config.credits_per_day if config else 0,
            "streak_bonuses": config.streak_bonuses if config else {},
            "monthly_cap": config.monthly_cap if config else None,
            "credits_expire_after_days": config.credits_expire_after_days if config else None,
            "time_zone": platform.time_zone,
            "updated_at": config.updated_at if config else None,
        }).data

    @extend_schema(operation_id="billing_admin_checkin_config_retrieve", summary="The daily check-in's settings",
                   responses={200: CheckinConfigOutSerializer, **ERROR_RESPONSES}, tags=TAGS)
    def retrieve(self, request: Request) -> Response:
        return Response(self._body(CheckinConfig.objects.filter(platform=self.tenant.platform).first()))

    @extend_schema(operation_id="billing_admin_checkin_config_update", summary="Set the daily check-in",
                   request=CheckinConfigSerializer,
                   responses={200: CheckinConfigOutSerializer, **ERROR_RESPONSES}, tags=TAGS)
    def update(self, request: Request) -> Response:
        given = CheckinConfigSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        values = given.validated_data
        platform = self.tenant.platform
        config = checkin_config_set(
            platform=platform, actor=request.user, enabled=values["enabled"],
            credits_per_day=values["credits_per_day"], streak_bonuses=values["streak_bonuses"],
            monthly_cap=values["monthly_cap"], time_zone=values.get("time_zone", platform.time_zone),
            credits_expire_after_days=values["credits_expire_after_days"],
        )
        return Response(self._body(config))
