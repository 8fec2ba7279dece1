import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.models import platform_key_validator
from accounts.services import platform_create


class Command(BaseCommand):
    help = "Creates a platform (tenant) and its own credit account. Idempotent."

    def add_arguments(self, parser):  # noqa: ANN001
        parser.add_argument("platform_key")
        parser.add_argument("--name", default=None)

    def handle(self, *args, platform_key: str, name: str | None, **options):  # noqa: ANN002, ANN003
        try:
            platform_key_validator(platform_key)
        except ValidationError as exc:
            raise CommandError(exc.messages[0]) from exc
        platform, created = platform_create(platform_key=platform_key, name=name)
        self.stdout.write(
            json.dumps({"platform_key": platform.platform_key, "name": platform.name, "created": created})
        )
