"""The routing table: which handler processes an event of a provider and type. An event whose (provider, type) is
not here is stored ``ignored``. A handler takes the locked ``WebhookEvent`` and returns ``payments.handled.Handled``
(or raises ``EventNotApplicable`` / ``EventRetryable``).

Stripe events about seats (their object's ``metadata.kind`` is "seats": a seats checkout session, the subscription
it starts, that subscription's invoices; ``stripe_events.metadata_kind``) go to ``seat_handlers``; every other
event of those types to the handlers of credit top-ups and plan subscriptions (``stripe_handlers``)."""

from __future__ import annotations

from collections.abc import Callable

from payments.handled import Handled
from payments.models import WebhookEvent, WebhookProvider
from payments.providers.stripe_events import SEATS_KIND, metadata_kind
from payments.webhooks import creem_handlers, seat_handlers, stripe_handlers

Handler = Callable[[WebhookEvent], Handled]

SEAT_HANDLERS: dict[str, Handler] = {
    stripe_handlers.COMPLETED: seat_handlers.checkout_session,
    stripe_handlers.ASYNC_SUCCEEDED: seat_handlers.checkout_session,
    stripe_handlers.ASYNC_FAILED: seat_handlers.checkout_session,
    stripe_handlers.SUBSCRIPTION_CREATED: seat_handlers.subscription_changed,
    stripe_handlers.SUBSCRIPTION_UPDATED: seat_handlers.subscription_changed,
    stripe_handlers.SUBSCRIPTION_DELETED: seat_handlers.subscription_changed,
    stripe_handlers.INVOICE_PAID: seat_handlers.invoice,
    stripe_handlers.INVOICE_PAYMENT_SUCCEEDED: seat_handlers.invoice,
}


def _by_kind(other: Handler, seats: Handler) -> Handler:
    """``seats`` for an event whose object is of seats, ``other`` for the rest."""

    def route(event: WebhookEvent) -> Handled:
        return seats(event) if metadata_kind(event.payload) == SEATS_KIND else other(event)

    route.__name__ = route.__qualname__ = f"{other.__name__}_or_seats"
    return route


ROUTES: dict[tuple[str, str], Handler] = {
    **{
        (WebhookProvider.STRIPE, event_type): (
            _by_kind(handler, SEAT_HANDLERS[event_type]) if event_type in SEAT_HANDLERS else handler
        )
        for event_type, handler in stripe_handlers.HANDLERS.items()
    },
    **{(WebhookProvider.CREEM, event_type): handler for event_type, handler in creem_handlers.HANDLERS.items()},
}


def handler_for(provider: str, event_type: str) -> Handler | None:
    return ROUTES.get((provider, event_type))
