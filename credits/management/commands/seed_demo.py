import json
from decimal import Decimal

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Role
from accounts.services import api_token_issue, api_token_revoke, member_add, platform_create
from credits.models import CheckinConfig
from credits.selectors import account_for
from credits.services import credits_grant
from credits.services.checkin import checkin_config_set

DEMO_TOKEN_NAME = "demo"
DEMO_MEMBERS = [
    ("demo-owner", Role.OWNER, Decimal("0")),
    ("demo-admin", Role.ADMIN, Decimal("0")),
    ("alice", Role.MEMBER, Decimal("25.00")),
    ("bob", Role.MEMBER, Decimal("10.00")),
]


class Command(BaseCommand):
    help = ("Loads the demo platform 'demo' (an owner, an admin, two members with credits; the daily check-in on) and "
            "prints API tokens (new ones each run: the previous run's are revoked).")

    def handle(self, *args, **options):  # noqa: ANN002, ANN003
        with transaction.atomic():
            platform, _ = platform_create(platform_key="demo", name="Demo platform")
            rows = []
            for username, role, credits in DEMO_MEMBERS:
                membership, _ = member_add(
                    platform=platform, username=username, role=role, email=f"{username}@example.com",
                    issue_token=False,
                )
                # Keys are shown once: each run replaces the demo token it printed last time.
                for old in membership.user.api_tokens.filter(name=DEMO_TOKEN_NAME, revoked_at__isnull=True):
                    api_token_revoke(token=old)
                token = api_token_issue(user=membership.user, name=DEMO_TOKEN_NAME)
                if credits:
                    account = account_for(platform=platform, user=membership.user)
                    credits_grant(
                        account_id=account.id,
                        amount=credits,
                        description="Welcome credits",
                        idempotency_key="demo-welcome-credits",
                    )
                rows.append({"username": username, "role": role, "token": token.key})
        if not CheckinConfig.objects.filter(platform=platform).exists():  # an admin's own settings stay
            checkin_config_set(platform=platform, actor=None, enabled=True, credits_per_day=Decimal("1.00"),
                               streak_bonuses={"7": Decimal("5.00")}, monthly_cap=Decimal("40.00"),
                               time_zone=platform.time_zone, credits_expire_after_days=30)
        self.stdout.write("Demo platform 'demo' ready. API tokens (Authorization: Token <token>):")
        for row in rows:
            self.stdout.write(json.dumps({"platform_key": "demo", **row}))
