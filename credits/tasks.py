"""Celery tasks of the credits app (scheduled by the beat, see settings.CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from credits.services import checkin_credits_expire, holds_release_expired


@shared_task(name="credits.tasks.holds_release_expired_task")
def holds_release_expired_task() -> int:
    """Releases the holds past their expiry."""
    return holds_release_expired()


@shared_task(name="credits.tasks.ledger_rollups_refresh_task")
def ledger_rollups_refresh_task(days: int = 2) -> int:
    """Recomputes the admin dashboard's daily ledger rollups of today and yesterday (UTC); returns the buckets."""
    from credits.services import ledger_rollups_refresh

    return ledger_rollups_refresh(days=days)


@shared_task(name="credits.tasks.checkin_credits_expire_task")
def checkin_credits_expire_task() -> dict[str, object]:
    """Takes back the check-in credits past their expiry (``credits.services.expiry``)."""
    run = checkin_credits_expire()
    return {"accounts": run.accounts, "lots": run.lots, "entries": run.entries, "taken": str(run.taken),
            "forgiven": str(run.forgiven)}


@shared_task(name="credits.tasks.partitions_ensure_task")
def partitions_ensure_task() -> list[str]:
    """Creates the coming months' partitions of the ledger and the usage events (``credits.partitions``)."""
    from credits.partitions import partitions_ensure

    return partitions_ensure()
