import json
from decimal import Decimal

from django.core.management.base import BaseCommand

from accounts.models import Platform
from entitlements.catalogue import ai_plan_create
from entitlements.models import AIPlan, SeatAssignment
from entitlements.services import seat_assign, seats_grant


class Command(BaseCommand):
    help = ("Gives the demo platform (seed_demo) seats: an 'everyday' AI plan, an operator's contract for 5 seats, "
            "and alice's seat. Idempotent.")

    def handle(self, *args, **options):  # noqa: ANN002, ANN003
        platform = Platform.objects.get(platform_key="demo")
        plan = AIPlan.objects.filter(slug="everyday").first() or ai_plan_create(
            slug="everyday", name="Everyday AI", tier="everyday", icon="star", weekly_budget=Decimal("0.50"),
            session_budget=Decimal("0.10"), price_per_seat_cents=1000,
        )
        seats_grant(platform=platform, ai_plan=plan, quantity=5)
        if not SeatAssignment.objects.filter(platform=platform, user__username="alice").exists():
            seat_assign(platform=platform, ai_plan=plan, username="alice", actor=None)
        self.stdout.write(json.dumps({"platform_key": "demo", "ai_plan": plan.slug, "seats": 5, "seated": ["alice"]}))
