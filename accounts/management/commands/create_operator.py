import json

from django.core.management.base import BaseCommand, CommandError

from accounts.services import operator_ensure


class Command(BaseCommand):
    help = (
        "Makes USERNAME an operator (a Django superuser, creating the user if needed) and prints one JSON line; "
        "\"token\" is a new API token when the user had none (shown this once), else null. Idempotent."
    )

    def add_arguments(self, parser):  # noqa: ANN001
        parser.add_argument("username")

    def handle(self, *args, username: str, **options):  # noqa: ANN002, ANN003
        if not username or len(username) > 150:
            raise CommandError("username must be 1-150 characters")
        user, token = operator_ensure(username=username)
        self.stdout.write(json.dumps({"username": user.get_username(), "token": token.key if token else None}))
