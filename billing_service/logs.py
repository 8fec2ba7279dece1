"""Structured logs: one JSON object per line, each carrying the id of the request (or task) it belongs to.

- ``RequestIdMiddleware`` takes the request id from ``X-Request-ID`` when it is a short, safe token (at most 64 of
  ``A-Z a-z 0-9 . _ : -``), else makes one (a uuid4's hex), keeps it in a context variable for the request's
  duration and echoes it in the response's ``X-Request-ID``. (Unrelated to a usage event's or a hold's
  ``request_id``, which names one AI call of an account: README, "Idempotency keys and request ids".)
- ``billing_service.celery`` carries it into the tasks a request sends (a task header) and restores it in the worker;
  a task sent by no request (the beat's) runs under a fresh one, so what it logs and sends still correlates.
- ``RequestIdFilter`` (on the console handler) stamps every record with it; ``JsonFormatter`` writes ``time``,
  ``level``, ``logger``, ``message``, ``request_id``, the task when in one, ``exception`` when there is one, and the
  record's extras (``logger.info(..., extra={"account_id": ..., "platform_id": ..., "event_id": ...})``). An extra
  whose name looks like a secret (token, secret, password, authorization, cookie, signature, api key, card, cvc) is written
  ``"[redacted]"``, at any depth; objects other than plain values (a request, say) are left out, so no header or
  body reaches a log through them. ``LOG_FORMAT=text`` gives one readable line instead (``make run``).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from django.core.signals import request_finished
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse

HEADER = "X-Request-ID"
_META_KEY = "HTTP_X_REQUEST_ID"
_SAFE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# What a log line carries besides its message: set per request (the middleware) or per task (billing_service.celery).
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
task_var: ContextVar[tuple[str, str] | None] = ContextVar("task", default=None)  # (name, id)


def request_id_of(value: str | None) -> str:
    """``value`` when it is a safe request id, else a new one."""
    if value and _SAFE.fullmatch(value):
        return value
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return request_id_var.get()


class RequestIdMiddleware:
    """First in ``MIDDLEWARE``: every later middleware, view and log line of the request sees the id."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_of(request.META.get(_META_KEY))
        request.request_id = request_id  # type: ignore[attr-defined]
        # Kept until the response is closed (``request_finished``), not only while the middleware runs: Django logs
        # a 4xx or 5xx answer (``django.request``) after every middleware has returned.
        request_id_var.set(request_id)
        response = self.get_response(request)
        response[HEADER] = request_id
        return response


@receiver(request_finished, dispatch_uid="billing_service.logs.request_id_clear")
def _request_id_clear(**_: Any) -> None:
    request_id_var.set(None)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (None outside a request or task) and ``task`` to every record a handler writes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        if not hasattr(record, "task"):
            record.task = task_var.get()
        return True


# The attributes every LogRecord has: anything else on a record came from ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "request_id", "task", "taskName",
}
_SECRET_NAME = re.compile(r"secret|token|passw|authoriz|cookie|signature|api_?key|card|cvc|cvv", re.I)
REDACTED = "[redacted]"
_SCALARS = (str, int, float, bool, type(None))
_AS_TEXT = (Decimal, uuid.UUID, datetime, date)


def _clean(value: Any, depth: int = 0) -> Any:
    """A JSON-writable copy of an extra: plain values kept, secret-named keys redacted, other objects dropped."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, _AS_TEXT):
        return value.isoformat() if isinstance(value, (datetime, date)) else str(value)
    if depth < 4 and isinstance(value, dict):
        return {str(k): REDACTED if _SECRET_NAME.search(str(k)) else _clean(v, depth + 1)
                for k, v in value.items() if _keep(v)}
    if depth < 4 and isinstance(value, (list, tuple)):
        return [_clean(v, depth + 1) for v in value if _keep(v)]
    return None


def _keep(value: Any) -> bool:
    return isinstance(value, (*_SCALARS, *_AS_TEXT, dict, list, tuple))


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``json.dumps`` escapes newlines: a traceback stays on its line)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        task = getattr(record, "task", None) or task_var.get()
        if task:
            line["task"], line["task_id"] = task
        for key, value in vars(record).items():
            if key in _STANDARD or key.startswith("_") or key in line:
                continue
            if _SECRET_NAME.search(key):
                line[key] = REDACTED
            elif _keep(value):
                line[key] = _clean(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=True, default=str)


class TextFormatter(logging.Formatter):
    """``LOG_FORMAT=text``: ``time level logger [request id] message``, then the extras as ``key=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get() or "-"
        text = super().format(record)
        extras = [f"{key}={REDACTED if _SECRET_NAME.search(key) else _clean(value)}"
                  for key, value in vars(record).items()
                  if key not in _STANDARD and not key.startswith("_") and isinstance(value, (*_SCALARS, *_AS_TEXT))]
        if not extras:
            return text
        head, newline, rest = text.partition("\n")
        return f"{head} {' '.join(extras)}{newline}{rest}"
