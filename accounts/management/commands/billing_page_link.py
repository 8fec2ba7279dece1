from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse
from django.utils import timezone

from accounts.models import Platform
from accounts.services import sign_in_link_create
from billing_service.errors import DomainError


class Command(BaseCommand):
    help = "Prints a single-use sign-in link to the billing page (/billing/) for a member of a platform."

    def add_arguments(self, parser):  # noqa: ANN001, ANN201
        parser.add_argument("platform_key")
        parser.add_argument("username")
        parser.add_argument("--base", default="http://127.0.0.1:8000", help="The service's URL, as browsers reach it.")
        parser.add_argument("--minutes", type=int, default=None,
                            help="How long it stays valid (default SIGN_IN_LINK_MINUTES).")

    def handle(self, *args, **options):  # noqa: ANN002, ANN003
        platform = Platform.objects.filter(platform_key=options["platform_key"]).first()
        if platform is None:
            raise CommandError(f"No platform {options['platform_key']!r}.")
        minutes = options["minutes"] or settings.SIGN_IN_LINK_MINUTES
        if minutes < 1:
            raise CommandError("--minutes must be at least 1.")
        try:
            link, token = sign_in_link_create(platform=platform, username=options["username"], actor=None,
                                              now=timezone.now(), lifetime=timedelta(minutes=minutes))
        except DomainError as exc:
            raise CommandError(exc.message) from None
        url = options["base"].rstrip("/") + reverse("billing-page-sign-in", kwargs={"token": token})
        self.stdout.write(f"Billing page for {options['username']} (works once, until {link.expires_at:%H:%M} UTC): "
                          f"{url}")
