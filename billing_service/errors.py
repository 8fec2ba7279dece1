"""The root of every domain error. Each carries its HTTP status and a stable machine-readable code."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


class DomainError(Exception):
    status_code: int = 400
    code: str = "error"
    default_message: str = "The request could not be completed."

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None) -> None:
        self.message = message or self.default_message
        self.details = details or {}
        # Work that must outlive the refused request's rollback (recording that the refusal happened: a seat's
        # budget.exceeded event), run by ``follow_up`` once its transaction has ended.
        self.followups: list[Callable[[], None]] = []
        super().__init__(self.message)

    def follow_up(self) -> None:
        """Runs the refusal's follow-ups once (the API's error handler, a batch after its transaction); one that
        fails is logged: the refusal is still the answer."""
        followups, self.followups = self.followups, []
        for followup in followups:
            try:
                followup()
            except Exception:
                logger.exception("follow-up of %s failed", self.code)

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
