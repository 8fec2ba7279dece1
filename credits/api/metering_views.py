"""The rate card (owners and admins), usage statistics and the account summary."""

from __future__ import annotations

from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.views import IsPlatformAdmin, TenantGenericViewSet, TenantViewSet
from accounts.errors import NotAMember
from billing_service.db_router import lagging_reads
from billing_service.pagination import CountedPagination
from billing_service.schema import ERROR_RESPONSES, error_response, extend_schema, paginated
from billing_service.validation import validated
from credits import selectors, services
from credits.api.metering_serializers import (
    ModelPriceInputSerializer,
    ModelPriceVersionSerializer,
    RateCardModelSerializer,
    RateCardQuerySerializer,
    UsageStatsQuerySerializer,
    UsageStatsSerializer,
)
from credits.errors import AccountNotFound, ModelPriceNotFound
from credits.models import CreditAccount
from credits.services.rate_card import (
    MODEL_NAME_HELP,
    MODEL_NAME_MAX_LENGTH,
    is_valid_model_name,
    model_price_version_create,
)

# --- rate card -------------------------------------------------------------------------------------------


class ModelPriceViewSet(TenantGenericViewSet):
    """The platform's rate card: what each AI model costs, in credits per million input tokens and per million
    output tokens. Owners and admins only (members get 403).

    Prices are versioned: a change is a new version taking effect at `effective_from` (default now; it may be
    in the future). It may start more than 60 seconds in the past only where no earlier version of the model
    exists, so usage already charged is never repriced (a model's first price may be backdated to price usage
    reported late). Versions are never edited or deleted; two versions of a model at the same instant are a
    409. A usage event is priced by the version in effect when it occurred and keeps that version's id.

    The listing has one item per model, alphabetically, with `current` (the version in effect now, null while
    the model only has scheduled versions) and `versions` (newest `effective_from` first, each with its
    `status` and `effective_until`), in pages of models (`page`, `page_size` up to 100, exact `count`)."""

    serializer_class = RateCardModelSerializer
    pagination_class = CountedPagination  # pages of model names
    permission_classes = [IsAuthenticated, IsPlatformAdmin]
    lookup_url_kwarg = "model"
    lookup_value_converter = "path"  # model names may contain "/" (meta-llama/Llama-3-70b)

    def get_queryset(self) -> QuerySet:
        """The model names of the rate card, alphabetically (``?model=``: only that one)."""
        query = validated(RateCardQuerySerializer, self.request.query_params)
        return selectors.rate_card_model_names(platform_id=self.tenant.platform.pk, model=query.get("model"))

    @extend_schema(
        operation_id="billing_admin_models_list",
        summary="The rate card: each model's current price and its versions (owners and admins)",
        parameters=[RateCardQuerySerializer],
        responses={200: paginated(RateCardModelSerializer, "PaginatedRateCardModelList"), **ERROR_RESPONSES},
        tags=["admin"],
    )
    def list(self, request: Request) -> Response:
        names = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        platform_id = self.tenant.platform.pk
        models = selectors.rate_card_models(platform_id=platform_id, models=names, at=timezone.now())
        return self.get_paginated_response(RateCardModelSerializer(models, many=True).data)

    @extend_schema(
        operation_id="billing_admin_models_create",
        summary="Add a price version of a model (owners and admins)",
        request=ModelPriceInputSerializer,
        responses={
            **ERROR_RESPONSES,
            201: OpenApiResponse(
                ModelPriceVersionSerializer, description="The new version (`Location`: the model's versions)."
            ),
            400: error_response(
                "Invalid input, named in details: a price negative, not a decimal, over 1000000000 or finer than "
                "6 decimals; a malformed model name; effective_from malformed, more than 5 years ahead, or more "
                "than 60 seconds in the past while an earlier version of the model exists."
            ),
            409: error_response(
                "The model already has a version at exactly that effective_from (model_price_version_exists); "
                "details name the existing version."
            ),
        },
        tags=["admin"],
    )
    def create(self, request: Request) -> Response:
        data = validated(ModelPriceInputSerializer, request.data)
        version = model_price_version_create(
            platform=self.tenant.platform,
            model=data["model"],
            input_per_million=data["input_per_million"],
            output_per_million=data["output_per_million"],
            effective_from=data["effective_from"],
            description=data["description"],
            actor=request.user,
        )
        price = version.price
        return Response(
            ModelPriceVersionSerializer(version).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("billing-admin-model", kwargs={"model": price.model})},
        )

    @extend_schema(
        operation_id="billing_admin_models_retrieve",
        summary="Every price version of one model (owners and admins)",
        parameters=[
            OpenApiParameter("model", str, OpenApiParameter.PATH, description=f"The model. {MODEL_NAME_HELP}")
        ],
        responses={
            **ERROR_RESPONSES,
            200: RateCardModelSerializer,
            404: error_response("The model has no version on this platform's rate card (model_not_found)."),
        },
        tags=["admin"],
    )
    def retrieve(self, request: Request, model: str) -> Response:
        if not is_valid_model_name(model):  # names no model: answered without a query
            raise ModelPriceNotFound(details={"model": model[:MODEL_NAME_MAX_LENGTH]})
        found = selectors.rate_card_models(
            platform_id=self.tenant.platform.pk, models=[model], at=timezone.now()
        )
        if not found:
            raise ModelPriceNotFound(details={"model": model})
        return Response(RateCardModelSerializer(found[0]).data)


# --- usage statistics and the summary --------------------------------------------------------------------


def caller_or_named_account(
    view: TenantViewSet | TenantGenericViewSet, request: Request, account_id: object | None
) -> CreditAccount:
    """The caller's own account, or with ``account_id`` another account of the platform (admins only)."""
    tenant = view.tenant
    if account_id is not None:
        tenant.require_admin()
        account = selectors.account_get(account_id=account_id, platform=tenant.platform)
        if account is None:
            raise AccountNotFound(details={"account_id": str(account_id)})
        return account
    if tenant.membership is None:
        raise NotAMember("You have no account on this platform; name one with ?account_id=.")
    account = selectors.account_for(platform=tenant.platform, user=request.user)
    return account or services.account_ensure(platform=tenant.platform, user=request.user)


class UsageStatsViewSet(TenantGenericViewSet):
    """Usage statistics of your credit account (owners and admins: of any account of the platform, with
    `account_id`): requests, successes, failures, credits consumed and tokens, in total, per endpoint, and per
    day, month or year (`period`, UTC).

    Figures come from daily rollups kept per account, UTC day and endpoint, so `from` and `to` count whole UTC
    days: every day from the one holding `from` to the one holding `to`. `period_start` and `period_end` echo
    the requested range; `buckets` carry their natural bounds (`period_end` exclusive), oldest first, empty
    ones included. At most 366 buckets per request (a longer range is a 400: choose a longer period)."""

    serializer_class = UsageStatsSerializer

    @extend_schema(
        operation_id="billing_usage_stats_retrieve",
        summary="Usage statistics of your account, per day, month or year",
        parameters=[UsageStatsQuerySerializer],
        responses={200: UsageStatsSerializer, **ERROR_RESPONSES},
        tags=["usage"],
    )
    @lagging_reads  # statistics: may lag (README, "Read replicas")
    def retrieve(self, request: Request) -> Response:
        query = validated(UsageStatsQuerySerializer, request.query_params)
        account = caller_or_named_account(self, request, query.get("account_id"))
        stats = selectors.usage_stats(
            account=account, period=query["period"], start=query["from"], end=query["to"]
        )
        return Response(UsageStatsSerializer(stats).data)


