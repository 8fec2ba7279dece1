"""Shapes of the holds (reservations) API. Input is strict: JSON types as documented, no unknown fields;
the request_id, text and token rules are those of the usage endpoints (``credits.api.usage_input``), since a
captured hold's request_id becomes its usage event's."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from billing_service.money import MoneyField
from credits.api.serializers import LedgerEntrySerializer, MoneyOutField, UUIDStringField
from credits.api.usage_input import MAX_TOKENS
from credits.ledger import is_reserved_key
from credits.models import HoldStatus
from credits.services import DEFAULT_HOLD_SECONDS, MAX_HOLD_SECONDS

# --- strict fields ------------------------------------------------------------------------------------------


class StrictCharField(serializers.CharField):
    """A JSON string without control characters (DRF's CharField would also take a number or a bool)."""

    default_error_messages = {
        "not_a_string": "Must be a string.",
        "control": "Must not contain control characters.",
    }

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        value = super().to_internal_value(data)
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            self.fail("control")
        return value


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: not a bool, not a string, not a number with a fraction (not even ``900.0``)."""

    default_error_messages = {"not_an_integer": "Must be a whole number (a JSON integer)."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("not_an_integer")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """``true`` or ``false`` (DRF's BooleanField would also take "yes", 1, "on"...)."""

    default_error_messages = {"not_a_boolean": "Must be true or false."}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("not_a_boolean")
        return data


class StrictInputSerializer(serializers.Serializer):
    """Refuses a body that is not a JSON object, and names every field it does not know (a misspelt optional
    field would otherwise be ignored silently: ``expires_at`` for ``expires_in`` keeps the default expiry)."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


# --- input ------------------------------------------------------------------------------------------------


class ReservationCreateInputSerializer(StrictInputSerializer):
    account_id = UUIDStringField(
        help_text="A credit account of your platform (a member's or the platform's own)."
    )
    amount = MoneyField(help_text='Credits to hold, greater than zero: "2.50".')
    request_id = StrictCharField(
        max_length=255,
        trim_whitespace=False,
        help_text="Your id of the call, and the idempotency key: the same request_id and body on the same "
        "account return the first hold (200); with another body they are a 409. The usage event recorded at "
        "capture carries it.",
    )
    reference = StrictCharField(
        max_length=255,
        required=False,
        default="",
        allow_blank=True,
        trim_whitespace=False,
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

    def validate_request_id(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("Must not be blank.")
        if is_reserved_key(value):
            raise serializers.ValidationError("Ids starting with 'usage:' or 'order:' are reserved for the service's own rows.")
        return value


class ReservationCaptureInputSerializer(StrictInputSerializer):
    amount = MoneyField(
        allow_zero=True,
        help_text='The real cost, "0" or more. More than the hold is charged only when the available credits '
        "cover the excess (402 otherwise).",
    )
    endpoint = StrictCharField(max_length=200, help_text='What was called, e.g. "/v1/chat/completions".')
    model = StrictCharField(max_length=100, required=False, default="", allow_blank=True)
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

    def validate_endpoint(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("Must not be blank.")
        return value


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
        allow_null=True, help_text="What the capture charged; null unless captured."
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
