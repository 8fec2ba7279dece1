from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import status
from rest_framework.mixins import ListModelMixin
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.views import IsPlatformAdmin, TenantGenericViewSet
from accounts.errors import NotAMember
from accounts.tenancy import platform_admin_resolve
from billing_service.db_router import lagging_reads
from billing_service.idempotency import HEADER as IDEMPOTENCY_HEADER
from billing_service.idempotency import client_key, idempotency_key_from
from billing_service.pagination import PageOrCursorPagination
from billing_service.schema import ERROR_RESPONSES, error_response, extend_schema, paginated
from billing_service.validation import validated
from credits import selectors, services
from credits.api.serializers import (
    AccountQuerySerializer,
    LedgerEntrySerializer,
    ManualAdjustmentInputSerializer,
    PlatformLedgerEntrySerializer,
)
from credits.errors import AccountNotFound, IdempotencyConflict
from credits.filters import AccountLedger, LedgerEntryFilterSet, PlatformLedgerFilterSet
from credits.models import CreditAccount, LedgerEntry

PLATFORM_KEY_PARAM = OpenApiParameter(
    "platform_key", str, description="The platform's own account instead of yours (owners and admins only)."
)


class CallerAccountMixin:
    def caller_account(self, request: Request) -> CreditAccount:
        """The caller's own account, or with ``?platform_key=`` that platform's (admins only)."""
        tenant = self.tenant  # type: ignore[attr-defined]
        platform_key = validated(AccountQuerySerializer, request.query_params).get("platform_key")
        if platform_key:
            platform = platform_admin_resolve(tenant=tenant, platform_key=platform_key)
            account = selectors.account_for(platform=platform, user=None)
            return account or services.account_ensure(platform=platform, user=None)
        if tenant.membership is None:
            raise NotAMember("You have no account on this platform; name one with ?platform_key=.")
        account = selectors.account_for(platform=tenant.platform, user=request.user)
        return account or services.account_ensure(platform=tenant.platform, user=request.user)


class LedgerEntryViewSet(CallerAccountMixin, ListModelMixin, TenantGenericViewSet):
    """The caller's ledger, newest first. Page pagination gives an exact `count` at constant cost; use
    `pagination=cursor` to walk deep history."""

    serializer_class = LedgerEntrySerializer
    filterset_class = LedgerEntryFilterSet
    pagination_class = PageOrCursorPagination

    def get_queryset(self) -> AccountLedger:
        return AccountLedger(self.caller_account(self.request))

    @extend_schema(
        operation_id="billing_transactions_list",
        summary="Your credit transactions, newest first",
        parameters=[PLATFORM_KEY_PARAM],
        responses={200: paginated(LedgerEntrySerializer, "PaginatedLedgerEntryList"), **ERROR_RESPONSES},
        tags=["account"],
    )
    @lagging_reads  # history: may lag (README, "Read replicas")
    def list(self, request: Request) -> Response:
        return super().list(request)


class ManualAdjustmentViewSet(TenantGenericViewSet):
    """A manual credit adjustment by an owner or admin, written as an `adjustment` ledger row naming them.
    A negative amount never takes an account below zero available credits."""

    serializer_class = LedgerEntrySerializer
    permission_classes = [IsAuthenticated, IsPlatformAdmin]

    @extend_schema(
        operation_id="billing_admin_credits_manual_create",
        summary="Adjust an account's credits by hand (owners and admins)",
        request=ManualAdjustmentInputSerializer,
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                str,
                OpenApiParameter.HEADER,
                description="Makes a retry safe: the same key and body return the first result (200). "
                "Keys are scoped to the account: each account has its own.",
            )
        ],
        responses={
            201: LedgerEntrySerializer,
            200: OpenApiResponse(LedgerEntrySerializer, description="Replay of an earlier request with this key."),
            402: error_response("The removal exceeds the available credits (insufficient_credits)."),
            409: error_response("The Idempotency-Key was used with a different body (idempotency_conflict)."),
            **ERROR_RESPONSES,
        },
        tags=["admin"],
    )
    def create(self, request: Request) -> Response:
        data = validated(ManualAdjustmentInputSerializer, request.data)
        key = idempotency_key_from(request)
        if selectors.account_get(account_id=data["account_id"], platform=self.tenant.platform) is None:
            raise AccountNotFound(details={"account_id": str(data["account_id"])})
        try:
            result = services.credits_adjust(
                account_id=data["account_id"],
                amount=data["amount"],
                description=data["description"],
                reference=data["reference"],
                actor=request.user,
                idempotency_key=client_key(key) if key else None,
            )
        except IdempotencyConflict:  # named as the client sent it, not as it is stored
            raise IdempotencyConflict(details={IDEMPOTENCY_HEADER: key}) from None
        headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
        return Response(
            LedgerEntrySerializer(result.entry).data,
            status=status.HTTP_200_OK if result.replayed else status.HTTP_201_CREATED,
            headers=headers,
        )


class PlatformLedgerEntryViewSet(ListModelMixin, TenantGenericViewSet):
    """Every ledger row of the platform, newest first, across its members' and its own accounts."""

    serializer_class = PlatformLedgerEntrySerializer
    filterset_class = PlatformLedgerFilterSet
    pagination_class = PageOrCursorPagination
    permission_classes = [IsAuthenticated, IsPlatformAdmin]

    def get_queryset(self) -> QuerySet[LedgerEntry]:
        return selectors.platform_ledger_list(platform=self.tenant.platform)

    @extend_schema(
        operation_id="billing_admin_credits_transactions_list",
        summary="Every credit transaction of the platform (owners and admins)",
        responses={
            200: paginated(PlatformLedgerEntrySerializer, "PaginatedPlatformLedgerEntryList"),
            **ERROR_RESPONSES,
        },
        tags=["admin"],
    )
    @lagging_reads  # history: may lag (README, "Read replicas")
    def list(self, request: Request) -> Response:
        return super().list(request)
