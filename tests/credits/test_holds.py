"""Holds (reservations): hold_create, hold_capture, hold_release, holds_release_expired."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import Role
from credits.errors import (
    AccountNotFound,
    HoldExpired,
    HoldNotActive,
    HoldNotFound,
    IdempotencyConflict,
    InsufficientCredits,
    RequestIdHeld,
    RequestIdRecorded,
)
from credits.models import CreditAccount, Hold, HoldStatus, LedgerEntry, TransactionType
from credits.services import (
    MAX_HOLD_SECONDS,
    UsageInput,
    credits_debit,
    credits_grant,
    hold_capture,
    hold_create,
    hold_release,
    holds_release_expired,
    usage_record,
)
from tests.conftest import make_member
from tests.credits.test_ledger_invariants_hypothesis import assert_ledger_invariants
from tests.credits.test_ledger_services import money, rows, state

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture
def account(platform) -> CreditAccount:  # noqa: ANN001
    """A member's account holding 100 credits (one ``add`` row)."""
    account = make_member(platform, "payer").account
    credits_grant(account_id=account.id, amount=D("100"))
    return account


@pytest.fixture
def second_account(platform) -> CreditAccount:  # noqa: ANN001
    account = make_member(platform, "payer2").account
    credits_grant(account_id=account.id, amount=D("100"))
    return account


@pytest.fixture
def operator(platform):  # noqa: ANN001, ANN201
    return make_member(platform, "operator", Role.ADMIN).user


def expire(hold: Hold) -> None:
    """Moves a hold's expiry into the past (the service computes expiry from the clock)."""
    Hold.objects.filter(pk=hold.pk).update(expires_at=timezone.now() - timedelta(seconds=1))


def hold_rows(hold: Hold) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(hold=hold).order_by("sequence"))


# --- hold_create --------------------------------------------------------------------------------------------


def test_hold_create_reserves_credits_with_a_reserve_row(account, operator):
    result = hold_create(
        account_id=account.id, amount=D("30"), expires_in=120, reference="call-1", metadata={"model": "m"},
        actor=operator,
    )

    hold = Hold.objects.get(pk=result.hold.id)
    assert result.replayed is False
    assert (hold.status, hold.amount) == (HoldStatus.ACTIVE, D("30"))
    assert (hold.reference, hold.metadata) == ("call-1", {"model": "m"})
    assert hold.created_by_id == operator.pk
    assert hold.captured_amount is None and hold.settled_at is None
    [entry] = result.entries
    assert entry == LedgerEntry.objects.get(hold=hold)
    assert entry.sequence == 2
    assert entry.transaction_type == TransactionType.RESERVE
    assert (entry.balance_delta, entry.reserved_delta) == (D("0"), D("30"))
    assert (entry.balance_after, entry.reserved_after) == (D("100"), D("30"))
    assert entry.actor_id == operator.pk
    assert hold.expires_at == entry.created_at + timedelta(seconds=120)
    assert money(account) == (D("100"), D("30"), D("70"))
    assert account.count_reserve == 1
    assert_ledger_invariants(account)


def test_hold_beyond_available_is_refused_and_writes_nothing(account):
    hold_create(account_id=account.id, amount=D("60"))
    before = state(account)
    with pytest.raises(InsufficientCredits):
        hold_create(account_id=account.id, amount=D("40.000001"))
    with pytest.raises(InsufficientCredits):
        hold_create(account_id=account.id, amount=D("41"), idempotency_key="h-refused")
    assert state(account) == before
    assert Hold.objects.filter(account=account).count() == 1
    # Exactly what is available can be held.
    hold_create(account_id=account.id, amount=D("40"))
    assert money(account) == (D("100"), D("100"), D("0"))
    with pytest.raises(InsufficientCredits):
        credits_debit(account_id=account.id, amount=D("0.01"))


def test_hold_on_an_unknown_account_is_refused():
    missing = uuid.uuid4()
    with pytest.raises(AccountNotFound):
        hold_create(account_id=missing, amount=D("1"))
    assert not Hold.objects.exists()
    assert not LedgerEntry.objects.filter(account_id=missing).exists()


@pytest.mark.parametrize("expires_in", [0, -5, MAX_HOLD_SECONDS + 1])
def test_hold_rejects_an_expiry_out_of_range(account, expires_in):
    before = state(account)
    with pytest.raises(ValueError):
        hold_create(account_id=account.id, amount=D("1"), expires_in=expires_in)
    assert state(account) == before


def test_hold_idempotency_replays_conflicts_and_is_per_account(account, second_account):
    first = hold_create(account_id=account.id, amount=D("10"), expires_in=60, idempotency_key="h1")
    after = state(account)
    again = hold_create(account_id=account.id, amount=D("10"), expires_in=60, idempotency_key="h1")

    assert again.replayed is True
    assert again.hold.id == first.hold.id
    assert [e.id for e in again.entries] == [e.id for e in first.entries]
    assert state(account) == after
    assert Hold.objects.filter(account=account).count() == 1

    for changed in ({"amount": D("11")}, {"expires_in": 61}, {"reference": "other"}, {"metadata": {"a": 1}}):
        with pytest.raises(IdempotencyConflict):
            hold_create(**({"account_id": account.id, "amount": D("10"), "expires_in": 60,
                            "idempotency_key": "h1"} | changed))
    with pytest.raises(RequestIdHeld):  # a usage call of the same request_id meets the hold
        usage_record(platform=account.platform,
                     usage=UsageInput(account_id=account.id, request_id="h1", endpoint="/chat", amount=D("10")))
    assert state(account) == after

    theirs = hold_create(account_id=second_account.id, amount=D("10"), expires_in=60, idempotency_key="h1")
    assert theirs.replayed is False and theirs.hold.id != first.hold.id
    assert_ledger_invariants(account)
    assert_ledger_invariants(second_account)


@pytest.mark.parametrize("amount", [D("5"), D(0)])
def test_a_usage_request_id_cannot_be_taken_by_a_hold(account, amount):
    usage_record(platform=account.platform,
                 usage=UsageInput(account_id=account.id, request_id="k", endpoint="/chat", amount=amount))  # or free
    before = state(account)
    with pytest.raises(RequestIdRecorded):
        hold_create(account_id=account.id, amount=D("5"), idempotency_key="k")
    assert state(account) == before


def test_a_service_key_does_not_meet_a_hold_request_id(account):
    credits_debit(account_id=account.id, amount=D("5"), idempotency_key="k")
    assert hold_create(account_id=account.id, amount=D("5"), idempotency_key="k").replayed is False


# --- hold_capture -------------------------------------------------------------------------------------------


def test_capture_below_the_hold_charges_it_and_releases_the_rest(account, operator):
    hold = hold_create(account_id=account.id, amount=D("30"), reference="call-1").hold
    result = hold_capture(hold_id=hold.id, amount=D("12.5"), description="gpt call", actor=operator)

    charge, release = result.entries
    assert [e.id for e in hold_rows(hold)][1:] == [charge.id, release.id]
    assert (charge.sequence, charge.transaction_type) == (3, "subtract")
    assert (charge.balance_delta, charge.reserved_delta) == (D("-12.5"), D("-12.5"))
    assert (charge.balance_after, charge.reserved_after) == (D("87.5"), D("17.5"))
    assert (charge.description, charge.reference, charge.actor_id) == ("gpt call", "call-1", operator.pk)
    assert (release.sequence, release.transaction_type) == (4, "release")
    assert (release.balance_delta, release.reserved_delta) == (D("0"), D("-17.5"))
    assert (release.balance_after, release.reserved_after) == (D("87.5"), D("0"))
    hold.refresh_from_db()
    assert (hold.status, hold.captured_amount) == (HoldStatus.CAPTURED, D("12.5"))
    assert hold.settled_at is not None
    assert result.hold.status == HoldStatus.CAPTURED
    assert money(account) == (D("87.5"), D("0"), D("87.5"))
    assert_ledger_invariants(account)


def test_capture_of_the_whole_hold_writes_only_the_charge(account):
    hold = hold_create(account_id=account.id, amount=D("30")).hold
    [charge] = hold_capture(hold_id=hold.id, amount=D("30")).entries
    assert charge.transaction_type == "subtract"
    assert (charge.balance_delta, charge.reserved_delta) == (D("-30"), D("-30"))
    assert len(rows(account)) == 3
    assert money(account) == (D("70"), D("0"), D("70"))
    assert_ledger_invariants(account)


def test_capture_of_zero_writes_only_a_release(account):
    hold = hold_create(account_id=account.id, amount=D("30")).hold
    [release] = hold_capture(hold_id=hold.id, amount=D("0")).entries
    assert release.transaction_type == "release"
    assert (release.balance_delta, release.reserved_delta) == (0, D("-30"))
    hold.refresh_from_db()
    assert (hold.status, hold.captured_amount) == (HoldStatus.CAPTURED, D("0"))
    assert [e.transaction_type for e in rows(account)] == ["add", "reserve", "release"]
    assert money(account) == (D("100"), D("0"), D("100"))
    assert_ledger_invariants(account)


def test_capture_above_the_hold_takes_the_excess_from_available(account):
    hold = hold_create(account_id=account.id, amount=D("30")).hold
    credits_debit(account_id=account.id, amount=D("60"))  # balance 40, reserved 30, available 10
    [charge] = hold_capture(hold_id=hold.id, amount=D("40")).entries
    assert (charge.balance_delta, charge.reserved_delta) == (D("-40"), D("-30"))
    assert (charge.balance_after, charge.reserved_after) == (D("0"), D("0"))
    hold.refresh_from_db()
    assert (hold.status, hold.captured_amount) == (HoldStatus.CAPTURED, D("40"))
    assert money(account) == (D("0"), D("0"), D("0"))
    assert_ledger_invariants(account)


def test_capture_above_the_hold_beyond_available_is_refused_and_writes_nothing(account):
    hold = hold_create(account_id=account.id, amount=D("30")).hold
    credits_debit(account_id=account.id, amount=D("60"))  # available 10
    before = state(account)
    with pytest.raises(InsufficientCredits):
        hold_capture(hold_id=hold.id, amount=D("40.000001"))
    assert state(account) == before
    hold.refresh_from_db()
    assert (hold.status, hold.captured_amount, hold.settled_at) == (HoldStatus.ACTIVE, None, None)
    # The hold is still usable.
    hold_capture(hold_id=hold.id, amount=D("25"))
    assert money(account) == (D("15"), D("0"), D("15"))


@pytest.mark.parametrize("bad", [D("-1"), D("NaN"), 1.0])
def test_capture_rejects_a_negative_or_non_decimal_amount(account, bad):
    hold = hold_create(account_id=account.id, amount=D("30")).hold
    before = state(account)
    with pytest.raises(ValueError):
        hold_capture(hold_id=hold.id, amount=bad)
    assert state(account) == before


def test_capture_of_an_expired_hold_releases_it_and_raises(account):
    hold = hold_create(account_id=account.id, amount=D("30")).hold
    expire(hold)

    with pytest.raises(HoldExpired):
        hold_capture(hold_id=hold.id, amount=D("10"))

    hold.refresh_from_db()
    assert hold.status == HoldStatus.EXPIRED
    assert hold.captured_amount is None and hold.settled_at is not None
    [_reserve, release] = hold_rows(hold)
    assert release.transaction_type == "release"
    assert (release.balance_delta, release.reserved_delta) == (0, D("-30"))
    assert release.description == "Hold expired"
    assert money(account) == (D("100"), D("0"), D("100"))
    with pytest.raises(HoldNotActive):
        hold_capture(hold_id=hold.id, amount=D("10"))
    assert_ledger_invariants(account)


def test_release_of_an_expired_hold_marks_it_expired(account):
    hold = hold_create(account_id=account.id, amount=D("30")).hold
    expire(hold)
    result = hold_release(hold_id=hold.id)
    assert result.hold.status == HoldStatus.EXPIRED
    assert [e.transaction_type for e in result.entries] == ["release"]
    assert money(account) == (D("100"), D("0"), D("100"))
    assert_ledger_invariants(account)


# --- hold_release -------------------------------------------------------------------------------------------


def test_release_frees_the_whole_hold(account, operator):
    hold = hold_create(account_id=account.id, amount=D("30")).hold
    [release] = hold_release(hold_id=hold.id, actor=operator).entries
    assert (release.sequence, release.transaction_type) == (3, "release")
    assert (release.balance_delta, release.reserved_delta, release.reserved_after) == (0, D("-30"), 0)
    assert release.actor_id == operator.pk
    hold.refresh_from_db()
    assert (hold.status, hold.captured_amount) == (HoldStatus.RELEASED, None)
    assert hold.settled_at is not None
    assert money(account) == (D("100"), D("0"), D("100"))
    assert_ledger_invariants(account)


@pytest.mark.parametrize(
    "first, second",
    [("capture", "capture"), ("capture", "release"), ("release", "release"), ("release", "capture")],
)
def test_a_hold_is_settled_only_once(account, first, second):
    settle = {
        "capture": lambda h: hold_capture(hold_id=h, amount=D("5")),
        "release": lambda h: hold_release(hold_id=h),
    }
    hold = hold_create(account_id=account.id, amount=D("30")).hold
    settle[first](hold.id)
    before = state(account)
    settled = Hold.objects.get(pk=hold.pk)
    with pytest.raises(HoldNotActive) as raised:
        settle[second](hold.id)
    assert raised.value.details == {"status": settled.status}
    assert state(account) == before
    hold.refresh_from_db()
    assert (hold.status, hold.captured_amount, hold.settled_at) == (
        settled.status, settled.captured_amount, settled.settled_at,
    )


def test_settling_an_unknown_hold_or_another_accounts_hold_is_refused(account, second_account):
    hold = hold_create(account_id=account.id, amount=D("30")).hold
    before = state(account)
    with pytest.raises(HoldNotFound):
        hold_capture(hold_id=uuid.uuid4(), amount=D("1"))
    with pytest.raises(HoldNotFound):
        hold_release(hold_id=uuid.uuid4())
    with pytest.raises(HoldNotFound):
        hold_capture(hold_id=hold.id, amount=D("1"), account_id=second_account.id)
    with pytest.raises(HoldNotFound):
        hold_release(hold_id=hold.id, account_id=second_account.id)
    assert state(account) == before
    hold_release(hold_id=hold.id, account_id=account.id)
    assert money(account) == (D("100"), D("0"), D("100"))


# --- holds_release_expired ----------------------------------------------------------------------------------


def test_release_expired_frees_only_expired_active_holds_and_is_safe_twice(account, second_account):
    soon = hold_create(account_id=account.id, amount=D("10"), expires_in=60).hold
    soon_other = hold_create(account_id=second_account.id, amount=D("7"), expires_in=60).hold
    later = hold_create(account_id=account.id, amount=D("20"), expires_in=3600).hold
    captured = hold_create(account_id=account.id, amount=D("5"), expires_in=60).hold
    hold_capture(hold_id=captured.id, amount=D("5"))
    released = hold_create(account_id=account.id, amount=D("3"), expires_in=60).hold
    hold_release(hold_id=released.id)
    settled = {h.pk: (h.status, h.settled_at) for h in Hold.objects.filter(pk__in=[captured.pk, released.pk])}
    at = timezone.now() + timedelta(seconds=120)

    assert holds_release_expired(now=at) == 2

    statuses = dict(Hold.objects.values_list("id", "status"))
    assert statuses == {
        soon.id: "expired", soon_other.id: "expired", later.id: "active", captured.id: "captured",
        released.id: "released",
    }
    for hold in (soon, soon_other):
        [_reserve, release] = hold_rows(hold)
        assert (release.transaction_type, release.reserved_delta, release.description) == (
            "release", -hold.amount, "Hold expired",
        )
        assert Hold.objects.get(pk=hold.pk).settled_at == at
    assert {h.pk: (h.status, h.settled_at) for h in Hold.objects.filter(pk__in=settled)} == settled
    assert money(account) == (D("95"), D("20"), D("75"))
    assert money(second_account) == (D("100"), D("0"), D("100"))

    before = state(account), state(second_account)
    assert holds_release_expired(now=at) == 0
    assert (state(account), state(second_account)) == before
    assert_ledger_invariants(account)
    assert_ledger_invariants(second_account)


def test_release_expired_leaves_unexpired_holds_alone(account):
    hold_create(account_id=account.id, amount=D("10"), expires_in=60)
    before = state(account)
    assert holds_release_expired() == 0
    assert state(account) == before


def test_release_expired_works_through_more_holds_than_one_batch(account, second_account):
    holds = [hold_create(account_id=a.id, amount=D("1"), expires_in=30).hold
             for a in (account, second_account) for _ in range(4)]
    assert holds_release_expired(now=timezone.now() + timedelta(seconds=60), batch_size=3) == 8
    assert set(Hold.objects.values_list("status", flat=True)) == {"expired"}
    assert all(len(hold_rows(h)) == 2 for h in holds)
    assert_ledger_invariants(account)
    assert_ledger_invariants(second_account)
