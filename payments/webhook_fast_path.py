"""The common Stripe delivery without the general path's dozen ORM statements: the first delivery of a
``checkout.session.completed`` (or ``checkout.session.async_payment_succeeded``) that pays a pending Stripe top-up
order, in one transaction of two prepared statements:

1. store the event, already ``processed`` (the new row stays invisible, so locked, until commit); take the payment
   intent's advisory lock and the order's row lock (the general path's lock order: event, payment intent,
   order); make sure no refund is parked for the order (``payments_parked_refund_exists``, whose query runs
   after both locks with a fresh snapshot: a refund that parked itself holding either lock is seen); and mark
   the order paid, but only if it is a pending or failed Stripe top-up of this checkout session, payment intent,
   currency and amount (what ``webhooks._stripe_checkout_session`` requires before ``_credit``);
2. post the order's ``add`` row (``credits.ledger.post``, keyed ``order:<id>`` as in ``webhooks._credit``), with
   the id the order already points at.

A redelivery of an event already processed or ignored is answered by the first statement (nothing written).
Everything else goes the general way (``services.webhook_event_process``), which decides and records it: when the
order was not marked (not plain: another order state, session, amount or currency; refunds parked for it; no
such order) or the ledger refuses, this transaction is rolled back first. An unexpected error does the same, so
a failure is recorded by the general path. The rows written are the ones the general path writes
(tests/payments/test_webhook_fast_path.py compares them column by column)."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from billing_service.db import server_bound_cursor
from credits import ledger
from credits.models import TransactionType
from payments.locks import PAYMENT_INTENT_LOCK
from payments.models import (
    WEBHOOK_DONE_STATUSES,
    Channel,
    Order,
    OrderStatus,
    OrderType,
    WebhookEvent,
    WebhookProvider,
    WebhookStatus,
)
from payments.providers.stripe_events import SessionFacts, session_facts

logger = logging.getLogger(__name__)

EVENT_TYPES = frozenset({"checkout.session.completed", "checkout.session.async_payment_succeeded"})
_EVENTS, _ORDERS = WebhookEvent._meta.db_table, Order._meta.db_table

# Stores the event as processed and marks the order paid: the new event row's id and the paid order's account,
# credits and amount (NULLs when the order was not marked); or, when the event id is stored already, that row's id
# and status (no row at all when it was committed after this statement's snapshot was taken: the caller looks
# again).
_STORE_AND_MARK = f"""
WITH stored AS (
    INSERT INTO {_EVENTS} (provider, event_id, type, payload, status, attempts, last_error, order_id, received_at,
                           processed_at, updated_at)
    VALUES ('{WebhookProvider.STRIPE}', %(event_id)s, %(type)s, %(payload)s::jsonb, '{WebhookStatus.PROCESSED}', 1,
            '', %(order_id)s, now(), now(), now())
    ON CONFLICT (provider, event_id) DO NOTHING
    RETURNING id
), intent AS (
    SELECT pg_advisory_xact_lock({PAYMENT_INTENT_LOCK}, hashtext(%(payment_intent)s)) FROM stored
), locked AS (
    SELECT id FROM {_ORDERS} WHERE id = %(order_id)s AND (SELECT count(*) FROM intent) = 1 FOR UPDATE
), parked AS (
    SELECT payments_parked_refund_exists(%(order_id)s, %(order_text)s, %(payment_intent)s) AS found FROM locked
), paid AS (
    UPDATE {_ORDERS}
       SET status = '{OrderStatus.PAID}', paid_at = now(), amount_paid_usd = %(amount_total)s / 100.0,
           ledger_entry_id = %(entry_id)s, last_error = '',
           provider_checkout_id = CASE provider_checkout_id WHEN '' THEN %(session_id)s ELSE provider_checkout_id END,
           provider_payment_id = %(payment_intent)s,
           provider_customer_id = CASE provider_customer_id WHEN '' THEN %(customer_id)s ELSE provider_customer_id END,
           updated_at = now()
     WHERE id = %(order_id)s AND type = '{OrderType.TOP_UP}' AND channel = '{Channel.STRIPE}'
       AND status IN ('{OrderStatus.PENDING}', '{OrderStatus.FAILED}')
       AND (provider_checkout_id = '' OR %(session_id)s = '' OR provider_checkout_id = %(session_id)s)
       AND (provider_payment_id = '' OR provider_payment_id = %(payment_intent)s)
       AND lower(currency) = %(currency)s AND amount_usd * 100 = %(amount_total)s
       AND (SELECT NOT found FROM parked)
    RETURNING account_id, credits, amount_usd
)
SELECT stored.id, NULL::text, paid.account_id, paid.credits, paid.amount_usd FROM stored LEFT JOIN paid ON true
UNION ALL
SELECT id, status, NULL, NULL, NULL FROM {_EVENTS}
 WHERE provider = '{WebhookProvider.STRIPE}' AND event_id = %(event_id)s AND NOT EXISTS (SELECT FROM stored)
"""


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the fast path did with a delivery: ``processed`` (credited here) or ``duplicate`` (already done);
    ``event_pk`` is set for a duplicate (and for an event stored but not done, which the caller processes)."""

    status: str
    event_pk: int | None = None
    duplicate: bool = False


class _NotPlain(Exception):
    """Not the plain case: roll back and let the general path decide."""


def applies(event: dict[str, Any]) -> bool:
    return event.get("type") in EVENT_TYPES


def receive(event: dict[str, Any]) -> Receipt | None:
    """Credits a plainly paid top-up order, or recognizes a done redelivery; ``None``: the general path's turn
    (nothing is left written by this one)."""
    facts = session_facts(event)
    if not _plain_session(facts):
        return None
    order_id, entry_id = uuid.UUID(facts.order_ref), uuid.uuid4()
    try:
        with transaction.atomic(durable=True), server_bound_cursor() as cursor:
            cursor.execute(_STORE_AND_MARK, {
                "event_id": event["id"], "type": event["type"], "payload": json.dumps(event),
                "order_id": order_id, "order_text": str(order_id), "entry_id": entry_id,
                "payment_intent": facts.payment_intent_id, "session_id": facts.session_id,
                "customer_id": facts.customer_id, "currency": facts.currency, "amount_total": facts.amount_total,
            }, prepare=True)
            row = cursor.fetchone()
            if row is None:  # stored by a delivery that committed after this statement began
                return None
            event_pk, stored_status, account_id, credits, amount_usd = row
            if stored_status is not None:
                return Receipt(stored_status, event_pk, duplicate=stored_status in WEBHOOK_DONE_STATUSES)
            if account_id is None:  # the order was not marked: not plain
                raise _NotPlain
            result = ledger.post(
                account_id,
                ledger.Posting(
                    transaction_type=TransactionType.ADD,
                    balance_delta=credits,
                    description=f"Top-up via {Channel.STRIPE}",
                    reference=f"order:{order_id}",
                    metadata={"order_id": str(order_id), "channel": Channel.STRIPE},
                    payment_amount_usd=amount_usd,
                    idempotency_key=f"order:{order_id}",
                ),
                savepoint=False,  # the order's row lock is held: no other delivery races for this key
                entry_id=entry_id,
            )
            if result.replayed:  # credited before, yet pending: not plain
                raise _NotPlain
            return Receipt(WebhookStatus.PROCESSED)
    except _NotPlain:
        return None
    except Exception:
        logger.exception("webhook fast path failed for %s; the general path takes it", event.get("id"))
        return None


def _plain_session(facts: SessionFacts) -> bool:
    if facts.conflicting_refs or facts.mode != "payment" or facts.payment_status != "paid":
        return False
    if not facts.payment_intent_id:  # a paid payment-mode session names its PaymentIntent; without one, not plain
        return False
    if facts.amount_total is None or not facts.currency:
        return False
    try:
        uuid.UUID(facts.order_ref)
    except ValueError:
        return False
    return True
