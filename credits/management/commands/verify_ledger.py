from django.core.management.base import BaseCommand, CommandError

from credits.models import CreditAccount
from credits.selectors import ledger_verify


class Command(BaseCommand):
    help = "Checks every ledger invariant of every account (or of --platform KEY); exits 1 on a problem."

    def add_arguments(self, parser):  # noqa: ANN001
        parser.add_argument("--platform", default=None, help="Only this platform's accounts.")

    def handle(self, *args, platform: str | None, **options):  # noqa: ANN002, ANN003
        accounts = CreditAccount.objects.order_by("pk")
        if platform:
            accounts = accounts.filter(platform__platform_key=platform)
        checked = failed = 0
        for account in accounts.iterator():
            result = ledger_verify(account=account)
            checked += 1
            if not result.ok:
                failed += 1
                for problem in result.problems:
                    self.stderr.write(f"{account.id}: {problem}")
        self.stdout.write(f"checked {checked} account(s), {failed} with problems")
        if failed:
            raise CommandError("ledger invariants violated")
