"""Usage metering at the service level: usage_cost, usage_record, usage_record_batch, usage_capture.

Rate-card versions are created directly with the ORM (the rate-card service is not used here)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import Role
from billing_service.errors import InvalidInput
from credits.errors import (
    AccountNotFound,
    AmountOrModelRequired,
    HoldNotActive,
    HoldNotFound,
    IdempotencyConflict,
    InsufficientCredits,
    ModelNotPriced,
    RequestIdRecorded,
)
from credits.models import (
    CreditAccount,
    Hold,
    HoldStatus,
    LedgerEntry,
    ModelPrice,
    TransactionType,
    UsageEvent,
    UsageRollup,
)
from credits.services import (
    UsageInput,
    credits_debit,
    credits_grant,
    hold_create,
    usage_capture,
    usage_record,
    usage_record_batch,
)
from credits.services.usage_events import usage_cost
from tests.conftest import make_member
from tests.credits.test_ledger_invariants_hypothesis import assert_ledger_invariants

pytestmark = pytest.mark.django_db

D = Decimal
T0 = datetime(2026, 1, 1, tzinfo=UTC)  # the first price version of "gpt-test"
T1 = datetime(2026, 3, 1, tzinfo=UTC)  # the second


def funded(platform, username: str, amount: str = "100") -> CreditAccount:  # noqa: ANN001
    account = make_member(platform, username).account
    if D(amount) > 0:
        credits_grant(account_id=account.id, amount=D(amount))
    account.refresh_from_db()
    return account


def price(platform, model: str, input_per_million: str, output_per_million: str, at: datetime) -> ModelPrice:  # noqa: ANN001
    return ModelPrice.objects.create(
        platform=platform, model=model, input_per_million=D(input_per_million),
        output_per_million=D(output_per_million), effective_from=at,
    )


def balance_of(account: CreditAccount) -> Decimal:
    return CreditAccount.objects.get(pk=account.pk).balance


def rollups_of(account: CreditAccount) -> dict[tuple, tuple]:
    return {
        (r.day, r.endpoint): (r.total_requests, r.successful_requests, r.failed_requests, r.credits_consumed,
                              r.input_tokens, r.output_tokens)
        for r in UsageRollup.objects.filter(account=account)
    }


def written(account: CreditAccount) -> tuple:
    """Everything a usage call can write for an account."""
    acct = CreditAccount.objects.get(pk=account.pk)
    return (
        acct.balance, acct.reserved, acct.last_sequence,
        LedgerEntry.objects.filter(account=account).count(),
        sorted(UsageEvent.objects.filter(account=account).values_list("request_id", "cost")),
        rollups_of(account),
    )


@pytest.fixture
def account(platform) -> CreditAccount:  # noqa: ANN001
    return funded(platform, "payer", "100")


@pytest.fixture
def operator(platform):  # noqa: ANN001, ANN201
    return make_member(platform, "operator", Role.ADMIN).user


@pytest.fixture
def rate_card(platform):  # noqa: ANN001, ANN201
    """gpt-test: 2/8 per million from T0, 3/12 from T1, 100/100 from 30 days ahead (not yet in effect)."""
    return {
        "v1": price(platform, "gpt-test", "2", "8", T0),
        "v2": price(platform, "gpt-test", "3", "12", T1),
        "future": price(platform, "gpt-test", "100", "100", timezone.now() + timedelta(days=30)),
    }


def record(platform, account, request_id="req-1", **kwargs):  # noqa: ANN001, ANN003, ANN201
    kwargs.setdefault("endpoint", "/v1/chat")
    actor = kwargs.pop("actor", None)
    return usage_record(platform=platform, usage=UsageInput(account_id=account.id, request_id=request_id, **kwargs),
                        actor=actor)


def event(account, request_id, **kwargs) -> UsageInput:  # noqa: ANN001, ANN003
    kwargs.setdefault("endpoint", "/v1/chat")
    return UsageInput(account_id=account.id, request_id=request_id, **kwargs)


# --- pricing -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("input_tokens", "output_tokens", "per_input", "per_output", "expected"),
    [
        (1000, 2000, "2.50", "10.00", "0.0225"),
        (1_500_000, 0, "3", "15", "4.5"),
        (0, 1, "0.5", "0.5", "0.0000005"),
        (5, 0, "0.5", "0", "0.0000025"),
        (1, 0, "0.4999", "0", "0.0000004999"),
        (333, 0, "1.000001", "0", "0.000333000333"),
        (7, 3, "0.15", "0.35", "0.0000021"),  # 0.00000105 + 0.00000105
        (1, 0, "0.000001", "0", "0.000000000001"),  # the smallest cost there is
        (None, 1_000_000, "1", "0.000001", "0.000001"),  # input tokens absent count as none
        # the most tokens at a large price: still exact (60 digits of precision; any rounding would raise)
        (10**12 - 7, 10**12 - 1, "99999.123457", "0.000003", "99999123459.300006135798"),
        (10**12, 10**12, "999999999.999999", "999999999.999999", "1999999999999998"),
    ],
)
def test_cost_is_tokens_times_price_per_million_exactly(
    input_tokens, output_tokens, per_input, per_output, expected  # noqa: ANN001
):
    version = ModelPrice(model="m", input_per_million=D(per_input), output_per_million=D(per_output),
                         effective_from=T0)
    usage = UsageInput(account_id=uuid.uuid4(), request_id="r", endpoint="/e", model="m",
                       input_tokens=input_tokens, output_tokens=output_tokens)
    cost, used = usage_cost(usage, [version], T1)
    assert cost == D(expected)
    assert cost.as_tuple().exponent >= -12  # what UsageEvent.cost stores exactly
    assert used is version


def test_usage_cost_of_an_amount_or_a_failure_needs_no_price():
    usage = UsageInput(account_id=uuid.uuid4(), request_id="r", endpoint="/e", model="m", amount=D("1.25"))
    assert usage_cost(usage, [], T1) == (D("1.25"), None)
    failed = UsageInput(account_id=uuid.uuid4(), request_id="r", endpoint="/e", model="m", input_tokens=5,
                        success=False)
    assert usage_cost(failed, [], T1) == (D(0), None)


def test_event_is_priced_by_the_version_in_effect_when_it_occurred(platform, account, rate_card):
    # 1000 input + 1000 output tokens: v1 costs 0.01, v2 0.015, the future version would cost 0.2
    tokens = {"model": "gpt-test", "input_tokens": 1000, "output_tokens": 1000}
    cases = [
        ("during-v1", T0 + timedelta(days=1), "0.01", rate_card["v1"]),
        ("at-v2-start", T1, "0.015", rate_card["v2"]),  # effective_from is inclusive
        ("just-before-v2", T1 - timedelta(microseconds=1), "0.01", rate_card["v1"]),
        ("now", None, "0.015", rate_card["v2"]),  # the future version is not in effect yet
    ]
    for request_id, at, cost, version in cases:
        result = record(platform, account, request_id, occurred_at=at, **tokens)
        stored = UsageEvent.objects.get(pk=result.event.id)
        assert (stored.cost, stored.price_id, stored.priced_by) == (D(cost), version.pk, "rate_card"), request_id
        assert (stored.model, stored.input_tokens, stored.output_tokens) == ("gpt-test", 1000, 1000)
        assert result.entry.balance_delta == -D(cost)
    assert balance_of(account) == D("100") - D("0.05")
    assert_ledger_invariants(account)


def test_before_the_first_version_the_model_is_not_priced_and_nothing_is_written(platform, account, rate_card):
    before = written(account)
    with pytest.raises(ModelNotPriced) as exc:
        record(platform, account, model="gpt-test", input_tokens=10, occurred_at=T0 - timedelta(seconds=1))
    assert "model" in exc.value.details
    assert written(account) == before


def test_prices_of_another_platform_are_never_used(platform, other_platform, account):
    price(other_platform, "their-model", "1", "1", T0)
    with pytest.raises(ModelNotPriced):
        record(platform, account, model="their-model", input_tokens=10)
    with pytest.raises(ModelNotPriced):
        record(platform, account, model="unknown-model", input_tokens=10)
    assert UsageEvent.objects.count() == 0


def test_neither_amount_nor_model_is_refused(platform, account):
    before = written(account)
    with pytest.raises(AmountOrModelRequired) as exc:
        record(platform, account, input_tokens=10)
    assert exc.value.status_code == 400 and "amount" in exc.value.details
    assert written(account) == before


def test_an_amount_is_the_cost_even_for_a_priced_model(platform, account, rate_card):
    result = record(platform, account, model="gpt-test", input_tokens=10**6, output_tokens=10**6,
                    amount=D("0.000125"))
    assert (result.event.cost, result.event.priced_by, result.event.price_id) == (D("0.000125"), "amount", None)
    assert result.entry.balance_delta == D("-0.000125")
    assert balance_of(account) == D("99.999875")
    assert result.available == D("99.999875")


def test_a_success_below_a_quantum_is_recorded_and_carried_without_a_ledger_row(platform, account, rate_card):
    result = record(platform, account, model="gpt-test", input_tokens=1, occurred_at=T0)  # 0.000002
    assert (result.event.cost, result.event.charged) == (D("0.000002"), D("0.000002"))
    price(platform, "tiny", "0.4", "0", T0)
    result = record(platform, account, "req-2", model="tiny", input_tokens=1)  # 0.0000004: carried
    assert result.event.cost == D("0.0000004") and result.event.charged == 0
    assert result.entry is None and result.event.ledger_entry_id is None
    assert result.event.success is True
    assert CreditAccount.objects.get(pk=account.pk).carried_remainder == D("0.0000004")
    assert UsageEvent.objects.filter(account=account).count() == 2
    assert LedgerEntry.objects.filter(account=account, transaction_type="subtract").count() == 1


# --- what one event writes -------------------------------------------------------------------------------


def test_a_successful_event_writes_the_event_its_debit_and_its_rollup_together(
    platform, account, rate_card, operator
):
    at = datetime(2026, 4, 17, 9, 15, tzinfo=UTC)
    result = record(
        platform, account, "req-42", endpoint="/v1/chat/completions", model="gpt-test", input_tokens=1200,
        output_tokens=300, metadata={"conversation": "c-1", "n": 2}, occurred_at=at, actor=operator,
    )
    # cost: (1200 * 3 + 300 * 12) / 1e6 = 0.0072
    assert result.replayed is False
    event = UsageEvent.objects.get(account=account, request_id="req-42")
    assert event.id == result.event.id
    assert (event.platform_id, event.endpoint, event.model, event.input_tokens, event.output_tokens) == (
        platform.pk, "/v1/chat/completions", "gpt-test", 1200, 300
    )
    assert (event.cost, event.priced_by, event.price_id, event.success) == (
        D("0.0072"), "rate_card", rate_card["v2"].pk, True
    )
    assert event.metadata == {"conversation": "c-1", "n": 2}
    assert event.occurred_at == at and event.recorded_at >= at
    assert event.hold_id is None and event.description == ""

    entry = LedgerEntry.objects.get(pk=event.ledger_entry_id)
    assert entry.pk == result.entry.id
    assert entry.transaction_type == TransactionType.SUBTRACT
    assert (entry.balance_delta, entry.reserved_delta) == (D("-0.0072"), 0)
    assert entry.balance_after == D("99.9928")
    assert "gpt-test" in entry.description and "/v1/chat/completions" in entry.description
    assert entry.reference == "req-42"
    assert entry.metadata == {"usage_event_id": str(event.id), "endpoint": "/v1/chat/completions",
                              "model": "gpt-test"}
    assert entry.actor_id == operator.pk
    assert entry.idempotency_key is not None and "req-42" in entry.idempotency_key
    assert result.available == D("99.9928") == CreditAccount.objects.get(pk=account.pk).available

    assert rollups_of(account) == {
        (at.date(), "/v1/chat/completions"): (1, 1, 0, D("0.0072"), 1200, 300),
    }
    assert_ledger_invariants(account)


def test_an_event_without_a_model_debits_with_a_description_naming_the_endpoint(platform, account):
    result = record(platform, account, endpoint="/v1/embeddings", amount=D("1.5"))
    assert "/v1/embeddings" in result.entry.description
    assert result.event.model == "" and result.event.price_id is None


def test_the_debit_names_model_and_endpoint_even_with_the_callers_description(platform, account):
    result = record(platform, account, endpoint="/v1/chat", model="gpt-x", amount=D("1"),
                    description="Tutor conversation")
    assert result.event.description == "Tutor conversation"
    entry = LedgerEntry.objects.get(pk=result.entry.id)
    assert "gpt-x" in entry.description and "/v1/chat" in entry.description
    assert "Tutor conversation" in entry.description
    # the longest description the API accepts still fits the ledger row
    long = record(platform, account, "req-long", endpoint="/" + "e" * 199, model="m" * 100, amount=D("1"),
                  description="d" * 500)
    assert len(LedgerEntry.objects.get(pk=long.entry.id).description) <= 500


def test_a_failed_event_is_recorded_charges_nothing_and_counts_as_failed(platform, account, rate_card):
    at = datetime(2026, 5, 2, 12, tzinfo=UTC)
    before = LedgerEntry.objects.filter(account=account).count()
    result = record(platform, account, model="gpt-test", input_tokens=500, output_tokens=0, success=False,
                    occurred_at=at)
    assert result.entry is None and result.replayed is False
    event = UsageEvent.objects.get(pk=result.event.id)
    assert (event.success, event.cost, event.ledger_entry_id) == (False, 0, None)
    assert LedgerEntry.objects.filter(account=account).count() == before
    assert balance_of(account) == D("100") and result.available == D("100")
    total, ok, failed, consumed, *_ = rollups_of(account)[(at.date(), "/v1/chat")]
    assert (total, ok, failed, consumed) == (1, 0, 1, 0)


def test_a_failed_event_is_recorded_even_for_an_unpriced_model_or_an_empty_account(platform):
    empty = funded(platform, "broke", "0")
    result = record(platform, empty, model="not-on-the-card", input_tokens=10, success=False)
    assert result.event.cost == 0 and result.entry is None
    assert UsageEvent.objects.filter(account=empty).count() == 1


def test_an_account_of_another_platform_is_not_found(platform, other_platform, account):
    foreign = funded(other_platform, "foreigner", "10")
    with pytest.raises(AccountNotFound):
        record(platform, foreign, amount=D("1"))
    with pytest.raises(AccountNotFound):
        usage_record(platform=platform,
                     usage=UsageInput(account_id=uuid.uuid4(), request_id="r", endpoint="/e", amount=D("1")))
    assert UsageEvent.objects.count() == 0 and balance_of(foreign) == D("10")


@pytest.mark.parametrize("path", ["single", "batch"])
def test_rollups_are_per_account_utc_day_and_endpoint(platform, account, rate_card, path):
    other = funded(platform, "other", "100")
    day1, day2 = datetime(2026, 6, 1, tzinfo=UTC).date(), datetime(2026, 6, 2, tzinfo=UTC).date()
    plus2 = dt_timezone(timedelta(hours=2))
    events = [
        event(account, "a", amount=D("1.10"), input_tokens=10, output_tokens=1,
              occurred_at=datetime(2026, 6, 1, 0, 0, tzinfo=UTC)),
        event(account, "b", amount=D("2.20"), input_tokens=20, occurred_at=datetime(2026, 6, 1, 23, 59, 59,
                                                                                    999999, tzinfo=UTC)),
        # 01:30 at UTC+2 is 23:30 UTC the day before
        event(account, "c", amount=D("0.000001"), occurred_at=datetime(2026, 6, 2, 1, 30, tzinfo=plus2)),
        event(account, "d", amount=D("5"), occurred_at=datetime(2026, 6, 2, 0, 0, tzinfo=UTC)),
        event(account, "e", endpoint="/v1/embed", amount=D("0.5"), occurred_at=datetime(2026, 6, 1, 8,
                                                                                         tzinfo=UTC)),
        event(account, "f", model="gpt-test", input_tokens=7, output_tokens=9, success=False,
              occurred_at=datetime(2026, 6, 1, 9, tzinfo=UTC)),
        event(other, "a", amount=D("3"), output_tokens=4, occurred_at=datetime(2026, 6, 1, 10, tzinfo=UTC)),
    ]
    if path == "single":
        for usage in events:
            usage_record(platform=platform, usage=usage)
    else:
        assert [o.status for o in usage_record_batch(platform=platform, events=events)] == ["recorded"] * 7
    assert rollups_of(account) == {
        (day1, "/v1/chat"): (4, 3, 1, D("3.300001"), 37, 10),
        (day2, "/v1/chat"): (1, 1, 0, D("5"), 0, 0),
        (day1, "/v1/embed"): (1, 1, 0, D("0.5"), 0, 0),
    }
    assert rollups_of(other) == {(day1, "/v1/chat"): (1, 1, 0, D("3"), 0, 4)}
    # the rollups agree with the raw events
    sums: dict = defaultdict(lambda: [0, D(0)])
    for ev in UsageEvent.objects.filter(account=account):
        key = (ev.occurred_at.astimezone(UTC).date(), ev.endpoint)
        sums[key][0] += 1
        sums[key][1] += ev.cost
    assert {k: (v[0], v[3]) for k, v in rollups_of(account).items()} == {k: tuple(v) for k, v in sums.items()}
    assert balance_of(account) == D("100") - D("8.800001")
    assert_ledger_invariants(account)
    assert_ledger_invariants(other)


# --- idempotency -------------------------------------------------------------------------------------------


def test_the_same_event_again_returns_the_first_result(platform, account, rate_card):
    first = record(platform, account, model="gpt-test", input_tokens=1000, metadata={"k": "v"})
    state = written(account)
    again = record(platform, account, model="gpt-test", input_tokens=1000, metadata={"k": "v"})
    assert again.replayed is True
    assert again.event.id == first.event.id
    assert again.entry.id == first.entry.id
    assert again.available == first.available == D("99.997")
    assert written(account) == state
    assert_ledger_invariants(account)


def test_a_replay_is_answered_even_when_the_credits_are_gone(platform, account):
    first = record(platform, account, amount=D("60"))
    credits_debit(account_id=account.id, amount=D("40"))
    again = record(platform, account, amount=D("60"))
    assert again.replayed and again.event.id == first.event.id and again.entry.id == first.entry.id
    assert again.available == 0
    assert UsageEvent.objects.filter(account=account).count() == 1


def test_a_replayed_failed_event_returns_the_first_one(platform, account):
    first = record(platform, account, amount=D("2"), success=False)
    state = written(account)
    again = record(platform, account, amount=D("2"), success=False)
    assert again.replayed and again.event.id == first.event.id and again.entry is None
    assert written(account) == state


@pytest.mark.parametrize(
    "change",
    [
        {"amount": D("1.01")},
        {"endpoint": "/v1/other"},
        {"model": "gpt-y"},
        {"input_tokens": 11},
        {"output_tokens": 0},
        {"description": "another"},
        {"metadata": {"k": "other"}},
        {"occurred_at": datetime(2026, 2, 2, tzinfo=UTC)},
        {"success": False},
    ],
    ids=lambda change: next(iter(change)),
)
def test_the_same_request_id_with_other_content_is_a_conflict(platform, account, change):
    base = {"amount": D("1"), "model": "gpt-x", "input_tokens": 10, "output_tokens": 5, "metadata": {"k": "v"},
            "occurred_at": datetime(2026, 2, 1, tzinfo=UTC)}
    record(platform, account, **base)
    state = written(account)
    with pytest.raises(IdempotencyConflict) as exc:
        record(platform, account, **{**base, **change})
    assert exc.value.details == {"request_id": "req-1"}  # the caller's field, not the ledger's key
    assert written(account) == state


def test_a_failed_event_then_a_successful_one_with_its_request_id_is_a_conflict(platform, account):
    record(platform, account, amount=D("3"), success=False)
    state = written(account)
    with pytest.raises(IdempotencyConflict):
        record(platform, account, amount=D("3"))
    assert written(account) == state
    assert balance_of(account) == D("100")
    assert_ledger_invariants(account)


def test_an_amount_equal_in_value_is_the_same_event(platform, account):
    first = record(platform, account, amount=D("1.5"))
    again = record(platform, account, amount=D("1.500000"))
    assert again.replayed and again.event.id == first.event.id


# --- insufficient credits ------------------------------------------------------------------------------------


def test_insufficient_credits_writes_nothing(platform, rate_card):
    poor = funded(platform, "poor", "1")
    record(platform, poor, "seen", amount=D("0.25"))
    state = written(poor)
    with pytest.raises(InsufficientCredits) as exc:
        record(platform, poor, "too-much", amount=D("0.750001"))
    assert exc.value.status_code == 402
    assert exc.value.details == {"available": "0.75", "required": "0.750001"}
    with pytest.raises(InsufficientCredits):
        record(platform, poor, "priced", model="gpt-test", input_tokens=10**6)  # 3 credits
    assert written(poor) == state
    assert not UsageEvent.objects.filter(request_id__in=["too-much", "priced"]).exists()
    # the request_id was not used: the same call with a cost the account covers goes through
    result = record(platform, poor, "too-much", amount=D("0.75"))
    assert result.replayed is False and balance_of(poor) == 0
    assert_ledger_invariants(poor)


def test_reserved_credits_are_not_available_for_usage(platform, account):
    hold_create(account_id=account.id, amount=D("99.5"))
    with pytest.raises(InsufficientCredits):
        record(platform, account, amount=D("0.6"))
    assert record(platform, account, amount=D("0.5")).available == 0
    assert_ledger_invariants(account)


# --- batches ---------------------------------------------------------------------------------------------------


def test_a_batch_records_each_event_on_its_own_in_order(platform, account, other_platform, rate_card):
    second = funded(platform, "second", "5")
    foreign = funded(other_platform, "foreigner", "10")
    record(platform, account, "old", amount=D("1"))  # recorded before the batch
    record(platform, account, "old-failed", amount=D("1"), success=False)
    old = UsageEvent.objects.get(request_id="old")
    at = datetime(2026, 7, 1, tzinfo=UTC)
    events = [
        event(account, "n1", amount=D("2"), occurred_at=at),                             # 0 recorded
        event(account, "old", amount=D("1")),                                           # 1 duplicate (earlier)
        event(account, "old", amount=D("9")),                                           # 2 conflict (earlier)
        event(foreign, "f1", amount=D("1")),                                            # 3 account of another platform
        event(second, "s1", amount=D("4")),                                             # 4 recorded (5 -> 1)
        event(second, "s2", amount=D("3")),                                             # 5 insufficient
        event(second, "s3", amount=D("1")),                                             # 6 recorded (1 -> 0)
        event(account, "n1", amount=D("2"), occurred_at=at),                             # 7 duplicate in batch
        event(account, "n1", amount=D("7"), occurred_at=at),                             # 8 conflict in batch
        event(account, "p1", model="gpt-test", input_tokens=10**6, occurred_at=at),     # 9 priced by v2: 3
        event(account, "u1", model="no-such-model", input_tokens=1),                    # 10 not priced
        event(account, "x1", input_tokens=1),                                           # 11 neither
        event(account, "fail", model="no-such-model", success=False),                   # 12 failed: recorded
        event(CreditAccount(id=uuid.uuid4()), "ghost", amount=D("1")),                  # 13 no such account
        event(account, "old-failed", amount=D("1")),                                    # 14 failed then success
    ]
    outcomes = usage_record_batch(platform=platform, events=events)

    assert [o.request_id for o in outcomes] == [e.request_id for e in events]
    assert [o.status for o in outcomes] == [
        "recorded", "duplicate", "rejected", "rejected", "recorded", "rejected", "recorded", "duplicate",
        "rejected", "recorded", "rejected", "rejected", "recorded", "rejected", "rejected",
    ]
    errors = {i: type(o.error) for i, o in enumerate(outcomes) if o.error is not None}
    assert errors == {
        2: IdempotencyConflict, 3: AccountNotFound, 5: InsufficientCredits, 8: IdempotencyConflict,
        10: ModelNotPriced, 11: AmountOrModelRequired, 13: AccountNotFound, 14: IdempotencyConflict,
    }
    assert all(o.event_id is None and o.entry_id is None for o in outcomes if o.status == "rejected")
    # duplicates point at the first event and its ledger row
    assert (outcomes[1].event_id, outcomes[1].entry_id) == (old.id, old.ledger_entry_id)
    assert (outcomes[7].event_id, outcomes[7].entry_id) == (outcomes[0].event_id, outcomes[0].entry_id)
    # recorded events are stored with their ledger rows
    for i in (0, 4, 6, 9, 12):
        stored = UsageEvent.objects.get(pk=outcomes[i].event_id)
        assert stored.request_id == events[i].request_id
        assert stored.ledger_entry_id == outcomes[i].entry_id
    assert UsageEvent.objects.get(request_id="p1").price_id == rate_card["v2"].pk
    assert UsageEvent.objects.get(request_id="p1").cost == D("3")
    assert outcomes[12].entry_id is None and UsageEvent.objects.get(request_id="fail").cost == 0
    assert sorted(UsageEvent.objects.filter(account=account).values_list("request_id", flat=True)) == [
        "fail", "n1", "old", "old-failed", "p1"
    ]
    assert sorted(UsageEvent.objects.filter(account=second).values_list("request_id", flat=True)) == ["s1", "s3"]
    assert not UsageEvent.objects.filter(account=foreign).exists()
    assert balance_of(account) == D("100") - 1 - 2 - 3
    assert (balance_of(second), balance_of(foreign)) == (0, D("10"))
    for acct in (account, second, foreign):
        assert_ledger_invariants(acct)


def test_a_batch_writes_the_same_rows_as_single_events(platform, account, rate_card, operator):
    at = datetime(2026, 7, 2, 10, tzinfo=UTC)
    single = record(platform, account, "one", model="gpt-test", input_tokens=100, output_tokens=10,
                    metadata={"a": 1}, occurred_at=at, actor=operator)
    (outcome,) = usage_record_batch(
        platform=platform, actor=operator,
        events=[event(account, "two", model="gpt-test", input_tokens=100, output_tokens=10, metadata={"a": 1},
                      occurred_at=at)],
    )
    one, two = UsageEvent.objects.get(request_id="one"), UsageEvent.objects.get(request_id="two")
    fields = ["platform_id", "endpoint", "model", "input_tokens", "output_tokens", "cost", "priced_by", "price_id",
              "success", "description", "metadata", "occurred_at", "hold_id"]
    assert [getattr(one, f) for f in fields] == [getattr(two, f) for f in fields]
    e1, e2 = LedgerEntry.objects.get(pk=single.entry.id), LedgerEntry.objects.get(pk=outcome.entry_id)
    assert (e2.transaction_type, e2.balance_delta, e2.description, e2.actor_id) == (
        e1.transaction_type, e1.balance_delta, e1.description, e1.actor_id
    )
    assert (e1.reference, e2.reference) == ("one", "two")
    assert e2.metadata == {"usage_event_id": str(two.id), "endpoint": "/v1/chat", "model": "gpt-test"}
    assert e2.idempotency_key == e1.idempotency_key.replace("one", "two")
    assert (e1.sequence, e2.sequence) == (2, 3) and e2.balance_after == D("100") - 2 * D("0.00042")
    assert e2.created_at >= e1.created_at
    assert_ledger_invariants(account)


def test_single_and_batch_see_each_others_events(platform, account):
    by_batch = usage_record_batch(platform=platform, events=[event(account, "b1", amount=D("1"))])[0]
    again = record(platform, account, "b1", amount=D("1"))
    assert again.replayed and again.event.id == by_batch.event_id and again.entry.id == by_batch.entry_id
    with pytest.raises(IdempotencyConflict):
        record(platform, account, "b1", amount=D("2"))
    single = record(platform, account, "s1", amount=D("1"))
    (dup,) = usage_record_batch(platform=platform, events=[event(account, "s1", amount=D("1"))])
    assert (dup.status, dup.event_id, dup.entry_id) == ("duplicate", single.event.id, single.entry.id)
    assert balance_of(account) == D("98")
    assert_ledger_invariants(account)


def test_a_batch_replayed_whole_returns_the_same_events_and_writes_nothing(platform, account, rate_card):
    second = funded(platform, "second", "10")
    events = [event(acct, f"r{i}", amount=D("0.5"), occurred_at=T1) for i in range(5) for acct in (account, second)]
    events.append(event(account, "failed", amount=D("3"), success=False))
    first = usage_record_batch(platform=platform, events=events)
    assert {o.status for o in first} == {"recorded"}
    state = (written(account), written(second))
    again = usage_record_batch(platform=platform, events=list(reversed(events)))
    assert [o.status for o in again] == ["duplicate"] * len(events)
    assert [(o.event_id, o.entry_id) for o in again] == [(o.event_id, o.entry_id) for o in reversed(first)]
    assert (written(account), written(second)) == state


def test_later_cheaper_events_of_a_batch_still_go_through_after_a_refusal(platform):
    poor = funded(platform, "poor", "10")
    amounts = ["6", "6", "3", "2", "1", "0"]
    outcomes = usage_record_batch(
        platform=platform, events=[event(poor, f"e{i}", amount=D(a)) for i, a in enumerate(amounts)]
    )
    assert [o.status for o in outcomes] == ["recorded", "rejected", "recorded", "rejected", "recorded", "recorded"]
    assert outcomes[1].error.details == {"available": "4.00", "required": "6.00"}
    assert outcomes[3].error.details == {"available": "1.00", "required": "2.00"}
    assert balance_of(poor) == 0
    assert outcomes[5].entry_id is None  # nothing to charge
    assert sorted(UsageEvent.objects.filter(account=poor).values_list("request_id", flat=True)) == [
        "e0", "e2", "e4", "e5"
    ]
    assert [e.balance_after for e in LedgerEntry.objects.filter(account=poor).order_by("sequence")] == [
        D("10"), D("4"), D("1"), D("0")
    ]
    assert_ledger_invariants(poor)


def test_a_batch_where_every_event_is_refused_writes_nothing(platform, account):
    before = written(account)
    outcomes = usage_record_batch(
        platform=platform,
        events=[event(account, "big", amount=D("100.01")), event(account, "none", input_tokens=1),
                event(account, "unpriced", model="nope", input_tokens=1)],
    )
    assert [o.status for o in outcomes] == ["rejected"] * 3
    assert written(account) == before


def test_a_batch_over_many_accounts_charges_each_its_own(platform):
    accounts = [funded(platform, f"user{i}", "10") for i in range(6)]
    events = [event(accounts[(i * 5) % 6], f"r{i}", amount=D(f"0.{i + 1}")) for i in range(24)]
    outcomes = usage_record_batch(platform=platform, events=events)
    assert {o.status for o in outcomes} == {"recorded"}
    for acct in accounts:
        mine = [e for e in events if e.account_id == acct.id]
        assert balance_of(acct) == D("10") - sum((e.amount for e in mine), D(0))
        assert UsageEvent.objects.filter(account=acct).count() == len(mine)
        # the account's rows follow the batch's order
        assert [e.reference for e in LedgerEntry.objects.filter(account=acct, transaction_type="subtract")
                .order_by("sequence")] == [e.request_id for e in mine]
        assert_ledger_invariants(acct)


# --- a held call, captured -------------------------------------------------------------------------------


def test_capturing_a_hold_records_its_event_linked_to_the_hold_and_the_debit(platform, account, operator):
    held = hold_create(account_id=account.id, amount=D("5"), idempotency_key="call-7").hold
    result, usage = usage_capture(
        platform=platform, hold_id=held.id, amount=D("3.25"), endpoint="/v1/chat", model="gpt-x",
        input_tokens=100, output_tokens=50, metadata={"trace": "t"}, actor=operator,
    )
    stored = UsageEvent.objects.get(pk=usage.id)
    assert (stored.request_id, stored.hold_id, stored.cost, stored.success) == ("call-7", held.id, D("3.25"), True)
    assert (stored.model, stored.input_tokens, stored.output_tokens, stored.priced_by) == ("gpt-x", 100, 50,
                                                                                          "amount")
    subtract = LedgerEntry.objects.get(pk=stored.ledger_entry_id)
    assert (subtract.transaction_type, subtract.balance_delta, subtract.hold_id) == ("subtract", D("-3.25"),
                                                                                    held.id)
    assert "gpt-x" in subtract.description and "/v1/chat" in subtract.description
    release = LedgerEntry.objects.get(hold=held, transaction_type="release")
    assert release.reserved_delta == D("-1.75")
    assert {e.id for e in result.entries} == {subtract.id, release.id}
    assert Hold.objects.get(pk=held.id).status == HoldStatus.CAPTURED
    assert (balance_of(account), CreditAccount.objects.get(pk=account.pk).reserved) == (D("96.75"), 0)
    (rollup,) = UsageRollup.objects.filter(account=account)
    assert (rollup.total_requests, rollup.successful_requests, rollup.credits_consumed, rollup.input_tokens) == (
        1, 1, D("3.25"), 100
    )
    assert_ledger_invariants(account)


def test_capturing_a_failed_call_charges_nothing_and_releases_the_hold(platform, account):
    held = hold_create(account_id=account.id, amount=D("5")).hold
    result, usage = usage_capture(platform=platform, hold_id=held.id, amount=D("3"), endpoint="/v1/chat",
                                  success=False)
    stored = UsageEvent.objects.get(pk=usage.id)
    assert (stored.success, stored.cost, stored.ledger_entry_id, stored.hold_id) == (False, 0, None, held.id)
    assert stored.request_id  # a hold without a key still gives its event a request_id
    assert [e.transaction_type for e in result.entries] == ["release"]
    assert not LedgerEntry.objects.filter(account=account, transaction_type="subtract").exists()
    assert (balance_of(account), CreditAccount.objects.get(pk=account.pk).reserved) == (D("100"), 0)
    (rollup,) = UsageRollup.objects.filter(account=account)
    assert (rollup.total_requests, rollup.failed_requests, rollup.credits_consumed) == (1, 1, 0)
    assert_ledger_invariants(account)


def test_a_hold_is_captured_once_and_only_by_its_platform(platform, other_platform, account):
    held = hold_create(account_id=account.id, amount=D("5")).hold
    with pytest.raises(HoldNotFound):
        usage_capture(platform=other_platform, hold_id=held.id, amount=D("1"), endpoint="/e")
    usage_capture(platform=platform, hold_id=held.id, amount=D("1"), endpoint="/e")
    with pytest.raises(HoldNotActive):
        usage_capture(platform=platform, hold_id=held.id, amount=D("1"), endpoint="/e")
    assert UsageEvent.objects.filter(hold=held).count() == 1
    assert_ledger_invariants(account)


def test_a_request_id_already_recorded_cannot_be_held_so_no_capture_is_ever_stuck(platform, account):
    record(platform, account, "call-9", amount=D("1"))
    state = written(account)
    with pytest.raises(RequestIdRecorded):
        hold_create(account_id=account.id, amount=D("5"), idempotency_key="call-9")
    assert written(account) == state
    assert not Hold.objects.filter(account=account).exists()
    assert_ledger_invariants(account)


def test_the_longest_request_id_is_recorded_and_replayed_on_both_paths(platform, account):
    single_id, batch_id = "s" * 255, "b" * 255
    first = record(platform, account, single_id, amount=D("1"))
    assert record(platform, account, single_id, amount=D("1")).event.id == first.event.id
    (outcome,) = usage_record_batch(platform=platform, events=[event(account, batch_id, amount=D("1"))])
    assert outcome.status == "recorded"
    (again,) = usage_record_batch(platform=platform, events=[event(account, batch_id, amount=D("1"))])
    assert (again.status, again.event_id) == ("duplicate", outcome.event_id)
    # the two keys are told apart, and the single path finds the batch's row
    assert record(platform, account, batch_id, amount=D("1")).entry.id == outcome.entry_id
    with pytest.raises(IdempotencyConflict):
        record(platform, account, batch_id, amount=D("2"))
    assert balance_of(account) == D("98")
    assert LedgerEntry.objects.get(pk=first.entry.id).reference == single_id
    assert_ledger_invariants(account)


@pytest.mark.parametrize("occurred_at", [datetime(1999, 12, 31, 23, 59, tzinfo=UTC), datetime(1, 1, 1, 5, tzinfo=UTC)])
def test_an_event_before_2000_is_refused_by_the_service_before_any_write(platform, account, occurred_at):
    """The floor is the service's rule, whoever calls it (the API refuses it first too)."""
    state = written(account)
    with pytest.raises(InvalidInput) as refused:
        record(platform, account, "early", amount=D("1"), occurred_at=occurred_at)
    assert "occurred_at" in refused.value.details
    (outcome,) = usage_record_batch(platform=platform, events=[event(account, "early-b", amount=D("1"),
                                                                     occurred_at=occurred_at)])
    assert outcome.status == "rejected" and "occurred_at" in outcome.error.details
    assert written(account) == state
