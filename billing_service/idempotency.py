"""The ``Idempotency-Key`` request header."""

from __future__ import annotations

import re

from rest_framework.request import Request

from billing_service.errors import InvalidInput
from credits.ledger import is_reserved_key

HEADER = "Idempotency-Key"
_VALID = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces, at most 255 characters


def idempotency_key_from(request: Request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not _VALID.match(key):
        raise InvalidInput(
            "Invalid input: Idempotency-Key.",
            details={HEADER: ["Must be 1-255 printable ASCII characters without spaces."]},
        )
    if is_reserved_key(key):
        raise InvalidInput(
            "Invalid input: Idempotency-Key.",
            details={HEADER: ["Keys starting with 'usage:' or 'order:' are reserved for the service's own rows."]},
        )
    return key
