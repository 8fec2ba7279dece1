"""The routing table: which handler processes an event of a provider and type. An event whose (provider, type) is
not here is stored ``ignored``. A handler takes the locked ``WebhookEvent`` and returns ``payments.handled.Handled``
(or raises ``EventNotApplicable`` / ``EventRetryable``)."""

from __future__ import annotations

from collections.abc import Callable

from payments.handled import Handled
from payments.models import WebhookEvent, WebhookProvider
from payments.webhooks import creem_handlers, stripe_handlers

Handler = Callable[[WebhookEvent], Handled]

ROUTES: dict[tuple[str, str], Handler] = {
    **{(WebhookProvider.STRIPE, event_type): handler for event_type, handler in stripe_handlers.HANDLERS.items()},
    **{(WebhookProvider.CREEM, event_type): handler for event_type, handler in creem_handlers.HANDLERS.items()},
}


def handler_for(provider: str, event_type: str) -> Handler | None:
    return ROUTES.get((provider, event_type))
