"""The expiry of check-in credits: unspent check-in credits leave by one ``expiry`` ledger row per account and run
(never by editing a row), usage spends the lot that expires first first, purchased credits never expire,
credits reserved by holds are not taken (forgiven), a second run writes nothing, a debit racing the sweep keeps
the ledger exact, and the expiry is local midnight in the platform's time zone.

Time: every action runs at a chosen moment ``t`` far ahead of the real clock. The service gets ``now=t`` and the
account's ``last_entry_at`` is pinned to ``t`` first (``LedgerClock``'s mechanism), so the ledger rows it writes
carry exactly ``t``: nothing here depends on when the test runs."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from django.db import connection, transaction

from credits.errors import InsufficientCredits
from credits.models import Checkin, CheckinConfig, CreditAccount, LedgerEntry
from credits.verification import ledger_verify
from credits.services import credits_debit, credits_grant, hold_create, hold_release
from credits.services.checkin import checkin, checkin_config_set
from credits.services.expiry import ExpiryRun, checkin_credits_expire
from tests.api_helpers import post_json
from tests.conftest import client_for, make_member, make_platform
from tests.waits import backend_tag, wait_until_blocked

CHECKIN_URL = "/api/billing/checkin/"
CONFIG_URL = "/api/billing/admin/checkin/config/"
NOTHING = ExpiryRun()


@pytest.fixture
def member(platform):  # noqa: ANN001, ANN201
    """A member with no credits of their own (the shared fixture's has 100.00)."""
    return make_member(platform, "mia")


@pytest.fixture
def other_member(platform):  # noqa: ANN001, ANN201
    return make_member(platform, "max")


def at(*args: int) -> datetime:
    return datetime(2040, *args, tzinfo=UTC)  # far ahead of the real clock: the ledger can be pinned to it


def configure(platform, days: int | None = 1, **fields):  # noqa: ANN001, ANN003, ANN201
    values = {"enabled": True, "credits_per_day": D("1.00"), "streak_bonuses": {}, "monthly_cap": None,
              "time_zone": platform.time_zone, "credits_expire_after_days": days} | fields
    return checkin_config_set(platform=platform, actor=None, **values)


def pin(account, moment: datetime) -> None:  # noqa: ANN001
    """The account's next ledger rows carry ``moment``."""
    CreditAccount.objects.filter(pk=account.pk).update(last_entry_at=moment)


def check_in(platform, account, moment: datetime):  # noqa: ANN001, ANN201
    pin(account, moment)
    day = checkin(platform=platform, account=account, actor=None, now=moment).checkin.day
    return Checkin.objects.get(account_id=account.pk, day=day)


def spend(account, amount: str, moment: datetime) -> None:  # noqa: ANN001
    pin(account, moment)
    credits_debit(account_id=account.pk, amount=D(amount))


def sweep(moment: datetime, *accounts) -> ExpiryRun:  # noqa: ANN002
    for account in accounts:
        pin(account, moment)
    return checkin_credits_expire(now=moment)


def expiries(account) -> list[LedgerEntry]:  # noqa: ANN001
    return list(LedgerEntry.objects.filter(account_id=account.pk, transaction_type="expiry").order_by("sequence"))


def balance(account) -> D:  # noqa: ANN001
    return CreditAccount.objects.get(pk=account.pk).balance


def assert_sound(account) -> None:  # noqa: ANN001
    check = ledger_verify(account=CreditAccount.objects.get(pk=account.pk))
    assert check.ok, check.problems


@pytest.mark.django_db
def test_an_unspent_lot_expires_whole_at_local_midnight_after_n_days(platform, member):
    configure(platform, days=2)
    lot = check_in(platform, member.account, at(3, 1, 10))
    assert lot.expires_at == at(3, 4)  # kept through March 1 + 2 days
    assert sweep(at(3, 3, 23, 59), member.account) == NOTHING
    run = sweep(at(3, 4), member.account)
    assert run == ExpiryRun(accounts=1, lots=1, entries=1, taken=D("1"), forgiven=D("0"))
    [entry] = expiries(member.account)
    assert (entry.balance_delta, entry.balance_after, entry.created_at) == (D("-1"), D("0"), at(3, 4))
    assert entry.idempotency_key == f"expiry:checkin:{lot.id}-{lot.id}"
    assert entry.metadata == {"checkins": [{"id": lot.id, "day": "2040-03-01", "unspent": "1.00"}],
                              "unspent": "1.00", "forgiven": "0.00"}
    settled = Checkin.objects.get(pk=lot.pk)
    assert (settled.expired_at, settled.expired_credits, settled.expiry_entry_id) == (at(3, 4), D("1"), entry.id)
    assert_sound(member.account)


@pytest.mark.django_db
def test_a_partly_spent_lot_expires_the_rest_and_a_second_run_writes_nothing(platform, member):
    configure(platform, days=1)
    credits_grant(account_id=member.account.pk, amount=D("5"))  # purchased: never expire
    check_in(platform, member.account, at(3, 1, 10))
    spend(member.account, "0.30", at(3, 2, 23, 59))  # the lot's last minute: spends the lot
    assert sweep(at(3, 3), member.account).taken == D("0.70")
    rows = LedgerEntry.objects.count()
    assert sweep(at(3, 3), member.account) == NOTHING
    assert sweep(at(3, 9), member.account) == NOTHING
    assert LedgerEntry.objects.count() == rows
    assert balance(member.account) == D("5")
    assert_sound(member.account)


@pytest.mark.django_db
def test_usage_beyond_the_lots_spends_the_other_credits_and_nothing_is_left_to_expire(platform, member):
    configure(platform, days=1)
    credits_grant(account_id=member.account.pk, amount=D("5"))
    lot = check_in(platform, member.account, at(3, 1, 10))
    spend(member.account, "3", at(3, 1, 11))
    run = sweep(at(3, 3), member.account)
    assert run == ExpiryRun(accounts=1, lots=1, entries=0, taken=D("0"), forgiven=D("0"))
    assert expiries(member.account) == []
    settled = Checkin.objects.get(pk=lot.pk)
    assert (settled.expired_at, settled.expired_credits, settled.expiry_entry_id) == (at(3, 3), D("0"), None)
    assert balance(member.account) == D("3")


@pytest.mark.django_db
@pytest.mark.parametrize("swept_daily", [True, False], ids=["swept daily", "swept once at the end"])
def test_usage_spends_the_lots_oldest_first_and_never_an_expired_one(platform, member, swept_daily):
    """Lots A, B, C of March 1, 2, 3, each kept one day after its own (expiring at the 3rd, 4th and 5th), 10.00
    purchased. Usage: 0.40 (A) | B granted | 1.00 (A 0.60, B 0.40) | 0.50 (B) | A expires, spent | C granted |
    0.05 (B) | B expires with 0.05 | 0.50 (C: B is expired) | C expires with 0.50. Purchased credits untouched."""
    configure(platform, days=1)
    credits_grant(account_id=member.account.pk, amount=D("10"))
    a = check_in(platform, member.account, at(3, 1, 10))
    spend(member.account, "0.40", at(3, 1, 12))
    b = check_in(platform, member.account, at(3, 2, 10))
    spend(member.account, "1.00", at(3, 2, 12))
    spend(member.account, "0.50", at(3, 2, 13))
    runs = [sweep(at(3, 3), member.account)] if swept_daily else []
    c = check_in(platform, member.account, at(3, 3, 10))
    spend(member.account, "0.05", at(3, 3, 11))
    runs += [sweep(at(3, 4), member.account)] if swept_daily else []
    spend(member.account, "0.50", at(3, 4, 1))
    runs.append(sweep(at(3, 5), member.account))

    settled = {row.pk: (row.expired_credits, row.expiry_entry_id is not None) for row in Checkin.objects.all()}
    assert settled == {a.pk: (D("0"), False), b.pk: (D("0.05"), True), c.pk: (D("0.50"), True)}
    taken = [-e.balance_delta for e in expiries(member.account)]
    assert taken == ([D("0.05"), D("0.50")] if swept_daily else [D("0.55")])
    assert sum(run.taken for run in runs) == D("0.55") and sum(run.lots for run in runs) == 3
    assert balance(member.account) == D("10")
    if not swept_daily:  # one row for the account's due lots, naming them
        [entry] = expiries(member.account)
        assert entry.idempotency_key == f"expiry:checkin:{b.id}-{c.id}"
        assert [lot["id"] for lot in entry.metadata["checkins"]] == [b.id, c.id]
    assert_sound(member.account)


@pytest.mark.django_db
def test_refunds_and_adjustments_do_not_spend_the_lots(platform, member):
    from credits.services import credits_adjust

    configure(platform, days=1)
    credits_grant(account_id=member.account.pk, amount=D("5"))
    check_in(platform, member.account, at(3, 1, 10))
    pin(member.account, at(3, 1, 11))
    credits_adjust(account_id=member.account.pk, amount=D("-2"), description="correction", actor=None)
    assert sweep(at(3, 3), member.account).taken == D("1")
    assert balance(member.account) == D("3")


@pytest.mark.django_db
def test_credits_reserved_by_a_hold_are_not_taken_but_forgiven(platform, member):
    configure(platform, days=1)
    lot = check_in(platform, member.account, at(3, 1, 10))
    pin(member.account, at(3, 1, 11))
    held = hold_create(account_id=member.account.pk, amount=D("0.70"), expires_in=3600).hold
    run = sweep(at(3, 3), member.account)
    assert (run.taken, run.forgiven) == (D("0.30"), D("0.70"))
    [entry] = expiries(member.account)
    assert (entry.balance_delta, entry.metadata["unspent"], entry.metadata["forgiven"]) == (D("-0.3"), "1.00", "0.70")
    settled = Checkin.objects.get(pk=lot.pk)
    assert (settled.expired_credits, settled.expiry_entry_id) == (D("1"), entry.id)  # 1.00 left, 0.30 taken
    hold_release(hold_id=held.pk)
    assert balance(member.account) == D("0.70")  # forgiven: the member keeps it
    assert sweep(at(3, 4), member.account) == NOTHING
    assert_sound(member.account)


@pytest.mark.django_db
def test_when_holds_reserve_everything_the_lot_is_settled_without_a_row(platform, member):
    configure(platform, days=1)
    lot = check_in(platform, member.account, at(3, 1, 10))
    pin(member.account, at(3, 1, 11))
    hold_create(account_id=member.account.pk, amount=D("1"), expires_in=3600)
    assert sweep(at(3, 3), member.account) == ExpiryRun(accounts=1, lots=1, entries=0, taken=D("0"),
                                                        forgiven=D("1"))
    assert expiries(member.account) == []
    settled = Checkin.objects.get(pk=lot.pk)
    assert (settled.expired_at, settled.expired_credits, settled.expiry_entry_id) == (at(3, 3), D("1"), None)


@pytest.mark.django_db
def test_credits_granted_without_expiry_never_expire_and_a_new_setting_applies_to_later_check_ins(
        platform, member):
    configure(platform, days=None)
    kept = check_in(platform, member.account, at(3, 1, 10))
    configure(platform, days=1)
    later = check_in(platform, member.account, at(3, 2, 10))
    assert (kept.expires_at, later.expires_at) == (None, at(3, 4))
    assert sweep(at(5, 1), member.account).taken == D("1")
    assert balance(member.account) == D("1")


@pytest.mark.django_db
def test_each_account_is_settled_apart(platform, member, other_member):
    configure(platform, days=1)
    check_in(platform, member.account, at(3, 1, 10))
    check_in(platform, other_member.account, at(3, 1, 11))
    spend(other_member.account, "0.25", at(3, 1, 12))
    run = sweep(at(3, 3), member.account, other_member.account)
    assert (run.accounts, run.entries, run.taken) == (2, 2, D("1.75"))
    assert (balance(member.account), balance(other_member.account)) == (D("0"), D("0"))


# --- time zones -----------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("zone", "last_minute_of_day_1", "expiry"), [
    ("Pacific/Kiritimati", at(3, 1, 9, 59), at(3, 2, 10)),  # UTC+14: March 1 ends at 10:00 UTC
    ("Pacific/Pago_Pago", at(3, 2, 10, 59), at(3, 3, 11)),  # UTC-11: March 1 ends at 11:00 UTC on March 2
])
def test_the_expiry_is_local_midnight_of_the_platform(zone, last_minute_of_day_1, expiry):
    platform = make_platform("tz")
    first, second = make_member(platform, "first"), make_member(platform, "second")
    configure(platform, days=1, time_zone=zone)
    on_day_1 = check_in(platform, first.account, last_minute_of_day_1)
    on_day_2 = check_in(platform, second.account, last_minute_of_day_1 + timedelta(minutes=1))
    assert (on_day_1.day.isoformat(), on_day_2.day.isoformat()) == ("2040-03-01", "2040-03-02")
    assert (on_day_1.expires_at, on_day_2.expires_at) == (expiry, expiry + timedelta(days=1))
    assert sweep(expiry - timedelta(microseconds=1), first.account, second.account) == NOTHING
    assert sweep(expiry, first.account, second.account).lots == 1
    assert (balance(first.account), balance(second.account)) == (D("0"), D("1"))
    assert sweep(expiry + timedelta(days=1), first.account, second.account).lots == 1
    assert balance(second.account) == D("0")


# --- races ----------------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_sweep_waits_for_a_debit_in_flight_and_counts_it():
    """This thread's debit (before the expiry) holds the account's lock; the sweep waits for it (seen in pg_locks),
    then must see it: it takes 1.00 - 0.40, not 1.00."""
    platform = make_platform("race")
    member = make_member(platform, "racer", credits="5")
    configure(platform, days=1)
    check_in(platform, member.account, at(3, 1, 10))
    swept: dict[str, object] = {}
    pids: list[str] = []
    ready = threading.Barrier(2)

    def sweeper() -> None:
        try:
            pids.append(backend_tag())
            ready.wait()
            swept["run"] = checkin_credits_expire(now=at(3, 3))
        except BaseException as exc:  # noqa: BLE001 - reported below
            swept["run"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=sweeper, daemon=True)
    with transaction.atomic():
        pin(member.account, at(3, 2, 23))
        credits_debit(account_id=member.account.pk, amount=D("0.40"))  # the account row is locked until commit
        CreditAccount.objects.filter(pk=member.account.pk).update(last_entry_at=at(3, 3))  # the clock moves on
        thread.start()
        ready.wait()
        wait_until_blocked(pids[0])
    thread.join(30)
    assert not thread.is_alive()
    assert swept["run"] == ExpiryRun(accounts=1, lots=1, entries=1, taken=D("0.60"), forgiven=D("0"))
    assert balance(member.account) == D("5")
    assert_sound(member.account)


@pytest.mark.django_db(transaction=True)
def test_debits_racing_the_sweep_never_overdraw_and_keep_the_ledger_exact():
    """After the expiry, four debits of 0.30 race the sweep for a lot of 1.00 (no other credits): the sweep takes
    what the debits before it left; the debits after it find less. Whatever the order, nothing is overdrawn and
    every credit is accounted for."""
    platform = make_platform("race2")
    member = make_member(platform, "racer")
    configure(platform, days=1)
    check_in(platform, member.account, at(3, 1, 10))
    pin(member.account, at(3, 3, 1))
    barrier = threading.Barrier(5)
    outcomes: list[object] = []

    def debit() -> None:
        try:
            barrier.wait()
            credits_debit(account_id=member.account.pk, amount=D("0.30"))
            outcomes.append("spent")
        except InsufficientCredits:
            outcomes.append("refused")
        finally:
            connection.close()

    def expire() -> None:
        try:
            barrier.wait()
            outcomes.append(checkin_credits_expire(now=at(3, 3, 1)))
        finally:
            connection.close()

    threads = [threading.Thread(target=debit) for _ in range(4)] + [threading.Thread(target=expire)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    [run] = [o for o in outcomes if isinstance(o, ExpiryRun)]
    spent = outcomes.count("spent")
    assert run.lots == 1 and run.taken + run.forgiven == D("1")  # debits after the expiry do not spend the lot
    assert balance(member.account) == D("1") - D("0.30") * spent - run.taken >= 0
    assert spent + outcomes.count("refused") == 4
    assert_sound(member.account)


# --- over HTTP ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_over_http_the_setting_and_the_credits_expiring_soon(platform, owner, member):
    put = client_for(owner).put(CONFIG_URL, {"enabled": True, "credits_per_day": "1", "credits_expire_after_days": 30},
                                format="json")
    assert (put.status_code, put.json()["credits_expire_after_days"]) == (200, 30), put.content
    assert client_for(owner).get(CONFIG_URL).json()["credits_expire_after_days"] == 30
    done = post_json(client_for(member), CHECKIN_URL, {})
    assert done.status_code == 201, done.content
    expires_at = done.json()["expires_at"]
    row = Checkin.objects.get(account=member.account)
    assert row.expires_at == datetime.fromisoformat(expires_at) == datetime.combine(
        row.day + timedelta(days=31), datetime.min.time(), tzinfo=UTC)
    credits_debit(account_id=member.account.pk, amount=D("0.25"))
    state = client_for(member).get(CHECKIN_URL).json()
    assert state["credits_expire_after_days"] == 30
    assert state["expiring"] == [{"amount": "0.75", "expires_at": expires_at}]
    assert (state["history"][0]["expires_at"], state["history"][0]["expired_credits"]) == (expires_at, None)
    off = client_for(owner).put(CONFIG_URL, {"enabled": True, "credits_per_day": "1"}, format="json")
    assert off.json()["credits_expire_after_days"] is None  # absent: never (the PUT replaces the settings)


@pytest.mark.django_db
@pytest.mark.parametrize("days", [None, 30])
def test_over_http_the_state_reads_the_lots_once(platform, member, days, django_assert_num_queries):
    """The history and the lots by the ORM; besides them, prepared statements Django's query capture does not
    list: the token's user, the check-in's one read (time zone, settings, account) and, with expiring lots, the
    aggregation of their usage."""
    configure(platform, days=days)
    post_json(client_for(member), CHECKIN_URL, {})
    client = client_for(member)
    client.get(CHECKIN_URL)  # warm: the token's user
    with django_assert_num_queries(2):
        state = client.get(CHECKIN_URL).json()
    assert state["credits_expire_after_days"] == days
    assert [e["amount"] for e in state["expiring"]] == (["1.00"] if days else [])


@pytest.mark.django_db
@pytest.mark.parametrize("days", [0, -1, 3651, "5", 5.5, 5.0, True, "never", [1], {"days": 1}, ""])
def test_a_bad_expiry_setting_is_a_400_and_writes_nothing(platform, owner, days):
    response = client_for(owner).put(CONFIG_URL, {"enabled": True, "credits_per_day": "1",
                                                  "credits_expire_after_days": days}, format="json")
    assert response.status_code == 400, response.content
    assert "credits_expire_after_days" in response.json()["error"]["details"]
    assert not CheckinConfig.objects.exists()


@pytest.mark.django_db
def test_another_platforms_setting_is_untouched(platform, owner, other_platform):
    configure(other_platform, days=7)
    response = client_for(owner).put(CONFIG_URL, {"enabled": True, "credits_per_day": "1",
                                                  "credits_expire_after_days": 3650}, format="json")
    assert response.status_code == 200, response.content
    assert CheckinConfig.objects.get(platform=platform).credits_expire_after_days == 3650
    assert CheckinConfig.objects.get(platform=other_platform).credits_expire_after_days == 7


def test_the_service_refuses_a_bad_setting():
    with pytest.raises(ValueError, match="credits_expire_after_days"):
        checkin_config_set(platform=None, actor=None, enabled=True, credits_per_day=D("1"), streak_bonuses={},
                           monthly_cap=None, time_zone="UTC", credits_expire_after_days=0)


def test_plan_credits_and_check_in_lots_share_one_spending_order(platform, member):
    """A plan period's close counts as spending its credits only the usage the check-in lots did not pay: lots are
    spent first, so one debit is never counted by both rules (and credits escape neither expiry)."""
    from payments.plan_periods import plan_credits_spent

    configure(platform, days=30, credits_per_day=D("30"))
    pin(member.account, at(3, 1, 8))
    grant = credits_grant(account_id=member.account.pk, amount=D(100), description="plan credits").entry
    check_in(platform, member.account, at(3, 1, 9))
    spend(member.account, "20", at(3, 2, 9))  # paid by the lot
    assert plan_credits_spent(account_id=member.account.pk, after_sequence=grant.sequence) == 0
    spend(member.account, "25", at(3, 3, 9))  # 10 by the lot, 15 by the plan's credits
    assert plan_credits_spent(account_id=member.account.pk, after_sequence=grant.sequence) == D(15)
    assert sweep(at(4, 2), member.account).taken == 0  # the lot was spent whole
    assert_sound(member.account)
