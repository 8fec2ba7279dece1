"""Baselines for bench/webhooks.py, routed only when ``BENCH_ENDPOINTS`` is on (see billing_service/urls.py), both
public like the webhook endpoint and checking its signature the same way:

- ``webhook_verify``: only the signature check, then constant JSON (the cost of the HTTP stack and the check);
- ``webhook_baseline``: the signature check **and** the database writes a paid top-up needs, in raw psycopg, one
  transaction: store the event by its id, already processed (a redelivery stops there), lock the order, post its
  ledger row (the account's balance and the ``add`` row in one statement), mark the order paid. It
  checks nothing else (amount, currency, session, parked refunds) and knows only this one event type: what the
  real endpoint does beyond it is the price of its rules."""

from __future__ import annotations

import json
import uuid

from django.db import connection, transaction
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from payments.providers import stripe as stripe_provider

_STORE = """
INSERT INTO payments_webhookevent (provider, event_id, type, payload, status, attempts, last_error, object_id,
                                   payment_intent_id, invoice_id, order_ref, received_at, updated_at)
VALUES ('stripe', %(event_id)s, %(type)s, %(payload)s::jsonb, 'processed', 1, '', %(session_id)s, %(payment_intent)s,
        '', %(order_id)s, now(), now())
ON CONFLICT (provider, event_id) DO NOTHING
RETURNING id
"""
_LOCK_ORDER = "SELECT account_id, credits, amount_usd FROM payments_order WHERE id = %s FOR UPDATE"
_POST = """
WITH acct AS (
    UPDATE credits_creditaccount
       SET balance = balance + %(credits)s, last_sequence = last_sequence + 1, count_add = count_add + 1,
           last_entry_at = GREATEST(clock_timestamp(), last_entry_at)
     WHERE id = %(account_id)s
 RETURNING id, platform_id, balance, reserved, last_sequence, last_entry_at
)
INSERT INTO credits_ledger_entry
       (id, account_id, platform_id, sequence, transaction_type, status, balance_delta, reserved_delta, balance_after,
        reserved_after, payment_amount_usd, description, reference, metadata, idempotency_key, request_hash,
        created_at)
SELECT %(entry_id)s, id, platform_id, last_sequence, 'add', 'completed', %(credits)s, 0, balance, reserved,
       %(amount)s, 'Top-up via stripe', %(reference)s, %(metadata)s::jsonb, %(reference)s, '', last_entry_at
  FROM acct
"""
_MARK_PAID = """
UPDATE payments_order SET status = 'paid', paid_at = now(), amount_paid_usd = %(amount)s, ledger_entry_id = %(entry_id)s,
       provider_payment_id = %(payment_intent)s, updated_at = now()
 WHERE id = %(order_id)s
"""


def _verified(request: Request) -> dict:
    return stripe_provider.webhook_event_verify(
        payload=request.body, signature_header=request.headers.get(stripe_provider.SIGNATURE_HEADER)
    )


@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
def webhook_verify(request: Request) -> Response:
    _verified(request)
    return Response({"received": True})


@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
def webhook_baseline(request: Request) -> Response:
    event = _verified(request)
    session = event["data"]["object"]
    order_id = session["metadata"]["order_id"]
    params = {"event_id": event["id"], "type": event["type"], "payload": json.dumps(event), "order_id": order_id,
              "session_id": session["id"], "payment_intent": session["payment_intent"]}
    with transaction.atomic(), connection.cursor() as django_cursor:
        cursor = django_cursor.cursor  # the psycopg cursor itself: no ORM, no Django wrapper
        cursor.execute(_STORE, params, prepare=True)
        if cursor.fetchone() is None:
            return Response({"received": True, "event_id": event["id"], "status": "processed", "duplicate": True})
        cursor.execute(_LOCK_ORDER, [order_id], prepare=True)
        account_id, credits, amount = cursor.fetchone()
        entry_id = uuid.uuid4()
        cursor.execute(_POST, {"credits": credits, "account_id": account_id, "entry_id": entry_id, "amount": amount,
                               "reference": f"order:{order_id}",
                               "metadata": json.dumps({"order_id": order_id, "channel": "stripe"})}, prepare=True)
        cursor.execute(_MARK_PAID, {**params, "amount": amount, "entry_id": entry_id}, prepare=True)
    return Response({"received": True, "event_id": event["id"], "status": "processed", "duplicate": False})
