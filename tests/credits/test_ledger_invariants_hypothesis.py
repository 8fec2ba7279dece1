"""The ledger's invariants, each with its own test, and a Hypothesis state machine that drives random
sequences of every service against a plain Python model.

Invariants (see ``credits.models``):
1. ``balance`` is the sum of the rows' balance effects (and ``reserved`` of their reserved effects);
2. ``reserved`` equals the amounts of the active holds;
3. every row's ``balance_after`` / ``reserved_after`` is the running sum in ``sequence`` order, and
   ``sequence`` runs 1, 2, 3... with no gap;
4. ``available`` (``balance - reserved``) is never below zero, on the account or after any row;
5. one idempotency key never makes two rows of one account.

``assert_ledger_invariants`` checks them with ``credits.verification.ledger_verify`` *and* with SQL written here,
independently of the application; the other ledger test modules import it.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from accounts.models import Role
from credits.errors import (
    HoldNotActive,
    IdempotencyConflict,
    InsufficientCredits,
    RefundExceedsOriginal,
)
from credits.models import CreditAccount, Hold, HoldStatus, LedgerEntry
from credits.verification import ledger_verify
from credits.services import (
    credits_adjust,
    credits_debit,
    credits_grant,
    credits_refund,
    hold_capture,
    hold_create,
    hold_release,
)
from tests.conftest import make_member, make_platform

D = Decimal
ZERO = D(0)


# --- the independent checks ---------------------------------------------------------------------------------


def sql_invariant_problems(account_id: uuid.UUID) -> list[str]:
    """Every ledger invariant of one account, checked in SQL against the raw tables."""
    problems: list[str] = []
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT a.balance, a.reserved, a.last_sequence,
                   COALESCE(SUM(e.balance_delta), 0), COALESCE(SUM(e.reserved_delta), 0), COUNT(e.id)
            FROM credits_creditaccount a LEFT JOIN credits_ledger_entry e ON e.account_id = a.id
            WHERE a.id = %s GROUP BY a.id
            """,
            [account_id],
        )
        balance, reserved, last_sequence, balance_sum, reserved_sum, row_count = cursor.fetchone()
        # 1. balance == sum of balance effects (and reserved == sum of reserved effects)
        if balance != balance_sum:
            problems.append(f"balance {balance} != sum of balance effects {balance_sum}")
        if reserved != reserved_sum:
            problems.append(f"reserved {reserved} != sum of reserved effects {reserved_sum}")
        if last_sequence != row_count:
            problems.append(f"last_sequence {last_sequence} != {row_count} rows")

        # 2. reserved == sum of the active holds, and each hold's rows net to what it still holds
        cursor.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM credits_hold WHERE account_id = %s AND status = 'active'",
            [account_id],
        )
        (active,) = cursor.fetchone()
        if reserved != active:
            problems.append(f"reserved {reserved} != active holds {active}")
        cursor.execute(
            """
            SELECT h.id, h.status, h.amount, COALESCE(SUM(e.reserved_delta), 0),
                   COUNT(e.id) FILTER (WHERE e.transaction_type = 'reserve'),
                   COUNT(e.id) FILTER (WHERE e.transaction_type = 'release')
            FROM credits_hold h LEFT JOIN credits_ledger_entry e ON e.hold_id = h.id
            WHERE h.account_id = %s GROUP BY h.id
            """,
            [account_id],
        )
        for hold_id, status, amount, held, reserves, releases in cursor.fetchall():
            expected = amount if status == "active" else ZERO
            if held != expected:
                problems.append(f"hold {hold_id} ({status}) nets {held} reserved, expected {expected}")
            if reserves != 1 or releases > 1:
                problems.append(f"hold {hold_id}: {reserves} reserve rows, {releases} release rows")

        # 3. running totals in sequence order, sequence 1..n without gap
        cursor.execute(
            """
            SELECT sequence, rn, balance_after, run_balance, reserved_after, run_reserved FROM (
                SELECT sequence, balance_after, reserved_after,
                       row_number() OVER w AS rn,
                       SUM(balance_delta) OVER w AS run_balance,
                       SUM(reserved_delta) OVER w AS run_reserved
                FROM credits_ledger_entry WHERE account_id = %s
                WINDOW w AS (ORDER BY sequence ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
            ) t
            WHERE sequence <> rn OR balance_after <> run_balance OR reserved_after <> run_reserved
            ORDER BY sequence
            """,
            [account_id],
        )
        for seq, rn, b_after, run_b, r_after, run_r in cursor.fetchall():
            problems.append(
                f"row {seq} (position {rn}): stored {b_after}/{r_after}, running sum {run_b}/{run_r}"
            )

        # 4. available never below zero
        if balance - reserved < 0:
            problems.append(f"account available {balance - reserved} < 0")
        cursor.execute(
            "SELECT sequence FROM credits_ledger_entry "
            "WHERE account_id = %s AND balance_after < reserved_after",
            [account_id],
        )
        problems += [f"row {seq}: available below zero" for (seq,) in cursor.fetchall()]

        # 5. one idempotency key, one row
        cursor.execute(
            """
            SELECT idempotency_key, COUNT(*) FROM credits_ledger_entry
            WHERE account_id = %s AND idempotency_key IS NOT NULL
            GROUP BY idempotency_key HAVING COUNT(*) > 1
            """,
            [account_id],
        )
        problems += [f"idempotency key {key!r} made {n} rows" for key, n in cursor.fetchall()]

        # Refunds of a row never add up to more than it took.
        cursor.execute(
            """
            SELECT o.sequence, -o.balance_delta, SUM(r.balance_delta)
            FROM credits_ledger_entry r JOIN credits_ledger_entry o ON r.refund_of_id = o.id
            WHERE o.account_id = %s GROUP BY o.id, o.sequence, o.balance_delta
            HAVING SUM(r.balance_delta) > -o.balance_delta
            """,
            [account_id],
        )
        problems += [f"row {seq}: refunded {total} of {took}" for seq, took, total in cursor.fetchall()]
    return problems


def assert_ledger_invariants(account: CreditAccount) -> None:
    check = ledger_verify(account=account)
    assert check.ok, check.problems
    problems = sql_invariant_problems(account.pk)
    assert problems == [], problems


# --- one test per invariant ---------------------------------------------------------------------------------


@pytest.fixture
def account(platform) -> CreditAccount:  # noqa: ANN001
    return make_member(platform, "payer").account


@pytest.fixture
def operator(platform):  # noqa: ANN001, ANN201
    return make_member(platform, "operator", Role.ADMIN).user


def _workload(account: CreditAccount, actor: Any) -> None:
    """Every kind of row, refusals and replays included. Leaves balance 79.41, reserved 7."""
    a = account.id
    credits_grant(account_id=a, amount=D("100"), payment_amount_usd=D("100"), idempotency_key="g1")
    credits_grant(account_id=a, amount=D("100"), payment_amount_usd=D("100"), idempotency_key="g1")  # replay
    debit = credits_debit(account_id=a, amount=D("12.34"), idempotency_key="d1").entry
    credits_debit(account_id=a, amount=D("12.34"), idempotency_key="d1")  # replay
    with pytest.raises(InsufficientCredits):
        credits_debit(account_id=a, amount=D("1000"))
    captured = hold_create(account_id=a, amount=D("20"), idempotency_key="h1").hold
    hold_create(account_id=a, amount=D("20"), idempotency_key="h1")  # replay
    hold_capture(hold_id=captured.id, amount=D("5"))
    released = hold_create(account_id=a, amount=D("10")).hold
    hold_release(hold_id=released.id)
    hold_create(account_id=a, amount=D("7"))  # stays active
    over = hold_create(account_id=a, amount=D("3")).hold
    hold_capture(hold_id=over.id, amount=D("4"))  # one more than held
    credits_refund(account_id=a, amount=D("2"), refund_of_id=debit.id, idempotency_key="r1")
    with pytest.raises(RefundExceedsOriginal):
        credits_refund(account_id=a, amount=D("10.35"), refund_of_id=debit.id)
    credits_adjust(account_id=a, amount=D("-1.5"), description="fix", actor=actor, idempotency_key="a1")
    credits_adjust(account_id=a, amount=D("0.25"), description="fix", actor=actor)
    with pytest.raises(IdempotencyConflict):
        credits_debit(account_id=a, amount=D("1"), idempotency_key="a1")
    account.refresh_from_db()


@pytest.mark.django_db
def test_balance_equals_the_sum_of_balance_effects(account, operator):
    _workload(account, operator)
    total = sum((e.balance_delta for e in LedgerEntry.objects.filter(account=account)), ZERO)
    assert account.balance == total == D("79.41")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT SUM(balance_delta) FROM credits_ledger_entry WHERE account_id = %s", [account.id]
        )
        assert cursor.fetchone()[0] == D("79.41")
    assert_ledger_invariants(account)


@pytest.mark.django_db
def test_reserved_equals_the_sum_of_active_holds(account, operator):
    _workload(account, operator)
    assert account.reserved == D("7")
    active = Hold.objects.filter(account=account, status=HoldStatus.ACTIVE)
    assert [h.amount for h in active] == [D("7")]
    assert sorted(Hold.objects.filter(account=account).values_list("status", flat=True)) == [
        "active", "captured", "captured", "released",
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT SUM(amount) FROM credits_hold WHERE account_id = %s AND status = 'active'", [account.id]
        )
        assert cursor.fetchone()[0] == account.reserved
        cursor.execute(
            "SELECT SUM(reserved_delta) FROM credits_ledger_entry WHERE account_id = %s", [account.id]
        )
        assert cursor.fetchone()[0] == account.reserved
    assert_ledger_invariants(account)


@pytest.mark.django_db
def test_balance_after_is_the_running_sum_in_sequence_order(account, operator):
    _workload(account, operator)
    entries = list(LedgerEntry.objects.filter(account=account).order_by("sequence"))
    assert [e.sequence for e in entries] == list(range(1, 14))
    balance = reserved = ZERO
    for entry in entries:
        balance += entry.balance_delta
        reserved += entry.reserved_delta
        assert (entry.balance_after, entry.reserved_after) == (balance, reserved), entry.sequence
    assert (balance, reserved) == (account.balance, account.reserved)
    assert account.last_sequence == 13
    assert_ledger_invariants(account)


@pytest.mark.django_db
def test_available_never_goes_below_zero(account, operator):
    _workload(account, operator)
    hold = hold_create(account_id=account.id, amount=D("1")).hold
    account.refresh_from_db()
    available = account.available
    assert available == D("71.41")
    before = account.last_sequence
    # Every path that could take more than is available is refused.
    with pytest.raises(InsufficientCredits):
        credits_debit(account_id=account.id, amount=available + D("0.000001"))
    with pytest.raises(InsufficientCredits):
        hold_create(account_id=account.id, amount=available + D("0.000001"))
    with pytest.raises(InsufficientCredits):
        credits_adjust(
            account_id=account.id, amount=-(available + D("0.000001")), description="x", actor=operator
        )
    with pytest.raises(InsufficientCredits):
        hold_capture(hold_id=hold.id, amount=available + D("1.000001"))
    account.refresh_from_db()
    assert account.last_sequence == before
    # ... and taking exactly everything leaves zero.
    hold_capture(hold_id=hold.id, amount=available + D("1"))
    account.refresh_from_db()
    assert account.available == 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT MIN(balance_after - reserved_after) FROM credits_ledger_entry WHERE account_id = %s",
            [account.id],
        )
        assert cursor.fetchone()[0] == 0
    # The database itself refuses an account whose available would be negative.
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditAccount.objects.filter(pk=account.pk).update(reserved=account.balance + 1)
    assert_ledger_invariants(account)


@pytest.mark.django_db
def test_one_idempotency_key_never_makes_two_rows(account, operator):
    _workload(account, operator)
    for _ in range(3):
        assert credits_grant(account_id=account.id, amount=D("100"), payment_amount_usd=D("100"),
                             idempotency_key="g1").replayed
        assert credits_debit(account_id=account.id, amount=D("12.34"), idempotency_key="d1").replayed
        assert hold_create(account_id=account.id, amount=D("20"), idempotency_key="h1").replayed
        assert credits_adjust(account_id=account.id, amount=D("-1.5"), description="fix", actor=operator,
                              idempotency_key="a1").replayed
        with pytest.raises(IdempotencyConflict):
            credits_grant(account_id=account.id, amount=D("1"), idempotency_key="d1")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT idempotency_key, COUNT(*) FROM credits_ledger_entry WHERE account_id = %s "
            "AND idempotency_key IS NOT NULL GROUP BY 1 ORDER BY 1",
            [account.id],
        )
        # a hold's request_id is keyed in the namespace of AI calls (credits.services.common.call_key)
        assert cursor.fetchall() == [("a1", 1), ("d1", 1), ("g1", 1), ("r1", 1), ("usage:h1", 1)]
    # The database refuses a second row with a used key, whatever writes it.
    with pytest.raises(IntegrityError), transaction.atomic():
        _forge_row(account, idempotency_key="d1", balance_delta=D("1"), balance_after=account.balance + 1)
    assert_ledger_invariants(account)


def _forge_row(account: CreditAccount, **overrides: Any) -> None:
    """Inserts a ledger row behind the services' back (INSERT is the one thing the trigger allows)."""
    account.refresh_from_db()
    values = {
        "id": uuid.uuid4(),
        "account_id": account.id,
        "platform_id": account.platform_id,
        "sequence": account.last_sequence + 1,
        "transaction_type": "add",
        "status": "completed",
        "balance_delta": D("1"),
        "reserved_delta": ZERO,
        "balance_after": account.balance + 1,
        "reserved_after": account.reserved,
        "description": "forged",
        "reference": "",
        "metadata": "{}",
        "idempotency_key": None,
        "request_hash": "",
        "created_at": timezone.now(),
    } | overrides
    columns = ", ".join(values)
    placeholders = ", ".join(f"%({k})s" for k in values)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO credits_ledger_entry ({columns}) VALUES ({placeholders})", values)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "overrides, finds",
    [
        ({}, "balance"),  # the row exists but the account never moved
        ({"balance_after": D("999")}, "row"),  # wrong running total
        ({"sequence": 99}, "row"),  # a gap in the sequence
        ({"transaction_type": "reserve", "balance_delta": ZERO, "reserved_delta": D("1")}, "reserved"),
    ],
)
def test_the_invariant_checks_detect_a_forged_row(account, operator, overrides, finds):
    _workload(account, operator)
    assert_ledger_invariants(account)
    _forge_row(account, **overrides)
    assert not ledger_verify(account=account).ok
    problems = sql_invariant_problems(account.id)
    assert any(p.startswith(finds) for p in problems), problems


@pytest.mark.django_db
def test_the_invariant_checks_detect_a_hold_without_its_reservation(account, operator):
    _workload(account, operator)
    Hold.objects.create(account=account, amount=D("2"), expires_at=timezone.now())
    assert not ledger_verify(account=account).ok
    assert any("active holds" in p for p in sql_invariant_problems(account.id))


# --- the state machine ------------------------------------------------------------------------------------

_machines = itertools.count()

amounts = st.integers(min_value=1, max_value=6_000).map(lambda cents: D(cents) / 100)  # 0.01 .. 60.00


@dataclass
class Keyed:
    """A successful request made with an idempotency key, to be replayed."""

    call: Callable[..., Any]
    kwargs: dict[str, Any]
    entry_id: uuid.UUID
    hold_id: uuid.UUID | None = None


@dataclass
class Debit:
    amount: Decimal
    refunded: Decimal = field(default=ZERO)


class LedgerMachine(RuleBasedStateMachine):
    """One fresh account per example; the model is four numbers and three dicts."""

    def __init__(self) -> None:
        super().__init__()
        n = next(_machines)
        tag = f"{n}-{uuid.uuid4().hex[:8]}"
        platform = make_platform(f"hyp-{tag}")
        member = make_member(platform, f"hyp-user-{tag}")
        self.actor = member.user
        self.account_id = member.account.id
        self.balance = ZERO
        self.reserved = ZERO
        self.rows = 0
        self.active: dict[uuid.UUID, Decimal] = {}
        self.settled: list[uuid.UUID] = []
        self.debits: dict[uuid.UUID, Debit] = {}
        self.keyed: list[Keyed] = []
        self.next_key = 0

    @property
    def available(self) -> Decimal:
        return self.balance - self.reserved

    def _key(self, keyed: bool) -> str | None:
        if not keyed:
            return None
        self.next_key += 1
        return f"key-{self.next_key}"  # the same keys on every example's account: keys are per account

    def _remember(self, call: Callable[..., Any], kwargs: dict[str, Any], result: Any) -> None:
        if kwargs.get("idempotency_key") is None:
            return
        if hasattr(result, "hold"):
            self.keyed.append(Keyed(call, kwargs, result.entries[0].id, result.hold.id))
        else:
            self.keyed.append(Keyed(call, kwargs, result.entry.id))

    # -- rules --

    @rule(amount=amounts, keyed=st.booleans())
    def grant(self, amount: Decimal, keyed: bool) -> None:
        kwargs = {"account_id": self.account_id, "amount": amount, "payment_amount_usd": amount,
                  "idempotency_key": self._key(keyed)}
        result = credits_grant(**kwargs)
        assert not result.replayed
        assert result.entry.balance_after == self.balance + amount
        self.balance += amount
        self.rows += 1
        self._remember(credits_grant, kwargs, result)

    @rule(amount=amounts, keyed=st.booleans())
    def debit(self, amount: Decimal, keyed: bool) -> None:
        kwargs = {"account_id": self.account_id, "amount": amount, "idempotency_key": self._key(keyed)}
        if amount > self.available:
            with pytest.raises(InsufficientCredits):
                credits_debit(**kwargs)
            return
        result = credits_debit(**kwargs)
        assert not result.replayed
        self.balance -= amount
        self.rows += 1
        self.debits[result.entry.id] = Debit(amount)
        self._remember(credits_debit, kwargs, result)

    @rule(amount=amounts, positive=st.booleans(), keyed=st.booleans())
    def adjust(self, amount: Decimal, positive: bool, keyed: bool) -> None:
        signed = amount if positive else -amount
        kwargs = {"account_id": self.account_id, "amount": signed, "description": "adjust",
                  "actor": self.actor, "idempotency_key": self._key(keyed)}
        if -signed > self.available:
            with pytest.raises(InsufficientCredits):
                credits_adjust(**kwargs)
            return
        result = credits_adjust(**kwargs)
        assert result.entry.actor_id == self.actor.pk
        self.balance += signed
        self.rows += 1
        self._remember(credits_adjust, kwargs, result)

    @rule(amount=amounts, keyed=st.booleans())
    def hold(self, amount: Decimal, keyed: bool) -> None:
        kwargs = {"account_id": self.account_id, "amount": amount, "idempotency_key": self._key(keyed)}
        if amount > self.available:
            with pytest.raises(InsufficientCredits):
                hold_create(**kwargs)
            return
        result = hold_create(**kwargs)
        assert not result.replayed
        assert result.hold.status == HoldStatus.ACTIVE
        self.reserved += amount
        self.rows += 1
        self.active[result.hold.id] = amount
        self._remember(hold_create, kwargs, result)

    @precondition(lambda self: self.active)
    @rule(data=st.data(), cents=st.integers(min_value=0, max_value=8_000))
    def capture(self, data: st.DataObject, cents: int) -> None:
        hold_id = data.draw(st.sampled_from(list(self.active)))
        held = self.active[hold_id]
        amount = D(cents) / 100
        excess = max(amount - held, ZERO)
        if excess > self.available:
            with pytest.raises(InsufficientCredits):
                hold_capture(hold_id=hold_id, amount=amount)
            return
        result = hold_capture(hold_id=hold_id, amount=amount)
        kinds = [e.transaction_type for e in result.entries]
        assert kinds == (["subtract"] if amount > 0 else []) + (["release"] if amount < held else [])
        self.balance -= amount
        self.reserved -= held
        self.rows += len(kinds)
        del self.active[hold_id]
        self.settled.append(hold_id)
        if amount > 0:
            self.debits[result.entries[0].id] = Debit(amount)

    @precondition(lambda self: self.active)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        hold_id = data.draw(st.sampled_from(list(self.active)))
        result = hold_release(hold_id=hold_id)
        assert [e.transaction_type for e in result.entries] == ["release"]
        assert result.hold.status == HoldStatus.RELEASED
        self.reserved -= self.active.pop(hold_id)
        self.rows += 1
        self.settled.append(hold_id)

    @precondition(lambda self: self.settled)
    @rule(data=st.data(), capture=st.booleans())
    def settle_again(self, data: st.DataObject, capture: bool) -> None:
        hold_id = data.draw(st.sampled_from(self.settled))
        with pytest.raises(HoldNotActive):
            if capture:
                hold_capture(hold_id=hold_id, amount=D("0.01"))
            else:
                hold_release(hold_id=hold_id)

    @precondition(lambda self: self.debits)
    @rule(data=st.data(), cents=st.integers(min_value=1, max_value=7_000), keyed=st.booleans())
    def refund(self, data: st.DataObject, cents: int, keyed: bool) -> None:
        entry_id = data.draw(st.sampled_from(list(self.debits)))
        debit = self.debits[entry_id]
        amount = D(cents) / 100
        kwargs = {"account_id": self.account_id, "amount": amount, "refund_of_id": entry_id,
                  "idempotency_key": self._key(keyed)}
        if amount > debit.amount - debit.refunded:
            with pytest.raises(RefundExceedsOriginal):
                credits_refund(**kwargs)
            return
        result = credits_refund(**kwargs)
        assert result.entry.refund_of_id == entry_id
        debit.refunded += amount
        self.balance += amount
        self.rows += 1
        self._remember(credits_refund, kwargs, result)

    @precondition(lambda self: self.keyed)
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        request = data.draw(st.sampled_from(self.keyed))
        result = request.call(**request.kwargs)
        assert result.replayed is True
        if request.hold_id is not None:
            assert result.hold.id == request.hold_id
            assert [e.id for e in result.entries] == [request.entry_id]
        else:
            assert result.entry.id == request.entry_id

    @precondition(lambda self: self.keyed)
    @rule(data=st.data())
    def conflicting_duplicate(self, data: st.DataObject) -> None:
        request = data.draw(st.sampled_from(self.keyed))
        with pytest.raises(IdempotencyConflict):
            request.call(**(request.kwargs | {"amount": request.kwargs["amount"] * 2}))

    # -- the model and the database agree after every step --

    @invariant()
    def database_matches_the_model(self) -> None:
        account = CreditAccount.objects.get(pk=self.account_id)
        assert (account.balance, account.reserved, account.available) == (
            self.balance, self.reserved, self.available,
        )
        assert account.available >= 0
        assert LedgerEntry.objects.filter(account=account).count() == self.rows == account.last_sequence
        active = Hold.objects.filter(account=account, status=HoldStatus.ACTIVE).values_list("id", flat=True)
        assert set(active) == set(self.active)
        assert_ledger_invariants(account)


@pytest.mark.django_db(transaction=True)
def test_random_sequences_of_requests_keep_every_invariant():
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
