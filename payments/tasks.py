"""Celery tasks of the payments app: auto-recharge charges, the seats' refresh from Stripe, and the upkeep the beat
schedules."""

from __future__ import annotations

import logging

from celery import shared_task

from accounts.models import Platform
from payments import payment_methods, recharge, seat_sync, selectors
from payments.errors import PaymentProviderError, PaymentProviderNotConfigured, WebhookProcessingFailed
from payments.providers import stripe as stripe_provider
from payments.webhooks.events import webhook_event_process

logger = logging.getLogger(__name__)

MAX_WEBHOOK_ATTEMPTS = 10


@shared_task(name="payments.tasks.recharge_charge_task", acks_late=True)
def recharge_charge_task(account_id: str) -> str | None:
    """Starts (or resumes) the account's recharge and charges it; returns the recharge id, if any."""
    started = recharge.recharge_start(account_id=account_id)
    if started is None:
        return None
    try:
        recharge.recharge_charge(recharge_id=started.id)
    except PaymentProviderError:
        logger.warning("recharge %s not charged yet; recharges_resume retries it", started.id)
    return str(started.id)


@shared_task(name="payments.tasks.recharges_resume")
def recharges_resume() -> int:
    """Charges the recharges a dead worker or a provider error left pending (same Stripe idempotency key: never
    twice); one already sent ``recharge.MAX_CHARGE_ATTEMPTS`` times is given up instead (``gave_up``)."""
    count = 0
    for recharge_id in recharge.recharges_stalled():
        try:
            recharge.recharge_charge(recharge_id=recharge_id)
            count += 1
        except PaymentProviderError:
            continue
    return count


@shared_task(name="payments.tasks.recharges_reconcile")
def recharges_reconcile(*, older_than_seconds: int = recharge.RECONCILE_AFTER_SECONDS) -> int:
    """Settles, from their PaymentIntent at Stripe, the processing recharges whose webhook never came (one in
    flight per account: a lost webhook would block its auto-recharge forever). Returns how many it settled."""
    return recharge.recharges_reconcile(older_than_seconds=older_than_seconds)


@shared_task(name="payments.tasks.webhook_events_reprocess")
def webhook_events_reprocess(*, older_than_seconds: int = 60) -> int:
    """Processes again the stored events whose processing failed for a passing reason (or never ran), so a
    provider that stopped retrying does not lose a payment. Refused events (an order flagged for review)
    are left to an operator."""
    done = 0
    for pk in selectors.webhook_events_to_reprocess(older_than_seconds=older_than_seconds,
                                                    max_attempts=MAX_WEBHOOK_ATTEMPTS):
        try:
            webhook_event_process(event_pk=pk)
            done += 1
        except WebhookProcessingFailed:
            continue
    return done


@shared_task(name="payments.tasks.seat_subscriptions_refresh")
def seat_subscriptions_refresh() -> int:
    """Reads from Stripe the seat subscriptions of every platform that bought seats through it and records what
    changed (``payments.seat_sync.seat_subscriptions_refresh``: what a lost or late webhook left behind). Safe
    beside the webhooks and beside another run. A platform whose refresh Stripe fails is tried again next run.
    Returns how many seat subscriptions changed."""
    try:
        stripe_provider.ensure_configured()
    except PaymentProviderNotConfigured:
        return 0
    updated = 0
    for platform in Platform.objects.filter(pk__in=selectors.platforms_with_stripe_seats()).order_by("pk"):
        try:
            updated += seat_sync.seat_subscriptions_refresh(platform=platform).seats_updated
        except PaymentProviderError:
            logger.warning("the seats of platform %s were not refreshed: Stripe failed", platform.pk)
    return updated


# A provider failure (PaymentProviderError) is retried with a growing delay: Stripe may be briefly unreachable.
_STRIPE_RETRIES = {"autoretry_for": (PaymentProviderError,), "retry_backoff": True, "max_retries": 5}


@shared_task(name="payments.tasks.payment_method_describe_task", **_STRIPE_RETRIES)
def payment_method_describe_task(account_id: str, payment_method_id: str) -> bool:
    """Records the brand and last 4 digits of a payment method saved from a webhook (read from Stripe)."""
    return payment_methods.payment_method_describe(account_id=account_id, payment_method_id=payment_method_id)


@shared_task(name="payments.tasks.payment_method_from_setup_task", **_STRIPE_RETRIES)
def payment_method_from_setup_task(account_id: str, setup_intent_id: str, as_of: int | None) -> bool:
    """Saves the card of a completed setup session, read from its SetupIntent at Stripe."""
    return payment_methods.payment_method_from_setup(account_id=account_id, setup_intent_id=setup_intent_id,
                                                     as_of=as_of)
