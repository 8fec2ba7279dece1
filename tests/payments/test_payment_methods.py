"""Saving the card auto-recharge charges: a top-up checkout with ``save_payment_method`` and its
``payment_intent.succeeded``; ``/api/billing/payment-method/`` (a Checkout Session in setup mode, its
``setup_intent.succeeded`` and ``checkout.session.completed``; GET; DELETE). Stripe is the local HTTP fake of
Checkout Sessions (plus the payment method and SetupIntent reads), or localstripe; events are signed."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone
from werkzeug import Response

from credits.models import CreditAccount
from payments import recharge
from payments.models import Order, WebhookEvent
from payments.recharge_models import SavedPaymentMethod
from subscriptions.models import Provider, Subscription
from tests.api_helpers import ACCOUNT_URL, db_snapshot, error_of, invalid_field, post_json
from tests.conftest import client_for, make_member
from tests.payments.conftest import APP_ORIGIN, CANCEL_URL, SUCCESS_URL, checkout, deliver
from tests.payments.local_servers import LocalStripe, localstripe, stripe_settings  # noqa: F401 - fixtures
from tests.payments.recharge_support import auto_recharge_of
from tests.payments.stripe_subscriptions import next_id
from tests.waits import backend_tag, wait_until_blocked

pytestmark = pytest.mark.django_db

PM_URL = "/api/billing/payment-method/"
PURPOSE = "auto_recharge_payment_method"


def event(event_type: str, obj: dict, *, created: int | None = None, event_id: str | None = None) -> dict:
    return {"id": event_id or next_id("evt"), "object": "event", "type": event_type, "livemode": False,
            "api_version": "2025-09-30.clover", "created": created or int(time.time()), "data": {"object": obj}}


def intent(order: Order | dict, **fields) -> dict:
    order_id = str(order.id if isinstance(order, Order) else order["id"])
    return {"id": "pi_topup_1", "object": "payment_intent", "amount": 2500, "amount_received": 2500,
            "currency": "usd", "status": "succeeded", "customer": "cus_saved_1", "payment_method": "pm_saved_1",
            "setup_future_usage": "off_session", "metadata": {"order_id": order_id}} | fields


def ours(account_id) -> dict:
    """The metadata of a setup session (and its SetupIntent) opened here for the account."""
    platform_id = CreditAccount.objects.filter(pk=account_id).values_list("platform_id", flat=True).first()
    return {"account_id": str(account_id), "purpose": PURPOSE, "platform_id": str(platform_id)}


def setup_intent(account_id, *, pm: str = "pm_setup_1", customer: str = "cus_setup_1", **fields) -> dict:
    return {"id": "seti_test_1", "object": "setup_intent", "status": "succeeded", "usage": "off_session",
            "customer": customer, "payment_method": pm, "metadata": ours(account_id)} | fields


def saved(member) -> SavedPaymentMethod | None:
    return SavedPaymentMethod.objects.filter(account_id=member.account.id, removed_at__isnull=True).first()


def serve_card(fake_stripe, pm: str = "pm_saved_1", brand: str = "mastercard", last4: str = "4444") -> list:
    """``GET /v1/payment_methods/<pm>`` on the fake; returns the list of requests it got."""
    seen: list = []

    def answer(request):
        seen.append(request.path)
        body = {"id": pm, "object": "payment_method", "type": "card", "card": {"brand": brand, "last4": last4}}
        return Response(json.dumps(body), status=200, content_type="application/json")

    fake_stripe.server.expect_request(f"/v1/payment_methods/{pm}", method="GET").respond_with_handler(answer)
    return seen


# --- a top-up that keeps its card ---------------------------------------------------------------------------


def test_a_top_up_can_keep_its_card_for_off_session_use(fake_stripe, member):
    response = checkout(member, "25.00", save_payment_method=True)
    assert response.status_code == 201, response.content
    form = fake_stripe.last["form"]
    order = Order.objects.get(pk=response.json()["order_id"])
    assert form["payment_intent_data[setup_future_usage]"] == "off_session"
    assert form["payment_intent_data[metadata][order_id]"] == str(order.id)
    assert form["customer_creation"] == "always"  # a saved card needs a customer
    assert "customer" not in form


def test_a_known_customer_gets_the_card(fake_stripe, member):
    recharge.payment_method_save(account_id=member.account.id, customer_id="cus_known", payment_method_id="pm_old")
    response = checkout(member, "25.00", save_payment_method=True)
    assert response.status_code == 201, response.content
    form = fake_stripe.last["form"]
    assert form["customer"] == "cus_known"
    assert "customer_creation" not in form and "customer_email" not in form
    assert Order.objects.get(pk=response.json()["order_id"]).provider_customer_id == "cus_known"


def test_a_plain_top_up_keeps_nothing(fake_stripe, member):
    assert checkout(member, "25.00").status_code == 201
    form = fake_stripe.last["form"]
    assert not any(k.startswith("payment_intent_data[setup_future_usage]") or k == "customer_creation" for k in form)


def test_only_stripe_top_ups_can_keep_their_card(fake_stripe, member):
    invalid_field(checkout(member, None, type="subscription", plan_id="x", billing_cycle="monthly",
                           save_payment_method=True), "save_payment_method")
    invalid_field(checkout(member, "25.00", channel="creem", save_payment_method=True), "save_payment_method")
    assert Order.objects.count() == 0 and fake_stripe.requests == []


def test_the_payment_intent_of_the_top_up_saves_its_card_and_reads_brand_and_digits_after_commit(
    fake_stripe, member, django_capture_on_commit_callbacks
):
    order = Order.objects.get(pk=checkout(member, "25.00", save_payment_method=True).json()["order_id"])
    seen = serve_card(fake_stripe)
    delivery = event("payment_intent.succeeded", intent(order))

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert deliver(delivery).json()["status"] == "processed"
    assert len(callbacks) == 1 and seen == ["/v1/payment_methods/pm_saved_1"]
    card = saved(member)
    assert (card.provider_customer_id, card.provider_payment_method_id, card.brand, card.last4) == (
        "cus_saved_1", "pm_saved_1", "mastercard", "4444")
    assert WebhookEvent.objects.get(event_id=delivery["id"]).order_id == order.id
    assert client_for(member).get(ACCOUNT_URL).json()["can_use_auto_recharge"] is True

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert deliver(delivery).json()["duplicate"] is True
    assert callbacks == [] and len(seen) == 1


@pytest.mark.parametrize(
    ("change", "note"),
    [
        ({"setup_future_usage": None}, "without a card saved for later"),
        ({"payment_method": None}, "without a card saved for later"),
        ({"id": "pi_other"}, "is not the order's"),
        ({"customer": "cus_someone_else"}, "is not the order's"),
    ],
)
def test_a_top_up_payment_that_does_not_keep_its_card_saves_nothing(fake_stripe, member, change, note):
    order = Order.objects.get(pk=checkout(member, "25.00", save_payment_method=True).json()["order_id"])
    Order.objects.filter(pk=order.pk).update(provider_payment_id="pi_topup_1", provider_customer_id="cus_saved_1")
    delivery = event("payment_intent.succeeded", intent(order, **change))
    assert deliver(delivery).json()["status"] == "ignored"
    assert note in WebhookEvent.objects.get(event_id=delivery["id"]).last_error
    assert saved(member) is None


def test_a_payment_intent_naming_a_subscription_order_saves_nothing(fake_stripe, member):
    order = Order.objects.create(
        platform=member.platform, account=member.account, user=member.user, type="subscription", channel="stripe",
        amount_usd=Decimal("10.00"), credits=Decimal(0), plan=_plan(member), billing_cycle="monthly",
        success_url=SUCCESS_URL, cancel_url=CANCEL_URL,
    )
    assert deliver(event("payment_intent.succeeded", intent(order))).json()["status"] == "ignored"
    assert saved(member) is None


def _plan(member):
    from tests.subscriptions.conftest import make_plan

    return make_plan(member.platform, "pro")


# --- /api/billing/payment-method/ -------------------------------------------------------------------------------


def open_setup(member, **fields):
    body = {"success_url": f"{APP_ORIGIN}/card?done=1", "cancel_url": f"{APP_ORIGIN}/card"} | fields
    return post_json(client_for(member), PM_URL, body)


def test_post_opens_a_setup_session_for_the_account(fake_stripe, member):
    response = open_setup(member)
    assert response.status_code == 201, response.content
    assert response.json() == {"url": response.json()["url"]}
    assert response.json()["url"].startswith("https://checkout.stripe.test/c/setup/cs_test_")
    form = fake_stripe.last["form"]
    assert (form["mode"], form["currency"], form["payment_method_types[0]"]) == ("setup", "usd", "card")
    assert form["customer_creation"] == "always" and "customer" not in form
    for prefix in ("metadata", "setup_intent_data[metadata]"):
        assert form[f"{prefix}[account_id]"] == str(member.account.id)
        assert form[f"{prefix}[purpose]"] == PURPOSE
        assert form[f"{prefix}[platform_id]"] == str(member.platform.pk)


def test_post_uses_the_customer_the_account_already_has(fake_stripe, member):
    Subscription.objects.create(account=member.account, plan=_plan(member), provider=Provider.STRIPE,
                                billing_cycle="monthly",
                                status="active", provider_customer_id="cus_sub_1", provider_subscription_id="sub_1")
    assert open_setup(member).status_code == 201
    form = fake_stripe.last["form"]
    assert form["customer"] == "cus_sub_1" and "customer_creation" not in form and "customer_email" not in form


def test_post_refuses_foreign_redirects_and_strangers(fake_stripe, member, outsider):
    invalid_field(open_setup(member, success_url="https://evil.test/x"), "success_url")
    invalid_field(open_setup(member, cancel_url="javascript:alert(1)"), "cancel_url")
    error_of(post_json(client_for(None), PM_URL, {}), 401)
    error_of(post_json(client_for(outsider, platform_key="acme"), PM_URL,
                       {"success_url": SUCCESS_URL, "cancel_url": CANCEL_URL}), 403)
    assert fake_stripe.requests == []


def test_post_reports_a_stripe_failure(fake_stripe, member):
    fake_stripe.fail_status = 500
    error_of(open_setup(member), 502, "payment_provider_error")


def test_setup_intent_succeeded_saves_the_card_and_get_shows_it(fake_stripe, member, other_member,
                                                                 django_capture_on_commit_callbacks):
    error_of(client_for(member).get(PM_URL), 404, "payment_method_not_found")
    seen = serve_card(fake_stripe, "pm_setup_1", "visa", "4242")
    delivery = event("setup_intent.succeeded", setup_intent(member.account.id))
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(delivery).json()["status"] == "processed"
    assert deliver(delivery).json()["duplicate"] is True
    assert len(seen) == 1

    body = client_for(member).get(PM_URL).json()
    assert (body["provider"], body["brand"], body["last4"]) == ("stripe", "visa", "4242")
    assert set(body) == {"provider", "brand", "last4", "updated_at"}
    error_of(client_for(other_member).get(PM_URL), 404, "payment_method_not_found")  # their own only


@pytest.mark.parametrize(
    ("change", "note"),
    [
        ({"metadata": {}}, "names no account of this service"),
        ({"metadata": {"account_id": "00000000-0000-0000-0000-000000000000", "purpose": PURPOSE}},
         "names no account of this service"),
        ({"usage": "on_session"}, "on-session use only"),
        ({"payment_method": None}, "no customer or payment method"),
    ],
)
def test_a_setup_intent_that_is_not_ours_or_not_usable_saves_nothing(fake_stripe, member, change, note):
    delivery = event("setup_intent.succeeded", setup_intent(member.account.id) | change)
    assert deliver(delivery).json()["status"] == "ignored"
    assert note in WebhookEvent.objects.get(event_id=delivery["id"]).last_error
    assert saved(member) is None


def test_the_newest_save_wins_whatever_the_arrival_order(fake_stripe, member):
    now = int(time.time())
    newer = event("setup_intent.succeeded", setup_intent(member.account.id, pm="pm_new"), created=now)
    older = event("setup_intent.succeeded", setup_intent(member.account.id, pm="pm_old"), created=now - 60)
    assert deliver(newer).json()["status"] == "processed"
    assert deliver(older).json()["status"] == "processed"
    assert saved(member).provider_payment_method_id == "pm_new"
    assert "older" in WebhookEvent.objects.get(event_id=older["id"]).last_error


def test_delete_forgets_the_card_turns_auto_recharge_off_and_a_late_event_cannot_bring_it_back(fake_stripe, member):
    before = int(time.time()) - 5
    first = event("setup_intent.succeeded", setup_intent(member.account.id), created=before - 5)
    assert deliver(first).json()["status"] == "processed"
    response = client_for(member).patch(ACCOUNT_URL, data={
        "auto_recharge_enabled": True, "auto_recharge_threshold_usd": "5.00", "auto_recharge_amount_usd": "20.00",
    }, format="json")
    assert response.status_code == 200, response.content

    response = client_for(member).delete(PM_URL)
    assert response.status_code == 204
    error_of(client_for(member).get(PM_URL), 404, "payment_method_not_found")
    error_of(client_for(member).delete(PM_URL), 404, "payment_method_not_found")
    account = client_for(member).get(ACCOUNT_URL).json()
    assert (account["auto_recharge_enabled"], account["has_payment_method"]) == (False, False)
    assert auto_recharge_of(member.account.id).threshold_usd == Decimal("5.00")
    assert CreditAccount.objects.get(pk=member.account.id).low_balance_threshold is None  # off: no hook

    # A delivery of an event from before the removal (a retried one) changes nothing...
    late = event("checkout.session.completed", _setup_session_object(member, setup_intent(member.account.id)),
                 created=before)
    assert deliver(late).json()["status"] == "processed"
    assert saved(member) is None
    # ...a card saved afterwards is saved.
    again = event("setup_intent.succeeded", setup_intent(member.account.id, pm="pm_again"),
                  created=int(time.time()) + 5)
    assert deliver(again).json()["status"] == "processed"
    assert saved(member).provider_payment_method_id == "pm_again"


def test_delete_without_a_card_or_an_account_is_404(fake_stripe, member, platform):
    error_of(client_for(member).delete(PM_URL), 404, "payment_method_not_found")
    newcomer = make_member(platform, "nina")
    CreditAccount.objects.filter(pk=newcomer.account.id).delete()
    error_of(client_for(newcomer).get(PM_URL), 404, "payment_method_not_found")
    error_of(client_for(newcomer).delete(PM_URL), 404, "payment_method_not_found")


def _setup_session_object(member, setup: dict | str) -> dict:
    metadata = ours(member.account.id)
    return {"id": next_id("cs"), "object": "checkout.session", "mode": "setup", "status": "complete",
            "payment_status": "no_payment_required", "customer": "cus_setup_1", "setup_intent": setup,
            "metadata": metadata}


def test_a_completed_setup_session_reads_its_setup_intent_from_stripe(fake_stripe, member,
                                                                      django_capture_on_commit_callbacks):
    reads: list = []
    body = setup_intent(member.account.id, payment_method={
        "id": "pm_setup_1", "object": "payment_method", "type": "card", "card": {"brand": "amex", "last4": "0005"}})

    def answer(request):
        reads.append(request.args.to_dict(flat=False))
        return Response(json.dumps(body), status=200, content_type="application/json")

    fake_stripe.server.expect_request("/v1/setup_intents/seti_test_1", method="GET").respond_with_handler(answer)
    delivery = event("checkout.session.completed", _setup_session_object(member, "seti_test_1"))
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(delivery).json()["status"] == "processed"
    assert reads == [{"expand[0]": ["payment_method"]}]
    card = saved(member)
    assert (card.provider_customer_id, card.provider_payment_method_id, card.brand, card.last4) == (
        "cus_setup_1", "pm_setup_1", "amex", "0005")
    # The top-up checkout path (payment mode) never sees a setup session.
    assert Order.objects.count() == 0


def test_a_completed_setup_session_of_another_integration_is_ignored(fake_stripe, member):
    obj = _setup_session_object(member, "seti_x") | {"metadata": {}}
    assert deliver(event("checkout.session.completed", obj)).json()["status"] == "ignored"


def test_the_setup_intent_read_from_localstripe_saves_the_card(stripe_settings, member,  # noqa: F811
                                                              django_capture_on_commit_callbacks):
    """The real ``stripe`` library against localstripe: a SetupIntent confirmed with a card, then the session's
    completion (which names it only by id) delivered signed."""
    customer, method = stripe_settings.customer_with_card("4242424242424242")
    client = stripe_settings.client()
    created = client.v1.setup_intents.create(params={
        "customer": customer, "metadata": ours(member.account.id)})
    client.v1.setup_intents.confirm(created.id, params={"payment_method": method})
    obj = _setup_session_object(member, created.id) | {"customer": customer}
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(event("checkout.session.completed", obj)).json()["status"] == "processed"
    card = saved(member)
    assert (card.provider_customer_id, card.provider_payment_method_id, card.brand, card.last4) == (
        customer, method, "visa", "4242")


def test_recharge_payment_intents_still_settle_recharges(fake_stripe, member):
    """Routing is by metadata: a payment intent naming a recharge is auto-recharge's, even with an order id."""
    obj = intent({"id": "00000000-0000-0000-0000-000000000000"}) | {
        "metadata": {"recharge_id": "00000000-0000-0000-0000-000000000001", "order_id": "x"}}
    delivery = event("payment_intent.succeeded", obj)
    assert deliver(delivery).json()["status"] == "ignored"
    assert WebhookEvent.objects.get(event_id=delivery["id"]).last_error == "unknown recharge"


def test_real_responses_match_the_schema(fake_stripe, member, outsider):
    from django.test import Client

    from tests.test_service_endpoints import _check

    schema = Client().get("/api/schema/?format=json").json()
    _check(schema, PM_URL, "post", open_setup(member))
    _check(schema, PM_URL, "post", open_setup(member, success_url="https://evil.test/"))
    _check(schema, PM_URL, "get", client_for(member).get(PM_URL))
    _check(schema, PM_URL, "delete", client_for(member).delete(PM_URL))
    deliver(event("setup_intent.succeeded", setup_intent(member.account.id)))
    _check(schema, PM_URL, "get", client_for(member).get(PM_URL))
    _check(schema, PM_URL, "get", client_for(outsider, platform_key="acme").get(PM_URL))
    assert client_for(member).delete(PM_URL).status_code == 204


# --- the card must be the account's: its platform, its Stripe customer ----------------------------------------


def test_a_setup_intent_naming_another_platform_or_a_foreign_customer_saves_nothing(
    fake_stripe, member, other_member, other_platform
):
    recharge.payment_method_save(account_id=member.account.id, customer_id="cus_member", payment_method_id="pm_m")
    recharge.payment_method_save(account_id=other_member.account.id, customer_id="cus_other",
                                 payment_method_id="pm_o")
    later = int(time.time()) + 5
    wrong_platform = setup_intent(member.account.id, customer="cus_member", pm="pm_new")
    wrong_platform["metadata"]["platform_id"] = str(other_platform.pk)
    no_platform = setup_intent(member.account.id, customer="cus_member", pm="pm_new")
    del no_platform["metadata"]["platform_id"]
    foreign_customer = setup_intent(member.account.id, customer="cus_other", pm="pm_o")
    for obj, note in [(wrong_platform, "names platform"), (no_platform, "names platform"),
                      (foreign_customer, "not the account's (cus_member)")]:
        delivery = event("setup_intent.succeeded", obj, created=later)
        assert deliver(delivery).json()["status"] == "ignored"
        assert note in WebhookEvent.objects.get(event_id=delivery["id"]).last_error
    card = SavedPaymentMethod.objects.get(account_id=member.account.id)
    assert (card.provider_customer_id, card.provider_payment_method_id) == ("cus_member", "pm_m")
    # The same event for the account's own customer and platform is saved.
    own = setup_intent(member.account.id, customer="cus_member", pm="pm_new")
    assert deliver(event("setup_intent.succeeded", own, created=later)).json()["status"] == "processed"
    assert saved(member).provider_payment_method_id == "pm_new"


def test_a_setup_session_naming_another_platform_reads_nothing_from_stripe(fake_stripe, member, other_platform):
    obj = _setup_session_object(member, "seti_x")
    obj["metadata"]["platform_id"] = str(other_platform.pk)
    delivery = event("checkout.session.completed", obj)
    assert deliver(delivery).json()["status"] == "ignored"
    assert "names platform" in WebhookEvent.objects.get(event_id=delivery["id"]).last_error
    assert fake_stripe.requests == [] and saved(member) is None


def test_a_top_up_without_a_recorded_customer_keeps_only_the_accounts_customer(fake_stripe, member):
    recharge.payment_method_save(account_id=member.account.id, customer_id="cus_member", payment_method_id="pm_m")
    order = Order.objects.create(
        platform=member.platform, account=member.account, user=member.user, type="top_up", channel="stripe",
        amount_usd=Decimal("25.00"), credits=Decimal(25), success_url=SUCCESS_URL, cancel_url=CANCEL_URL,
    )
    assert order.provider_customer_id == ""
    delivery = event("payment_intent.succeeded", intent(order, customer="cus_other", payment_method="pm_o"))
    assert deliver(delivery).json()["status"] == "ignored"
    assert "not the account's (cus_member)" in WebhookEvent.objects.get(event_id=delivery["id"]).last_error
    assert saved(member).provider_payment_method_id == "pm_m"
    delivery = event("payment_intent.succeeded", intent(order, customer="cus_member", payment_method="pm_new"))
    assert deliver(delivery).json()["status"] == "processed"
    assert saved(member).provider_payment_method_id == "pm_new"


# --- saves ordered by the events' time ------------------------------------------------------------------------


def test_an_event_without_a_time_cannot_bring_a_removed_card_back(fake_stripe, member):
    recharge.payment_method_save(account_id=member.account.id, customer_id="cus_setup_1", payment_method_id="pm_1")
    assert client_for(member).delete(PM_URL).status_code == 204
    assert recharge.payment_method_save(
        account_id=member.account.id, customer_id="cus_setup_1", payment_method_id="pm_1", as_of=None) is None
    assert saved(member) is None


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_saves_keep_the_newest(platform):
    """No row yet: the account's lock serialises the first saves, so the newer event wins although the older
    one commits last (without it, the older one's insert waited on the newer one's and then overwrote it)."""
    account_id = make_member(platform, "nina").account.id
    newer = timezone.now()
    first_saved, older_pid_known, errors = threading.Event(), threading.Event(), []
    older_pid: list[str] = []

    def save_newer() -> None:
        try:
            with transaction.atomic():
                recharge.payment_method_save(account_id=account_id, customer_id="cus_1", payment_method_id="pm_new",
                                             as_of=newer)
                first_saved.set()
                assert older_pid_known.wait(10) and older_pid
                wait_until_blocked(older_pid[0])  # the older save now waits for the account's lock
        except BaseException as exc:  # noqa: BLE001 - reported below (an AssertionError: the race did not happen)
            errors.append(exc)
        finally:
            first_saved.set()
            connection.close()

    def save_older() -> None:
        try:
            older_pid.append(backend_tag())
            older_pid_known.set()
            first_saved.wait(10)
            recharge.payment_method_save(account_id=account_id, customer_id="cus_1", payment_method_id="pm_old",
                                         as_of=newer - timedelta(seconds=60))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            older_pid_known.set()
            connection.close()

    threads = [threading.Thread(target=work, daemon=True) for work in (save_newer, save_older)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert SavedPaymentMethod.objects.get(account_id=account_id).provider_payment_method_id == "pm_new"


def test_post_with_a_bad_redirect_writes_nothing(fake_stripe, platform):
    newcomer = make_member(platform, "nina")
    CreditAccount.objects.filter(pk=newcomer.account.id).delete()
    before = db_snapshot()
    invalid_field(open_setup(newcomer, success_url="https://evil.test/x"), "success_url")
    assert db_snapshot() == before and fake_stripe.requests == []
