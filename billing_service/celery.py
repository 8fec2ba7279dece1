"""The Celery app: off-request work (auto-recharge charges, webhook reprocessing, hold expiry).

Configured from Django settings named ``CELERY_*``. With ``CELERY_BROKER_URL`` set (Redis in production,
see docker-compose.yml) tasks go to a broker and run on ``celery -A billing_service worker``, and the
periodic ones are sent by ``celery -A billing_service beat``. Without it (the embedded default) tasks run
eagerly, in-process; callers enqueue them from ``transaction.on_commit``, so they still run after commit.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_service.settings")

app = Celery("billing_service")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
