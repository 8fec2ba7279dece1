"""Hostile input, driven by the OpenAPI schema: every operation of ``/api/schema/``, called on the live server
by schemathesis with valid and invalid (negative) data, as a platform owner and as a plain member.

For every call:

- no 5xx, ever (the webhook endpoints included: unsigned garbage is a 400);
- the status code is documented for the operation, the Content-Type is documented, and the body matches the
  documented schema for that status;
- a 4xx wrote nothing: every billing table is fingerprinted before the call and compared after a 4xx.

Deterministic (a fixed seed, derandomized, no example database) and bounded (``OWNER_MAX_EXAMPLES`` and
``MEMBER_MAX_EXAMPLES`` in conftest.py). A failure names the operation, the request and the response, the
server's traceback for a 5xx, and the rows a refused request wrote.

The schema is read at collection time from the application in-process (``served_schema``: the view that
serves ``/api/schema/``), so that every operation is its own test item; the calls go to the live server, whose
``/api/schema/`` the world fixture checks is the same document. Each item runs schemathesis's own per-operation
Hypothesis test (``build_operation_test``: the examples, coverage and fuzzing phases, with the configured seed).
(``@schema.parametrize()`` and ``schemathesis.pytest.from_fixture`` would do the same, but schemathesis 4.32's
pytest plugin does not run on pytest 9.2: its items all get the same node id, and the lazy loader sets
``Function._nodeid``, which pytest no longer has. Swap back once schemathesis supports pytest 9.2.)"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup, as_reported_failure
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.pytest._test_builder import build_operation_test
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.hostile.conftest import (
    MEMBER_MAX_EXAMPLES,
    OWNER_MAX_EXAMPLES,
    REQUEST_TIMEOUT,
    ServerErrors,
    World,
    db_fingerprint,
    describe_exchange,
    fingerprint_diff,
    fuzz_config,
    install_hooks,
    served_schema,
    steer,
)


class _Guard:
    """The fingerprint taken just before the current call (one call at a time: the test is sequential)."""

    before: dict | None = None
    writes: str = ""


def a_4xx_wrote_nothing(ctx: Any, response: Any, case: Any) -> bool | None:
    """A refused request (4xx) leaves every billing table as it was."""
    if not 400 <= response.status_code < 500 or _Guard.before is None:
        return None
    after = db_fingerprint()
    if after != _Guard.before:
        _Guard.writes = fingerprint_diff(_Guard.before, after)
        raise AssertionError(
            f"The request was refused ({response.status_code}) but the database changed:\n{_Guard.writes}"
        )
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    a_4xx_wrote_nothing,
]


def exercise(case: Any, world: World, token: str, server_errors: ServerErrors) -> None:
    """One generated call: send it with the caller's token, run every check, and on failure attach a readable
    account of the exchange."""
    headers = {"Authorization": f"Token {token}"}
    steer(case, world)
    server_errors.take()  # anything logged before this call belongs to an earlier one
    _Guard.before, _Guard.writes = db_fingerprint(), ""
    try:
        # No shared requests.Session: a kept-alive connection to Django's live server costs ~40 ms a call
        # (the server writes headers and body separately: Nagle's algorithm against delayed ACKs).
        response = case.call(base_url=world.live_url, headers=headers, timeout=REQUEST_TIMEOUT)
        case.validate_response(response, checks=CHECKS, headers=headers)
    except FailureGroup as exc:
        exc.add_note(describe_exchange(case, response, server_errors.take(), _Guard.writes))
        raise
    finally:
        _Guard.before = None


_SCHEMA = served_schema()
owner_api = schemathesis.openapi.from_dict(_SCHEMA, config=fuzz_config(max_examples=OWNER_MAX_EXAMPLES))
member_api = schemathesis.openapi.from_dict(_SCHEMA, config=fuzz_config(max_examples=MEMBER_MAX_EXAMPLES))
install_hooks(owner_api)
install_hooks(member_api)
_OPERATIONS = [result.ok() for result in owner_api.get_all_operations()]  # .ok() raises on an invalid operation


def run_operation(schema: Any, label: str, test_func: Any) -> None:
    """schemathesis's Hypothesis test for one operation, built as its pytest plugin builds it, run once."""
    operation = next(result.ok() for result in schema.get_all_operations() if result.ok().label == label)
    test = build_operation_test(config=schema.config, operation=operation, test_func=test_func, given_kwargs={},
                                feedback=FeedbackSources())
    try:
        test()
    except FailureGroup as exc:
        raise as_reported_failure(exc) from None


_LABELS = pytest.mark.parametrize("label", [op.label for op in _OPERATIONS])


@_LABELS
def test_as_platform_owner(label: str, hostile_world: World, server_errors: ServerErrors) -> None:
    def call(case: Any) -> None:
        exercise(case, hostile_world, hostile_world.owner.token, server_errors)

    run_operation(owner_api, label, call)


@_LABELS
def test_as_plain_member(label: str, hostile_world: World, server_errors: ServerErrors) -> None:
    def call(case: Any) -> None:
        exercise(case, hostile_world, hostile_world.member.token, server_errors)

    run_operation(member_api, label, call)
