"""Fills the admin dashboard's daily ledger rollups for every day (or the days given) from the ledger."""

from __future__ import annotations

from datetime import date

from django.core.management.base import BaseCommand, CommandError

from credits.services import ledger_rollups_backfill


class Command(BaseCommand):
    help = ("Recomputes the daily ledger rollups (LedgerDailyRollup) of every UTC day since the first ledger row, "
            "or of --since/--until. Safe to run again and beside the beat's refresh.")

    def add_arguments(self, parser):  # noqa: ANN001, ANN201
        parser.add_argument("--since", help="First UTC day, YYYY-MM-DD (default: the first ledger row's).")
        parser.add_argument("--until", help="Last UTC day, YYYY-MM-DD (default: today).")

    def handle(self, *args, **options):  # noqa: ANN002, ANN003
        try:
            since = date.fromisoformat(options["since"]) if options["since"] else None
            until = date.fromisoformat(options["until"]) if options["until"] else None
        except ValueError as exc:
            raise CommandError(f"not a day (YYYY-MM-DD): {exc}") from exc
        written = ledger_rollups_backfill(since=since, until=until)
        self.stdout.write(f"wrote {written} daily rollup bucket(s)")
