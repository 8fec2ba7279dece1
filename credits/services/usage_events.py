"""What a usage event is, once for every path (one event, a batch, a captured hold): its input (``UsageInput``),
its price and request hash, computed once (``usage_price``), its row (``event_row``), and the one writer of
event rows with their rollups (``events_write``; the one-statement path writes the same row and the same rollup
rule inside its debit, ``credits.sql.RECORD_CHARGED``)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from billing_service.db import server_bound_cursor
from billing_service.errors import InvalidInput
from billing_service.inputs import stored_instant_problem
from billing_service.money import EXACT_CONTEXT
from credits import sql
from credits.errors import AmountOrModelRequired, IdempotencyConflict, ModelNotPriced
from credits.funding import Funded
from credits.ledger import Posting, request_hash
from credits.models import LedgerEntry, ModelPrice, PricingSource, TransactionType, UsageEvent
from credits.services.common import call_key

MILLION = Decimal(1_000_000)
_DESCRIPTION_MAX = LedgerEntry._meta.get_field("description").max_length


@dataclass(frozen=True, slots=True)
class UsageInput:
    """One AI call as its caller reports it (``credits.api.usage_input`` reads it from a request body)."""

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
class PricedUsage:
    """An event priced and hashed, once: what every path charges and writes."""

    usage: UsageInput
    cost: Decimal  # exact (up to 12 decimals); 0 when the call failed
    price: ModelPrice | None  # the rate-card version used, None for a caller's amount
    digest: str  # ``UsageInput.digest``
    occurred_at: datetime  # the caller's, or when it was recorded
    recorded_at: datetime


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


def needs_rate_card(usage: UsageInput) -> bool:
    """Whether the event is priced from the rate card (so its model's versions must be read)."""
    return usage.success and usage.amount is None and bool(usage.model)


def usage_price(usage: UsageInput, versions: list[ModelPrice], now: datetime) -> PricedUsage:
    """The event priced (``usage_cost``, at its ``occurred_at`` or ``now``) and hashed. Raises InvalidInput,
    AmountOrModelRequired or ModelNotPriced, before anything is written."""
    at = usage.occurred_at or now
    cost, price = usage_cost(usage, versions, at)
    return PricedUsage(usage, cost, price, usage.digest(), at, now)


def _label(endpoint: str, model: str, description: str = "") -> str:
    """The debit's description: always names model and endpoint; the caller's description follows."""
    label = f"AI usage: {model} · {endpoint}" if model else f"AI usage: {endpoint}"
    return f"{label} — {description}"[:_DESCRIPTION_MAX] if description else label


def usage_label(usage: UsageInput) -> str:
    return _label(usage.endpoint, usage.model, usage.description)


def debit_posting(
    priced: PricedUsage, debit: Decimal, event_id: uuid.UUID, actor_id: int | None,
    carried: tuple[Decimal, Decimal] | None, charge: Decimal | None = None,
) -> Posting:
    """The ledger row of an event's debit (keyed by its request_id: ``call_key``)."""
    usage = priced.usage
    return Posting(
        transaction_type=TransactionType.SUBTRACT,
        balance_delta=-debit,
        description=usage_label(usage),
        reference=usage.request_id,
        metadata={"usage_event_id": str(event_id), "endpoint": usage.endpoint, "model": usage.model},
        actor_id=actor_id,
        idempotency_key=call_key(usage.request_id),
        fingerprint=priced.digest,
        carried=carried,
        charge=charge,
    )


# --- rows ------------------------------------------------------------------------------------------------

_ATTNAMES = [f.attname for f in sql.EVENT_FIELDS]
_METADATA, _REQUEST_ID, _HOLD = (_ATTNAMES.index(a) for a in ("metadata", "request_id", "hold_id"))
# Where the rollup's inputs are in a row (``sql.ROLLUP_BATCH``'s arrays, in its order).
_ROLLUP_INPUTS = [
    _ATTNAMES.index(a)
    for a in ("account_id", "occurred_at", "endpoint", "success", "cost", "input_tokens", "output_tokens")
]


def event_row(
    priced: PricedUsage, *, event_id: uuid.UUID, platform_id: int, charged: Decimal, entry_id: uuid.UUID | None,
    hold_id: uuid.UUID | None = None, funded: Funded | None = None,
) -> tuple:
    """The one statement of what a usage event's row holds, in ``credits.sql.EVENT_COLUMNS``' order (metadata as
    JSON text). ``charged``: what its ledger row ``entry_id`` debited; ``funded``: what a funder (a seat) paid."""
    usage, price = priced.usage, priced.price
    return (
        event_id, usage.account_id, platform_id, usage.request_id, usage.endpoint, usage.model, usage.input_tokens,
        usage.output_tokens, priced.cost, charged, funded.amount if funded else Decimal(0),
        funded.ref if funded else "",
        PricingSource.AMOUNT if usage.amount is not None else PricingSource.RATE_CARD,
        price.pk if price else None, usage.success, usage.description, json.dumps(usage.metadata or {}), entry_id,
        hold_id, priced.digest, priced.occurred_at, priced.recorded_at,
    )


def event_of(row: tuple, metadata: dict[str, Any] | None) -> UsageEvent:
    """The model instance of a row written (``metadata``: its dict, not the JSON text)."""
    values = list(row)
    values[_METADATA] = metadata or {}
    return UsageEvent.from_db("default", _ATTNAMES, values)


def events_write(rows: list[tuple]) -> None:
    """Writes event rows (``event_row``) and adds them to their rollups (``credits.sql.rollup_upsert``), under
    the locks of their accounts: one row in one prepared statement, many by COPY and one upsert. A request_id
    already recorded raises IdempotencyConflict (the locks make it unreachable from the services' own paths)."""
    with server_bound_cursor() as cursor:
        if len(rows) == 1:
            cursor.execute(sql.INSERT_EVENT, dict(zip(sql.EVENT_PARAMS, rows[0], strict=True)), prepare=True)
            if not cursor.fetchone()[0]:
                details = {"request_id": rows[0][_REQUEST_ID]}
                if rows[0][_HOLD] is not None:
                    raise IdempotencyConflict("A usage event with this hold's request_id was already recorded.",
                                              details=details)
                raise IdempotencyConflict(details=details)
            return
        with cursor.copy(sql.COPY_EVENTS) as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(sql.ROLLUP_BATCH, [[row[i] for row in rows] for i in _ROLLUP_INPUTS])
