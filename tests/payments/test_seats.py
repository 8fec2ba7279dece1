"""Seats bought through Stripe, over HTTP against a local fake of Stripe (``test_seats_support``): the seats
checkout, the webhooks of seats (signed as Stripe signs them), the seat subscriptions' listing, a quantity change,
and the refresh's edges. Against localstripe: ``test_seats_localstripe.py`` and ``test_seats_refresh.py``."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connections
from django.urls import resolve

from entitlements import selectors as seat_selectors
from entitlements.errors import NoSeatAvailable
from entitlements.models import SeatAssignment, SeatSubscription
from entitlements.services import seat_assign, seats_grant
from entitlements.sync import seat_subscription_sync
from payments.models import Order, OrderStatus, WebhookEvent
from subscriptions.models import Subscription
from tests.api_helpers import error_of, invalid_field, post_json
from tests.conftest import client_for, make_member, make_platform
from tests.payments.conftest import deliver
from tests.payments.stripe_subscriptions import subscription_event as credit_subscription_event
from tests.payments.test_seats_support import (  # noqa: F401 - stripe_seats is a fixture
    AI_SUBSCRIPTIONS_URL,
    DAY,
    REFRESH_URL,
    T0,
    buy_seats,
    invoice_paid,
    seat_plan,
    seat_rows,
    seats_metadata,
    session_completed,
    stripe_seats,
    subscription_event,
)
from tests.subscriptions.conftest import make_plan
from tests.waits import wait_for_lock_waiters

pytestmark = pytest.mark.django_db

PRICE = "price_seats_advanced"


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def seats_of(platform, plan):  # noqa: ANN001, ANN201
    return seat_selectors.seats_of(platform_id=platform.pk, ai_plan_id=plan.pk)


def stripe_subscription(platform, plan, subscription_id: str = "sub_seats_1", quantity: int = 3,  # noqa: ANN001
                        created: int = T0 + 10) -> SeatSubscription:
    """A Stripe seat subscription as its created event records it."""
    response = deliver(subscription_event("created", subscription_id, created=created, quantity=quantity,
                                          price_id=plan.stripe_price_id, metadata=seats_metadata(platform, plan)))
    assert response.status_code == 200 and response.json()["status"] == "processed", response.content
    return SeatSubscription.objects.get(provider_subscription_id=subscription_id)


def seat_members(platform, plan, *names: str) -> None:  # noqa: ANN001
    for name in names:
        make_member(platform, name)
        seat_assign(platform=platform, ai_plan=plan, username=name, actor=None)


# --- checkout -----------------------------------------------------------------------------------------------


def test_a_seats_checkout_opens_a_stripe_subscription_session_for_the_quantity(stripe_seats, platform, admin):
    plan = seat_plan()
    response = buy_seats(admin, str(plan.pk), 7)

    assert response.status_code == 201, response.content
    order = Order.objects.get(pk=response.json()["order_id"])
    assert response.json()["url"] == order.checkout_url and order.checkout_url.startswith("https://checkout.")
    assert (order.type, order.status, order.ai_plan_id, order.quantity, order.amount_usd, order.credits,
            order.billing_cycle, order.user_id) == ("seats", "pending", plan.pk, 7, Decimal("175.00"), 0, "monthly",
                                                    admin.user.pk)
    (call,) = stripe_seats.calls("/v1/checkout/sessions")
    form = call["form"]
    assert (form["mode"], form["line_items[0][price]"], form["line_items[0][quantity]"]) == (
        "subscription", PRICE, "7")
    meta = {"kind": "seats", "platform_id": str(platform.pk), "ai_plan_id": str(plan.pk), "order_id": str(order.pk)}
    for key, value in meta.items():
        assert form[f"metadata[{key}]"] == value
        assert form[f"subscription_data[metadata][{key}]"] == value
    assert form["client_reference_id"] == str(order.pk) and order.provider_checkout_id
    assert not SeatSubscription.objects.exists()  # the seats come with Stripe's webhooks


def test_a_seats_checkout_takes_the_plans_slug_and_bills_the_platforms_seat_customer(stripe_seats, platform, owner):
    plan = seat_plan()
    seats_grant(platform=platform, ai_plan=plan, quantity=1)  # a manual contract does not block a Stripe one
    other = seat_plan("strategic", price_id="price_seats_strategic")
    stripe_subscription(platform, other, "sub_other")  # seats of another plan, billed to cus_seats

    response = buy_seats(owner, "advanced", 2)

    assert response.status_code == 201, response.content
    form = stripe_seats.calls("/v1/checkout/sessions")[-1]["form"]
    assert form["customer"] == "cus_seats" and "customer_email" not in form


def invalid_seat_cases() -> list:
    return [
        ({"ai_plan_id": "nope"}, "ai_plan_id"),
        ({"ai_plan_id": "00000000-0000-4000-8000-000000000000"}, "ai_plan_id"),
        ({"ai_plan_id": "globex-only"}, "ai_plan_id"),  # offered to another platform only
        ({"ai_plan_id": "retired"}, "ai_plan_id"),  # inactive
        ({"ai_plan_id": "not-on-sale"}, "ai_plan_id"),
        ({"ai_plan_id": "no-price-id"}, "ai_plan_id"),
        ({"ai_plan_id": "free"}, "ai_plan_id"),  # no price per seat
        ({"ai_plan_id": None}, "ai_plan_id"),
        ({"ai_plan_id": ""}, "ai_plan_id"),
        ({"ai_plan_id": 7}, "ai_plan_id"),
        ({"quantity": 0}, "quantity"),
        ({"quantity": -1}, "quantity"),
        ({"quantity": 1.5}, "quantity"),
        ({"quantity": 2.0}, "quantity"),
        ({"quantity": "3"}, "quantity"),
        ({"quantity": "x"}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({"quantity": 10_001}, "quantity"),
        ({"quantity": 10**30}, "quantity"),
        ({"quantity": None}, "quantity"),
        ({"quantity": 10_000, "ai_plan_id": "priceless"}, "quantity"),  # beyond what an order may cost
        ({"seats": 3}, "seats"),  # an unknown field
        ({"amount": "25.00"}, "amount"),  # fields of another type of checkout
        ({"plan_id": "pro"}, "plan_id"),
        ({"billing_cycle": "monthly"}, "billing_cycle"),
        ({"save_payment_method": True}, "save_payment_method"),
        ({"success_url": "https://evil.test/x"}, "success_url"),
    ]


@pytest.mark.parametrize(("fields", "named"), invalid_seat_cases())
def test_a_bad_seats_checkout_is_a_4xx_naming_the_field_and_writes_nothing(
    stripe_seats, platform, other_platform, admin, fields, named
):
    seat_plan()
    seat_plan("globex-only", price_id="price_g", platforms=[other_platform])
    seat_plan("retired", price_id="price_r", is_active=False)
    seat_plan("not-on-sale", price_id="price_n", purchasable=False)
    seat_plan("no-price-id", price_id=None)
    seat_plan("free", price_id="price_f", cents=0)
    seat_plan("priceless", price_id="price_p", cents=2_000_000_000)
    make_plan(platform, "pro")
    before = seat_rows()

    response = buy_seats(admin, **{"ai_plan_id": "advanced", "quantity": 3} | fields)

    invalid_field(response, named)
    assert seat_rows() == before
    assert stripe_seats.requests == []


def test_a_plan_the_platform_holds_seats_on_but_that_left_its_offer_is_not_on_sale(stripe_seats, platform,
                                                                                     other_platform, admin):
    retired, withdrawn = seat_plan(), seat_plan("strategic", price_id="price_seats_strategic")
    for plan in (retired, withdrawn):
        seats_grant(platform=platform, ai_plan=plan, quantity=1)
    retired.is_active = False
    retired.save()
    withdrawn.platforms.set([other_platform])
    before = seat_rows()
    for plan in (retired, withdrawn):
        for ref in (str(plan.pk), plan.slug):
            invalid_field(buy_seats(admin, ref, 2), "ai_plan_id")
    assert seat_rows() == before and stripe_seats.requests == []


def test_seats_are_not_sold_through_creem(stripe_seats, platform, admin):
    seat_plan()
    before = seat_rows()
    error = error_of(buy_seats(admin, "advanced", 2, channel="creem"), 400, "checkout_type_not_available")
    assert "type" in error["details"] and seat_rows() == before


def test_a_member_who_is_not_an_admin_cannot_buy_seats(stripe_seats, platform, member):
    plan = seat_plan()
    before = seat_rows()
    for body in ({"ai_plan_id": str(plan.pk), "quantity": 3}, {"ai_plan_id": "nope", "quantity": 0}):
        error_of(buy_seats(member, **body), 403, "admin_required")
    assert seat_rows() == before and stripe_seats.requests == []


def test_a_second_seats_checkout_of_a_plan_with_current_stripe_seats_is_a_409(stripe_seats, platform, admin):
    plan = seat_plan()
    current = stripe_subscription(platform, plan)
    before = seat_rows()

    error = error_of(buy_seats(admin, str(plan.pk), 2), 409, "seat_subscription_exists")

    assert error["details"] == {"subscription_id": str(current.pk), "quantity": 3}
    assert seat_rows() == before and stripe_seats.calls("/v1/checkout/") == []


def test_stripe_refusing_the_session_fails_the_order(stripe_seats, platform, admin):
    plan = seat_plan()
    stripe_seats.fail_status = 500
    error_of(buy_seats(admin, str(plan.pk), 2), 502, "payment_provider_error")
    assert Order.objects.get().status == OrderStatus.FAILED and not SeatSubscription.objects.exists()


# --- webhooks -------------------------------------------------------------------------------------------------


def test_a_completed_seats_checkout_pays_the_order_and_records_its_seats(stripe_seats, platform, admin):
    plan = seat_plan()
    order = Order.objects.get(pk=buy_seats(admin, str(plan.pk), 4).json()["order_id"])

    response = deliver(session_completed(order, subscription_id="sub_bought", created=T0 + 20))

    assert response.status_code == 200 and response.json()["status"] == "processed", response.content
    order.refresh_from_db()
    assert (order.status, order.provider_subscription_id, order.provider_customer_id, order.amount_paid_usd) == (
        "paid", "sub_bought", "cus_seats", Decimal("100.00"))
    seats = SeatSubscription.objects.get()
    assert (seats.platform_id, seats.ai_plan_id, seats.quantity, seats.status, seats.provider,
            seats.provider_subscription_id, seats.synced_at) == (platform.pk, plan.pk, 4, "active", "stripe",
                                                                  "sub_bought", None)
    assert seats_of(platform, plan).total == 4

    # The subscription's own event, made a second before the completion and delivered after it, still applies
    # (the completion recorded the seats provisionally) and brings the billing dates.
    late = deliver(subscription_event("created", "sub_bought", created=T0 + 19, quantity=4, price_id=PRICE,
                                      metadata=seats_metadata(platform, plan, order_id=str(order.pk))))
    assert late.json()["status"] == "processed", late.content
    seats.refresh_from_db()
    assert (seats.quantity, seats.started_at, seats.next_billing_at, seats.synced_at) == (
        4, at(T0), at(T0 + 31 * DAY), at(T0 + 19))


def test_a_completion_after_the_subscriptions_events_changes_no_seats(stripe_seats, platform, admin):
    plan = seat_plan()
    order = Order.objects.get(pk=buy_seats(admin, str(plan.pk), 4).json()["order_id"])
    deliver(subscription_event("created", "sub_bought", created=T0 + 10, quantity=4, price_id=PRICE,
                               metadata=seats_metadata(platform, plan)))
    deliver(subscription_event("updated", "sub_bought", created=T0 + 30, quantity=6, price_id=PRICE,
                               metadata=seats_metadata(platform, plan)))

    response = deliver(session_completed(order, subscription_id="sub_bought", created=T0 + 20))

    assert response.json()["status"] == "processed"
    assert Order.objects.get().status == "paid"
    assert SeatSubscription.objects.get().quantity == 6


def test_an_unpaid_completion_waits_and_a_failed_payment_fails_the_order(stripe_seats, platform, admin):
    plan = seat_plan()
    order = Order.objects.get(pk=buy_seats(admin, str(plan.pk), 2).json()["order_id"])
    unpaid = deliver(session_completed(order, subscription_id="sub_x", payment_status="unpaid"))
    assert unpaid.json()["status"] == "processed" and Order.objects.get().status == "pending"
    failed = session_completed(order, subscription_id="sub_x") | {"type": "checkout.session.async_payment_failed"}
    assert deliver(failed).json()["status"] == "processed"
    assert Order.objects.get().status == "failed" and not SeatSubscription.objects.exists()


def test_a_seats_session_of_another_order_type_is_refused_and_flags_it(stripe_seats, platform, admin, member):
    plan = seat_plan()
    seats_order = Order.objects.get(pk=buy_seats(admin, str(plan.pk), 2).json()["order_id"])
    top_up = Order.objects.create(
        platform=platform, account=member.account, user=member.user, type="top_up", channel="stripe",
        amount_usd=Decimal("25.00"), credits=Decimal("25"), success_url="https://app.acme.test/billing",
        cancel_url="https://app.acme.test/billing", provider_checkout_id="cs_test_top_up",
    )
    forged = session_completed(seats_order, subscription_id="sub_x")
    forged["data"]["object"] |= {"client_reference_id": str(top_up.pk), "id": top_up.provider_checkout_id}
    forged["data"]["object"]["metadata"]["order_id"] = str(top_up.pk)

    response = deliver(forged)

    assert response.status_code == 200 and response.json()["status"] == "failed"
    top_up.refresh_from_db()
    assert top_up.needs_review and top_up.status == "pending" and not SeatSubscription.objects.exists()


def test_subscription_events_record_the_quantity_and_a_duplicate_changes_nothing(stripe_seats, platform):
    plan = seat_plan()
    created = subscription_event("created", "sub_1", created=T0 + 10, quantity=3, price_id=PRICE,
                                 metadata=seats_metadata(platform, plan))
    updated = subscription_event("updated", "sub_1", created=T0 + 20, quantity=5, price_id=PRICE,
                                 metadata=seats_metadata(platform, plan))
    assert deliver(created).json()["status"] == "processed"
    row = SeatSubscription.objects.get()
    assert (row.quantity, row.status, row.billing_cycle, row.started_at, row.next_billing_at, row.ends_at,
            row.provider_customer_id, row.synced_at) == (3, "active", "monthly", at(T0), at(T0 + 31 * DAY), None,
                                                         "cus_seats", at(T0 + 10))
    assert deliver(updated).json()["status"] == "processed"
    assert SeatSubscription.objects.get().quantity == 5

    before = seat_rows()
    for again in (created, updated):
        response = deliver(again)
        assert response.status_code == 200 and response.json()["duplicate"] is True
    assert seat_rows() == before


def test_an_older_event_delivered_late_changes_nothing(stripe_seats, platform):
    plan = seat_plan()
    metadata = seats_metadata(platform, plan)
    newer = subscription_event("updated", "sub_1", created=T0 + 30, quantity=8, price_id=PRICE, metadata=metadata)
    older = subscription_event("updated", "sub_1", created=T0 + 20, quantity=5, price_id=PRICE, metadata=metadata)
    oldest = subscription_event("created", "sub_1", created=T0 + 10, quantity=3, price_id=PRICE, metadata=metadata)

    statuses = [deliver(e).json()["status"] for e in (newer, older, oldest)]

    assert statuses == ["processed"] * 3
    row = SeatSubscription.objects.get()
    assert (row.quantity, row.synced_at) == (8, at(T0 + 30))
    notes = list(WebhookEvent.objects.order_by("id").values_list("last_error", flat=True))
    assert notes[1:] == ["an older state than the one recorded: nothing changed"] * 2


def test_a_quantity_lowered_below_the_assignments_keeps_them_and_reports_over_assigned(stripe_seats, platform):
    plan = seat_plan()
    stripe_subscription(platform, plan, quantity=3)
    seat_members(platform, plan, "ann", "bob", "cid")
    make_member(platform, "dee")

    response = deliver(subscription_event("updated", "sub_seats_1", created=T0 + 20, quantity=1, price_id=PRICE,
                                          metadata=seats_metadata(platform, plan)))

    assert response.json()["status"] == "processed"
    assert WebhookEvent.objects.get(event_id=response.json()["event_id"]).last_error == (
        "1 seats: the plan is over-assigned by 2 (assignments kept, new ones refused)")
    assert SeatAssignment.objects.count() == 3
    assert (seats_of(platform, plan).total, seats_of(platform, plan).over_assigned) == (1, 2)
    with pytest.raises(NoSeatAvailable):
        seat_assign(platform=platform, ai_plan=plan, username="dee", actor=None)


def test_a_deleted_subscription_is_canceled_and_the_plans_last_seats_free_the_assignments(stripe_seats, platform):
    plan = seat_plan()
    stripe_subscription(platform, plan, quantity=2)
    seat_members(platform, plan, "ann", "bob")

    deleted = subscription_event("deleted", "sub_seats_1", created=T0 + 50, quantity=2, price_id=PRICE,
                                 status="canceled", canceled_at=T0 + 40, ended_at=T0 + 45,
                                 metadata=seats_metadata(platform, plan))
    assert deliver(deleted).json()["status"] == "processed"

    row = SeatSubscription.objects.get()
    assert (row.status, row.ends_at, row.next_billing_at, row.quantity) == ("canceled", at(T0 + 45), None, 2)
    assert not SeatAssignment.objects.exists() and seats_of(platform, plan).total == 0
    # An update made before the deletion and delivered after it does not bring the seats back.
    late = subscription_event("updated", "sub_seats_1", created=T0 + 30, quantity=4, price_id=PRICE,
                              metadata=seats_metadata(platform, plan))
    assert deliver(late).json()["status"] == "processed"
    assert SeatSubscription.objects.get().status == "canceled" and seats_of(platform, plan).total == 0


def test_a_subscription_set_to_end_has_an_end_and_no_next_billing(stripe_seats, platform):
    plan = seat_plan()
    deliver(subscription_event("updated", "sub_1", created=T0 + 20, quantity=2, price_id=PRICE,
                               cancel_at_period_end=True, metadata=seats_metadata(platform, plan)))
    row = SeatSubscription.objects.get()
    assert (row.status, row.ends_at, row.next_billing_at) == ("active", at(T0 + 31 * DAY), None)


@pytest.mark.parametrize(("stripe_status", "recorded"), [
    ("trialing", "active"), ("past_due", "past_due"), ("unpaid", "past_due"), ("canceled", "canceled"),
    ("incomplete_expired", "expired"), ("incomplete", None),
])
def test_stripe_statuses_map_to_seat_statuses(stripe_seats, platform, stripe_status, recorded):
    plan = seat_plan()
    response = deliver(subscription_event("updated", "sub_1", created=T0 + 20, quantity=2, price_id=PRICE,
                                          status=stripe_status, metadata=seats_metadata(platform, plan)))
    assert response.json()["status"] == "processed"
    found = SeatSubscription.objects.filter(provider_subscription_id="sub_1").values_list("status", flat=True)
    assert list(found) == ([recorded] if recorded else [])


def test_a_subscription_moved_to_another_plans_price_moves_its_seats(stripe_seats, platform):
    plan, bigger = seat_plan(), seat_plan("strategic", price_id="price_seats_strategic")
    stripe_subscription(platform, plan, quantity=2)
    deliver(subscription_event("updated", "sub_seats_1", created=T0 + 20, quantity=2,
                               price_id="price_seats_strategic", metadata=seats_metadata(platform, plan)))
    assert SeatSubscription.objects.get().ai_plan_id == bigger.pk
    assert (seats_of(platform, plan).total, seats_of(platform, bigger).total) == (0, 2)


def test_seats_events_naming_nothing_of_ours_are_ignored(stripe_seats, platform):
    plan = seat_plan()
    for metadata in ({"kind": "seats"}, {"kind": "seats", "platform_id": "999999", "ai_plan_id": str(plan.pk)},
                     {"kind": "seats", "platform_id": str(platform.pk), "ai_plan_id": "nope"}):
        response = deliver(subscription_event("created", "sub_1", created=T0 + 10, quantity=2,
                                              price_id="price_unknown", metadata=metadata))
        assert response.json()["status"] == "ignored", response.content
    assert not SeatSubscription.objects.exists()


def test_an_event_naming_another_platforms_subscription_is_refused(stripe_seats, platform, other_platform):
    plan = seat_plan()
    stripe_subscription(platform, plan, quantity=2)
    before = list(SeatSubscription.objects.values())
    response = deliver(subscription_event("updated", "sub_seats_1", created=T0 + 20, quantity=9, price_id=PRICE,
                                          metadata=seats_metadata(other_platform, plan)))
    assert response.status_code == 200 and response.json()["status"] == "failed"
    assert list(SeatSubscription.objects.values()) == before


def test_a_seats_invoice_is_ignored_and_credit_plan_subscriptions_still_work(stripe_seats, platform, member):
    plan = seat_plan()
    stripe_subscription(platform, plan, quantity=2)
    invoice = invoice_paid("sub_seats_1", metadata=seats_metadata(platform, plan), price_id=PRICE, quantity=2)
    assert deliver(invoice).json()["status"] == "ignored"

    # A credit plan's subscription (no kind in its metadata) goes to its own handler, as before.
    pro = make_plan(platform, "pro", stripe_price_monthly="price_pro_monthly")
    credit = credit_subscription_event("created", subscription_id="sub_credit", price_id="price_pro_monthly",
                                       metadata={"account_id": str(member.account.id)})
    assert deliver(credit).json()["status"] == "processed"
    assert Subscription.objects.get(provider_subscription_id="sub_credit").plan_id == pro.pk
    assert SeatSubscription.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_assignments_racing_a_webhook_that_lowers_the_quantity_never_exceed_the_seats_of_their_moment(
    stripe_seats, platform
):
    """Six members race for seats while Stripe's event drops the quantity from 4 to 1: every assignment is made
    against the quantity in force at its moment (4 before the event, 1 after), never more."""
    from django.db import transaction

    from entitlements.locks import plan_seats_lock

    plan = seat_plan()
    stripe_subscription(platform, plan, quantity=4)
    names = [f"racer{i}" for i in range(6)]
    for name in names:
        make_member(platform, name)
    outcomes: list[str] = []
    held, release = threading.Event(), threading.Event()
    lowered = subscription_event("updated", "sub_seats_1", created=T0 + 20, quantity=1, price_id=PRICE,
                                 metadata=seats_metadata(platform, plan))

    def hold() -> None:
        try:
            with transaction.atomic():
                plan_seats_lock(platform_id=platform.pk, ai_plan_id=plan.pk)
                held.set()
                release.wait(30)
        finally:
            connections.close_all()

    def claim(name: str) -> None:
        try:
            seat_assign(platform=platform, ai_plan=plan, username=name, actor=None)
            outcomes.append("seated")
        except NoSeatAvailable:
            outcomes.append("refused")
        finally:
            connections.close_all()

    def webhook() -> None:
        try:
            outcomes.append(deliver(lowered).json()["status"])
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(30)
    racers = [threading.Thread(target=claim, args=(name,)) for name in names[:3]]
    racers += [threading.Thread(target=webhook)]
    racers += [threading.Thread(target=claim, args=(name,)) for name in names[3:]]
    for thread in racers:
        thread.start()
    wait_for_lock_waiters(len(racers))  # all of them wait for the plan's seats lock: they do race
    release.set()
    for thread in [holder, *racers]:
        thread.join(60)

    assert "processed" in outcomes and len(outcomes) == 7
    lowered_at = SeatSubscription.objects.get().updated_at
    made = list(SeatAssignment.objects.order_by("assigned_at").values_list("assigned_at", flat=True))
    for before, assigned_at in enumerate(made):
        assert before < (4 if assigned_at < lowered_at else 1), (before, assigned_at, lowered_at)
    assert len(made) == outcomes.count("seated") <= 4
    assert SeatSubscription.objects.get().quantity == 1


# --- GET /ai-subscriptions/ -------------------------------------------------------------------------------------


def test_the_listing_shows_the_platforms_seat_subscriptions_with_prices(stripe_seats, platform, other_platform,
                                                                         admin):
    plan = seat_plan()
    yearly = seat_plan("strategic", price_id="price_seats_strategic", cents=9900, billing_cycle="yearly")
    stripe = stripe_subscription(platform, plan, quantity=3)
    manual, _ = seats_grant(platform=platform, ai_plan=yearly, quantity=2)
    seats_grant(platform=other_platform, ai_plan=plan, quantity=9)  # another platform's: not listed

    body = client_for(admin).get(AI_SUBSCRIPTIONS_URL).json()

    assert body["count"] == 2 and body["next"] is None and body["previous"] is None
    by_id = {row["id"]: row for row in body["results"]}
    assert by_id[str(stripe.pk)] == {
        "id": str(stripe.pk), "tenant_id": "acme", "plan_id": str(plan.pk), "plan_slug": "advanced",
        "billing_cycle": "monthly", "status": "active", "quantity": 3, "start_date": "2026-01-01T00:00:00Z",
        "end_date": None, "next_billing_date": "2026-02-01T00:00:00Z", "price_per_seat": "25.00",
        "total_amount": "75.00", "currency": "USD", "provider": "stripe", "synced_at": "2026-01-01T00:00:10Z",
    }
    assert (by_id[str(manual.pk)]["provider"], by_id[str(manual.pk)]["price_per_seat"],
            by_id[str(manual.pk)]["total_amount"], by_id[str(manual.pk)]["billing_cycle"]) == (
        "manual", "99.00", "198.00", "yearly")
    assert [row["id"] for row in body["results"]] == [str(manual.pk), str(stripe.pk)]  # newest first


def test_the_listing_filters_by_plan_cycle_and_status_and_pages(stripe_seats, platform, owner):
    plan = seat_plan()
    yearly = seat_plan("strategic", price_id="price_seats_strategic", billing_cycle="yearly")
    stripe_subscription(platform, plan, "sub_a")
    stripe_subscription(platform, plan, "sub_b")
    deliver(subscription_event("deleted", "sub_b", created=T0 + 60, quantity=3, price_id=PRICE, status="canceled",
                               metadata=seats_metadata(platform, plan)))
    seats_grant(platform=platform, ai_plan=yearly, quantity=2)
    client = client_for(owner)

    def ids(**query: str) -> list[str]:
        response = client.get(AI_SUBSCRIPTIONS_URL, query)
        assert response.status_code == 200, response.content
        return sorted(row["plan_slug"] + ":" + row["status"] for row in response.json()["results"])

    assert ids(plan_slug="advanced") == ["advanced:active", "advanced:canceled"]
    assert ids(billing_cycle="yearly") == ["strategic:active"]
    assert ids(status="canceled") == ["advanced:canceled"]
    assert ids(plan_slug="advanced", status="active") == ["advanced:active"]
    assert ids(plan_slug="nope") == []
    page = client.get(AI_SUBSCRIPTIONS_URL, {"page_size": 2}).json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]


@pytest.mark.parametrize("query", [{"status": "trialing"}, {"billing_cycle": "weekly"}, {"plan": "advanced"},
                                   {"page_size": "101"}, {"status": ""}])
def test_a_bad_filter_is_a_400(stripe_seats, platform, admin, query):
    response = client_for(admin).get(AI_SUBSCRIPTIONS_URL, query)
    if query == {"status": ""}:  # an empty parameter is a parameter not given
        assert response.status_code == 200
    else:
        invalid_field(response, next(iter(query)))


def test_members_cannot_see_or_change_the_seat_subscriptions(stripe_seats, platform, member):
    plan = seat_plan()
    row = stripe_subscription(platform, plan)
    client = client_for(member)
    error_of(client.get(AI_SUBSCRIPTIONS_URL), 403, "admin_required")
    error_of(client.get(f"{AI_SUBSCRIPTIONS_URL}{row.pk}/"), 403, "admin_required")
    error_of(client.patch(f"{AI_SUBSCRIPTIONS_URL}{row.pk}/", {"quantity": 5}, format="json"), 403, "admin_required")
    error_of(post_json(client, REFRESH_URL, {}), 403, "admin_required")
    assert stripe_seats.calls("/v1/subscriptions") == []


def test_one_subscription_is_read_by_its_id_and_another_platforms_is_a_404(stripe_seats, platform, other_platform,
                                                                            admin):
    plan = seat_plan()
    row = stripe_subscription(platform, plan)
    theirs, _ = seats_grant(platform=other_platform, ai_plan=plan, quantity=1)
    client = client_for(admin)
    assert client.get(f"{AI_SUBSCRIPTIONS_URL}{row.pk}/").json()["quantity"] == 3
    for other in (theirs.pk, "not-a-uuid"):
        error_of(client.get(f"{AI_SUBSCRIPTIONS_URL}{other}/"), 404, "seat_subscription_not_found")


# --- PATCH /ai-subscriptions/{id}/ ----------------------------------------------------------------------------


def test_a_quantity_change_asks_stripe_and_changes_nothing_until_its_event(stripe_seats, platform, admin):
    plan = seat_plan()
    row = stripe_subscription(platform, plan, quantity=3)
    stripe_seats.subscription("sub_seats_1", quantity=3, price_id=PRICE, metadata=seats_metadata(platform, plan))
    before = seat_rows()

    response = client_for(admin).patch(f"{AI_SUBSCRIPTIONS_URL}{row.pk}/", {"quantity": 5}, format="json")

    assert response.status_code == 202, response.content
    assert response.json()["requested_quantity"] == 5
    assert response.json()["subscription"]["quantity"] == 3 and response.json()["subscription"]["id"] == str(row.pk)
    update = stripe_seats.calls("/v1/subscriptions/sub_seats_1")[-1]
    assert update["method"] == "POST" and update["form"] == {
        "items[0][id]": "si_sub_seats_1", "items[0][quantity]": "5", "proration_behavior": "create_prorations"}
    assert seat_rows() == before

    event = subscription_event("updated", "sub_seats_1", created=T0 + 20, quantity=5, price_id=PRICE,
                               metadata=seats_metadata(platform, plan))
    assert deliver(event).json()["status"] == "processed"
    assert SeatSubscription.objects.get().quantity == 5


@pytest.mark.parametrize("body", [
    {"quantity": 0}, {"quantity": -1}, {"quantity": 1.5}, {"quantity": "x"}, {"quantity": "4"}, {"quantity": True},
    {"quantity": 10_001}, {"quantity": 10**30}, {"quantity": None}, {}, {"quantity": 4, "proration": "none"},
])
def test_a_bad_quantity_change_is_a_400_and_calls_nothing(stripe_seats, platform, admin, body):
    plan = seat_plan()
    row = stripe_subscription(platform, plan)
    stripe_seats.subscription("sub_seats_1", quantity=3, price_id=PRICE, metadata=seats_metadata(platform, plan))
    before = seat_rows()
    response = client_for(admin).patch(f"{AI_SUBSCRIPTIONS_URL}{row.pk}/", body, format="json")
    error = error_of(response, 400)
    assert set(error["details"]) == (set(body) - {"quantity"} or {"quantity"})
    assert seat_rows() == before and stripe_seats.calls("/v1/subscriptions") == []


def test_a_manual_or_ended_subscription_or_another_platforms_is_refused_before_stripe(stripe_seats, platform,
                                                                                       other_platform, admin):
    plan = seat_plan()
    manual, _ = seats_grant(platform=platform, ai_plan=plan, quantity=2)
    ended = stripe_subscription(platform, plan, "sub_ended")
    deliver(subscription_event("deleted", "sub_ended", created=T0 + 60, quantity=3, price_id=PRICE,
                               status="canceled", metadata=seats_metadata(platform, plan)))
    theirs = seat_subscription_sync(
        platform=other_platform, ai_plan=plan, provider="stripe", provider_subscription_id="sub_theirs",
        provider_customer_id="cus_g", quantity=2, status="active", billing_cycle="monthly", started_at=at(T0),
        ends_at=None, next_billing_at=None)[0]
    client = client_for(admin)

    def patch(row_id: object):  # noqa: ANN202
        return client.patch(f"{AI_SUBSCRIPTIONS_URL}{row_id}/", {"quantity": 4}, format="json")

    error_of(patch(manual.pk), 409, "seat_subscription_manual")
    error_of(patch(ended.pk), 409, "seat_subscription_ended")
    error_of(patch(theirs.pk), 404, "seat_subscription_not_found")
    error_of(patch("nope"), 404)
    assert stripe_seats.calls("/v1/subscriptions") == []
    assert SeatSubscription.objects.get(pk=manual.pk).quantity == 2


def test_stripe_failing_the_change_is_a_502_and_changes_nothing(stripe_seats, platform, admin):
    plan = seat_plan()
    row = stripe_subscription(platform, plan)
    before = seat_rows()
    # Stripe no longer has it.
    error_of(client_for(admin).patch(f"{AI_SUBSCRIPTIONS_URL}{row.pk}/", {"quantity": 4}, format="json"), 502,
             "payment_provider_error")
    stripe_seats.fail_status = 500
    error_of(client_for(admin).patch(f"{AI_SUBSCRIPTIONS_URL}{row.pk}/", {"quantity": 4}, format="json"), 502,
             "payment_provider_error")
    assert seat_rows() == before


# --- POST /entitlements/refresh/ ------------------------------------------------------------------------------


def test_the_refresh_url_is_its_own_route_before_any_entitlements_route():
    from payments.api.seat_views import EntitlementsRefreshViewSet

    match = resolve(REFRESH_URL)
    assert match.url_name == "billing-entitlements-refresh"
    assert match.func.cls is EntitlementsRefreshViewSet


def test_a_platform_that_never_bought_seats_through_stripe_is_refreshed_without_calling_it(settings, platform,
                                                                                          admin):
    settings.STRIPE_SECRET_KEY = ""  # not even configured: nothing to read
    seats_grant(platform=platform, ai_plan=seat_plan(), quantity=2)
    response = post_json(client_for(admin), REFRESH_URL, {})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["refreshed"], body["plans_updated"], body["seats_updated"]) == (True, 0, 0)
    assert body["timestamp"].endswith("Z")


def test_the_refresh_reads_the_platforms_subscriptions_and_refuses_a_body_field(stripe_seats, platform, admin):
    plan = seat_plan()
    stripe_subscription(platform, plan, quantity=3)
    stripe_seats.subscription("sub_seats_1", quantity=6, price_id=PRICE, metadata=seats_metadata(platform, plan))
    invalid_field(post_json(client_for(admin), REFRESH_URL, {"force": True}), "force")
    assert stripe_seats.requests == []

    body = post_json(client_for(admin), REFRESH_URL, {}).json()

    assert (body["plans_updated"], body["seats_updated"]) == (1, 1)
    assert SeatSubscription.objects.get().quantity == 6
    (listing,) = stripe_seats.calls("/v1/subscriptions")
    assert listing["query"] == {"customer": "cus_seats", "status": "all", "limit": "100"}


def test_the_refresh_is_scheduled_every_15_minutes(settings):
    entries = [e for e in settings.CELERY_BEAT_SCHEDULE.values()
               if e["task"] == "payments.tasks.seat_subscriptions_refresh"]
    assert entries == [{"task": "payments.tasks.seat_subscriptions_refresh", "schedule": 900.0}]


def test_a_seats_checkout_of_another_platform_is_not_this_ones(stripe_seats, platform, admin):
    """The plan offered to another platform only is not on sale here, even by its id."""
    globex = make_platform("globex2")
    plan = seat_plan(platforms=[globex])
    invalid_field(buy_seats(admin, str(plan.pk), 2), "ai_plan_id")
