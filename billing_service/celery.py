"""The Celery app: off-request work (auto-recharge charges, webhook reprocessing, hold expiry).

Configured from Django settings named ``CELERY_*``. With ``CELERY_BROKER_URL`` set (Redis in production,
see docker-compose.yml) tasks go to a broker and run on ``celery -A billing_service worker``, and the
periodic ones are sent by ``celery -A billing_service beat``. Without it (the embedded default) tasks run
eagerly, in-process; callers enqueue them from ``transaction.on_commit``, so they still run after commit.
"""

from __future__ import annotations

import os

from celery import Celery, Task, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_service.settings")

app = Celery("billing_service")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# --- request ids and logs in tasks (billing_service/logs.py), a worker's metrics (billing_service/metrics.py) ---
# A task sent while a request (or a task) runs carries its request id in a header; the worker runs the task under
# it, or under a fresh one for a task no request sent (the beat's). An eager task (no broker) runs in its caller's
# context and keeps its id.
REQUEST_ID_HEADER = "request_id"


@signals.before_task_publish.connect
def _request_id_to_task(headers: dict | None = None, **_: object) -> None:
    from billing_service.logs import current_request_id

    request_id = current_request_id()
    if request_id and headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


@signals.task_prerun.connect
def _request_id_from_task(task_id: str | None = None, task: Task | None = None, **_: object) -> None:
    from billing_service.logs import current_request_id, request_id_of, request_id_var, task_var

    if task is None:
        return
    request = task.request
    given = current_request_id() if request.is_eager else request.get(REQUEST_ID_HEADER)
    request._log_context = (request_id_var.set(request_id_of(given)), task_var.set((task.name, task_id or "")))


@signals.task_postrun.connect
def _request_id_after_task(task: Task | None = None, **_: object) -> None:
    from billing_service.logs import request_id_var, task_var

    tokens = getattr(task.request, "_log_context", None) if task is not None else None
    if tokens:
        task.request._log_context = None
        try:
            request_id_var.reset(tokens[0])
            task_var.reset(tokens[1])
        except ValueError:  # set in another context (a pool that ran prerun elsewhere): clear instead
            request_id_var.set(None)
            task_var.set(None)


@signals.setup_logging.connect
def _logging_as_django(**_: object) -> None:
    """Worker and beat log through the settings' LOGGING (LOG_FORMAT, LOG_LEVEL), not Celery's own handlers."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)


@signals.worker_ready.connect
def _worker_metrics(**_: object) -> None:
    from billing_service.metrics import worker_serve

    worker_serve()
