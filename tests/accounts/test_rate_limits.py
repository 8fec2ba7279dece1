"""Rate limits of the public endpoints: the payment providers' webhooks and the JWT endpoints, per client address,
counted in PostgreSQL (every worker of every server shares the count); beyond the limit a 429 with Retry-After."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import checks
from django.test import Client
from django.utils import timezone

from accounts.models import RateCounter
from accounts.throttles import rate_limits_check, rate_parse
from tests.api_helpers import error_of

pytestmark = pytest.mark.django_db

WEBHOOKS = ["/api/billing/webhooks/stripe/", "/api/billing/webhooks/creem/"]
JWT = "/api/auth/jwt/"


@pytest.fixture
def limits(settings):  # noqa: ANN001, ANN201
    settings.RATE_LIMITS = {"webhooks": "3/minute", "auth": "2/hour"}
    settings.STRIPE_WEBHOOK_SECRET = "whsec_test"
    settings.CREEM_WEBHOOK_SECRET = "creem_test"
    return settings


def post(url: str, address: str = "198.51.100.7"):  # noqa: ANN201
    return Client(REMOTE_ADDR=address).post(url, data=b"{}", content_type="application/json")


@pytest.mark.parametrize("url", WEBHOOKS)
def test_webhooks_beyond_the_limit_are_429_with_retry_after(limits, url):
    assert [post(url).status_code for _ in range(3)] == [400, 400, 400]  # unsigned: refused, but counted

    refused = post(url)
    error = error_of(refused, 429, "throttled")
    assert error["message"]
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert post(url, address="203.0.113.9").status_code == 400  # another address has its own count


def test_the_providers_share_one_webhook_budget_per_address(limits):
    statuses = [post(WEBHOOKS[i % 2]).status_code for i in range(4)]
    assert statuses == [400, 400, 400, 429]


def test_jwt_endpoints_are_limited_apart_from_webhooks(limits):
    body = b'{"username": "nobody", "password": "x"}'
    client = Client(REMOTE_ADDR="198.51.100.7")
    statuses = [client.post(JWT, data=body, content_type="application/json").status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
    assert post(WEBHOOKS[0]).status_code == 400  # the webhook budget is untouched


def test_behind_a_trusted_proxy_the_address_it_saw_counts(limits):
    limits.TRUSTED_PROXY_COUNT = 1
    proxy = "10.0.0.1"

    def via(client_ip: str) -> int:
        return Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=client_ip).post(
            WEBHOOKS[0], data=b"{}", content_type="application/json").status_code

    assert [via("198.51.100.7") for _ in range(4)] == [400, 400, 400, 429]
    assert via("198.51.100.8") == 400


def test_closed_windows_are_forgotten_as_new_ones_open(limits):
    old = timezone.now() - timedelta(hours=3)
    RateCounter.objects.create(key="webhooks:192.0.2.1", window_start=old, count=99)
    RateCounter.objects.create(key="auth:192.0.2.1", window_start=old + timedelta(hours=2, minutes=50), count=1)
    post(WEBHOOKS[0])
    keys = set(RateCounter.objects.values_list("key", flat=True))
    assert "webhooks:192.0.2.1" not in keys  # a closed minute window of the same scope
    assert "auth:192.0.2.1" in keys  # another scope's (hourly) window is not this scope's to close
    assert RateCounter.objects.get(key="webhooks:198.51.100.7").count == 1


def test_an_empty_rate_is_no_limit(limits):
    limits.RATE_LIMITS = {"webhooks": "", "auth": ""}
    assert {post(WEBHOOKS[0]).status_code for _ in range(5)} == {400}
    assert not RateCounter.objects.exists()


@pytest.mark.parametrize("rate, parsed", [("1/second", (1, 1)), ("600/minute", (600, 60)), ("5/hour", (5, 3600)),
                                          ("9/day", (9, 86400))])
def test_rates_parse(rate, parsed):
    assert rate_parse(rate) == parsed


@pytest.mark.parametrize("rate", ["0/minute", "-1/minute", "ten/minute", "5/week", "5", "5/min", "1.5/minute"])
def test_a_bad_rate_is_a_configuration_error(settings, rate):
    settings.RATE_LIMITS = {"webhooks": rate}
    [error] = rate_limits_check()
    assert isinstance(error, checks.Error) and error.id == "accounts.E001" and "webhooks" in error.msg
