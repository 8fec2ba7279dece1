from datetime import date

from django.core.management.base import BaseCommand, CommandError

from credits.errors import HistoryError
from credits.partitions import (
    EVENTS,
    HISTORY,
    LEDGER,
    partition_detach,
    partition_months,
    partition_name,
    partitions_ensure,
)

_TABLES = {"usage": [EVENTS], "ledger": [LEDGER], "all": [EVENTS, LEDGER]}  # usage events name ledger rows: first


def _month(value: str) -> date:
    try:
        year, month = value.split("-")
        return date(int(year), int(month), 1)
    except ValueError as exc:
        raise CommandError(f"Not a month (YYYY-MM): {value!r}") from exc


class Command(BaseCommand):
    help = ("The monthly partitions of the ledger and the usage events: list them, create the coming ones, or "
            "detach the months before one (oldest first) into tables of their own.")

    def add_arguments(self, parser):  # noqa: ANN001
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="The attached months, their live rows (the statistics') and sizes.")
        ensure = sub.add_parser("ensure", help="Creates the missing months from this one through --ahead ahead.")
        ensure.add_argument("--ahead", type=int, default=None, help="Months ahead (default PARTITION_MONTHS_AHEAD).")
        detach = sub.add_parser("detach", help="Detaches every attached month before --before, oldest first.")
        detach.add_argument("--before", required=True, type=_month, help="The first month kept (YYYY-MM).")
        detach.add_argument("--table", choices=sorted(_TABLES), default="all")
        detach.add_argument("--allow-references", action="store_true",
                            help="Detach even while rows elsewhere name the month's rows (they then name rows of "
                                 "the detached table).")

    def handle(self, *args, action: str, **options):  # noqa: ANN002, ANN003
        if action == "list":
            self._list()
        elif action == "ensure":
            for name in partitions_ensure(months_ahead=options["ahead"]):
                self.stdout.write(f"created {name}")
        else:
            self._detach(options["before"], _TABLES[options["table"]], options["allow_references"])

    def _list(self) -> None:
        from django.db import connection

        for table in HISTORY:
            months = partition_months(table)
            if months is None:
                raise CommandError(f"{table} is not partitioned (migrate).")
            names = [partition_name(table, month) for month in months] + [f"{table}_default"]
            with connection.cursor() as cursor:
                # live rows from the statistics collector (kept up to date by every write, unlike reltuples)
                cursor.execute("SELECT relname, pg_stat_get_live_tuples(oid), pg_total_relation_size(oid) "
                               "FROM pg_class WHERE relname = ANY(%s)", [names])
                stats = {name: (rows, size) for name, rows, size in cursor.fetchall()}
            for name in names:
                rows, size = stats.get(name, (0, 0))
                self.stdout.write(f"{name}\t~{rows} rows\t{size // 1024} KiB")

    def _detach(self, before: date, tables: list[str], allow_references: bool) -> None:
        for table in tables:
            while (months := partition_months(table)) and months[0] < before:
                try:
                    done = partition_detach(table, allow_references=allow_references)
                except HistoryError as exc:
                    named = exc.details.get("references")
                    detail = f": {', '.join(f'{column} ({n})' for column, n in named.items())}" if named else ""
                    raise CommandError(f"{exc.message}{detail}") from exc
                self.stdout.write(f"detached {partition_name(table, done.month)}: {done.rows} rows of "
                                  f"{done.accounts} accounts")
