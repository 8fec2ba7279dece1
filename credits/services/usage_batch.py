"""Recording many usage events at once (``usage_record_batch``): each event is recorded, a duplicate, or rejected
on its own, by the rules of ``credits.services.usage`` (the same pricing, debit and rows; a batch differs only in
writing them set-based: accounts locked once in primary-key order, rows by COPY, rollups by one upsert)."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from accounts.models import Platform
from billing_service.db import server_bound_cursor
from billing_service.errors import DomainError
from billing_service.money import EXACT_CONTEXT
from credits import ledger
from credits.errors import AccountNotFound, IdempotencyConflict, InsufficientCredits, RequestIdHeld
from credits.models import CreditAccount, ModelPrice
from credits.selectors import model_prices_for
from credits.services.common import actor_id_of
from credits.services.usage import (
    EVENT_TABLE,
    HOLD_TABLE,
    ROLLUP_COLS,
    ROLLUP_TABLE,
    ROLLUP_UPSERT_TAIL,
    UsageInput,
    debit_posting,
    priced_by,
    retrying,
    usage_cost,
)

# The columns of the rows a batch builds, in their order.
_COPY_EVENTS = (
    f"COPY {EVENT_TABLE} (id, account_id, platform_id, request_id, endpoint, model, input_tokens, output_tokens, "
    f"cost, charged, priced_by, price_id, success, description, metadata, ledger_entry_id, hold_id, request_hash, "
    f"occurred_at, recorded_at) FROM STDIN"
)
_UPSERT_ROLLUPS = (
    f"INSERT INTO {ROLLUP_TABLE} AS r ({ROLLUP_COLS}) "
    f"SELECT * FROM unnest(%b::uuid[], %b::date[], %s::text[], %b::bigint[], %b::bigint[], %b::bigint[], "
    f"%b::numeric[], %b::bigint[], %b::bigint[]){ROLLUP_UPSERT_TAIL}"
)
# What a batch's request_ids already name, in one round trip: recorded events (is_hold false: their hash, id and
# ledger row) and holds (is_hold true: their status and id).
_FIND_CALLS = (
    f"WITH k AS MATERIALIZED (SELECT * FROM unnest(%b::uuid[], %s::text[]) AS k(account_id, request_id)) "
    f"SELECT false, account_id, request_id, request_hash, id, ledger_entry_id FROM {EVENT_TABLE} "
    f"WHERE (account_id, request_id) IN (SELECT * FROM k) UNION ALL "
    f"SELECT true, account_id, request_id, status, id, NULL FROM {HOLD_TABLE} "
    f"WHERE (account_id, request_id) IN (SELECT * FROM k)"
)


@dataclass(slots=True)
class BatchOutcome:
    request_id: str
    status: str  # recorded | duplicate | rejected
    event_id: uuid.UUID | None = None
    entry_id: uuid.UUID | None = None
    error: DomainError | None = None


def usage_record_batch(
    *, platform: Platform, events: list[UsageInput], actor: AbstractBaseUser | None = None
) -> list[BatchOutcome]:
    """Records many events of any accounts of ``platform``; each is recorded, a duplicate, or rejected on
    its own, in order. Accounts are locked once, in primary-key order, so batches never deadlock."""
    outcomes: list[BatchOutcome | None] = [None] * len(events)
    account_ids = {usage.account_id for usage in events}
    known = set(CreditAccount.objects.filter(platform=platform, pk__in=account_ids).values_list("pk", flat=True))
    now = timezone.now()
    priced_models = sorted({u.model for u in events if u.success and u.amount is None and u.model})
    versions = model_prices_for(platform_id=platform.pk, models=priced_models) if priced_models else {}
    actor_id = actor_id_of(actor)

    pending: list[tuple[int, UsageInput, Decimal, ModelPrice | None, str]] = []
    for i, usage in enumerate(events):
        if usage.account_id not in known:
            outcomes[i] = BatchOutcome(usage.request_id, "rejected",
                                       error=AccountNotFound(details={"account_id": str(usage.account_id)}))
            continue
        try:
            cost, price = usage_cost(usage, versions.get(usage.model, []), usage.occurred_at or now)
        except DomainError as exc:
            outcomes[i] = BatchOutcome(usage.request_id, "rejected", error=exc)
            continue
        pending.append((i, usage, cost, price, usage.digest()))

    if pending:
        for i, outcome in retrying(lambda: _record_pending(platform, pending, now, actor_id)):
            outcomes[i] = outcome
    return [outcome for outcome in outcomes if outcome is not None]


def _record_pending(
    platform: Platform, pending: list[tuple[int, UsageInput, Decimal, ModelPrice | None, str]],
    now: datetime, actor_id: int | None,
) -> list[tuple[int, BatchOutcome]]:
    states = ledger.lock_accounts(sorted({usage.account_id for _, usage, *_ in pending}))
    with server_bound_cursor() as cursor:
        cursor.execute(
            _FIND_CALLS, [[u.account_id for _, u, *_ in pending], [u.request_id for _, u, *_ in pending]]
        )
        known: dict[tuple[uuid.UUID, str], tuple] = {}  # -> (request_hash, event id, ledger entry id)
        held: dict[tuple[uuid.UUID, str], tuple] = {}  # -> (hold id, status)
        for is_hold, account_id, request_id, text, row_id, entry_id in cursor.fetchall():
            if is_hold:
                held[(account_id, request_id)] = (row_id, text)
            else:
                known[(account_id, request_id)] = (text, row_id, entry_id)

    results: dict[int, BatchOutcome] = {}
    fresh: list[tuple[int, UsageInput, Decimal, ModelPrice | None, str, uuid.UUID]] = []
    first_in_batch: dict[tuple[uuid.UUID, str], tuple[int, str]] = {}
    repeats: list[tuple[int, int]] = []  # (index, index of the same event earlier in this batch)
    for i, usage, cost, price, digest in pending:
        key = (usage.account_id, usage.request_id)
        seen = known.get(key)
        earlier = first_in_batch.get(key)
        if key in held:
            hold_id, hold_status = held[key]
            results[i] = BatchOutcome(usage.request_id, "rejected", error=RequestIdHeld(
                details={"hold_id": str(hold_id), "hold_status": hold_status}))
        elif seen is not None or (earlier is not None and earlier[1] != digest):
            same = seen[0] == digest if seen is not None else False
            results[i] = (
                BatchOutcome(usage.request_id, "duplicate", event_id=seen[1], entry_id=seen[2])
                if same
                else BatchOutcome(usage.request_id, "rejected",
                                  error=IdempotencyConflict(details={"request_id": usage.request_id}))
            )
        elif earlier is not None:
            repeats.append((i, earlier[0]))
        else:
            first_in_batch[key] = (i, digest)
            fresh.append((i, usage, cost, price, digest, uuid.uuid4()))

    charges = [
        (usage.account_id, debit_posting(usage, Decimal(0), event_id, digest, actor_id, None, charge=cost))
        for _, usage, cost, _, digest, event_id in fresh if cost > 0
    ]
    posted = iter(ledger.post_many(charges, states=states) if charges else [])

    rows: list[tuple] = []
    rollups: dict[tuple, list] = defaultdict(lambda: [0, 0, 0, Decimal(0), 0, 0])
    for i, usage, cost, price, digest, event_id in fresh:
        entry_id, charged = None, Decimal(0)
        if cost > 0:
            outcome = next(posted)
            if isinstance(outcome, InsufficientCredits):
                results[i] = BatchOutcome(usage.request_id, "rejected", error=outcome)
                continue
            entry_id, charged = outcome.id, outcome.charged
        at = usage.occurred_at or now
        rows.append((
            event_id, usage.account_id, platform.pk, usage.request_id, usage.endpoint, usage.model,
            usage.input_tokens, usage.output_tokens, cost, charged, priced_by(usage), price.pk if price else None,
            usage.success, usage.description, json.dumps(usage.metadata or {}), entry_id, None, digest, at, now,
        ))
        bucket = rollups[(usage.account_id, at.astimezone(UTC).date(), usage.endpoint)]
        bucket[0] += 1
        bucket[1 if usage.success else 2] += 1
        bucket[3] = EXACT_CONTEXT.add(bucket[3], cost)
        bucket[4] += usage.input_tokens or 0
        bucket[5] += usage.output_tokens or 0
        results[i] = BatchOutcome(usage.request_id, "recorded", event_id=event_id, entry_id=entry_id)

    for i, original in repeats:  # the same event twice in one batch: the second mirrors the first
        first = results[original]
        results[i] = (
            BatchOutcome(first.request_id, "duplicate", event_id=first.event_id, entry_id=first.entry_id)
            if first.status == "recorded"
            else BatchOutcome(first.request_id, first.status, error=first.error)
        )

    if rows:
        with server_bound_cursor() as cursor:
            with cursor.copy(_COPY_EVENTS) as copy:
                for row in rows:
                    copy.write_row(row)
            keys = sorted(rollups)
            cursor.execute(
                _UPSERT_ROLLUPS,
                [
                    [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
                    *([rollups[k][j] for k in keys] for j in range(6)),
                ],
            )
    return sorted(results.items())
