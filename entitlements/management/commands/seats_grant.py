import json

from django.core.management.base import BaseCommand, CommandError

from accounts.selectors import platform_get
from billing_service.inputs import instant_parse
from entitlements import selectors
from entitlements.models import AIPlan
from entitlements.services import seats_grant


class Command(BaseCommand):
    help = (
        "Records a contract paid outside Stripe: QUANTITY seats of AI_PLAN_SLUG for platform PLATFORM_KEY, until "
        "DATE (ISO 8601; ongoing without it). Idempotent: run it again to change the quantity or the end. Prints "
        "one JSON line."
    )

    def add_arguments(self, parser):  # noqa: ANN001
        parser.add_argument("platform_key")
        parser.add_argument("ai_plan_slug")
        parser.add_argument("--quantity", type=int, required=True)
        parser.add_argument("--until", default=None, help="The contract's end, e.g. 2027-12-31 or 2027-12-31T00:00Z.")

    def handle(self, *args, platform_key: str, ai_plan_slug: str, quantity: int, until: str | None, **options):  # noqa: ANN002, ANN003
        platform = platform_get(platform_key=platform_key)
        if platform is None:
            raise CommandError(f"no platform {platform_key!r}; create it with create_platform")
        plan = AIPlan.objects.filter(slug=ai_plan_slug).first()
        if plan is None or not selectors.ai_plans_offered(platform=platform).filter(pk=plan.pk).exists():
            raise CommandError(f"no active AI plan {ai_plan_slug!r} offered to platform {platform_key!r}")
        try:
            end = instant_parse(until, allow_date=True) if until else None
            subscription, created = seats_grant(platform=platform, ai_plan=plan, quantity=quantity, until=end)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        seats = selectors.seats_of(platform_id=platform.pk, ai_plan_id=plan.pk)
        self.stdout.write(json.dumps({
            "platform_key": platform.platform_key, "ai_plan": plan.slug, "subscription_id": str(subscription.pk),
            "quantity": subscription.quantity, "until": subscription.ends_at.isoformat() if subscription.ends_at else None,
            "created": created, "total_seats": seats.total, "assigned_seats": seats.assigned,
            "over_assigned": seats.over_assigned,
        }))

