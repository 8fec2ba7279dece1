"""The one place that writes ledger rows.

``post`` applies one change to an account in a single SQL statement: a conditional ``UPDATE ... RETURNING``
of the account (balance, reserved, sequence, counters) feeding the ``INSERT`` of the ledger row. The
condition is the account's invariants (``available >= 0``, ``reserved >= 0``, the balance limit), so an
overdraft simply updates nothing. Outside a transaction the statement is its own transaction and holds
the account row lock only while it runs; inside one (holds, captures, refunds) it joins it.

With an idempotency key, the same statement first looks the key up; a replay returns the stored row
without touching the account. Two concurrent first uses of one key race to the unique index: the loser's
statement fails whole and it returns the winner's row; or, when the winner's change left too little for a
second one, the loser's statement updates nothing and it looks the key up again before refusing.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils.module_loading import import_string

from accounts import outbound
from billing_service import metrics
from billing_service.db import server_bound_cursor
from billing_service.money import DECIMAL_PLACES, EXACT_CONTEXT, QUANTUM, floor_to_quantum, format_money
from credits import sql
from credits.errors import AccountNotFound, BalanceLimitExceeded, IdempotencyConflict, InsufficientCredits
from credits.locks import accounts_lock
from credits.models import MAX_BALANCE, CreditAccount, LedgerEntry, LedgerKey
from credits.selectors import ledger_entry_by_key

_ENTRY_FIELDS = sql.ENTRY_FIELDS
_ATTNAMES = [f.attname for f in _ENTRY_FIELDS]
_N = len(_ENTRY_FIELDS)
# Fields whose raw database value needs converting (jsonb arrives as text).
_CONVERTERS = [(i, f) for i, f in enumerate(_ENTRY_FIELDS) if hasattr(f, "from_db_value")]
# A key posts once per account: the key table claimed by every keyed row (``credits.models.LedgerKey``).
_IDEMPOTENCY_CONSTRAINT = f"{LedgerKey._meta.db_table}_pkey"
# Idempotency keys are unique per account and come in two namespaces that never meet: a key a client chose
# (the Idempotency-Key header) is stored as "client:<key>" (``billing_service.idempotency.client_key``); every
# key the service derives is "<kind>:<...>" with a kind of its own (usage, order, recharge, period, rollover,
# refund, upgrade, creem, coupon, expiry, checkin) and never "client".


@dataclass(frozen=True, slots=True)
class Posting:
    """One change to write: the type, its signed effects, and what describes it."""

    transaction_type: str
    balance_delta: Decimal = Decimal(0)
    reserved_delta: Decimal = Decimal(0)
    description: str = ""
    reference: str = ""
    metadata: dict[str, Any] | None = None
    payment_amount_usd: Decimal | None = None
    actor_id: int | None = None
    hold_id: uuid.UUID | None = None
    refund_of_id: uuid.UUID | None = None
    idempotency_key: str | None = None
    # Arguments of the request that a replay must repeat exactly (defaults to the posting itself), or
    # their hash already computed.
    fingerprint: dict[str, Any] | str | None = None
    # A usage charge: (the account's carried remainder the caller read, the remainder after this debit), from
    # ``charge_split``. The row is written only if the account still carries the first (``post``).
    carried: tuple[Decimal, Decimal] | None = None
    # A usage charge of this exact cost for ``post_many``, which splits it against the account's carried
    # remainder itself (``balance_delta`` is then ignored).
    charge: Decimal | None = None


@dataclass(frozen=True, slots=True)
class PostResult:
    entry: LedgerEntry
    replayed: bool


def charge_is_whole(cost: Decimal) -> bool:
    """Whether ``cost`` is whole quanta: then ``charge_split`` debits exactly ``cost`` and leaves the carried
    remainder as it was, whatever that remainder is, so the debit is known without reading the account."""
    return cost == floor_to_quantum(cost)


def charge_split(carried: Decimal, cost: Decimal) -> tuple[Decimal, Decimal]:
    """The one rule of usage charges: (debit, remainder carried after it). A usage event of exact ``cost``
    debits the whole quanta (0.000001) of the account's carried remainder plus the cost, rounded down; what is
    left, less than a quantum, is carried to the next charge. So for every account, at every moment, the usage
    debits plus the carried remainder equal the exact costs: splitting usage into tiny events neither escapes
    the charge nor pays more. A cost in whole quanta debits exactly itself and leaves the remainder as it was."""
    if not (cost.is_finite() and cost >= 0 and 0 <= carried < QUANTUM):
        raise ValueError(f"a charge needs a cost >= 0 and a remainder in [0, {QUANTUM}), got {cost!r}, {carried!r}")
    total = EXACT_CONTEXT.add(carried, cost)
    debit = floor_to_quantum(total)
    return debit, EXACT_CONTEXT.subtract(total, debit)


def request_hash(fingerprint: dict[str, Any]) -> str:
    def normal(value: Any) -> Any:
        if isinstance(value, Decimal):
            return format_money(value.quantize(QUANTUM))
        if isinstance(value, uuid.UUID):
            return str(value)
        return value

    canonical = json.dumps({k: normal(v) for k, v in fingerprint.items()}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _posting_hash(posting: Posting) -> str:
    if isinstance(posting.fingerprint, str):
        return posting.fingerprint
    if posting.fingerprint is not None:
        return request_hash(posting.fingerprint)
    return request_hash({
        "transaction_type": posting.transaction_type,
        "balance_delta": posting.balance_delta,
        "reserved_delta": posting.reserved_delta,
        "description": posting.description,
        "reference": posting.reference,
        "metadata": posting.metadata or {},
        "payment_amount_usd": posting.payment_amount_usd,
        "hold_id": posting.hold_id,
        "refund_of_id": posting.refund_of_id,
    })


def _whole_micros(value: Decimal) -> bool:
    """Whether ``value`` has no non-zero digit past the sixth decimal (NUMERIC(20, 6) stores it exactly)."""
    _, digits, exponent = value.as_tuple()
    extra = -DECIMAL_PLACES - exponent  # type: ignore[operator]  # digits past the sixth decimal
    return extra <= 0 or not any(digits[-extra:])


def post(
    account_id: uuid.UUID | str, posting: Posting, *, savepoint: bool | None = None, entry_id: uuid.UUID | None = None
) -> PostResult:
    """Writes one ledger row and moves the account, or raises; never writes one without the other.

    Inside a transaction, a keyed post runs in a savepoint so that losing a race for the key can be
    answered with the winner's row. ``savepoint=False`` skips it (two fewer round trips): losing the race
    then raises the ``IntegrityError`` and the caller retries its whole transaction. ``entry_id``: the new row's
    id chosen by the caller (a row of its own that points at the entry is written in the same transaction)."""
    _require_whole_micros(posting)
    with_key = posting.idempotency_key is not None
    digest = _posting_hash(posting) if with_key else ""
    params = _params(account_id, posting, digest, entry_id)
    in_transaction = connection.in_atomic_block
    use_savepoint = with_key and in_transaction and savepoint is not False
    try:
        row = _execute(sql.POSTINGS[(posting.transaction_type, with_key)], params, savepoint=use_savepoint)
    except IntegrityError as exc:
        if not (with_key and is_idempotency_race(exc)) or (in_transaction and not use_savepoint):
            raise
        row = None  # the winner's row is read below
    if row is not None:
        created, entry = row[0], _entry_from_row(row)
    elif with_key and (entry := _prior_entry(account_id, posting.idempotency_key)) is not None:
        # Lost the race for the key; or a concurrent first use committed while this statement waited for the
        # account row: its snapshot did not see that row, and the re-checked conditions (the winner's change
        # applied) refused the update. A fresh look finds the winner's row.
        created = False
    else:
        _raise_refusal(account_id, posting)
    if not created and entry.request_hash != digest:
        raise IdempotencyConflict(details={"idempotency_key": posting.idempotency_key})
    if created:
        _after_posting(account_id, posting, entry, row)
    return PostResult(entry=entry, replayed=not created)


def chained_params(
    account_id: uuid.UUID, posting: Posting, *, platform_id: int, entry_id: uuid.UUID
) -> dict[str, Any]:
    """The parameters of a chained posting statement for this posting (the caller adds its own)."""
    _require_whole_micros(posting)
    if posting.idempotency_key is None:
        raise ValueError("a chained post is keyed")
    return _params(account_id, posting, _posting_hash(posting), entry_id) | {"platform_id": platform_id}


def post_chained(statement: str, params: dict[str, Any], posting: Posting) -> LedgerEntry | None:
    """Runs a chained posting statement (``credits.sql.posting_statement`` with ``then``) in autocommit (one statement, its own transaction): the new row, or None
    when nothing was written (the key is used, the account is not the platform's or lacks the credits: the
    caller's general path finds out which). A unique violation (a concurrent twin) raises IntegrityError."""
    with server_bound_cursor() as cursor:
        cursor.execute(statement, params, prepare=True)
        row = cursor.fetchone()
    if row is None:
        return None
    entry = _entry_from_row(row)
    _after_posting(params["account_id"], posting, entry, row)
    return entry


def _require_whole_micros(posting: Posting) -> None:
    # PostgreSQL would round the account's new balance and the row's delta separately (half away from zero),
    # so a finer amount could leave them disagreeing (10 - 0.0000005 keeps 10.000000 but records -0.000001).
    if not (_whole_micros(posting.balance_delta) and _whole_micros(posting.reserved_delta)):
        raise ValueError(
            f"amounts have at most {DECIMAL_PLACES} decimal places, got "
            f"{posting.balance_delta!r} / {posting.reserved_delta!r}"
        )


def _params(
    account_id: uuid.UUID | str, posting: Posting, digest: str, entry_id: uuid.UUID | None
) -> dict[str, Any]:
    return {
        "id": entry_id or uuid.uuid4(),
        "account_id": account_id,
        "transaction_type": posting.transaction_type,
        "status": "completed",
        "balance_delta": posting.balance_delta,
        "reserved_delta": posting.reserved_delta,
        "payment_amount_usd": posting.payment_amount_usd,
        "description": posting.description,
        "reference": posting.reference,
        "metadata": json.dumps(posting.metadata or {}),
        "actor_id": posting.actor_id,
        "hold_id": posting.hold_id,
        "refund_of_id": posting.refund_of_id,
        "idempotency_key": posting.idempotency_key,
        "request_hash": digest,
        "max_balance": MAX_BALANCE,
        "carried_before": posting.carried[0] if posting.carried else None,
        "carried_after": posting.carried[1] if posting.carried else None,
    }


def _after_posting(account_id: uuid.UUID | str, posting: Posting, entry: LedgerEntry, row: tuple) -> None:
    """What a written row sets off, from what its statement returned (``low_balance_threshold``, the balance alerts
    it recorded): no query on the hot path."""
    threshold, alerts = row[-2], row[-1]
    metrics.ledger_posted(posting.transaction_type, entry.balance_delta)
    # The account's low_balance_threshold came back with the update (NULL: no hook).
    if threshold is not None and posting.balance_delta < 0 and entry.balance_after - entry.reserved_after < threshold:
        low_balance_hook()(account_id)
    if alerts:
        outbound.deliver_on_commit()


@lru_cache(maxsize=1)
def low_balance_hook() -> Callable[[uuid.UUID | str], None]:
    """``settings.CREDITS_LOW_BALANCE_HOOK``: called after a debit leaves an account's ``available`` below its
    ``low_balance_threshold`` (payments schedules a recharge after commit). Credits does not import payments."""
    path = getattr(settings, "CREDITS_LOW_BALANCE_HOOK", "")
    return import_string(path) if path else (lambda account_id: None)


def _entry_from_row(row: tuple) -> LedgerEntry:
    """The entry of a posting statement's row (``created``, the row's columns, the threshold, the alerts)."""
    values = list(row[1 : 1 + _N])
    for i, field in _CONVERTERS:
        values[i] = field.from_db_value(values[i], None, connection)
    return LedgerEntry.from_db(connection.alias, _ATTNAMES, values)


def _execute(statement: str, params: dict[str, Any], *, savepoint: bool) -> tuple | None:
    """Runs one of the prepared ledger statements: PostgreSQL plans it once per connection, not per call."""
    if savepoint:
        with transaction.atomic(), server_bound_cursor() as cursor:
            cursor.execute(statement, params, prepare=True)
            return cursor.fetchone()
    with server_bound_cursor() as cursor:
        cursor.execute(statement, params, prepare=True)
        return cursor.fetchone()


def is_idempotency_race(exc: IntegrityError) -> bool:
    """Whether ``exc`` is the loss of a race for a ledger idempotency key."""
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None) == _IDEMPOTENCY_CONSTRAINT


def _prior_entry(account_id: uuid.UUID | str, key: str) -> LedgerEntry | None:
    return ledger_entry_by_key(account_id=account_id, key=key)


def _raise_refusal(account_id: uuid.UUID | str, posting: Posting) -> None:
    """The statement changed nothing: say why."""
    account = CreditAccount.objects.filter(pk=account_id).only("balance", "reserved", "carried_remainder").first()
    if account is None:
        raise AccountNotFound()
    if posting.carried is not None and account.carried_remainder != posting.carried[0]:
        # Only ``post_chained`` (no lock) may find the remainder moved; ``post`` runs under the account's lock.
        raise RuntimeError("the account's carried remainder changed under a locked charge")
    if account.balance + posting.balance_delta > MAX_BALANCE:
        raise BalanceLimitExceeded()
    required = posting.reserved_delta - posting.balance_delta
    raise InsufficientCredits(
        details={"available": format_money(account.available), "required": format_money(required)}
    )


# --- many postings at once ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Posted:
    """What ``post_many`` applied: a row, or for a charge whose debit is below a quantum only a new carried
    remainder (``id`` None, ``charged`` 0)."""

    id: uuid.UUID | None
    account_id: uuid.UUID
    sequence: int
    balance_after: Decimal
    reserved_after: Decimal
    charged: Decimal = Decimal(0)  # a charge's debit (positive)


@dataclass(slots=True)
class _AccountState:
    platform_id: int
    last_entry_at: Any
    values: dict[str, Any]
    low_balance_threshold: Decimal | None = None  # None: no hook
    external_funding: bool = False  # its usage is offered to the funder first (``credits.funding``)
    alert_threshold: Decimal | None = None  # None: no balance alerts (``sql.alert_events``)
    user_id: int | None = None


def post_many(
    postings: list[tuple[uuid.UUID, Posting]], *, states: dict[uuid.UUID, _AccountState] | None = None
) -> list[Posted | InsufficientCredits]:
    """Applies many postings inside the caller's transaction, in order, each accepted or refused on its own
    exactly as ``post`` would (a refusal is returned, not raised, and writes nothing for that posting).

    Locks the accounts once, in primary-key order (so concurrent batches never deadlock), writes every
    accepted row with one COPY and every account with one UPDATE. Idempotency keys are not looked up here:
    the caller has already filtered replays under the same locks (``states`` from ``lock_accounts``); the
    unique index still guards them."""
    if not connection.in_atomic_block:
        raise RuntimeError("post_many must run inside a transaction")
    for _, posting in postings:
        if not (_whole_micros(posting.balance_delta) and _whole_micros(posting.reserved_delta)):
            raise ValueError(f"amounts have at most {DECIMAL_PLACES} decimal places")
    if states is None:
        states = lock_accounts({account_id for account_id, _ in postings})
    results: list[Posted | InsufficientCredits] = []
    rows: list[tuple] = []
    changed: set[uuid.UUID] = set()
    low: set[uuid.UUID] = set()
    alerts: list[tuple] = []  # the changes of accounts with an alert threshold, as ``sql.ALERTS_BATCH`` takes them
    for account_id, posting in postings:
        state = states.get(account_id)
        if state is None:
            raise AccountNotFound(details={"account_id": str(account_id)})
        result, row = _apply(account_id, state, posting)
        results.append(result)
        if isinstance(result, InsufficientCredits):
            continue
        changed.add(account_id)
        if row is None:
            continue
        rows.append(row)
        if state.alert_threshold is not None:
            after = result.balance_after - result.reserved_after
            alerts.append((state.platform_id, account_id, state.user_id, state.alert_threshold, after,
                           after - row[6] + row[7], state.last_entry_at))
        threshold = state.low_balance_threshold
        if row[6] < 0 and threshold is not None and result.balance_after - result.reserved_after < threshold:
            low.add(account_id)
    for account_id in sorted(low, key=_by_uuid):
        low_balance_hook()(account_id)
    _write_many(rows, [(account_id, states[account_id]) for account_id in sorted(changed, key=_by_uuid)])
    if alerts:
        _alerts_record(alerts)
    return results


def _alerts_record(changes: list[tuple]) -> None:
    """The balance alerts of a batch's changes, by the one rule (``sql.alert_events``), in one statement."""
    with server_bound_cursor() as cursor:
        cursor.execute(sql.ALERTS_BATCH, [list(column) for column in zip(*changes, strict=True)])
        if cursor.rowcount:
            outbound.deliver_on_commit()


def _apply(
    account_id: uuid.UUID, state: _AccountState, posting: Posting
) -> tuple[Posted | InsufficientCredits, tuple | None]:
    """One posting applied to a locked account's state, as ``post`` would: (what was posted, the ledger row to
    write, in ``sql.COPY_ENTRY_COLUMNS``' order; None for a charge below a quantum, only carried), or the
    refusal (the state unchanged)."""
    values = state.values
    carried_after = None
    balance_delta, reserved_delta = posting.balance_delta, posting.reserved_delta
    if posting.charge is not None:
        debit, carried_after = charge_split(values["carried_remainder"], posting.charge)
        if debit == 0:  # below a quantum: carried, no row
            values["carried_remainder"] = carried_after
            return Posted(None, account_id, values["last_sequence"], values["balance"], values["reserved"]), None
        balance_delta = -debit
    balance = values["balance"] + balance_delta
    reserved = values["reserved"] + reserved_delta
    if balance < reserved or reserved < 0 or balance > MAX_BALANCE:
        available, required = values["balance"] - values["reserved"], reserved_delta - balance_delta
        return InsufficientCredits(
            details={"available": format_money(available), "required": format_money(required)}
        ), None
    if carried_after is not None:
        values["carried_remainder"] = carried_after
    values["balance"], values["reserved"] = balance, reserved
    values["last_sequence"] += 1
    values[f"count_{posting.transaction_type}"] += 1
    entry_id = uuid.uuid4()
    row = (
        entry_id, account_id, state.platform_id, values["last_sequence"], posting.transaction_type, "completed",
        balance_delta, reserved_delta, balance, reserved, posting.payment_amount_usd,
        posting.description, posting.reference, json.dumps(posting.metadata or {}), posting.actor_id,
        posting.hold_id, posting.refund_of_id, posting.idempotency_key,
        _posting_hash(posting) if posting.idempotency_key is not None else "", state.last_entry_at,
    )
    charged = -balance_delta if carried_after is not None else Decimal(0)
    return Posted(entry_id, account_id, values["last_sequence"], balance, reserved, charged=charged), row


def _write_many(rows: list[tuple], touched: list[tuple[uuid.UUID, _AccountState]]) -> None:
    """The rows by one COPY, the accounts' new state by one UPDATE."""
    with server_bound_cursor() as cursor:
        if rows:
            with cursor.copy(sql.COPY_ENTRIES) as copy:
                for row in rows:
                    copy.write_row(row)
            metrics.ledger_posted_many((row[4], row[6]) for row in rows)
        if touched:
            with_rows = {row[1] for row in rows}
            cursor.execute(
                sql.UPDATE_ACCOUNTS,
                [
                    [account_id for account_id, _ in touched],
                    # an account whose carried remainder alone changed keeps the time of its last row
                    [s.last_entry_at if account_id in with_rows else None for account_id, s in touched],
                    *([s.values[c] for _, s in touched] for c in sql.ACCOUNT_STATE_COLUMNS),
                ],
            )


def lock_accounts(account_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, _AccountState]:
    """Locks the accounts (``credits.locks.accounts_lock``: in primary-key order); their state, with the time
    new rows will carry (never earlier than an account's last row, so created_at stays ordered along the
    sequence). Missing accounts are left out."""
    states = {}
    n = len(sql.ACCOUNT_STATE_COLUMNS)
    for row in accounts_lock(list(account_ids)):
        account_id, platform_id, last_entry_at = row[0], row[1], row[2]
        now = row[3 + n]
        states[account_id] = _AccountState(
            platform_id=platform_id,
            last_entry_at=max(now, last_entry_at) if last_entry_at else now,
            values=dict(zip(sql.ACCOUNT_STATE_COLUMNS, row[3 : 3 + n], strict=True)),
            low_balance_threshold=row[4 + n],
            external_funding=row[5 + n],
            alert_threshold=row[6 + n],
            user_id=row[7 + n],
        )
    return states


def _by_uuid(account_id: uuid.UUID) -> int:
    return account_id.int  # PostgreSQL's order of uuids, without Python-level comparisons
