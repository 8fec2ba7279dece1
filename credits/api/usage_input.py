"""The body of a usage event, declared once: ``UsageEventInputSerializer`` documents it (OpenAPI) and validates
it into the service's typed input, ``credits.services.UsageInput``, for the single-event and the batch endpoint.

Each field is a DRF field (what the schema shows) whose rule is its ``parse``: the serializer runs the declared
fields' ``parse`` directly, without DRF's per-instance copy of the fields and per-field validator chain. A batch
holds up to 1,000 events: this takes ~25 us an event where a generic DRF serializer takes ~600 us (measured on
this machine, ``bench/README.md``)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers
from rest_framework.fields import empty

from billing_service.inputs import (
    UNSTORABLE,
    InstantField,
    StrictBooleanField,
    StrictIntegerField,
    StrictUUIDField,
    TextField,
    decimal_parse,
    instant_parse,
    is_json_int,
    text_problem,
    uuid_parse,
)
from billing_service.money import DECIMAL_PLACES, MAX_AMOUNT, MoneyField
from billing_service.schema import MoneyFieldExtension
from credits.services import UsageInput

MAX_BATCH = 1000
MAX_TOKENS = 10**12
FUTURE_SKEW = timedelta(minutes=5)
MAX_METADATA_BYTES = 4096
MAX_METADATA_DEPTH = 32
REQUIRED = "This field is required."


class EventErrors(Exception):
    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


class _Parsed:
    """A field of the usage body whose one rule is ``parse`` (a ValueError carries the client's message); DRF's
    own validation of the field uses it too. An absent field (or null, unless ``null_is_absent`` is false) is
    ``absent``, or "This field is required." when the field is required."""

    absent: Any = None
    null_is_absent = True

    def parse(self, value: Any) -> Any:
        raise NotImplementedError

    def to_internal_value(self, data: Any) -> Any:
        try:
            return self.parse(data)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


class _Uuid(_Parsed, StrictUUIDField):
    def parse(self, value: Any) -> Any:
        return uuid_parse(value)


class _Text(_Parsed, TextField):
    """Text under ``text_problem``'s rule; a required one may not be blank, an optional one defaults to ""."""

    absent = ""

    def __init__(self, *, max_length: int, required: bool = True, **kwargs: Any) -> None:
        super().__init__(max_length=max_length, blank=not required, required=required, **kwargs)

    def parse(self, value: Any) -> str:
        problem = text_problem(value, max_length=self.max_length, blank=self.blank)
        if problem:
            raise ValueError(problem)
        return value


class _Tokens(_Parsed, StrictIntegerField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(min_value=0, max_value=MAX_TOKENS, required=False, **kwargs)

    def parse(self, value: Any) -> int:
        if not is_json_int(value):
            raise ValueError("Must be a whole number.")
        if not 0 <= value <= MAX_TOKENS:
            raise ValueError(f"Must be between 0 and {MAX_TOKENS}.")
        return value


class _Amount(_Parsed, MoneyField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_zero=True, required=False, **kwargs)

    def parse(self, value: Any) -> Decimal:
        amount = decimal_parse(value)
        if amount < 0:
            raise ValueError("Must not be negative.")
        if amount > MAX_AMOUNT:
            raise ValueError(f"Must be at most {MAX_AMOUNT}.")
        if amount.as_tuple().exponent < -DECIMAL_PLACES:  # type: ignore[operator]
            raise ValueError(f"Ensure that there are no more than {DECIMAL_PLACES} decimal places.")
        return amount


class _AmountSchema(MoneyFieldExtension):
    """Documented as every ``MoneyField`` (the extension matches that class only, not its subclasses)."""

    target_class = _Amount


class _Success(_Parsed, StrictBooleanField):
    absent = True
    null_is_absent = False  # null is not a boolean

    def parse(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError("Must be true or false.")
        return value


class _Metadata(_Parsed, serializers.DictField):
    def parse(self, value: Any) -> dict | None:
        if not isinstance(value, dict):
            raise ValueError("Must be a JSON object.")
        if problem := _metadata_problem(value):
            raise ValueError(problem)
        if len(json.dumps(value, default=str)) > MAX_METADATA_BYTES:
            raise ValueError(f"Must be at most {MAX_METADATA_BYTES} bytes of JSON.")
        return _plain(value) if value else None


class _OccurredAt(_Parsed, InstantField):
    def parse(self, value: Any) -> datetime:
        moment = instant_parse(value)
        # The floor (2000-01-01) is the service's rule (credits.services.usage_events.usage_cost); how far ahead a
        # caller's clock may run is the API's.
        if moment > timezone.now() + FUTURE_SKEW:
            raise ValueError("Must not be in the future.")
        return moment


class UsageEventInputSerializer(serializers.Serializer):
    """One AI call: the body of POST /usage/, and each event of POST /usage/batch/. A 400 names every bad
    field."""

    # Validates into the service's ``UsageInput`` (``parse``); the docstring above is the schema's description.

    account_id = _Uuid(help_text="A credit account of your platform.")
    request_id = _Text(
        max_length=255,
        help_text="Your id of the call: the idempotency key, and the name of one AI call (a hold's request_id "
        "cannot be recorded here: 409 request_id_held).",
    )
    endpoint = _Text(max_length=200, help_text='What was called, e.g. "/v1/chat/completions".')
    model = _Text(max_length=100, required=False, help_text="Priced from the rate card.")
    input_tokens = _Tokens()
    output_tokens = _Tokens()
    amount = _Amount(help_text="The cost, when you price it yourself.")
    success = _Success(default=True, help_text="A failed call is recorded and costs nothing.")
    description = _Text(max_length=500, required=False)
    metadata = _Metadata(
        required=False, allow_null=True,
        help_text="Any JSON object, up to 4,096 bytes of JSON and 32 levels deep (null: none).",
    )
    occurred_at = _OccurredAt(
        required=False,
        help_text="When the call happened (default: now): ISO 8601, e.g. 2026-04-17T09:15:00Z (an offset is "
        "converted to UTC; none means UTC), not before 2000-01-01T00:00:00Z and at most 5 minutes ahead of the "
        "service's clock. Its UTC day is the day the call counts in /usage/stats/.",
    )

    @classmethod
    def parse(cls, data: Any) -> UsageInput:
        """The event of ``data`` (decoded JSON), or ``EventErrors`` naming every bad field."""
        if not isinstance(data, dict):
            raise EventErrors({"non_field_errors": ["Each event must be a JSON object."]})
        errors: dict[str, list[str]] = {}
        unknown = sorted(set(data) - _NAMES)
        if unknown:
            errors["non_field_errors"] = [f"Unknown field(s): {', '.join(unknown)}."]
        values = {}
        for name, parse, required, absent, null_is_absent in _RULES:
            value = data.get(name, empty)
            if value is empty or (value is None and null_is_absent):
                if required:
                    errors[name] = [REQUIRED]
                values[name] = absent
                continue
            try:
                values[name] = parse(value)
            except ValueError as exc:
                errors[name] = [str(exc)]
        if errors:
            raise EventErrors(errors)
        return UsageInput(**values)

    def run_validation(self, data: Any = empty) -> UsageInput:
        try:
            return self.parse(data)
        except EventErrors as exc:
            raise serializers.ValidationError(exc.errors) from None


@extend_schema_serializer(component_name="UsageBatch")
class UsageBatchInputSerializer(serializers.Serializer):
    """Up to 1,000 AI calls of any accounts of the platform, each recorded, a duplicate or rejected on its own."""

    events = UsageEventInputSerializer(many=True, help_text=f"1 to {MAX_BATCH:,}.")

    def run_validation(self, data: Any = empty) -> list:
        """The batch's events, each as sent: each is validated on its own (``UsageEventInputSerializer.parse``),
        so that a bad one is rejected alone."""
        events = data.get("events") if isinstance(data, dict) else None
        problems: dict[str, list[str]] = {}
        if not isinstance(events, list) or not 1 <= len(events) <= MAX_BATCH:
            problems["events"] = [f"Must be a list of 1 to {MAX_BATCH} events."]
        if isinstance(data, dict):
            problems |= {str(name): ["Unknown field."] for name in sorted(set(data) - {"events"}, key=str)}
        if problems:
            raise serializers.ValidationError(problems)
        return events


# Each declared field's rule, looked up once: (name, parse, required, absent, null_is_absent).
_RULES = [
    (name, field.parse, field.required, field.absent, field.null_is_absent)
    for name, field in UsageEventInputSerializer._declared_fields.items()
]
_NAMES = frozenset(rule[0] for rule in _RULES)


def _metadata_problem(metadata: dict) -> str | None:
    """Why ``metadata`` cannot be stored: nested too deep to walk (checked without recursion), or text that
    PostgreSQL refuses. None when it is fine."""
    stack: list[tuple[Any, int]] = [(metadata, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if UNSTORABLE.search(value):
                return "Text in metadata must be valid Unicode without NUL characters."
        elif isinstance(value, dict | list):
            if depth > MAX_METADATA_DEPTH:
                return f"Must be nested at most {MAX_METADATA_DEPTH} levels deep."
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                stack.append((key, depth))
                stack.append((item, depth + 1))
    return None


def _plain(value: Any) -> Any:
    """Metadata as stored: exact decimals from the JSON body become strings."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
