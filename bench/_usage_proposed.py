"""The changes bench/README.md proposes for POST /api/billing/usage/, as a bench-only copy of the endpoint.

Not app code: ``bench/usage_http.py --proposed`` serves this view beside the real one (route
``/api/bench/usage-proposed/``, added by ``bench/_proposed_wsgi.py``) so that the two run on the same server in
the same run. Each change is small and keeps the endpoint's behaviour (status codes, body, rows written):

1. ``tenant``: the caller's memberships with one prepared SQL statement instead of the ORM query
   (``accounts.selectors.membership_list_for_user``): the ORM compiles the query on every request.
2. ``usage_record``: the account check (``CreditAccount.objects.filter(...).only(...).first()``) and the rate
   card look-up (``model_prices_for``) as prepared SQL statements; the event + rollup statement (``_INSERT_ONE``)
   prepared on a server-bound cursor (like the ledger statements already are) instead of interpolated
   client-side and re-planned on every call.
3. The response built by hand (``entry_json``, ``event_json``: the same keys and formats as
   ``LedgerEntrySerializer`` and ``UsageEventSerializer``) instead of two DRF serializers, whose field
   deep-copies alone cost more than the rest of the view.

``/api/bench/usage-one/`` (``ProposedOneViewSet``) adds:

4. The common case, a charged event recorded for the first time, as ONE prepared statement in autocommit
   (``_ONE``: idempotency look-up, conditional account UPDATE scoped to the platform, ledger INSERT, event
   INSERT, rollup upsert), so no account pre-check, no BEGIN, no second statement, no COMMIT round trip.
   Anything else (no row: replay, refusal, unknown account; a unique violation: a concurrent twin or a
   request_id already used by a free event; a failed or free event) falls back to 1-3 above, which answers
   exactly as today.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection
from django.utils import timezone
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Membership, Platform
from accounts.tenancy import PLATFORM_HEADER, Tenant, tenant_resolve
from billing_service.db import server_bound_cursor
from billing_service.money import format_money
from credits import ledger
from credits.api.usage_views import UsageViewSet, _event_or_400
from credits.errors import AccountNotFound, IdempotencyConflict
from credits.locks import account_lock
from credits.models import CreditAccount, LedgerEntry, ModelPrice, UsageEvent
from credits.services import usage as usage_mod
from credits.services.common import actor_id_of
from credits.services.usage import UsageInput, UsageResult, usage_cost

# A copy of today's ``usage_record`` (with changes 2): say so when the app's has changed since.
USAGE_RECORD_SHA = "b514f37544e4b9e4bb5a6b99614c85e4e6ce3ede7db4b136f7dac3f7de40dba9"


def _check_copy() -> None:
    import hashlib
    import inspect
    import sys

    digest = hashlib.sha256(inspect.getsource(usage_mod.usage_record).encode()).hexdigest()
    if digest != USAGE_RECORD_SHA:
        print(f"bench: credits.services.usage.usage_record changed (sha256 {digest[:12]}); "
              "bench/_usage_proposed.py's copy may be stale", file=sys.stderr, flush=True)


_check_copy()


# --- 1. tenant ----------------------------------------------------------------------------------------

_MEMBERSHIPS = (
    "SELECT m.id, m.platform_id, m.user_id, m.role, m.created_at, p.id, p.platform_key, p.name, p.created_at "
    "FROM accounts_membership m JOIN accounts_platform p ON p.id = m.platform_id "
    "WHERE m.user_id = %s ORDER BY m.platform_id"
)
_M_FIELDS = ["id", "platform_id", "user_id", "role", "created_at"]
_P_FIELDS = ["id", "platform_key", "name", "created_at"]


def tenant_fast(*, user: AbstractBaseUser, platform_key: str | None) -> Tenant:
    if platform_key:
        return tenant_resolve(user=user, platform_key=platform_key)
    with server_bound_cursor() as cursor:
        cursor.execute(_MEMBERSHIPS, [user.pk], prepare=True)
        rows = cursor.fetchall()
    if len(rows) == 1:
        row = rows[0]
        membership = Membership.from_db("default", _M_FIELDS, row[:5])
        membership.platform = Platform.from_db("default", _P_FIELDS, row[5:])
        return Tenant(platform=membership.platform, user=user, membership=membership)
    return tenant_resolve(user=user, platform_key=None)  # none or several: the original path and its errors


# --- 2. the service -------------------------------------------------------------------------------------

_ACCOUNT = "SELECT balance, reserved FROM credits_creditaccount WHERE id = %s AND platform_id = %s"
_PRICES = [f.attname for f in ModelPrice._meta.concrete_fields]
_PRICES_SQL = (
    f"SELECT {', '.join(f.column for f in ModelPrice._meta.concrete_fields)} FROM credits_modelprice "
    "WHERE platform_id = %s AND model = %s ORDER BY effective_from DESC"
)


def _prices(platform_id: int, model: str) -> list[ModelPrice]:
    with server_bound_cursor() as cursor:
        cursor.execute(_PRICES_SQL, [platform_id, model], prepare=True)
        return [ModelPrice.from_db("default", _PRICES, row) for row in cursor.fetchall()]


def usage_record_fast(
    *, platform: Platform, account_id: uuid.UUID | str, request_id: str, endpoint: str, model: str = "",
    input_tokens: int | None = None, output_tokens: int | None = None, amount: Decimal | None = None,
    success: bool = True, description: str = "", metadata: dict[str, Any] | None = None,
    occurred_at: datetime | None = None, actor: AbstractBaseUser | None = None,
) -> UsageResult:
    """``credits.services.usage.usage_record`` with its three ORM/client-side statements prepared."""
    usage = UsageInput(
        account_id=uuid.UUID(str(account_id)), request_id=request_id, endpoint=endpoint, model=model,
        input_tokens=input_tokens, output_tokens=output_tokens, amount=amount, success=success,
        description=description, metadata=metadata, occurred_at=occurred_at,
    )
    with server_bound_cursor() as cursor:
        cursor.execute(_ACCOUNT, [usage.account_id, platform.pk], prepare=True)
        found = cursor.fetchone()
    if found is None:
        raise AccountNotFound(details={"account_id": str(usage.account_id)})
    now = timezone.now()
    at = usage.occurred_at or now
    needs_price = usage.success and usage.amount is None and usage.model
    versions = _prices(platform.pk, usage.model) if needs_price else []
    cost, price = usage_cost(usage, versions, at)
    digest = usage.digest()
    actor_id = actor_id_of(actor)

    def work() -> UsageResult:  # as in usage_record, but the event statement prepared
        event_id = uuid.uuid4()
        entry = None
        if cost > 0:
            try:
                posted = ledger.post(usage.account_id,
                                     usage_mod._debit_posting(usage, cost, event_id, digest, actor_id),
                                     savepoint=False)
            except IdempotencyConflict:
                raise IdempotencyConflict(details={"request_id": usage.request_id}) from None
            if posted.replayed:
                event = UsageEvent.objects.get(account_id=usage.account_id, request_id=usage.request_id)
                return UsageResult(event=event, entry=posted.entry,
                                   available=usage_mod._available_now(usage.account_id), replayed=True)
            entry = posted.entry
            unchanged = None
        else:
            unchanged = account_lock(account_id=usage.account_id)
        event = usage_mod._event(
            usage, event_id=event_id, platform_id=platform.pk, cost=cost, price=price,
            entry_id=entry.id if entry else None, digest=digest, occurred_at=at, recorded_at=now,
        )
        with server_bound_cursor() as cursor:
            cursor.execute(usage_mod._INSERT_ONE, usage_mod._row(event), prepare=True)
            inserted = cursor.fetchone()[0]
        if not inserted:
            existing = UsageEvent.objects.select_related("ledger_entry").get(
                account_id=usage.account_id, request_id=usage.request_id
            )
            if existing.request_hash != digest:
                raise IdempotencyConflict(details={"request_id": usage.request_id})
            return UsageResult(event=existing, entry=existing.ledger_entry,
                               available=usage_mod._available_now(usage.account_id), replayed=True)
        available = entry.balance_after - entry.reserved_after if entry else unchanged.available
        return UsageResult(event=event, entry=entry, available=available)

    return usage_mod._retrying(work)


# --- 3. the response ------------------------------------------------------------------------------------


def _instant(value: datetime | None) -> str | None:
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _uuid(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def entry_json(entry: LedgerEntry) -> dict[str, Any]:
    """What ``LedgerEntrySerializer(entry).data`` gives, key for key."""
    data = {
        "id": str(entry.id),
        "transaction_type": entry.transaction_type,
        "status": entry.status,
        "credits_amount": format_money(entry.credits_amount),
        "credits_balance_after": format_money(entry.balance_after),
        "payment_amount_usd": format_money(entry.payment_amount_usd),
        "balance_change": format_money(entry.balance_delta),
        "reserved_change": format_money(entry.reserved_delta),
        "reserved_after": format_money(entry.reserved_after),
        "sequence": entry.sequence,
        "hold_id": _uuid(entry.hold_id),
        "description": entry.description,
        "reference": entry.reference,
        "metadata": entry.metadata,
        "created_at": _instant(entry.created_at),
    }
    if entry.payment_amount_usd is None:
        del data["payment_amount_usd"]
    return data


def event_json(event: UsageEvent) -> dict[str, Any]:
    """What ``UsageEventSerializer(event).data`` gives, key for key."""
    return {
        "id": str(event.id),
        "account_id": str(event.account_id),
        "request_id": event.request_id,
        "endpoint": event.endpoint,
        "model": event.model,
        "input_tokens": event.input_tokens,
        "output_tokens": event.output_tokens,
        "cost": format_money(event.cost),
        "priced_by": event.priced_by,
        "price_version_id": event.price_id,
        "success": event.success,
        "description": event.description,
        "metadata": event.metadata,
        "transaction_id": _uuid(event.ledger_entry_id),
        "hold_id": _uuid(event.hold_id),
        "occurred_at": _instant(event.occurred_at),
        "recorded_at": _instant(event.recorded_at),
    }


class ProposedUsageViewSet(UsageViewSet):
    @property
    def tenant(self) -> Tenant:  # type: ignore[override]
        cached = self.__dict__.get("_tenant")
        if cached is None:
            request = self.request
            cached = self.__dict__["_tenant"] = tenant_fast(
                user=request.user, platform_key=request.headers.get(PLATFORM_HEADER)
            )
        return cached

    def create(self, request: Request) -> Response:
        self.tenant.require_admin()
        usage = _event_or_400(request.data)
        result = usage_record_fast(
            platform=self.tenant.platform, account_id=usage.account_id, request_id=usage.request_id,
            endpoint=usage.endpoint, model=usage.model, input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens, amount=usage.amount, success=usage.success,
            description=usage.description, metadata=usage.metadata, occurred_at=usage.occurred_at,
            actor=request.user,
        )
        body = {
            "transaction": entry_json(result.entry) if result.entry else None,
            "usage_event": event_json(result.event),
            "available_credits": format_money(result.available),
        }
        return Response(body, status=status.HTTP_200_OK if result.replayed else status.HTTP_201_CREATED)


def add_route() -> None:
    """Routes the proposed endpoint at /api/bench/usage-proposed/ (bench servers only)."""
    from django.urls import clear_url_caches, path

    from billing_service import urls

    if not any(getattr(p, "name", None) == "bench-usage-proposed" for p in urls.urlpatterns):
        urls.urlpatterns.append(
            path("api/bench/usage-proposed/", ProposedUsageViewSet.as_view({"post": "create"}),
                 name="bench-usage-proposed")
        )
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
    versions = _prices(platform.pk, usage.model) if usage.amount is None and usage.model else []
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


class ProposedOneViewSet(ProposedUsageViewSet):
    def create(self, request: Request) -> Response:
        self.tenant.require_admin()
        usage = _event_or_400(request.data)
        result = usage_record_one(platform=self.tenant.platform, usage=usage, actor=request.user)
        if result is None:
            return super().create(request)
        body = {
            "transaction": entry_json(result.entry),
            "usage_event": event_json(result.event),
            "available_credits": format_money(result.available),
        }
        return Response(body, status=status.HTTP_201_CREATED)


__all__ = ["CreditAccount", "ProposedUsageViewSet", "add_route", "entry_json", "event_json"]
