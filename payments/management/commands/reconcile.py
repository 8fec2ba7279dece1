"""``manage.py reconcile stripe|creem [--since DATE] [--platform KEY] [--fix] [--json]``: see the README,
"Reconciliation with the provider"."""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from accounts.models import Platform
from payments.errors import PaymentProviderError, PaymentProviderNotConfigured
from payments.reconcile import RECONCILERS

DEFAULT_DAYS = 35  # a monthly period and its late events


def parse_since(value: str | None, *, now: datetime) -> datetime:
    """An ISO date (midnight UTC) or instant (UTC when it names no offset); default: ``DEFAULT_DAYS`` ago."""
    if value is None:
        return now - timedelta(days=DEFAULT_DAYS)
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CommandError(f"--since {value!r} is not an ISO date (2026-01-31) or instant "
                           "(2026-01-31T12:00:00Z)") from exc
    moment = moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)
    if moment > now:
        raise CommandError(f"--since {value!r} is in the future")
    return moment


class Command(BaseCommand):
    help = ("Compares what Stripe or Creem says was paid and refunded since --since with the orders, plan periods "
            "and ledger rows here; prints the drift, fixes with --fix what a ledger row posted through the services "
            "can fix, and exits 1 while drift remains.")

    def add_arguments(self, parser):  # noqa: ANN001
        parser.add_argument("provider", choices=sorted(RECONCILERS), help="The provider to reconcile with.")
        parser.add_argument("--since", default=None,
                            help=f"ISO date or instant: objects created since then (default: {DEFAULT_DAYS} days ago).")
        parser.add_argument("--platform", default=None, help="Only this platform's rows (its platform_key).")
        parser.add_argument("--fix", action="store_true", help="Fix what can be fixed by posting ledger rows.")
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print the report as JSON.")

    def handle(self, *args, provider: str, since: str | None, platform: str | None, fix: bool,  # noqa: ANN002, ANN003
               as_json: bool, **options):
        moment = parse_since(since, now=timezone.now())
        scope = None
        if platform:
            scope = Platform.objects.filter(platform_key=platform).first()
            if scope is None:
                raise CommandError(f"no platform {platform!r}")
        with tqdm(desc=provider, unit=" objects", disable=not self.stdout.isatty(), file=sys.stderr,
                  leave=False) as bar:
            def on_page(source: str, count: int) -> None:
                bar.set_postfix_str(source)
                bar.update(count)

            try:
                report = RECONCILERS[provider](since=moment, platform=scope, on_page=on_page)
            except PaymentProviderNotConfigured as exc:
                raise CommandError(str(exc)) from exc
            except PaymentProviderError as exc:
                raise CommandError(f"{provider} did not answer: {exc.details or exc}") from exc
        if fix:
            report.fix_all()
        if as_json:
            self.stdout.write(_json_dumps(report.as_dict()))
        else:
            for line in report.lines():
                self.stdout.write(line)
        remaining = report.remaining
        if remaining:
            raise CommandError(f"{len(remaining)} drift(s) with {provider} remain")


def _json_dumps(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True)
