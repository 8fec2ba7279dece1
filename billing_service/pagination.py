"""Page-number pagination with exact counts supplied by a selector, and keyset (cursor) pagination."""

from __future__ import annotations

import base64
import json
from typing import Any

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.utils.urls import remove_query_param, replace_query_param

from billing_service.errors import DomainError, NotFound

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


class PageQuerySerializer(serializers.Serializer):
    page = serializers.IntegerField(min_value=1, max_value=10_000_000, default=1, help_text="Page number (1-based).")
    page_size = serializers.IntegerField(
        min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE, help_text="Rows per page (max 100)."
    )
    pagination = serializers.ChoiceField(
        choices=["page", "cursor"],
        default="page",
        help_text="`cursor` switches to keyset pagination: constant cost at any depth, no `count`; "
        "follow `next` / `previous`.",
    )
    cursor = serializers.CharField(
        required=False, max_length=200, help_text="Opaque position from a `next` or `previous` link."
    )


class InvalidCursor(DomainError):
    code = "invalid"
    default_message = "Invalid input: cursor."

    def __init__(self) -> None:
        super().__init__(details={"cursor": ["Invalid cursor."]})


def encode_cursor(direction: str, position: Any) -> str:
    raw = json.dumps({direction: position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[str, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        ((direction, position),) = data.items()
    except (ValueError, TypeError, AttributeError):
        raise InvalidCursor() from None
    if direction not in ("before", "after"):
        raise InvalidCursor()
    return direction, position


def page_response(request: Request, *, count: int, page: int, page_size: int, results: list[Any]) -> dict:
    if page > 1 and (page - 1) * page_size >= count:
        raise NotFound("Invalid page: past the last page.", details={"page": page})
    url = request.build_absolute_uri()
    has_next = page * page_size < count
    return {
        "count": count,
        "next": replace_query_param(url, "page", page + 1) if has_next else None,
        "previous": (
            None
            if page == 1
            else (remove_query_param(url, "page") if page == 2 else replace_query_param(url, "page", page - 1))
        ),
        "results": results,
    }


def cursor_response(request: Request, *, next_position: Any, previous_position: Any, results: list[Any]) -> dict:
    url = remove_query_param(request.build_absolute_uri(), "page")
    url = replace_query_param(url, "pagination", "cursor")

    def link(direction: str, position: Any) -> str | None:
        if position is None:
            return None
        return replace_query_param(url, "cursor", encode_cursor(direction, position))

    return {
        "next": link("before", next_position),
        "previous": link("after", previous_position),
        "results": results,
    }
