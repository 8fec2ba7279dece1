"""Celery tasks of the accounts app: the delivery of outbound webhooks (``accounts.outbound``)."""

from __future__ import annotations

from celery import current_app, shared_task

from accounts import outbound

# Retries due sooner than the beat's next run (30 s) are sent by a run of the task scheduled for them.
_BEAT_SECONDS = 30.0


@shared_task(name="accounts.tasks.outbound_deliver_task", acks_late=True)
def outbound_deliver_task() -> dict[str, int]:
    """Fans out new events and sends the deliveries that are due (after each commit that recorded an event, every
    30 s by the beat, and when the next retry is due sooner than that)."""
    run = outbound.outbound_deliver()
    if run.next_due_in is not None and run.next_due_in < _BEAT_SECONDS and not current_app.conf.task_always_eager:
        outbound_deliver_task.apply_async(countdown=max(run.next_due_in, 0.05))
    return {"fanned_out": run.fanned_out, "delivered": run.delivered, "retrying": run.retrying, "failed": run.failed}
