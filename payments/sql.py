"""The raw SQL of the payments app, and why it is not the ORM's.

- ``webhook_event_insert``: ``INSERT ... ON CONFLICT DO NOTHING RETURNING id`` on the provider's event id, the
  first statement of every webhook delivery (``payments.webhooks.events``). The ORM's ``bulk_create(...,
  ignore_conflicts=True)`` does not return the id of the row it inserted, and ``get_or_create`` takes a savepoint
  and two more round trips; this is one prepared statement."""

from __future__ import annotations

import json
from typing import Any

from billing_service.db import server_bound_cursor
from payments.models import WebhookEvent, WebhookStatus
from payments.providers.lookups import EventLookups

_INSERT_EVENT = f"""
INSERT INTO {WebhookEvent._meta.db_table}
       (provider, event_id, type, payload, status, attempts, last_error, object_id, payment_intent_id, invoice_id,
        order_ref, received_at, updated_at)
VALUES (%(provider)s, %(event_id)s, %(type)s, %(payload)s::jsonb, '{WebhookStatus.RECEIVED}', 0, '', %(object_id)s,
        %(payment_intent_id)s, %(invoice_id)s, %(order_ref)s, now(), now())
ON CONFLICT (provider, event_id) DO NOTHING
RETURNING id
"""


def webhook_event_insert(*, provider: str, event: dict[str, Any], lookups: EventLookups) -> int | None:
    """Stores a verified event as ``received``; returns its row id, or None when its id is stored already (the
    new row stays locked by this transaction until it ends)."""
    with server_bound_cursor() as cursor:
        cursor.execute(_INSERT_EVENT, {
            "provider": provider, "event_id": event["id"], "type": event["type"], "payload": json.dumps(event),
            "object_id": lookups.object_id, "payment_intent_id": lookups.payment_intent_id,
            "invoice_id": lookups.invoice_id, "order_ref": lookups.order_ref,
        }, prepare=True)
        row = cursor.fetchone()
    return row[0] if row else None
