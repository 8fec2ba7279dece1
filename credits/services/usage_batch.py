"""Recording many usage events at once (``usage_record_batch``): each event is recorded, a duplicate, or rejected
on its own, by the rules of ``credits.services.usage`` (the same pricing, debit and rows; a batch differs only in
writing them set-based: accounts locked once in primary-key order, rows by COPY, rollups by one upsert)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from accounts.models import Platform
from billing_service import metrics
from billing_service.db import server_bound_cursor
from billing_service.errors import DomainError
from credits import funding, ledger, sql
from credits.errors import AccountNotFound, IdempotencyConflict, InsufficientCredits, RequestIdHeld
from credits.funding import SPEND, Funded, FundingRequest, usage_funder
from credits.models import CreditAccount
from credits.selectors import model_prices_for
from credits.services.common import actor_id_of
from credits.services.usage import retrying
from credits.services.usage_events import (
    PricedUsage,
    UsageInput,
    debit_posting,
    event_row,
    events_write,
    needs_rate_card,
    usage_price,
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
    priced_models = sorted({u.model for u in events if needs_rate_card(u)})
    versions = model_prices_for(platform_id=platform.pk, models=priced_models) if priced_models else {}
    actor_id = actor_id_of(actor)

    pending: list[tuple[int, PricedUsage]] = []
    for i, usage in enumerate(events):
        if usage.account_id not in known:
            outcomes[i] = BatchOutcome(usage.request_id, "rejected",
                                       error=AccountNotFound(details={"account_id": str(usage.account_id)}))
            continue
        try:
            pending.append((i, usage_price(usage, versions.get(usage.model, []), now)))
        except DomainError as exc:
            outcomes[i] = BatchOutcome(usage.request_id, "rejected", error=exc)

    if pending:
        for i, outcome in retrying(lambda: _record_pending(platform, pending, actor_id, now)):
            outcomes[i] = outcome
        for outcome in outcomes:
            if outcome is not None and outcome.error is not None:
                outcome.error.follow_up()  # the batch's transaction has ended
    metrics.refusals_of(outcome.error for outcome in outcomes if outcome is not None and outcome.error is not None)
    return [outcome for outcome in outcomes if outcome is not None]


def _record_pending(
    platform: Platform, pending: list[tuple[int, PricedUsage]], actor_id: int | None, now: datetime
) -> list[tuple[int, BatchOutcome]]:
    states = ledger.lock_accounts({priced.usage.account_id for _, priced in pending})
    known, held = _calls_of([priced.usage for _, priced in pending])
    results: dict[int, BatchOutcome] = {}
    fresh: list[tuple[int, PricedUsage, uuid.UUID]] = []
    first_in_batch: dict[tuple[uuid.UUID, str], tuple[int, str]] = {}
    repeats: list[tuple[int, int]] = []  # (index, index of the same event earlier in this batch)
    for i, priced in pending:
        usage, digest = priced.usage, priced.digest
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
            fresh.append((i, priced, uuid.uuid4()))

    funded = _quotes(fresh, states, now)
    for i, priced, _ in fresh:
        if isinstance(funded.get(i), DomainError):  # refused by the seat: a budget exceeded, a model not entitled
            results[i] = BatchOutcome(priced.usage.request_id, "rejected", error=funded.pop(i))
    fresh = [f for f in fresh if f[0] not in results]
    charges = [
        (priced.usage.account_id,
         debit_posting(priced, Decimal(0), event_id, actor_id, None, charge=priced.cost - _paid(funded.get(i))))
        for i, priced, event_id in fresh if priced.cost - _paid(funded.get(i)) > 0
    ]
    posted = iter(ledger.post_many(charges, states=states) if charges else [])
    rows: list[tuple] = []
    accepted: list[Funded] = []
    for i, priced, event_id in fresh:
        entry_id, charged = None, Decimal(0)
        if priced.cost - _paid(funded.get(i)) > 0:
            outcome = next(posted)
            if isinstance(outcome, InsufficientCredits):
                results[i] = BatchOutcome(priced.usage.request_id, "rejected", error=outcome)
                continue
            entry_id, charged = outcome.id, outcome.charged
        if i in funded:
            accepted.append(funded[i])
        rows.append(event_row(priced, event_id=event_id, platform_id=platform.pk, charged=charged, entry_id=entry_id,
                              funded=funded.get(i)))
        results[i] = BatchOutcome(priced.usage.request_id, "recorded", event_id=event_id, entry_id=entry_id)

    for i, original in repeats:  # the same event twice in one batch: the second mirrors the first
        first = results[original]
        results[i] = (
            BatchOutcome(first.request_id, "duplicate", event_id=first.event_id, entry_id=first.entry_id)
            if first.status == "recorded"
            else BatchOutcome(first.request_id, first.status, error=first.error)
        )
    if rows:
        events_write(rows)
    funding.record(accepted, now)
    return sorted(results.items())


def _quotes(
    fresh: list[tuple[int, PricedUsage, uuid.UUID]], states: dict, now: datetime
) -> dict[int, Funded | DomainError]:
    """The funder's answers for the events of externally funded accounts (a seat's), in the batch's order."""
    funder = usage_funder()
    asked = [(i, priced, event_id) for i, priced, event_id in fresh if states[priced.usage.account_id].external_funding]
    if funder is None or not asked:
        return {}
    answers = funder.quote([
        FundingRequest(SPEND, priced.usage.account_id, priced.cost, priced.usage.model, event_id=event_id)
        for _, priced, event_id in asked
    ], now)
    return {i: answer for (i, _, _), answer in zip(asked, answers, strict=True)}


def _paid(funded: Funded | None) -> Decimal:
    return funded.amount if funded is not None else Decimal(0)


def _calls_of(usages: list[UsageInput]) -> tuple[dict, dict]:
    """What the request_ids already name, under the accounts' locks: ({(account, request_id): (request_hash,
    event id, ledger entry id)}, {(account, request_id): (hold id, status)})."""
    known: dict[tuple[uuid.UUID, str], tuple] = {}
    held: dict[tuple[uuid.UUID, str], tuple] = {}
    with server_bound_cursor() as cursor:
        cursor.execute(sql.FIND_CALLS, [[u.account_id for u in usages], [u.request_id for u in usages]])
        for is_hold, account_id, request_id, text, row_id, entry_id in cursor.fetchall():
            if is_hold:
                held[(account_id, request_id)] = (row_id, text)
            else:
                known[(account_id, request_id)] = (text, row_id, entry_id)
    return known, held
