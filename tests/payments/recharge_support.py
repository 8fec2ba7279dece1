"""Helpers of the auto-recharge tests: writing and reading an account's auto-recharge settings (payments'
``AutoRechargeSettings``, kept with the account's ``low_balance_threshold`` as the service keeps it), and an
HTTP-level fake of Stripe's ``POST /v1/payment_intents`` (pytest-httpserver, beside the Checkout fake of
``fake_stripe``) for the tests whose cards are not localstripe's: the real ``stripe`` library and our provider
module talk to it over HTTP; nothing of ours is replaced."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from payments.recharge import auto_recharge_admin_save
from payments.recharge_models import AutoRechargeSettings
from tests.payments.conftest import FakeStripe

_ids = itertools.count(1)


def auto_recharge_set(account_id: Any, **fields: Any) -> AutoRechargeSettings:
    """Writes the given settings (``enabled``, ``threshold_usd``, ``amount_usd``, ``spending_limit_usd``) as they
    are: without the API's checks (a saved card, the top-up range), but through the service's save, so the
    account's ``low_balance_threshold`` follows them as it does in production."""
    settings = AutoRechargeSettings.objects.filter(pk=account_id).first() or AutoRechargeSettings(account_id=account_id)
    for name, value in fields.items():
        setattr(settings, name, value)
    auto_recharge_admin_save(settings=settings)
    return settings


def auto_recharge_of(account_id: Any) -> AutoRechargeSettings:
    """The account's settings as stored (an unsaved default, off and empty, without a row)."""
    return AutoRechargeSettings.objects.filter(pk=account_id).first() or AutoRechargeSettings(account_id=account_id)


@dataclass
class PaymentIntents:
    """``POST /v1/payment_intents`` as Stripe answers it: a PaymentIntent in ``status`` (its id ``intent_id``), a
    card error (``status="declined"``: HTTP 402, ``card_declined``, the PaymentIntent named in the error) or a
    server error (``status="error"``: HTTP 500, what a retry with the same key may get past). Every request is
    recorded in ``sent`` (its form and idempotency key); ``before_answer`` runs first (in the server's thread)."""

    status: str = "error"
    intent_id: str = "pi_x"
    decline_message: str = "Your card was declined."
    sent: list[dict[str, Any]] = field(default_factory=list)
    before_answer: Callable[[dict[str, str]], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, request: Request) -> Response:
        form = request.form.to_dict()
        with self.lock:
            self.sent.append({"form": form, "key": request.headers.get("Idempotency-Key")})
        if self.before_answer is not None:
            self.before_answer(form)
        if self.status == "error":
            return _json(500, {"error": {"type": "api_error", "message": "Something went wrong on Stripe's end."}})
        intent = {
            "id": self.intent_id or f"pi_fake_{next(_ids):06d}", "object": "payment_intent",
            "amount": int(form["amount"]), "currency": form["currency"], "customer": form.get("customer"),
            "payment_method": form.get("payment_method"),
            "metadata": {k[len("metadata["):-1]: v for k, v in form.items() if k.startswith("metadata[")},
        }
        if self.status == "declined":
            return _json(402, {"error": {
                "type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
                "message": self.decline_message, "payment_intent": intent | {"status": "requires_payment_method"},
            }})
        return _json(200, intent | {"status": self.status})

    def answer(self, status: str) -> list[dict[str, Any]]:
        """Answers ``status`` from now on; returns the (new, empty) list of the requests that follow."""
        self.status, self.sent = status, []
        return self.sent

    def forms(self) -> list[dict[str, str]]:
        return [request["form"] for request in self.sent]


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


@pytest.fixture
def payment_intents(fake_stripe: FakeStripe, httpserver: HTTPServer) -> PaymentIntents:
    """Stripe's PaymentIntents endpoint on the ``fake_stripe`` server (settings point the library there)."""
    fake = PaymentIntents()
    httpserver.expect_request("/v1/payment_intents", method="POST").respond_with_handler(fake.handle)
    return fake
