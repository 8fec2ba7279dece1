"""The two ways a listing pages, as DRF pagination classes that the viewsets declare (``pagination_class``):

- ``CountedPagination``: page numbers (``page``, ``page_size``), or any ``offset`` with a ``limit``, with an
  exact ``count``;
- ``CursorPagination``: keyset pages (``cursor``), constant cost at any depth, no ``count``;
- ``PageOrCursorPagination``: the listings that offer both, chosen by ``?pagination=cursor`` (or a
  ``cursor``).

They page a QuerySet ordered newest first (``-created_at, -id``): a page is a slice and its count a
``COUNT(*)``, taken only when the page does not tell it; a cursor is a (``created_at``, ``id``) position. A
listing whose rows can be counted and paged for less (an account's ledger: counters and sequence ranges) hands
them a ``PagedRows`` instead, and the pagination classes ask it."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_datetime
from rest_framework import serializers
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from billing_service.errors import DomainError, NotFound
from billing_service.inputs import QueryIntegerField, TextField
from billing_service.validation import validated

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


MAX_OFFSET = 1_000_000_000


class PageNumberQuerySerializer(serializers.Serializer):
    page = QueryIntegerField(min_value=1, max_value=10_000_000, default=1, help_text="Page number (1-based).")
    page_size = QueryIntegerField(
        min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE, help_text="Rows per page (max 100)."
    )
    offset = QueryIntegerField(
        min_value=0, max_value=MAX_OFFSET, required=False,
        help_text="Instead of `page`: rows to skip, any number (0-based). Past the end, the page is empty.",
    )
    limit = QueryIntegerField(
        min_value=1, max_value=MAX_PAGE_SIZE, required=False,
        help_text="With `offset`: rows per page (default 20, max 100).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = set(self.initial_data)
        if given & {"offset", "limit"} and given & {"page", "page_size"}:
            raise serializers.ValidationError(
                {"offset": ["Page with page and page_size, or with offset and limit: not both."]}
            )
        return attrs


def offset_of(query: dict[str, Any]) -> tuple[int, int, bool]:
    """(offset, limit, by_offset) of a validated ``PageNumberQuerySerializer`` query."""
    if "offset" in query or "limit" in query:
        return query.get("offset", 0), query.get("limit", DEFAULT_PAGE_SIZE), True
    return (query["page"] - 1) * query["page_size"], query["page_size"], False


class PageQuerySerializer(PageNumberQuerySerializer):
    pagination = serializers.ChoiceField(
        choices=["page", "cursor"],
        default="page",
        help_text="`cursor` switches to keyset pagination: constant cost at any depth, no `count`; "
        "follow `next` / `previous`.",
    )
    cursor = TextField(
        required=False, max_length=200, blank=False,
        help_text="Opaque position from a `next` or `previous` link.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if (attrs["pagination"] == "cursor" or "cursor" in attrs) and set(self.initial_data) & {"offset", "limit"}:
            raise serializers.ValidationError({"offset": ["Cursor pages take page_size, not offset or limit."]})
        return attrs


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


@runtime_checkable
class PagedRows(Protocol):
    """Rows that page themselves (instead of a QuerySet's slice, ``COUNT(*)`` and keyset filter)."""

    def slice(self, *, offset: int, limit: int) -> tuple[int, list[Any]]:
        """(count, rows): the count of all rows, and up to ``limit`` rows after the first ``offset``."""

    def keyset(self, *, direction: str | None, position: Any, limit: int) -> tuple[list[Any], bool]:
        """Up to ``limit`` rows, newest first, past ``position`` ("before": older, "after": newer; ``None``:
        from the newest), and whether more lie beyond them. ``position`` is as a cursor carries it: invalid,
        it raises ``InvalidCursor``."""

    def position_of(self, row: Any) -> Any:
        """A row's position, as a cursor carries it (JSON)."""


class _Paginator(BasePagination):
    """What the pagination classes share: the query they take, validated (``query_serializer``), and pages of
    the view's rows turned into a response body by ``paginate_query``."""

    query_serializer: type[serializers.Serializer] = PageNumberQuerySerializer

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any]:
        return self.paginate_query(queryset, request, validated(self.query_serializer, request.query_params))

    def paginate_query(self, rows: Any, request: Request, query: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    def get_paginated_response(self, data: Any) -> Response:
        return Response(self.get_paginated_body(data))

    def get_paginated_body(self, data: Any) -> dict[str, Any]:
        raise NotImplementedError

    def get_schema_operation_parameters(self, view: Any) -> list:
        return []  # documented from ``query_serializer`` (accounts.api.views.TenantAutoSchema)


class CountedPagination(_Paginator):
    """Pages with an exact ``count``: ``{count, next, previous, results}``. A page is named by its number
    (``page``, ``page_size``: a page past the last is a 404) or by any ``offset`` and a ``limit`` (past the
    end: an empty page); the ``next`` and ``previous`` links name pages the same way."""

    def paginate_query(self, rows: Any, request: Request, query: dict[str, Any]) -> list[Any]:
        self.request = request
        self.offset, self.limit, self.by_offset = offset_of(query)
        if isinstance(rows, PagedRows):
            self.count, found = rows.slice(offset=self.offset, limit=self.limit)
        else:
            found = list(rows[self.offset : self.offset + self.limit])
            self.count = rows.count() if len(found) == self.limit or self.offset else len(found)
        if not self.by_offset and self.offset and self.offset >= self.count:
            raise NotFound("Invalid page: past the last page.", details={"page": query["page"]})
        return found

    def get_paginated_body(self, data: Any) -> dict[str, Any]:
        url, offset, limit = self.request.build_absolute_uri(), self.offset, self.limit
        has_next = offset + limit < self.count
        if self.by_offset:
            next_url = replace_query_param(url, "offset", offset + limit) if has_next else None
            # Past the end, the previous page is the last one.
            before = min(offset - limit, max(self.count - 1, 0) // limit * limit) if offset else 0
            previous = replace_query_param(url, "offset", max(before, 0)) if offset else None
        else:
            page = offset // limit + 1
            next_url = replace_query_param(url, "page", page + 1) if has_next else None
            if page == 1:
                previous = None
            elif page == 2:
                previous = remove_query_param(url, "page")
            else:
                previous = replace_query_param(url, "page", page - 1)
        return {"count": self.count, "next": next_url, "previous": previous, "results": data}


class CursorPagination(_Paginator):
    """Keyset pages: ``{next, previous, results}``, ``next`` towards older rows."""

    query_serializer = PageQuerySerializer

    def paginate_query(self, rows: Any, request: Request, query: dict[str, Any]) -> list[Any]:
        self.request = request
        direction = position = None
        if "cursor" in query:
            direction, position = decode_cursor(query["cursor"])
        source = rows if isinstance(rows, PagedRows) else QuerySetRows(rows)
        found, more = source.keyset(direction=direction, position=position, limit=query["page_size"])
        newer_beyond = direction == "before" or (direction == "after" and more)
        self.older = source.position_of(found[-1]) if found and (more or direction == "after") else None
        self.newer = source.position_of(found[0]) if found and newer_beyond else None
        return found

    def get_paginated_body(self, data: Any) -> dict[str, Any]:
        url = remove_query_param(self.request.build_absolute_uri(), "page")
        url = replace_query_param(url, "pagination", "cursor")

        def link(direction: str, position: Any) -> str | None:
            if position is None:
                return None
            return replace_query_param(url, "cursor", encode_cursor(direction, position))

        return {"next": link("before", self.older), "previous": link("after", self.newer), "results": data}


class PageOrCursorPagination(_Paginator):
    """Counted pages, or keyset pages with ``?pagination=cursor`` or a ``cursor``."""

    query_serializer = PageQuerySerializer

    def paginate_query(self, rows: Any, request: Request, query: dict[str, Any]) -> list[Any]:
        cursor = query["pagination"] == "cursor" or "cursor" in query
        self.delegate = CursorPagination() if cursor else CountedPagination()
        return self.delegate.paginate_query(rows, request, query)

    def get_paginated_body(self, data: Any) -> dict[str, Any]:
        return self.delegate.get_paginated_body(data)


class QuerySetRows:
    """Keyset pages of a QuerySet ordered ``-created_at, -id``, positioned by (``created_at``, ``id``)."""

    def __init__(self, rows: QuerySet) -> None:
        self.rows = rows

    def keyset(self, *, direction: str | None, position: Any, limit: int) -> tuple[list[Any], bool]:
        rows = self.rows
        if direction is not None:
            at, row_id = _created_position(position)
            if direction == "before":
                rows = rows.filter(Q(created_at__lt=at) | Q(created_at=at, id__lt=row_id))
            else:
                rows = rows.filter(Q(created_at__gt=at) | Q(created_at=at, id__gt=row_id))
                rows = rows.order_by("created_at", "id")
        found = list(rows[: limit + 1])
        more = len(found) > limit
        found = found[:limit]
        if direction == "after":
            found.reverse()
        return found, more

    def position_of(self, row: Any) -> list[str]:
        return [row.created_at.isoformat(), str(row.id)]


def _created_position(raw: object) -> tuple[datetime, uuid.UUID]:
    try:
        at, row_id = raw  # type: ignore[misc]
        at, row_id = parse_datetime(at), uuid.UUID(row_id)
    except (TypeError, ValueError, AttributeError):
        raise InvalidCursor() from None
    if at is None:
        raise InvalidCursor()
    return at, row_id
