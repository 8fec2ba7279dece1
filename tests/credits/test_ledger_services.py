"""The single-row ledger services: credits_grant, credits_debit, credits_adjust, credits_refund.

Each service is checked for the rows it writes (type, deltas, running totals, sequence, actor), what it
refuses (and that a refusal writes nothing), and its idempotency (replay, conflict, keys scoped per account).
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from accounts.models import Role
from credits.errors import (
    AccountNotFound,
    BalanceLimitExceeded,
    EntryNotFound,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidRefundTarget,
    RefundExceedsOriginal,
)
from credits.models import MAX_BALANCE, CreditAccount, EntryStatus, Hold, LedgerEntry, TransactionType
from credits.services import (
    credits_adjust,
    credits_debit,
    credits_grant,
    credits_refund,
    hold_capture,
    hold_create,
)
from tests.conftest import make_member
from tests.credits.test_ledger_invariants_hypothesis import assert_ledger_invariants

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture
def account(platform) -> CreditAccount:  # noqa: ANN001
    """A member's account with no ledger rows yet."""
    return make_member(platform, "payer").account


@pytest.fixture
def second_account(platform) -> CreditAccount:  # noqa: ANN001
    return make_member(platform, "payer2").account


@pytest.fixture
def operator(platform):  # noqa: ANN001, ANN201
    return make_member(platform, "operator", Role.ADMIN).user


def rows(account: CreditAccount) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(account=account).order_by("sequence"))


def state(account: CreditAccount) -> dict:
    """Everything a refused request must leave untouched."""
    account = CreditAccount.objects.get(pk=account.pk)
    return {
        "balance": account.balance,
        "reserved": account.reserved,
        "last_sequence": account.last_sequence,
        "last_entry_at": account.last_entry_at,
        "counts": {t: account.count_of(t) for t in TransactionType.values},
        "rows": [e.id for e in rows(account)],
        "holds": sorted(str(h) for h in Hold.objects.filter(account=account).values_list("id", "status")),
    }


def money(account: CreditAccount) -> tuple[Decimal, Decimal, Decimal]:
    account.refresh_from_db()
    return account.balance, account.reserved, account.available


# --- grant ------------------------------------------------------------------------------------------------


def test_grant_writes_an_add_row_and_raises_the_balance(account, operator):
    result = credits_grant(
        account_id=account.id,
        amount=D("100.00"),
        description="Top-up",
        reference="order-1",
        metadata={"source": "stripe"},
        payment_amount_usd=D("9.99"),
        actor=operator,
    )

    assert result.replayed is False
    [entry] = rows(account)
    assert entry.id == result.entry.id
    assert entry.sequence == 1
    assert entry.transaction_type == TransactionType.ADD
    assert entry.status == EntryStatus.COMPLETED
    assert entry.balance_delta == D("100")
    assert entry.reserved_delta == D("0")
    assert entry.balance_after == D("100")
    assert entry.reserved_after == D("0")
    assert entry.payment_amount_usd == D("9.99")
    assert entry.actor_id == operator.pk
    assert entry.platform_id == account.platform_id
    assert (entry.description, entry.reference, entry.metadata) == ("Top-up", "order-1", {"source": "stripe"})
    assert entry.idempotency_key is None
    assert entry.hold_id is None and entry.refund_of_id is None
    # The returned entry is the stored row, not a guess at it.
    assert result.entry.balance_after == entry.balance_after
    assert result.entry.created_at == entry.created_at
    assert result.entry.metadata == {"source": "stripe"}
    assert money(account) == (D("100"), D("0"), D("100"))
    assert account.last_sequence == 1
    assert account.count_add == 1
    assert account.last_entry_at == entry.created_at
    assert_ledger_invariants(account)


def test_grant_without_payment_or_actor_leaves_them_empty(account):
    entry = credits_grant(account_id=account.id, amount=D("5")).entry
    assert entry.payment_amount_usd is None
    assert entry.actor_id is None


def test_sequence_and_running_totals_follow_every_service(account, operator):
    credits_grant(account_id=account.id, amount=D("100"), payment_amount_usd=D("100"))
    debit = credits_debit(account_id=account.id, amount=D("30.25"), actor=operator).entry
    credits_adjust(account_id=account.id, amount=D("5"), description="goodwill", actor=operator)
    credits_adjust(account_id=account.id, amount=D("-10"), description="correction", actor=operator)
    hold = hold_create(account_id=account.id, amount=D("20")).hold
    credits_refund(account_id=account.id, amount=D("10.25"), refund_of_id=debit.id)
    hold_capture(hold_id=hold.id, amount=D("12.5"))

    entries = rows(account)
    assert [e.sequence for e in entries] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [e.transaction_type for e in entries] == [
        "add", "subtract", "adjustment", "adjustment", "reserve", "refund", "subtract", "release",
    ]
    assert [e.balance_after for e in entries] == [
        D("100"), D("69.75"), D("74.75"), D("64.75"), D("64.75"), D("75"), D("62.5"), D("62.5"),
    ]
    assert [e.reserved_after for e in entries] == [0, 0, 0, 0, D("20"), D("20"), D("7.5"), D("0")]
    assert [e.actor_id for e in entries[:4]] == [None, operator.pk, operator.pk, operator.pk]
    assert [e.payment_amount_usd for e in entries] == [D("100")] + [None] * 7
    created = [e.created_at for e in entries]
    assert created == sorted(created)
    assert money(account) == (D("62.5"), D("0"), D("62.5"))
    assert (account.count_add, account.count_subtract, account.count_adjustment) == (1, 2, 2)
    assert (account.count_reserve, account.count_release, account.count_refund) == (1, 1, 1)
    assert account.last_sequence == 8
    assert_ledger_invariants(account)


def test_grant_beyond_the_balance_limit_is_refused_and_writes_nothing(account):
    credits_grant(account_id=account.id, amount=MAX_BALANCE - D("1"))
    before = state(account)
    with pytest.raises(BalanceLimitExceeded):
        credits_grant(account_id=account.id, amount=D("2"))
    assert state(account) == before


# --- debit ------------------------------------------------------------------------------------------------


def test_debit_writes_a_subtract_row(account, operator):
    credits_grant(account_id=account.id, amount=D("10"))
    result = credits_debit(
        account_id=account.id, amount=D("3.5"), description="AI call", reference="req-9", actor=operator
    )

    assert result.replayed is False
    entry = LedgerEntry.objects.get(pk=result.entry.id)
    assert entry.sequence == 2
    assert entry.transaction_type == TransactionType.SUBTRACT
    assert entry.balance_delta == D("-3.5")
    assert entry.reserved_delta == 0
    assert entry.balance_after == D("6.5")
    assert entry.reserved_after == 0
    assert entry.actor_id == operator.pk
    assert entry.payment_amount_usd is None
    assert (entry.description, entry.reference) == ("AI call", "req-9")
    assert money(account) == (D("6.5"), D("0"), D("6.5"))
    assert account.count_subtract == 1
    assert_ledger_invariants(account)


def test_debit_of_exactly_the_available_amount_leaves_zero(account):
    credits_grant(account_id=account.id, amount=D("10"))
    hold_create(account_id=account.id, amount=D("4"))
    credits_debit(account_id=account.id, amount=D("6"))
    assert money(account) == (D("4"), D("4"), D("0"))
    assert_ledger_invariants(account)


def test_debit_beyond_available_is_refused_and_writes_nothing(account):
    credits_grant(account_id=account.id, amount=D("10"))
    hold_create(account_id=account.id, amount=D("4"))  # balance 10, available 6
    before = state(account)

    with pytest.raises(InsufficientCredits) as raised:
        credits_debit(account_id=account.id, amount=D("6.000001"))

    assert raised.value.details == {"available": "6.00", "required": "6.000001"}
    assert state(account) == before
    assert money(account) == (D("10"), D("4"), D("6"))


def test_debit_on_an_empty_account_is_refused(account):
    before = state(account)
    with pytest.raises(InsufficientCredits):
        credits_debit(account_id=account.id, amount=D("0.000001"))
    with pytest.raises(InsufficientCredits):
        credits_debit(account_id=account.id, amount=D("1"), idempotency_key="k-empty")
    assert state(account) == before
    assert not LedgerEntry.objects.filter(idempotency_key="k-empty").exists()


@pytest.mark.parametrize("bad", [D("0"), D("-1"), D("NaN"), D("Infinity"), 1.5, 2, "3"])
def test_debit_and_grant_reject_non_positive_or_non_decimal_amounts(account, bad):
    credits_grant(account_id=account.id, amount=D("10"))
    before = state(account)
    with pytest.raises(ValueError):
        credits_debit(account_id=account.id, amount=bad)
    with pytest.raises(ValueError):
        credits_grant(account_id=account.id, amount=bad)
    assert state(account) == before


# --- unknown account --------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "k-unknown"])
def test_every_service_refuses_an_unknown_account(account, key):
    missing = uuid.uuid4()
    total = LedgerEntry.objects.count()
    calls = [
        lambda: credits_grant(account_id=missing, amount=D("1"), idempotency_key=key),
        lambda: credits_debit(account_id=missing, amount=D("1"), idempotency_key=key),
        lambda: credits_adjust(account_id=missing, amount=D("1"), description="x", actor=None,
                               idempotency_key=key),
        lambda: credits_adjust(account_id=missing, amount=D("-1"), description="x", actor=None,
                               idempotency_key=key),
        lambda: credits_refund(account_id=missing, amount=D("1"), idempotency_key=key),
        lambda: credits_refund(account_id=missing, amount=D("1"), refund_of_id=uuid.uuid4(),
                               idempotency_key=key),
        lambda: hold_create(account_id=missing, amount=D("1"), idempotency_key=key),
    ]
    for call in calls:
        with pytest.raises(AccountNotFound):
            call()
    assert LedgerEntry.objects.count() == total
    assert not Hold.objects.filter(account_id=missing).exists()


# --- adjust -----------------------------------------------------------------------------------------------


def test_adjust_adds_and_removes_with_an_adjustment_row(account, operator):
    credits_grant(account_id=account.id, amount=D("10"))
    up = credits_adjust(account_id=account.id, amount=D("2.5"), description="goodwill", actor=operator).entry
    down = credits_adjust(account_id=account.id, amount=D("-7.5"), description="clawback", actor=operator)
    down = down.entry

    assert (up.sequence, up.transaction_type, up.balance_delta, up.balance_after) == (
        2, "adjustment", D("2.5"), D("12.5"),
    )
    assert (down.sequence, down.transaction_type, down.balance_delta, down.balance_after) == (
        3, "adjustment", D("-7.5"), D("5"),
    )
    assert up.actor_id == down.actor_id == operator.pk
    assert down.description == "clawback"
    assert money(account) == (D("5"), D("0"), D("5"))
    assert account.count_adjustment == 2
    assert_ledger_invariants(account)


def test_negative_adjustment_beyond_available_is_refused_and_writes_nothing(account, operator):
    credits_grant(account_id=account.id, amount=D("10"))
    hold_create(account_id=account.id, amount=D("3"))
    before = state(account)
    with pytest.raises(InsufficientCredits):
        credits_adjust(account_id=account.id, amount=D("-7.01"), description="too much", actor=operator)
    assert state(account) == before
    # Exactly the available amount is allowed.
    credits_adjust(account_id=account.id, amount=D("-7"), description="all of it", actor=operator)
    assert money(account) == (D("3"), D("3"), D("0"))


@pytest.mark.parametrize("bad", [D("0"), D("NaN"), -1.0])
def test_adjust_rejects_a_zero_or_non_decimal_amount(account, operator, bad):
    before = state(account)
    with pytest.raises(ValueError):
        credits_adjust(account_id=account.id, amount=bad, description="x", actor=operator)
    assert state(account) == before


# --- refund -----------------------------------------------------------------------------------------------


def test_refund_of_a_debit_writes_a_refund_row_up_to_the_original(account, operator):
    credits_grant(account_id=account.id, amount=D("50"))
    debit = credits_debit(account_id=account.id, amount=D("30")).entry

    first = credits_refund(account_id=account.id, amount=D("10"), refund_of_id=debit.id, actor=operator).entry
    second = credits_refund(account_id=account.id, amount=D("20"), refund_of_id=debit.id).entry

    assert (first.sequence, first.transaction_type, first.balance_delta, first.balance_after) == (
        3, "refund", D("10"), D("30"),
    )
    assert first.refund_of_id == debit.id
    assert first.actor_id == operator.pk
    assert (second.sequence, second.balance_after, second.refund_of_id) == (4, D("50"), debit.id)
    assert money(account) == (D("50"), D("0"), D("50"))
    assert account.count_refund == 2

    before = state(account)
    with pytest.raises(RefundExceedsOriginal):
        credits_refund(account_id=account.id, amount=D("0.000001"), refund_of_id=debit.id)
    assert state(account) == before
    assert_ledger_invariants(account)


def test_refund_larger_than_the_original_is_refused_and_writes_nothing(account):
    credits_grant(account_id=account.id, amount=D("50"))
    debit = credits_debit(account_id=account.id, amount=D("30")).entry
    credits_refund(account_id=account.id, amount=D("29.99"), refund_of_id=debit.id)
    before = state(account)
    with pytest.raises(RefundExceedsOriginal) as raised:
        credits_refund(
            account_id=account.id, amount=D("0.02"), refund_of_id=debit.id, idempotency_key="r-too-much"
        )
    assert D(raised.value.details["refundable"]) == D("0.01")
    assert state(account) == before
    with pytest.raises(RefundExceedsOriginal):
        credits_refund(account_id=account.id, amount=D("30.01"), refund_of_id=credits_debit(
            account_id=account.id, amount=D("1")).entry.id)


def test_refund_of_a_captured_hold_is_limited_to_the_captured_amount(account):
    credits_grant(account_id=account.id, amount=D("50"))
    hold = hold_create(account_id=account.id, amount=D("10")).hold
    [charge, _release] = hold_capture(hold_id=hold.id, amount=D("4")).entries
    with pytest.raises(RefundExceedsOriginal):
        credits_refund(account_id=account.id, amount=D("4.01"), refund_of_id=charge.id)
    credits_refund(account_id=account.id, amount=D("4"), refund_of_id=charge.id)
    assert money(account) == (D("50"), D("0"), D("50"))
    assert_ledger_invariants(account)


def test_refund_of_a_row_that_is_not_a_subtract_is_refused_and_writes_nothing(account, operator):
    grant = credits_grant(account_id=account.id, amount=D("50")).entry
    adjustment = credits_adjust(account_id=account.id, amount=D("-5"), description="x", actor=operator).entry
    reserve = hold_create(account_id=account.id, amount=D("5")).entries[0]
    debit = credits_debit(account_id=account.id, amount=D("5")).entry
    refund = credits_refund(account_id=account.id, amount=D("1"), refund_of_id=debit.id).entry
    before = state(account)
    for target in (grant, adjustment, reserve, refund):
        with pytest.raises(InvalidRefundTarget):
            credits_refund(account_id=account.id, amount=D("1"), refund_of_id=target.id)
    assert state(account) == before


def test_refund_of_another_accounts_debit_or_an_unknown_row_is_refused(account, second_account):
    credits_grant(account_id=account.id, amount=D("10"))
    credits_grant(account_id=second_account.id, amount=D("10"))
    theirs = credits_debit(account_id=second_account.id, amount=D("5")).entry
    before = state(account), state(second_account)
    for target in (theirs.id, uuid.uuid4()):
        with pytest.raises(EntryNotFound):
            credits_refund(account_id=account.id, amount=D("1"), refund_of_id=target)
    assert (state(account), state(second_account)) == before


def test_refund_without_an_original_is_a_plain_credit(account):
    entry = credits_refund(account_id=account.id, amount=D("3"), description="goodwill").entry
    assert (entry.transaction_type, entry.balance_delta, entry.balance_after, entry.refund_of_id) == (
        "refund", D("3"), D("3"), None,
    )


# --- idempotency ------------------------------------------------------------------------------------------

# Each: (name, call(account_id, key, amount, description)). A refund needs a debit to refund.
KEYED = {
    "grant": lambda a, k, amt, d: credits_grant(account_id=a, amount=amt, description=d, idempotency_key=k),
    "debit": lambda a, k, amt, d: credits_debit(account_id=a, amount=amt, description=d, idempotency_key=k),
    "adjust_up": lambda a, k, amt, d: credits_adjust(
        account_id=a, amount=amt, description=d, actor=None, idempotency_key=k
    ),
    "adjust_down": lambda a, k, amt, d: credits_adjust(
        account_id=a, amount=-amt, description=d, actor=None, idempotency_key=k
    ),
    "refund": lambda a, k, amt, d: credits_refund(
        account_id=a,
        amount=amt,
        description=d,
        idempotency_key=k,
        refund_of_id=LedgerEntry.objects.get(account_id=a, reference="to-refund").id,
    ),
}


def _fund(account: CreditAccount) -> None:
    credits_grant(account_id=account.id, amount=D("100"))
    credits_debit(account_id=account.id, amount=D("20"), reference="to-refund")


@pytest.mark.parametrize("service", KEYED)
def test_same_key_same_arguments_replays_the_first_row(account, service):
    _fund(account)
    call = KEYED[service]
    first = call(account.id, "key-1", D("5"), "first")
    after_first = state(account)
    second = call(account.id, "key-1", D("5"), "first")
    third = call(account.id, "key-1", D("5.000000"), "first")  # the same amount, written differently

    assert first.replayed is False
    assert second.replayed is True and third.replayed is True
    assert first.entry.id == second.entry.id == third.entry.id
    assert second.entry.balance_after == first.entry.balance_after
    assert state(account) == after_first
    assert LedgerEntry.objects.filter(account=account, idempotency_key="key-1").count() == 1
    assert_ledger_invariants(account)


@pytest.mark.parametrize("service", KEYED)
def test_same_key_other_amount_or_description_conflicts_and_writes_nothing(account, service):
    _fund(account)
    call = KEYED[service]
    call(account.id, "key-1", D("5"), "first")
    before = state(account)
    with pytest.raises(IdempotencyConflict):
        call(account.id, "key-1", D("6"), "first")
    with pytest.raises(IdempotencyConflict):
        call(account.id, "key-1", D("5"), "second")
    assert state(account) == before


@pytest.mark.parametrize("first_service", KEYED)
def test_a_key_reused_for_another_operation_conflicts(account, first_service):
    _fund(account)
    KEYED[first_service](account.id, "key-1", D("5"), "same")
    before = state(account)
    for other in KEYED:
        if other == first_service:
            continue
        with pytest.raises(IdempotencyConflict):
            KEYED[other](account.id, "key-1", D("5"), "same")
    assert state(account) == before
    # A hold's request_id names an AI call: it lives in the calls' namespace, apart from the services' keys.
    assert hold_create(account_id=account.id, amount=D("5"), idempotency_key="key-1").replayed is False


def test_keys_are_scoped_per_account(account, second_account):
    credits_grant(account_id=account.id, amount=D("10"))
    credits_grant(account_id=second_account.id, amount=D("10"))

    mine = credits_debit(account_id=account.id, amount=D("2"), idempotency_key="shared")
    theirs = credits_debit(account_id=second_account.id, amount=D("2"), idempotency_key="shared")

    assert mine.replayed is False and theirs.replayed is False
    assert mine.entry.id != theirs.entry.id
    assert LedgerEntry.objects.filter(idempotency_key="shared").count() == 2
    assert money(account)[0] == money(second_account)[0] == D("8")
    # A different body on the other account is not a conflict either.
    other = credits_grant(account_id=second_account.id, amount=D("1"), idempotency_key="g")
    assert credits_grant(account_id=account.id, amount=D("3"), idempotency_key="g").entry.id != other.entry.id


def test_replay_succeeds_even_when_the_balance_no_longer_covers_it(account):
    credits_grant(account_id=account.id, amount=D("10"))
    first = credits_debit(account_id=account.id, amount=D("6"), idempotency_key="spend")
    credits_debit(account_id=account.id, amount=D("4"))  # available is now 0
    replay = credits_debit(account_id=account.id, amount=D("6"), idempotency_key="spend")
    assert replay.replayed is True
    assert replay.entry.id == first.entry.id
    assert money(account) == (D("0"), D("0"), D("0"))


def test_refund_replay_succeeds_after_the_original_is_fully_refunded(account):
    credits_grant(account_id=account.id, amount=D("10"))
    debit = credits_debit(account_id=account.id, amount=D("6")).entry
    first = credits_refund(account_id=account.id, amount=D("6"), refund_of_id=debit.id, idempotency_key="rf")
    replay = credits_refund(account_id=account.id, amount=D("6"), refund_of_id=debit.id, idempotency_key="rf")
    assert (replay.replayed, replay.entry.id) == (True, first.entry.id)
    assert money(account)[0] == D("10")
    # A different refund under that key is still a conflict, not a second refund.
    with pytest.raises((IdempotencyConflict, RefundExceedsOriginal)):
        credits_refund(account_id=account.id, amount=D("5"), refund_of_id=debit.id, idempotency_key="rf")
    assert money(account)[0] == D("10")


def test_a_refused_keyed_request_does_not_burn_its_key(account):
    with pytest.raises(InsufficientCredits):
        credits_debit(account_id=account.id, amount=D("5"), idempotency_key="later")
    credits_grant(account_id=account.id, amount=D("5"))
    result = credits_debit(account_id=account.id, amount=D("5"), idempotency_key="later")
    assert result.replayed is False
    assert money(account)[0] == D("0")


# --- amounts finer than the ledger stores -------------------------------------------------------------------


@pytest.mark.parametrize("amount", [D("0.0000005"), D("0.0000004"), D("1.0000015"), D("1.99999999")])
def test_amounts_finer_than_a_micro_credit_are_refused_and_write_nothing(account, operator, amount):
    """NUMERIC(20, 6) would round the new balance and the row's delta separately: a debit of 0.0000005 from
    10 used to keep the balance at 10.000000 while recording -0.000001, breaking balance == sum of rows.
    (A usage charge, captures included, is exact instead: it debits whole quanta and carries the rest on the
    account, tests/credits/test_exact_costs.py.)"""
    credits_grant(account_id=account.id, amount=D("10"))
    debit = credits_debit(account_id=account.id, amount=D("2")).entry
    hold_create(account_id=account.id, amount=D("1"))
    before = state(account)
    calls = [
        lambda: credits_grant(account_id=account.id, amount=amount),
        lambda: credits_debit(account_id=account.id, amount=amount),
        lambda: credits_debit(account_id=account.id, amount=amount, idempotency_key="fine"),
        lambda: credits_adjust(account_id=account.id, amount=-amount, description="x", actor=operator),
        lambda: credits_refund(account_id=account.id, amount=amount, refund_of_id=debit.id),
        lambda: hold_create(account_id=account.id, amount=amount),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()
    assert state(account) == before
    assert_ledger_invariants(account)


def test_trailing_zeros_past_six_decimals_are_fine(account):
    credits_grant(account_id=account.id, amount=D("10.0000000000"))
    credits_debit(account_id=account.id, amount=D("0.0000010"))
    assert money(account)[0] == D("9.999999")
    assert_ledger_invariants(account)
