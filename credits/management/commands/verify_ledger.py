import sys
import time

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Sum
from tqdm import tqdm

from credits.models import CreditAccount
from credits.verification import ledger_verify_accounts


class Command(BaseCommand):
    help = ("Checks every ledger invariant of every account (or of --platform KEY), streaming the ledger in chunks; "
            "shows a progress bar on a terminal; exits 1 on a problem.")

    def add_arguments(self, parser):  # noqa: ANN001
        parser.add_argument("--platform", default=None, help="Only this platform's accounts.")
        parser.add_argument("--progress", choices=["auto", "on", "off"], default="auto",
                            help="The progress bar (on standard error): auto shows it on a terminal.")

    def handle(self, *args, platform: str | None, progress: str, **options):  # noqa: ANN002, ANN003
        accounts = CreditAccount.objects.all()
        if platform:
            accounts = accounts.filter(platform__platform_key=platform)
        show = progress == "on" or (progress == "auto" and sys.stderr.isatty())
        # The rows the accounts say they hold: the bar's total (a corrupt counter only misjudges the bar).
        expected = accounts.aggregate(rows=Sum("last_sequence"))["rows"] or 0 if show else 0
        started = time.perf_counter()
        checked = failed = rows = 0
        with tqdm(total=expected, unit=" rows", unit_scale=True, disable=not show, file=sys.stderr,
                  desc="ledger") as bar:
            def seen(n: int) -> None:
                nonlocal rows
                rows += n
                bar.update(n)

            for result in ledger_verify_accounts(accounts, on_rows=seen):
                checked += 1
                if not result.ok:
                    failed += 1
                    with tqdm.external_write_mode(file=sys.stderr):  # above the bar, which redraws after
                        for problem in result.problems:
                            self.stderr.write(f"{result.account_id}: {problem}")
        elapsed = time.perf_counter() - started
        self.stdout.write(f"checked {checked} account(s), {failed} with problems")
        if options["verbosity"] > 1:
            self.stdout.write(f"{rows} ledger row(s) in {elapsed:.1f} s")
        if failed:
            raise CommandError("ledger invariants violated")
