"""Background work sent after commit, never able to fail the request that committed.

A write's side effects (an auto-recharge charge, reading a saved card from Stripe) go to Celery once its
transaction commits (at once outside one). The write is acknowledged by then, so a send that fails (the broker
is down) is logged instead of raised: the response still says what was committed. What the send would have
started is picked up again by the periodic tasks (billing_service.settings.CELERY_BEAT_SCHEDULE) or the next
event that needs it."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

logger = logging.getLogger(__name__)


def enqueue_on_commit(task: Any, *args: Any) -> None:
    """``task.delay(*args)`` after the current transaction commits; a failure to send is logged."""

    def send() -> None:
        task.delay(*args)

    send.__qualname__ = f"enqueue {getattr(task, 'name', task)}"
    transaction.on_commit(send, robust=True)
