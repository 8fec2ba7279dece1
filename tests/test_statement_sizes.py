"""The prepared statements of the hot paths stay small enough for psycopg's cache of parsed queries: one longer
than ``MAX_CACHED_STATEMENT_LENGTH`` is parsed again on every call (about 300 us on this machine, 10 % of a
usage event's whole request), which is how adding two columns to the one-statement usage path once slowed it."""

from __future__ import annotations

import pytest
from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH

from credits import ledger
from credits.services import usage
from payments import services as payment_services
from payments import webhook_fast_path

STATEMENTS = {
    "usage: one statement": usage._RECORD_CHARGED,
    "usage: event and rollup": usage._INSERT_ONE,
    "usage: lock": usage._LOCK_FOR_USAGE,
    "usage: the call's hold or event": usage._CALL_OF,
    "usage: carried remainder": usage._CARRIED_OF,
    "webhook: store": payment_services._STORE_EVENT,
    "webhook: store and mark paid": webhook_fast_path._STORE_AND_MARK,
    **{f"ledger: {kind} keyed={keyed}": sql for (kind, keyed), sql in ledger._STATEMENTS.items()},
}


@pytest.mark.parametrize("name", list(STATEMENTS))
def test_a_hot_statement_fits_psycopgs_query_cache(name):
    assert len(STATEMENTS[name].encode()) <= MAX_CACHED_STATEMENT_LENGTH, name
