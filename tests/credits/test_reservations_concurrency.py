"""Holds under contention, on real PostgreSQL: real threads, each on its own connection (closed when it ends),
released together by a Barrier (``run_together``). A hold is settled exactly once however many callers race
for it; the expiry command, run twice at once beside live traffic, releases each expired hold exactly once."""

from __future__ import annotations

import io
import random
import re
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from credits.errors import HoldExpired, HoldNotActive
from credits.models import Hold, HoldStatus, LedgerEntry, UsageEvent
from credits.services import credits_debit, hold_create, hold_release, usage_capture
from tests.conftest import client_for, make_member
from tests.credits.test_ledger_concurrency import errors_of, funded_account, run_together
from tests.credits.test_ledger_invariants_hypothesis import assert_ledger_invariants

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal


def _settlers(platform, hold_id, captures: int, releases: int) -> list:  # noqa: ANN001
    def capture() -> str:
        usage_capture(platform=platform, hold_id=hold_id, amount=D("3.00"), endpoint="/v1/chat", model="m")
        return "captured"

    def release() -> str:
        hold_release(hold_id=hold_id)
        return "released"

    workers = [capture] * captures + [release] * releases
    random.Random(7).shuffle(workers)  # neither kind favoured by starting first
    return workers


@pytest.mark.parametrize(("captures", "releases"), [(50, 50), (100, 0)], ids=["mixed", "all-captures"])
def test_hundred_threads_settling_one_hold_exactly_one_wins(platform, captures, releases):
    account = funded_account(platform, "contended", "100.00")
    hold = hold_create(account_id=account.id, amount=D("10.00"), idempotency_key="call-1").hold

    outcomes = run_together(_settlers(platform, hold.id, captures, releases))

    winners = [v for kind, v in outcomes if kind == "ok"]
    assert len(winners) == 1, errors_of(outcomes)
    assert errors_of(outcomes) == Counter({"HoldNotActive": 99})
    assert all(isinstance(v, HoldNotActive) for kind, v in outcomes if kind == "error")
    hold.refresh_from_db()
    account.refresh_from_db()
    kinds = [e.transaction_type for e in LedgerEntry.objects.filter(hold=hold).order_by("sequence")]
    if winners == ["captured"]:
        assert (hold.status, hold.captured_amount) == (HoldStatus.CAPTURED, D("3.00"))
        assert kinds == ["reserve", "subtract", "release"]
        [event] = UsageEvent.objects.all()
        assert (event.hold_id, event.request_id, event.cost) == (hold.id, "call-1", D("3.00"))
        assert account.balance == D("97.00")
    else:
        assert hold.status == HoldStatus.RELEASED
        assert kinds == ["reserve", "release"]
        assert not UsageEvent.objects.exists()
        assert account.balance == D("100.00")
    assert account.reserved == 0
    assert_ledger_invariants(account)


def test_fifty_threads_touching_one_expired_hold_release_it_once(platform):
    """The first touch releases the expired hold (a capture then raises HoldExpired, a release answers it
    with status expired); every later one finds it settled."""
    account = funded_account(platform, "late", "100.00")
    hold = hold_create(account_id=account.id, amount=D("10.00")).hold
    Hold.objects.filter(pk=hold.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    outcomes = run_together(_settlers(platform, hold.id, 25, 25))

    errors = errors_of(outcomes)
    released_by_release = [v for kind, v in outcomes if kind == "ok"]
    assert errors["HoldExpired"] + len(released_by_release) == 1, (errors, released_by_release)
    assert errors["HoldNotActive"] == 49
    assert set(errors) <= {"HoldExpired", "HoldNotActive"}
    hold.refresh_from_db()
    assert (hold.status, hold.captured_amount) == (HoldStatus.EXPIRED, None)
    releases = LedgerEntry.objects.filter(hold=hold, transaction_type="release")
    assert [e.reserved_delta for e in releases] == [D("-10.00")]
    assert not UsageEvent.objects.exists()
    account.refresh_from_db()
    assert (account.balance, account.reserved) == (D("100.00"), D("0"))
    assert_ledger_invariants(account)


def _run_command() -> int:
    out = io.StringIO()
    call_command("release_expired_holds", stdout=out)
    match = re.fullmatch(r"released (\d+) expired hold\(s\)\n", out.getvalue())
    assert match, out.getvalue()
    return int(match.group(1))


def test_two_expiry_commands_beside_debits_and_captures_release_each_hold_once(platform):
    accounts = [funded_account(platform, f"sweep-{i}", "100.00") for i in range(3)]
    expiring = [
        hold_create(account_id=a.id, amount=D("1.00") + D(n) / 100, expires_in=60).hold
        for a in accounts
        for n in range(12)
    ]
    lasting = [hold_create(account_id=a.id, amount=D("2.00"), expires_in=3600).hold for a in accounts]
    Hold.objects.filter(pk__in=[h.pk for h in expiring]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    touched = [h for h in expiring if h.account_id == accounts[0].id][:4]  # the API would touch these too

    def spend(account_id) -> str:  # noqa: ANN001
        for _ in range(5):
            credits_debit(account_id=account_id, amount=D("0.10"))
        return "spent"

    def touch(hold_id) -> str:  # noqa: ANN001
        usage_capture(platform=platform, hold_id=hold_id, amount=D("0.50"), endpoint="/v1/chat")
        return "captured"

    workers = [_run_command, _run_command]
    workers += [lambda a=a: spend(a.id) for a in accounts for _ in range(2)]
    workers += [lambda h=h: touch(h.id) for h in touched]
    outcomes = run_together(workers)

    (kind1, swept1), (kind2, swept2) = outcomes[:2]
    assert (kind1, kind2) == ("ok", "ok"), outcomes[:2]
    assert all(outcome == ("ok", "spent") for outcome in outcomes[2:8])
    touch_outcomes = [v for _, v in outcomes[8:]]
    # Every touch lost to a sweeper (HoldNotActive) or released the hold itself (HoldExpired); none captured.
    assert all(isinstance(v, HoldExpired | HoldNotActive) for v in touch_outcomes), touch_outcomes
    released_by_touches = sum(isinstance(v, HoldExpired) for v in touch_outcomes)
    # A sweeper skips an account a debit holds locked at that instant and leaves it to the next run.
    assert Hold.objects.filter(status=HoldStatus.EXPIRED).count() == swept1 + swept2 + released_by_touches
    final = _run_command()
    assert swept1 + swept2 + released_by_touches + final == len(expiring)
    assert _run_command() == 0

    for hold in expiring:
        hold.refresh_from_db()
        assert (hold.status, hold.captured_amount) == (HoldStatus.EXPIRED, None)
        releases = LedgerEntry.objects.filter(hold=hold).exclude(transaction_type="reserve")
        assert [(e.transaction_type, e.reserved_delta) for e in releases] == [("release", -hold.amount)]
    for hold in lasting:
        hold.refresh_from_db()
        assert hold.status == HoldStatus.ACTIVE
    assert not UsageEvent.objects.exists()
    for account in accounts:
        account.refresh_from_db()
        assert (account.balance, account.reserved) == (D("99.00"), D("2.00"))
        assert_ledger_invariants(account)


# --- the same over HTTP -------------------------------------------------------------------------------------


def test_twenty_http_callers_settling_one_hold_one_200_the_rest_409(platform):
    admin = make_member(platform, "backend", "admin")
    account = funded_account(platform, "payer", "100.00")
    hold = hold_create(account_id=account.id, amount=D("10.00"), idempotency_key="call-1").hold

    def post(action: str) -> tuple[int, str]:
        body = {"amount": "3", "endpoint": "/v1/chat"} if action == "capture" else {}
        response = client_for(admin).post(
            f"/api/billing/reservations/{hold.id}/{action}/", body, format="json"
        )
        data = response.json()
        return response.status_code, data.get("status") or data["error"]["code"]

    outcomes = run_together([lambda a=a: post(a) for a in ["capture", "release"] * 10])

    assert errors_of(outcomes) == Counter()
    answers = Counter(v for _, v in outcomes)
    [(winner, _)] = [(v, n) for v, n in answers.items() if v[0] == 200]
    assert answers == Counter({winner: 1, (409, "hold_not_active"): 19})
    hold.refresh_from_db()
    assert hold.status == winner[1]
    assert_ledger_invariants(account)


def test_twenty_http_callers_with_one_request_id_make_one_hold(platform):
    admin = make_member(platform, "backend", "admin")
    account = funded_account(platform, "payer", "10.00")  # room for one hold only

    def post() -> tuple[int, str]:
        response = client_for(admin).post(
            "/api/billing/reservations/",
            {"account_id": str(account.id), "amount": "10", "request_id": "call-1"},
            format="json",
        )
        return response.status_code, response.json()["id"]

    outcomes = run_together([post] * 20)

    assert errors_of(outcomes) == Counter()
    statuses = Counter(status for _, (status, _) in outcomes)
    assert statuses == Counter({201: 1, 200: 19})
    assert len({hold_id for _, (_, hold_id) in outcomes}) == 1
    assert Hold.objects.count() == 1
    assert_ledger_invariants(account)
