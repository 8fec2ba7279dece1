"""The raw SQL of the credits app, in one place. Only what the ORM cannot say is written out here:

- the ledger's one-statement posting (``posting_statement``): a conditional ``UPDATE ... RETURNING`` of the
  account feeding the ``INSERT`` of its ledger row, with the idempotency key looked up in the same statement;
  and its chained form, which also writes the usage event and its rollup (the one-statement usage path);
- the set-based writes of a batch: ``COPY`` of ledger rows and usage events, ``UPDATE ... FROM unnest`` of the
  accounts, the rollup upsert (``INSERT ... ON CONFLICT DO UPDATE``), the replay look-up of a thousand
  request_ids at once;
- the account locks that take many rows at once or return state with the lock (run by ``credits.locks`` only).

Statements on the hot paths are prepared (``billing_service.db.server_bound_cursor``, ``prepare=True``) and stay
under psycopg's cache of parsed queries (4,096 bytes, ``tests/test_statement_sizes.py``). Queries the ORM can say
but that run on the hot path are stated with the ORM and compiled once (``billing_service.db.Compiled``)."""

from __future__ import annotations

from typing import Any

from django.db import connection

from accounts.models import Platform
from accounts.outbound_models import OutboundEvent
from credits.models import (
    Checkin, CheckinConfig, CreditAccount, Hold, LedgerEntry, LedgerKey, TransactionType, UsageEvent, UsageKey,
    UsageRollup,
)

ENTRY_TABLE = LedgerEntry._meta.db_table
ACCOUNT_TABLE = CreditAccount._meta.db_table
EVENT_TABLE = UsageEvent._meta.db_table
HOLD_TABLE = Hold._meta.db_table
ROLLUP_TABLE = UsageRollup._meta.db_table
OUTBOX_TABLE = OutboundEvent._meta.db_table
KEY_TABLE = LedgerKey._meta.db_table

# --- the ledger: one posting in one statement --------------------------------------------------------------

ENTRY_FIELDS = list(LedgerEntry._meta.concrete_fields)
ENTRY_COLUMNS = [f.column for f in ENTRY_FIELDS]
_ENTRY_COLS = ", ".join(ENTRY_COLUMNS)
_PRIOR_COLS = ", ".join(f"e.{c}" for c in ENTRY_COLUMNS)
# Values computed from the updated account row; the rest come from parameters.
_FROM_ACCOUNT = {
    "account_id": "acct.id",
    "platform_id": "acct.platform_id",
    "sequence": "acct.last_sequence",
    "balance_after": "acct.balance",
    "reserved_after": "acct.reserved",
    "created_at": "acct.last_entry_at",
}
_INSERT_VALUES = ", ".join(
    _FROM_ACCOUNT.get(col, "%(metadata)s::jsonb" if col == "metadata" else f"%({col})s") for col in ENTRY_COLUMNS
)


def alert_events(source: str) -> str:
    """The one statement of the balance alerts: for each change of ``source`` (a relation with the account's
    platform ``p``, id ``i``, user ``u``, alert threshold ``t``, ``available`` before ``o`` and after ``n``, and the
    time ``w``), a ``balance.low`` event when it takes ``available`` from at least the threshold to below it, and a
    ``balance.depleted`` event when it takes it to zero; nothing for an account without a threshold. Recorded in the
    outbox of outbound webhooks (``accounts.outbound``), in the change's own statement or transaction."""
    return (
        f"INSERT INTO {OUTBOX_TABLE} (platform_id, account_id, type, data, created_at) SELECT p, i, k, "
        "jsonb_build_object('user_id', u, 'available', n, 'threshold', t), w FROM "
        f"{source} a, (VALUES ('balance.low'), ('balance.depleted')) v(k) WHERE t IS NOT NULL AND CASE k "
        "WHEN 'balance.low' THEN o >= t AND n < t ELSE o > 0 AND n = 0 END RETURNING 1"
    )


def posting_statement(transaction_type: str, *, with_key: bool, then: str = "", unfunded: bool = False) -> str:
    """One posting (``credits.ledger.post``): returns ``created, <the row's columns>, low_balance_threshold, alerts``
    (a replay: ``false`` and the stored row; ``alerts``: the balance alerts it recorded, ``alert_events``).
    ``then``: more CTEs after ``ins`` (the new row); with it, the account must also be of %(platform_id)s, and the
    statement returns the new row only (nothing on a replay). ``unfunded``: the account must not be funded
    externally (the usage path's one statement: a seat's usage takes the general path, ``credits.funding``)."""
    counter = f"count_{transaction_type}"
    replays = with_key and not then  # a replay returns the stored row
    # The key's row, through the key table: it knows the row's month (one partition read, not every month's).
    prior = (
        f"prior AS (SELECT {_PRIOR_COLS if replays else 1} FROM {KEY_TABLE} k JOIN {ENTRY_TABLE} e ON e.id = "
        f"k.entry_id AND e.created_at = k.created_at WHERE k.account_id = %(account_id)s "
        f"AND k.idempotency_key = %(idempotency_key)s), "
        if with_key
        else ""
    )
    return (
        f"WITH {prior}acct AS ("
        f"UPDATE {ACCOUNT_TABLE} SET balance = balance + %(balance_delta)s, "
        f"reserved = reserved + %(reserved_delta)s, last_sequence = last_sequence + 1, "
        f"{counter} = {counter} + 1, last_entry_at = GREATEST(clock_timestamp(), last_entry_at), "
        f"carried_remainder = COALESCE(%(carried_after)s::numeric, carried_remainder) "
        f"WHERE id = %(account_id)s{' AND platform_id = %(platform_id)s' if then else ''}"
        f"{' AND NOT external_funding' if unfunded else ''} "
        f"AND carried_remainder = COALESCE(%(carried_before)s::numeric, carried_remainder) "
        f"AND balance + %(balance_delta)s >= reserved + %(reserved_delta)s "
        f"AND reserved + %(reserved_delta)s >= 0 AND balance + %(balance_delta)s <= %(max_balance)s"
        f"{' AND NOT EXISTS (SELECT 1 FROM prior)' if with_key else ''} "
        f"RETURNING *), "
        f"ins AS (INSERT INTO {ENTRY_TABLE} ({_ENTRY_COLS}) SELECT {_INSERT_VALUES} FROM acct RETURNING *), "
        f"al AS ({alert_events(_ALERT_SOURCE)})"
        f"{then} SELECT true, {_ENTRY_COLS}, (SELECT low_balance_threshold FROM acct), (SELECT count(*) FROM al) "
        f"FROM ins{f' UNION ALL SELECT false, {_ENTRY_COLS}, NULL, 0 FROM prior' if replays else ''}"
    )


# The posting's account before and after, for its alerts.
_ALERT_SOURCE = (
    "(SELECT platform_id p, id i, user_id u, alert_threshold t, balance - reserved n, "
    "balance - reserved - %(balance_delta)s + %(reserved_delta)s o, last_entry_at w FROM acct)"
)

POSTINGS = {
    (t, with_key): posting_statement(t, with_key=with_key)
    for t in TransactionType.values
    for with_key in (False, True)
}

# --- the ledger: many postings at once (inside the caller's transaction, accounts locked) ------------------

ACCOUNT_STATE_COLUMNS = [
    "balance", "reserved", "carried_remainder", "last_sequence", *(f"count_{t}" for t in TransactionType.values)
]
_NUMERIC_STATE = ("balance", "reserved", "carried_remainder")
# Many accounts locked in one round trip, in primary-key order: their state, the time new rows will carry.
LOCK_ACCOUNTS = (
    f"SELECT id, platform_id, last_entry_at, {', '.join(ACCOUNT_STATE_COLUMNS)}, clock_timestamp(), "
    f"low_balance_threshold, external_funding, alert_threshold, user_id FROM {ACCOUNT_TABLE} "
    f"WHERE id = ANY(%b::uuid[]) ORDER BY id FOR UPDATE"
)
# The balance alerts of a batch's postings (``credits.ledger.post_many``), by the same rule as one posting's.
ALERTS_BATCH = alert_events(
    "(SELECT * FROM unnest(%b::bigint[], %b::uuid[], %b::bigint[], %s::numeric[], %s::numeric[], %s::numeric[], "
    "%b::timestamptz[]) AS x(p, i, u, t, n, o, w))"
)
UPDATE_ACCOUNTS = (
    f"UPDATE {ACCOUNT_TABLE} AS a SET last_entry_at = COALESCE(v.last_entry_at, a.last_entry_at), "
    + ", ".join(f"{c} = v.{c}" for c in ACCOUNT_STATE_COLUMNS)
    + " FROM unnest(%b::uuid[], %b::timestamptz[], "
    + ", ".join("%b::numeric[]" if c in _NUMERIC_STATE else "%b::bigint[]" for c in ACCOUNT_STATE_COLUMNS)
    + f") AS v(id, last_entry_at, {', '.join(ACCOUNT_STATE_COLUMNS)}) WHERE a.id = v.id"
)
# The columns of the rows post_many builds, in their order.
COPY_ENTRY_COLUMNS = (
    "id", "account_id", "platform_id", "sequence", "transaction_type", "status", "balance_delta", "reserved_delta",
    "balance_after", "reserved_after", "payment_amount_usd", "description", "reference", "metadata", "actor_id",
    "hold_id", "refund_of_id", "idempotency_key", "request_hash", "created_at",
)
COPY_ENTRIES = f"COPY {ENTRY_TABLE} ({', '.join(COPY_ENTRY_COLUMNS)}) FROM STDIN"

# --- usage events and their rollups ------------------------------------------------------------------------

# Every usage event is written with these columns, in this order (``credits.services.usage_events.event_row``).
EVENT_FIELDS = list(UsageEvent._meta.concrete_fields)
EVENT_COLUMNS = [f.column for f in EVENT_FIELDS]
_EVENT_COLS = ", ".join(EVENT_COLUMNS)
# Short parameter names (e0, e1...): the one statement stays under psycopg's cache of parsed queries (4096 bytes,
# psycopg._queries.MAX_CACHED_STATEMENT_LENGTH); a longer one is parsed again on every call.
EVENT_PARAMS = [f"e{i}" for i in range(len(EVENT_FIELDS))]


def _param_type(field: Any) -> str:
    """A parameter's type: the column's, but ``text`` for strings (a cast to ``varchar(n)`` would truncate a
    longer value silently; the column itself refuses it)."""
    if field.get_internal_type() == "DateTimeField":
        return "timestamptz"  # the same type, shorter (the statement stays under the cache's limit)
    return "text" if field.get_internal_type() in ("CharField", "TextField") else field.cast_db_type(connection)


def rollup_upsert(events: str) -> str:
    """The one statement of the rollup rule: every event of ``events`` (a relation with the event's account_id,
    occurred_at, endpoint, success, cost, input_tokens, output_tokens) counts in the rollup of its account, UTC
    day and endpoint: one request, successful or failed, its exact cost and its tokens."""
    return (
        f"INSERT INTO {ROLLUP_TABLE} AS r (account_id, day, endpoint, total_requests, successful_requests, "
        f"failed_requests, credits_consumed, input_tokens, output_tokens) "
        f"SELECT account_id, (occurred_at AT TIME ZONE 'UTC')::date, endpoint, count(*), count(*) FILTER (WHERE "
        f"success), count(*) FILTER (WHERE NOT success), sum(cost), coalesce(sum(input_tokens), 0), "
        f"coalesce(sum(output_tokens), 0) FROM {events} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 "
        "ON CONFLICT (account_id, day, endpoint) DO UPDATE SET "
        "total_requests = r.total_requests + EXCLUDED.total_requests, "
        "successful_requests = r.successful_requests + EXCLUDED.successful_requests, "
        "failed_requests = r.failed_requests + EXCLUDED.failed_requests, "
        "credits_consumed = r.credits_consumed + EXCLUDED.credits_consumed, "
        "input_tokens = r.input_tokens + EXCLUDED.input_tokens, "
        "output_tokens = r.output_tokens + EXCLUDED.output_tokens"
    )


_EVENT_RETURNS = "RETURNING account_id, occurred_at, endpoint, success, cost, input_tokens, output_tokens"
# An event's values from its named parameters (e0, e1...: ``EVENT_PARAMS``).
_EVENT_VALUES = ", ".join(f"%({p})s::{_param_type(f)}" for p, f in zip(EVENT_PARAMS, EVENT_FIELDS, strict=True))
_EVENT_PARAM = dict(zip(EVENT_COLUMNS, EVENT_PARAMS, strict=True))
# One event: insert it unless its request_id is known (claimed in ``UsageKey``), and add it to its rollup only if
# inserted.
INSERT_EVENT = (
    f"WITH ev AS (INSERT INTO {EVENT_TABLE} ({_EVENT_COLS}) SELECT {_EVENT_VALUES} WHERE NOT EXISTS (SELECT 1 FROM "
    f"{UsageKey._meta.db_table} WHERE account_id = %({_EVENT_PARAM['account_id']})s "
    f"AND request_id = %({_EVENT_PARAM['request_id']})s) {_EVENT_RETURNS}), "
    f"ru AS ({rollup_upsert('ev')}) SELECT count(*) FROM ev"
)
# A charged event recorded for the first time, in one statement: the ledger's keyed debit of an account of the
# platform, then the event (only if the debit was written) and its rollup.
RECORD_CHARGED = posting_statement(
    TransactionType.SUBTRACT,
    with_key=True,
    unfunded=True,
    then=(
        f", ev AS (INSERT INTO {EVENT_TABLE} ({_EVENT_COLS}) SELECT {_EVENT_VALUES} FROM ins {_EVENT_RETURNS}), "
        f"ru AS ({rollup_upsert('ev')})"
    ),
)
# The general path's lock (``credits.locks.account_lock_for_usage``): the account of the platform, with what a
# charge needs to know under the lock.
LOCK_FOR_USAGE = (
    f"SELECT carried_remainder, balance, reserved, external_funding FROM {ACCOUNT_TABLE} "
    f"WHERE id = %s AND platform_id = %s "
    f"FOR UPDATE"
)
COPY_EVENTS = f"COPY {EVENT_TABLE} ({_EVENT_COLS}) FROM STDIN"
ROLLUP_BATCH = rollup_upsert(
    "unnest(%b::uuid[], %b::timestamptz[], %s::text[], %b::bool[], %s::numeric[], %b::bigint[], %b::bigint[]) "
    "AS ev(account_id, occurred_at, endpoint, success, cost, input_tokens, output_tokens)"
)
# What a batch's request_ids already name, in one round trip: recorded events (is_hold false: their hash, id and
# ledger row) and holds (is_hold true: their status and id).
FIND_CALLS = (
    f"WITH k AS MATERIALIZED (SELECT * FROM unnest(%b::uuid[], %s::text[]) AS k(account_id, request_id)) "
    f"SELECT false, account_id, request_id, request_hash, id, ledger_entry_id FROM {EVENT_TABLE} "
    f"WHERE (account_id, request_id) IN (SELECT * FROM k) UNION ALL "
    f"SELECT true, account_id, request_id, status, id, NULL FROM {HOLD_TABLE} "
    f"WHERE (account_id, request_id) IN (SELECT * FROM k)"
)

# A day's check-in granting credits, in one statement: the keyed ``checkin`` row (``checkin:<day>``: once per day),
# then the day's check-in row, with the moment its credits expire (NULL: never) (``credits.services.checkin``).
CHECKIN_GRANT = posting_statement(
    TransactionType.CHECKIN,
    with_key=True,
    then=(
        f", ck AS (INSERT INTO {Checkin._meta.db_table} (account_id, day, streak, credits, ledger_entry_id, "
        f"created_at, expires_at) SELECT account_id, %(day)s, %(streak)s, balance_delta, id, created_at, "
        f"%(expires_at)s::timestamptz FROM ins)"
    ),
)


def _checkin_state(account: str) -> str:
    """What a check-in decides its credits from, in one read (``credits.services.checkin``): the platform's time
    zone, its check-in settings (NULLs: none), the member's account (``account``: how it is found) and that
    account's check-ins of the days %(first)s..%(last)s (day, streak, credits: arrays)."""
    return (
        f"SELECT p.time_zone, c.enabled, c.credits_per_day, c.streak_bonuses::text, c.monthly_cap, "
        f"c.credits_expire_after_days, a.id, k.days, k.streaks, k.credits FROM {Platform._meta.db_table} p "
        f"LEFT JOIN {CheckinConfig._meta.db_table} c ON c.platform_id = p.id "
        f"LEFT JOIN {ACCOUNT_TABLE} a ON a.platform_id = p.id AND {account} "
        f"LEFT JOIN LATERAL (SELECT array_agg(day) AS days, array_agg(streak) AS streaks, array_agg(credits) AS "
        f"credits FROM {Checkin._meta.db_table} WHERE account_id = a.id AND day BETWEEN %(first)s AND %(last)s) k "
        f"ON true WHERE p.id = %(platform_id)s"
    )


CHECKIN_STATE_OF_USER = _checkin_state("a.user_id = %(user_id)s")
CHECKIN_STATE_OF_ACCOUNT = _checkin_state("a.id = %(account_id)s")
# The usage an account spent between the events of its expiring check-in lots (``credits.services.expiry``): its
# ``subtract`` rows after the first lot's grant and before the last lot's expiry, summed per interval; an interval
# is (how many of the lots' grants precede the row, by sequence; how many of their expiries, by time).
CHECKIN_LOTS_SPENT = (
    f"SELECT width_bucket(sequence, %(grants)s::bigint[]), width_bucket(created_at, %(expiries)s::timestamptz[]), "
    f"sequence > %(mark)s, -sum(balance_delta) FROM {ENTRY_TABLE} WHERE account_id = %(account_id)s AND "
    f"transaction_type = '{TransactionType.SUBTRACT}' AND sequence > %(after)s AND created_at < %(until)s "
    f"GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
)
