import json
from decimal import Decimal

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Role
from accounts.services import member_add, platform_create
from credits.selectors import account_for
from credits.services import credits_grant

DEMO_MEMBERS = [
    ("demo-owner", Role.OWNER, Decimal("0")),
    ("demo-admin", Role.ADMIN, Decimal("0")),
    ("alice", Role.MEMBER, Decimal("25.00")),
    ("bob", Role.MEMBER, Decimal("10.00")),
]


class Command(BaseCommand):
    help = "Loads the demo platform 'demo' (an owner, an admin, two members with credits) and prints tokens."

    def handle(self, *args, **options):  # noqa: ANN002, ANN003
        with transaction.atomic():
            platform, _ = platform_create(platform_key="demo", name="Demo platform")
            rows = []
            for username, role, credits in DEMO_MEMBERS:
                membership, token = member_add(
                    platform=platform, username=username, role=role, email=f"{username}@example.com"
                )
                if credits:
                    account = account_for(platform=platform, user=membership.user)
                    credits_grant(
                        account_id=account.id,
                        amount=credits,
                        description="Welcome credits",
                        idempotency_key="demo-welcome-credits",
                    )
                rows.append({"username": username, "role": role, "token": token.key})
        self.stdout.write("Demo platform 'demo' ready. API tokens (Authorization: Token <token>):")
        for row in rows:
            self.stdout.write(json.dumps({"platform_key": "demo", **row}))
