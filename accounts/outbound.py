"""Outbound webhooks: a platform hears of its accounts' balances, orders, recharges, subscriptions and budgets
without polling.

- **Recorded with the change.** ``event_record`` writes an ``OutboundEvent`` inside the caller's transaction (the
  ledger's own statement writes the balance alerts: ``credits.sql.alert_events``). A change that rolls back leaves
  no event; a committed one leaves its event even if the worker or the broker is down.
- **Fanned out, then delivered at least once.** ``outbound_deliver`` (the Celery task ``outbound_deliver_task``,
  sent after each commit that recorded an event and every 30 s by the beat) turns new events into one delivery per
  subscribed endpoint, then sends the deliveries that are due and head their stream: within an endpoint, one
  account's events go out in the order they happened, each waiting while an earlier one is pending. A delivery is
  leased, not locked, while its request is in flight; a worker that dies mid-send leaves it to the next one.
- **Signed like Stripe's.** ``Billing-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` with the
  endpoint's secret; ``Billing-Event-Id`` is the event's stable id (a retry carries the same one).
- **Retried.** Anything but a 2xx within ``OUTBOUND_TIMEOUT_SECONDS`` is retried after 30 s, 1 min, 2 min, ...
  (doubling, at most ``OUTBOUND_RETRY_MAX_DELAY_SECONDS``) until ``OUTBOUND_RETRY_FOR_SECONDS`` (3 days) after the
  event, then the delivery is ``failed``. Every request is an ``OutboundAttempt`` row; ``delivery_redeliver`` (the
  API and the admin's button) sends one again at once.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import requests
from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from accounts import sql
from accounts.models import Platform
from accounts.outbound_models import (
    DeliveryStatus,
    OutboundAttempt,
    OutboundDelivery,
    OutboundEvent,
    OutboundEventType,
    WebhookEndpoint,
)
from billing_service.money import format_money
from billing_service.queue import enqueue_on_commit

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Billing-Signature"
EVENT_ID_HEADER = "Billing-Event-Id"
DELIVER_TASK = "accounts.tasks.outbound_deliver_task"


# --- endpoints -------------------------------------------------------------------------------------------------


def url_problem(url: str) -> str | None:
    """Why the service must not send to ``url``, or None. Only https (http where ``OUTBOUND_ALLOW_HTTP``), and a
    host that resolves to public addresses only: a tenant's endpoint must not reach the service's own network
    (loopback, private, link-local such as cloud metadata, reserved) unless ``OUTBOUND_ALLOW_PRIVATE_HOSTS``.
    Checked when an endpoint is saved and again before every request (DNS may have changed since)."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and settings.OUTBOUND_ALLOW_HTTP):
        return "An endpoint must be an https URL."
    if not parts.hostname:
        return "An endpoint needs a host."
    if settings.OUTBOUND_ALLOW_PRIVATE_HOSTS:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)}
    except (OSError, ValueError):
        return "The endpoint's host does not resolve."
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not ip.is_global or ip.is_multicast:
            return "The endpoint's host is not a public address."
    return None



def secret_new() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


@transaction.atomic(durable=True)
def endpoint_create(
    *, platform: Platform, url: str, events: list[str], description: str = "", active: bool = True,
    actor: Any = None,
) -> WebhookEndpoint:
    """A new endpoint with a new secret (the caller shows ``endpoint.secret`` once)."""
    return WebhookEndpoint.objects.create(
        platform=platform, url=url, events=sorted(set(events)), description=description, active=active,
        secret=secret_new(), created_by=actor if actor is not None and actor.is_authenticated else None,
    )


@transaction.atomic(durable=True)
def endpoint_update(*, endpoint: WebhookEndpoint, **fields: Any) -> WebhookEndpoint:
    """Changes ``url``, ``events``, ``description`` or ``active`` (an endpoint is never deleted: deactivate it)."""
    allowed = {"url", "events", "description", "active"}
    if set(fields) - allowed:
        raise ValueError(f"an endpoint's {sorted(set(fields) - allowed)} cannot be changed")
    if "events" in fields:
        fields["events"] = sorted(set(fields["events"]))
    for name, value in fields.items():
        setattr(endpoint, name, value)
    endpoint.save(update_fields=[*fields, "updated_at"])
    return endpoint


@transaction.atomic(durable=True)
def endpoint_secret_rotate(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """A new signing secret; requests are signed with it from now on (the caller shows it once)."""
    endpoint.secret = secret_new()
    endpoint.save(update_fields=["secret", "updated_at"])
    return endpoint


# --- events ----------------------------------------------------------------------------------------------------


def event_record(
    *, platform_id: int, type: str, data: dict[str, Any], account_id: Any = None, dedupe_key: str | None = None,
) -> bool:
    """Records an event of ``type`` in the caller's transaction (it commits or rolls back with the change), if an
    active endpoint of the platform listens to it; ``dedupe_key``: recorded once per key. Whether it was recorded.
    Amounts in ``data`` may be Decimals: they are sent as the API writes them (strings)."""
    if type not in OutboundEventType.values:
        raise ValueError(f"unknown outbound event type {type!r}")
    if not WebhookEndpoint.objects.filter(platform_id=platform_id, active=True, events__contains=[type]).exists():
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO accounts_outboundevent (platform_id, account_id, type, data, dedupe_key, created_at) "
            "VALUES (%s, %s, %s, %s::jsonb, %s, clock_timestamp()) ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING RETURNING id",
            [platform_id, account_id, type, json.dumps(_wire(data)), dedupe_key],
        )
        recorded = cursor.fetchone() is not None
    if recorded:
        deliver_on_commit()
    return recorded


def deliver_on_commit() -> None:
    """Has the delivery task sent once the current transaction commits (at once outside one). With a broker, the
    sends of a process are coalesced off the request path (``_Kicker``: one task covers every event recorded
    meanwhile); without one (tasks run in-process) the task runs after the commit. A broker that is down leaves the
    event to the beat's next run."""
    if current_app.conf.task_always_eager:
        enqueue_on_commit(DELIVER_TASK)
    else:
        transaction.on_commit(_kicker.kick, robust=True)


class _Kicker:
    """Sends the delivery task from a thread of this process, at most once per ``KICK_SECONDS``: a debit that
    records an alert only sets a flag (a broker round trip per event would cost the usage path a third of its
    throughput), and a task sent after the flag was set always sees the event (its transaction has committed)."""

    KICK_SECONDS = 0.05

    def __init__(self) -> None:
        self._wanted = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def kick(self) -> None:
        self._wanted.set()
        if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():  # none yet, or forked
            with self._lock:
                if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                    self._pid = os.getpid()
                    self._thread = threading.Thread(target=self._run, name="outbound-kicker", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            try:
                current_app.tasks[DELIVER_TASK].delay()
            except Exception:  # the beat's next run delivers what this send would have
                logger.warning("could not send %s; the beat will", DELIVER_TASK, exc_info=True)
            time.sleep(self.KICK_SECONDS)


_kicker = _Kicker()


def _wire(value: Any) -> Any:
    """``value`` as it is sent: Decimals as the API writes amounts ("42.50"), datetimes in ISO 8601."""
    if isinstance(value, Decimal):
        return format_money(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {str(k): _wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_wire(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def event_payload(event: OutboundEvent, platform_key: str) -> dict[str, Any]:
    """The JSON body of an event's delivery (every delivery and retry of it sends the same one)."""
    data = _wire(event.data)
    if "user_id" in data and "username" not in data and data["user_id"] is not None:
        data["username"] = (
            get_user_model().objects.filter(pk=data["user_id"]).values_list("username", flat=True).first()
        )
    if event.account_id is not None:
        data.setdefault("account_id", str(event.account_id))
    return {
        "id": f"evt_{event.event_id.hex}",
        "type": event.type,
        "created": int(event.created_at.timestamp()),
        "created_at": _wire(event.created_at),
        "platform": platform_key,
        "data": data,
    }


# --- signing -----------------------------------------------------------------------------------------------------


def signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """The ``Billing-Signature`` header of a request: ``t=<timestamp>,v1=<HMAC-SHA256 of "<timestamp>.<body>">``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def signature_verify(*, secret: str, header: str, body: bytes, tolerance: int = 300, now: float | None = None) -> bool:
    """What a receiver does (the README shows it standalone): the header's timestamp is recent and one of its
    ``v1`` signatures is the HMAC of ``"<timestamp>.<body>"``."""
    try:
        parts = [item.split("=", 1) for item in header.split(",")]
        timestamp = int(next(value for key, value in parts if key == "t"))
    except (ValueError, StopIteration):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return any(key == "v1" and hmac.compare_digest(value, expected) for key, value in parts)


# --- delivery ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryRun:
    fanned_out: int
    delivered: int
    retrying: int
    failed: int
    next_due_in: float | None  # seconds until the earliest pending delivery is due (None: none pending)


def retry_delay(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: 30 s, 1 min, 2 min, ... doubling, capped."""
    base = settings.OUTBOUND_RETRY_BASE_SECONDS
    return timedelta(seconds=min(base * 2 ** (attempts - 1), settings.OUTBOUND_RETRY_MAX_DELAY_SECONDS))


def outbound_deliver(*, now: datetime | None = None, budget_seconds: float = 25.0) -> DeliveryRun:
    """Fans out new events, then sends what is due until nothing is or ``budget_seconds`` have passed."""
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(sql.OUTBOUND_FAN_OUT, {"limit": 1000, "now": now or timezone.now()})
        fanned_out = cursor.rowcount
    delivered = retrying = failed = 0
    while time.monotonic() - started < budget_seconds:
        at = now or timezone.now()
        with connection.cursor() as cursor:
            # One at a time: its lease (twice the timeout) covers its one request, never a queue of others.
            cursor.execute(sql.OUTBOUND_CLAIM, {
                "now": at, "lease_until": at + timedelta(seconds=2 * settings.OUTBOUND_TIMEOUT_SECONDS + 30),
                "limit": 1,
            })
            claimed = [row[0] for row in sorted(cursor.fetchall(), key=lambda row: row[1])]
        if not claimed:
            break
        deliveries = OutboundDelivery.objects.select_related("event", "endpoint", "endpoint__platform").in_bulk(claimed)
        for delivery_id in claimed:
            outcome = _attempt(deliveries[delivery_id], now=now)
            delivered += outcome == DeliveryStatus.DELIVERED
            failed += outcome == DeliveryStatus.FAILED
            retrying += outcome == DeliveryStatus.PENDING
    with connection.cursor() as cursor:  # the soonest a delivery heading its stream is due
        cursor.execute(sql.OUTBOUND_NEXT_DUE)
        due = cursor.fetchone()[0]
    next_due_in = max((due - timezone.now()).total_seconds(), 0.0) if due is not None else None
    return DeliveryRun(fanned_out, delivered, retrying, failed, next_due_in)


def delivery_redeliver(*, delivery: OutboundDelivery) -> OutboundDelivery:
    """Sends a delivery again at once, whatever its status (the API's and the admin's redelivery): the attempt is
    recorded like any other; a 2xx makes it ``delivered``, anything else leaves a pending one to its retries and a
    failed one failed."""
    delivery = OutboundDelivery.objects.select_related("event", "endpoint", "endpoint__platform").get(pk=delivery.pk)
    _attempt(delivery, now=None, manual=True)
    delivery.refresh_from_db()
    return delivery


def _attempt(delivery: OutboundDelivery, *, now: datetime | None, manual: bool = False) -> str:
    """One request of ``delivery``, recorded; its status after it."""
    endpoint, event = delivery.endpoint, delivery.event
    body = json.dumps(event_payload(event, endpoint.platform.platform_key), separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "billing-service-webhooks/1",
        EVENT_ID_HEADER: f"evt_{event.event_id.hex}",
        SIGNATURE_HEADER: signature(secret=endpoint.secret, timestamp=timestamp, body=body),
    }
    began = time.monotonic()
    status_code, error, response_body = None, "", ""
    refused = url_problem(endpoint.url)
    try:
        if refused:
            error = f"not sent: {refused}"
        else:
            response = requests.post(endpoint.url, data=body, headers=headers,
                                     timeout=settings.OUTBOUND_TIMEOUT_SECONDS, allow_redirects=False)
            status_code, response_body = response.status_code, response.text[:1000]
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    duration_ms = int((time.monotonic() - began) * 1000)
    at = now or timezone.now()
    with transaction.atomic():
        OutboundAttempt.objects.create(
            delivery=delivery, attempted_at=at, status_code=status_code, error=error,
            response_body=response_body, duration_ms=duration_ms, manual=manual,
        )
        attempts = delivery.attempts + 1
        fields: dict[str, Any] = {"attempts": attempts, "last_status_code": status_code, "last_error": error}
        if not error:
            fields |= {"status": DeliveryStatus.DELIVERED, "delivered_at": at}
        elif manual and delivery.status != DeliveryStatus.PENDING:
            pass  # a redelivery of a delivered or failed one that failed again: it stays as it was
        else:
            retry_at = at + retry_delay(attempts)
            if retry_at > event.created_at + timedelta(seconds=settings.OUTBOUND_RETRY_FOR_SECONDS):
                fields["status"] = DeliveryStatus.FAILED
            else:
                fields["next_attempt_at"] = retry_at
        # Only while it is still ours: the lease this worker took (a redelivery takes it whatever the lease).
        mine = OutboundDelivery.objects.filter(pk=delivery.pk, attempts=delivery.attempts)
        if not mine.update(**fields):
            logger.info("delivery %s changed while it was sent; its attempt is recorded", delivery.pk)
            return OutboundDelivery.objects.values_list("status", flat=True).get(pk=delivery.pk)
    if error:
        logger.warning("outbound %s of event %s to %s: %s", event.type, event.event_id, endpoint.url, error)
    return fields.get("status", delivery.status if manual else DeliveryStatus.PENDING)
