"""Provider events: stored once, processed once (dj-stripe's pattern), whatever the provider and the event type.

``webhook_event_receive`` takes a verified delivery through one transaction: the event is inserted by its
provider's event id (``INSERT ... ON CONFLICT DO NOTHING``, its lookup columns read out of the payload by the
provider's reader), which also locks it: a concurrent delivery of the same id waits for this transaction, then finds
the event done. The handler the routing table (``payments.webhooks.routes``) names for its (provider, type)
processes it, and the event row records the outcome. A redelivery of an event already done is answered from the
stored row (nothing written). Outcomes:
- ``processed`` / ``ignored`` / ``parked``: 200; a later delivery is a 200 that changes nothing.
- a permanent disagreement with the order (``EventNotApplicable``: amount, currency, ids): nothing of the handler's
  work is kept, the event is stored ``failed`` and the order flagged ``needs_review`` with the reason, and the
  answer is still 200: a redelivery would disagree again; an operator looks at the flagged order.
- anything else (``EventRetryable``: the order is not known here yet; the database refused): nothing is kept, the
  event is stored ``failed`` with the error in a transaction of its own, and the answer is a 500 so the provider
  delivers it again; the next delivery (or ``payments.tasks.webhook_events_reprocess``) processes it afresh.
Crediting is keyed on the order (ledger idempotency key ``order:<id>``), so even a race past the event lock (two
different events of one order) writes one ``add`` row.

An event is stored with its outcome, by the transaction that processed it, or (refused, failed) by a transaction
of its own: one commit per delivery, not two. A delivery that dies before either (a killed worker) was never
answered, so the provider delivers it again (Stripe retries for three days); what a failure leaves stored,
``payments.tasks.webhook_events_reprocess`` takes up again."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from billing_service import metrics
from payments import locks, orders, sql
from payments.errors import EventNotApplicable, WebhookProcessingFailed
from payments.handled import Handled, ignored
from payments.models import WEBHOOK_DONE_STATUSES, WebhookEvent, WebhookProvider, WebhookStatus
from payments.providers import creem_events, stripe_events
from payments.providers.lookups import EventLookups
from payments.webhooks.routes import handler_for

logger = logging.getLogger(__name__)

LOOKUPS = {WebhookProvider.STRIPE: stripe_events.event_lookups, WebhookProvider.CREEM: creem_events.event_lookups}
_OUTCOME_FIELDS = ["status", "attempts", "last_error", "order", "processed_at", "updated_at"]


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    event_id: str
    status: str  # the stored event's status after this delivery
    duplicate: bool  # it had already been processed, ignored or parked: nothing changed


def webhook_event_receive(*, provider: str, event: dict[str, Any]) -> WebhookOutcome:
    """Stores then processes one verified delivery (see the module docstring for the outcomes); ``event`` has
    ``id``, ``type`` and the provider's payload."""
    lookups = LOOKUPS[provider](event)
    try:
        with transaction.atomic(durable=True):
            row = _store(provider, event, lookups)
            if row.status in WEBHOOK_DONE_STATUSES:  # a redelivery
                metrics.webhook_outcome(provider, row.type, "duplicate")
                return WebhookOutcome(event_id=row.event_id, status=row.status, duplicate=True)
            return _process(row)
    except EventNotApplicable as exc:
        return _refused(provider, event, lookups, exc)
    except Exception as exc:
        raise _failed(provider, event, lookups, exc) from exc


def webhook_event_process(*, event_pk: int) -> WebhookOutcome:
    """Processes a stored event again unless it is done (``payments.tasks.webhook_events_reprocess``, the admin's
    action). Raises ``WebhookProcessingFailed`` after recording a failure that a later run may get past."""
    stored = WebhookEvent.objects.filter(pk=event_pk).first()
    if stored is None:
        raise WebhookProcessingFailed()
    lookups = _lookups_of(stored)
    try:
        with transaction.atomic(durable=True):
            row = locks.webhook_event_lock(event_pk=event_pk)
            if row.status in WEBHOOK_DONE_STATUSES:
                return WebhookOutcome(event_id=row.event_id, status=row.status, duplicate=True)
            return _process(row)
    except EventNotApplicable as exc:
        return _refused(stored.provider, stored.payload, lookups, exc)
    except Exception as exc:
        raise _failed(stored.provider, stored.payload, lookups, exc) from exc


def _store(provider: str, event: dict[str, Any], lookups: EventLookups) -> WebhookEvent:
    """The event's row, locked: inserted now (``received``), or the one a delivery before stored."""
    pk = sql.webhook_event_insert(provider=provider, event=event, lookups=lookups)
    if pk is None:
        return locks.webhook_event_stored_lock(provider=provider, event_id=event["id"])
    return WebhookEvent(
        pk=pk, provider=provider, event_id=event["id"], type=event["type"], payload=event,
        status=WebhookStatus.RECEIVED, attempts=0, object_id=lookups.object_id,
        payment_intent_id=lookups.payment_intent_id, invoice_id=lookups.invoice_id, order_ref=lookups.order_ref,
    )


def _process(row: WebhookEvent) -> WebhookOutcome:
    handler = handler_for(row.provider, row.type)
    handled = handler(row) if handler is not None else ignored("event type not handled")
    _record(row, handled)
    return WebhookOutcome(event_id=row.event_id, status=row.status, duplicate=False)


def _record(row: WebhookEvent, handled: Handled) -> None:
    row.attempts += 1
    row.status, row.last_error, row.order_id = handled.status, handled.note, handled.order_id
    row.processed_at = row.updated_at = timezone.now()
    row.save(update_fields=_OUTCOME_FIELDS)
    metrics.webhook_outcome(row.provider, row.type, row.status)
    logger.info("webhook event %s", row.status, extra={"provider": row.provider, "event_id": row.event_id,
                                                        "event_type": row.type, "order_id": row.order_id})


def _refused(provider: str, event: dict[str, Any], lookups: EventLookups, exc: EventNotApplicable) -> WebhookOutcome:
    """A permanent disagreement: the event ``failed`` (200), its order flagged; nothing of the handler's kept."""
    logger.warning("webhook %s %s refused: %s", provider, event.get("id"), exc)
    with transaction.atomic(durable=True):
        row = _stored_lock(provider, event, lookups)
        if row.status in WEBHOOK_DONE_STATUSES:  # a concurrent delivery processed it meanwhile
            return WebhookOutcome(event_id=row.event_id, status=row.status, duplicate=True)
        if exc.order_id is not None:
            orders.order_flag(order_id=exc.order_id, reason=str(exc), amount_paid_usd=exc.amount_paid_usd)
        _record(row, Handled(WebhookStatus.FAILED, exc.order_id or row.order_id, str(exc)))
    return WebhookOutcome(event_id=row.event_id, status=row.status, duplicate=False)


def _failed(provider: str, event: dict[str, Any], lookups: EventLookups, exc: Exception) -> WebhookProcessingFailed:
    """A failure a later delivery may get past: recorded (own transaction), answered 500."""
    if isinstance(exc, WebhookProcessingFailed):
        return exc
    metrics.webhook_outcome(provider, str(event.get("type") or ""), "error")
    logger.exception("webhook event %s %s failed; the provider will deliver it again", provider, event.get("id"),
                     extra={"provider": provider, "event_id": event.get("id"), "event_type": event.get("type")})
    with transaction.atomic(durable=True):
        row = _stored_lock(provider, event, lookups)
        if row.status not in WEBHOOK_DONE_STATUSES:
            row.status, row.attempts = WebhookStatus.FAILED, row.attempts + 1
            row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            row.save(update_fields=["status", "attempts", "last_error", "updated_at"])
    return WebhookProcessingFailed()


def _stored_lock(provider: str, event: dict[str, Any], lookups: EventLookups) -> WebhookEvent:
    sql.webhook_event_insert(provider=provider, event=event, lookups=lookups)
    return locks.webhook_event_stored_lock(provider=provider, event_id=event["id"])


def _lookups_of(row: WebhookEvent) -> EventLookups:
    return EventLookups(object_id=row.object_id, payment_intent_id=row.payment_intent_id,
                        invoice_id=row.invoice_id, order_ref=row.order_ref)
