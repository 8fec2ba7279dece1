"""Concurrency: real threads, each on its own database connection, released together by a Barrier.

Each test checks the outcome every caller saw (successes, refusals, replays) and the ledger's invariants
afterwards (``ledger_verify`` plus the SQL checks of ``test_ledger_invariants_hypothesis``).
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from credits.errors import HoldNotActive, InsufficientCredits
from credits.models import CreditAccount, Hold, HoldStatus, LedgerEntry
from credits.services import (
    credits_debit,
    credits_grant,
    credits_refund,
    hold_capture,
    hold_create,
    hold_release,
    holds_release_expired,
)
from tests.conftest import make_member
from tests.credits.test_ledger_invariants_hypothesis import assert_ledger_invariants

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal


def run_together(workers: list[Callable[[], Any]], timeout: float = 120) -> list[tuple[str, Any]]:
    """Runs each callable in its own thread, all released at once; returns ("ok", value) or ("error", exc)
    per worker, in order. Each thread opens its own connection before the barrier and closes it at the end."""
    barrier = threading.Barrier(len(workers))
    outcomes: list[tuple[str, Any] | None] = [None] * len(workers)

    def run(i: int, work: Callable[[], Any]) -> None:
        try:
            connection.ensure_connection()
            barrier.wait(timeout=60)
            outcomes[i] = ("ok", work())
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            outcomes[i] = ("error", exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, w), daemon=True) for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "a worker is stuck (deadlock?)"
    assert all(o is not None for o in outcomes)
    return outcomes  # type: ignore[return-value]


def errors_of(outcomes: list[tuple[str, Any]]) -> Counter:
    return Counter(type(v).__name__ for kind, v in outcomes if kind == "error")


def funded_account(platform, username: str, amount: str) -> CreditAccount:  # noqa: ANN001
    account = make_member(platform, username).account
    credits_grant(account_id=account.id, amount=D(amount))
    account.refresh_from_db()
    return account


# --- (a) many debits against one balance -------------------------------------------------------------------


def test_fifty_simultaneous_debits_never_overdraw(platform):
    account = funded_account(platform, "hot", "10.00")
    amount = D("0.30")
    threads = 50
    expected_successes = int(D("10.00") // amount)  # 33

    outcomes = run_together([lambda: credits_debit(account_id=account.id, amount=amount)] * threads)

    successes = [v for kind, v in outcomes if kind == "ok"]
    assert len(successes) == expected_successes
    assert errors_of(outcomes) == Counter({"InsufficientCredits": threads - expected_successes})
    account.refresh_from_db()
    assert account.balance == D("10.00") - expected_successes * amount == D("0.10")
    assert account.reserved == 0 and account.available >= 0
    entries = list(LedgerEntry.objects.filter(account=account).order_by("sequence"))
    assert [e.sequence for e in entries] == list(range(1, expected_successes + 2))
    assert sorted(e.sequence for e in (r.entry for r in successes)) == list(range(2, expected_successes + 2))
    assert min(e.balance_after for e in entries) == D("0.10")
    assert_ledger_invariants(account)


# --- (b) one idempotency key from many threads -------------------------------------------------------------


@pytest.mark.parametrize("funds", ["100.00", "1.00"], ids=["plenty", "exactly-one-debit"])
def test_one_key_from_fifty_threads_makes_one_row(platform, funds):
    """With ``funds`` equal to the amount, the callers that lose the race must still get the winner's
    row back: the key was used, so theirs is a replay, not a second debit refused for want of credits."""
    account = funded_account(platform, "retry", funds)
    threads = 50

    outcomes = run_together(
        [lambda: credits_debit(account_id=account.id, amount=D("1.00"), idempotency_key="pay-1")] * threads
    )

    assert errors_of(outcomes) == Counter()
    results = [v for _, v in outcomes]
    assert len({r.entry.id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert LedgerEntry.objects.filter(account=account, idempotency_key="pay-1").count() == 1
    account.refresh_from_db()
    assert account.balance == D(funds) - D("1.00")
    assert account.last_sequence == 2
    assert_ledger_invariants(account)


@pytest.mark.parametrize("funds", ["100.00", "5.00"], ids=["plenty", "exactly-one-hold"])
def test_one_hold_key_from_thirty_threads_makes_one_hold(platform, funds):
    account = funded_account(platform, "retry-hold", funds)
    threads = 30

    outcomes = run_together(
        [lambda: hold_create(account_id=account.id, amount=D("5.00"), idempotency_key="hold-1")] * threads
    )

    assert errors_of(outcomes) == Counter()
    results = [v for _, v in outcomes]
    assert len({r.hold.id for r in results}) == 1
    assert len({r.entries[0].id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert Hold.objects.filter(account=account).count() == 1
    account.refresh_from_db()
    assert (account.balance, account.reserved) == (D(funds), D("5.00"))
    assert_ledger_invariants(account)


# --- (c) holds created, captured and released at once ------------------------------------------------------


def test_concurrent_hold_lifecycles_keep_the_invariants(platform):
    account = funded_account(platform, "busy", "100.00")
    threads = 40
    rng = random.Random(1234)
    plans = []
    for i in range(threads):
        held = D(rng.randint(50, 500)) / 100  # 0.50 .. 5.00
        if i % 4 == 0:
            plans.append(("release", held, None))
        elif i % 4 == 1:
            plans.append(("capture", held, held + D(rng.randint(1, 300)) / 100))  # more than held
        else:
            plans.append(("capture", held, D(rng.randint(0, int(held * 100))) / 100))

    def lifecycle(action: str, held: Decimal, charge: Decimal | None) -> tuple[str, Decimal]:
        hold = hold_create(account_id=account.id, amount=held).hold
        if action == "release":
            hold_release(hold_id=hold.id)
            return "released", D(0)
        hold_capture(hold_id=hold.id, amount=charge)
        return "captured", charge

    outcomes = run_together([lambda p=p: lifecycle(*p) for p in plans])

    # Total asked for is far below the balance, so every lifecycle completes.
    assert errors_of(outcomes) == Counter()
    charged = sum((v[1] for _, v in outcomes), D(0))
    account.refresh_from_db()
    assert account.balance == D("100.00") - charged
    assert account.reserved == 0
    assert not Hold.objects.filter(account=account, status=HoldStatus.ACTIVE).exists()
    assert Counter(Hold.objects.filter(account=account).values_list("status", flat=True)) == Counter(
        {"released": threads // 4, "captured": threads - threads // 4}
    )
    for hold in Hold.objects.filter(account=account, status=HoldStatus.CAPTURED, captured_amount__gt=0):
        charge = LedgerEntry.objects.get(hold=hold, transaction_type="subtract")
        assert charge.balance_delta == -hold.captured_amount
    assert_ledger_invariants(account)


def test_hold_lifecycles_racing_debits_never_overdraw(platform):
    """Holds and plain debits compete for a balance that cannot cover all of them."""
    account = funded_account(platform, "scarce", "20.00")

    def hold_and_capture() -> str:
        hold = hold_create(account_id=account.id, amount=D("2.00")).hold
        hold_capture(hold_id=hold.id, amount=D("2.50"))  # the excess needs available credits
        return "captured"

    def debit() -> str:
        credits_debit(account_id=account.id, amount=D("1.50"))
        return "debited"

    outcomes = run_together([hold_and_capture, debit] * 15)

    assert set(errors_of(outcomes)) <= {"InsufficientCredits"}
    done = Counter(v for kind, v in outcomes if kind == "ok")
    account.refresh_from_db()
    assert account.balance == D("20.00") - done["captured"] * D("2.50") - done["debited"] * D("1.50")
    assert account.balance >= 0
    # A capture refused for want of credits rolls back and leaves its hold active.
    active = Hold.objects.filter(account=account, status=HoldStatus.ACTIVE)
    assert account.reserved == sum((h.amount for h in active), D(0))
    assert_ledger_invariants(account)


# --- (d) fifty threads settling the same hold ---------------------------------------------------------------


def test_fifty_threads_settling_one_hold_exactly_one_wins(platform):
    account = funded_account(platform, "contended", "100.00")
    hold = hold_create(account_id=account.id, amount=D("10.00")).hold

    def capture() -> str:
        hold_capture(hold_id=hold.id, amount=D("3.00"))
        return "captured"

    def release() -> str:
        hold_release(hold_id=hold.id)
        return "released"

    outcomes = run_together([capture, release] * 25)

    winners = [v for kind, v in outcomes if kind == "ok"]
    assert len(winners) == 1
    assert errors_of(outcomes) == Counter({"HoldNotActive": 49})
    assert all(isinstance(v, HoldNotActive) for kind, v in outcomes if kind == "error")
    hold.refresh_from_db()
    account.refresh_from_db()
    kinds = [e.transaction_type for e in LedgerEntry.objects.filter(hold=hold).order_by("sequence")]
    if winners == ["captured"]:
        assert (hold.status, hold.captured_amount) == (HoldStatus.CAPTURED, D("3.00"))
        assert kinds == ["reserve", "subtract", "release"]
        assert account.balance == D("97.00")
    else:
        assert hold.status == HoldStatus.RELEASED
        assert kinds == ["reserve", "release"]
        assert account.balance == D("100.00")
    assert account.reserved == 0
    assert_ledger_invariants(account)


# --- (e) the expiry sweep run by several workers beside live traffic ----------------------------------------


def test_concurrent_expiry_sweeps_release_each_hold_exactly_once(platform):
    accounts = [funded_account(platform, f"sweep-{i}", "100.00") for i in range(4)]
    expiring = [
        hold_create(account_id=a.id, amount=D("1.00") + D(n) / 100, expires_in=30).hold
        for a in accounts for n in range(10)
    ]
    lasting = [hold_create(account_id=a.id, amount=D("2.00"), expires_in=3600).hold for a in accounts]
    at = timezone.now() + timedelta(seconds=60)

    def sweep() -> int:
        return holds_release_expired(now=at, batch_size=7)

    def spend(account: CreditAccount) -> int:
        for _ in range(5):
            credits_debit(account_id=account.id, amount=D("0.10"))
        return 0

    sweepers = 3
    outcomes = run_together([sweep] * sweepers + [lambda a=a: spend(a) for a in accounts for _ in range(2)])

    assert errors_of(outcomes) == Counter()
    released_by_sweepers = sum(v for kind, v in outcomes[:sweepers])
    # A sweeper skips an account that a debit holds locked at that instant and leaves its holds to the next
    # run; whatever they did release, they released once.
    assert Hold.objects.filter(status=HoldStatus.EXPIRED).count() == released_by_sweepers
    released_by_final_run = holds_release_expired(now=at)
    assert released_by_sweepers + released_by_final_run == len(expiring)
    assert holds_release_expired(now=at) == 0

    for hold in expiring:
        hold.refresh_from_db()
        assert hold.status == HoldStatus.EXPIRED
        releases = LedgerEntry.objects.filter(hold=hold, transaction_type="release")
        assert [e.reserved_delta for e in releases] == [-hold.amount]
    for hold in lasting:
        hold.refresh_from_db()
        assert hold.status == HoldStatus.ACTIVE
    for account in accounts:
        account.refresh_from_db()
        assert (account.balance, account.reserved) == (D("99.00"), D("2.00"))
        assert_ledger_invariants(account)


def test_insufficient_funds_error_is_what_the_losers_of_a_debit_race_see(platform):
    """Guards the test helper itself: an error raised in a worker reaches the test as that error."""
    account = funded_account(platform, "helper", "1.00")
    outcomes = run_together([lambda: credits_debit(account_id=account.id, amount=D("1.00"))] * 2)
    assert sorted(kind for kind, _ in outcomes) == ["error", "ok"]
    assert isinstance(next(v for kind, v in outcomes if kind == "error"), InsufficientCredits)


def test_concurrent_refunds_of_one_debit_never_exceed_it(platform):
    account = funded_account(platform, "refunds", "20.00")
    debit = credits_debit(account_id=account.id, amount=D("10.00")).entry
    threads = 20

    outcomes = run_together(
        [lambda: credits_refund(account_id=account.id, amount=D("0.75"), refund_of_id=debit.id)] * threads
    )

    assert errors_of(outcomes) == Counter({"RefundExceedsOriginal": threads - 13})
    refunded = LedgerEntry.objects.filter(refund_of=debit)
    assert refunded.count() == 13  # floor(10.00 / 0.75)
    account.refresh_from_db()
    assert account.balance == D("10.00") + 13 * D("0.75")
    assert_ledger_invariants(account)
