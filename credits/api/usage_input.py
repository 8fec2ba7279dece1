"""Validation of usage events, written out by hand: a batch holds up to 1,000 of them, and this runs in
a few microseconds per event where a DRF serializer takes a hundred. The one source of truth for both the
single-event and the batch endpoint; ``UsageEventInputSerializer`` only documents it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from billing_service.inputs import (
    UNSTORABLE,
    decimal_parse,
    instant_parse,
    is_json_int,
    text_problem,
    uuid_or_none,
)
from billing_service.money import DECIMAL_PLACES, MAX_AMOUNT
from credits.services import UsageInput

MAX_TOKENS = 10**12
FUTURE_SKEW = timedelta(minutes=5)
MAX_METADATA_BYTES = 4096
MAX_METADATA_DEPTH = 32
FIELDS = frozenset(
    {"account_id", "request_id", "endpoint", "model", "input_tokens", "output_tokens", "amount", "success",
     "description", "metadata", "occurred_at"}
)


class EventErrors(Exception):
    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def _text(data: dict, name: str, errors: dict, *, required: bool, max_length: int) -> str:
    value = data.get(name)
    if value is None:
        if required:
            errors[name] = ["This field is required."]
        return ""
    problem = text_problem(value, max_length=max_length, blank=not required)
    if problem:
        errors[name] = [problem]
    return value


def _tokens(data: dict, name: str, errors: dict) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if not is_json_int(value):
        errors[name] = ["Must be a whole number."]
    elif not 0 <= value <= MAX_TOKENS:
        errors[name] = [f"Must be between 0 and {MAX_TOKENS}."]
    else:
        return value
    return None


def _amount(data: dict, errors: dict) -> Decimal | None:
    value = data.get("amount")
    if value is None:
        return None
    try:
        amount = decimal_parse(value)
    except ValueError as exc:
        errors["amount"] = [str(exc)]
        return None
    if amount < 0:
        errors["amount"] = ["Must not be negative."]
    elif amount > MAX_AMOUNT:
        errors["amount"] = [f"Must be at most {MAX_AMOUNT}."]
    elif amount.as_tuple().exponent < -DECIMAL_PLACES:  # type: ignore[operator]
        errors["amount"] = [f"Ensure that there are no more than {DECIMAL_PLACES} decimal places."]
    else:
        return amount
    return None


def _occurred_at(data: dict, errors: dict, now: datetime) -> datetime | None:
    value = data.get("occurred_at")
    if value is None:
        return None
    try:
        moment = instant_parse(value)
    except ValueError as exc:
        errors["occurred_at"] = [str(exc)]
        return None
    # The floor (2000-01-01) is the service's rule (credits.services.usage.usage_cost); how far ahead a caller's
    # clock may run is the API's.
    if moment > now + FUTURE_SKEW:
        errors["occurred_at"] = ["Must not be in the future."]
        return None
    return moment


def parse_event(data: Any, *, now: datetime | None = None) -> UsageInput:
    """A usage event from JSON, or ``EventErrors`` naming every bad field."""
    if not isinstance(data, dict):
        raise EventErrors({"non_field_errors": ["Each event must be a JSON object."]})
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        errors["non_field_errors"] = [f"Unknown field(s): {', '.join(unknown)}."]
    raw_id = data.get("account_id")
    account_id = None
    if raw_id is None:
        errors["account_id"] = ["This field is required."]
    else:
        account_id = uuid_or_none(raw_id)
        if account_id is None:
            errors["account_id"] = ["Must be a valid UUID (8-4-4-4-12 hexadecimal digits)."]
    request_id = _text(data, "request_id", errors, required=True, max_length=255)
    endpoint = _text(data, "endpoint", errors, required=True, max_length=200)
    model = _text(data, "model", errors, required=False, max_length=100)
    description = _text(data, "description", errors, required=False, max_length=500)
    input_tokens = _tokens(data, "input_tokens", errors)
    output_tokens = _tokens(data, "output_tokens", errors)
    amount = _amount(data, errors)
    success = data.get("success", True)
    if not isinstance(success, bool):
        errors["success"] = ["Must be true or false."]
    metadata = data.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            errors["metadata"] = ["Must be a JSON object."]
        elif problem := _metadata_problem(metadata):
            errors["metadata"] = [problem]
        elif len(json.dumps(metadata, default=str)) > MAX_METADATA_BYTES:
            errors["metadata"] = [f"Must be at most {MAX_METADATA_BYTES} bytes of JSON."]
    occurred_at = _occurred_at(data, errors, now or timezone.now())
    if errors:
        raise EventErrors(errors)
    return UsageInput(
        account_id=account_id, request_id=request_id, endpoint=endpoint, model=model, input_tokens=input_tokens,
        output_tokens=output_tokens, amount=amount, success=success, description=description,
        metadata=_plain(metadata) if metadata else None, occurred_at=occurred_at,
    )


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
