"""What the plan and subscription services share."""

from __future__ import annotations

import uuid
from typing import Any

from billing_service.errors import InvalidInput
from billing_service.inputs import uuid_or_none


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # "leave this field as it is" in plan_update and subscription_set_status


def as_uuid(value: object) -> uuid.UUID | None:
    """``value`` as a UUID, or None when it cannot be one (an id that names nothing)."""
    if isinstance(value, uuid.UUID):
        return value
    return uuid_or_none(value)


def invalid(problems: dict[str, list[str]]) -> InvalidInput:
    return InvalidInput(f"Invalid input: {', '.join(problems)}.", details=problems)


