"""Exact usage costs: every event keeps its exact cost, the ledger debits whole quanta (0.000001) and the
account carries the rest, so that for every account at every moment

    Σ debits of its usage events + its carried remainder = Σ exact costs of its usage events

whatever the sizes, prices and order of events, single or batched, holds included.

The regressions of hostile testing: at 0.40 per million input tokens a 1-token event cost "0.00" and wrote no
ledger row, a batch of 1,000 of them charged 0 instead of 0.0004, and 2 tokens cost 0.000001 (+25 %)."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credits.ledger import charge_split
from credits.models import CreditAccount, Hold, LedgerEntry, ModelPrice, UsageEvent, UsageRollup
from credits.services import (
    UsageInput,
    credits_grant,
    hold_create,
    hold_release,
    usage_capture,
    usage_record,
    usage_record_batch,
)
from tests.api_helpers import post_json
from tests.conftest import client_for, make_member
from tests.credits.test_ledger_concurrency import errors_of, run_together
from tests.credits.test_ledger_invariants_hypothesis import assert_ledger_invariants
from tests.waits import backend_tag, wait_until_blocked

D = Decimal
Q = D("0.000001")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
AT = datetime(2026, 6, 1, 12, tzinfo=UTC)


def price(platform, model: str, per_input: str, per_output: str = "0") -> ModelPrice:  # noqa: ANN001
    return ModelPrice.objects.create(platform=platform, model=model, input_per_million=D(per_input),
                                     output_per_million=D(per_output), effective_from=T0)


def funded(platform, username: str, amount: str = "100") -> CreditAccount:  # noqa: ANN001
    account = make_member(platform, username).account
    credits_grant(account_id=account.id, amount=D(amount))
    return account


def assert_exact(account: CreditAccount) -> tuple[D, D, D]:
    """The invariant, from the rows: (Σ exact costs, Σ debits, carried remainder)."""
    account.refresh_from_db()
    events = UsageEvent.objects.filter(account=account)
    cost = events.aggregate(s=Sum("cost"))["s"] or D(0)
    charged = events.aggregate(s=Sum("charged"))["s"] or D(0)
    debited = -(LedgerEntry.objects.filter(pk__in=events.exclude(ledger_entry=None).values("ledger_entry"))
                .aggregate(s=Sum("balance_delta"))["s"] or D(0))
    assert debited == charged, (debited, charged)
    assert 0 <= account.carried_remainder < Q
    assert charged + account.carried_remainder == cost, (charged, account.carried_remainder, cost)
    rollups = UsageRollup.objects.filter(account=account).aggregate(s=Sum("credits_consumed"))["s"] or D(0)
    assert rollups == cost
    assert_ledger_invariants(account)  # ledger_verify checks the same invariant
    return cost, charged, account.carried_remainder


# --- the rule ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("carried", "cost", "debit", "after"),
    [
        ("0", "0.0000004", "0", "0.0000004"),
        ("0.0000004", "0.0000004", "0", "0.0000008"),
        ("0.0000008", "0.0000004", "0.000001", "0.0000002"),
        ("0.0000008", "1.25", "1.25", "0.0000008"),  # whole quanta debit themselves, the remainder waits
        ("0.000000999999", "0.000000000001", "0.000001", "0"),
        ("0", "0", "0", "0"),
        ("0", "2.000000000001", "2", "0.000000000001"),
    ],
)
def test_charge_split(carried, cost, debit, after):
    assert charge_split(D(carried), D(cost)) == (D(debit), D(after))


@given(
    carried=st.integers(0, 999_999).map(lambda n: D(n).scaleb(-12)),
    cost=st.integers(0, 10**20).map(lambda n: D(n).scaleb(-12)),
)
@settings(max_examples=300, derandomize=True, database=None)
def test_charge_split_is_exact_and_never_overcharges(carried, cost):
    debit, after = charge_split(carried, cost)
    assert debit + after == carried + cost
    assert debit == debit.quantize(Q) and 0 <= after < Q
    assert debit <= carried + cost


# --- the regressions ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_one_token_at_40_cents_per_million_is_carried_not_free(platform):
    account = funded(platform, "tiny")
    price(platform, "cheap", "0.40")
    first = usage_record(platform=platform, usage=UsageInput(account_id=account.id, request_id="t-1", endpoint="/c", model="cheap",
                         input_tokens=1))
    assert (first.event.cost, first.event.charged, first.entry) == (D("0.0000004"), 0, None)
    second = usage_record(platform=platform, usage=UsageInput(account_id=account.id, request_id="t-2", endpoint="/c", model="cheap",
                          input_tokens=2))
    assert second.event.cost == D("0.0000008")  # not 0.000001
    assert second.event.charged == Q and second.entry.balance_delta == -Q  # 0.0000012 carried: 0.000001 debited
    assert assert_exact(account) == (D("0.0000012"), Q, D("0.0000002"))


@pytest.mark.django_db
def test_a_batch_of_a_thousand_one_token_events_charges_exactly_0_0004(platform):
    account = funded(platform, "many")
    price(platform, "cheap", "0.40")
    events = [UsageInput(account_id=account.id, request_id=f"b-{i}", endpoint="/c", model="cheap", input_tokens=1)
              for i in range(1000)]
    outcomes = usage_record_batch(platform=platform, events=events)
    assert {o.status for o in outcomes} == {"recorded"}
    assert assert_exact(account) == (D("0.0004"), D("0.0004"), D(0))
    assert CreditAccount.objects.get(pk=account.pk).balance == D("100") - D("0.0004")
    # 400 rows of 0.000001: each fifth event (at 0.4 each) completes a quantum... carried in between
    assert LedgerEntry.objects.filter(account=account, transaction_type="subtract").count() == 400


@pytest.mark.django_db
def test_the_api_shows_the_exact_cost_what_was_charged_and_the_remainder(platform, owner):
    account = funded(platform, "shown")
    price(platform, "cheap", "0.40")
    body = {"account_id": str(account.id), "request_id": "api-1", "endpoint": "/c", "model": "cheap",
            "input_tokens": 2}
    response = post_json(client_for(owner), "/api/billing/usage/", body)
    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["usage_event"]["cost"], data["usage_event"]["charged"], data["transaction"]) == (
        "0.0000008", "0.00", None)
    summary = client_for(owner).get("/api/billing/summary/", {"account_id": str(account.id)}).json()
    assert summary["credit_balance"]["carried_remainder"] == "0.0000008"
    assert summary["usage_this_month"]["credits_consumed"] in ("0.00", "0.0000008")  # today's month or not
    stats = client_for(owner).get("/api/billing/usage/stats/", {"account_id": str(account.id), "period": "daily"})
    assert stats.json()["credits_consumed"] == "0.0000008"


@pytest.mark.django_db
def test_a_capture_priced_by_the_rate_card_is_exact_and_carried(platform, owner):
    account = funded(platform, "held")
    price(platform, "cheap", "0.40", "1.30")
    hold = hold_create(account_id=account.id, amount=D("1"), idempotency_key="h-1").hold
    result, event = usage_capture(platform=platform, hold_id=hold.id, amount=None, endpoint="/c", model="cheap",
                                  input_tokens=3, output_tokens=1)
    assert event.cost == D("0.0000025")  # 3 x 0.4 + 1 x 1.3 micro-credits
    assert event.charged == D("0.000002") and result.hold.captured_amount == D("0.000002")
    assert [e.transaction_type for e in result.entries] == ["subtract", "release"]
    assert assert_exact(account) == (D("0.0000025"), D("0.000002"), D("0.0000005"))
    # over HTTP, with an amount finer than a quantum's multiple: the same rule
    held = post_json(client_for(owner), "/api/billing/reservations/",
                     {"account_id": str(account.id), "amount": "1", "request_id": "h-2"}).json()
    captured = post_json(client_for(owner), f"/api/billing/reservations/{held['id']}/capture/",
                         {"endpoint": "/c", "model": "cheap", "input_tokens": 1})
    assert captured.status_code == 200, captured.content
    assert assert_exact(account) == (D("0.0000029"), D("0.000002"), D("0.0000009"))


# --- the property ------------------------------------------------------------------------------------------------

_EXAMPLES = itertools.count()
PRICES = ["0.40", "0.15", "2.50", "0.000001", "3", "1.000001", "0.333333", "12.50"]

event_strategy = st.fixed_dictionaries({
    "model": st.sampled_from(PRICES),
    "input_tokens": st.integers(0, 5_000),
    "output_tokens": st.integers(0, 3),
    "amount": st.one_of(st.none(), st.integers(0, 3_000).map(lambda n: D(n).scaleb(-6))),
    "success": st.sampled_from([True, True, True, False]),
})

step_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("single"), event_strategy),
        st.tuples(st.just("batch"), st.lists(event_strategy, min_size=1, max_size=12)),
        st.tuples(st.just("capture"), event_strategy),
        st.tuples(st.just("release"), st.just(None)),
    ),
    min_size=1,
    max_size=12,
)


@pytest.mark.django_db
@given(steps=step_strategy)
@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_debits_plus_the_carried_remainder_equal_the_exact_costs(platform, steps):
    for model in PRICES:
        if not ModelPrice.objects.filter(platform=platform, model=model).exists():
            price(platform, model, model, model)
    account = funded(platform, f"p-{next(_EXAMPLES)}", "5")
    counter = 0

    def usage(spec: dict) -> UsageInput:
        nonlocal counter
        counter += 1
        return UsageInput(account_id=account.id, request_id=f"r-{counter}", endpoint="/c", model=spec["model"],
                          input_tokens=spec["input_tokens"], output_tokens=spec["output_tokens"],
                          amount=spec["amount"], success=spec["success"], occurred_at=AT)

    for kind, spec in steps:
        if kind == "single":
            item = usage(spec)
            try:
                usage_record(platform=platform, usage=item)
            except Exception as exc:  # noqa: BLE001
                assert type(exc).__name__ == "InsufficientCredits", exc
        elif kind == "batch":
            usage_record_batch(platform=platform, events=[usage(s) for s in spec])
        elif kind == "capture":
            counter += 1
            try:
                hold = hold_create(account_id=account.id, amount=D("0.01"), idempotency_key=f"h-{counter}").hold
            except Exception as exc:  # noqa: BLE001
                assert type(exc).__name__ == "InsufficientCredits", exc
                continue
            try:
                usage_capture(platform=platform, hold_id=hold.id, amount=spec["amount"], endpoint="/c",
                              model=spec["model"], input_tokens=spec["input_tokens"],
                              output_tokens=spec["output_tokens"], success=spec["success"])
            except Exception as exc:  # noqa: BLE001
                assert type(exc).__name__ == "InsufficientCredits", exc
                hold_release(hold_id=hold.id)
        else:
            active = Hold.objects.filter(account=account, status="active").first()
            if active:
                hold_release(hold_id=active.id)
        assert_exact(account)


# --- threads ------------------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_fractional_events_single_batched_and_captured_stay_exact(platform):
    """Threads in autocommit take the one-statement path, which reads the remainder without a lock and writes
    only if it is unchanged; many lose that race and fall back to the locked path. Nothing is lost or doubled."""
    account = funded(platform, "hot", "10")
    price(platform, "cheap", "0.40", "0.15")
    threads = 12

    def work(i: int) -> list:
        done = []
        for j in range(15):
            done.append(usage_record(platform=platform, usage=UsageInput(
                account_id=account.id, request_id=f"s-{i}-{j}", endpoint="/c", model="cheap", input_tokens=i + j,
                output_tokens=j % 3)))
        done.append(usage_record_batch(platform=platform, events=[
            UsageInput(account_id=account.id, request_id=f"b-{i}-{k}", endpoint="/c", model="cheap",
                       input_tokens=k) for k in range(7)
        ]))
        hold = hold_create(account_id=account.id, amount=D("0.5"), idempotency_key=f"h-{i}").hold
        done.append(usage_capture(platform=platform, hold_id=hold.id, amount=None, endpoint="/c", model="cheap",
                                  input_tokens=i + 1))
        return done

    outcomes = run_together([(lambda i=i: work(i)) for i in range(threads)])
    assert errors_of(outcomes) == {}, [v for k, v in outcomes if k == "error"][:3]
    assert UsageEvent.objects.filter(account=account).count() == threads * (15 + 7 + 1)
    cost, charged, carried = assert_exact(account)
    expected = sum(
        (D(i + j) * D("0.40") + D(j % 3) * D("0.15")) / 1_000_000 for i in range(threads) for j in range(15)
    ) + sum(D(k) * D("0.40") / 1_000_000 for _ in range(threads) for k in range(7)) + sum(
        D(i + 1) * D("0.40") / 1_000_000 for i in range(threads))
    assert cost == expected
    assert CreditAccount.objects.get(pk=account.pk).balance == D("10") - charged


@pytest.mark.django_db(transaction=True)
def test_the_one_statement_path_writes_only_over_the_remainder_it_read(platform):
    """The one-statement path reads the remainder without a lock. Here another transaction moves it and holds
    the account's lock; the statement waits for that lock (seen in pg_locks), then finds the remainder moved,
    writes nothing and the event goes down the locked path: nothing is debited against a stale remainder."""
    account = funded(platform, "cas", "1")
    price(platform, "cheap", "0.40")
    usage_record(platform=platform, usage=UsageInput(account_id=account.id, request_id="t-0", endpoint="/c",
                                                     model="cheap", input_tokens=1))  # carried 0.0000004
    started, pid, results = threading.Event(), [], []

    def racer() -> None:
        try:
            pid.append(backend_tag())
            started.set()
            results.append(usage_record(platform=platform, usage=UsageInput(  # reads 0.0000004, then waits
                account_id=account.id, request_id="a", endpoint="/c", model="cheap", input_tokens=2)))
        finally:
            connection.close()

    thread = threading.Thread(target=racer)
    with transaction.atomic():
        usage_record(platform=platform, usage=UsageInput(  # the remainder becomes 0.0000008 under this lock
            account_id=account.id, request_id="b", endpoint="/c", model="cheap", input_tokens=1))
        thread.start()
        assert started.wait(30)
        wait_until_blocked(pid[0])
    thread.join(60)
    assert len(results) == 1 and results[0].event.charged == Q
    # 0.0000004 + 0.0000004 + 0.0000008: 0.000001 debited, 0.0000006 carried (a stale read would carry 0.0000002)
    assert assert_exact(account) == (D("0.0000016"), Q, D("0.0000006"))
