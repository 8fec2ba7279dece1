import json
import sys

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Role
from accounts.selectors import platform_get
from accounts.services import member_add


class Command(BaseCommand):
    help = (
        "Adds USERNAME to platform KEY with a role (creating the user if needed) and prints one JSON line; "
        "\"token\" is a new API token when the user had none (shown this once), else null (issue another with "
        "api_token issue). Idempotent: running it again updates the role and email. --password sets the "
        "user's password, with which they can obtain a JWT (POST /api/auth/jwt/)."
    )

    stealth_options = ("stdin",)  # call_command(..., stdin=...) for --password -

    def add_arguments(self, parser):  # noqa: ANN001
        parser.add_argument("platform_key")
        parser.add_argument("username")
        parser.add_argument("--role", choices=Role.values, default=Role.MEMBER)
        parser.add_argument("--email", default=None)
        parser.add_argument(
            "--password", default=None,
            help="Set the user's password (for JWT Bearer tokens). Use --password - to read it from standard input.",
        )

    def handle(self, *args, platform_key: str, username: str, role: str, email: str | None,
               password: str | None = None, **options):  # noqa: ANN002, ANN003
        platform = platform_get(platform_key=platform_key)
        if platform is None:
            raise CommandError(f"no platform {platform_key!r}; create it with create_platform")
        if not username or len(username) > 150:
            raise CommandError("username must be 1-150 characters")
        if password == "-":
            # Kept out of the process list and the shell history.
            password = (options.get("stdin") or sys.stdin).readline().rstrip("\r\n")
        if password is not None and not password:
            raise CommandError("password must not be empty")
        membership, token = member_add(
            platform=platform, username=username, role=role, email=email, password=password
        )
        self.stdout.write(
            json.dumps(
                {
                    "username": membership.user.get_username(),
                    "platform_key": platform.platform_key,
                    "role": membership.role,
                    "token": token.key if token else None,
                }
            )
        )
