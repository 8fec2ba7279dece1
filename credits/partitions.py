"""History that grows without end: the ledger's rows and the usage events are partitioned by month (PostgreSQL
declarative partitioning: ranges of ``created_at`` and of ``recorded_at``, months in UTC), so that an old month
can be detached to cheap storage and what is read stays as fast at ten million rows as at one.

- ``partitions_ensure`` creates the months from this one through ``PARTITION_MONTHS_AHEAD`` ahead: the beat runs it
  four times a day and every ``migrate`` does (``credits.apps``). A row of a month that has none lands in the
  table's default partition (never refused), which should stay empty.
- ``partition_detach`` detaches the oldest attached month of a table into a table of its own (dump it, move it
  to a cheap tablespace or drop it), in one transaction with what that month held per account
  (``ArchivedTotals``: the ledger's invariants still add up) and without its keys.

PostgreSQL requires a partitioned table's unique indexes and the targets of foreign keys to include the partition
key; what spans every month is kept here instead:
- an idempotency key and a request_id are used once per account: every statement that writes history claims its
  keys in an unpartitioned key table (``KEY_CLAIMS``: a statement trigger, set-based for ``COPY``);
- ``(account, sequence)`` is unique by an index of each month (and across months by the account's counter, which
  numbers the rows under its row lock; ``verify_ledger`` checks that no number is missing or repeated);
- a reference to a partitioned row (an order's ledger row, a seat charge's usage event...) is checked at commit by
  a constraint trigger (``reference_check_sql``), as a foreign key would be; and a usage event that one names
  cannot be deleted (ledger rows cannot be deleted at all)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, date, datetime

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Field
from django.utils import timezone

from credits.errors import HistoryError
from credits.models import ArchivedTotals, LedgerEntry, LedgerKey, UsageEvent, UsageKey

LEDGER = LedgerEntry._meta.db_table
EVENTS = UsageEvent._meta.db_table
# The partitioned tables: the column their months are ranges of.
HISTORY = {LEDGER: "created_at", EVENTS: "recorded_at"}

# What the statement trigger of each claims, from the rows a statement wrote (``credits.models``): the
# key table, its column naming the row, and the claim.
KEY_CLAIMS = {
    LEDGER: (LedgerKey._meta.db_table, "entry_id",
             f"INSERT INTO {LedgerKey._meta.db_table} (account_id, idempotency_key, entry_id, created_at) "
             "SELECT account_id, idempotency_key, id, created_at FROM new_rows WHERE idempotency_key IS NOT NULL"),
    EVENTS: (UsageKey._meta.db_table, "event_id",
             f"INSERT INTO {UsageKey._meta.db_table} (account_id, request_id, event_id, recorded_at) "
             "SELECT account_id, request_id, id, recorded_at FROM new_rows"),
}
logger = logging.getLogger(__name__)
_MONTH = re.compile(r"_(\d{4})_(\d{2})$")
_LOCK_TIMEOUT = "5s"  # a partition created or detached waits this long for the table, then gives up (retried)


@dataclass(frozen=True, slots=True)
class Reference:
    """A column naming a partitioned row, checked by triggers instead of a foreign key."""

    table: str
    column: str
    target: str  # the partitioned table
    field: Field = dataclass_field(compare=False, repr=False)

    @property
    def name(self) -> str:
        return f"{self.table}_{self.column}_ref"[:63]


def month_start(moment: date | datetime) -> date:
    return date(moment.year, moment.month, 1)


def month_after(month: date, months: int = 1) -> date:
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def partition_name(table: str, month: date) -> str:
    return f"{table}_{month:%Y_%m}"


def _instant(month: date) -> datetime:
    return datetime(month.year, month.month, 1, tzinfo=UTC)


def partition_months(table: str) -> list[date] | None:
    """The months attached to ``table``, oldest first (None: it is not partitioned)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.relname FROM pg_class p LEFT JOIN pg_inherits i ON i.inhparent = p.oid "
                       "LEFT JOIN pg_class c ON c.oid = i.inhrelid WHERE p.oid = to_regclass(%s) AND p.relkind = 'p'",
                       [table])
        names = [row[0] for row in cursor.fetchall()]
    if not names:
        return None
    return sorted(date(int(m[1]), int(m[2]), 1) for name in names if name and (m := _MONTH.search(name)))


def partition_create(table: str, month: date | None) -> str:
    """Creates the partition of ``table`` (``HISTORY``) for ``month`` (None: its default partition) unless it
    exists; its name. Each month of the ledger gets its unique index of (account, sequence)."""
    name = partition_name(table, month) if month else f"{table}_default"
    bounds = "DEFAULT" if month is None else "FOR VALUES FROM (%s) TO (%s)"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
        # IF NOT EXISTS: a concurrent ensure (the beat and a migrate) may have created it since it was listed
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} {bounds}",
                       [_instant(month), _instant(month_after(month))] if month else None)
        if table == LEDGER:
            cursor.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {name}_sequence ON {name} (account_id, sequence)")
    return name


def partitions_ensure(*, since: date | None = None, months_ahead: int | None = None) -> list[str]:
    """Creates every missing month of the history tables from ``since`` (default: this month) through
    ``months_ahead`` months after this one (default: ``settings.PARTITION_MONTHS_AHEAD``), and their default
    partitions; the names created. Nothing while the tables are not partitioned (before ``credits`` 0013).

    The default partition takes a row of a month that has none (a clock far ahead, the beat stopped for months),
    so no write is ever refused for it; such a month is then left there (logged), as PostgreSQL cannot create a
    partition whose rows are in the default one."""
    this_month = month_start(timezone.now())
    ahead = settings.PARTITION_MONTHS_AHEAD if months_ahead is None else months_ahead
    last = month_after(this_month, ahead)
    created = []
    for table in HISTORY:
        attached = partition_months(table)
        if attached is None:
            continue
        if not _has_default(table):
            created.append(partition_create(table, None))
        month = min(since or this_month, this_month)
        while month <= last:
            if month not in attached:
                try:
                    created.append(partition_create(table, month))
                except IntegrityError:  # rows of the month are in the default partition
                    logger.error("history month left in the default partition", extra={
                        "table": table, "month": f"{month:%Y-%m}"})
            month = month_after(month)
    return created


def _has_default(table: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [f"{table}_default"])
        return cursor.fetchone()[0]


def references(apps: object = None) -> list[Reference]:
    """Every column of the project's models (or of a migration's ``apps``) naming a row of a partitioned table."""
    from django.apps import apps as current

    targets = set(HISTORY)
    found = []
    for model in (apps or current).get_models():
        for field in model._meta.concrete_fields:
            related = field.related_model if field.is_relation else None
            if related is not None and related._meta.db_table in targets:
                found.append(Reference(model._meta.db_table, field.column, related._meta.db_table, field))
    return found


def reference_check_sql(ref: Reference) -> str:
    """The triggers standing for a foreign key from ``ref``: checked at commit (deferred, as Django's foreign keys
    are), on insert and when the column changes."""
    fn = ref.name
    return f"""
CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM {ref.target} WHERE id = NEW.{ref.column};
    IF NOT FOUND THEN
        RAISE EXCEPTION 'insert or update on table "{ref.table}" violates reference "{fn}"'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = '{fn}',
                  DETAIL = format('Key ({ref.column})=(%s) is not present in table "{ref.target}".', NEW.{ref.column});
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER {fn}_insert AFTER INSERT ON {ref.table} DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.{ref.column} IS NOT NULL) EXECUTE FUNCTION {fn}();
CREATE CONSTRAINT TRIGGER {fn}_update AFTER UPDATE OF {ref.column} ON {ref.table} DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.{ref.column} IS NOT NULL AND NEW.{ref.column} IS DISTINCT FROM OLD.{ref.column})
    EXECUTE FUNCTION {fn}();
"""


def protect_sql(target: str, refs: list[Reference]) -> str:
    """A row of ``target`` that a reference names cannot be deleted (a foreign key's ``PROTECT``)."""
    fn = f"{target}_protect"
    checks = "\n".join(
        f"    IF EXISTS (SELECT 1 FROM {ref.table} WHERE {ref.column} = OLD.id) THEN\n"
        f"        RAISE EXCEPTION 'delete on table \"{target}\" violates reference \"{ref.name}\"'\n"
        f"            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = '{ref.name}';\n    END IF;"
        for ref in refs if ref.target == target
    )
    return f"""
CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
{checks}
    RETURN OLD;
END $$;
CREATE TRIGGER {fn} BEFORE DELETE ON {target} FOR EACH ROW EXECUTE FUNCTION {fn}();
"""


def key_claim_sql(table: str) -> str:
    """The statement trigger of ``table`` claiming the keys of the rows a statement wrote."""
    fn = f"{table}_claim_keys"
    return f"""
CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {KEY_CLAIMS[table][2]};
    RETURN NULL;
END $$;
CREATE TRIGGER {fn} AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {fn}();
"""


# --- detaching the oldest month ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Detached:
    table: str
    month: date
    rows: int
    accounts: int


def partition_references(table: str, month: date) -> dict[str, int]:
    """The rows of other tables (and of other months) that name a row of ``table``'s ``month``: per column."""
    name = partition_name(table, month)
    found = {}
    with connection.cursor() as cursor:
        for ref in references():
            if ref.target != table:
                continue
            # a refund in the same month as the row it refunds leaves with it
            own_month = f" AND r.tableoid <> '{name}'::regclass" if ref.table == ref.target else ""
            cursor.execute(f"SELECT count(*) FROM {ref.table} r WHERE r.{ref.column} IN (SELECT id FROM {name})"
                           f"{own_month}")
            if n := cursor.fetchone()[0]:
                found[f"{ref.table}.{ref.column}"] = n
    return found


def partition_detach(table: str, *, allow_references: bool = False, now: datetime | None = None) -> Detached:
    """Detaches the oldest attached month of ``table`` (``HISTORY``) into a table of its own, in one
    transaction with its per-account totals (``ArchivedTotals``) and the release of its keys. Refused for this
    month or a later one, and while rows elsewhere name its rows, unless ``allow_references`` (they then name
    rows of the detached table)."""
    months = partition_months(table)
    if not months:  # None or empty
        raise HistoryError("No attached month to detach.")
    month = months[0]
    if month_after(month) > month_start(now or timezone.now()):
        raise HistoryError(f"{month:%Y-%m} is not over: only months before the current one are detached.")
    name = partition_name(table, month)
    if not allow_references and (named := partition_references(table, month)):
        raise HistoryError(f"Rows name rows of {name}.", details={"references": named})
    with transaction.atomic(), connection.cursor() as cursor:
        rows, accounts = (_archive_ledger if table == LEDGER else _archive_usage)(cursor, name)
        key_table, key_column, _ = KEY_CLAIMS[table]
        cursor.execute(f"DELETE FROM {key_table} WHERE {key_column} IN (SELECT id FROM {name})")
        cursor.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
        cursor.execute(f"ALTER TABLE {table} DETACH PARTITION {name}")
    return Detached(table=table, month=month, rows=rows, accounts=accounts)


_TOTALS = ArchivedTotals._meta.db_table


def _archive(cursor, totals: str, per_account: str, on_conflict: str) -> tuple[int, int]:  # noqa: ANN001
    """Adds a month's per-account totals to ``ArchivedTotals``: ``totals`` (CTEs over the month's table) end in
    ``per_account`` (the rows of the insert, then their count ``n``); the rows read and the accounts written."""
    cursor.execute(
        f"WITH {totals}, up AS (INSERT INTO {_TOTALS} AS t (account_id, through_sequence, balance, reserved, counts, "
        f"usage_cost, usage_charged, usage_funded) SELECT {per_account} ON CONFLICT (account_id) DO UPDATE SET "
        f"{on_conflict} RETURNING 1) SELECT (SELECT COALESCE(sum(n), 0) FROM s), (SELECT count(*) FROM up)"
    )
    rows, accounts = cursor.fetchone()
    return int(rows), accounts


def _archive_ledger(cursor, name: str) -> tuple[int, int]:  # noqa: ANN001
    """A ledger month: the running totals after the last row of each account (its rows in an old month are a
    prefix of its rows) and the rows per type."""
    return _archive(
        cursor,
        f"per_type AS (SELECT account_id, transaction_type, count(*) n FROM {name} GROUP BY 1, 2), "
        f"s AS (SELECT account_id, jsonb_object_agg(transaction_type, n) c, sum(n) n FROM per_type GROUP BY 1), "
        f"last AS (SELECT DISTINCT ON (account_id) account_id, sequence, balance_after, reserved_after FROM {name} "
        f"ORDER BY account_id, sequence DESC)",
        "l.account_id, l.sequence, l.balance_after, l.reserved_after, s.c, 0, 0, 0 FROM last l JOIN s USING "
        "(account_id)",
        "through_sequence = EXCLUDED.through_sequence, balance = EXCLUDED.balance, reserved = EXCLUDED.reserved, "
        "counts = (SELECT jsonb_object_agg(k, COALESCE((t.counts ->> k)::bigint, 0) "
        "+ COALESCE((EXCLUDED.counts ->> k)::bigint, 0)) FROM jsonb_object_keys(t.counts || EXCLUDED.counts) k)",
    )


def _archive_usage(cursor, name: str) -> tuple[int, int]:  # noqa: ANN001
    """A usage month: its events' costs, charges and funded parts."""
    return _archive(
        cursor,
        f"s AS (SELECT account_id, count(*) n, sum(cost) cost, sum(charged) charged, sum(funded) funded FROM {name} "
        f"GROUP BY 1)",
        "account_id, 0, 0, 0, '{}', cost, charged, funded FROM s",
        "usage_cost = t.usage_cost + EXCLUDED.usage_cost, usage_charged = t.usage_charged + EXCLUDED.usage_charged, "
        "usage_funded = t.usage_funded + EXCLUDED.usage_funded",
    )

