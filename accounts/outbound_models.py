"""Outbound webhooks: a platform's endpoints, the outbox of events, and their deliveries with every attempt.

An event is written in the same transaction as the change it reports (the ledger's statement itself writes the
balance alerts, ``credits.sql.alert_events``), so none is lost when the worker or broker is down and none is sent
for a change that rolled back. ``accounts.outbound`` fans each event out to the endpoints subscribed to its type and
delivers it, signed, at least once, in order per endpoint and account (``accounts.tasks.outbound_deliver_task``)."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.functions import RandomUUID
from django.db import models
from django.db.models import Q


class OutboundEventType(models.TextChoices):
    BALANCE_LOW = "balance.low", "An account's available credits fell below its alert threshold"
    BALANCE_DEPLETED = "balance.depleted", "An account's available credits reached zero"
    AUTO_RECHARGE_SUCCEEDED = "auto_recharge.succeeded", "An auto-recharge was paid and credited"
    AUTO_RECHARGE_FAILED = "auto_recharge.failed", "An auto-recharge failed"
    ORDER_PAID = "order.paid", "An order was paid and credited"
    SUBSCRIPTION_UPDATED = "subscription.updated", "A subscription was created, changed or ended"
    BUDGET_EXCEEDED = "budget.exceeded", "A seat's weekly or session budget refused usage"


class _ExactDecoder(json.JSONDecoder):
    """Amounts written by SQL as JSON numbers come back as exact Decimals, never floats."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        kwargs.setdefault("parse_float", Decimal)
        super().__init__(*args, **kwargs)


class WebhookEndpoint(models.Model):
    """Where a platform wants its events: a URL, the event types, and the secret its requests are signed with
    (shown once, when created or rotated). Never deleted: deactivate it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    platform = models.ForeignKey("accounts.Platform", on_delete=models.PROTECT, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True, default="")
    events = ArrayField(models.CharField(max_length=40, choices=OutboundEventType.choices))
    active = models.BooleanField(default=True)
    secret = models.CharField(max_length=80, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="+", db_index=False)

    class Meta:
        ordering = ["platform_id", "created_at"]
        indexes = [models.Index(fields=["platform"], condition=Q(active=True), name="webhook_endpoint_active")]

    def __str__(self) -> str:
        return f"{self.url} ({', '.join(self.events)})"


class OutboundEvent(models.Model):
    """One event of a platform, recorded in the transaction of the change it reports. ``event_id`` is stable:
    every delivery and retry of the event carries it, so a receiver drops duplicates by it."""

    id = models.BigAutoField(primary_key=True)  # the order events happened in
    event_id = models.UUIDField(unique=True, default=uuid.uuid4, db_default=RandomUUID(), editable=False)
    platform = models.ForeignKey("accounts.Platform", on_delete=models.PROTECT, related_name="+", db_index=False)
    # The credit account the event is about (credits is a layer above: a plain column, no foreign key).
    account_id = models.UUIDField(null=True, blank=True)
    type = models.CharField(max_length=40, choices=OutboundEventType.choices)
    data = models.JSONField(default=dict, decoder=_ExactDecoder)
    # A refusal's event is recorded once per cause (e.g. a seat's budget window), not once per refused request.
    dedupe_key = models.CharField(max_length=200, null=True, blank=True)
    fanned_out = models.BooleanField(default=False, db_default=False)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        # Few indexes: every alert a debit records maintains each of them on the usage path.
        indexes = [
            models.Index(fields=["id"], condition=Q(fanned_out=False), name="outbound_event_not_fanned_out"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["dedupe_key"], condition=Q(dedupe_key__isnull=False),
                                    name="outbound_event_dedupe_key"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending (to send, or to retry)"
    DELIVERED = "delivered", "Delivered (2xx)"
    FAILED = "failed", "Failed (gave up after the retry period)"


class OutboundDelivery(models.Model):
    """One event to one endpoint: pending until a 2xx answer, retried with exponential back-off until
    ``OUTBOUND_RETRY_FOR_SECONDS`` (3 days) after the event, then failed. Within an endpoint, the deliveries of one
    account go out in event order: one waits while an earlier one is pending."""

    id = models.BigAutoField(primary_key=True)
    event = models.ForeignKey(OutboundEvent, on_delete=models.PROTECT, related_name="deliveries", db_index=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.PROTECT, related_name="deliveries",
                                 db_index=False)
    # The ordering stream within the endpoint: the event's account (its own id for an event of no account).
    stream = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "outbound deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="outbound_delivery_once_per_endpoint"),
        ]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="outbound_delivery_due"),
            models.Index(fields=["endpoint", "stream", "event"], condition=Q(status="pending"),
                         name="outbound_delivery_stream"),
            models.Index(fields=["endpoint", "-id"], name="outbound_delivery_endpoint"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} -> {self.endpoint_id} ({self.status})"


class OutboundAttempt(models.Model):
    """One HTTP request of a delivery, and what came back."""

    id = models.BigAutoField(primary_key=True)
    delivery = models.ForeignKey(OutboundDelivery, on_delete=models.PROTECT, related_name="attempt_rows",
                                 db_index=False)
    attempted_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True, default="")
    response_body = models.CharField(max_length=1000, blank=True, default="")
    duration_ms = models.PositiveIntegerField()
    manual = models.BooleanField(default=False, help_text="Sent by a redelivery from the API or the admin.")

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["delivery", "-id"], name="outbound_attempt_delivery")]

    def __str__(self) -> str:
        return f"attempt {self.id} of delivery {self.delivery_id}: {self.status_code or self.error}"
