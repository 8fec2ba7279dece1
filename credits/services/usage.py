"""Recording AI usage: each event is priced, stored and charged in one transaction.

The cost is the caller's ``amount`` or, without one, the model's tokens priced by the rate-card version in
effect when the request occurred. A successful event debits the account (a ``subtract`` row) in the same
transaction that stores the event and adds it to the day's rollup; a failed one is stored and charges
nothing. ``request_id`` is the idempotency key: the same event again returns the first result, the same
``request_id`` with other content is a conflict. This module is the one place usage is charged, so checks
that must hold at the moment of the debit (seat budgets, model tiers) belong here, inside the transaction.

An event is priced and hashed once (``usage_events.usage_price``) and written as ``usage_events.event_row``
says, whichever path records it: the one statement (``_record_charged_at_once``), the general path under the
account's lock (``_record_locked``), a captured hold (``usage_capture``) or a batch (``usage_batch``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import Platform
from credits import funding, ledger, sql
from credits.errors import AccountNotFound, HoldNotFound, IdempotencyConflict, RequestIdHeld
from credits.funding import Funded, FundingRequest
from credits.ledger import charge_is_whole, charge_split, is_idempotency_race
from credits.locks import account_lock_for_usage
from credits.models import CreditAccount, Hold, LedgerEntry, TransactionType, UsageEvent, UsageKey
from credits.selectors import account_carried_remainder, model_price_versions, usage_call_get
from credits.services.common import actor_id_of
from credits.services.holds import HoldResult, hold_capture
from credits.services.usage_events import (
    PricedUsage,
    UsageInput,
    debit_posting,
    event_of,
    event_row,
    events_write,
    needs_rate_card,
    usage_label,
    usage_price,
)

_USAGE_CONSTRAINT = f"{UsageKey._meta.db_table}_pkey"  # a request_id is recorded once (credits.models.UsageKey)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class UsageResult:
    event: UsageEvent
    entry: LedgerEntry | None
    available: Decimal
    replayed: bool = False


def _is_usage_race(exc: IntegrityError) -> bool:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None) == _USAGE_CONSTRAINT


def retrying(work: Callable[[], T]) -> T:
    """Runs ``work`` in a transaction; a lost race for a request_id is retried once it has committed."""
    for attempt in range(3):
        try:
            with transaction.atomic():
                return work()
        except IntegrityError as exc:
            if attempt == 2 or not (is_idempotency_race(exc) or _is_usage_race(exc)):
                raise
    raise AssertionError("unreachable")


def _priced(platform: Platform, usage: UsageInput) -> PricedUsage:
    versions = model_price_versions(platform_id=platform.pk, model=usage.model) if needs_rate_card(usage) else []
    return usage_price(usage, versions, timezone.now())


# --- one event -------------------------------------------------------------------------------------------


def usage_record(*, platform: Platform, usage: UsageInput, actor: AbstractBaseUser | None = None) -> UsageResult:
    """Records one usage event of an account of ``platform`` and charges it. Raises InsufficientCredits
    (nothing written), IdempotencyConflict, RequestIdHeld, AccountNotFound, ModelNotPriced,
    AmountOrModelRequired or InvalidInput."""
    priced = _priced(platform, usage)  # a 400 before anything is written
    actor_id = actor_id_of(actor)
    if priced.cost > 0 and connection.get_autocommit() and not connection.in_atomic_block:
        recorded = _record_charged_at_once(platform, priced, actor_id)
        if recorded is not None:
            return recorded
    return retrying(lambda: _record_locked(platform, priced, actor_id))


def _record_locked(platform: Platform, priced: PricedUsage, actor_id: int | None) -> UsageResult:
    """The general path, inside a transaction: the account's lock first (every usage path takes it before writing
    an event), so what the request_id already names, read next, cannot change until this commits."""
    usage = priced.usage
    locked = account_lock_for_usage(account_id=usage.account_id, platform_id=platform.pk)
    if locked is None:
        raise AccountNotFound(details={"account_id": str(usage.account_id)})
    held, existing = usage_call_get(account_id=usage.account_id, request_id=usage.request_id)
    if held is not None:
        raise _held(held)
    if existing is not None:
        if existing.request_hash != priced.digest:
            raise IdempotencyConflict(details={"request_id": usage.request_id})
        return UsageResult(event=existing, entry=existing.ledger_entry, available=locked.balance - locked.reserved,
                           replayed=True)
    event_id = uuid.uuid4()
    funded = None
    if locked.external_funding:  # a seat pays first, within its budgets (or refuses: nothing written)
        funded = funding.fund_one(FundingRequest(funding.SPEND, usage.account_id, priced.cost, usage.model,
                                                 event_id=event_id), priced.recorded_at)
    carried = locked.carried_remainder
    debit, carried_after = charge_split(carried, priced.cost - (funded.amount if funded else 0))
    entry = None
    if debit > 0:
        posting = debit_posting(priced, debit, event_id, actor_id, carried=(carried, carried_after))
        entry = ledger.post(usage.account_id, posting, savepoint=False).entry
        available = entry.balance_after - entry.reserved_after
    else:
        if carried_after != carried:
            CreditAccount.objects.filter(pk=usage.account_id).update(carried_remainder=carried_after)
        available = locked.balance - locked.reserved
    row = event_row(priced, event_id=event_id, platform_id=platform.pk, charged=debit,
                    entry_id=entry.id if entry else None, funded=funded)
    events_write([row])
    funding.record([funded], priced.recorded_at)
    return UsageResult(event=event_of(row, usage.metadata), entry=entry, available=available)


def _held(hold_id: uuid.UUID) -> RequestIdHeld:
    status = Hold.objects.filter(pk=hold_id).values_list("status", flat=True).first()
    return RequestIdHeld(details={"hold_id": str(hold_id), "hold_status": status})


def _record_charged_at_once(platform: Platform, priced: PricedUsage, actor_id: int | None) -> UsageResult | None:
    """The common case, a charged event recorded for the first time, as one statement in autocommit
    (``credits.sql.RECORD_CHARGED``): no account check, no BEGIN, no COMMIT round trip. A cost in whole quanta
    debits itself whatever the account carries (``charge_is_whole``); another cost first reads the carried
    remainder and writes only if it is still that (a second round trip, still no lock). None when the statement
    wrote nothing (a replay, a refusal, an account of another platform, a request_id already used by a hold, by a
    free event or by a concurrent twin, a remainder that moved): the general path then answers, exactly as
    without this one, with the same price and hash."""
    usage, cost = priced.usage, priced.cost
    carried = None
    debit = cost
    if not charge_is_whole(cost):
        before = account_carried_remainder(account_id=usage.account_id, platform_id=platform.pk)
        if before is None:
            return None
        debit, carried_after = charge_split(before, cost)
        if debit == 0:  # below a quantum: no ledger row to chain the event to
            return None
        carried = (before, carried_after)
    event_id, entry_id = uuid.uuid4(), uuid.uuid4()
    posting = debit_posting(priced, debit, event_id, actor_id, carried=carried)
    row = event_row(priced, event_id=event_id, platform_id=platform.pk, charged=debit, entry_id=entry_id)
    params = ledger.chained_params(usage.account_id, posting, platform_id=platform.pk, entry_id=entry_id)
    params.update(zip(sql.EVENT_PARAMS, row, strict=True))
    try:
        entry = ledger.post_chained(sql.RECORD_CHARGED, params, posting)
    except IntegrityError:
        return None
    if entry is None:
        return None
    return UsageResult(event=event_of(row, usage.metadata), entry=entry,
                       available=entry.balance_after - entry.reserved_after)


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
    metadata: dict | None = None,
    actor: AbstractBaseUser | None = None,
) -> tuple[HoldResult, UsageEvent]:
    """Settles a hold at the real cost of its call and records the call's usage event, in one transaction:
    a ``subtract`` row for the cost (nothing when ``success`` is false), a ``release`` row for the rest of
    the hold, the event (request_id: the hold's) and its rollup. The cost is ``amount`` or, without one, the
    model's tokens priced by the rate card now; like every usage charge it is exact, debited in whole quanta
    with the account's carried remainder (``credits.ledger.charge_split``)."""
    hold = Hold.objects.filter(pk=hold_id, account__platform=platform).only("id", "account_id", "request_id").first()
    if hold is None:
        raise HoldNotFound()
    usage = UsageInput(
        account_id=hold.account_id, request_id=hold.request_id or f"hold:{hold.id}", endpoint=endpoint, model=model,
        input_tokens=input_tokens, output_tokens=output_tokens, amount=amount, success=success,
        description=description, metadata=metadata,
    )
    priced = _priced(platform, usage)  # a 400 (no price, nothing to price) before any write
    event_id = uuid.uuid4()

    def record(settled: Hold, entries: list[LedgerEntry], funded: Funded | None) -> UsageEvent:
        debit = next((e for e in entries if e.transaction_type == TransactionType.SUBTRACT), None)
        row = event_row(priced, event_id=event_id, platform_id=platform.pk,
                        charged=settled.captured_amount or Decimal(0), entry_id=debit.id if debit else None,
                        hold_id=settled.id, funded=funded)
        events_write([row])
        return event_of(row, metadata)

    result = hold_capture(
        hold_id=hold.id, amount=priced.cost, description=usage_label(usage),
        metadata={**(metadata or {}), "usage_event_id": str(event_id), "endpoint": endpoint, "model": model},
        actor=actor, after_capture=record, usage_event_id=event_id, model=model,
    )
    return result, result.extra
