"""The events the payment flows record for the platform's outbound webhooks, in the transaction of their change:
``order.paid`` (a paid top-up), ``auto_recharge.succeeded`` / ``failed`` (a recharge settled by its webhook) and
``subscription.updated`` (every change a subscription records). Delivery itself: tests/accounts/test_outbound.py."""

from __future__ import annotations


import pytest

from accounts import outbound
from accounts.outbound_models import OutboundEvent
from payments.models import Order
from payments.recharge_models import Recharge
from subscriptions.services import subscription_start
from tests.payments.conftest import deliver
from tests.payments.local_servers import localstripe, stripe_settings  # noqa: F401 - fixtures
from tests.payments.test_auto_recharge import debit, enabled_member, intent_event
from tests.payments.test_coupons_support import coupon_stripe, paid_session_event, top_up  # noqa: F401 - fixture
from tests.subscriptions.conftest import make_plan

pytestmark = pytest.mark.django_db


def listen(platform, *events: str) -> None:  # noqa: ANN001
    outbound.endpoint_create(platform=platform, url="https://hooks.example.com/billing", events=list(events))


def test_a_paid_top_up_records_order_paid_once(coupon_stripe, platform, member):  # noqa: F811
    listen(platform, "order.paid")
    order = Order.objects.get(pk=top_up(member, "25.00").json()["order_id"])
    assert not OutboundEvent.objects.exists()  # not paid yet
    event = paid_session_event(order, amount_total=2500)
    for _ in range(2):  # a replay records nothing more
        assert deliver(event).status_code == 200
    recorded = OutboundEvent.objects.get()
    assert (recorded.type, recorded.account_id) == ("order.paid", member.account.id)
    assert recorded.data | {"paid_at": None} == {
        "order_id": str(order.id), "type": "top_up", "channel": "stripe", "user_id": member.membership.user_id,
        "amount_usd": "25.00", "amount_paid_usd": "25.00", "credits": "25.00", "paid_at": None}


def test_no_event_is_recorded_where_no_endpoint_listens(coupon_stripe, platform, member):  # noqa: F811
    listen(platform, "balance.low")
    order = Order.objects.get(pk=top_up(member, "25.00").json()["order_id"])
    assert deliver(paid_session_event(order, amount_total=2500)).status_code == 200
    assert not OutboundEvent.objects.exists()


def test_a_recharge_settled_by_its_webhook_is_told(platform, stripe_settings, django_capture_on_commit_callbacks):  # noqa: ANN001, F811
    member = enabled_member(platform, stripe_settings)
    listen(platform, "auto_recharge.succeeded", "auto_recharge.failed")
    debit(member, "6", django_capture_on_commit_callbacks)
    recharge = Recharge.objects.get()
    intent = stripe_settings.payment_intent(recharge.provider_payment_id)
    failed = intent_event(intent | {"status": "requires_payment_method",
                                    "last_payment_error": {"message": "Your card was declined."}},
                          "payment_intent.payment_failed")
    assert deliver(failed).status_code == 200
    assert deliver(intent_event(intent)).status_code == 200  # charged after all: credited
    told = [(e.type, e.data["status"], e.data["failure_reason"]) for e in OutboundEvent.objects.order_by("id")]
    assert told == [("auto_recharge.failed", "failed", "declined"), ("auto_recharge.succeeded", "succeeded", None)]
    assert OutboundEvent.objects.order_by("id").last().data["credits"] == "20.00"


def test_every_change_of_a_subscription_is_told(platform, member):
    listen(platform, "subscription.updated")
    pro = make_plan(platform, "pro")
    subscription = subscription_start(account_id=member.account.id, plan_id=pro.id, billing_cycle="monthly",
                                      provider="stripe", provider_subscription_id="sub_1")
    event = OutboundEvent.objects.get()
    assert (event.type, event.account_id) == ("subscription.updated", member.account.id)
    assert (event.data["subscription_id"], event.data["status"], event.data["plan"]) == (
        str(subscription.subscription.id), "active", "pro")
