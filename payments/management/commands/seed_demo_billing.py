import json
from datetime import timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from accounts.models import Platform
from billing_service.errors import DomainError
from credits.models import ModelPrice, UsageEvent
from credits.selectors import account_for
from credits.services import credits_grant
from credits.services.rate_card import model_price_create
from credits.services.usage import usage_record
from credits.services.usage_events import UsageInput
from entitlements.catalogue import ai_plan_update
from entitlements.models import AIPlan
from payments import locks
from payments.models import Channel, Order, OrderType
from payments.orders import order_credit
from payments.plan_periods import period_grant
from subscriptions.models import Plan, Subscription
from subscriptions.services.plans import plan_create
from subscriptions.services.subscriptions import subscription_start

PLANS = [
    dict(slug="starter", name="Starter", description="For trying things out", price_monthly=900, price_yearly=9000,
         credits_included=Decimal("10"), features=["Chat and embeddings", "Email support"], sort_order=1),
    dict(slug="pro", name="Pro", description="For growing teams", price_monthly=2900, price_yearly=29000,
         credits_included=Decimal("40"), features=["Every model", "Priority support"], sort_order=2),
]
# Models of the everyday tier: alice's seat (seed_demo_seats) pays for them.
MODELS = [("gpt-4o-mini", "GPT-4o mini", Decimal("0.15"), Decimal("0.60")),
          ("claude-3-haiku", "Claude 3 Haiku", Decimal("0.25"), Decimal("1.25"))]
ENDPOINTS = [("/v1/chat", "gpt-4o-mini", 900, 400), ("/v1/chat", "claude-3-haiku", 1500, 600),
             ("/v1/embed", "gpt-4o-mini", 2000, 0)]
DAYS = 30


class Command(BaseCommand):
    help = ("Makes the demo platform (seed_demo) look alive on the billing page: plans on sale, a rate card, a month "
            "of alice's usage across endpoints and models (through the usage service), a paid top-up order (credited "
            "as the provider's webhook credits one) and bob's Starter plan with last month's credits rolled over "
            "(through the plan periods' grant). Idempotent.")

    def handle(self, *args, **options):  # noqa: ANN002, ANN003
        platform = Platform.objects.get(platform_key="demo")
        for fields in PLANS:
            if not Plan.objects.filter(platform=platform, slug=fields["slug"]).exists():
                plan_create(platform=platform, **fields)
        start = timezone.now() - timedelta(days=DAYS + 1)
        for model, _name, input_price, output_price in MODELS:
            if not ModelPrice.objects.filter(platform=platform, model=model).exists():
                model_price_create(platform=platform, model=model, input_per_million=input_price,
                                   output_per_million=output_price, effective_from=start, actor=None,
                                   description="demo rate card")
        everyday = AIPlan.objects.filter(slug="everyday").first()
        if everyday is not None and not everyday.models.exists():
            ai_plan_update(ai_plan_id=everyday.pk, models=[
                {"model": model, "display_name": name, "tier": "everyday"} for model, name, _, _ in MODELS])
        alice = account_for(platform=platform, user=platform.memberships.get(user__username="alice").user)
        credits_grant(account_id=alice.id, amount=Decimal("20.00"), description="Demo credits for usage",
                      idempotency_key="demo-usage-credits")
        recorded = refused = 0
        now = timezone.now()
        seeded = UsageEvent.objects.filter(account_id=alice.id, request_id__startswith="demo-").exists()
        for day in range(DAYS, 0, -1) if not seeded else ():  # a rerun leaves the month that was recorded
            for n, (endpoint, model, tokens_in, tokens_out) in enumerate(ENDPOINTS[: 1 + day % len(ENDPOINTS)]):
                moment = now - timedelta(days=day, hours=n * 7)
                usage = UsageInput(account_id=alice.id, request_id=f"demo-{day}-{n}", endpoint=endpoint, model=model,
                                   input_tokens=tokens_in * (1 + day % 4), output_tokens=tokens_out,
                                   success=(day + n) % 11 != 0, occurred_at=moment)
                try:
                    usage_record(platform=platform, usage=usage)
                    recorded += 1
                except DomainError:  # a seat's budget, say: the demo shows what the rules let through
                    refused += 1
        self._order(platform, alice)
        self._rollover(platform)
        self.stdout.write(json.dumps({"platform_key": "demo", "plans": [p["slug"] for p in PLANS],
                                      "models": [m[0] for m in MODELS], "usage_events": recorded,
                                      "refused": refused}))

    def _order(self, platform: Platform, account) -> None:  # noqa: ANN001
        """A paid Stripe top-up of 10.00: the pending order a checkout opens, then credited and marked paid as the
        provider's webhook does it (``payments.orders.order_credit``, under the order's lock)."""
        if Order.objects.filter(platform=platform, account=account).exists():
            return
        order = Order.objects.create(
            platform=platform, account=account, user=account.user, type=OrderType.TOP_UP, channel=Channel.STRIPE,
            amount_usd=Decimal("10.00"), credits=Decimal("10.00"), success_url="https://demo.example.com/billing",
            cancel_url="https://demo.example.com/billing", provider_checkout_id="cs_demo_alice_1")
        with transaction.atomic():
            order_credit(locks.order_lock(order_id=order.pk), amount_paid_usd=Decimal("10.00"))

    def _rollover(self, platform: Platform) -> None:
        """bob on Starter since last month: last month's period granted, then this month's, whose grant closes the
        last one (its unused credits leave by a ``rollover`` row: the plan keeps none)."""
        bob = account_for(platform=platform, user=platform.memberships.get(user__username="bob").user)
        if Subscription.objects.filter(account=bob).exists():
            return
        starter = Plan.objects.get(platform=platform, slug="starter")
        now = timezone.now()
        this_month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        last_month = (this_month - timedelta(days=1)).replace(day=1)
        next_month = (this_month + timedelta(days=32)).replace(day=1)
        subscription = subscription_start(
            account_id=bob.pk, plan_id=starter.pk, billing_cycle="monthly", provider="stripe",
            provider_customer_id="cus_demo_bob", provider_subscription_id="sub_demo_bob",
            current_period_start=this_month, current_period_end=next_month).subscription
        with transaction.atomic():
            period_grant(subscription, plan=starter, start=last_month, end=this_month, invoice_id="in_demo_bob_1")
        with transaction.atomic():
            period_grant(subscription, plan=starter, start=this_month, end=next_month, invoice_id="in_demo_bob_2")
