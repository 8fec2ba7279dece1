"""Loads the Celery app with Django, so ``@shared_task`` binds to it (see billing_service/celery.py)."""

from billing_service.celery import app as celery_app

__all__ = ("celery_app",)
