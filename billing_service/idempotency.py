"""The ``Idempotency-Key`` request header, and the namespace of keys clients choose.

A client's key is stored as ``client:<key>`` (``client_key``), while every key the service derives starts with
a kind of its own (``usage:``, ``order:``, ``period:``...; ``credits.ledger``): no key a client sends can ever
take a key the service will need, whatever it looks like."""

from __future__ import annotations

import hashlib
import re

from rest_framework.request import Request

from billing_service.errors import InvalidInput

HEADER = "Idempotency-Key"
_VALID = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces, at most 255 characters
CLIENT_KEY_PREFIX = "client:"
_CLIENT_KEY_HASHED_PREFIX = "client-sha256:"
_KEY_MAX = 255  # the ledger's idempotency_key column


def idempotency_key_from(request: Request) -> str | None:
    """The header's key as the client sent it (validated), or None."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not _VALID.match(key):
        raise InvalidInput(
            "Invalid input: Idempotency-Key.",
            details={HEADER: ["Must be 1-255 printable ASCII characters without spaces."]},
        )
    return key


def client_key(key: str) -> str:
    """The stored form of a client's key: ``client:<key>``, or for a key too long for that, ``client-sha256:``
    and its SHA-256."""
    stored = f"{CLIENT_KEY_PREFIX}{key}"
    if len(stored) <= _KEY_MAX:
        return stored
    return f"{_CLIENT_KEY_HASHED_PREFIX}{hashlib.sha256(key.encode()).hexdigest()}"


def is_client_key(stored: str) -> bool:
    return stored.startswith((CLIENT_KEY_PREFIX, _CLIENT_KEY_HASHED_PREFIX))
