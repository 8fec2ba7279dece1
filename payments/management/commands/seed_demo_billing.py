import json
from datetime import timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand
from django.utils import timezone

from accounts.models import Platform
from billing_service.errors import DomainError
from credits.models import ModelPrice
from credits.selectors import account_for
from credits.services import credits_grant
from credits.services.rate_card import model_price_create
from credits.services.usage import usage_record
from credits.services.usage_events import UsageInput
from entitlements.catalogue import ai_plan_update
from entitlements.models import AIPlan
from subscriptions.models import Plan
from subscriptions.services.plans import plan_create

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
    help = ("Makes the demo platform (seed_demo) look alive on the billing page: plans on sale, a rate card, and a "
            "month of alice's usage across endpoints and models, recorded through the usage service. Idempotent.")

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
        for day in range(DAYS, 0, -1):
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
        self.stdout.write(json.dumps({"platform_key": "demo", "plans": [p["slug"] for p in PLANS],
                                      "models": [m[0] for m in MODELS], "usage_events": recorded,
                                      "refused": refused}))
