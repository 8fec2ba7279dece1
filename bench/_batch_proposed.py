"""The changes bench/README.md proposes for the batch path (POST /api/billing/usage/batch/), applied in a bench
server's processes only (``bench/usage_batch.py --proposed`` starts a second gunicorn through
``bench/_proposed_wsgi.py`` with ``BENCH_BATCH_PATCHES=1``). Not app code; each is a one-line change there:

1. Bind the uuid, bigint, date and timestamptz arrays of the batch statements in binary (``%b`` instead of
   ``%s``): psycopg dumps a list given to ``%s`` with its pure-Python text ``ListDumper`` (about 4 ms per 1,000
   UUIDs here), but a binary list in well under 1 ms. Numeric and text arrays are left as they are.
   (``credits.ledger._LOCK_ACCOUNTS`` / ``_UPDATE_ACCOUNTS``, ``credits.services.usage_batch._FIND_CALLS`` /
   ``_UPSERT_ROLLUPS``.)
2. ``credits.api.usage_input._text``: look for control characters with one compiled regular expression instead
   of ``any(ord(ch) < 32 for ch in value)`` (a Python generator step per character). The patched function is the
   app's own source with that one expression replaced (skipped, with a note, if the expression is gone).
"""

from __future__ import annotations

import re
import sys


def _binary(sql: str) -> str:
    for kind in ("uuid", "bigint", "date", "timestamptz"):
        sql = sql.replace(f"%s::{kind}[]", f"%b::{kind}[]")
    return sql.replace("= ANY(%s)", "= ANY(%b::uuid[])")


_CONTROL = re.compile(r"[\x00-\x1f]")
_SLOW_CHECK = "any(ord(ch) < 32 for ch in value)"


def _fast_text(usage_input):
    """``usage_input._text`` exactly as it is in the app, with its control-character check as a regex search."""
    import inspect

    source = inspect.getsource(usage_input._text)
    if _SLOW_CHECK not in source:
        print("bench: credits.api.usage_input._text changed; its patch is skipped", file=sys.stderr, flush=True)
        return usage_input._text
    namespace = dict(vars(usage_input), _CONTROL=_CONTROL)
    exec(source.replace(_SLOW_CHECK, "_CONTROL.search(value)"), namespace)  # noqa: S102
    return namespace["_text"]


def apply() -> None:
    from credits import ledger
    from credits.api import usage_input
    from credits.services import usage_batch

    ledger._LOCK_ACCOUNTS = _binary(ledger._LOCK_ACCOUNTS)
    ledger._UPDATE_ACCOUNTS = _binary(ledger._UPDATE_ACCOUNTS)
    usage_batch._FIND_CALLS = _binary(usage_batch._FIND_CALLS)
    usage_batch._UPSERT_ROLLUPS = _binary(usage_batch._UPSERT_ROLLUPS)
    usage_input._text = _fast_text(usage_input)
    print("bench: batch patches applied (bench/_batch_proposed.py)", file=sys.stderr, flush=True)
