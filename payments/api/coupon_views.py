"""Coupons: ``admin/coupons/`` (owners and admins of the platform: create, list, read, change; never deleted) and
``coupons/redeem/`` (any member: a credits coupon's code for its credits). The rules are ``payments.coupons``'."""

from __future__ import annotations

from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import status
from rest_framework.mixins import ListModelMixin
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.views import IsPlatformAdmin, IsPlatformMember, TenantGenericViewSet
from billing_service.inputs import uuid_or_none
from billing_service.pagination import CountedPagination
from billing_service.schema import ERROR_RESPONSES, error_response, extend_schema, paginated
from billing_service.validation import validated
from credits import selectors as credit_selectors
from credits import services as credit_services
from payments import coupons
from payments.api.serializers import (
    CouponInputSerializer,
    CouponListQuerySerializer,
    CouponRedeemInputSerializer,
    CouponRedemptionSerializer,
    CouponSerializer,
    CouponUpdateInputSerializer,
)
from payments.errors import CouponNotFound
from payments.models import Coupon

TAGS = ["coupons"]
COUPON_ID_PARAM = OpenApiParameter("coupon_id", OpenApiTypes.UUID, OpenApiParameter.PATH,
                                   description="The coupon's id.")
COUPON_400 = error_response(
    "Invalid input, every bad field named in details: a malformed code (1-64 ASCII letters, digits, '-', '_'); an "
    "unknown kind; a value that is not a decimal string or JSON number, zero, negative, NaN, Infinity, too large "
    "or with too many decimals for its kind (percent_off: above 0 and at most 100, 2 decimals; amount_off: whole "
    "cents; credits: 6 decimals); limits that are not JSON integers from 1; valid_until not after valid_from; "
    "plans of another platform; plan restrictions on a credits coupon, or with top_ups_only; a changed code or "
    "kind; an unknown field."
)
COUPON_404 = error_response("No such coupon in this platform (coupon_not_found).")
COUPON_409 = error_response("Another coupon of the platform has this code, in any case (coupon_code_taken).")


class AdminCouponViewSet(ListModelMixin, TenantGenericViewSet):
    """Your platform's coupons, for owners and admins (members get 403; another platform's coupon is 404).

    Coupons are never deleted (DELETE is a 405): set `active` false to withdraw one. `code` and `kind` are fixed
    once created. PUT needs `value` and leaves other omitted fields as they are; PATCH changes only the fields sent.
    `redemptions` counts redemptions so far: credits coupons redeemed, discounts on paid checkouts."""

    serializer_class = CouponSerializer
    pagination_class = CountedPagination
    permission_classes = [IsAuthenticated, IsPlatformAdmin]
    lookup_url_kwarg = "coupon_id"

    def get_queryset(self) -> QuerySet[Coupon]:
        query = validated(CouponListQuerySerializer, self.request.query_params)
        return coupons.coupon_list(platform=self.tenant.platform, active=query["active"], kind=query["kind"])

    def get_object(self) -> Coupon:
        coupon_id = uuid_or_none(self.kwargs[self.lookup_url_kwarg])
        coupon = coupons.coupon_get(platform=self.tenant.platform, coupon_id=coupon_id) if coupon_id else None
        if coupon is None:
            raise CouponNotFound()
        return coupon

    @extend_schema(
        operation_id="billing_admin_coupons_list",
        summary="Every coupon of the platform (owners and admins)",
        parameters=[CouponListQuerySerializer],
        responses={200: paginated(CouponSerializer, "PaginatedCouponList"), **ERROR_RESPONSES},
        tags=TAGS,
    )
    def list(self, request: Request) -> Response:
        return super().list(request)

    @extend_schema(
        operation_id="billing_admin_coupons_create",
        summary="Create a coupon (owners and admins)",
        request=CouponInputSerializer,
        responses={
            **ERROR_RESPONSES,
            201: OpenApiResponse(CouponSerializer, description="The new coupon (`Location`: its URL)."),
            400: COUPON_400,
            409: COUPON_409,
        },
        tags=TAGS,
    )
    def create(self, request: Request) -> Response:
        data = validated(CouponInputSerializer, request.data)
        coupon = coupons.coupon_create(platform=self.tenant.platform, actor=request.user, **data)
        return Response(
            CouponSerializer(coupon).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("billing-admin-coupon", kwargs={"coupon_id": coupon.pk})},
        )

    @extend_schema(
        operation_id="billing_admin_coupons_retrieve",
        summary="One coupon (owners and admins)",
        parameters=[COUPON_ID_PARAM],
        responses={**ERROR_RESPONSES, 200: CouponSerializer, 404: COUPON_404},
        tags=TAGS,
    )
    def retrieve(self, request: Request, coupon_id: str) -> Response:
        return Response(CouponSerializer(self.get_object()).data)

    def _update(self, request: Request, *, partial: bool) -> Response:
        coupon = self.get_object()
        serializer = CouponUpdateInputSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        updated = coupons.coupon_update(coupon_id=coupon.pk, actor=request.user, **serializer.validated_data)
        return Response(CouponSerializer(updated).data)

    @extend_schema(
        operation_id="billing_admin_coupons_update",
        summary="Replace a coupon's settings (owners and admins)",
        parameters=[COUPON_ID_PARAM],
        request=CouponUpdateInputSerializer,
        responses={**ERROR_RESPONSES, 200: CouponSerializer, 400: COUPON_400, 404: COUPON_404},
        tags=TAGS,
    )
    def update(self, request: Request, coupon_id: str) -> Response:
        return self._update(request, partial=False)

    @extend_schema(
        operation_id="billing_admin_coupons_partial_update",
        summary="Change some of a coupon's settings (owners and admins)",
        parameters=[COUPON_ID_PARAM],
        request=CouponUpdateInputSerializer,
        responses={**ERROR_RESPONSES, 200: CouponSerializer, 400: COUPON_400, 404: COUPON_404},
        tags=TAGS,
    )
    def partial_update(self, request: Request, coupon_id: str) -> Response:
        return self._update(request, partial=True)


class CouponRedeemViewSet(TenantGenericViewSet):
    """Redeem a credits coupon of your platform: its credits, as a `promotion` row of your ledger."""

    serializer_class = CouponRedemptionSerializer
    permission_classes = [IsAuthenticated, IsPlatformMember]
    not_a_member_message = "Only members of the platform can redeem its coupons."

    @extend_schema(
        operation_id="billing_coupons_redeem_create",
        summary="Redeem a credits coupon",
        description=(
            "`{code}` (any case) of a `credits` coupon of your platform → 201 with the redemption and its "
            "`promotion` ledger row. Every code tried counts towards your hourly limit "
            "(`COUPON_REDEEM_ATTEMPTS_PER_HOUR`, with checkout coupons): beyond it a 429 with `Retry-After`."
        ),
        request=CouponRedeemInputSerializer,
        responses={
            201: CouponRedemptionSerializer,
            **ERROR_RESPONSES,
            400: error_response(
                "A malformed code (invalid, naming `code`); no such code here (coupon_unknown); withdrawn "
                "(coupon_inactive); not valid yet (coupon_not_yet_valid); expired (coupon_expired); a discount "
                "coupon, for checkout only (coupon_not_redeemable)."
            ),
            409: error_response(
                "Redeemed as often as it may be (coupon_exhausted), or by you as often as it allows "
                "(coupon_already_redeemed); a first purchase only coupon and you have paid before "
                "(coupon_first_purchase_only)."
            ),
            429: error_response("Too many codes tried in the last hour (coupon_attempts_exceeded): see Retry-After."),
        },
        tags=TAGS,
    )
    def create(self, request: Request) -> Response:
        platform = self.tenant.platform
        data = validated(CouponRedeemInputSerializer, request.data)
        account = credit_selectors.account_for(platform=platform, user=request.user)
        account = account or credit_services.account_ensure(platform=platform, user=request.user)
        redemption = coupons.coupon_redeem(platform=platform, account=account, user=request.user, code=data["code"])
        return Response(CouponRedemptionSerializer(redemption).data, status=status.HTTP_201_CREATED)
