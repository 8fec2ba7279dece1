"""Discount coupons at checkout: Stripe applies its coupon (made on first use, its id derived from ours), the order
records the coupon and the discounted price, the redemption counts once the payment succeeds (webhooks, replays
included), and a coupon that does not apply refuses the checkout up front. Creem gets the code as
``discount_code``."""

from __future__ import annotations

from decimal import ROUND_HALF_DOWN, Decimal

import pytest

from credits.models import LedgerEntry
from payments.models import Coupon, CouponRedemption, Order, OrderStatus
from tests.api_helpers import error_of, invalid_field
from tests.payments import creem_support, test_coupons_support
from tests.payments.conftest import deliver
from tests.payments.stripe_subscriptions import subscribe
from tests.payments.test_coupons_support import make_coupon, paid_session_event, top_up
from tests.subscriptions.conftest import make_plan

pytestmark = pytest.mark.django_db
coupon_stripe = test_coupons_support.coupon_stripe
fake_creem = creem_support.fake_creem


def _pay(order: Order, amount_total: int, **kwargs):  # noqa: ANN003, ANN202
    response = deliver(paid_session_event(order, amount_total=amount_total, **kwargs))
    assert response.status_code == 200, response.content
    return response.json()


def test_a_percent_coupon_on_a_top_up(coupon_stripe, admin, member):
    coupon = make_coupon(admin, "SAVE20", "percent_off", "20", max_per_account=2)
    response = top_up(member, "25.00", coupon="save20")
    assert response.status_code == 201, response.content
    order = Order.objects.get(pk=response.json()["order_id"])
    assert (order.amount_usd, order.discount_usd, order.credits) == (Decimal("20.00"), Decimal("5.00"), Decimal(25))
    assert str(order.coupon_id) == coupon["id"] and order.status == OrderStatus.PENDING
    stripe_id = f"cpn_{order.coupon_id.hex}_p2000"
    [created] = coupon_stripe.of("/v1/coupons")
    assert created["form"] == {"id": stripe_id, "duration": "once", "name": "SAVE20", "percent_off": "20",
                               "metadata[coupon_id]": coupon["id"], "metadata[platform_id]": str(member.platform.id)}
    assert created["headers"]["Idempotency-Key"] == f"coupon:{stripe_id}"
    [session] = coupon_stripe.of("/v1/checkout/sessions")
    assert session["form"]["line_items[0][price_data][unit_amount]"] == "2500"
    assert session["form"]["discounts[0][coupon]"] == stripe_id
    assert Coupon.objects.get().stripe_coupon_id == stripe_id
    assert CouponRedemption.objects.count() == 0  # not paid yet

    # the order as the member sees it
    shown = test_coupons_support.client_for(member).get(f"/api/billing/orders/{order.id}/").json()
    assert (shown["amount_usd"], shown["discount_usd"], shown["coupon_id"]) == ("20.00", "5.00", coupon["id"])

    # a second checkout reuses the Stripe coupon
    assert top_up(member, "10.00", coupon="SAVE20").status_code == 201
    assert len(coupon_stripe.of("/v1/coupons")) == 1


def test_the_payment_credits_the_undiscounted_amount_and_counts_the_redemption_once(coupon_stripe, admin, member):
    make_coupon(admin, "FIVE", "amount_off", "5", max_redemptions=10)
    order = Order.objects.get(pk=top_up(member, "25.00", coupon="FIVE").json()["order_id"])
    event = paid_session_event(order, amount_total=2000)
    assert deliver(event).json()["status"] == "processed"
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID and order.amount_paid_usd == Decimal("20.00")
    entry = LedgerEntry.objects.get(pk=order.ledger_entry_id)
    assert (entry.transaction_type, entry.balance_delta, entry.payment_amount_usd) == ("add", Decimal(25),
                                                                                       Decimal("20.00"))
    redemption = CouponRedemption.objects.get()
    assert (redemption.source, redemption.order_id, redemption.discount_usd, redemption.over_limit) == (
        "checkout", order.id, Decimal("5.00"), False)
    assert Coupon.objects.get().redemptions_count == 1
    # a replay, and another event of the same payment, change nothing
    assert deliver(event).json()["duplicate"] is True
    _pay(order, 2000)
    assert CouponRedemption.objects.count() == 1 and Coupon.objects.get().redemptions_count == 1


def test_stripe_rounding_a_half_cent_the_other_way_is_accepted(coupon_stripe, admin, member):
    coupon_stripe.percent_rounding = ROUND_HALF_DOWN
    make_coupon(admin, "EIGHTH", "percent_off", "12.5", max_per_account=5)
    order = Order.objects.get(pk=top_up(member, "5.00", coupon="EIGHTH").json()["order_id"])
    assert (order.amount_usd, order.discount_usd) == (Decimal("4.37"), Decimal("0.63"))  # ours: half up
    assert _pay(order, 438)["status"] == "processed"  # Stripe's: 62.5 cents rounded down
    order.refresh_from_db()
    assert (order.status, order.amount_usd, order.discount_usd, order.credits) == (
        OrderStatus.PAID, Decimal("4.38"), Decimal("0.62"), Decimal(5))
    # more than a cent away is a disagreement: flagged, not credited
    other = Order.objects.get(pk=top_up(member, "5.00", coupon="EIGHTH").json()["order_id"])
    assert _pay(other, 440)["status"] == "failed"
    other.refresh_from_db()
    assert other.needs_review and other.status == OrderStatus.PENDING


def test_a_changed_value_makes_a_new_stripe_coupon(coupon_stripe, admin, member):
    coupon = make_coupon(admin, "MOVING", "amount_off", "2", max_per_account=2)
    assert top_up(member, coupon="MOVING").status_code == 201
    client = test_coupons_support.client_for(admin)
    assert client.patch(f"/api/billing/admin/coupons/{coupon['id']}/", {"value": "3"}, format="json").status_code == 200
    order = Order.objects.get(pk=top_up(member, "25.00", coupon="MOVING").json()["order_id"])
    ids = [r["form"]["id"] for r in coupon_stripe.of("/v1/coupons")]
    hex_id = order.coupon_id.hex
    assert ids == [f"cpn_{hex_id}_a200", f"cpn_{hex_id}_a300"]
    assert coupon_stripe.of("/v1/checkout/sessions")[-1]["form"]["discounts[0][coupon]"] == ids[1]
    assert order.discount_usd == Decimal(3)


def test_checkouts_still_open_count_against_the_accounts_limit(coupon_stripe, admin, member, other_member):
    make_coupon(admin, "ONCE", "amount_off", "1")  # once per account
    assert top_up(member, "10.00", coupon="ONCE").status_code == 201
    error = error_of(top_up(member, "10.00", coupon="ONCE"), 409, "coupon_already_redeemed")
    assert error["details"]["open_checkouts"] == 1
    assert top_up(other_member, "10.00", coupon="ONCE").status_code == 201  # another account's own
    assert Order.objects.filter(coupon__code="ONCE").count() == 2


def test_a_stripe_coupon_that_already_exists_is_used(coupon_stripe, admin, member):
    coupon = make_coupon(admin, "THERE", "amount_off", "1")
    Coupon.objects.filter(pk=coupon["id"]).update(stripe_coupon_id="")
    stripe_id = f"cpn_{coupon['id'].replace('-', '')}_a100"
    coupon_stripe.coupons[stripe_id] = {"id": stripe_id, "percent_off": None, "amount_off": 100, "_form": {}}
    response = top_up(member, coupon="THERE")
    assert response.status_code == 201, response.content
    assert Coupon.objects.get().stripe_coupon_id == stripe_id


def test_a_checkout_paid_after_the_coupon_ran_out_still_counts_over_the_limit(coupon_stripe, admin, member,
                                                                              other_member):
    make_coupon(admin, "LAST", "amount_off", "1", max_redemptions=1)
    first = Order.objects.get(pk=top_up(member, "10.00", coupon="LAST").json()["order_id"])
    second = Order.objects.get(pk=top_up(other_member, "10.00", coupon="LAST").json()["order_id"])
    _pay(first, 900)
    error_of(top_up(other_member, "10.00", coupon="LAST"), 409, "coupon_exhausted")  # refused up front now
    _pay(second, 900)  # but the checkout opened before was paid at the discounted price
    assert list(CouponRedemption.objects.order_by("created_at").values_list("order_id", "over_limit")) == [
        (first.id, False), (second.id, True)]
    assert Coupon.objects.get().redemptions_count == 2


def test_refusals_up_front_write_nothing_and_call_no_one(coupon_stripe, admin, member):
    pro = make_plan(admin.platform, "pro", stripe_price_monthly="price_pro_m", price_monthly=2000)
    make_coupon(admin, "CREDITS", "credits", "5")
    make_coupon(admin, "BIG", "amount_off", "24.60")
    make_coupon(admin, "ALL", "percent_off", "100")
    make_coupon(admin, "PROONLY", "percent_off", "10", plan_ids=[str(pro.pk)])
    make_coupon(admin, "OFF", "percent_off", "10", active=False)
    make_coupon(admin, "FIRST", "percent_off", "10", first_purchase_only=True)

    def refused(code: str, status: int, error_code: str, **fields) -> dict:  # noqa: ANN003
        error = error_of(top_up(member, "25.00", coupon=code, **fields), status, error_code)
        assert "coupon" in error["details"], error
        return error

    refused("NOSUCH", 400, "coupon_unknown")
    refused("CREDITS", 400, "coupon_not_a_discount")
    assert refused("BIG", 400, "coupon_not_applicable")["details"]["reason"] == "too_large"  # 0.40 left
    assert refused("ALL", 400, "coupon_not_applicable")["details"]["reason"] == "too_large"
    assert refused("PROONLY", 400, "coupon_not_applicable")["details"]["reason"] == "plan"
    refused("OFF", 400, "coupon_inactive")
    assert Order.objects.count() == 0 and coupon_stripe.requests == []
    # a first purchase only coupon after a paid order
    order = Order.objects.get(pk=top_up(member, "25.00").json()["order_id"])
    _pay(order, 2500)
    refused("FIRST", 409, "coupon_first_purchase_only")
    assert Order.objects.count() == 1
    invalid_field(top_up(member, coupon=""), "coupon")
    invalid_field(top_up(member, coupon="x" * 65), "coupon")
    invalid_field(top_up(member, coupon=5), "coupon")
    invalid_field(top_up(member, coupon="no spaces"), "coupon")


def test_plan_and_top_up_restrictions_on_stripe_subscriptions(coupon_stripe, admin, member, other_member):
    pro = make_plan(admin.platform, "pro", stripe_price_monthly="price_pro_m", price_monthly=2000)
    make_plan(admin.platform, "max", stripe_price_monthly="price_max_m", price_monthly=5000)
    coupon_stripe.prices.update({"price_pro_m": 2000, "price_max_m": 5000})
    make_coupon(admin, "TOPUPS", "percent_off", "10", top_ups_only=True)
    make_coupon(admin, "PRO25", "percent_off", "25", plan_ids=[str(pro.pk)])
    error = error_of(subscribe(member, str(pro.pk), coupon="TOPUPS"), 400, "coupon_not_applicable")
    assert error["details"]["reason"] == "top_ups_only"
    error = error_of(subscribe(member, "max", coupon="PRO25"), 400, "coupon_not_applicable")
    assert error["details"]["reason"] == "plan"
    assert Order.objects.count() == 0

    response = subscribe(member, str(pro.pk), coupon="pro25")
    assert response.status_code == 201, response.content
    order = Order.objects.get(pk=response.json()["order_id"])
    assert (order.amount_usd, order.discount_usd) == (Decimal("15.00"), Decimal("5.00"))
    session = coupon_stripe.of("/v1/checkout/sessions")[-1]["form"]
    assert session["line_items[0][price]"] == "price_pro_m"
    assert session["discounts[0][coupon]"] == f"cpn_{order.coupon_id.hex}_p2500"
    # the subscription's first payment counts it
    from tests.payments.stripe_subscriptions import session_completed

    completed = session_completed(order_id=str(order.id), session_id=order.provider_checkout_id,
                                  subscription_id="sub_coupon_1", amount_total=1500)
    assert deliver(completed).json()["status"] == "processed"
    assert CouponRedemption.objects.get().order_id == order.id
    assert deliver(completed | {"id": "evt_again_1"}).status_code == 200
    assert CouponRedemption.objects.count() == 1


# --- Creem ------------------------------------------------------------------------------------------------------


def test_a_creem_subscription_gets_the_code_and_counts_when_paid(fake_creem, admin, member):
    plan = creem_support.creem_plan(member.platform)  # 20.00 a month
    make_coupon(admin, "Creem5", "amount_off", "5")
    response = creem_support.checkout(member, plan_id=str(plan.pk), coupon="CREEM5")
    assert response.status_code == 201, response.content
    order = Order.objects.get(pk=response.json()["order_id"])
    assert (order.amount_usd, order.discount_usd) == (Decimal("15.00"), Decimal("5.00"))
    assert fake_creem.last["json"]["discount_code"] == "Creem5"
    shown = test_coupons_support.client_for(member).get(f"/api/billing/orders/{order.id}/").json()
    assert CouponRedemption.objects.count() == 0
    event = creem_support.checkout_completed(shown, with_period=True, amount=1500)
    answer = creem_support.deliver(event)
    assert answer.status_code == 200 and answer.json()["status"] == "processed", answer.content
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID and order.amount_paid_usd == Decimal("15.00")
    assert CouponRedemption.objects.get().order_id == order.id
    paid = creem_support.subscription_event("subscription.paid", shown)
    assert creem_support.deliver(paid).status_code == 200
    assert CouponRedemption.objects.count() == 1 and Coupon.objects.get().redemptions_count == 1


def test_a_checkout_without_a_coupon_writes_no_discount(coupon_stripe, member):
    order = Order.objects.get(pk=top_up(member, "25.00").json()["order_id"])
    assert (order.coupon_id, order.discount_usd) == (None, Decimal(0))
    assert "discounts[0][coupon]" not in coupon_stripe.of("/v1/checkout/sessions")[0]["form"]
