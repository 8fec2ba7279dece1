"""A member's money, end to end over HTTP: a Stripe top-up, usage and a reservation spent by the platform's
backend, the member's ledger with its running balance, a refund taking credits back, and redelivered webhooks
changing nothing. Every step is a public request or a signed webhook; every check reads an answer of the API."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.e2e.conftest import (
    APP_ORIGIN,
    StripeCheckout,
    add_member,
    create_platform,
    deliver,
    get,
    post,
)

pytestmark = pytest.mark.django_db(transaction=True)  # every request commits, as in production

ACCOUNT = "/api/billing/account/"
TRANSACTIONS = "/api/billing/transactions/"
ORDERS = "/api/billing/orders/"
CHECKOUT = "/api/billing/checkout/"
USAGE = "/api/billing/usage/"
RESERVATIONS = "/api/billing/reservations/"


class World:
    """A platform ``e2e`` with its backend (an admin's token) and one member, Mona, who bought 40.00 credits."""

    def __init__(self, stripe_checkout: StripeCheckout) -> None:
        self.stripe = stripe_checkout
        create_platform("e2e", "End to End AI")
        self.backend = add_member("e2e", "platform-backend", "admin")
        self.mona = add_member("e2e", "mona", "member")

    def account(self) -> dict[str, Any]:
        return get(self.mona, ACCOUNT)

    def ledger(self) -> list[dict[str, Any]]:
        body = get(self.mona, TRANSACTIONS, page_size=100)
        assert body["count"] == len(body["results"]) and body["next"] is None
        return body["results"]

    def order(self, order_id: str) -> dict[str, Any]:
        return get(self.mona, f"{ORDERS}{order_id}/")

    def everything(self) -> tuple:
        """What Mona can see of her money: account, ledger, orders."""
        return self.account(), self.ledger(), get(self.mona, ORDERS)


def top_up(world: World, amount: str) -> tuple[str, dict[str, Any]]:
    """Mona buys ``amount`` credits through Stripe Checkout; returns the order id and the event Stripe sent."""
    started = post(world.mona, CHECKOUT, {
        "channel": "stripe", "type": "top_up", "amount": amount,
        "success_url": f"{APP_ORIGIN}/billing?paid=1", "cancel_url": f"{APP_ORIGIN}/billing",
    }, 201)
    order_id, page = started["order_id"], started["url"]
    session = world.stripe.session_at(page)
    assert (session["amount_total"], session["currency"]) == (int(Decimal(amount) * 100), "usd")
    assert session["client_reference_id"] == session["metadata"]["order_id"] == order_id
    pending = world.order(order_id)
    assert (pending["status"], pending["amount_usd"], pending["checkout_url"]) == ("pending", amount, page)
    assert world.account()["available_credits"] == "0.00"  # nothing before Stripe says it was paid

    paid = world.stripe.pay(page)
    response = deliver(paid)
    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["duplicate"]) == ("processed", False)
    order = world.order(order_id)
    assert (order["status"], order["amount_paid_usd"]) == ("paid", amount)
    assert order["provider_payment_id"] == paid["data"]["object"]["payment_intent"]
    return order_id, paid


def assert_running_balance(rows: list[dict[str, Any]]) -> None:
    """Newest first, sequences 1..n with no gap, each row's balance the one before it plus its change."""
    oldest_first = list(reversed(rows))
    assert [r["sequence"] for r in oldest_first] == list(range(1, len(rows) + 1))
    balance = Decimal(0)
    for row in oldest_first:
        balance += Decimal(row["balance_change"])
        assert Decimal(row["credits_balance_after"]) == balance, row


@pytest.fixture
def world(stripe_checkout) -> World:  # noqa: ANN001
    return World(stripe_checkout)


def test_a_member_tops_up_the_backend_spends_and_the_ledger_shows_the_running_balance(world):
    fresh = world.account()
    assert (fresh["available_credits"], fresh["has_credits"]) == ("0.00", False)
    assert world.ledger() == []

    order_id, _ = top_up(world, "40.00")
    account = world.account()
    assert (account["available_credits"], account["has_credits"]) == ("40.00", True)
    account_id = account["account_id"]

    # The platform's backend records one AI call.
    used = post(world.backend, USAGE, {
        "account_id": account_id, "request_id": "call-1", "endpoint": "/v1/chat", "model": "gpt-e2e",
        "input_tokens": 1200, "output_tokens": 300, "amount": "1.25",
    }, 201)
    assert (used["transaction"]["transaction_type"], used["transaction"]["credits_amount"]) == ("subtract", "1.25")
    assert used["available_credits"] == "38.75"

    # Then holds 10 credits before a longer call, and captures its real cost.
    hold = post(world.backend, RESERVATIONS, {"account_id": account_id, "amount": "10", "request_id": "call-2"}, 201)
    assert (hold["status"], hold["available_credits"]) == ("active", "28.75")
    assert world.account()["available_credits"] == "28.75"
    captured = post(world.backend, f"{RESERVATIONS}{hold['id']}/capture/",
                    {"amount": "3.5", "endpoint": "/v1/chat", "model": "gpt-e2e"}, 200)
    assert (captured["status"], captured["captured_amount"], captured["available_credits"]) == (
        "captured", "3.50", "35.25"
    )

    # Mona sees every row, newest first, with its running balance.
    rows = world.ledger()
    assert [(r["transaction_type"], r["credits_amount"], r["credits_balance_after"], r["reserved_after"])
            for r in rows] == [
        ("release", "6.50", "35.25", "0.00"),
        ("subtract", "3.50", "35.25", "6.50"),
        ("reserve", "10.00", "38.75", "10.00"),
        ("subtract", "1.25", "38.75", "0.00"),
        ("add", "40.00", "40.00", "0.00"),
    ]
    assert_running_balance(rows)
    top_up_row = rows[-1]
    assert top_up_row["id"] == world.order(order_id)["transaction_id"]
    assert top_up_row["payment_amount_usd"] == "40.00"
    assert rows[1]["id"] == captured["transactions"][0]["id"] and rows[0]["id"] == captured["transactions"][1]["id"]
    assert rows[3]["id"] == used["transaction"]["id"]
    assert rows[0]["hold_id"] == rows[1]["hold_id"] == rows[2]["hold_id"] == hold["id"]
    account = world.account()
    assert (account["available_credits"], account["has_credits"]) == ("35.25", True)


def test_a_refund_webhook_takes_the_credits_back(world):
    order_id, _ = top_up(world, "40.00")
    account_id = world.account()["account_id"]
    post(world.backend, USAGE, {"account_id": account_id, "request_id": "call-1", "endpoint": "/v1/chat",
                                "amount": "1.25"}, 201)

    # Stripe refunds 10.00 of the 40.00 charge: 10 credits leave.
    response = deliver(world.stripe.refund(world.stripe.page_of(order_id), 1000))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "processed"
    order = world.order(order_id)
    assert (order["status"], order["amount_refunded_usd"], order["credits_reversed"]) == (
        "partially_refunded", "10.00", "10.00"
    )
    assert order["refunded_at"] is not None
    assert world.account()["available_credits"] == "28.75"
    rows = world.ledger()
    assert (rows[0]["transaction_type"], rows[0]["balance_change"], rows[0]["credits_balance_after"]) == (
        "refund", "-10.00", "28.75"
    )
    assert_running_balance(rows)

    # Then the rest of it: what is left of the 40 (28.75) leaves; what was spent cannot, and the order says so.
    response = deliver(world.stripe.refund(world.stripe.page_of(order_id), 4000))
    assert response.status_code == 200, response.content
    order = world.order(order_id)
    assert (order["status"], order["amount_refunded_usd"], order["credits_reversed"],
            order["refund_shortfall_credits"]) == ("refunded", "40.00", "38.75", "1.25")
    account = world.account()
    assert (account["available_credits"], account["has_credits"]) == ("0.00", False)
    rows = world.ledger()
    assert [(r["transaction_type"], r["balance_change"]) for r in rows[:2]] == [
        ("refund", "-28.75"), ("refund", "-10.00")
    ]
    assert_running_balance(rows)


def test_redelivered_webhooks_change_nothing(world):
    order_id, paid = top_up(world, "40.00")
    refunded = world.stripe.refund(world.stripe.page_of(order_id), 1000)
    assert deliver(refunded).status_code == 200
    before = world.everything()
    assert before[0]["available_credits"] == "30.00"
    assert len(before[1]) == 2

    # Stripe delivers each event again (at least once, re-signed): answered 200, marked a duplicate, no change.
    for event in (paid, refunded, paid):
        response = deliver(event)
        assert response.status_code == 200, response.content
        assert (response.json()["event_id"], response.json()["duplicate"]) == (event["id"], True)
        assert world.everything() == before

    # The same payment told again under a new event id is a new event, but credits nothing (one add per order):
    # the money is as it was (the order's ``updated_at`` may move: the event was processed).
    again = {**paid, "id": paid["id"] + "_again"}
    response = deliver(again)
    assert response.status_code == 200, response.content
    assert response.json()["duplicate"] is False
    assert money(world.everything()) == money(before)


def money(seen: tuple) -> tuple:
    """``World.everything()`` less the orders' ``updated_at``."""
    account, ledger, orders = seen
    return account, ledger, [{k: v for k, v in o.items() if k != "updated_at"} for o in orders["results"]]
