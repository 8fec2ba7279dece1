"""Outbound webhooks of the caller's platform (owners and admins): ``admin/webhook-endpoints/`` (register, change,
deactivate an endpoint; its signing secret is shown once, when created or rotated) and ``admin/webhook-deliveries/``
(every delivery with its attempts; send one again)."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from django.urls import reverse
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.mixins import ListModelMixin
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import outbound
from accounts.api.views import IsPlatformAdmin, TenantGenericViewSet
from accounts.errors import WebhookDeliveryNotFound, WebhookEndpointLimit, WebhookEndpointNotFound
from accounts.outbound_models import (
    DeliveryStatus,
    OutboundAttempt,
    OutboundDelivery,
    OutboundEventType,
    WebhookEndpoint,
)
from billing_service.db_router import lagging_reads
from billing_service.inputs import (
    QueryIntegerField,
    StrictBooleanField,
    StrictChoiceField,
    StrictInputSerializer,
    TextField,
    URLField,
    uuid_or_none,
)
from billing_service.pagination import CountedPagination
from billing_service.schema import ERROR_RESPONSES, error_response, extend_schema, paginated
from billing_service.validation import validated

TAGS = ["webhooks (outbound)"]
MAX_ENDPOINTS = 16  # per platform: each event is sent to every one subscribed


class EndpointInputSerializer(StrictInputSerializer):
    url = URLField(help_text="Where events are POSTed: https (http only where OUTBOUND_ALLOW_HTTP is on), to a host "
                             "with public addresses only.")
    events = serializers.ListField(
        child=StrictChoiceField(choices=OutboundEventType.choices), min_length=1, max_length=len(OutboundEventType),
        help_text="The event types sent to it.",
    )
    description = TextField(max_length=200, required=False)
    active = StrictBooleanField(required=False, help_text="False: nothing is sent to it (it is never deleted).")

    def validate_url(self, value: str) -> str:
        problem = outbound.url_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value


class EndpointSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField())
    description = serializers.CharField()
    active = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class EndpointWithSecretSerializer(EndpointSerializer):
    secret = serializers.CharField(help_text="The signing secret: shown this once (rotate it if lost).")


class AttemptSerializer(serializers.Serializer):
    attempted_at = serializers.DateTimeField()
    status_code = serializers.IntegerField(allow_null=True)
    error = serializers.CharField()
    response_body = serializers.CharField()
    duration_ms = serializers.IntegerField()
    manual = serializers.BooleanField()


class DeliverySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    endpoint_id = serializers.UUIDField()
    event_id = serializers.SerializerMethodField()
    event_type = serializers.CharField(source="event.type")
    account_id = serializers.UUIDField(source="event.account_id", allow_null=True)
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    attempts = serializers.IntegerField()
    next_attempt_at = serializers.SerializerMethodField()
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    delivered_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    attempt_log = AttemptSerializer(many=True, source="attempt_rows.all", help_text="Every request, newest first.")

    def get_event_id(self, delivery: OutboundDelivery) -> str:
        return f"evt_{delivery.event.event_id.hex}"

    def get_next_attempt_at(self, delivery: OutboundDelivery) -> str | None:
        if delivery.status != DeliveryStatus.PENDING:
            return None
        return serializers.DateTimeField().to_representation(delivery.next_attempt_at)


class DeliveryListQuerySerializer(serializers.Serializer):
    endpoint = serializers.UUIDField(required=False)
    status = StrictChoiceField(choices=DeliveryStatus.choices, required=False)
    event_type = StrictChoiceField(choices=OutboundEventType.choices, required=False)
    page = QueryIntegerField(min_value=1, required=False, default=1)
    page_size = QueryIntegerField(min_value=1, max_value=100, required=False, default=20)


def _endpoint_body(endpoint: WebhookEndpoint, *, with_secret: bool = False) -> dict[str, Any]:
    serializer = EndpointWithSecretSerializer if with_secret else EndpointSerializer
    return serializer(endpoint).data


class WebhookEndpointViewSet(ListModelMixin, TenantGenericViewSet):
    """Your platform's webhook endpoints (owners and admins; another platform's endpoint is 404).

    Events are POSTed as JSON, signed: `Billing-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
    with the endpoint's secret, and carry a stable `Billing-Event-Id`. A non-2xx answer or a timeout is retried with
    exponential back-off for up to 3 days. Endpoints are never deleted: set `active` false."""

    serializer_class = EndpointSerializer
    pagination_class = CountedPagination
    permission_classes = [IsAuthenticated, IsPlatformAdmin]
    lookup_url_kwarg = "endpoint_id"

    def get_queryset(self) -> QuerySet[WebhookEndpoint]:
        return WebhookEndpoint.objects.filter(platform=self.tenant.platform).order_by("created_at", "id")

    def get_object(self) -> WebhookEndpoint:
        endpoint_id = uuid_or_none(self.kwargs[self.lookup_url_kwarg])
        endpoint = self.get_queryset().filter(pk=endpoint_id).first() if endpoint_id else None
        if endpoint is None:
            raise WebhookEndpointNotFound()
        return endpoint

    @extend_schema(operation_id="billing_admin_webhook_endpoints_list", summary="Your webhook endpoints",
                   responses={200: paginated(EndpointSerializer, "PaginatedWebhookEndpointList"), **ERROR_RESPONSES},
                   tags=TAGS)
    def list(self, request: Request) -> Response:
        return super().list(request)

    @extend_schema(
        operation_id="billing_admin_webhook_endpoints_create", summary="Register a webhook endpoint",
        request=EndpointInputSerializer,
        responses={201: EndpointWithSecretSerializer, 409: error_response("Too many endpoints (endpoint_limit)."),
                   **ERROR_RESPONSES},
        tags=TAGS,
    )
    def create(self, request: Request) -> Response:
        data = validated(EndpointInputSerializer, request.data)
        if self.get_queryset().count() >= MAX_ENDPOINTS:
            raise WebhookEndpointLimit(details={"max_endpoints": MAX_ENDPOINTS})
        endpoint = outbound.endpoint_create(platform=self.tenant.platform, actor=request.user, **data)
        return Response(
            _endpoint_body(endpoint, with_secret=True), status=status.HTTP_201_CREATED,
            headers={"Location": reverse("billing-admin-webhook-endpoint", kwargs={"endpoint_id": endpoint.pk})},
        )

    @extend_schema(operation_id="billing_admin_webhook_endpoints_retrieve", summary="A webhook endpoint",
                   responses={200: EndpointSerializer, **ERROR_RESPONSES}, tags=TAGS)
    def retrieve(self, request: Request, endpoint_id: str) -> Response:
        return Response(_endpoint_body(self.get_object()))

    @extend_schema(operation_id="billing_admin_webhook_endpoints_update",
                   summary="Change a webhook endpoint (PUT: url and events required)",
                   request=EndpointInputSerializer, responses={200: EndpointSerializer, **ERROR_RESPONSES}, tags=TAGS)
    def update(self, request: Request, endpoint_id: str) -> Response:
        return self._change(request, partial=False)

    @extend_schema(operation_id="billing_admin_webhook_endpoints_partial_update",
                   summary="Change some fields of a webhook endpoint (e.g. active false)",
                   request=EndpointInputSerializer, responses={200: EndpointSerializer, **ERROR_RESPONSES}, tags=TAGS)
    def partial_update(self, request: Request, endpoint_id: str) -> Response:
        return self._change(request, partial=True)

    def _change(self, request: Request, *, partial: bool) -> Response:
        endpoint = self.get_object()
        given = EndpointInputSerializer(data=request.data, partial=partial)
        given.is_valid(raise_exception=True)
        endpoint = outbound.endpoint_update(endpoint=endpoint, **given.validated_data)
        return Response(_endpoint_body(endpoint))

    @extend_schema(operation_id="billing_admin_webhook_endpoints_rotate_secret",
                   summary="A new signing secret (shown once)", request=None,
                   responses={200: EndpointWithSecretSerializer, **ERROR_RESPONSES}, tags=TAGS)
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, endpoint_id: str) -> Response:
        endpoint = outbound.endpoint_secret_rotate(endpoint=self.get_object())
        return Response(_endpoint_body(endpoint, with_secret=True))


class WebhookDeliveryViewSet(ListModelMixin, TenantGenericViewSet):
    """Deliveries of your platform's events to its endpoints, newest first, each with every attempt (owners and
    admins). `redeliver` sends one again at once."""

    serializer_class = DeliverySerializer
    pagination_class = CountedPagination
    permission_classes = [IsAuthenticated, IsPlatformAdmin]
    lookup_url_kwarg = "delivery_id"

    def _deliveries(self) -> QuerySet[OutboundDelivery]:
        return (
            OutboundDelivery.objects.filter(endpoint__platform=self.tenant.platform)
            .select_related("event")
            .prefetch_related(Prefetch("attempt_rows", queryset=OutboundAttempt.objects.order_by("-id")))
            .order_by("-id")
        )

    def get_queryset(self) -> QuerySet[OutboundDelivery]:
        query = validated(DeliveryListQuerySerializer, self.request.query_params)
        rows = self._deliveries()
        if "endpoint" in query:
            rows = rows.filter(endpoint_id=query["endpoint"])
        if "status" in query:
            rows = rows.filter(status=query["status"])
        if "event_type" in query:
            rows = rows.filter(event__type=query["event_type"])
        return rows

    def get_object(self) -> OutboundDelivery:
        raw = self.kwargs[self.lookup_url_kwarg]
        known = raw.isascii() and raw.isdigit() and len(raw) < 19  # a bigint
        delivery = self._deliveries().filter(pk=int(raw)).first() if known else None
        if delivery is None:
            raise WebhookDeliveryNotFound()
        return delivery

    @extend_schema(operation_id="billing_admin_webhook_deliveries_list", summary="Deliveries and their attempts",
                   parameters=[DeliveryListQuerySerializer],
                   responses={200: paginated(DeliverySerializer, "PaginatedWebhookDeliveryList"), **ERROR_RESPONSES},
                   tags=TAGS)
    @lagging_reads  # history: may lag (README, "Read replicas"); one delivery (retrieve, redeliver) reads the primary
    def list(self, request: Request) -> Response:
        return super().list(request)

    @extend_schema(operation_id="billing_admin_webhook_deliveries_retrieve", summary="A delivery and its attempts",
                   responses={200: DeliverySerializer, **ERROR_RESPONSES}, tags=TAGS)
    def retrieve(self, request: Request, delivery_id: str) -> Response:
        return Response(DeliverySerializer(self.get_object()).data)

    @extend_schema(operation_id="billing_admin_webhook_deliveries_redeliver", summary="Send a delivery again now",
                   request=None, responses={200: DeliverySerializer, **ERROR_RESPONSES}, tags=TAGS)
    @action(detail=True, methods=["post"])
    def redeliver(self, request: Request, delivery_id: str) -> Response:
        outbound.delivery_redeliver(delivery=self.get_object())
        return Response(DeliverySerializer(self.get_object()).data)
