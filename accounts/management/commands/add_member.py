import json

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Role
from accounts.selectors import platform_get
from accounts.services import member_add


class Command(BaseCommand):
    help = (
        "Adds USERNAME to platform KEY with a role (creating the user if needed) and prints one JSON line "
        "with the user's API token. Idempotent: running it again updates the role and email."
    )

    def add_arguments(self, parser):  # noqa: ANN001
        parser.add_argument("platform_key")
        parser.add_argument("username")
        parser.add_argument("--role", choices=Role.values, default=Role.MEMBER)
        parser.add_argument("--email", default=None)

    def handle(self, *args, platform_key: str, username: str, role: str, email: str | None, **options):  # noqa: ANN002, ANN003
        platform = platform_get(platform_key=platform_key)
        if platform is None:
            raise CommandError(f"no platform {platform_key!r}; create it with create_platform")
        if not username or len(username) > 150:
            raise CommandError("username must be 1-150 characters")
        membership, token = member_add(platform=platform, username=username, role=role, email=email)
        self.stdout.write(
            json.dumps(
                {
                    "username": membership.user.get_username(),
                    "platform_key": platform.platform_key,
                    "role": membership.role,
                    "token": token.key,
                }
            )
        )
