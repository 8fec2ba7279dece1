"""Celery tasks of the entitlements app (scheduled by the beat, see settings.CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from entitlements.services import seats_expire_due


@shared_task(name="entitlements.tasks.seats_expire_task")
def seats_expire_task() -> int:
    """Ends the operator's seat contracts whose end has passed."""
    return seats_expire_due()
