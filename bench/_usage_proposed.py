"""Proposal 4 of bench/README.md for POST /api/billing/usage/, as a bench-only copy of the endpoint.

Not app code: ``bench/usage_http.py --proposed`` serves this view beside the real one (route
``/api/bench/usage-one/``, added by ``bench/_proposed_wsgi.py``) so that the two run on the same server in the
same run. (Proposals 1-3, prepared look-ups and responses written out, are in the app now.)

4. The common case, a charged event recorded for the first time, as ONE prepared statement in autocommit
   (``_ONE``: idempotency look-up, conditional account UPDATE scoped to the platform, ledger INSERT, event
   INSERT, rollup upsert), so no account pre-check, no BEGIN, no second statement, no COMMIT round trip.
   Anything else (no row: replay, refusal, unknown account; a unique violation: a concurrent twin or a
   request_id already used by a free event; a failed or free event) falls back to the app's own path, which
   answers exactly as today. (Unlike the app, it does not call the low-balance hook of auto-recharge.)
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection
from django.utils import timezone
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Platform
from billing_service.db import server_bound_cursor
from billing_service.money import format_money
from credits.api.serializers import LedgerEntrySerializer
from credits.api.usage_views import UsageEventSerializer, UsageViewSet, _event_or_400
from credits.models import LedgerEntry
from credits.selectors import model_price_versions
from credits.services import usage as usage_mod
from credits.services.common import actor_id_of
from credits.services.usage import UsageInput, UsageResult, usage_cost


def add_route() -> None:
    """Routes the proposed endpoint at /api/bench/usage-one/ (bench servers only)."""
    from django.urls import clear_url_caches, path

    from billing_service import urls

    if not any(getattr(p, "name", None) == "bench-usage-one" for p in urls.urlpatterns):
        urls.urlpatterns.append(
            path("api/bench/usage-one/", ProposedOneViewSet.as_view({"post": "create"}), name="bench-usage-one")
        )
        clear_url_caches()


# --- 4. one statement -----------------------------------------------------------------------------------

_ENTRY_COLS = [f.column for f in LedgerEntry._meta.concrete_fields]
_ENTRY_ATTNAMES = [f.attname for f in LedgerEntry._meta.concrete_fields]
_ONE = f"""
WITH prior AS (
    SELECT 1 FROM credits_ledger_entry WHERE account_id = %(account_id)s AND idempotency_key = %(idempotency_key)s
), acct AS (
    UPDATE credits_creditaccount
       SET balance = balance - %(cost)s, last_sequence = last_sequence + 1, count_subtract = count_subtract + 1,
           last_entry_at = GREATEST(clock_timestamp(), last_entry_at)
     WHERE id = %(account_id)s AND platform_id = %(platform_id)s AND balance - %(cost)s >= reserved
       AND NOT EXISTS (SELECT 1 FROM prior)
 RETURNING id, platform_id, balance, reserved, last_sequence, last_entry_at
), ins AS (
    INSERT INTO credits_ledger_entry
           (id, account_id, platform_id, sequence, transaction_type, status, balance_delta, reserved_delta,
            balance_after, reserved_after, payment_amount_usd, description, reference, metadata, actor_id, hold_id,
            refund_of_id, idempotency_key, request_hash, created_at)
    SELECT %(entry_id)s, id, platform_id, last_sequence, 'subtract', 'completed', -%(cost)s, 0, balance, reserved,
           NULL, %(label)s, %(request_id)s, %(entry_metadata)s::jsonb, %(actor_id)s, NULL, NULL, %(idempotency_key)s,
           %(request_hash)s, last_entry_at
      FROM acct
 RETURNING id, sequence, balance_after, reserved_after, created_at
), ev AS (
    INSERT INTO credits_usageevent
           (id, account_id, platform_id, request_id, endpoint, model, input_tokens, output_tokens, cost, priced_by,
            price_id, success, description, metadata, ledger_entry_id, hold_id, request_hash, occurred_at,
            recorded_at)
    SELECT %(event_id)s, %(account_id)s, %(platform_id)s, %(request_id)s, %(endpoint)s, %(model)s,
           %(input_tokens)s, %(output_tokens)s, %(cost)s, %(priced_by)s, %(price_id)s, true, %(description)s,
           %(metadata)s::jsonb, ins.id, NULL, %(request_hash)s, %(occurred_at)s, %(recorded_at)s
      FROM ins
 RETURNING account_id, occurred_at, endpoint, cost, input_tokens, output_tokens
), ru AS (
    INSERT INTO credits_usagerollup AS r ({usage_mod._ROLLUP_COLS})
    SELECT account_id, (occurred_at AT TIME ZONE 'UTC')::date, endpoint, 1, 1, 0, cost, coalesce(input_tokens, 0),
           coalesce(output_tokens, 0)
      FROM ev{usage_mod._ROLLUP_UPSERT_TAIL}
)
SELECT sequence, balance_after, reserved_after, created_at FROM ins
"""


def usage_record_one(*, platform: Platform, usage: UsageInput, actor: AbstractBaseUser | None) -> UsageResult | None:
    """The first recording of a charged event in one statement, or None: then the caller takes the full path."""
    if not usage.success or (usage.amount is not None and usage.amount <= 0):
        return None
    now = timezone.now()
    at = usage.occurred_at or now
    versions = (
        model_price_versions(platform_id=platform.pk, model=usage.model)
        if usage.amount is None and usage.model
        else []
    )
    try:
        cost, price = usage_cost(usage, versions, at)
    except Exception:  # noqa: BLE001  (the full path raises it again, as today)
        return None
    if cost <= 0:
        return None
    digest = usage.digest()
    event_id, entry_id = uuid.uuid4(), uuid.uuid4()
    posting = usage_mod._debit_posting(usage, cost, event_id, digest, actor_id_of(actor))
    params = {
        "account_id": usage.account_id, "platform_id": platform.pk, "cost": cost, "entry_id": entry_id,
        "event_id": event_id, "label": posting.description, "request_id": usage.request_id,
        "entry_metadata": json.dumps(posting.metadata), "actor_id": posting.actor_id,
        "idempotency_key": posting.idempotency_key, "request_hash": digest, "endpoint": usage.endpoint,
        "model": usage.model, "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
        "priced_by": usage_mod._priced_by(usage), "price_id": price.pk if price else None,
        "description": usage.description, "metadata": json.dumps(usage.metadata or {}), "occurred_at": at,
        "recorded_at": now,
    }
    if connection.in_atomic_block:
        return None
    try:
        with server_bound_cursor() as cursor:
            cursor.execute(_ONE, params, prepare=True)
            row = cursor.fetchone()
    except IntegrityError:
        return None  # a concurrent twin, or the request_id of a free event: the full path sorts it out
    if row is None:
        return None  # a replay, a refusal, an account of another platform: the full path answers
    sequence, balance_after, reserved_after, created_at = row
    entry = LedgerEntry(
        id=entry_id, account_id=usage.account_id, platform_id=platform.pk, sequence=sequence,
        transaction_type="subtract", status="completed", balance_delta=-cost, reserved_delta=Decimal(0),
        balance_after=balance_after, reserved_after=reserved_after, payment_amount_usd=None,
        description=posting.description, reference=usage.request_id, metadata=posting.metadata,
        actor_id=posting.actor_id, hold_id=None, refund_of_id=None, idempotency_key=posting.idempotency_key,
        request_hash=digest, created_at=created_at,
    )
    event = usage_mod._event(usage, event_id=event_id, platform_id=platform.pk, cost=cost, price=price,
                             entry_id=entry_id, digest=digest, occurred_at=at, recorded_at=now)
    return UsageResult(event=event, entry=entry, available=balance_after - reserved_after)


class ProposedOneViewSet(UsageViewSet):
    def create(self, request: Request) -> Response:
        self.tenant.require_admin()
        usage = _event_or_400(request.data)
        result = usage_record_one(platform=self.tenant.platform, usage=usage, actor=request.user)
        if result is None:
            return super().create(request)
        body = {
            "transaction": LedgerEntrySerializer(result.entry).data,
            "usage_event": UsageEventSerializer(result.event).data,
            "available_credits": format_money(result.available),
        }
        return Response(body, status=status.HTTP_201_CREATED)
