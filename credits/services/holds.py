"""Holds: credits reserved before an AI call, then captured at the real cost or released, exactly once."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from billing_service import metrics
from credits import funding, ledger
from credits.errors import HoldExpired, HoldNotActive, HoldNotFound, IdempotencyConflict, RequestIdRecorded
from credits.funding import Funded, FundingRequest, usage_funder
from credits.ledger import Posting, charge_split
from credits.locks import account_lock, account_lock_if_free, hold_lock, hold_lock_if_free
from credits.models import CreditAccount, Hold, HoldStatus, LedgerEntry, TransactionType, UsageEvent
from credits.services.common import actor_id_of, call_key, require_positive

DEFAULT_HOLD_SECONDS = 900
MAX_HOLD_SECONDS = 86_400



@dataclass(frozen=True, slots=True)
class HoldResult:
    hold: Hold
    entries: list[LedgerEntry]
    replayed: bool = False
    extra: Any = None


@transaction.atomic
def hold_create(
    *,
    account_id: uuid.UUID | str,
    amount: Decimal,
    expires_in: int = DEFAULT_HOLD_SECONDS,
    reference: str = "",
    metadata: dict[str, Any] | None = None,
    actor: AbstractBaseUser | None = None,
    idempotency_key: str | None = None,
) -> HoldResult:
    """Reserves credits: ``reserved`` rises, ``available`` falls (a ``reserve`` row).

    ``idempotency_key`` is the call's request_id: the hold keeps it, the usage event its capture records carries
    it, and its ``reserve`` row is keyed in the namespace of AI calls (``call_key``), which direct usage events
    share. So the same request_id and arguments replay the hold; other arguments are an
    ``IdempotencyConflict``; a request_id already recorded as a usage event of the account is
    ``RequestIdRecorded`` (its capture could never record its event)."""
    require_positive(amount)
    if not 1 <= expires_in <= MAX_HOLD_SECONDS:
        raise ValueError(f"expires_in must be 1..{MAX_HOLD_SECONDS} seconds")
    hold_id = uuid.uuid4()
    if usage_funder() is not None:
        locked = account_lock(account_id=account_id)
        held = Hold.objects.filter(account_id=account_id, request_id=idempotency_key).first() if (
            locked is not None and idempotency_key) else None
        if held is not None and held.funded > 0:  # replayed by the hold itself: its ledger row (if any) is partial
            return _funded_replay(held, amount, reference, metadata)
        if held is None and locked is not None and locked.external_funding:
            return _hold_create_funded(locked, amount, expires_in, reference, metadata, actor, hold_id,
                                       idempotency_key)
    try:
        result = _reserve(account_id, amount, expires_in, reference, metadata, actor, hold_id, idempotency_key)
    except IdempotencyConflict:
        if idempotency_key and _recorded(account_id, idempotency_key):
            raise RequestIdRecorded(details={"request_id": idempotency_key}) from None
        raise
    if result.replayed:
        hold = Hold.objects.get(pk=result.entry.hold_id)
        return HoldResult(hold=hold, entries=[result.entry], replayed=True)
    # Under the account's lock (the reserve row's UPDATE took it): a free usage event, which has no ledger row
    # to collide with, is found here, and none can be written until this commits.
    if idempotency_key and _recorded(account_id, idempotency_key):
        raise RequestIdRecorded(details={"request_id": idempotency_key})
    # The ledger row references the hold; the foreign key is checked at commit.
    hold = Hold.objects.create(
        id=hold_id,
        account_id=account_id,
        amount=amount,
        request_id=idempotency_key or "",
        reference=reference,
        metadata=metadata or {},
        expires_at=result.entry.created_at + timedelta(seconds=expires_in),
        created_by_id=actor_id_of(actor),
    )
    return HoldResult(hold=hold, entries=[result.entry])


def _hold_create_funded(
    account: CreditAccount, amount: Decimal, expires_in: int, reference: str, metadata: dict[str, Any] | None,
    actor: AbstractBaseUser | None, hold_id: uuid.UUID, request_id: str | None,
) -> HoldResult:
    """A hold of an account whose usage a funder pays first (a seat), under the account's lock: the funder
    reserves what it will (``Hold.funded``; a refusal raises, nothing written), the credits reserve the rest
    (a ``reserve`` row, keyed as any hold's). A fully funded hold has no ledger row: its request_id is its key
    (``hold_unique_request_per_account``): ``hold_create`` looks it up under the same lock first
    (``_funded_replay``), whether the member still holds the seat or not."""
    if request_id and _recorded(account.pk, request_id):
        raise RequestIdRecorded(details={"request_id": request_id})
    now = timezone.now()
    funded = funding.fund_one(FundingRequest(funding.RESERVE, account.pk, amount, hold_id=hold_id), now)
    paid = funded.amount if funded else Decimal(0)
    entries = []
    if amount - paid > 0:
        entries.append(_reserve(account.pk, amount - paid, expires_in, reference, metadata, actor, hold_id,
                                request_id).entry)
    hold = Hold.objects.create(
        id=hold_id, account_id=account.pk, amount=amount, funded=paid, request_id=request_id or "",
        reference=reference, metadata=metadata or {},
        expires_at=(entries[0].created_at if entries else now) + timedelta(seconds=expires_in),
        created_by_id=actor_id_of(actor),
    )
    funding.record([funded], now)
    return HoldResult(hold=hold, entries=entries)


def _funded_replay(
    hold: Hold, amount: Decimal, reference: str, metadata: dict[str, Any] | None
) -> HoldResult:
    """The same request_id again on a hold a funder reserved on: the hold as it is now if the arguments are the
    same (amount, reference, metadata), else IdempotencyConflict."""
    if (hold.amount, hold.reference, hold.metadata) != (amount, reference, metadata or {}):
        raise IdempotencyConflict(details={"request_id": hold.request_id})
    entries = list(LedgerEntry.objects.filter(account_id=hold.account_id, hold_id=hold.pk,
                                              transaction_type=TransactionType.RESERVE))
    return HoldResult(hold=hold, entries=entries, replayed=True)


def _recorded(account_id: uuid.UUID | str, request_id: str) -> bool:
    return UsageEvent.objects.filter(account_id=account_id, request_id=request_id).exists()


def _reserve(
    account_id: uuid.UUID | str, amount: Decimal, expires_in: int, reference: str,
    metadata: dict[str, Any] | None, actor: AbstractBaseUser | None, hold_id: uuid.UUID, request_id: str | None,
) -> ledger.PostResult:
    return ledger.post(
        account_id,
        Posting(
            transaction_type=TransactionType.RESERVE,
            reserved_delta=amount,
            description="Credits reserved",
            reference=reference,
            metadata=metadata,
            actor_id=actor_id_of(actor),
            hold_id=hold_id,
            idempotency_key=call_key(request_id) if request_id else None,
            fingerprint={
                "operation": "hold",
                "amount": amount,
                "expires_in": expires_in,
                "reference": reference,
                "metadata": metadata or {},
            },
        ),
    )


def hold_capture(
    *,
    hold_id: uuid.UUID | str,
    amount: Decimal,
    description: str = "",
    metadata: dict[str, Any] | None = None,
    actor: AbstractBaseUser | None = None,
    account_id: uuid.UUID | str | None = None,
    after_capture: Callable[[Hold, list[LedgerEntry], Funded | None], Any] | None = None,
    usage_event_id: uuid.UUID | None = None,
    model: str = "",
) -> HoldResult:
    """Charges the real cost of a held call: a ``subtract`` row for ``amount`` and a ``release`` row for
    what is left of the hold. ``amount`` is exact (up to 12 decimals): like every usage charge it is debited in
    whole quanta with the account's carried remainder (``credits.ledger.charge_split``), and ``captured_amount``
    is the debit. Charging more than the hold needs ``available`` to cover the excess. A hold a funder (a seat)
    reserved on is settled with it first: it pays what fits in its reservation and budgets (or refuses: the hold
    stays active), the credits the rest.
    A hold is settled once: a second capture or release raises ``HoldNotActive``. ``after_capture`` runs
    inside the same transaction with the settled hold, its rows and what the funder paid (the usage path stores
    its event ``usage_event_id`` there); whatever it returns is the result's ``extra``."""
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0:
        raise ValueError(f"amount must be a finite Decimal >= 0, got {amount!r}")
    return _hold_settle(
        hold_id=hold_id, account_id=account_id, capture=amount, description=description,
        metadata=metadata, actor=actor, after_capture=after_capture, usage_event_id=usage_event_id, model=model,
    )


def hold_release(
    *, hold_id: uuid.UUID | str, actor: AbstractBaseUser | None = None, account_id: uuid.UUID | str | None = None
) -> HoldResult:
    """Frees a hold entirely (a ``release`` row)."""
    return _hold_settle(hold_id=hold_id, account_id=account_id, capture=None, actor=actor)


def _hold_settle(
    *,
    hold_id: uuid.UUID | str,
    account_id: uuid.UUID | str | None,
    capture: Decimal | None,
    actor: AbstractBaseUser | None,
    description: str = "",
    metadata: dict[str, Any] | None = None,
    after_capture: Callable[[Hold, list[LedgerEntry], Funded | None], Any] | None = None,
    usage_event_id: uuid.UUID | None = None,
    model: str = "",
) -> HoldResult:
    expired = False
    extra = None
    with transaction.atomic(durable=True):
        hold = Hold.objects.filter(pk=hold_id).only("account_id").first()
        if hold is None or (account_id is not None and str(hold.account_id) != str(account_id)):
            raise HoldNotFound()
        # Lock order: account, then hold.
        carried = account_lock(account_id=hold.account_id).carried_remainder
        hold = hold_lock(hold_id=hold_id)
        if hold.status != HoldStatus.ACTIVE:
            raise HoldNotActive(details={"status": hold.status})
        now = timezone.now()
        if hold.expires_at <= now:
            entries, _ = _hold_finish(hold, status=HoldStatus.EXPIRED, captured=None, actor=actor, now=now)
            expired = True
        elif capture is None:
            entries, _ = _hold_finish(hold, status=HoldStatus.RELEASED, captured=None, actor=actor, now=now)
        else:
            entries, funded = _hold_finish(
                hold, status=HoldStatus.CAPTURED, captured=capture, carried=carried, actor=actor, now=now,
                description=description, metadata=metadata, usage_event_id=usage_event_id, model=model,
            )
            if after_capture is not None:
                extra = after_capture(hold, entries, funded)
    if expired and capture is not None:
        raise HoldExpired(details={"hold_id": str(hold.id)})
    return HoldResult(hold=hold, entries=entries, extra=extra)


def _hold_finish(
    hold: Hold,
    *,
    status: str,
    captured: Decimal | None,
    actor: AbstractBaseUser | None,
    now: datetime,
    carried: Decimal = Decimal(0),
    description: str = "",
    metadata: dict[str, Any] | None = None,
    usage_event_id: uuid.UUID | None = None,
    model: str = "",
) -> tuple[list[LedgerEntry], Funded | None]:
    """Writes the rows that settle a locked, active hold and marks it settled. ``captured``: the exact cost of a
    capture, charged against the account's ``carried`` remainder (read under its lock). A hold a funder reserved
    on (``funded``) is settled with it first: its part of the cost is the funder's answer, returned."""
    entries: list[LedgerEntry] = []
    actor_id = actor_id_of(actor)
    funded = None
    if hold.funded > 0:
        kind = funding.CAPTURE if status == HoldStatus.CAPTURED else funding.RELEASE
        funded = funding.fund_one(FundingRequest(kind, hold.account_id, captured or Decimal(0), model, hold.id,
                                                 held=hold.funded, event_id=usage_event_id), now)
    remaining = hold.amount - hold.funded  # what the credits reserved
    debit = Decimal(0)
    if captured is not None:
        captured -= funded.amount if funded else 0
    if captured:
        debit, carried_after = charge_split(carried, captured)
        consumed = min(debit, hold.amount - hold.funded)
        if debit > 0:
            entries.append(
                ledger.post(
                    hold.account_id,
                    Posting(
                        transaction_type=TransactionType.SUBTRACT,
                        balance_delta=-debit,
                        reserved_delta=-consumed,
                        description=description or "Usage (captured hold)",
                        reference=hold.reference,
                        metadata=metadata,
                        actor_id=actor_id,
                        hold_id=hold.id,
                        carried=(carried, carried_after),
                    ),
                ).entry
            )
        elif carried_after != carried:
            CreditAccount.objects.filter(pk=hold.account_id).update(carried_remainder=carried_after)
        remaining -= consumed
    if remaining > 0:
        why = {HoldStatus.EXPIRED: "Hold expired", HoldStatus.CAPTURED: "Unused hold released"}
        entries.append(
            ledger.post(
                hold.account_id,
                Posting(
                    transaction_type=TransactionType.RELEASE,
                    reserved_delta=-remaining,
                    description=why.get(status, "Hold released"),
                    reference=hold.reference,
                    actor_id=actor_id,
                    hold_id=hold.id,
                ),
            ).entry
        )
    hold.status = status
    hold.captured_amount = debit if status == HoldStatus.CAPTURED else None
    hold.settled_at = now
    hold.save(update_fields=["status", "captured_amount", "settled_at"])
    metrics.hold_settled(status)
    funding.record([funded], now)
    return entries, funded


def holds_release_expired(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Releases every active hold past its expiry; safe beside live traffic and beside itself
    (each hold is taken with SKIP LOCKED and settled in its own short transaction)."""
    now = now or timezone.now()
    released = 0
    while True:
        candidates = list(
            Hold.objects.filter(status=HoldStatus.ACTIVE, expires_at__lte=now)
            .order_by("expires_at")
            .values_list("id", "account_id")[:batch_size]
        )
        if not candidates:
            return released
        progressed = False
        for hold_id, account_id in candidates:
            with transaction.atomic(durable=True):
                if account_lock_if_free(account_id=account_id) is None:
                    continue  # busy right now: the next pass or the next run takes it
                hold = hold_lock_if_free(hold_id=hold_id, status=HoldStatus.ACTIVE, expires_at__lte=now)
                if hold is None:
                    continue
                _hold_finish(hold, status=HoldStatus.EXPIRED, captured=None, actor=None, now=now)
                released += 1
                progressed = True
        if not progressed:
            return released
