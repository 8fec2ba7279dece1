"""Celery tasks of the credits app (scheduled by the beat, see settings.CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from credits.services import holds_release_expired


@shared_task(name="credits.tasks.holds_release_expired_task")
def holds_release_expired_task() -> int:
    """Releases the holds past their expiry."""
    return holds_release_expired()
