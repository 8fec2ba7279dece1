"""The billing page in a real headless Chromium, driven by Playwright: sign in by link, see the credits and the
usage chart, filter the history, upgrade through a stand-in of Stripe Checkout (a page that completes the session
and fires the signed webhook at the live server) and see the new plan, a refused top-up and a refused
auto-recharge value with the API's messages, and never another member's data.

Chromium is Debian's (``chromium``: Playwright's own browser download is not reachable here); ``make test``
installs it where it can (``scripts/ensure-chromium``). Without it these tests are skipped, saying why.
Screenshots of each state go to ``var/screenshots/`` (not committed)."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import stripe
from django.conf import settings as django_settings
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from credits.services import credits_debit
from tests.api_helpers import post_json
from tests.conftest import client_for, make_member
from tests.credits.test_usage_stats import rollup, today
from tests.payments.conftest import session_event
from tests.payments.stripe_subscriptions import SECRET_KEY, WEBHOOK_SECRET, next_id, session_completed
from tests.subscriptions.conftest import make_plan

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(django_settings.BASE_DIR) / "var" / "screenshots"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here: `apt-get install chromium` (make test tries)"),
]


class StripeCheckoutPage:
    """Stripe's hosted Checkout, played by a local server: the API call that opens a session (mode
    subscription), the page the member pays on, and the signed ``checkout.session.completed`` it then sends to
    the service's webhook, before sending the member back to ``success_url``."""

    def __init__(self, httpserver: HTTPServer, webhook_url: str) -> None:
        self.httpserver, self.webhook_url = httpserver, webhook_url
        self.sessions: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def open_session(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {SECRET_KEY}":
            return Response(json.dumps({"error": {"type": "authentication_error"}}), status=401)
        form = request.form.to_dict()
        session_id = next_id("cs")
        amount = int(form.get("line_items[0][price_data][unit_amount]", 1000)) * int(
            form.get("line_items[0][quantity]", 1))
        session = {"id": session_id, "object": "checkout.session", "mode": form.get("mode"), "status": "open",
                   "order_id": form.get("client_reference_id"), "success_url": form["success_url"],
                   "amount_total": amount, "url": self.httpserver.url_for(f"/pay/{session_id}")}
        with self.lock:
            self.sessions[session_id] = session
        return Response(json.dumps(session), status=200, content_type="application/json")

    def page(self, request: Request) -> Response:
        session = self.sessions[request.path.rsplit("/", 1)[1]]
        if request.method == "GET":
            return Response(f'<!doctype html><title>Checkout</title><form method="post"><button>Pay</button></form>'
                            f'<p>{session["id"]}</p>', content_type="text/html")
        if session["mode"] == "subscription":
            event = session_completed(order_id=session["order_id"], session_id=session["id"],
                                      subscription_id=next_id("sub"), amount_total=session["amount_total"])
        else:  # a top-up: a one-off payment
            order = {"id": session["order_id"], "provider_checkout_id": session["id"]}
            event = session_event("checkout.session.completed", order, amount_total=session["amount_total"])
        payload = json.dumps(event)
        header = stripe.WebhookSignature.generate_signature_header(payload, WEBHOOK_SECRET)
        delivery = urllib.request.Request(self.webhook_url, data=payload.encode(), method="POST",
                                          headers={"Content-Type": "application/json", "Stripe-Signature": header})
        with urllib.request.urlopen(delivery, timeout=10) as answer:
            assert answer.status == 200
        return Response(status=303, headers={"Location": session["success_url"]})


@pytest.fixture
def stripe_checkout(settings, httpserver: HTTPServer, live_server) -> StripeCheckoutPage:  # noqa: ANN001
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_API_BASE = httpserver.url_for("/").rstrip("/")
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.CHECKOUT_ALLOWED_ORIGINS = [live_server.url]
    fake = StripeCheckoutPage(httpserver, f"{live_server.url}/api/billing/webhooks/stripe/")
    httpserver.expect_request("/v1/checkout/sessions", method="POST").respond_with_handler(fake.open_session)
    for method in ("GET", "POST"):
        httpserver.expect_request(__import__("re").compile(r"^/pay/.+$"), method=method).respond_with_handler(
            fake.page)
    return fake


@pytest.fixture
def browser(monkeypatch):  # noqa: ANN001, ANN201
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls of the test beside it are still
    # synchronous ones (Django would refuse them, seeing the loop).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def loaded(page: Any) -> None:
    """Waits until the sections below the top have replaced their placeholders (fetched after the first paint)."""
    page.wait_for_function("document.querySelectorAll('[data-fragment]').length === 0", timeout=15_000)


def shoot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in_link(admin: Any, member: Any, live_server: Any) -> str:
    response = post_json(client_for(admin), "/api/billing/admin/page-links/", {"username": member.user.username})
    assert response.status_code == 201, response.content
    return live_server.url + response.json()["url"].split("testserver", 1)[1]


def test_a_member_signs_in_sees_credits_and_usage_and_filters_history(browser, live_server, admin, member, platform):
    other = make_member(platform, "olga", credits="7")
    credits_debit(account_id=other.account.id, amount=Decimal("1"), description="olga's secret call")
    credits_debit(account_id=member.account.id, amount=Decimal("2.5"), description="chat call")
    rollup(member.account, today(), "/v1/chat", ok=3, credits="2.50")  # the day's usage figures
    page = browser.new_page()

    page.goto(sign_in_link(admin, member, live_server))
    loaded(page)

    assert page.url == f"{live_server.url}/billing/"
    assert page.get_by_test_id("available").inner_text() == "97.50"
    assert page.get_by_test_id("usage-chart").is_visible()
    assert "olga" not in page.content()
    shoot(page, "1-overview")
    page.get_by_label("Type").select_option("add")
    page.get_by_role("button", name="Filter").click()
    loaded(page)
    assert "1 transaction" in page.content() and "chat call" not in page.get_by_test_id("history").inner_text()
    shoot(page, "2-history-filtered")


def test_upgrade_through_checkout_shows_the_new_plan_once_the_webhook_landed(
        browser, live_server, stripe_checkout, admin, member, platform):
    make_plan(platform, "pro", name="Pro", description="For growing teams", price_monthly=1000,
              stripe_price_monthly="price_pro_m", features=["Priority support"])
    page = browser.new_page()
    page.goto(sign_in_link(admin, member, live_server))
    loaded(page)
    shoot(page, "3-plans")

    page.get_by_role("button", name="Upgrade").click()
    page.get_by_role("button", name="Pay").click()

    page.wait_for_url(f"{live_server.url}/billing/?checkout=done")
    page.get_by_text("Payment received").wait_for(timeout=15_000)
    assert page.get_by_test_id("plan").inner_text().startswith("Pro")
    loaded(page)
    shoot(page, "4-upgraded")


def test_a_top_up_through_checkout_adds_the_credits_once_the_webhook_landed(
        browser, live_server, stripe_checkout, admin, member):
    page = browser.new_page()
    page.goto(sign_in_link(admin, member, live_server))
    loaded(page)

    page.get_by_label("Amount (USD)").fill("25.00")
    page.get_by_role("button", name="Top up").last.click()
    page.get_by_role("button", name="Pay").click()

    page.wait_for_url(f"{live_server.url}/billing/?checkout=done")
    page.get_by_text("Payment received").wait_for(timeout=15_000)
    assert page.get_by_test_id("available").inner_text() == "125.00"
    loaded(page)
    shoot(page, "5-topped-up")


def test_refused_values_show_the_apis_messages(browser, live_server, admin, member, settings):
    settings.CHECKOUT_ALLOWED_ORIGINS = [live_server.url]
    settings.STRIPE_SECRET_KEY = "sk_test_unused"  # the amount is refused before Stripe is called
    page = browser.new_page()
    page.goto(sign_in_link(admin, member, live_server))
    loaded(page)

    page.get_by_label("Amount (USD)").fill("1.00")
    page.get_by_role("button", name="Top up").last.click()
    top_up = page.get_by_test_id("problem").inner_text()
    shoot(page, "6-top-up-refused")
    page.get_by_label("When available credits fall below (USD)").fill("-5")
    page.get_by_label("Top up by (USD)").fill("20")
    page.get_by_test_id("auto-recharge").get_by_role("button", name="Save").click()
    recharge = page.get_by_test_id("problem").inner_text()
    shoot(page, "7-auto-recharge-refused")

    assert "Amount (USD)" in top_up
    assert "When available credits fall below" in recharge and "greater than zero" in recharge
    assert page.get_by_label("When available credits fall below (USD)").input_value() == "-5"  # kept as typed
