"""Recording AI usage: each event is priced, stored and charged in one transaction.

The cost is the caller's ``amount`` or, without one, the model's tokens priced by the rate-card version in
effect when the request occurred. A successful event debits the account (a ``subtract`` row) in the same
transaction that stores the event and adds it to the day's rollup; a failed one is stored and charges
nothing. ``request_id`` is the idempotency key: the same event again returns the first result, the same
``request_id`` with other content is a conflict. This module is the one place usage is charged, so checks
that must hold at the moment of the debit (seat budgets, model tiers) belong here, inside the transaction.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import Platform
from billing_service.db import server_bound_cursor
from billing_service.errors import DomainError, InvalidInput
from billing_service.inputs import stored_instant_problem
from billing_service.money import EXACT_CONTEXT
from credits import ledger
from credits.errors import (
    AccountNotFound,
    AmountOrModelRequired,
    HoldNotFound,
    IdempotencyConflict,
    ModelNotPriced,
    RequestIdHeld,
)
from credits.ledger import Posting, charge_is_whole, charge_split, is_idempotency_race, request_hash
from credits.models import (
    CreditAccount,
    Hold,
    LedgerEntry,
    ModelPrice,
    PricingSource,
    TransactionType,
    UsageEvent,
)
from credits.selectors import model_price_versions
from credits.services.common import actor_id_of, call_key
from credits.services.holds import HoldResult, hold_capture

MILLION = Decimal(1_000_000)
_DESCRIPTION_MAX = LedgerEntry._meta.get_field("description").max_length
EVENT_TABLE = UsageEvent._meta.db_table
ROLLUP_TABLE = "credits_usagerollup"
_USAGE_CONSTRAINT = "usage_unique_request_per_account"
_EVENT_FIELDS = [f for f in UsageEvent._meta.concrete_fields]
_EVENT_COLS = ", ".join(f.column for f in _EVENT_FIELDS)
_EVENT_ATTNAMES = [f.attname for f in _EVENT_FIELDS]
# Short parameter names (e0, e1...): the one statement stays under psycopg's cache of parsed queries (4096 bytes,
# psycopg._queries.MAX_CACHED_STATEMENT_LENGTH); a longer one is parsed again on every call.
_EVENT_PARAMS = [f"e{i}" for i in range(len(_EVENT_ATTNAMES))]

ROLLUP_UPSERT_TAIL = (
    " ON CONFLICT (account_id, day, endpoint) DO UPDATE SET "
    "total_requests = r.total_requests + EXCLUDED.total_requests, "
    "successful_requests = r.successful_requests + EXCLUDED.successful_requests, "
    "failed_requests = r.failed_requests + EXCLUDED.failed_requests, "
    "credits_consumed = r.credits_consumed + EXCLUDED.credits_consumed, "
    "input_tokens = r.input_tokens + EXCLUDED.input_tokens, "
    "output_tokens = r.output_tokens + EXCLUDED.output_tokens"
)
ROLLUP_COLS = (
    "account_id, day, endpoint, total_requests, successful_requests, failed_requests, credits_consumed, "
    "input_tokens, output_tokens"
)
# One event: insert it unless its request_id is known, and add it to its rollup only if inserted.
_INSERT_ONE = (
    f"WITH ev AS (INSERT INTO {EVENT_TABLE} ({_EVENT_COLS}) VALUES ("
    + ", ".join("%s::jsonb" if f.attname == "metadata" else "%s" for f in _EVENT_FIELDS)
    + f") ON CONFLICT (account_id, request_id) DO NOTHING "
    f"RETURNING account_id, occurred_at, endpoint, success, cost, input_tokens, output_tokens), "
    f"ru AS (INSERT INTO {ROLLUP_TABLE} AS r ({ROLLUP_COLS}) "
    f"SELECT account_id, (occurred_at AT TIME ZONE 'UTC')::date, endpoint, 1, success::int, (NOT success)::int, "
    f"cost, coalesce(input_tokens, 0), coalesce(output_tokens, 0) FROM ev{ROLLUP_UPSERT_TAIL}) "
    f"SELECT count(*) FROM ev"
)
def _param_type(field: Any) -> str:
    """A parameter's type: the column's, but ``text`` for strings (a cast to ``varchar(n)`` would truncate a
    longer value silently; the column itself refuses it)."""
    return "text" if field.get_internal_type() in ("CharField", "TextField") else field.cast_db_type(connection)


# A charged event recorded for the first time, in one statement (``_record_charged_at_once``): the ledger's
# keyed debit of an account of the platform, then the event (only if the debit was written) and its rollup.
_RECORD_CHARGED = ledger.chained_statement(
    TransactionType.SUBTRACT,
    then=(
        f", ev AS (INSERT INTO {EVENT_TABLE} ({_EVENT_COLS}) SELECT "
        + ", ".join(f"%({p})s::{_param_type(f)}" for p, f in zip(_EVENT_PARAMS, _EVENT_FIELDS, strict=True))
        + " FROM ins RETURNING account_id, occurred_at, endpoint, cost, input_tokens, output_tokens), "
        f"ru AS (INSERT INTO {ROLLUP_TABLE} AS r ({ROLLUP_COLS}) "
        f"SELECT account_id, (occurred_at AT TIME ZONE 'UTC')::date, endpoint, 1, 1, 0, cost, "
        f"coalesce(input_tokens, 0), coalesce(output_tokens, 0) FROM ev{ROLLUP_UPSERT_TAIL})"
    ),
)
_ACCOUNT_TABLE = CreditAccount._meta.db_table
HOLD_TABLE = Hold._meta.db_table
# The carried remainder of an account of the platform (read without a lock by the one-statement path, which
# writes only if it is unchanged).
_CARRIED_OF = f"SELECT carried_remainder FROM {_ACCOUNT_TABLE} WHERE id = %s AND platform_id = %s"
# The general path's first statement: the account of the platform, locked; then, under that lock, what its
# request_id already names (a hold, an event).
_LOCK_FOR_USAGE = (
    f"SELECT carried_remainder, balance, reserved FROM {_ACCOUNT_TABLE} WHERE id = %s AND platform_id = %s "
    f"FOR UPDATE"
)
_CALL_OF = (
    f"SELECT (SELECT id FROM {HOLD_TABLE} WHERE account_id = %(account_id)s AND request_id = %(request_id)s), "
    f"(SELECT id FROM {EVENT_TABLE} WHERE account_id = %(account_id)s AND request_id = %(request_id)s)"
)
_SET_CARRIED = f"UPDATE {_ACCOUNT_TABLE} SET carried_remainder = %s WHERE id = %s"


@dataclass(frozen=True, slots=True)
class UsageInput:
    account_id: uuid.UUID
    request_id: str
    endpoint: str
    model: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    amount: Decimal | None = None
    success: bool = True
    description: str = ""
    metadata: dict[str, Any] | None = None
    occurred_at: datetime | None = None

    def digest(self) -> str:
        """What a replay must repeat exactly (``occurred_at`` only when the caller gave it)."""
        return request_hash(
            {
                "account_id": self.account_id,
                "endpoint": self.endpoint,
                "model": self.model,
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "amount": self.amount,
                "success": self.success,
                "description": self.description,
                "metadata": self.metadata or {},
                "occurred_at": self.occurred_at.isoformat() if self.occurred_at else None,
            }
        )


@dataclass(frozen=True, slots=True)
class UsageResult:
    event: UsageEvent
    entry: LedgerEntry | None
    available: Decimal
    replayed: bool = False


# --- pricing ---------------------------------------------------------------------------------------------


def usage_cost(usage: UsageInput, versions: list[ModelPrice], at: datetime) -> tuple[Decimal, ModelPrice | None]:
    """(cost, price version used). ``versions``: the model's price versions, newest first. Every path prices an
    event here before it writes anything, so the floor of ``occurred_at`` is checked here too: not before
    2000-01-01 UTC (a time that could not be written back, or a day no statistics would show, is refused before
    any debit). How far ahead a caller's clock may be is the API's to say (``credits.api.usage_input``)."""
    if usage.occurred_at is not None and (
        problem := stored_instant_problem(usage.occurred_at)
    ):
        raise InvalidInput("Invalid input: occurred_at.", details={"occurred_at": [problem]})
    if not usage.success:
        return Decimal(0), None
    if usage.amount is not None:
        return usage.amount, None
    if not usage.model:
        raise AmountOrModelRequired(details={"amount": ["Give an amount, or a model priced on the rate card."]})
    version = next((v for v in versions if v.effective_from <= at), None)
    if version is None:
        raise ModelNotPriced(details={"model": [f"No price for {usage.model!r} at {at.isoformat()}."]})
    # Exact (EXACT_CONTEXT raises rather than round): at most 12 decimals, what UsageEvent.cost holds. The
    # ledger debits it in whole quanta and carries the rest on the account (credits.ledger.charge_split).
    c = EXACT_CONTEXT
    product = c.add(
        c.multiply(Decimal(usage.input_tokens or 0), version.input_per_million),
        c.multiply(Decimal(usage.output_tokens or 0), version.output_per_million),
    )
    return c.divide(product, MILLION), version


def priced_by(usage: UsageInput) -> str:
    return PricingSource.AMOUNT if usage.amount is not None else PricingSource.RATE_CARD


def _label(endpoint: str, model: str, description: str = "") -> str:
    """The debit's description: always names model and endpoint; the caller's description follows."""
    label = f"AI usage: {model} · {endpoint}" if model else f"AI usage: {endpoint}"
    return f"{label} — {description}"[:_DESCRIPTION_MAX] if description else label


def debit_posting(
    usage: UsageInput, debit: Decimal, event_id: uuid.UUID, digest: str, actor_id: int | None,
    carried: tuple[Decimal, Decimal] | None, charge: Decimal | None = None,
) -> Posting:
    return Posting(
        transaction_type=TransactionType.SUBTRACT,
        balance_delta=-debit,
        description=_label(usage.endpoint, usage.model, usage.description),
        reference=usage.request_id,
        metadata={"usage_event_id": str(event_id), "endpoint": usage.endpoint, "model": usage.model},
        actor_id=actor_id,
        idempotency_key=call_key(usage.request_id),
        fingerprint=digest,
        carried=carried,
        charge=charge,
    )


def _event(
    usage: UsageInput, *, event_id: uuid.UUID, platform_id: int, cost: Decimal, charged: Decimal,
    price: ModelPrice | None, entry_id: uuid.UUID | None, digest: str, occurred_at: datetime, recorded_at: datetime,
) -> UsageEvent:
    event = UsageEvent(
        id=event_id,
        account_id=usage.account_id,
        platform_id=platform_id,
        request_id=usage.request_id,
        endpoint=usage.endpoint,
        model=usage.model,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost=cost,
        charged=charged,
        priced_by=priced_by(usage),
        price_id=price.pk if price else None,
        success=usage.success,
        description=usage.description,
        metadata=usage.metadata or {},
        ledger_entry_id=entry_id,
        hold_id=None,
        request_hash=digest,
        occurred_at=occurred_at,
        recorded_at=recorded_at,
    )
    event._state.adding = False
    return event


def _row(event: UsageEvent) -> list[Any]:
    return [json.dumps(event.metadata) if a == "metadata" else getattr(event, a) for a in _EVENT_ATTNAMES]


def _is_usage_race(exc: IntegrityError) -> bool:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None) == _USAGE_CONSTRAINT


def retrying(work):
    """Runs ``work`` in a transaction; a lost race for a request_id is retried once it has committed."""
    for attempt in range(3):
        try:
            with transaction.atomic():
                return work()
        except IntegrityError as exc:
            if attempt == 2 or not (is_idempotency_race(exc) or _is_usage_race(exc)):
                raise
    raise AssertionError("unreachable")


# --- one event -------------------------------------------------------------------------------------------


def usage_record(
    *,
    platform: Platform,
    account_id: uuid.UUID | str,
    request_id: str,
    endpoint: str,
    model: str = "",
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    amount: Decimal | None = None,
    success: bool = True,
    description: str = "",
    metadata: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
    actor: AbstractBaseUser | None = None,
) -> UsageResult:
    """Records one usage event of an account of ``platform`` and charges it. Raises InsufficientCredits
    (nothing written), IdempotencyConflict, RequestIdHeld, AccountNotFound, ModelNotPriced or
    AmountOrModelRequired."""
    usage = UsageInput(
        account_id=uuid.UUID(str(account_id)), request_id=request_id, endpoint=endpoint, model=model,
        input_tokens=input_tokens, output_tokens=output_tokens, amount=amount, success=success,
        description=description, metadata=metadata, occurred_at=occurred_at,
    )
    if connection.get_autocommit() and not connection.in_atomic_block:
        recorded = _record_charged_at_once(platform, usage, actor)
        if recorded is not None:
            return recorded
    now = timezone.now()
    at = usage.occurred_at or now
    needs_price = usage.success and usage.amount is None and usage.model
    versions = model_price_versions(platform_id=platform.pk, model=usage.model) if needs_price else []
    cost, price = usage_cost(usage, versions, at)
    digest = usage.digest()
    actor_id = actor_id_of(actor)

    def work() -> UsageResult:
        # The account's lock first: every usage path takes it before writing an event, so what the request_id
        # already names, read next, cannot change until this commits.
        with server_bound_cursor() as cursor:
            cursor.execute(_LOCK_FOR_USAGE, [usage.account_id, platform.pk], prepare=True)
            locked = cursor.fetchone()
            if locked is None:
                raise AccountNotFound(details={"account_id": str(usage.account_id)})
            carried, balance, reserved = locked
            cursor.execute(_CALL_OF, {"account_id": usage.account_id, "request_id": usage.request_id}, prepare=True)
            held, recorded = cursor.fetchone()
        if held is not None:
            raise _held(held)
        if recorded is not None:
            existing = UsageEvent.objects.select_related("ledger_entry").get(pk=recorded)
            if existing.request_hash != digest:
                raise IdempotencyConflict(details={"request_id": usage.request_id})
            return UsageResult(event=existing, entry=existing.ledger_entry, available=balance - reserved,
                               replayed=True)
        event_id = uuid.uuid4()
        debit, carried_after = charge_split(carried, cost)
        entry = None
        if debit > 0:
            posting = debit_posting(usage, debit, event_id, digest, actor_id, carried=(carried, carried_after))
            entry = ledger.post(usage.account_id, posting, savepoint=False).entry
            available = entry.balance_after - entry.reserved_after
        else:
            if carried_after != carried:
                with server_bound_cursor() as cursor:
                    cursor.execute(_SET_CARRIED, [carried_after, usage.account_id], prepare=True)
            available = balance - reserved
        event = _event(
            usage, event_id=event_id, platform_id=platform.pk, cost=cost, charged=debit, price=price,
            entry_id=entry.id if entry else None, digest=digest, occurred_at=at, recorded_at=now,
        )
        with server_bound_cursor() as cursor:
            cursor.execute(_INSERT_ONE, _row(event), prepare=True)
            if not cursor.fetchone()[0]:  # unreachable under the account's lock; never written twice
                raise IdempotencyConflict(details={"request_id": usage.request_id})
        return UsageResult(event=event, entry=entry, available=available)

    return retrying(work)


def _held(hold_id: uuid.UUID) -> RequestIdHeld:
    status = Hold.objects.filter(pk=hold_id).values_list("status", flat=True).first()
    return RequestIdHeld(details={"hold_id": str(hold_id), "hold_status": status})


def _record_charged_at_once(
    platform: Platform, usage: UsageInput, actor: AbstractBaseUser | None
) -> UsageResult | None:
    """The common case, a charged event recorded for the first time, as one statement in autocommit
    (``_RECORD_CHARGED``): no account check, no BEGIN, no COMMIT round trip. A cost in whole quanta debits
    itself whatever the account carries (``charge_is_whole``); another cost first reads the carried remainder
    and writes only if it is still that (a second round trip, still no lock). None when it is not that case or
    the statement wrote nothing (a replay, a refusal, an account of another platform, a request_id already used
    by a hold, by a free event or by a concurrent twin, a remainder that moved): the general path then answers,
    exactly as without this one."""
    if not usage.success:
        return None
    now = timezone.now()
    at = usage.occurred_at or now
    try:
        versions = model_price_versions(platform_id=platform.pk, model=usage.model) if (
            usage.amount is None and usage.model) else []
        cost, price = usage_cost(usage, versions, at)
    except DomainError:
        return None
    if cost <= 0:
        return None
    carried = None
    debit = cost
    if not charge_is_whole(cost):
        with server_bound_cursor() as cursor:
            cursor.execute(_CARRIED_OF, [usage.account_id, platform.pk], prepare=True)
            row = cursor.fetchone()
        if row is None:
            return None
        debit, carried_after = charge_split(row[0], cost)
        if debit == 0:  # below a quantum: no ledger row to chain the event to
            return None
        carried = (row[0], carried_after)
    digest = usage.digest()
    event_id, entry_id = uuid.uuid4(), uuid.uuid4()
    posting = debit_posting(usage, debit, event_id, digest, actor_id_of(actor), carried=carried)
    event = _event(usage, event_id=event_id, platform_id=platform.pk, cost=cost, charged=debit, price=price,
                   entry_id=entry_id, digest=digest, occurred_at=at, recorded_at=now)
    params = ledger.chained_params(usage.account_id, posting, platform_id=platform.pk, entry_id=entry_id)
    params.update(zip(_EVENT_PARAMS, _row(event), strict=True))
    try:
        entry = ledger.post_chained(_RECORD_CHARGED, params, posting)
    except IntegrityError:
        return None
    if entry is None:
        return None
    return UsageResult(event=event, entry=entry, available=entry.balance_after - entry.reserved_after)


# --- a held call, captured -------------------------------------------------------------------------------


def usage_capture(
    *,
    platform: Platform,
    hold_id: uuid.UUID | str,
    amount: Decimal | None,
    endpoint: str,
    model: str = "",
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    success: bool = True,
    description: str = "",
    metadata: dict[str, Any] | None = None,
    actor: AbstractBaseUser | None = None,
) -> tuple[HoldResult, UsageEvent]:
    """Settles a hold at the real cost of its call and records the call's usage event, in one transaction:
    a ``subtract`` row for the cost (nothing when ``success`` is false), a ``release`` row for the rest of
    the hold, the event (request_id: the hold's) and its rollup. The cost is ``amount`` or, without one, the
    model's tokens priced by the rate card now; like every usage charge it is exact, debited in whole quanta
    with the account's carried remainder (``credits.ledger.charge_split``)."""
    hold = Hold.objects.filter(pk=hold_id, account__platform=platform).only("id", "account_id").first()
    if hold is None:
        raise HoldNotFound()
    now = timezone.now()
    priced = UsageInput(
        account_id=hold.account_id, request_id="", endpoint=endpoint, model=model, input_tokens=input_tokens,
        output_tokens=output_tokens, amount=amount, success=success,
    )
    needs_price = success and amount is None and model
    versions = model_price_versions(platform_id=platform.pk, model=model) if needs_price else []
    cost, price = usage_cost(priced, versions, now)  # a 400 (no price, nothing to price) before any write
    event_id = uuid.uuid4()

    def record(settled: Hold, entries: list[LedgerEntry]) -> UsageEvent:
        usage = replace(priced, request_id=settled.request_id or f"hold:{settled.id}", description=description,
                        metadata=metadata)
        debit = next((e for e in entries if e.transaction_type == TransactionType.SUBTRACT), None)
        event = _event(
            usage, event_id=event_id, platform_id=platform.pk, cost=cost, charged=settled.captured_amount or Decimal(0),
            price=price, entry_id=debit.id if debit else None, digest=usage.digest(), occurred_at=now,
            recorded_at=now,
        )
        event.hold_id = settled.id
        with connection.cursor() as cursor:
            cursor.execute(_INSERT_ONE, _row(event))
            if not cursor.fetchone()[0]:
                raise IdempotencyConflict(
                    "A usage event with this hold's request_id was already recorded.",
                    details={"request_id": usage.request_id},
                )
        return event

    result = hold_capture(
        hold_id=hold.id, amount=cost, description=_label(endpoint, model, description),
        metadata={**(metadata or {}), "usage_event_id": str(event_id), "endpoint": endpoint, "model": model},
        actor=actor, after_capture=record,
    )
    return result, result.extra
