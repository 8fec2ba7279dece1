"""What the API accepts: one rule per kind of value, for every endpoint, serializer, query string and the
hand-written usage validation alike.

- **Text**: a JSON string, at most ``max_length`` characters, without control characters (Unicode category
  Cc: C0, DEL and C1; a multi-line field may hold tab, LF and CR), without NUL or lone surrogates (which
  PostgreSQL cannot store).
- **Decimal amounts**: a JSON number (parsed exactly, never as a float) or a string of ASCII digits matching
  ``-?[0-9]+(\\.[0-9]{1,6})?``: no spaces, no sign "+", no exponent, no "_", no other script's digits.
- **Integers**: in a JSON body, a JSON integer (not a boolean, not ``1.0``, not a string); in a query
  string, ASCII digits only.
- **Booleans**: ``true``/``false`` in a JSON body; ``"true"``/``"false"`` in a query string.
- **UUIDs**: a string in the canonical 8-4-4-4-12 hexadecimal form.
- **Instants**: ISO 8601 with ASCII digits, ``YYYY-MM-DDTHH:MM[:SS[.ffffff]]`` and ``Z`` or ``±HH:MM`` (none
  means UTC); a stored instant (``occurred_at``, ``effective_from``) lies on or after ``EARLIEST_INSTANT``.

Each ``*_problem`` function returns the message for a bad value or None; the DRF fields below raise it as a
400 naming the field.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

# --- text -------------------------------------------------------------------------------------------------

# What PostgreSQL cannot store in text or jsonb (NUL) or encode at all (a lone UTF-16 surrogate from a JSON
# escape such as "\ud800").
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_EXCEPT_NEWLINES = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def text_problem(value: object, *, max_length: int, multiline: bool = False, blank: bool = True) -> str | None:
    """The one rule for text fields (``multiline``: tab, LF and CR allowed; ``blank``: empty or only spaces
    allowed)."""
    if not isinstance(value, str):
        return "Must be a string."
    if len(value) > max_length:
        return f"Ensure this field has no more than {max_length} characters."
    if not blank and not value.strip():
        return "Must not be blank."
    if UNSTORABLE.search(value):
        return "Must be valid Unicode text."
    if (_CONTROL_EXCEPT_NEWLINES if multiline else _CONTROL).search(value):
        return "Must not contain control characters."
    return None


# --- decimal amounts --------------------------------------------------------------------------------------

DECIMAL_STRING_RE = re.compile(r"-?[0-9]+(?:\.[0-9]{1,6})?")
DECIMAL_HELP = 'Must be a decimal number given as a string of digits, e.g. "12.50" (at most 6 decimals).'


def decimal_parse(value: object) -> Decimal:
    """An exact, finite Decimal from a JSON number or a strict decimal string; ``ValueError`` (its message for
    the client) otherwise. Range and places are the caller's to check."""
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise ValueError(DECIMAL_HELP)
    if isinstance(value, str):
        if not DECIMAL_STRING_RE.fullmatch(value):
            raise ValueError(DECIMAL_HELP)
        return Decimal(value)
    parsed = Decimal(value)
    if not parsed.is_finite():
        raise ValueError(DECIMAL_HELP)
    return parsed


# --- integers, booleans, UUIDs ----------------------------------------------------------------------------

_DIGITS_RE = re.compile(r"[0-9]{1,18}")
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_json_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def query_int_parse(value: object) -> int:
    """A non-negative integer from a query string: ASCII digits only."""
    if not isinstance(value, str) or not _DIGITS_RE.fullmatch(value):
        raise ValueError("A valid integer is required (digits 0-9 only).")
    return int(value)


def uuid_parse(value: object) -> uuid.UUID:
    """A UUID from its canonical text form (8-4-4-4-12 hexadecimal digits)."""
    if not isinstance(value, str) or not _UUID_RE.fullmatch(value):
        raise ValueError("Must be a valid UUID (8-4-4-4-12 hexadecimal digits).")
    return uuid.UUID(value)


def uuid_or_none(value: object) -> uuid.UUID | None:
    try:
        return uuid_parse(value)
    except ValueError:
        return None


# --- instants ---------------------------------------------------------------------------------------------

# Stored instants (when a call occurred, when a price takes effect) lie in this century: an instant before it
# is a client's mistake, and one before year 1 in UTC cannot even be written back.
EARLIEST_INSTANT = datetime(2000, 1, 1, tzinfo=UTC)
_INSTANT_RE = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{8}(?=$))"
    r"(?:T(?P<time>[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?)(?P<tz>Z|[+-][0-9]{2}:[0-9]{2})?)?"
)
INSTANT_HELP = (
    "Must be an ISO 8601 date-time, e.g. 2026-04-17T09:15:00Z (an offset such as +02:00 is converted to UTC; "
    "none means UTC)."
)
DATE_OR_INSTANT_HELP = "Must be an ISO 8601 date (YYYY-MM-DD) or date-time (YYYY-MM-DDTHH:MM:SSZ)."


def instant_parse(value: object, *, allow_date: bool = False) -> datetime:
    """An aware UTC datetime from strict ISO 8601 text (a date alone, with ``allow_date``: its UTC midnight);
    ``ValueError`` otherwise, also for a moment outside what a datetime holds once in UTC."""
    match = _INSTANT_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None or (match["time"] is None and not allow_date):
        raise ValueError(DATE_OR_INSTANT_HELP if allow_date else INSTANT_HELP)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(DATE_OR_INSTANT_HELP if allow_date else INSTANT_HELP) from None


def stored_instant_problem(
    moment: datetime, *, now: datetime | None = None, future: timedelta | None = None
) -> str | None:
    """Why ``moment`` cannot be stored: before ``EARLIEST_INSTANT``, or (given ``now`` and ``future``) more than
    ``future`` after ``now``."""
    if moment < EARLIEST_INSTANT:
        return f"Must not be before {EARLIEST_INSTANT.date().isoformat()}T00:00:00Z."
    if now is not None and future is not None and moment > now + future:
        return "Must not be in the future." if future < timedelta(hours=1) else (
            f"Must be at most {future.days} days ahead."
        )
    return None


def date_parse(value: object) -> date:
    """A calendar date, YYYY-MM-DD in ASCII digits."""
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("Enter a valid date (YYYY-MM-DD).")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError("Enter a valid date (YYYY-MM-DD).") from None


# --- DRF fields -------------------------------------------------------------------------------------------


class TextField(serializers.CharField):
    """A text value under ``text_problem``'s rule, never trimmed. Blank allowed unless ``blank=False``."""

    def __init__(self, *, max_length: int, multiline: bool = False, blank: bool = True, **kwargs: Any) -> None:
        self.multiline, self.blank = multiline, blank
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(max_length=max_length, allow_blank=blank, **kwargs)

    def run_validation(self, data: Any = serializers.empty) -> Any:
        if data == "" and not self.blank:
            raise serializers.ValidationError("Must not be blank.")
        return super().run_validation(data)

    def to_internal_value(self, data: Any) -> str:
        problem = text_problem(data, max_length=self.max_length, multiline=self.multiline, blank=self.blank)
        if problem:
            raise serializers.ValidationError(problem)
        return data


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: not a bool, not a string, not a number with a fraction (not even ``900.0``)."""

    default_error_messages = {"not_an_integer": "Must be a whole number (a JSON integer)."}

    def to_internal_value(self, data: Any) -> int:
        if not is_json_int(data):
            self.fail("not_an_integer")
        return super().to_internal_value(data)


class QueryIntegerField(serializers.IntegerField):
    """An integer query parameter: ASCII digits only (``int()`` would also take "٣" or "５")."""

    def to_internal_value(self, data: Any) -> int:
        try:
            value = query_int_parse(data)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return super().to_internal_value(value)


class StrictBooleanField(serializers.BooleanField):
    """``true`` or ``false`` (DRF's BooleanField would also take "yes", 1, "on"...)."""

    default_error_messages = {"not_a_boolean": "Must be true or false."}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("not_a_boolean")
        return data


class QueryBooleanField(serializers.BooleanField):
    """A boolean query parameter: ``true`` or ``false``."""

    default_error_messages = {"not_a_boolean": 'Must be "true" or "false".'}

    def to_internal_value(self, data: Any) -> bool:
        if data not in ("true", "false"):
            self.fail("not_a_boolean")
        return data == "true"


class StrictChoiceField(serializers.ChoiceField):
    """One of the choices, given as that exact string (DRF would also take a number whose text matches)."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class StrictUUIDField(serializers.UUIDField):
    """A UUID as a string in its canonical form (DRF's UUIDField would also take a JSON integer, braces, a
    URN or 32 bare hexadecimal digits)."""

    def to_internal_value(self, data: Any) -> uuid.UUID:
        try:
            return uuid_parse(data)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


@extend_schema_field({"type": "string", "format": "date-time", "example": "2026-04-17T09:15:00Z"})
class InstantField(serializers.Field):
    """An instant in strict ISO 8601, as an aware UTC datetime (``instant_parse``); with ``allow_date`` a date
    alone means its UTC midnight (query ranges). Whether it may be stored is the service's to say
    (``stored_instant_problem``)."""

    def __init__(self, *, allow_date: bool = False, **kwargs: Any) -> None:
        self.allow_date = allow_date
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> datetime:
        try:
            return instant_parse(data, allow_date=self.allow_date)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value: datetime) -> str:
        text = value.astimezone(UTC).isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text


class StrictInputSerializer(serializers.Serializer):
    """A request body: a JSON object whose every field is known (a misspelt optional field would otherwise be
    ignored silently: ``expires_at`` for ``expires_in`` keeps the default expiry), each named in the 400."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({str(name): ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class EchoTolerantInputSerializer(serializers.Serializer):
    """A request body whose unknown fields are each named in the 400 beside the fields' own errors, except
    ``echoed_fields``: fields of the resource's representation a client may send back unchanged (ignored)."""

    echoed_fields: frozenset[str] = frozenset()

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        unknown = sorted(set(data) - set(self.fields) - self.echoed_fields) if isinstance(data, dict) else []
        errors = {str(name): ["Unknown field."] for name in unknown}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not isinstance(exc.detail, dict):
                raise
            raise serializers.ValidationError(exc.detail | errors) from None
        if errors:
            raise serializers.ValidationError(errors)
        return value


class URLField(TextField):
    """An absolute http(s) URL under the text rule (``TextField``) and Django's URL validator."""

    default_error_messages = {"invalid": "Enter a valid URL."}

    def __init__(self, *, max_length: int = 2000, **kwargs: Any) -> None:
        super().__init__(max_length=max_length, blank=False, **kwargs)
        from django.core.validators import URLValidator

        self.validators.append(URLValidator(schemes=["http", "https"], message=self.error_messages["invalid"]))
