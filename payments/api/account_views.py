"""The account endpoints: the caller's credit account with its plan and auto-recharge settings, and the account
summary. They combine credits, subscriptions and payments, so they live here, in the highest layer they need."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.views import TenantViewSet
from accounts.errors import NotAMember
from billing_service.schema import ERROR_RESPONSES, error_response, extend_schema
from billing_service.validation import validated
from credits import selectors
from credits.api.metering_serializers import AccountIdQuerySerializer
from credits.api.metering_views import caller_or_named_account
from credits.api.views import PLATFORM_KEY_PARAM, CallerAccountMixin
from credits.models import CreditAccount
from credits.selectors import UsagePeriod, UsageStats
from payments.api.account_serializers import (
    AccountSummarySerializer,
    AutoRechargeInputSerializer,
    CreditAccountSerializer,
)
from payments.recharge import account_with_auto_recharge_get, auto_recharge_update


class CreditAccountViewSet(CallerAccountMixin, TenantViewSet):
    """The caller's credit account (ibl.ai `GET /api/billing/account/`). `available_credits` is what can be
    spent now: the balance less credits held for calls in progress."""

    @extend_schema(
        operation_id="billing_account_retrieve",
        summary="Your credit account: plan, balance, auto-recharge",
        parameters=[PLATFORM_KEY_PARAM],
        responses={200: CreditAccountSerializer, **ERROR_RESPONSES},
        tags=["account"],
    )
    def retrieve(self, request: Request) -> Response:
        account = self.caller_account(request)
        return Response(CreditAccountSerializer(account).data)

    @extend_schema(
        operation_id="billing_account_partial_update",
        summary="Change your auto-recharge settings",
        request=AutoRechargeInputSerializer,
        responses={
            200: CreditAccountSerializer,
            409: error_response("Enabling needs a saved payment method (payment_method_required)."),
            **ERROR_RESPONSES,
        },
        tags=["account"],
    )
    def partial_update(self, request: Request) -> Response:
        tenant = self.tenant
        if tenant.membership is None:
            raise NotAMember("You have no account on this platform.")
        data = validated(AutoRechargeInputSerializer, request.data)
        account = self.caller_account(request)
        names = {
            "auto_recharge_enabled": "enabled", "auto_recharge_threshold_usd": "threshold_usd",
            "auto_recharge_amount_usd": "amount_usd", "auto_recharge_spending_limit_usd": "spending_limit_usd",
        }
        account = auto_recharge_update(account_id=account.pk, **{names[k]: v for k, v in data.items()})
        return Response(CreditAccountSerializer(account).data)


@dataclass(frozen=True, slots=True)
class AccountSummary:
    account: CreditAccount
    usage_this_month: UsageStats
    total_requests_all_time: int


def month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


class AccountSummaryViewSet(TenantViewSet):
    """An overview of your credit account (owners and admins: of any account of the platform, with
    `account_id`): its credit balance and auto-reload settings, the current subscription (null without
    one), this month's usage (the usage statistics object for the current UTC month, monthly period) and
    the requests of all time."""

    @extend_schema(
        operation_id="billing_summary_retrieve",
        summary="Your account at a glance: credits, this month's usage, lifetime requests",
        parameters=[AccountIdQuerySerializer],
        responses={200: AccountSummarySerializer, **ERROR_RESPONSES},
        tags=["account"],
    )
    def retrieve(self, request: Request) -> Response:
        query = validated(AccountIdQuerySerializer, request.query_params)
        account = caller_or_named_account(self, request, query.get("account_id"))
        account = account_with_auto_recharge_get(account_id=account.pk) or account  # + user and settings: 1 query
        now = timezone.now()
        summary = AccountSummary(
            account=account,
            usage_this_month=selectors.usage_stats(
                account=account, period=UsagePeriod.MONTHLY, start=month_start(now), end=now
            ),
            total_requests_all_time=selectors.usage_total_requests(account=account),
        )
        return Response(AccountSummarySerializer(summary).data)
