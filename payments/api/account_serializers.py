"""Shapes of the account endpoints, which combine the credit account (credits), the plan (subscriptions) and
auto-recharge (payments): they live here, in the highest layer they need (README, "Architecture")."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing_service.inputs import StrictBooleanField, StrictInputSerializer
from billing_service.money import MoneyField
from credits.api.metering_serializers import UsageStatsSerializer
from credits.api.serializers import ExactOutField, MoneyOutField
from credits.models import CreditAccount
from payments.recharge import AutoRechargeState, auto_recharge_get
from subscriptions.api.serializers import SubscriptionSerializer
from subscriptions.selectors import (
    PRICING_TABLE_SCHEMA,
    AccountPlanState,
    account_plan_state,
    pricing_table,
    subscription_current,
)

CARRIED_REMAINDER_HELP = (
    "Usage cost not debited yet: less than 0.000001, charged with the next usage that makes it a whole 0.000001 "
    "(the ledger moves whole 0.000001; usage costs are exact)."
)


class AutoRechargeOf:
    """A serializer of a credit account showing its auto-recharge settings, which live in payments
    (``AutoRechargeSettings``): read once per account (``recharge.auto_recharge_get``: one query with whether it
    has a saved card when ``shows_payment_method``, none when they came with the account)."""

    shows_payment_method = True

    def auto_recharge_of(self, account: CreditAccount) -> AutoRechargeState:
        cached = self.__dict__.get("_auto_recharge")
        if cached is None or cached[0] != account.pk:
            state = auto_recharge_get(account=account, payment_method=self.shows_payment_method)
            cached = self._auto_recharge = (account.pk, state)
        return cached[1]


class _FromAutoRecharge:
    """A field read from the account's auto-recharge state (``AutoRechargeOf``) rather than from the account."""

    def get_attribute(self, instance: CreditAccount) -> Any:
        return getattr(self.parent.auto_recharge_of(instance), self.source)


class AutoRechargeBooleanField(_FromAutoRecharge, serializers.BooleanField):
    pass


class AutoRechargeMoneyField(_FromAutoRecharge, MoneyOutField):
    pass


class AutoRechargeDateTimeField(_FromAutoRecharge, serializers.DateTimeField):
    pass


class CreditAccountSerializer(AutoRechargeOf, serializers.Serializer):
    """The ibl.ai credit account: plan, balance and auto-recharge, plus the ledger's exact figures.

    The plan fields come from ``subscriptions.selectors`` in two queries per account (its latest subscription
    with its plans, and the platform's pricing table)."""

    has_credits = serializers.SerializerMethodField(
        help_text="True when credits are available, or the current plan grants unlimited credits."
    )
    account_id = serializers.UUIDField(source="id")
    available_credits = MoneyOutField(source="available")
    balance = MoneyOutField(help_text="Credits on the account, including reserved ones.")
    reserved = MoneyOutField(help_text="Credits held for calls in progress.")
    carried_remainder = ExactOutField(help_text=CARRIED_REMAINDER_HELP)
    currency = serializers.CharField()
    current_plan = serializers.SerializerMethodField(
        help_text='Slug of the current subscription\'s plan, or "free_trial" without one.'
    )
    previous_plan = serializers.SerializerMethodField(
        help_text='Slug of the plan before the last change ("free_trial": none); null if it never changed.'
    )
    free_trial = serializers.SerializerMethodField(
        help_text="True without a paid current subscription: none, a trialing one, or one on a trial plan."
    )
    auto_recharge_enabled = AutoRechargeBooleanField(source="enabled")
    auto_recharge_threshold_usd = AutoRechargeMoneyField(source="threshold_usd", allow_null=True)
    auto_recharge_amount_usd = AutoRechargeMoneyField(source="amount_usd", allow_null=True)
    auto_recharge_spending_limit_usd = AutoRechargeMoneyField(source="spending_limit_usd", allow_null=True)
    auto_recharge_last_triggered_at = AutoRechargeDateTimeField(source="last_triggered_at", allow_null=True)
    can_use_auto_recharge = serializers.SerializerMethodField()
    has_payment_method = serializers.SerializerMethodField()
    pricing_table = serializers.SerializerMethodField(
        help_text="The plans on sale on the platform (active and purchasable), in its order."
    )
    platform_key = serializers.CharField(source="platform.platform_key")
    is_platform_account = serializers.BooleanField()
    last_updated = serializers.DateTimeField(source="last_entry_at", allow_null=True)

    def to_representation(self, account: CreditAccount) -> dict[str, Any]:
        self._plan_state: AccountPlanState = account_plan_state(account_id=account.pk)  # for the plan fields
        return super().to_representation(account)

    def get_has_credits(self, account: CreditAccount) -> bool:
        return account.available > 0 or self._plan_state.unlimited_credits

    def get_current_plan(self, account: CreditAccount) -> str:
        return self._plan_state.current_plan

    @extend_schema_field({"type": "string", "nullable": True})
    def get_previous_plan(self, account: CreditAccount) -> str | None:
        return self._plan_state.previous_plan

    def get_free_trial(self, account: CreditAccount) -> bool:
        return self._plan_state.free_trial

    @extend_schema_field(serializers.BooleanField(help_text="True when a payment method is saved to charge."))
    def get_can_use_auto_recharge(self, account: CreditAccount) -> bool:
        return self.auto_recharge_of(account).has_payment_method

    @extend_schema_field(serializers.BooleanField())
    def get_has_payment_method(self, account: CreditAccount) -> bool:
        return self.auto_recharge_of(account).has_payment_method

    @extend_schema_field(PRICING_TABLE_SCHEMA)
    def get_pricing_table(self, account: CreditAccount) -> dict[str, Any]:
        return pricing_table(platform_id=account.platform_id)


class AutoRechargeInputSerializer(StrictInputSerializer):
    """PATCH /api/billing/account/: the auto-recharge settings, each optional; null clears an amount."""

    auto_recharge_enabled = StrictBooleanField(required=False)
    auto_recharge_threshold_usd = MoneyField(
        required=False, allow_null=True, max_digits=12, decimal_places=2,
        help_text='Recharge when available credits fall below this, e.g. "10.00".',
    )
    auto_recharge_amount_usd = MoneyField(
        required=False, allow_null=True, max_digits=12, decimal_places=2,
        help_text="USD charged per recharge (within the platform's top-up range).",
    )
    auto_recharge_spending_limit_usd = MoneyField(
        required=False, allow_null=True, max_digits=12, decimal_places=2,
        help_text="Most USD auto-recharge may charge per calendar month (UTC); null: no limit.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("Give at least one auto-recharge setting.")
        return attrs


class CreditBalanceSerializer(AutoRechargeOf, serializers.Serializer):
    shows_payment_method = False

    user_id = serializers.IntegerField(allow_null=True)
    balance = MoneyOutField(help_text="Credits on the account, including reserved ones.")
    reserved = MoneyOutField(help_text="Credits held for calls in progress.")
    available = MoneyOutField(help_text="Credits that can be spent now: balance less reserved.")
    carried_remainder = ExactOutField(help_text=CARRIED_REMAINDER_HELP)
    currency = serializers.CharField()
    last_updated = serializers.DateTimeField(
        source="last_entry_at",
        allow_null=True,
        help_text="Time of the last ledger row; null before the first.",
    )
    auto_reload_enabled = AutoRechargeBooleanField(source="enabled")
    auto_reload_threshold = AutoRechargeMoneyField(source="threshold_usd", allow_null=True)
    auto_reload_amount = AutoRechargeMoneyField(source="amount_usd", allow_null=True)


class AccountSummarySerializer(serializers.Serializer):
    user_id = serializers.IntegerField(source="account.user_id", allow_null=True)
    account_id = serializers.UUIDField(source="account.id")
    email = serializers.SerializerMethodField(
        help_text="The user's email; null for the platform's own account or when none is set."
    )
    credit_balance = CreditBalanceSerializer(source="account")
    subscription = serializers.SerializerMethodField(help_text="The current subscription, or null.")
    usage_this_month = UsageStatsSerializer(help_text="Usage since the first day of this month (UTC).")
    total_requests_all_time = serializers.IntegerField()
    account_created_at = serializers.DateTimeField(source="account.created_at")
    last_login_at = serializers.SerializerMethodField(help_text="The user's last login; null if never.")

    @extend_schema_field({"type": "string", "format": "email", "nullable": True})
    def get_email(self, summary: Any) -> str | None:
        user = summary.account.user
        return (user.email or None) if user is not None else None

    @extend_schema_field(SubscriptionSerializer(allow_null=True))
    def get_subscription(self, summary: Any) -> dict | None:
        current = subscription_current(account_id=summary.account.id)
        return SubscriptionSerializer(current).data if current is not None else None

    @extend_schema_field({"type": "string", "format": "date-time", "nullable": True})
    def get_last_login_at(self, summary: Any) -> str | None:
        user = summary.account.user
        if user is None or user.last_login is None:
            return None
        return serializers.DateTimeField().to_representation(user.last_login)
