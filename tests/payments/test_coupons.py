"""Redeeming a credits coupon (``POST /api/billing/coupons/redeem/``): the promotion ledger row, every refusal with
its own code, the per-user rate limit in PostgreSQL, and concurrent redemptions that never pass the limits."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connections, transaction
from django.utils import timezone

from accounts.models import Role
from billing_service.money import format_money
from credits.models import LedgerEntry, TransactionType
from payments import coupons
from payments.errors import CouponAttemptsExceeded, CouponExhausted
from payments.models import Coupon, CouponAttempt, CouponRedemption, Order, OrderStatus, OrderType
from tests.api_helpers import db_snapshot, error_of, invalid_field, post_json
from tests.conftest import client_for, make_member
from tests.payments import test_coupons_support
from tests.payments.test_coupons_support import REDEEM_URL, make_coupon, redeem, top_up
from tests.waits import wait_for_lock_waiters

pytestmark = pytest.mark.django_db
coupon_stripe = test_coupons_support.coupon_stripe  # the fake Stripe of checkout with coupons


def test_redeeming_a_credits_coupon_grants_a_promotion_row(admin, member):
    coupon = make_coupon(admin, "Welcome10", "credits", "10.5")
    before = member.account.balance
    response = redeem(member, "wELCOME10")  # any case

    assert response.status_code == 201, response.content
    body = response.json()
    redemption = CouponRedemption.objects.get()
    entry = LedgerEntry.objects.get(account=member.account, transaction_type=TransactionType.PROMOTION)
    assert body == {
        "redemption_id": str(redemption.pk), "coupon_id": coupon["id"], "code": "Welcome10",
        "credits_awarded": "10.50", "balance": format_money(before + Decimal("10.5")),
        "transaction": body["transaction"],
    }
    assert body["transaction"]["id"] == str(entry.pk)
    assert body["transaction"]["transaction_type"] == "promotion"
    assert body["transaction"]["balance_change"] == "10.50"
    assert entry.actor_id == member.user.id
    assert entry.idempotency_key == f"coupon:{redemption.pk}"
    assert entry.metadata == {"coupon_id": coupon["id"], "code": "Welcome10", "redemption_id": str(redemption.pk)}
    assert (redemption.source, redemption.ledger_entry_id, redemption.account_id, redemption.user_id) == (
        "redeem", entry.pk, member.account.id, member.user.id)
    member.account.refresh_from_db()
    assert member.account.balance == before + Decimal("10.5")
    assert Coupon.objects.get().redemptions_count == 1
    assert client_for(admin).get(f"/api/billing/admin/coupons/{coupon['id']}/").json()["redemptions"] == 1
    assert list(CouponAttempt.objects.values_list("code", "outcome")) == [("wELCOME10", "redeemed")]
    # it shows in the member's ledger
    listed = client_for(member).get("/api/billing/transactions/", {"transaction_type": "promotion"}).json()
    assert [row["id"] for row in listed["results"]] == [str(entry.pk)]


def test_max_per_account_allows_that_many(admin, member):
    make_coupon(admin, "TWICE", "credits", "1", max_per_account=2)
    assert redeem(member, "TWICE").status_code == 201
    assert redeem(member, "TWICE").status_code == 201
    error = error_of(redeem(member, "TWICE"), 409, "coupon_already_redeemed")
    assert error["details"]["max_per_account"] == 2 and "code" in error["details"]
    assert LedgerEntry.objects.filter(transaction_type="promotion").count() == 2


def _refused(member, code, status, error_code):  # noqa: ANN001, ANN202
    snapshot = db_snapshot()
    redemptions = CouponRedemption.objects.count()
    error = error_of(redeem(member, code), status, error_code)
    assert db_snapshot() == snapshot and CouponRedemption.objects.count() == redemptions
    return error


def test_every_refusal_has_its_own_code_and_writes_nothing(admin, member, other_member, outsider):
    now = timezone.now()
    make_coupon(admin, "OFF", "credits", "1", active=False)
    make_coupon(admin, "LATER", "credits", "1", valid_from=(now + timedelta(days=1)).isoformat())
    make_coupon(admin, "GONE", "credits", "1", valid_from=(now - timedelta(days=2)).isoformat(),
                valid_until=(now - timedelta(days=1)).isoformat())
    make_coupon(admin, "ONE", "credits", "1", max_redemptions=1)
    make_coupon(admin, "MINE", "credits", "1")
    make_coupon(admin, "PCT", "percent_off", "10")
    make_coupon(admin, "NEWBIE", "credits", "5", first_purchase_only=True)
    make_coupon(outsider, "THEIRS", "credits", "1")
    assert redeem(other_member, "ONE").status_code == 201
    assert redeem(member, "MINE").status_code == 201
    Order.objects.create(platform=member.platform, account=member.account, user=member.user,
                         type=OrderType.SUBSCRIPTION, channel="stripe", amount_usd=Decimal(5), credits=0,
                         plan=_plan(member.platform), status=OrderStatus.PAID, paid_at=now,
                         success_url="https://a.test/", cancel_url="https://a.test/")

    assert _refused(member, "NOSUCH", 400, "coupon_unknown")["details"]["code"]
    _refused(member, "THEIRS", 400, "coupon_unknown")  # another platform's code is unknown here
    _refused(member, "OFF", 400, "coupon_inactive")
    assert "valid_from" in _refused(member, "LATER", 400, "coupon_not_yet_valid")["details"]
    assert "valid_until" in _refused(member, "GONE", 400, "coupon_expired")["details"]
    _refused(member, "ONE", 409, "coupon_exhausted")
    _refused(member, "MINE", 409, "coupon_already_redeemed")
    _refused(member, "PCT", 400, "coupon_not_redeemable")
    _refused(member, "NEWBIE", 409, "coupon_first_purchase_only")
    assert redeem(other_member, "NEWBIE").status_code == 201  # never paid: welcome
    outcomes = dict(CouponAttempt.objects.filter(user=member.user).values_list("code", "outcome"))
    assert outcomes["NOSUCH"] == "coupon_unknown" and outcomes["PCT"] == "coupon_not_redeemable"


def _plan(platform):  # noqa: ANN001, ANN202
    from tests.subscriptions.conftest import make_plan

    return make_plan(platform, "paid-before")


@pytest.mark.parametrize("code", ["x" * 65, "", None, 42, ["A"], {"c": 1}, "SAVE 20", "ÉTÉ", "a\x00b", "a\u202eb"])
def test_a_malformed_code_is_a_400_naming_it_and_is_not_an_attempt(admin, member, code):
    make_coupon(admin, "REAL", "credits", "1")
    invalid_field(redeem(member, code), "code")
    assert CouponAttempt.objects.count() == 0 and CouponRedemption.objects.count() == 0


def test_redeem_bad_bodies(member):
    client = client_for(member)
    invalid_field(post_json(client, REDEEM_URL, {}), "code")
    invalid_field(post_json(client, REDEEM_URL, {"code": "A", "extra": 1}), "extra")
    error_of(post_json(client, REDEEM_URL, "[1]"), 400)
    assert client.get(REDEEM_URL).status_code == 405


def test_outsiders_cannot_redeem(admin, outsider):
    make_coupon(admin, "ACME", "credits", "1")
    error_of(post_json(client_for(outsider), REDEEM_URL, {"code": "ACME"}), 400, "coupon_unknown")
    stranger = client_for(outsider, platform_key="acme")
    error_of(post_json(stranger, REDEEM_URL, {"code": "ACME"}), 403)
    assert CouponRedemption.objects.count() == 0


def test_a_member_of_two_platforms_redeems_in_the_one_named(admin, member, other_platform):
    from accounts.services import member_add

    member_add(platform=other_platform, username=member.user.username, role=Role.MEMBER)
    make_coupon(admin, "ACME", "credits", "2")
    error_of(redeem(member, "ACME"), 400, "platform_ambiguous")
    response = post_json(client_for(member, platform_key="acme"), REDEEM_URL, {"code": "ACME"})
    assert response.status_code == 201, response.content


# --- the rate limit --------------------------------------------------------------------------------------------


def test_attempts_beyond_the_hourly_limit_are_429_with_retry_after(settings, admin, member, other_member):
    settings.COUPON_REDEEM_ATTEMPTS_PER_HOUR = 3
    make_coupon(admin, "REAL", "credits", "1")
    for guess in ("AAAA", "BBBB", "CCCC"):
        error_of(redeem(member, guess), 400, "coupon_unknown")
    snapshot = db_snapshot()
    response = redeem(member, "REAL")  # even the right code, now
    error = error_of(response, 429, "coupon_attempts_exceeded")
    assert 3500 <= int(response["Retry-After"]) <= 3600
    assert error["details"] == {"retry_after": int(response["Retry-After"]), "limit_per_hour": 3}
    assert db_snapshot() == snapshot and CouponAttempt.objects.filter(user=member.user).count() == 3
    # per user: another member is not held back
    assert redeem(other_member, "REAL").status_code == 201


def test_the_window_slides(settings, admin, member):
    settings.COUPON_REDEEM_ATTEMPTS_PER_HOUR = 2
    make_coupon(admin, "REAL", "credits", "1")
    start = timezone.now() - timedelta(hours=2)
    kwargs = {"platform": member.platform, "account": member.account, "user": member.user}
    for minutes in (0, 30):
        with pytest.raises(coupons.CouponUnknown):
            coupons.coupon_redeem(code="NOPE", now=start + timedelta(minutes=minutes), **kwargs)
    with pytest.raises(CouponAttemptsExceeded) as refused:
        coupons.coupon_redeem(code="REAL", now=start + timedelta(minutes=59), **kwargs)
    assert refused.value.retry_after == 60 and refused.value.headers() == {"Retry-After": "60"}
    # one hour after the first attempt, it has left the window
    redemption = coupons.coupon_redeem(code="REAL", now=start + timedelta(minutes=60, seconds=1), **kwargs)
    assert redemption.credits == Decimal(1)


def test_checkout_codes_count_in_the_same_limit(settings, coupon_stripe, admin, member):
    settings.COUPON_REDEEM_ATTEMPTS_PER_HOUR = 2
    make_coupon(admin, "REAL", "credits", "1")
    error_of(top_up(member, coupon="GUESS1"), 400, "coupon_unknown")
    error_of(redeem(member, "GUESS2"), 400, "coupon_unknown")
    response = top_up(member, coupon="GUESS3")
    error_of(response, 429, "coupon_attempts_exceeded")
    assert response["Retry-After"]
    assert Order.objects.count() == 0 and coupon_stripe.requests == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_attempts_of_one_user_never_pass_the_limit(settings, platform):
    settings.COUPON_REDEEM_ATTEMPTS_PER_HOUR = 3
    racer = make_member(platform, "racer")
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def go(i: int) -> None:
        try:
            barrier.wait()
            coupons.coupon_attempt_record(platform=platform, user=racer.user, code=f"G{i}")
            outcomes.append("counted")
        except CouponAttemptsExceeded:
            outcomes.append("limited")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["counted"] * 3 + ["limited"] * 5
    assert CouponAttempt.objects.filter(user=racer.user).count() == 3


# --- concurrent redemptions ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_redemptions_never_exceed_max_redemptions(settings, platform):
    settings.COUPON_REDEEM_ATTEMPTS_PER_HOUR = 100
    boss = make_member(platform, "boss", Role.ADMIN)
    coupon = coupons.coupon_create(platform=platform, actor=boss.user, code="RUSH", kind="credits",
                                   value=Decimal(5), max_redemptions=3)
    racers = [make_member(platform, f"racer{i}") for i in range(8)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(racers) + 1)

    def go(racer) -> None:  # noqa: ANN001
        try:
            barrier.wait()
            coupons.coupon_redeem(platform=platform, account=racer.account, user=racer.user, code="rush")
            outcomes.append("redeemed")
        except CouponExhausted:
            outcomes.append("exhausted")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=go, args=(racer,)) for racer in racers]
    # Hold the coupon's row so that every redemption is lined up on its lock, then let them race for it.
    with transaction.atomic():
        Coupon.objects.select_for_update().get(pk=coupon.pk)
        for t in threads:
            t.start()
        barrier.wait()
        wait_for_lock_waiters(len(racers))  # all eight wait for the coupon's lock: the race is real
    for t in threads:
        t.join()

    assert sorted(outcomes) == ["exhausted"] * 5 + ["redeemed"] * 3
    assert CouponRedemption.objects.filter(coupon=coupon).count() == 3
    assert LedgerEntry.objects.filter(transaction_type="promotion").count() == 3
    assert Coupon.objects.get(pk=coupon.pk).redemptions_count == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_redemptions_by_one_account_respect_max_per_account(settings, platform):
    settings.COUPON_REDEEM_ATTEMPTS_PER_HOUR = 100
    boss = make_member(platform, "boss", Role.ADMIN)
    coupons.coupon_create(platform=platform, actor=boss.user, code="ONCE", kind="credits", value=Decimal(5))
    racer = make_member(platform, "racer")
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def go() -> None:
        try:
            barrier.wait()
            coupons.coupon_redeem(platform=platform, account=racer.account, user=racer.user, code="ONCE")
            outcomes.append("redeemed")
        except coupons.CouponAlreadyRedeemed:
            outcomes.append("already")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["already"] * 5 + ["redeemed"]
    racer.account.refresh_from_db()
    assert racer.account.balance == Decimal(5)
