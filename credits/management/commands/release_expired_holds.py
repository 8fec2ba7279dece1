from django.core.management.base import BaseCommand

from credits.services import holds_release_expired


class Command(BaseCommand):
    help = "Releases every hold past its expiry. Safe to run beside live traffic and beside itself."

    def handle(self, *args, **options):  # noqa: ANN002, ANN003
        released = holds_release_expired()
        self.stdout.write(f"released {released} expired hold(s)")
