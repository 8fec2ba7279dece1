"""How a reconciliation fixes what a lost webhook left undone: the provider's object, as the provider has it now,
goes through the webhook's own path (``payments.webhooks.events.webhook_event_receive``) as an event of the type
that would have carried it. So the fix is the webhook's rule, with its locks and checks, and posts its ledger row
under the rule's own key (``order:<id>``, ``refund:<charge>:<refunded>``, ``recharge:<id>``,
``period:<subscription>:<start>``): a real delivery arriving later, or a fix running twice, changes nothing more.

The event is stored like any other, under an id of the reconciliation's own, derived from the provider's object
(``reconcile:<event type>:<object id>[:<amount>]``): running ``--fix`` again is a redelivery of a done event. That
row is the audit note: its id says "reconcile", its payload's ``reconciliation`` says which command and which
drift, its status and ``last_error`` what the handler did, and it points at the order it concerned."""

from __future__ import annotations

import time
from typing import Any

from payments.models import WebhookEvent, WebhookStatus
from payments.webhooks.events import webhook_event_receive

EVENT_PREFIX = "reconcile:"


def replay(*, provider: str, event_type: str, obj: dict[str, Any], key: str, drift: str,
           created: int | None = None) -> tuple[bool, str]:
    """Processes ``obj`` as a ``event_type`` event of ``provider`` (id ``reconcile:<key>``); returns whether the
    handler processed it and the stored event's note."""
    event = {
        "id": f"{EVENT_PREFIX}{key}",
        "object": "event",
        "type": event_type,
        "created": created if created is not None else int(time.time()),
        "data": {"object": obj},
        "reconciliation": {"command": f"manage.py reconcile {provider} --fix", "drift": drift},
    }
    outcome = webhook_event_receive(provider=provider, event=event)
    stored = WebhookEvent.objects.filter(provider=provider, event_id=event["id"]).values_list(
        "status", "last_error").first()
    status, note = stored if stored is not None else (outcome.status, "")
    done = status == WebhookStatus.PROCESSED
    return done, f"event {event['id']}: {status}" + (f": {note}" if note else "")
