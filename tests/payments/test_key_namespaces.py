"""The regression of hostile testing, end to end: an admin's manual adjustment sent with the key the next plan
period's grant derives (``Idempotency-Key: period:<subscription>:<period start>``) took that key; the grant then
failed with a 500 on every delivery until it was given up. Client keys now live in their own namespace."""

from __future__ import annotations

from decimal import Decimal

import pytest

from credits.models import LedgerEntry, TransactionType
from subscriptions.models import Subscription
from tests.conftest import client_for, make_member
from tests.payments import stripe_subscriptions
from tests.payments.conftest import deliver
from tests.payments.stripe_subscriptions import DAY, T0, invoice_paid, subscription_event
from tests.subscriptions.conftest import make_plan

stripe_billing = stripe_subscriptions.stripe_billing  # the fake Stripe fixture

pytestmark = pytest.mark.django_db


def test_an_adjustment_keyed_like_a_period_grant_does_not_take_it(stripe_billing, platform, admin):
    sam = make_member(platform, "sam")
    make_plan(platform, "pro", credits_included=Decimal(100), stripe_price_monthly="price_pro_m",
              stripe_price_yearly="price_pro_y")
    created = subscription_event("created", subscription_id="sub_ns", price_id="price_pro_m", period_start=T0,
                                 period_end=T0 + 31 * DAY, metadata={"account_id": str(sam.account.id)})
    assert deliver(created).status_code == 200
    subscription = Subscription.objects.get(provider_subscription_id="sub_ns")
    taken = f"period:{subscription.pk}:{T0}"
    response = client_for(admin).post(
        "/api/billing/admin/credits/manual/",
        {"account_id": str(sam.account.id), "amount": "1", "description": "goodwill"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=taken,
    )
    assert response.status_code == 201

    paid = invoice_paid(subscription_id="sub_ns", price_id="price_pro_m", period_start=T0, period_end=T0 + 31 * DAY,
                        metadata={"account_id": str(sam.account.id)}, created=T0 + 60,
                        billing_reason="subscription_create")
    answer = deliver(paid)
    assert answer.status_code == 200, answer.content
    assert answer.json()["status"] == "processed"
    grant = LedgerEntry.objects.get(account=sam.account, idempotency_key=taken)
    assert (grant.transaction_type, grant.balance_delta) == (TransactionType.ADD, Decimal(100))
    sam.account.refresh_from_db()
    assert sam.account.balance == Decimal(101)
