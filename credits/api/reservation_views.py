"""Holds (reservations): reserve credits before a model call, capture its real cost after, or release them."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.mixins import ListModelMixin
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.views import IsPlatformAdmin, TenantGenericViewSet
from billing_service.inputs import uuid_or_none
from billing_service.money import format_money
from billing_service.pagination import PageOrCursorPagination
from billing_service.schema import ERROR_RESPONSES, error_response, extend_schema, paginated
from billing_service.validation import validated
from credits import selectors, services
from credits.api.reservation_serializers import (
    HoldSerializer,
    ReservationCapturedSerializer,
    ReservationCaptureInputSerializer,
    ReservationCreatedSerializer,
    ReservationCreateInputSerializer,
    ReservationReleasedSerializer,
)
from credits.api.serializers import LedgerEntrySerializer
from credits.api.usage_views import SEAT_MODEL_REFUSED
from credits.errors import AccountNotFound, HoldNotFound, IdempotencyConflict
from credits.filters import HoldFilterSet
from credits.models import Hold, LedgerEntry

HOLD_ID_PARAM = OpenApiParameter(
    "hold_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The hold's id."
)
SETTLED_ONCE = (
    "Already captured, released or expired: a hold is settled once, and any second attempt, concurrent or "
    "later, is refused (hold_not_active; details.status says how it ended)."
)


def _available(entry: LedgerEntry) -> Decimal:
    return entry.balance_after - entry.reserved_after


class ReservationViewSet(ListModelMixin, TenantGenericViewSet):
    """Holds (reservations) on the credit accounts of your platform, for its trusted backend (owners and
    admins; members get 403). Reserve credits before a model call, then capture its real cost or release
    them: a hold is settled exactly once. A hold not settled by `expires_at` is released by the expiry
    sweep (`manage.py release_expired_holds`), or by the first capture or release that touches it."""

    serializer_class = HoldSerializer
    filterset_class = HoldFilterSet
    pagination_class = PageOrCursorPagination
    permission_classes = [IsAuthenticated, IsPlatformAdmin]
    lookup_url_kwarg = "hold_id"

    def get_queryset(self) -> QuerySet[Hold]:
        return selectors.hold_list(platform=self.tenant.platform)

    def get_object(self) -> Hold:
        """The hold of the URL; anything that is not a UUID names no hold (404)."""
        hold_id = uuid_or_none(self.kwargs[self.lookup_url_kwarg])
        hold = selectors.hold_get(platform=self.tenant.platform, hold_id=hold_id) if hold_id else None
        if hold is None:
            raise HoldNotFound()
        return hold

    @extend_schema(
        operation_id="billing_reservations_list",
        summary="The platform's holds, newest first",
        responses={200: paginated(HoldSerializer, "PaginatedHoldList"), **ERROR_RESPONSES},
        tags=["reservations"],
    )
    def list(self, request: Request) -> Response:
        return super().list(request)

    @extend_schema(
        operation_id="billing_reservations_retrieve",
        summary="One hold",
        parameters=[HOLD_ID_PARAM],
        responses={200: HoldSerializer, **ERROR_RESPONSES},
        tags=["reservations"],
    )
    def retrieve(self, request: Request, hold_id: str) -> Response:
        return Response(HoldSerializer(self.get_object()).data)

    @extend_schema(
        operation_id="billing_reservations_create",
        summary="Reserve credits before a model call",
        description="Writes a `reserve` row: the account's `reserved` rises and `available` falls by "
        "`amount`. `request_id` is the idempotency key, per account.",
        request=ReservationCreateInputSerializer,
        responses={
            201: ReservationCreatedSerializer,
            200: OpenApiResponse(
                ReservationCreatedSerializer,
                description="Replay: this request_id was already used on this account with the same "
                "body; the hold it made, as it is now (header Idempotent-Replayed: true). Nothing is "
                "written.",
            ),
            402: error_response(
                "The amount exceeds the available credits (insufficient_credits); nothing written."
            ),
            429: error_response(
                "The account's member holds a seat and the amount does not fit in its weekly or session budget "
                "(budget_exceeded, with Retry-After); nothing written."
            ),
            409: error_response(
                "This request_id was used on this account with another body (idempotency_conflict), or it is "
                "already recorded as a usage event (request_id_recorded): a request_id names one AI call."
            ),
            **ERROR_RESPONSES,
        },
        tags=["reservations"],
    )
    def create(self, request: Request) -> Response:
        data = validated(ReservationCreateInputSerializer, request.data)
        account = selectors.account_get(account_id=data["account_id"], platform=self.tenant.platform)
        if account is None:
            raise AccountNotFound(details={"account_id": str(data["account_id"])})
        try:
            result = services.hold_create(
                account_id=account.id,
                amount=data["amount"],
                expires_in=data["expires_in"],
                reference=data["reference"],
                actor=request.user,
                idempotency_key=data["request_id"],
            )
        except IdempotencyConflict:
            # The ledger names its key; the caller knows it as request_id.
            raise IdempotencyConflict(
                "This request_id was already used on this account with a different body.",
                details={"request_id": data["request_id"]},
            ) from None
        [entry] = result.entries
        if result.replayed:
            account.refresh_from_db(fields=["balance", "reserved"])
            available = account.available
        else:
            available = _available(entry)
        body = {
            **HoldSerializer(result.hold).data,
            "transaction_id": str(entry.id),
            "available_credits": format_money(available),
        }
        if result.replayed:
            return Response(body, status=status.HTTP_200_OK, headers={"Idempotent-Replayed": "true"})
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="billing_reservations_capture",
        summary="Charge the real cost of the call and release the rest",
        description="Records the call's usage event (its request_id: the hold's), writes a `subtract` row "
        "for its cost and a `release` row for what is left of the hold, in one transaction. The cost is "
        "`amount`, or without one `model` and the tokens priced by the rate card now; like every usage charge it "
        "is exact and debited in whole 0.000001 with the account's carried remainder (README, \"Exact usage "
        "costs\"), so a cost below what completes a 0.000001 writes no `subtract` row. Capturing more "
        "than the hold takes the excess from the available credits. A failed call (`success: false`) is "
        "charged nothing. A hold found past its expiry is released instead and the capture refused "
        "(409 hold_expired).",
        parameters=[HOLD_ID_PARAM],
        request=ReservationCaptureInputSerializer,
        responses={
            **ERROR_RESPONSES,
            200: ReservationCapturedSerializer,
            400: error_response(
                "Invalid input, named in details; or neither `amount` nor a `model` priced on the rate card "
                "(invalid, model_not_priced)."
            ),
            402: error_response(
                "The amount exceeds the hold by more than the available credits (insufficient_credits); "
                "nothing written, the hold stays active."
            ),
            403: error_response(SEAT_MODEL_REFUSED),
            429: error_response(
                "A seat-funded hold: the cost exceeds the hold's reservation by more than the seat's budgets have "
                "left (budget_exceeded, with Retry-After); nothing written, the hold stays active."
            ),
            409: error_response(
                f"{SETTLED_ONCE} Or the hold had expired: it is now released, status expired "
                "(hold_expired)."
            ),
        },
        tags=["reservations"],
    )
    @action(detail=True, methods=["post"])
    def capture(self, request: Request, hold_id: str) -> Response:
        hold = self.get_object()  # a hold that is not there is a 404 whatever the body
        data = validated(ReservationCaptureInputSerializer, request.data)
        result, event = services.usage_capture(
            platform=self.tenant.platform,
            hold_id=hold.id,
            amount=data["amount"],
            endpoint=data["endpoint"],
            model=data["model"],
            input_tokens=data["input_tokens"],
            output_tokens=data["output_tokens"],
            success=data["success"],
            actor=request.user,
        )
        body = {
            **HoldSerializer(result.hold).data,
            "transactions": _entries(result.entries),
            "usage_event_id": str(event.id),
            "available_credits": format_money(_available(result.entries[-1])),
        }
        return Response(body)

    @extend_schema(
        operation_id="billing_reservations_release",
        summary="Release a hold: the call was not made",
        description="Writes a `release` row for the whole hold. Releasing a hold that is past its expiry but "
        "not yet swept succeeds the same way and answers its status `expired`; one the sweep already "
        "released is a 409 (hold_not_active, details.status expired): either way its credits are free.",
        parameters=[HOLD_ID_PARAM],
        request=None,
        responses={
            200: ReservationReleasedSerializer,
            409: error_response(SETTLED_ONCE),
            **ERROR_RESPONSES,
        },
        tags=["reservations"],
    )
    @action(detail=True, methods=["post"])
    def release(self, request: Request, hold_id: str) -> Response:
        hold = self.get_object()
        result = services.hold_release(hold_id=hold.id, account_id=hold.account_id, actor=request.user)
        body = {
            **HoldSerializer(result.hold).data,
            "transactions": _entries(result.entries),
            "available_credits": format_money(_available(result.entries[-1])),
        }
        return Response(body)


def _entries(entries: list[LedgerEntry]) -> list[dict]:
    return LedgerEntrySerializer(entries, many=True).data
