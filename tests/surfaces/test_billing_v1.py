"""billing-service-api.txt under /api/v1/: every documented request and each field of each documented response
with its type, the {success, data} envelope, the integer credit unit, and agreement with the native API."""

from __future__ import annotations

import importlib
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.test.utils import CaptureQueriesContext
from django.db import connection
from django.urls import clear_url_caches

from credits.models import LedgerEntry
from credits.services import credits_adjust, credits_debit, credits_grant, credits_refund, hold_create
from payments.models import Coupon, Order
from subscriptions.models import Plan
from tests.api_helpers import db_snapshot, full_state, post_json
from tests.conftest import client_for, make_member
from tests.payments import creem_support
from tests.payments import stripe_subscriptions
from tests.payments.conftest import CANCEL_URL, SUCCESS_URL, fake_stripe, session_event, signature_header
from tests.subscriptions.conftest import make_plan, start

stripe_billing = stripe_subscriptions.stripe_billing  # the fake Stripe: subscription sessions, Billing Portal
_ = fake_stripe  # the fake Stripe: top-up sessions

pytestmark = pytest.mark.django_db

V1 = "/api/v1"
ISO_Z = "%Y-%m-%dT%H:%M:%S"


def ok(response, status: int = 200) -> Any:  # noqa: ANN001
    """The ``data`` of a success envelope."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert body["success"] is True, body
    assert set(body) <= {"success", "data", "pagination"}, body
    return body["data"]


def failed(response, status: int, code: str | None = None) -> dict[str, Any]:  # noqa: ANN001
    """The ``error`` of a failure envelope: {"success": false, "error": {"code", "message", ...}}."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert set(body) == {"success", "error"} and body["success"] is False, body
    error = body["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


def is_instant(value: Any) -> bool:
    return isinstance(value, str) and datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None


def native(client, url: str, **params: Any) -> Any:  # noqa: ANN001
    response = client.get(url, params)
    assert response.status_code == 200, response.content[:300]
    return response.json()


# --- credits ---------------------------------------------------------------------------------------------


def test_balance_is_the_documented_shape_in_integer_credits(member):
    data = ok(client_for(member).get(f"{V1}/credits/balance"))

    # The fixture's 100.00 credits, at 0.01 per credit of that API.
    assert data["balance"] == 10000 and type(data["balance"]) is int
    assert data == {"balance": 10000, "available": 10000, "reserved": 0}


def test_balance_agrees_with_the_native_account_including_holds(member):
    hold_create(account_id=member.account.id, amount=Decimal("12.34"))
    client = client_for(member)
    account = native(client, "/api/billing/account/")

    data = ok(client.get(f"{V1}/credits/balance"))

    assert Decimal(str(data["balance"])) == Decimal(account["balance"]) * 100
    assert Decimal(str(data["available"])) == Decimal(account["available_credits"]) * 100
    assert data["reserved"] == 1234


def test_a_fraction_of_a_credit_unit_is_shown_not_truncated(member):
    credits_grant(account_id=member.account.id, amount=Decimal("0.005"), description="half a unit")

    response = client_for(member).get(f"{V1}/credits/balance")

    assert b'"balance":10000.5' in response.content  # exact JSON number text
    assert ok(response)["balance"] == 10000.5


def test_the_credit_unit_is_configurable(member, settings):
    settings.BILLING_V1_CREDIT_UNIT = Decimal("1")

    assert ok(client_for(member).get(f"{V1}/credits/balance"))["balance"] == 100


def build_ledger(member) -> None:  # noqa: ANN001
    """One row of each kind the document names, on top of the fixture's grant."""
    account_id = member.account.id
    spent = credits_debit(account_id=account_id, amount=Decimal("0.50"), description="AI chat completion (gpt-4)")
    credits_grant(account_id=account_id, amount=Decimal("20"), payment_amount_usd=Decimal("20"),
                  description="Top-up via stripe", reference="order:1")
    credits_grant(account_id=account_id, amount=Decimal("100"), description="Pro plan credits",
                  reference="subscription:1", metadata={"subscription_id": "1", "plan": "pro"})
    credits_refund(account_id=account_id, amount=Decimal("0.50"), refund_of_id=spent.entry.id, description="refund")
    credits_adjust(account_id=account_id, amount=Decimal("-1.25"), description="correction", actor=None)


def test_transactions_have_the_documented_fields_and_types(member):
    build_ledger(member)

    rows = ok(client_for(member).get(f"{V1}/credits/transactions", {"limit": 20, "offset": 0}))

    assert len(rows) == 6
    for row in rows:
        assert {"id", "type", "amount", "description", "created_at"} <= set(row)
        assert isinstance(row["id"], str) and isinstance(row["type"], str)
        assert isinstance(row["amount"], int) and isinstance(row["description"], str)
        assert is_instant(row["created_at"])
    assert [(row["type"], row["amount"]) for row in rows] == [
        ("adjustment", -125), ("refund", 50), ("subscription", 10000), ("purchase", 2000), ("ai_usage", -50),
        ("purchase", 10000),
    ]
    assert rows[-1]["description"] == "test funds"


def test_transactions_agree_with_the_native_ledger(member):
    build_ledger(member)
    client = client_for(member)
    native_rows = native(client, "/api/billing/transactions/")["results"]

    rows = ok(client.get(f"{V1}/credits/transactions"))

    assert [row["id"] for row in rows] == [row["id"] for row in native_rows]
    for row, theirs in zip(rows, native_rows, strict=True):
        assert Decimal(str(row["amount"])) == Decimal(theirs["balance_change"]) * 100
        assert Decimal(str(row["balance_after"])) == Decimal(theirs["credits_balance_after"]) * 100
        assert (row["description"], row["created_at"]) == (theirs["description"], theirs["created_at"])


def test_the_check_in_and_hold_rows_have_their_own_types(member, platform):
    from credits.services.checkin import checkin, checkin_config_set

    checkin_config_set(platform=platform, actor=None, enabled=True, credits_per_day=Decimal("1"),
                       streak_bonuses={}, monthly_cap=None, time_zone="UTC")
    checkin(platform=platform, user=member.user, actor=member.user)
    hold_create(account_id=member.account.id, amount=Decimal("3"))

    rows = ok(client_for(member).get(f"{V1}/credits/transactions"))

    assert [(row["type"], row["amount"]) for row in rows[:2]] == [("reserve", 0), ("checkin", 100)]


def test_limit_defaults_to_20_and_any_offset_works(member):
    for n in range(29):
        credits_debit(account_id=member.account.id, amount=Decimal("0.01"), description=f"call {n}")
    client = client_for(member)
    every = native(client, "/api/billing/transactions/", page_size=100)["results"]

    first = client.get(f"{V1}/credits/transactions").json()
    middle = client.get(f"{V1}/credits/transactions", {"offset": 7, "limit": 3}).json()
    past = client.get(f"{V1}/credits/transactions", {"offset": 500}).json()

    assert len(first["data"]) == 20 and first["pagination"] == {"limit": 20, "offset": 0, "total": 30}
    assert [row["id"] for row in middle["data"]] == [row["id"] for row in every[7:10]]
    assert middle["pagination"] == {"limit": 3, "offset": 7, "total": 30}
    assert past["data"] == [] and past["pagination"]["total"] == 30


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"limit": "abc"}, "limit"), ({"limit": "1.5"}, "limit"),
        ({"offset": -1}, "offset"), ({"offset": "x"}, "offset"), ({"offset": "99999999999"}, "offset"),
        ({"page": 2}, "page"), ({"type": "ai_usage"}, "type"),
    ],
)
def test_bad_paging_is_a_400_in_the_envelope_naming_the_field(member, query, field):
    error = failed(client_for(member).get(f"{V1}/credits/transactions", query), 400, "invalid")

    assert field in error["details"], error


# --- orders ----------------------------------------------------------------------------------------------


def test_orders_list_and_get_use_the_native_orders(fake_stripe, member, other_member):
    client = client_for(member)
    created = ok(post_json(client, f"{V1}/payment/create-session", {
        "channel": "stripe", "type": "top_up", "amount": "25.00", "success_url": SUCCESS_URL,
        "cancel_url": CANCEL_URL}), 201)
    theirs = native(client, f"/api/billing/orders/{created['order_id']}/")

    listed = client.get(f"{V1}/orders", {"limit": 20, "offset": 0}).json()
    one = ok(client.get(f"{V1}/orders/{created['order_id']}"))

    assert listed["success"] is True and [o["id"] for o in listed["data"]] == [created["order_id"]]
    assert one == {**theirs, "credits": 2500, "credits_reversed": 0, "refund_shortfall_credits": 0}
    assert one["amount_usd"] == "25.00" and one["status"] == "pending"
    # Someone else's order, and an id that is no id: 404 in the envelope.
    failed(client_for(other_member).get(f"{V1}/orders/{created['order_id']}"), 404)
    failed(client.get(f"{V1}/orders/not-an-id"), 404)


# --- plans and subscriptions --------------------------------------------------------------------------------


@pytest.fixture
def pro(platform) -> Plan:  # noqa: ANN001
    return make_plan(platform, "pro", name="Pro", description="For growing teams", price_monthly=999,
                     price_yearly=9990, credits_included=Decimal("100"),
                     features=["Unlimited AI chat", "Priority support"], stripe_price_monthly="price_pro_m",
                     stripe_price_yearly="price_pro_y")


def test_subscription_plans_are_the_documented_example(member, pro):
    plans = ok(client_for(member).get(f"{V1}/subscription/plans"))

    assert len(plans) == 1
    plan = plans[0]
    assert {k: plan[k] for k in ("id", "name", "description", "price_monthly", "price_yearly", "credits_included",
                                 "features")} == {
        "id": str(pro.pk), "name": "Pro", "description": "For growing teams", "price_monthly": 999,
        "price_yearly": 9990, "credits_included": 10000, "features": ["Unlimited AI chat", "Priority support"],
    }
    assert all(type(plan[k]) is int for k in ("price_monthly", "price_yearly", "credits_included"))


def test_create_session_takes_the_documented_body_without_billing_cycle(stripe_billing, member, pro):
    body = {"channel": "stripe", "type": "subscription", "plan_id": str(pro.pk),
            "success_url": "https://app.acme.test/dashboard/subscription?success=true",
            "cancel_url": "https://app.acme.test/dashboard/subscription"}

    data = ok(post_json(client_for(member), f"{V1}/payment/create-session", body), 201)

    assert data["url"].startswith("https://checkout.stripe.test/c/pay/cs_test_")
    order = Order.objects.get(pk=data["order_id"])
    assert (order.billing_cycle, order.amount_usd) == ("monthly", Decimal("9.99"))
    assert stripe_billing.requests[-1]["form"]["line_items[0][price]"] == "price_pro_m"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channel": "paypal"}, "channel"), ({"type": "lifetime"}, "type"), ({"plan_id": 5}, "plan_id"),
        ({"success_url": "javascript:alert(1)"}, "success_url"), ({"billing_cycle": "weekly"}, "billing_cycle"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_create_session_refuses_bad_input_and_writes_nothing(stripe_billing, member, pro, body, field):
    base = {"channel": "stripe", "type": "subscription", "plan_id": str(pro.pk), "success_url": SUCCESS_URL,
            "cancel_url": CANCEL_URL}
    before = full_state()

    error = failed(post_json(client_for(member), f"{V1}/payment/create-session", base | body), 400)

    assert field in error["details"] and full_state() == before
    assert stripe_billing.requests == []


def test_create_session_needs_a_json_object(member):
    failed(post_json(client_for(member), f"{V1}/payment/create-session", "{not json"), 400, "malformed_request")
    failed(post_json(client_for(member), f"{V1}/payment/create-session", "[1, 2]"), 400)


def test_subscription_portal_opens_the_providers_portal(stripe_billing, member, pro):
    start(member.account, pro, provider_customer_id="cus_test_portal")

    data = ok(post_json(client_for(member), f"{V1}/subscription/portal",
                        {"return_url": "https://app.acme.test/dashboard/subscription"}))

    assert data["url"].startswith("https://billing.stripe.test/p/session/")
    assert stripe_billing.requests[-1]["form"]["customer"] == "cus_test_portal"


def test_subscription_portal_without_a_customer_is_the_native_error(stripe_billing, member):
    client = client_for(member)
    body = {"return_url": "https://app.acme.test/dashboard/subscription"}
    theirs = post_json(client, "/api/billing/portal/", body)

    error = failed(post_json(client, f"{V1}/subscription/portal", body), theirs.status_code)

    assert error["code"] == theirs.json()["error"]["code"]


# --- webhooks ----------------------------------------------------------------------------------------------


def test_stripe_webhook_is_the_verified_native_handler(fake_stripe, member):
    created = ok(post_json(client_for(member), f"{V1}/payment/create-session", {
        "channel": "stripe", "type": "top_up", "amount": "25.00", "success_url": SUCCESS_URL,
        "cancel_url": CANCEL_URL}), 201)
    order = native(client_for(member), f"/api/billing/orders/{created['order_id']}/")
    payload = json.dumps(session_event("checkout.session.completed", order))
    from django.test import Client

    unsigned = Client().post(f"{V1}/payment/webhook/stripe", data=payload, content_type="application/json")
    forged = Client().post(f"{V1}/payment/webhook/stripe", data=payload, content_type="application/json",
                           HTTP_STRIPE_SIGNATURE="t=1,v1=deadbeef")
    failed(unsigned, 400)
    failed(forged, 400)
    assert Order.objects.get(pk=created["order_id"]).status == "pending"

    signed = Client().post(f"{V1}/payment/webhook/stripe", data=payload, content_type="application/json",
                           HTTP_STRIPE_SIGNATURE=signature_header(payload))
    again = Client().post(f"{V1}/payment/webhook/stripe", data=payload, content_type="application/json",
                          HTTP_STRIPE_SIGNATURE=signature_header(payload))

    assert ok(signed)["received"] is True and ok(again)["duplicate"] is True
    assert Order.objects.get(pk=created["order_id"]).status == "paid"
    assert ok(client_for(member).get(f"{V1}/credits/balance"))["balance"] == 12500


def test_creem_webhook_is_the_verified_native_handler(settings, member):
    settings.CREEM_WEBHOOK_SECRET = creem_support.WEBHOOK_SECRET
    from django.test import Client

    payload = json.dumps({"id": "evt_v1_1", "eventType": "checkout.completed", "object": {}})
    before = full_state()
    failed(Client().post(f"{V1}/payment/webhook/creem", data=payload, content_type="application/json",
                         HTTP_CREEM_SIGNATURE="0" * 64), 400)
    assert full_state() == before

    signed = Client().post(f"{V1}/payment/webhook/creem", data=payload, content_type="application/json",
                           HTTP_CREEM_SIGNATURE=creem_support.sign(payload))
    assert signed.status_code == Client().post(
        "/api/billing/webhooks/creem/", data=payload, content_type="application/json",
        HTTP_CREEM_SIGNATURE=creem_support.sign(payload)).status_code
    assert signed.json()["success"] is (signed.status_code < 400)


# --- check-in ----------------------------------------------------------------------------------------------


def test_checkin_awards_credits_once_a_day(admin, member):
    config = ok(client_for(admin).put(f"{V1}/admin/checkin/config", {
        "enabled": True, "credits_per_day": 100, "streak_bonuses": {"7": 500}, "monthly_cap": 4000},
        format="json"))
    assert (config["credits_per_day"], config["streak_bonuses"], config["monthly_cap"]) == (100, {"7": 500}, 4000)
    assert native(client_for(admin), "/api/billing/admin/checkin/config/")["credits_per_day"] == "1.00"

    done = ok(client_for(member).post(f"{V1}/checkin"), 201)
    again = client_for(member).post(f"{V1}/checkin")

    assert (done["credits_awarded"], done["balance"], done["streak"]) == (100, 10100, 1)
    failed(again, 409, "already_checked_in")
    assert ok(client_for(admin).get(f"{V1}/admin/checkin/config")) == config


def test_checkin_when_disabled_is_the_native_403(member):
    failed(client_for(member).post(f"{V1}/checkin"), 403, "checkin_disabled")


@pytest.mark.parametrize(
    ("body", "field"),
    [({"credits_per_day": -1}, "credits_per_day"), ({"credits_per_day": "NaN"}, "credits_per_day"),
     ({"credits_per_day": True}, "credits_per_day"), ({"monthly_cap": 10**30}, "monthly_cap"),
     ({"enabled": "yes"}, "enabled"), ({"streak_bonuses": {"0": 5}}, "streak_bonuses")],
)
def test_checkin_config_refuses_bad_input(admin, body, field):
    before = full_state()

    error = failed(client_for(admin).put(f"{V1}/admin/checkin/config",
                                         {"enabled": True, "credits_per_day": 100} | body, format="json"), 400)

    assert field in error["details"] and full_state() == before


# --- admin ---------------------------------------------------------------------------------------------------


def test_admin_plans_list_create_and_update(admin):
    client = client_for(admin)
    created = ok(post_json(client, f"{V1}/admin/billing/plans", {
        "name": "Pro", "description": "For growing teams", "price_monthly": 999, "price_yearly": 9990,
        "credits_included": 10000, "features": ["Unlimited AI chat", "Priority support"]}), 201)

    assert (created["slug"], created["credits_included"], created["price_monthly"]) == ("pro", 10000, 999)
    assert Plan.objects.get(pk=created["id"]).credits_included == Decimal("100")

    updated = ok(client.put(f"{V1}/admin/billing/plans/{created['id']}", {
        "name": "Pro+", "price_monthly": 1999, "price_yearly": 19990, "credits_included": 25050},
        format="json"))
    listed = client.get(f"{V1}/admin/billing/plans").json()

    assert (updated["name"], updated["credits_included"]) == ("Pro+", 25050)
    assert Plan.objects.get(pk=created["id"]).credits_included == Decimal("250.50")
    assert [p["id"] for p in listed["data"]] == [created["id"]] and listed["pagination"]["total"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [({"price_monthly": 9.99}, "price_monthly"), ({"credits_included": -5}, "credits_included"),
     ({"credits_included": "lots"}, "credits_included"), ({"name": ""}, "name"),
     ({"credits_included": 1.5e-9}, "credits_included")],
)
def test_admin_plan_create_refuses_bad_input(admin, body, field):
    base = {"name": "Pro", "price_monthly": 999, "price_yearly": 9990, "credits_included": 10000}
    before = full_state()

    error = failed(post_json(client_for(admin), f"{V1}/admin/billing/plans", base | body), 400)

    assert field in error["details"] and full_state() == before


def test_admin_plan_update_of_another_platforms_plan_is_a_404(admin, other_platform):
    theirs = make_plan(other_platform, "theirs")

    failed(client_for(admin).put(f"{V1}/admin/billing/plans/{theirs.pk}", {
        "name": "Mine", "price_monthly": 1, "price_yearly": 1, "credits_included": 1}, format="json"), 404)
    assert Plan.objects.get(pk=theirs.pk).name == "Theirs"


def test_admin_coupons_list_and_create(admin):
    client = client_for(admin)
    created = ok(post_json(client, f"{V1}/admin/billing/coupons",
                           {"code": "WELCOME", "kind": "percent_off", "value": "20"}), 201)
    listed = client.get(f"{V1}/admin/billing/coupons").json()

    assert created["code"] == "WELCOME" and Coupon.objects.filter(pk=created["id"]).exists()
    assert [c["id"] for c in listed["data"]] == [created["id"]]


def test_admin_credit_transactions_and_manual_adjustment(admin, member):
    client = client_for(admin)
    entry = ok(post_json(client, f"{V1}/admin/credits/manual", {
        "account_id": str(member.account.id), "amount": -250, "description": "goodwill reversal"}), 201)
    listed = client.get(f"{V1}/admin/credits/transactions", {"limit": 1, "offset": 0}).json()

    assert (entry["type"], entry["amount"], entry["balance_after"]) == ("adjustment", -250, 9750)
    assert LedgerEntry.objects.get(pk=entry["id"]).balance_delta == Decimal("-2.50")
    assert listed["data"][0]["id"] == entry["id"] and listed["data"][0]["username"] == member.user.username
    assert listed["pagination"]["total"] == 2


def test_manual_adjustment_is_idempotent_with_a_key(admin, member):
    body = {"account_id": str(member.account.id), "amount": 100, "description": "bonus"}
    client = client_for(admin)

    first = post_json(client, f"{V1}/admin/credits/manual", body, HTTP_IDEMPOTENCY_KEY="k1")
    replay = post_json(client, f"{V1}/admin/credits/manual", body, HTTP_IDEMPOTENCY_KEY="k1")
    conflict = post_json(client, f"{V1}/admin/credits/manual", body | {"amount": 200}, HTTP_IDEMPOTENCY_KEY="k1")

    assert ok(first, 201)["id"] == ok(replay, 200)["id"] and replay["Idempotent-Replayed"] == "true"
    failed(conflict, 409, "idempotency_conflict")


@pytest.mark.parametrize(
    "amount", [0, "NaN", "Infinity", 1.5e-9, 10**40, True, None, "12", "1e999999999", "1e-999999999",
               "100.000000000000000000000000000001"],
)
def test_manual_adjustment_refuses_bad_amounts(admin, member, amount):
    before = db_snapshot()

    raw = json.dumps({"account_id": str(member.account.id), "amount": "AMOUNT", "description": "x"})
    if isinstance(amount, str) and amount[:1] in "1" and amount != "12":
        raw = raw.replace('"AMOUNT"', amount)  # a JSON number written out
    else:
        raw = raw.replace('"AMOUNT"', json.dumps(amount))

    error = failed(post_json(client_for(admin), f"{V1}/admin/credits/manual", raw), 400)

    assert "amount" in error["details"] and db_snapshot() == before


def test_manual_adjustment_of_another_platforms_account_is_refused(admin, outsider):
    before = db_snapshot()

    error = failed(post_json(client_for(admin), f"{V1}/admin/credits/manual", {
        "account_id": str(outsider.account.id), "amount": 100, "description": "x"}), 404)

    assert error["code"] == "account_not_found" and db_snapshot() == before


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/admin/billing/plans"), ("post", "/admin/billing/plans"), ("get", "/admin/billing/coupons"),
     ("post", "/admin/billing/coupons"), ("get", "/admin/credits/transactions"), ("post", "/admin/credits/manual"),
     ("get", "/admin/checkin/config"), ("put", "/admin/checkin/config")],
)
def test_admin_endpoints_refuse_members(member, method, path):
    before = full_state()

    failed(getattr(client_for(member), method)(f"{V1}{path}", {}, format="json"), 403, "admin_required")

    assert full_state() == before


@pytest.mark.parametrize(
    "path", ["/credits/balance", "/credits/transactions", "/orders", "/subscription/plans"],
)
def test_unauthenticated_calls_are_a_401_in_the_envelope(path):
    from rest_framework.test import APIClient

    failed(APIClient().get(f"{V1}{path}"), 401, "not_authenticated")
    failed(APIClient().get(f"{V1}{path}", HTTP_AUTHORIZATION="Token nope"), 401, "authentication_failed")


def test_jwt_bearer_works_on_the_surface(member):
    from rest_framework.test import APIClient

    member.user.set_password("pw-123456")
    member.user.save()
    tokens = APIClient().post("/api/auth/jwt/", {"username": member.user.username, "password": "pw-123456"},
                              format="json").json()

    response = APIClient().get(f"{V1}/credits/balance", HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")

    assert ok(response)["balance"] == 10000


def test_a_member_sees_only_their_own_ledger(platform, member):
    other = make_member(platform, "olga", credits="7")

    rows = ok(client_for(other).get(f"{V1}/credits/transactions"))

    assert [row["amount"] for row in rows] == [700]


# --- the surface adds nothing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("surface", "native_url", "params"),
    [(f"{V1}/credits/balance", "/api/billing/account/", {}),
     (f"{V1}/credits/transactions", "/api/billing/transactions/", {"limit": 20, "offset": 0}),
     (f"{V1}/orders", "/api/billing/orders/", {"limit": 20, "offset": 0}),
     (f"{V1}/subscription/plans", "/api/billing/plans/", {"limit": 100})],
)
def test_the_surface_runs_the_native_queries_and_no_more(member, pro, surface, native_url, params):
    build_ledger(member)
    client = client_for(member)
    client.get(surface)  # warm caches (content types, prepared statements)
    with CaptureQueriesContext(connection) as ours:
        assert client.get(surface).status_code == 200
    with CaptureQueriesContext(connection) as theirs:
        assert client.get(native_url, params).status_code == 200

    assert [q["sql"] for q in ours.captured_queries] == [q["sql"] for q in theirs.captured_queries]


def test_the_prefix_is_configurable(settings, member):
    import billing_service.urls

    settings.BILLING_V1_PREFIX = "billing/v1/"
    try:
        clear_url_caches()
        importlib.reload(billing_service.urls)
        assert ok(client_for(member).get("/billing/v1/credits/balance"))["balance"] == 10000
        assert client_for(member).get(f"{V1}/credits/balance").status_code == 404
    finally:
        settings.BILLING_V1_PREFIX = "api/v1/"
        clear_url_caches()
        importlib.reload(billing_service.urls)


def test_schema_tags_the_surface(schema):
    operations = [op for path, item in schema["paths"].items() if path.startswith("/api/v1/")
                  for op in item.values()]

    assert len(operations) == 19  # 15 documented paths, webhooks twice, plans and check-in config twice
    assert all(op["tags"] == ["billing-service-api"] for op in operations)


def test_errors_answered_before_the_view_have_the_surfaces_shape(member, settings):
    client = client_for(member)

    failed(client.get(f"{V1}/credits/balance", {"q": "a\x00b"}), 400, "malformed_request")
    failed(client.get(f"{V1}/no/such/path"), 404, "not_found")
    settings.API_MAX_BODY_BYTES = 64
    failed(post_json(client, f"{V1}/admin/credits/manual", {"description": "x" * 100}), 413, "request_too_large")
    # The native API keeps its own envelope.
    assert set(client.get("/api/billing/no/such/path/").json()) == {"error"}


def test_a_browser_session_needs_its_csrf_token_on_the_surface_as_natively(admin, member):
    from django.test import Client

    ok(client_for(admin).put(f"{V1}/admin/checkin/config", {"enabled": True, "credits_per_day": 100},
                             format="json"))
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(member.user)
    browser.get(f"{V1}/credits/balance")  # any GET: the csrftoken cookie is set by the admin login page below
    token = browser.get("/admin/login/").cookies["csrftoken"].value

    refused = browser.post(f"{V1}/checkin", content_type="application/json")
    natively = browser.post("/api/billing/checkin/", content_type="application/json")
    done = browser.post(f"{V1}/checkin", content_type="application/json", HTTP_X_CSRFTOKEN=token)

    assert failed(refused, 403)["message"] == natively.json()["error"]["message"]
    assert "CSRF" in natively.json()["error"]["message"]
    assert ok(done, 201)["credits_awarded"] == 100


def test_an_anonymous_call_is_the_native_401_before_the_surface_reads_anything(member):
    from rest_framework.test import APIClient

    anonymous = APIClient()
    for response in [
        post_json(anonymous, f"{V1}/admin/credits/manual", "{not json"),
        post_json(anonymous, f"{V1}/admin/credits/manual", {"amount": "5"}),
        anonymous.options(f"{V1}/credits/balance"),
    ]:
        failed(response, 401, "not_authenticated")
        assert response["WWW-Authenticate"] == 'Token realm="api"' or response["WWW-Authenticate"].startswith("Token")


def test_a_plans_rollover_cap_is_in_credit_units_both_ways(admin):
    created = ok(post_json(client_for(admin), f"{V1}/admin/billing/plans", {
        "name": "Capped", "price_monthly": 999, "price_yearly": 9990, "credits_included": 10000,
        "rollover_policy": "capped", "rollover_cap": 5000}), 201)

    assert created["rollover_cap"] == 5000
    assert Plan.objects.get(pk=created["id"]).rollover_cap == Decimal("50")


def test_a_number_no_decimal_holds_is_a_400_not_a_500(admin, member):
    raw = '{"account_id": "%s", "amount": 1e9999999999999999999, "description": "x"}' % member.account.id

    failed(post_json(client_for(admin), f"{V1}/admin/credits/manual", raw), 400, "malformed_request")
    error_of = post_json(client_for(admin), "/api/billing/admin/credits/manual/", raw)
    assert error_of.status_code == 400 and error_of.json()["error"]["code"] == "malformed_request"
