from django.core.management.base import BaseCommand

from billing_service.money import format_money
from credits.services import checkin_credits_expire


class Command(BaseCommand):
    help = ("Takes back the check-in credits past their expiry (one `expiry` ledger row per account). Safe to run "
            "beside live traffic and beside itself.")

    def handle(self, *args, **options):  # noqa: ANN002, ANN003
        run = checkin_credits_expire()
        self.stdout.write(
            f"settled {run.lots} check-in lot(s) of {run.accounts} account(s): {run.entries} expiry row(s) took "
            f"{format_money(run.taken)}, {format_money(run.forgiven)} forgiven (reserved by holds)"
        )
