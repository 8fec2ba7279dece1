"""The root of every domain error. Each carries its HTTP status and a stable machine-readable code."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status_code: int = 400
    code: str = "error"
    default_message: str = "The request could not be completed."

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None) -> None:
        self.message = message or self.default_message
        self.details = details or {}
        super().__init__(self.message)

    def headers(self) -> dict[str, str]:
        """HTTP headers the answer carries (``Retry-After`` of a budget exceeded)."""
        return {}


class NotFound(DomainError):
    status_code = 404
    code = "not_found"
    default_message = "Not found."


class PermissionDenied(DomainError):
    status_code = 403
    code = "permission_denied"
    default_message = "You do not have permission to perform this action."


class Conflict(DomainError):
    status_code = 409
    code = "conflict"
    default_message = "The request conflicts with the current state."


class InvalidInput(DomainError):
    status_code = 400
    code = "invalid"
    default_message = "Invalid input."
