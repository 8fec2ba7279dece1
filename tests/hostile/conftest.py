"""The hostile-input suite's world (``test_schema_fuzz.py``): a live server with seeded data, local fakes of
Stripe and Creem (webhook secrets set, so signatures are checked), the schemathesis configuration (fixed seed,
derandomized, no example database, positive and negative data), and the generation steering that points
generated ids at seeded rows.

Also what the fuzz test uses for each call: a cheap fingerprint of every billing table (``db_fingerprint``), the
live server's logged tracebacks (``ServerErrors``), and a readable account of a failing exchange
(``describe_exchange``)."""

from __future__ import annotations

import itertools
import json
import logging
import threading
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
import requests
import schemathesis
from django.apps import apps
from django.db import connection
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import REQUEST_SHAPE_PROBES, TestPhase
from werkzeug import Request, Response

from accounts.models import Role
from credits.models import CreditAccount
from credits.services import (
    UsageInput,
    credits_adjust,
    hold_create,
    hold_release,
    model_price_create,
    usage_record,
)
from payments.models import Order
from payments.recharge_models import SavedPaymentMethod
from subscriptions.services import plan_create, subscription_start
from tests.api_helpers import post_json
from tests.conftest import Member, client_for, make_member, make_platform
from tests.payments.creem_support import API_KEY as CREEM_API_KEY
from tests.payments.creem_support import WEBHOOK_SECRET as CREEM_WEBHOOK_SECRET
from tests.payments.creem_support import FakeCreem
from tests.payments.recharge_support import auto_recharge_set

# --- budget and determinism --------------------------------------------------------------------------------------

SEED = 20_251_107  # one fixed Hypothesis seed for every operation (schemathesis derives one per operation from it)
# Generated cases per operation in the fuzzing phase (positive and negative together); the coverage and examples
# phases add their own deterministic cases. Chosen so the whole suite stays under ~3 minutes on 2 cores.
OWNER_MAX_EXAMPLES = 60
MEMBER_MAX_EXAMPLES = 20
REQUEST_TIMEOUT = 20.0  # seconds; the fakes answer at once, so anything near this is a hang

# --- the fakes' identities -------------------------------------------------------------------------------------

STRIPE_SECRET_KEY = "sk_test_fake_123"
STRIPE_WEBHOOK_SECRET = "whsec_test_secret_456"
APP_ORIGIN = "https://app.acme.test"
ALLOWED_URLS = [f"{APP_ORIGIN}/billing", f"{APP_ORIGIN}/billing?paid=1&session={{CHECKOUT_SESSION_ID}}"]
CREEM_PRODUCT_ID = "prod_pro_monthly"
PRICED_MODELS = ["gpt-4o", "meta-llama/Llama-3-70b"]
SEED_REQUEST_IDS = ["seed-hold-1", "seed-usage-1"]
SEED_IDEMPOTENCY_KEYS = ["seed-adjust-1"]


class FakeStripe:
    """The Stripe endpoints the service calls from a request: Checkout Sessions (modes payment, setup and
    subscription), Billing Portal sessions and off-session PaymentIntents (auto-recharge), answered as Stripe
    answers them. Any other route is a 404, as at
    Stripe, which the service must turn into its documented 502."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0

    def _next(self, prefix: str) -> str:
        with self.lock:
            self.count += 1
            return f"{prefix}_test_h{self.count:06d}"

    @staticmethod
    def _refused(request: Request) -> Response | None:
        if request.headers.get("Authorization") != f"Bearer {STRIPE_SECRET_KEY}":
            return _stripe_error(401, "authentication_error", "Invalid API Key provided")
        if not request.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            return _stripe_error(400, "invalid_request_error", "form-encoded body expected")
        return None

    def checkout(self, request: Request) -> Response:
        form = request.form.to_dict()
        refused = self._refused(request)
        if refused is not None:
            return refused
        mode = form.get("mode")
        if mode not in ("payment", "setup", "subscription") or "success_url" not in form:
            return _stripe_error(400, "invalid_request_error", "Missing required param: mode or success_url.")
        if "customer" in form and ("customer_email" in form or "customer_creation" in form):
            return _stripe_error(400, "invalid_request_error",
                                 "customer_email and customer_creation cannot be used with customer.")
        session_id = self._next("cs")
        body: dict[str, Any] = {
            "id": session_id,
            "object": "checkout.session",
            "mode": mode,
            "status": "open",
            "payment_status": "no_payment_required" if mode == "setup" else "unpaid",
            "client_reference_id": form.get("client_reference_id"),
            "metadata": {k[len("metadata["):-1]: v for k, v in form.items() if k.startswith("metadata[")},
            "customer": form.get("customer"),
            "payment_intent": None,
            "setup_intent": None,
            "subscription": None,
            "success_url": form["success_url"],
            "cancel_url": form.get("cancel_url"),
            "url": f"https://checkout.stripe.test/c/{mode}/{session_id}",
        }
        if mode == "subscription" and "line_items[0][price]" not in form:
            return _stripe_error(400, "invalid_request_error", "A subscription session needs a recurring price.")
        if mode == "payment":
            try:
                unit = int(form["line_items[0][price_data][unit_amount]"])
                quantity = int(form["line_items[0][quantity]"])
            except (KeyError, ValueError):
                return _stripe_error(400, "invalid_request_error", "line_items[0] needs price_data and quantity.")
            body |= {"amount_total": unit * quantity, "currency": form.get("line_items[0][price_data][currency]")}
        return Response(json.dumps(body), status=200, content_type="application/json")

    def payment_intent(self, request: Request) -> Response:
        """An off-session auto-recharge charge: accepted, its outcome left to a webhook (``processing``)."""
        form = request.form.to_dict()
        refused = self._refused(request)
        if refused is not None:
            return refused
        if not form.get("customer") or not form.get("payment_method") or not form.get("amount", "").isdigit():
            return _stripe_error(400, "invalid_request_error", "customer, payment_method and amount are required.")
        body = {"id": self._next("pi"), "object": "payment_intent", "status": "processing",
                "amount": int(form["amount"]), "currency": form.get("currency"), "customer": form["customer"],
                "payment_method": form["payment_method"]}
        return Response(json.dumps(body), status=200, content_type="application/json")

    def portal(self, request: Request) -> Response:
        form = request.form.to_dict()
        refused = self._refused(request)
        if refused is not None:
            return refused
        if not form.get("customer"):
            return _stripe_error(400, "invalid_request_error", "Missing required param: customer.")
        session_id = self._next("bps")
        body = {"id": session_id, "object": "billing_portal.session", "customer": form["customer"],
                "return_url": form.get("return_url"), "url": f"https://billing.stripe.test/p/session/{session_id}"}
        return Response(json.dumps(body), status=200, content_type="application/json")


def _stripe_error(status: int, kind: str, message: str) -> Response:
    return Response(json.dumps({"error": {"type": kind, "message": message}}), status=status,
                    content_type="application/json")


@pytest.fixture
def hostile_providers(settings, httpserver: HTTPServer) -> tuple[FakeStripe, FakeCreem]:
    """Stripe and Creem configured against local fakes, with their webhook secrets set (so the webhook
    endpoints check signatures instead of answering 503), and one allowed redirect origin."""
    settings.STRIPE_SECRET_KEY = STRIPE_SECRET_KEY
    settings.STRIPE_API_BASE = httpserver.url_for("/").rstrip("/")
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_WEBHOOK_SECRET
    settings.STRIPE_WEBHOOK_TOLERANCE = 300
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.STRIPE_TIMEOUT_SECONDS = 5
    settings.CREEM_API_KEY = CREEM_API_KEY
    settings.CREEM_API_BASE = httpserver.url_for("/").rstrip("/")
    settings.CREEM_WEBHOOK_SECRET = CREEM_WEBHOOK_SECRET
    settings.CREEM_TIMEOUT_SECONDS = 5
    settings.CHECKOUT_ALLOWED_ORIGINS = [APP_ORIGIN]
    stripe_fake, creem_fake = FakeStripe(), FakeCreem(httpserver)
    httpserver.expect_request("/v1/checkout/sessions", method="POST").respond_with_handler(stripe_fake.checkout)
    httpserver.expect_request("/v1/billing_portal/sessions", method="POST").respond_with_handler(stripe_fake.portal)
    httpserver.expect_request("/v1/payment_intents", method="POST").respond_with_handler(stripe_fake.payment_intent)
    httpserver.expect_request("/v1/checkouts", method="POST").respond_with_handler(creem_fake.handle)
    httpserver.no_handler_status_code = 404
    return stripe_fake, creem_fake


# --- seeded data ---------------------------------------------------------------------------------------------------


@dataclass
class World:
    live_url: str
    owner: Member
    member: Member
    other_member: Member
    outsider: Member
    ids: dict[str, list[str]] = field(default_factory=dict)  # field name -> seeded values worth substituting
    turns: Iterator[int] = field(default_factory=itertools.count)  # rotates ``steer``'s choice of path ids


@pytest.fixture
def hostile_world(live_server, hostile_providers) -> World:
    """Two platforms; in ``acme`` an owner, a member and another member, all with credits; a rate card of two
    models; plans (a Stripe one with prices, a Creem one, an inactive one); holds (active and released); a
    usage event; a manual adjustment with an Idempotency-Key; subscriptions; pending orders for the owner and
    the member (the member's with a Stripe customer); the member's saved card, with auto-recharge on. Committed: the live server runs on a transactional
    database, flushed after each test, so every operation starts from this same state."""
    platform = make_platform("acme", "Acme AI")
    other_platform = make_platform("globex", "Globex")
    owner = make_member(platform, "olivia", Role.OWNER, credits="500.00")
    member = make_member(platform, "mia", Role.MEMBER, credits="100.00")
    other_member = make_member(platform, "max", Role.MEMBER, credits="50.00")
    outsider = make_member(other_platform, "gina", Role.ADMIN, credits="10.00")

    for model, (inp, out) in zip(PRICED_MODELS, [("2.50", "10.00"), ("0.60", "0.80")], strict=True):
        model_price_create(platform=platform, model=model, input_per_million=Decimal(inp),
                           output_per_million=Decimal(out), description="seed", actor=owner.user)
    model_price_create(platform=other_platform, model="gpt-4o", input_per_million=Decimal("1"),
                       output_per_million=Decimal("2"), actor=outsider.user)
    pro = plan_create(platform=platform, slug="pro", name="Pro", price_monthly=2000, price_yearly=20000,
                      credits_included=Decimal("500"), features=["Priority support"],
                      stripe_price_monthly="price_pro_m", stripe_price_yearly="price_pro_y")
    creem = plan_create(platform=platform, slug="creem-pro", name="Creem Pro", price_monthly=2000, price_yearly=0,
                        credits_included=Decimal("300"), creem_product_id=CREEM_PRODUCT_ID)
    retired = plan_create(platform=platform, slug="legacy", name="Legacy", price_monthly=500, price_yearly=5000,
                          credits_included=Decimal("50"), is_active=False, purchasable=False)
    foreign = plan_create(platform=other_platform, slug="pro", name="Globex Pro", price_monthly=100,
                          price_yearly=1000, credits_included=Decimal("10"))

    active = hold_create(account_id=member.account.id, amount=Decimal("5.00"), idempotency_key=SEED_REQUEST_IDS[0],
                         actor=owner.user).hold
    owner_hold = hold_create(account_id=owner.account.id, amount=Decimal("1.25"), actor=owner.user).hold
    released = hold_create(account_id=other_member.account.id, amount=Decimal("2.00"), actor=owner.user).hold
    hold_release(hold_id=released.id)
    foreign_hold = hold_create(account_id=outsider.account.id, amount=Decimal("1.00"), actor=outsider.user).hold
    usage_record(platform=platform, actor=owner.user, usage=UsageInput(
        account_id=member.account.id, request_id=SEED_REQUEST_IDS[1], endpoint="/v1/chat/completions",
        model=PRICED_MODELS[0], input_tokens=1000, output_tokens=200))
    credits_adjust(account_id=member.account.id, amount=Decimal("-1.50"), description="seed correction",
                   idempotency_key=SEED_IDEMPOTENCY_KEYS[0], actor=owner.user)
    # The member is subscribed (a second subscription checkout is a 409), the owner is not (it is a 201).
    subscription_start(account_id=member.account.id, plan_id=pro.id, billing_cycle="monthly", provider="manual")
    subscription_start(account_id=other_member.account.id, plan_id=creem.id, billing_cycle="monthly",
                       provider="manual")

    orders = []
    for who in (owner, member):
        response = post_json(client_for(who), "/api/billing/checkout/", {
            "channel": "stripe", "type": "top_up", "amount": "25.00",
            "success_url": ALLOWED_URLS[0], "cancel_url": ALLOWED_URLS[0]})
        assert response.status_code == 201, response.content
        orders.append(response.json()["order_id"])
    # The member has paid through Stripe before (a customer), so the billing portal reaches Stripe for them;
    # the owner has not (409 no_billing_customer).
    Order.objects.filter(pk=orders[1]).update(provider_customer_id="cus_test_member")
    # ... and saved a card, with auto-recharge on: a debit that leaves them under 90 credits charges it.
    SavedPaymentMethod.objects.create(account=member.account, provider_customer_id="cus_test_member",
                                      provider_payment_method_id="pm_test_member", brand="visa", last4="4242")
    auto_recharge_set(member.account.pk, enabled=True, threshold_usd=Decimal("90.00"),
                      amount_usd=Decimal("20.00"), spending_limit_usd=Decimal("100.00"))

    accounts = [str(m.account.id) for m in (member, owner, other_member, outsider)]
    world = World(live_url=live_server.url, owner=owner, member=member, other_member=other_member,
                  outsider=outsider)
    world.ids = {
        "account_id": accounts,
        "plan_id": [str(pro.id), pro.slug, str(creem.id), creem.slug, str(retired.id), str(foreign.id)],
        "hold_id": [str(active.id), str(owner_hold.id), str(released.id), str(foreign_hold.id)],
        "order_id": orders,
        "model": [*PRICED_MODELS, "gpt-4o-mini"],
        "request_id": SEED_REQUEST_IDS,
        "success_url": ALLOWED_URLS,
        "cancel_url": ALLOWED_URLS,
        "return_url": ALLOWED_URLS,
        "platform_key": ["acme", "globex"],
        "X-Platform-Key": ["acme", "globex"],
        "Idempotency-Key": SEED_IDEMPOTENCY_KEYS,
    }
    if not CURRENT.schema_checked:  # once a session: the live server serves the document the tests came from
        live = requests.get(f"{live_server.url}{SCHEMA_URL}", headers={"Accept": SCHEMA_ACCEPT},
                            timeout=REQUEST_TIMEOUT)
        assert live.status_code == 200, live.text[:500]
        assert parse_schema(live.content) == served_schema(), "the live server serves another schema"
        CURRENT.schema_checked = True
    CURRENT.world = world
    yield world
    CURRENT.world = None


# --- steering generation towards the seeded rows ------------------------------------------------------------------
#
# Random UUIDs, slugs and URLs never name a seeded row or an allowed origin, so nearly every call would stop at a
# 404 (or at the redirect check) before the code behind it. Two ways in, both deterministic:
#  - fuzzing phase: generation hooks (``install_hooks``) let Hypothesis swap a generated id, key or URL for a
#    seeded one (or keep it);
#  - coverage and examples phases (fixed cases, no Hypothesis draws): ``steer`` replaces the ids the case is not
#    about (a case about the body gets a real hold in its path, a case about ``hold_id`` keeps its own).

_KEEP = object()


def _substitutions(values: dict[str, Any], ids: dict[str, list[str]]) -> st.SearchStrategy[dict[str, Any]]:
    """``values`` as generated, or with some of its known fields replaced by seeded values (shrinks towards
    the generated one). Random UUIDs and names never hit the seeded rows; this way some calls do."""
    if not isinstance(values, dict):
        return st.just(values)
    keys = [key for key in values if key in ids]
    nested = isinstance(values.get("events"), list)
    if not keys and not nested:
        return st.just(values)
    picks = {key: st.sampled_from([_KEEP, *ids[key]]) for key in keys}
    if nested:
        picks["events"] = st.sampled_from([_KEEP, *ids["account_id"]])

    def apply(chosen: dict[str, Any]) -> dict[str, Any]:
        result = dict(values)
        for key, value in chosen.items():
            if value is _KEEP:
                continue
            if key == "events":
                result["events"] = [
                    {**event, "account_id": value} if isinstance(event, dict) and "account_id" in event else event
                    for event in values["events"]
                ]
            else:
                result[key] = value
        return result

    return st.fixed_dictionaries(picks).map(apply)


def steer(case: Any, world: World) -> None:
    """Points a coverage- or examples-phase case at seeded rows: every id, key or URL it carries that the case
    does not target is replaced by a seeded value (path ids rotate through the seeded rows: an active, a
    foreign-platform, a released hold...; the rest take the first, most useful, value)."""
    meta = case.meta
    if meta is None or meta.phase.name not in (TestPhase.COVERAGE, TestPhase.EXAMPLES):
        return
    data = meta.phase.data
    if getattr(data, "scenario", None) in REQUEST_SHAPE_PROBES:
        return
    turn = next(world.turns)
    targeted_location, targeted_name = data.parameter_location, data.parameter
    pointer = data.location or ""
    for location, values in ((ParameterLocation.PATH, case.path_parameters), (ParameterLocation.QUERY, case.query),
                             (ParameterLocation.HEADER, case.headers)):
        if not isinstance(values, dict):
            continue
        for name in list(values):
            if name not in STEERED or name not in world.ids:
                continue
            if targeted_location == location and (targeted_name in (None, name)):
                continue
            options = world.ids[name]
            values[name] = options[turn % len(options)] if location == ParameterLocation.PATH else options[0]
    if isinstance(case.body, dict):
        for name in list(case.body):
            targeted = targeted_location == ParameterLocation.BODY and f"/properties/{name}/" in f"{pointer}/"
            if name in STEERED and name in world.ids and not targeted:
                case.body[name] = world.ids[name][0]


# Names whose generated values are replaced by seeded ones in fixed (coverage, examples) cases.
STEERED = frozenset({"hold_id", "plan_id", "order_id", "model", "account_id", "success_url", "cancel_url",
                     "return_url", "X-Platform-Key"})


# --- the schemathesis configuration --------------------------------------------------------------------------------


def fuzz_config(*, max_examples: int) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large", "large_base_example"],
        "request-timeout": REQUEST_TIMEOUT,
        "generation": {
            "mode": "all",  # positive and negative (schema-violating) inputs
            "max-examples": max_examples,
            "deterministic": True,  # derandomized; the explicit seed above takes precedence for the draws
            "database": "none",  # no Hypothesis example database: a run never depends on an earlier one
        },
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},  # boundary and invalid values, deterministically
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": False},
        },
        "output": {"truncation": {"max-payload-size": 800, "max-lines": 25}},
    })


def served_schema() -> dict[str, Any]:
    """``/api/schema/`` as the application serves it (in-process: the tests are collected before any server
    runs; ``hostile_world`` checks that the live server serves the same document)."""
    from django.test import Client

    response = Client().get(SCHEMA_URL, HTTP_ACCEPT=SCHEMA_ACCEPT)
    assert response.status_code == 200, response.content[:500]
    return parse_schema(response.content)


def parse_schema(content: bytes) -> dict[str, Any]:
    """JSON when the JSON renderer answered, else the YAML one (drf-spectacular serves both)."""
    try:
        return json.loads(content)
    except ValueError:
        import yaml

        return yaml.safe_load(content)


SCHEMA_URL = "/api/schema/"
SCHEMA_ACCEPT = "application/vnd.oai.openapi+json, application/json;q=0.9, */*;q=0.1"


def install_hooks(schema: Any) -> None:
    """Schema-level generation hooks that sometimes swap a generated id, key or URL for a seeded one."""
    for name in ("flatmap_body", "flatmap_path_parameters", "flatmap_query", "flatmap_headers"):

        def hook(context: Any, values: Any) -> st.SearchStrategy:
            return _substitutions(values, CURRENT.world.ids if CURRENT.world else {})

        hook.__name__ = name
        schema.hook(name)(hook)


class CURRENT:
    """The world of the running test, for the generation hooks (installed once, at collection)."""

    world: World | None = None
    schema_checked = False


# --- "a 4xx wrote nothing": a fingerprint of every billing table ---------------------------------------------------

_FINGERPRINT_APPS = ("accounts", "credits", "subscriptions", "payments")
_FINGERPRINT_EXTRA = (("auth", "User"),)


def fingerprint_tables() -> list[str]:
    tables = []
    for label in _FINGERPRINT_APPS:
        tables += [model._meta.db_table for model in apps.get_app_config(label).get_models()]
    tables += [apps.get_model(label, name)._meta.db_table for label, name in _FINGERPRINT_EXTRA]
    # A coupon code tried is recorded even when refused: the per-user rate limit counts failed guesses.
    tables.remove(apps.get_model("payments", "CouponAttempt")._meta.db_table)
    # So is a failed password login (POST /api/auth/jwt/ answering 401): the brute-force limits count them.
    tables.remove(apps.get_model("accounts", "LoginFailure")._meta.db_table)
    # And every request to a rate-limited public endpoint (webhooks, JWT): the limits count requests, refused or not.
    tables.remove(apps.get_model("accounts", "RateCounter")._meta.db_table)
    return sorted(set(tables))


_SQL: str | None = None


def db_fingerprint() -> dict[str, Counter]:
    """Every row of every billing table (ledger, holds, usage events and rollups, accounts with their balance,
    reserved and last_sequence, plans, subscriptions, model prices, orders, webhook events, recharges, saved
    payment methods, platforms, memberships, users, tokens) as an md5 of its text: one query, a few ms."""
    global _SQL
    if _SQL is None:
        _SQL = " UNION ALL ".join(
            f"SELECT '{table}', md5(t::text) FROM {connection.ops.quote_name(table)} t"
            for table in fingerprint_tables()
        )
    with connection.cursor() as cursor:
        cursor.execute(_SQL)
        rows = cursor.fetchall()
    result: dict[str, Counter] = {}
    for table, digest in rows:
        result.setdefault(table, Counter())[digest] += 1
    return result


def fingerprint_diff(before: dict[str, Counter], after: dict[str, Counter]) -> str:
    """What changed, table by table, with the new or changed rows (removed rows are only counted)."""
    lines = []
    for table in sorted(set(before) | set(after)):
        old, new = before.get(table, Counter()), after.get(table, Counter())
        if old == new:
            continue
        added, removed = new - old, old - new
        lines.append(f"{table}: {sum(old.values())} -> {sum(new.values())} rows; "
                     f"{sum(added.values())} new/changed, {sum(removed.values())} gone/changed")
        if added:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT row_to_json(t)::text FROM {connection.ops.quote_name(table)} t "
                    f"WHERE md5(t::text) = ANY(%s) LIMIT 5",
                    [list(added)],
                )
                for (row,) in cursor.fetchall():
                    lines.append(f"    + {_truncate(row, 400)}")
    return "\n".join(lines)


# --- the server's tracebacks ---------------------------------------------------------------------------------------


class ServerErrors(logging.Handler):
    """Keeps the ``django.request`` errors (the unhandled exceptions behind a 500) the live server logs."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[str]:
        """The logged errors since the last call, each as its innermost frames in the project's code (not in
        site-packages) and the exception line."""
        texts = []
        for record in self.records:
            if not record.exc_info:
                texts.append(record.getMessage())
                continue
            frames = traceback.extract_tb(record.exc_info[2])
            own = [frame for frame in frames if "site-packages" not in frame.filename] or frames[-1:]
            lines = [f'File "{frame.filename}", line {frame.lineno}, in {frame.name}: {(frame.line or "").strip()}'
                     for frame in own[-4:]]
            lines += traceback.format_exception_only(record.exc_info[0], record.exc_info[1])
            texts.append("\n".join(line.rstrip() for line in lines))
        self.records.clear()
        return texts


@pytest.fixture
def server_errors() -> ServerErrors:
    """Collects the live server's logged tracebacks; the 4xx warnings (thousands of them) are not logged."""
    logger = logging.getLogger("django.request")
    handler = ServerErrors()
    previous = logger.level
    logger.setLevel(logging.ERROR)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


# --- readable failures ---------------------------------------------------------------------------------------------


def _truncate(text: Any, limit: int = 600) -> str:
    text = text if isinstance(text, str) else repr(text)
    return text if len(text) <= limit else f"{text[:limit]}... [{len(text) - limit} more characters]"


def describe_exchange(case: Any, response: Any, tracebacks: list[str], writes: str = "") -> str:
    request = response.request
    body = request.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "backslashreplace")
    headers = {k: v for k, v in request.headers.items()
               if k.lower() in ("content-type", "x-platform-key", "idempotency-key", "stripe-signature",
                                "creem-signature")}
    lines = [
        f"operation: {case.operation.label}",
        f"request:   {request.method} {_truncate(request.url, 400)}",
        f"  headers: {_truncate(headers, 300)}",
        f"  body:    {_truncate(body, 600)}",
        f"response:  {response.status_code}",
        f"  body:    {_truncate(response.text, 600)}",
    ]
    for text in tracebacks:
        lines.append("server traceback (innermost project frames):")
        lines += [f"    {line}" for line in text.splitlines()]
    if writes:
        lines.append("rows written by the refused request:")
        lines += [f"    {line}" for line in writes.splitlines()]
    return "\n".join(lines)
