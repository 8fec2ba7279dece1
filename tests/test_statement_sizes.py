"""The prepared statements of the hot paths stay small enough for psycopg's cache of parsed queries: one longer
than ``MAX_CACHED_STATEMENT_LENGTH`` is parsed again on every call (about 300 us on this machine, 10 % of a
usage event's whole request), which is how adding two columns to the one-statement usage path once slowed it."""

from __future__ import annotations

import pytest
from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH

from credits import sql as credits_sql
from payments import sql as payments_sql

STATEMENTS = {
    "usage: one statement": credits_sql.RECORD_CHARGED,
    "usage: event and rollup": credits_sql.INSERT_EVENT,
    "usage: lock": credits_sql.LOCK_FOR_USAGE,
    "webhook: store": payments_sql._INSERT_EVENT,
    **{f"ledger: {kind} keyed={keyed}": sql for (kind, keyed), sql in credits_sql.POSTINGS.items()},
}


@pytest.mark.parametrize("name", list(STATEMENTS))
def test_a_hot_statement_fits_psycopgs_query_cache(name):
    assert len(STATEMENTS[name].encode()) <= MAX_CACHED_STATEMENT_LENGTH, name
