"""Background work sent after commit, never able to fail the request that committed.

A write's side effects (an auto-recharge charge, reading a saved card from Stripe) go to Celery once its
transaction commits (at once outside one). The write is acknowledged by then, so a send that fails (the broker
is down) is logged instead of raised: the response still says what was committed. What the send would have
started is picked up again by the periodic tasks (billing_service.settings.CELERY_BEAT_SCHEDULE) or the next
event that needs it."""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app
from django.db import transaction

logger = logging.getLogger(__name__)


def enqueue_on_commit(task_name: str, *args: Any) -> None:
    """The task registered as ``task_name`` (``"payments.tasks.recharge_charge_task"``), sent with ``args`` after
    the current transaction commits; a failure to send is logged. Tasks are named, not imported, so that a service
    never imports the tasks module that calls it (the task is looked up in the Celery app's registry, which
    honours eager mode, where ``send_task`` would not)."""

    def send() -> None:
        current_app.tasks[task_name].delay(*args)

    send.__qualname__ = f"enqueue {task_name}"
    transaction.on_commit(send, robust=True)
