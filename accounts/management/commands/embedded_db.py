from django.conf import settings
from django.core.management.base import BaseCommand

from billing_service import embedded_db


class Command(BaseCommand):
    help = ("Shows or stops the embedded PostgreSQL (used when DATABASE_URL is not set); 'url' prints the database's "
            "libpq URL (for pg_dump, psql), 'bin' the folder of the PostgreSQL programs of the same version.")

    def add_arguments(self, parser):  # noqa: ANN001
        parser.add_argument("action", choices=["status", "stop", "url", "bin"])

    def handle(self, *args, action: str, **options):  # noqa: ANN002, ANN003
        pgdata = settings.EMBEDDED_PGDATA
        if action == "url":
            self.stdout.write(embedded_db.database_url(settings.DATABASES["default"]))
        elif action == "bin":
            self.stdout.write(str(embedded_db.binaries()))
        elif action == "stop":
            from django.db import connections

            connections.close_all()
            stopped = embedded_db.stop(pgdata)
            self.stdout.write("stopped" if stopped else "not running")
        else:
            running = (pgdata / "postmaster.pid").exists()
            self.stdout.write(f"{'running' if running else 'stopped'} ({pgdata})")
