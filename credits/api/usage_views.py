"""Recording AI usage: the platform's trusted backend (an owner or admin) reports each model call."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.views import TenantViewSet
from billing_service.money import format_exact, format_money
from billing_service.schema import ERROR_RESPONSES, error_response, extend_schema
from credits.api.serializers import ExactOutField, LedgerEntrySerializer, MoneyOutField, iso_instant
from credits.api.usage_input import EventErrors, UsageBatchInputSerializer, UsageEventInputSerializer
from credits.models import UsageEvent
from credits.services import usage_record, usage_record_batch

SEAT_MODEL_REFUSED = (
    "Not an owner or admin (permission_denied); or the account's member holds a seat whose plan does not include "
    "the model (model_not_entitled); nothing written."
)
SEAT_BUDGET_REFUSED = (
    "The account's member holds a seat and the cost does not fit in its weekly or 6-hour session budget "
    "(budget_exceeded: details name the `budget`, what is `remaining` and when it `resets_at`; the Retry-After "
    "header gives the seconds); nothing written."
)


class UsageEventSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    account_id = serializers.UUIDField()
    request_id = serializers.CharField()
    endpoint = serializers.CharField()
    model = serializers.CharField()
    input_tokens = serializers.IntegerField(allow_null=True)
    output_tokens = serializers.IntegerField(allow_null=True)
    cost = ExactOutField(help_text="The call's exact cost (up to 12 decimals); 0 when it failed.")
    charged = MoneyOutField(
        help_text="What its ledger row debited: the whole 0.000001 of the account's carried remainder plus the "
        "cost; the rest stays carried (`carried_remainder`)."
    )
    funded = ExactOutField(
        help_text="The part of the cost the member's seat paid (within its budgets), not the credits: the cost is "
        "`funded` + `charged` + what the account carried."
    )
    funded_by = serializers.CharField(help_text="What paid `funded`: `seat:<AI plan slug>`; empty when nothing did.")
    priced_by = serializers.CharField(help_text="amount or rate_card")
    price_version_id = serializers.IntegerField(source="price_id", allow_null=True)
    success = serializers.BooleanField()
    description = serializers.CharField()
    metadata = serializers.JSONField()
    transaction_id = serializers.UUIDField(source="ledger_entry_id", allow_null=True)
    hold_id = serializers.UUIDField(allow_null=True)
    occurred_at = serializers.DateTimeField()
    recorded_at = serializers.DateTimeField()

    def to_representation(self, event: UsageEvent) -> dict:
        # Written out, like LedgerEntrySerializer's: the same output as the declared fields, much cheaper.
        return {
            "id": str(event.id),
            "account_id": str(event.account_id),
            "request_id": event.request_id,
            "endpoint": event.endpoint,
            "model": event.model,
            "input_tokens": event.input_tokens,
            "output_tokens": event.output_tokens,
            "cost": format_exact(event.cost),
            "charged": format_money(event.charged),
            "funded": format_exact(event.funded),
            "funded_by": event.funded_by,
            "priced_by": event.priced_by,
            "price_version_id": event.price_id,
            "success": event.success,
            "description": event.description,
            "metadata": event.metadata,
            "transaction_id": str(event.ledger_entry_id) if event.ledger_entry_id else None,
            "hold_id": str(event.hold_id) if event.hold_id else None,
            "occurred_at": iso_instant(event.occurred_at),
            "recorded_at": iso_instant(event.recorded_at),
        }


UsageRecordedSerializer = inline_serializer(
    name="UsageRecorded",
    fields={
        "transaction": LedgerEntrySerializer(
            allow_null=True, help_text="The subtract row; null when nothing was debited (free, or carried)."
        ),
        "usage_event": UsageEventSerializer(),
        "available_credits": MoneyOutField(),
    },
)

BatchResultSerializer = inline_serializer(
    name="UsageBatchResult",
    fields={
        "recorded": serializers.IntegerField(),
        "duplicates": serializers.IntegerField(),
        "rejected": serializers.IntegerField(),
        "results": inline_serializer(
            name="UsageBatchItem",
            many=True,
            fields={
                "request_id": serializers.CharField(allow_null=True),
                "status": serializers.ChoiceField(choices=["recorded", "duplicate", "rejected"]),
                "transaction_id": serializers.UUIDField(allow_null=True),
                "usage_event_id": serializers.UUIDField(allow_null=True),
                "error": serializers.DictField(allow_null=True, help_text="{code, message, details} when rejected"),
            },
        ),
    },
)


class UsageViewSet(TenantViewSet):
    """Usage events from the platform's backend (owners and admins). A successful event debits its account
    in the same transaction that stores it; `request_id` makes retries safe."""

    max_body_bytes = {"batch": settings.API_BATCH_MAX_BODY_BYTES}  # billing_service.middleware

    @extend_schema(
        operation_id="billing_usage_create",
        summary="Record one AI call and charge it",
        request=UsageEventInputSerializer,
        responses={
            201: UsageRecordedSerializer,
            200: OpenApiResponse(UsageRecordedSerializer, description="The same event again: the first result."),
            402: error_response("Not enough available credits (insufficient_credits); nothing written."),
            403: error_response(SEAT_MODEL_REFUSED),
            429: error_response(SEAT_BUDGET_REFUSED),
            409: error_response(
                "This request_id was recorded with other content (idempotency_conflict), or it is a hold's "
                "(request_id_held: a request_id names one AI call; capture or release the hold)."
            ),
            **ERROR_RESPONSES,
        },
        tags=["usage"],
    )
    def create(self, request: Request) -> Response:
        self.tenant.require_admin()
        event = UsageEventInputSerializer(data=request.data)
        event.is_valid(raise_exception=True)
        result = usage_record(platform=self.tenant.platform, usage=event.validated_data, actor=request.user)
        body = {
            "transaction": LedgerEntrySerializer(result.entry).data if result.entry else None,
            "usage_event": UsageEventSerializer(result.event).data,
            "available_credits": format_money(result.available),
        }
        return Response(body, status=status.HTTP_200_OK if result.replayed else status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="billing_usage_batch_create",
        summary="Record up to 1,000 AI calls, each on its own",
        request=UsageBatchInputSerializer,
        responses={200: BatchResultSerializer, **ERROR_RESPONSES},
        tags=["usage"],
    )
    @action(detail=False, methods=["post"])
    def batch(self, request: Request) -> Response:
        self.tenant.require_admin()
        batch = UsageBatchInputSerializer(data=request.data)
        batch.is_valid(raise_exception=True)
        events = batch.validated_data
        parsed: list = []
        results: list[dict | None] = [None] * len(events)
        positions: list[int] = []
        for i, raw in enumerate(events):
            try:
                parsed.append(UsageEventInputSerializer.parse(raw))
                positions.append(i)
            except EventErrors as exc:
                # echoed only when valid: an invalid one may not even be encodable (a lone surrogate)
                valid_id = isinstance(raw, dict) and "request_id" not in exc.errors
                request_id = raw.get("request_id") if valid_id else None
                results[i] = _item(request_id if isinstance(request_id, str) else None, "rejected",
                                   error={"code": "invalid", "message": f"Invalid input: {', '.join(exc.errors)}.",
                                          "details": exc.errors})
        if parsed:
            outcomes = usage_record_batch(platform=self.tenant.platform, events=parsed, actor=request.user)
            for i, outcome in zip(positions, outcomes, strict=True):
                error = outcome.error
                results[i] = _item(
                    outcome.request_id, outcome.status,
                    transaction_id=outcome.entry_id,
                    event_id=outcome.event_id,
                    error={"code": error.code, "message": error.message, "details": error.details} if error else None,
                )
        counts = {"recorded": 0, "duplicate": 0, "rejected": 0}
        for item in results:
            counts[item["status"]] += 1
        return Response(
            {"recorded": counts["recorded"], "duplicates": counts["duplicate"], "rejected": counts["rejected"],
             "results": results}
        )


def _item(request_id: str | None, status_: str, *, transaction_id=None, event_id=None, error=None) -> dict:  # noqa: ANN001
    return {
        "request_id": request_id,
        "status": status_,
        "transaction_id": str(transaction_id) if transaction_id else None,
        "usage_event_id": str(event_id) if event_id else None,
        "error": error,
    }


