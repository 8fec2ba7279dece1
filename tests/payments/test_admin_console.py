"""The Django admin as an operations console: every model has a page (lists with their filters and search), the
billing dashboard (from the rollups), and the actions that write through the services (grant or take back credits,
refund an order through Stripe, process a failed provider event again)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.apps import apps
from django.contrib import admin
from django.db.models import CompositePrimaryKey
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from werkzeug import Request, Response

from accounts.models import Role
from credits.models import LedgerEntry, TransactionType, UsageRollup
from credits.services import credits_adjust, credits_debit, credits_grant, ledger_rollups_refresh
from payments import dashboard
from payments.models import Order, OrderStatus, WebhookEvent
from payments.recharge_models import Recharge, RechargeFailure, RechargeStatus, SavedPaymentMethod
from subscriptions.services import plan_create, subscription_start
from tests.conftest import LedgerClock, make_member
from tests.payments.conftest import deliver, session_event, start_top_up
from tests.payments.stripe_subscriptions import charge_refunded

pytestmark = pytest.mark.django_db

APPS = ["accounts", "credits", "subscriptions", "payments", "entitlements"]
COMPLETED = "checkout.session.completed"
DASHBOARD = "admin:billing_dashboard"


def messages_of(response) -> list[str]:  # noqa: ANN001
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- every model has a page -------------------------------------------------------------------------------------


def test_every_model_of_the_apps_has_an_admin_page():
    # but a table with a composite primary key, which the admin cannot show (the keys claimed across months)
    missing = [f"{app}.{model.__name__}" for app in APPS for model in apps.get_app_config(app).get_models()
               if not admin.site.is_registered(model) and not isinstance(model._meta.pk, CompositePrimaryKey)]
    assert missing == []


def _registered():  # noqa: ANN202
    return [(model, model_admin) for model, model_admin in admin.site._registry.items()
            if model._meta.app_label in APPS]


@pytest.fixture
def console_data(fake_stripe, member, other_member, operator):  # noqa: ANN001, ANN201
    """A row or more of most models: a paid order, a failed webhook event, a recharge stuck in flight, a saved
    card, a subscription, usage rollups, ledger rollups."""
    order = start_top_up(member, "25.00")
    deliver(session_event(COMPLETED, order))
    deliver(session_event(COMPLETED, order | {"id": str(uuid.uuid4())}, session_id="cs_test_unknown"))  # failed
    SavedPaymentMethod.objects.create(account=member.account, provider="stripe", provider_customer_id="cus_1",
                                      provider_payment_method_id="pm_1", brand="visa", last4="4242")
    recharge = Recharge.objects.create(account=member.account, amount_usd=Decimal("10.00"), credits=Decimal(10),
                                       provider_customer_id="cus_1", provider_payment_method_id="pm_1",
                                       status=RechargeStatus.PROCESSING, provider_payment_id="pi_stuck")
    Recharge.objects.filter(pk=recharge.pk).update(updated_at=datetime.now(UTC) - timedelta(hours=3))
    plan = plan_create(platform=member.platform, slug="pro", name="Pro", price_monthly=1000, price_yearly=10000,
                       credits_included=Decimal(100))
    subscription_start(account_id=other_member.account.pk, plan_id=plan.pk, billing_cycle="monthly",
                       provider="manual", actor=operator)
    UsageRollup.objects.create(account=other_member.account, day=datetime.now(UTC).date(), endpoint="/v1/chat",
                               total_requests=3, successful_requests=3, credits_consumed=Decimal("7.25"))
    ledger_rollups_refresh(days=2)
    return {"order": Order.objects.get(pk=order["id"]), "recharge": recharge, "plan": plan}


def test_every_list_loads_with_each_filter_and_a_search(browser, console_data):
    checked = 0
    for model, model_admin in _registered():
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        response = browser.get(url)
        assert response.status_code == 200, url
        if model_admin.search_fields:
            assert browser.get(url, {"q": "mia"}).status_code == 200, url
        changelist = response.context["cl"]
        for spec in changelist.filter_specs:
            for choice in list(spec.choices(changelist))[1:3]:  # the first choices after "All"
                filtered = browser.get(url + choice["query_string"])
                assert filtered.status_code == 200, (url, choice["query_string"])
                checked += 1
    assert checked > 30


def test_every_row_page_loads(browser, console_data):
    for model, _ in _registered():
        row = model._default_manager.order_by().first()
        if row is None:
            continue
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[row.pk])
        assert browser.get(url).status_code == 200, url


def test_stalled_recharges_are_found_by_the_needs_attention_filter(browser, console_data, member):
    fresh = Recharge.objects.create(account=make_member(member.platform, "fresh").account,
                                    amount_usd=Decimal("5.00"), credits=Decimal(5), provider_customer_id="cus_2",
                                    provider_payment_method_id="pm_2", status=RechargeStatus.PENDING)
    gave_up = Recharge.objects.create(account=make_member(member.platform, "gaveup").account,
                                      amount_usd=Decimal("5.00"), credits=Decimal(5), provider_customer_id="cus_3",
                                      provider_payment_method_id="pm_3", status=RechargeStatus.FAILED,
                                      failure_reason=RechargeFailure.GAVE_UP)
    url = reverse("admin:payments_recharge_changelist")
    stalled = browser.get(url, {"attention": "stalled"}).context["cl"].result_list
    assert [r.pk for r in stalled] == [console_data["recharge"].pk]
    attention = {r.pk for r in browser.get(url, {"attention": "any"}).context["cl"].result_list}
    assert attention == {console_data["recharge"].pk, gave_up.pk}
    assert fresh.pk not in attention


# --- the dashboard ------------------------------------------------------------------------------------------------


@pytest.fixture
def moment() -> datetime:
    return datetime.combine(datetime.now(UTC).date() + timedelta(days=2), time(12), tzinfo=UTC)


@pytest.fixture
def ledger_day(moment, monkeypatch, member, other_member, operator):  # noqa: ANN001, ANN201
    """On one (future) UTC day: 25 credits sold for 20 USD, 5 granted by an admin, 7.5 consumed, 2 taken back; the
    members' first 100 and 50 "test funds" (granted, unpaid) are of today. The dashboard's clock is that day."""
    LedgerClock(moment=moment).pin(member.account, other_member.account)
    credits_grant(account_id=member.account.pk, amount=Decimal(25), payment_amount_usd=Decimal(20))
    credits_adjust(account_id=other_member.account.pk, amount=Decimal(5), description="gift", actor=operator)
    credits_debit(account_id=member.account.pk, amount=Decimal("7.5"))
    credits_adjust(account_id=other_member.account.pk, amount=Decimal(-2), description="fix", actor=operator)
    ledger_rollups_refresh(days=3, now=moment)
    monkeypatch.setattr(dashboard, "clock", lambda: moment)
    return moment


def test_the_admin_index_links_to_the_dashboard(browser):
    response = browser.get(reverse("admin:index"))
    assert reverse(DASHBOARD).encode() in response.content


def test_the_dashboard_shows_the_figures_of_the_rollups(browser, ledger_day, other_platform, member):
    outsider = make_member(other_platform, "olga", credits="1000")  # another platform's credits, today
    response = browser.get(reverse(DASHBOARD), {"platform": member.platform.platform_key})
    assert response.status_code == 200
    board = response.context["board"]
    totals = board.totals
    assert (totals.sold, totals.revenue_usd, totals.granted, totals.consumed, totals.taken_back) == (
        Decimal(25), Decimal(20), Decimal(155), Decimal("7.5"), Decimal(2))
    assert totals.outstanding == Decimal("170.5") == board.live_balance
    day = next(d for d in board.days if d.day == ledger_day.date())
    assert (day.sold, day.granted, day.consumed, day.taken_back, day.outstanding) == (
        Decimal(25), Decimal(5), Decimal("7.5"), Decimal(2), Decimal("170.5"))
    assert len(board.days) == 30 and board.days[-1].day == ledger_day.date()
    content = response.content.decode()
    assert "<svg" in content and "polyline" in content
    assert 'id="total-sold">Sold<strong>25.00</strong>20.00 USD' in content
    assert "170.50" in content
    # A superuser sees every platform summed by default (once the rollups are refreshed).
    ledger_rollups_refresh(days=3, now=ledger_day)
    everything = browser.get(reverse(DASHBOARD)).context["board"]
    assert everything.totals.granted == Decimal(155) + outsider.account.balance
    assert everything.totals.outstanding == Decimal("1170.5") == everything.live_balance


def test_the_dashboard_shows_what_needs_attention(browser, console_data, member, other_member):
    response = browser.get(reverse(DASHBOARD))
    board = response.context["board"]
    assert board.webhooks_by_status == {"failed": 1}
    assert [e.status for e in board.webhooks_latest] == ["failed"]
    assert (board.recharges_stalled, board.recharges_attention) == (1, 1)
    assert [r.pk for r in board.recharges_latest] == [console_data["recharge"].pk]
    assert [(row["plan__slug"], row["active"], row["total"]) for row in board.subscriptions_by_plan] == [("pro", 1, 1)]
    assert [(a["account_id"], a["consumed"]) for a in board.top_accounts] == [(other_member.account.pk,
                                                                               Decimal("7.25"))]
    content = response.content.decode()
    assert "7.25" in content and "Pro (pro)" in content


def test_staff_see_only_the_platforms_they_administer(member, other_platform):
    staff = make_member(member.platform, "stan", Role.ADMIN).user
    staff.is_staff = True
    staff.save()
    client = Client()
    client.force_login(staff)
    response = client.get(reverse(DASHBOARD))
    assert response.status_code == 200
    assert [p.platform_key for p in response.context["board"].platforms] == [member.platform.platform_key]
    assert client.get(reverse(DASHBOARD), {"platform": other_platform.platform_key}).status_code == 404


def test_non_staff_are_refused(member, other_platform):
    plain = get_user_model().objects.create_user("plain", password="pw-for-tests-only")
    client = Client()
    client.force_login(plain)
    response = client.get(reverse(DASHBOARD))
    assert response.status_code == 302 and "/login/" in response["Location"]
    before = LedgerEntry.objects.count()
    response = client.post(reverse("admin:credits_creditaccount_changelist"),
                           {"action": "grant_or_take_back", "_selected_action": [member.account.pk], "apply": "1",
                            "amount": "50", "description": "free money", "key": str(uuid.uuid4())})
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert LedgerEntry.objects.count() == before
    lonely_staff = get_user_model().objects.create_user("lonely", password="pw-for-tests-only", is_staff=True)
    client.force_login(lonely_staff)  # staff of no platform
    assert client.get(reverse(DASHBOARD)).status_code == 403


# --- grant or take back credits -------------------------------------------------------------------------------------


def adjust(browser, accounts, **form):  # noqa: ANN001, ANN003, ANN201
    data = {"action": "grant_or_take_back", "_selected_action": [a.pk for a in accounts], "apply": "1"} | form
    return browser.post(reverse("admin:credits_creditaccount_changelist"), data)


def test_granting_and_taking_back_credits_writes_adjustments_with_the_admin_and_the_reason(
    browser, operator, member, other_member
):
    url = reverse("admin:credits_creditaccount_changelist")
    page = browser.post(url, {"action": "grant_or_take_back",
                              "_selected_action": [member.account.pk, other_member.account.pk]})
    assert page.status_code == 200
    key = page.context["form"].initial["key"]
    response = adjust(browser, [member.account, other_member.account], amount="12.50",
                      description="outage goodwill", reference="INC-7", key=str(key))
    assert response.status_code == 302
    assert "Adjusted 2 account(s) by 12.50." in messages_of(response)
    rows = LedgerEntry.objects.filter(transaction_type=TransactionType.ADJUSTMENT).order_by("account_id")
    assert {(r.account_id, r.balance_delta, r.actor_id, r.description, r.reference) for r in rows} == {
        (member.account.pk, Decimal("12.5"), operator.pk, "outage goodwill", "INC-7"),
        (other_member.account.pk, Decimal("12.5"), operator.pk, "outage goodwill", "INC-7"),
    }
    # The same form sent again (a double click) writes nothing more.
    adjust(browser, [member.account, other_member.account], amount="12.50", description="outage goodwill",
           reference="INC-7", key=str(key))
    assert rows.count() == 2

    # Taking back: more than an account holds is refused for that account only.
    response = adjust(browser, [member.account, other_member.account], amount="-100", description="chargeback",
                      key=str(uuid.uuid4()))
    member.account.refresh_from_db()
    other_member.account.refresh_from_db()
    assert (member.account.balance, other_member.account.balance) == (Decimal("12.5"), Decimal("62.5"))
    texts = messages_of(response)
    assert any("Nothing written for it." in t and str(other_member.account) in t for t in texts)
    assert "Adjusted 1 account(s) by -100.00." in texts
    taken = LedgerEntry.objects.get(account=member.account, balance_delta=Decimal(-100))
    assert (taken.transaction_type, taken.actor_id, taken.description) == ("adjustment", operator.pk, "chargeback")


@pytest.mark.parametrize("amount", ["", "abc", "0", "1.0000001", "+5", "1E+1", " 5 ", "٥", "1000000001"])
def test_a_bad_amount_is_refused_with_a_message_and_nothing_is_written(browser, member, amount):
    before = LedgerEntry.objects.count()
    response = adjust(browser, [member.account], amount=amount, description="x", key=str(uuid.uuid4()))
    assert response.status_code == 200  # the form again
    assert response.context["form"].errors["amount"]
    assert "Nothing was written: correct the form." in messages_of(response)
    assert LedgerEntry.objects.count() == before


def test_a_missing_reason_is_refused(browser, member):
    before = LedgerEntry.objects.count()
    response = adjust(browser, [member.account], amount="5", description="  ", key=str(uuid.uuid4()))
    assert response.status_code == 200 and response.context["form"].errors["description"]
    assert LedgerEntry.objects.count() == before


# --- refund an order through Stripe -----------------------------------------------------------------------------------


class FakeRefunds:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail = False

    def handle(self, request: Request) -> Response:
        form = request.form.to_dict()
        self.requests.append({"form": form, "key": request.headers.get("Idempotency-Key")})
        if self.fail:
            return Response(json.dumps({"error": {"type": "invalid_request_error",
                                                  "message": "Charge ch_1 has already been refunded."}}),
                            status=400, content_type="application/json")
        body = {"id": f"re_{len(self.requests)}", "object": "refund", "amount": int(form["amount"]),
                "charge": "ch_test_1", "payment_intent": form["payment_intent"], "status": "succeeded",
                "currency": "usd"}
        return Response(json.dumps(body), status=200, content_type="application/json")


@pytest.fixture
def refunds(fake_stripe, httpserver) -> FakeRefunds:  # noqa: ANN001
    fake = FakeRefunds()
    httpserver.expect_request("/v1/refunds", method="POST").respond_with_handler(fake.handle)
    return fake


def refund(browser, orders, **form):  # noqa: ANN001, ANN003, ANN201
    data = {"action": "refund_orders", "_selected_action": [o.pk for o in orders], "apply": "1"} | form
    return browser.post(reverse("admin:payments_order_changelist"), data)


def test_an_order_is_refunded_through_stripe_and_its_credits_leave_with_the_webhook(browser, refunds, platform):
    buyer = make_member(platform, "rita")
    order = start_top_up(buyer, "25.00")
    deliver(session_event(COMPLETED, order))
    page = browser.post(reverse("admin:payments_order_changelist"),
                        {"action": "refund_orders", "_selected_action": [order["id"]]})
    assert page.status_code == 200 and b"25.00" in page.content
    response = refund(browser, [Order.objects.get(pk=order["id"])], reason="customer asked")
    assert response.status_code == 302
    assert any("refund of 25.00 USD requested" in t for t in messages_of(response))
    sent = refunds.requests[-1]
    assert sent["form"] | {} == {"payment_intent": "pi_test_1", "amount": "2500",
                                 "metadata[order_id]": order["id"], "metadata[reason]": "customer asked",
                                 "metadata[requested_by]": str(response.wsgi_request.user.pk)}
    assert sent["key"] == f"order-refund:{order['id']}:0"
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.PAID  # nothing written before Stripe confirms
    # Stripe's charge.refunded: the webhook's one rule takes the credits back.
    deliver(charge_refunded(charge_id="ch_test_1", payment_intent="pi_test_1", amount=2500, amount_refunded=2500))
    saved = Order.objects.get(pk=order["id"])
    assert (saved.status, saved.credits_reversed) == (OrderStatus.REFUNDED, Decimal(25))
    assert LedgerEntry.objects.get(account=buyer.account, transaction_type="refund").balance_delta == Decimal(-25)
    # Refunded in full: refused from now on, with a message, and Stripe not asked.
    asked = len(refunds.requests)
    response = refund(browser, [saved], reason="again")
    assert any("refunded in full already" in t for t in messages_of(response))
    assert len(refunds.requests) == asked


def test_a_refund_stripe_refuses_or_an_unpaid_order_is_reported_and_nothing_changes(browser, refunds, platform):
    buyer = make_member(platform, "rita")
    paid = start_top_up(buyer, "25.00")
    deliver(session_event(COMPLETED, paid))
    pending = start_top_up(buyer, "10.00")
    refunds.fail = True
    response = refund(browser, Order.objects.filter(pk__in=[paid["id"], pending["id"]]), reason="duplicate")
    texts = messages_of(response)
    assert any(paid["id"] in t and "not refunded" in t and "already been refunded" in t for t in texts)
    assert any(pending["id"] in t and "no payment to refund" in t for t in texts)
    assert len(refunds.requests) == 1  # only the paid one reached Stripe
    assert Order.objects.get(pk=paid["id"]).status == OrderStatus.PAID
    assert not LedgerEntry.objects.filter(account=buyer.account, transaction_type="refund").exists()
    # A reason is required.
    response = refund(browser, Order.objects.filter(pk=paid["id"]), reason="")
    assert response.status_code == 200 and response.context["form"].errors["reason"]


# --- process a failed provider event again --------------------------------------------------------------------------


def test_a_failed_event_processed_again_reports_success_or_failure(fake_stripe, browser, member):
    known = start_top_up(member, "9.00")
    missing = str(uuid.uuid4())
    deliver(session_event(COMPLETED, known | {"id": missing}, session_id="cs_test_late"))
    event = WebhookEvent.objects.get()
    url = reverse("admin:payments_webhookevent_changelist")
    response = browser.post(url, {"action": "process_again", "_selected_action": [event.pk]})
    texts = messages_of(response)
    assert any(t.startswith(f"{event.event_id} failed again:") for t in texts)
    assert "0 processed, 1 failed again." in texts

    original = Order.objects.get(pk=known["id"])
    Order.objects.create(id=missing, platform=original.platform, account=original.account, user=original.user,
                         type="top_up", channel="stripe", amount_usd=Decimal("9.00"), credits=Decimal("9.00"),
                         success_url=original.success_url, cancel_url=original.cancel_url)
    response = browser.post(url, {"action": "process_again", "_selected_action": [event.pk]})
    assert "1 processed, 0 failed again." in messages_of(response)
    event.refresh_from_db()
    assert event.status == "processed"
    assert LedgerEntry.objects.filter(idempotency_key=f"order:{missing}").count() == 1
    response = browser.post(url, {"action": "process_again", "_selected_action": [event.pk]})
    assert "0 processed, 0 failed again, 1 skipped (not failed)." in messages_of(response)
