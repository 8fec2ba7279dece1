"""Page-number pagination with exact counts supplied by a selector, and keyset (cursor) pagination."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_datetime
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.utils.urls import remove_query_param, replace_query_param

from billing_service.errors import DomainError, NotFound
from billing_service.inputs import QueryIntegerField, TextField

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


class PageQuerySerializer(serializers.Serializer):
    page = QueryIntegerField(min_value=1, max_value=10_000_000, default=1, help_text="Page number (1-based).")
    page_size = QueryIntegerField(
        min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE, help_text="Rows per page (max 100)."
    )
    pagination = serializers.ChoiceField(
        choices=["page", "cursor"],
        default="page",
        help_text="`cursor` switches to keyset pagination: constant cost at any depth, no `count`; "
        "follow `next` / `previous`.",
    )
    cursor = TextField(
        required=False, max_length=200, blank=False, help_text="Opaque position from a `next` or `previous` link."
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


def paginate_newest_first(request: Request, rows: QuerySet, query: dict, serializer_class: type) -> dict:
    """Pages of ``rows`` (ordered by ``-created_at, -id``) as the query asks: page numbers with a count, or
    keyset pages over (``created_at``, ``id``) with ``pagination=cursor``."""
    size = query["page_size"]
    if query["pagination"] == "cursor" or "cursor" in query:
        direction = position = None
        if "cursor" in query:
            direction, raw = decode_cursor(query["cursor"])
            position = _created_position(raw)
        found, more = _keyset_slice(rows, direction, position, size)

        def key(row: Any) -> list[str]:
            return [row.created_at.isoformat(), str(row.id)]

        older = key(found[-1]) if found and (more or direction == "after") else None
        newer = key(found[0]) if found and (direction == "before" or (direction == "after" and more)) else None
        return cursor_response(
            request, next_position=older, previous_position=newer,
            results=serializer_class(found, many=True).data,
        )
    page = query["page"]
    offset = (page - 1) * size
    found = list(rows[offset : offset + size])
    count = rows.count() if len(found) == size or page > 1 else len(found)
    return page_response(
        request, count=count, page=page, page_size=size, results=serializer_class(found, many=True).data
    )


def _keyset_slice(
    rows: QuerySet, direction: str | None, position: tuple[datetime, uuid.UUID] | None, limit: int
) -> tuple[list[Any], bool]:
    """Up to ``limit`` rows past ``position`` ("before": older, "after": newer), newest first, and whether
    more lie beyond them."""
    if direction == "before" and position:
        at, row_id = position
        rows = rows.filter(Q(created_at__lt=at) | Q(created_at=at, id__lt=row_id))
    elif direction == "after" and position:
        at, row_id = position
        rows = rows.filter(Q(created_at__gt=at) | Q(created_at=at, id__gt=row_id)).order_by("created_at", "id")
    found = list(rows[: limit + 1])
    more = len(found) > limit
    found = found[:limit]
    if direction == "after":
        found.reverse()
    return found, more


def _created_position(raw: object) -> tuple[datetime, uuid.UUID]:
    try:
        at, row_id = raw  # type: ignore[misc]
        at, row_id = parse_datetime(at), uuid.UUID(row_id)
    except (TypeError, ValueError, AttributeError):
        raise InvalidCursor() from None
    if at is None:
        raise InvalidCursor()
    return at, row_id
