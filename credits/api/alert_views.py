"""``admin/balance-alerts/`` (owners and admins): the threshold under which the platform hears of an account's
balance by outbound webhooks (``balance.low`` when a change takes `available` below it, ``balance.depleted`` when one
takes it to zero; ``credits.sql.alert_events``): of one account, or of the whole platform."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.views import IsPlatformAdmin, TenantGenericViewSet
from billing_service.inputs import StrictInputSerializer, StrictUUIDField
from billing_service.money import MoneyField
from billing_service.schema import ERROR_RESPONSES, extend_schema
from billing_service.validation import validated
from credits import selectors, services
from credits.api.serializers import MoneyOutField
from credits.errors import AccountNotFound

TAGS = ["webhooks (outbound)"]


class BalanceAlertsQuerySerializer(serializers.Serializer):
    account_id = StrictUUIDField(required=False, help_text="One account of the platform; absent: the platform's "
                                                          "default.")


class BalanceAlertsInputSerializer(StrictInputSerializer):
    threshold = MoneyField(allow_zero=True, allow_null=True,
                           help_text='"5.00": alert below 5 available credits; "0.00": only when depleted; null: none.')
    account_id = StrictUUIDField(required=False, help_text="One account of the platform; absent: every account of "
                                                          "the platform, and its future ones.")


class BalanceAlertsSerializer(serializers.Serializer):
    account_id = serializers.UUIDField(allow_null=True)
    threshold = MoneyOutField(allow_null=True)
    accounts_updated = serializers.IntegerField(required=False)


class BalanceAlertsViewSet(TenantGenericViewSet):
    """Balance alerts of the platform's accounts (owners and admins; another platform's account is 404)."""

    serializer_class = BalanceAlertsSerializer
    permission_classes = [IsAuthenticated, IsPlatformAdmin]

    def _account(self, account_id: object):  # noqa: ANN202
        account = selectors.account_get(account_id=account_id, platform=self.tenant.platform)
        if account is None:
            raise AccountNotFound(details={"account_id": str(account_id)})
        return account

    @extend_schema(operation_id="billing_admin_balance_alerts_retrieve", summary="A balance alert threshold",
                   parameters=[BalanceAlertsQuerySerializer],
                   responses={200: BalanceAlertsSerializer, **ERROR_RESPONSES}, tags=TAGS)
    def retrieve(self, request: Request) -> Response:
        query = validated(BalanceAlertsQuerySerializer, request.query_params)
        if "account_id" in query:
            account = self._account(query["account_id"])
            body = {"account_id": account.pk, "threshold": account.alert_threshold}
        else:
            body = {"account_id": None, "threshold": self.tenant.platform.alert_threshold_default}
        return Response(BalanceAlertsSerializer(body).data)

    @extend_schema(operation_id="billing_admin_balance_alerts_update",
                   summary="Set the balance alert threshold of an account or of the platform",
                   request=BalanceAlertsInputSerializer,
                   responses={200: BalanceAlertsSerializer, **ERROR_RESPONSES}, tags=TAGS)
    def update(self, request: Request) -> Response:
        data = validated(BalanceAlertsInputSerializer, request.data)
        account_id = data.get("account_id")
        if account_id is not None:
            self._account(account_id)
        updated = services.alert_threshold_set(platform=self.tenant.platform, threshold=data["threshold"],
                                               account_id=account_id)
        body = {"account_id": account_id, "threshold": data["threshold"], "accounts_updated": updated}
        return Response(BalanceAlertsSerializer(body).data)
