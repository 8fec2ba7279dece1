"""Usage under concurrency: real threads, each on its own connection (closed at the end), released together
by a Barrier (``run_together``). Each test checks what every caller saw and the ledger's invariants after."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import Sum

from credits.errors import IdempotencyConflict
from credits.models import CreditAccount, LedgerEntry, UsageEvent, UsageRollup
from credits.services import UsageInput, hold_create, usage_capture, usage_record, usage_record_batch
from tests.credits.test_ledger_concurrency import errors_of, funded_account, run_together
from tests.credits.test_ledger_invariants_hypothesis import assert_ledger_invariants

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal
AT = datetime(2026, 6, 1, 12, tzinfo=UTC)


def usage(account, request_id: str, amount: str = "1", **kwargs) -> UsageInput:  # noqa: ANN001, ANN003
    kwargs.setdefault("endpoint", "/v1/chat")
    kwargs.setdefault("occurred_at", AT)
    return UsageInput(account_id=account.id, request_id=request_id, amount=D(amount), **kwargs)


def record(platform, item: UsageInput):  # noqa: ANN001, ANN201
    return usage_record(platform=platform, usage=item)


def assert_usage_consistent(account: CreditAccount, initial: Decimal) -> None:
    """Events, their debits, the rollups and the balance tell the same story; the ledger is sound."""
    events = list(UsageEvent.objects.filter(account=account))
    charged = [e for e in events if e.cost > 0]
    debits = LedgerEntry.objects.filter(account=account, transaction_type="subtract")
    assert debits.count() == len(charged)
    assert {e.ledger_entry_id for e in charged} == set(debits.values_list("id", flat=True))
    assert all(e.ledger_entry_id is None for e in events if e.cost == 0)
    spent = sum((e.cost for e in events), D(0))
    assert -(debits.aggregate(s=Sum("balance_delta"))["s"] or 0) == spent
    assert CreditAccount.objects.get(pk=account.pk).balance == initial - spent
    rollups = UsageRollup.objects.filter(account=account)
    assert sum(r.total_requests for r in rollups) == len(events)
    assert sum(r.failed_requests for r in rollups) == sum(not e.success for e in events)
    assert sum((r.credits_consumed for r in rollups), D(0)) == spent
    assert_ledger_invariants(account)


# --- (a) many threads, one balance ---------------------------------------------------------------------------


def test_fifty_threads_recording_usage_never_overdraw(platform):
    account = funded_account(platform, "hot", "10.00")
    amount, threads = D("0.30"), 50
    expected = int(D("10.00") // amount)  # 33

    outcomes = run_together([
        (lambda i=i: record(platform, usage(account, f"call-{i}", "0.30"))) for i in range(threads)
    ])

    recorded = [v for kind, v in outcomes if kind == "ok"]
    assert len(recorded) == expected
    assert errors_of(outcomes) == Counter({"InsufficientCredits": threads - expected})
    assert not any(r.replayed for r in recorded)
    account.refresh_from_db()
    assert account.balance == D("10.00") - expected * amount == D("0.10")
    assert UsageEvent.objects.filter(account=account).count() == expected
    assert min(LedgerEntry.objects.filter(account=account).values_list("balance_after", flat=True)) == D("0.10")
    (rollup,) = UsageRollup.objects.filter(account=account)
    assert (rollup.total_requests, rollup.credits_consumed) == (expected, expected * amount)
    assert_usage_consistent(account, D("10.00"))


# --- (b) one request_id from many threads ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("funds", "success"),
    [("100.00", True), ("2.50", True), ("1.00", False)],
    ids=["plenty", "exactly-one-call", "failed-call"],
)
def test_one_request_id_from_thirty_threads_is_recorded_once(platform, funds, success):
    account = funded_account(platform, "retry", funds)
    threads = 30

    outcomes = run_together([lambda: record(platform, usage(account, "same-call", "2.50", success=success))]
                            * threads)

    assert errors_of(outcomes) == Counter()
    results = [v for _, v in outcomes]
    assert len({r.event.id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert UsageEvent.objects.filter(account=account).count() == 1
    if success:
        assert len({r.entry.id for r in results}) == 1
        assert LedgerEntry.objects.filter(account=account, transaction_type="subtract").count() == 1
    else:
        assert all(r.entry is None for r in results)
    assert UsageRollup.objects.get(account=account).total_requests == 1
    assert_usage_consistent(account, D(funds))


# --- (c) batches locking the same accounts in opposite orders -------------------------------------------


def test_batches_over_the_same_accounts_in_opposite_orders_never_deadlock(platform):
    accounts = [funded_account(platform, f"user{i:02d}", "100") for i in range(50)]
    rounds, amount = 4, "0.25"
    for n in range(rounds):
        forward = [usage(a, f"r{n}-fwd-{i}", amount) for i, a in enumerate(accounts)]
        backward = [usage(a, f"r{n}-bwd-{i}", amount) for i, a in reversed(list(enumerate(accounts)))]
        # a second pair interleaves the accounts differently again
        odd_first = [usage(a, f"r{n}-odd-{i}", amount) for i, a in enumerate(accounts) if i % 2] + [
            usage(a, f"r{n}-odd-{i}", amount) for i, a in enumerate(accounts) if not i % 2
        ]
        work = [forward, backward, odd_first]

        outcomes = run_together(
            [(lambda events=events: usage_record_batch(platform=platform, events=events)) for events in work],
            timeout=60,
        )

        assert errors_of(outcomes) == Counter(), [v for kind, v in outcomes if kind == "error"]
        for (_, result), events in zip(outcomes, work, strict=True):
            assert [o.request_id for o in result] == [e.request_id for e in events]
            assert {o.status for o in result} == {"recorded"}
    spent = rounds * len(work) * D(amount)
    for account in accounts:
        assert UsageEvent.objects.filter(account=account).count() == rounds * len(work)
        assert_usage_consistent(account, D("100"))
        assert CreditAccount.objects.get(pk=account.pk).balance == D("100") - spent


# --- (d) batches beside single events on the same accounts ----------------------------------------------


def test_batches_and_single_events_on_overlapping_accounts(platform):
    accounts = [funded_account(platform, f"mixed{i}", "50") for i in range(8)]
    # Request ids shared between a batch and single callers (same content: recorded once), and failed calls
    # that a single caller and a batch both report.
    shared = [usage(a, f"shared-{i}", "0.75") for i, a in enumerate(accounts)]
    failed = [usage(a, f"failed-{i}", "0", success=False) for i, a in enumerate(accounts)]

    def batch(tag: str, order: list[int]):  # noqa: ANN202
        events = [usage(accounts[i], f"{tag}-{i}-{k}", "0.5") for i in order for k in range(3)]
        events += [shared[i] for i in order] + [failed[i] for i in order]
        return lambda: usage_record_batch(platform=platform, events=events)

    def singles(offset: int):  # noqa: ANN202
        def run():  # noqa: ANN202
            results = []
            for j in range(8):
                i = (offset + j) % len(accounts)
                results.append(record(platform, usage(accounts[i], f"single-{offset}-{i}", "0.2")))
                results.append(record(platform, shared[i]))
                results.append(record(platform, failed[i]))
            return results
        return run

    order = list(range(len(accounts)))
    workers = [batch("bA", order), batch("bB", order[::-1]), batch("bC", order[3:] + order[:3])]
    workers += [singles(offset) for offset in range(5)]

    outcomes = run_together(workers, timeout=120)

    assert errors_of(outcomes) == Counter(), [v for kind, v in outcomes if kind == "error"]
    batch_results = [v for _, v in outcomes[:3]]
    for result in batch_results:
        assert all(o.status in ("recorded", "duplicate") for o in result), [o for o in result if o.error]
    # a shared or failed call is one event, whoever reported it first; every caller got that event
    for item in shared + failed:
        event = UsageEvent.objects.get(account_id=item.account_id, request_id=item.request_id)
        seen = {o.event_id for result in batch_results for o in result if o.request_id == item.request_id}
        seen |= {r.event.id for _, results in outcomes[3:] for r in results
                 if r.event.request_id == item.request_id and r.event.account_id == item.account_id}
        assert seen == {event.id}
    recorded = sum(o.status == "recorded" for result in batch_results for o in result)
    fresh_singles = sum(not r.replayed for _, results in outcomes[3:] for r in results)
    assert recorded + fresh_singles == UsageEvent.objects.count() == 3 * 8 * 3 + 5 * 8 + 8 + 8
    for account in accounts:
        # 9 batch calls at 0.5, 5 single calls at 0.2, the shared call at 0.75
        assert_usage_consistent(account, D("50"))
        assert CreditAccount.objects.get(pk=account.pk).balance == D("50") - D("4.5") - D("1") - D("0.75")


# --- a single failed call racing a batch for its request_id ----------------------------------------------


def _wait_for_lock_waiters(count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0] >= count:
                return
        time.sleep(0.02)
    raise AssertionError(f"expected {count} sessions waiting on a lock")


@pytest.mark.parametrize("contender", ["batch-same-event", "batch-other-content", "batch-other-call", "capture"])
def test_a_failed_call_racing_a_batch_or_a_capture_on_its_account(platform, contender):
    """A failed call charges nothing, yet it writes rows of its account (event, rollup) like every other usage
    write: the batch (its request_id included) or the capture it races on the same account, day and endpoint
    must wait for it or it for them, never deadlock, and the batch must answer duplicate or conflict."""
    account = funded_account(platform, "racer", "10")
    record(platform, usage(account, "warm-up", "1", occurred_at=None))  # today's rollup row exists
    held = hold_create(account_id=account.id, amount=D("3"), idempotency_key="held-call").hold
    rollup = UsageRollup.objects.get(account=account)
    release, locked = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def blocker() -> None:  # holds the rollup row: the failed call stops after inserting its event
        try:
            with transaction.atomic():
                UsageRollup.objects.select_for_update().get(pk=rollup.pk)
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    def run(name: str, work) -> None:  # noqa: ANN001
        try:
            results[name] = work()
        except BaseException as exc:  # noqa: BLE001 - reported below
            results[name] = exc
        finally:
            connection.close()

    single_call = usage(account, "flaky", "2", success=False, occurred_at=None)
    if contender == "capture":
        def contend():  # noqa: ANN202
            return usage_capture(platform=platform, hold_id=held.id, amount=D("2"), endpoint="/v1/chat")
    else:
        request_id = "another" if contender == "batch-other-call" else "flaky"
        batch_call = usage(account, request_id, "2", success=contender != "batch-same-event", occurred_at=None)

        def contend():  # noqa: ANN202
            return usage_record_batch(platform=platform, events=[batch_call])

    threads = [threading.Thread(target=blocker, daemon=True)]
    threads[0].start()
    assert locked.wait(20)
    threads.append(threading.Thread(target=run, args=("single", lambda: record(platform, single_call)),
                                    daemon=True))
    threads[1].start()
    _wait_for_lock_waiters(1)  # the failed call waits for the rollup row
    threads.append(threading.Thread(target=run, args=("other", contend), daemon=True))
    threads[2].start()
    _wait_for_lock_waiters(2)  # and the batch or the capture waits too
    release.set()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads)

    single, other = results["single"], results["other"]
    assert not isinstance(single, BaseException), single
    assert not isinstance(other, BaseException), other
    assert single.event.success is False and single.replayed is False
    spent, events = D("1"), 2
    if contender == "capture":
        _, event = other
        assert (event.hold_id, event.cost) == (held.id, D("2"))
        spent, events = spent + 2, events + 1
    else:
        (outcome,) = other
        if contender == "batch-other-content":
            assert (outcome.status, type(outcome.error)) == ("rejected", IdempotencyConflict)
        elif contender == "batch-other-call":
            assert outcome.status == "recorded"
            spent, events = spent + 2, events + 1
        else:
            assert (outcome.status, outcome.event_id) == ("duplicate", single.event.id)
    assert UsageEvent.objects.filter(account=account, request_id="flaky").count() == 1
    assert UsageRollup.objects.get(account=account).total_requests == events
    assert_usage_consistent(account, D("10"))
    assert CreditAccount.objects.get(pk=account.pk).balance == D("10") - spent
