"""Shapes of the holds (reservations) API. Input is strict: JSON types as documented, no unknown fields;
the request_id, text and token rules are those of the usage endpoints (``credits.api.usage_input``), since a
captured hold's request_id becomes its usage event's."""

from __future__ import annotations

from rest_framework import serializers

from billing_service.inputs import (
    StrictBooleanField,
    StrictInputSerializer,
    StrictIntegerField,
    StrictUUIDField,
    TextField,
)
from billing_service.money import MoneyField
from credits.api.serializers import LedgerEntrySerializer, MoneyOutField
from credits.api.usage_input import MAX_TOKENS
from credits.models import HoldStatus
from credits.services import DEFAULT_HOLD_SECONDS, MAX_HOLD_SECONDS

# --- input ------------------------------------------------------------------------------------------------


class ReservationCreateInputSerializer(StrictInputSerializer):
    account_id = StrictUUIDField(
        help_text="A credit account of your platform (a member's or the platform's own)."
    )
    amount = MoneyField(help_text='Credits to hold, greater than zero: "2.50".')
    request_id = TextField(
        max_length=255,
        blank=False,
        help_text="Your id of the call, and the idempotency key: the same request_id and body on the same "
        "account return the first hold (200); with another body they are a 409. The usage event recorded at "
        "capture carries it.",
    )
    reference = TextField(
        max_length=255,
        required=False,
        default="",
        help_text="Free text kept on the hold and its ledger rows.",
    )
    expires_in = StrictIntegerField(
        min_value=1,
        max_value=MAX_HOLD_SECONDS,
        required=False,
        default=DEFAULT_HOLD_SECONDS,
        help_text=f"Seconds until the hold expires and its credits are released: 1 to {MAX_HOLD_SECONDS} "
        f"(default {DEFAULT_HOLD_SECONDS}).",
    )


class ReservationCaptureInputSerializer(StrictInputSerializer):
    amount = MoneyField(
        allow_zero=True,
        required=False,
        allow_null=True,
        default=None,
        help_text='The real cost, "0" or more; without it, `model` and the tokens are priced by the rate card '
        "(exactly, like a usage event: the debit is in whole 0.000001 with the account's carried remainder). "
        "More than the hold is charged only when the available credits cover the excess (402 otherwise).",
    )
    endpoint = TextField(max_length=200, blank=False, help_text='What was called, e.g. "/v1/chat/completions".')
    model = TextField(max_length=100, required=False, default="")
    input_tokens = StrictIntegerField(
        min_value=0, max_value=MAX_TOKENS, required=False, allow_null=True, default=None
    )
    output_tokens = StrictIntegerField(
        min_value=0, max_value=MAX_TOKENS, required=False, allow_null=True, default=None
    )
    success = StrictBooleanField(
        required=False,
        default=True,
        help_text="false: the call failed; it is recorded, charged nothing (whatever amount says) and the "
        "whole hold is released.",
    )


# --- output -----------------------------------------------------------------------------------------------


class HoldSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    account_id = serializers.UUIDField()
    status = serializers.ChoiceField(
        choices=HoldStatus.choices,
        help_text="active, then exactly one of captured, released or expired. A hold past expires_at reads "
        "active until the expiry sweep, a capture or a release settles it.",
    )
    amount = MoneyOutField(help_text="Credits held.")
    captured_amount = MoneyOutField(
        allow_null=True, help_text="What the capture charged to the credits; null unless captured."
    )
    funded = MoneyOutField(
        help_text="The part of the amount reserved on the member's seat budgets instead of the credits."
    )
    request_id = serializers.CharField()
    reference = serializers.CharField()
    expires_at = serializers.DateTimeField()
    settled_at = serializers.DateTimeField(
        allow_null=True, help_text="When it was captured, released or expired."
    )
    created_at = serializers.DateTimeField()


class ReservationCreatedSerializer(HoldSerializer):
    transaction_id = serializers.UUIDField(help_text="The `reserve` ledger row.")
    available_credits = MoneyOutField(
        help_text="The account's available credits after the reservation (on a replay: as they are now)."
    )


class ReservationCapturedSerializer(HoldSerializer):
    transactions = LedgerEntrySerializer(
        many=True,
        help_text="The rows written: `subtract` (absent when nothing was charged) and/or `release`.",
    )
    usage_event_id = serializers.UUIDField(help_text="The usage event recorded for the call.")
    available_credits = MoneyOutField(help_text="The account's available credits after the capture.")


class ReservationReleasedSerializer(HoldSerializer):
    transactions = LedgerEntrySerializer(many=True, help_text="The `release` row written.")
    available_credits = MoneyOutField(help_text="The account's available credits after the release.")
