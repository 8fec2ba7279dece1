"""Auto-recharge: the saved payment method of an account and the off-session charges made with it.

Kept beside ``payments.models`` (which imports this module) so that the auto-recharge rows stay apart from
orders and subscriptions. Invariants kept by PostgreSQL:
- an account has at most one saved payment method (the one auto-recharge charges);
- an account has at most one recharge in flight (``pending``: recorded, the charge not confirmed yet;
  ``processing``: Stripe accepted the PaymentIntent, its webhook not arrived yet) - a partial unique index;
- a ``succeeded`` recharge has exactly one ledger ``add`` row (``ledger_entry``, unique).
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from billing_service.money import DECIMAL_PLACES, MAX_DIGITS
from credits.models import CreditAccount, LedgerEntry


class SavedPaymentMethod(models.Model):
    """The card an account's owner saved for off-session charges (Stripe customer + payment method). A removed
    one keeps its row (``removed_at``): only rows without it count (``ACTIVE``)."""

    account = models.OneToOneField(
        CreditAccount, on_delete=models.PROTECT, primary_key=True, related_name="saved_payment_method"
    )
    provider = models.CharField(max_length=16, default="stripe")
    provider_customer_id = models.CharField(max_length=255, help_text="Stripe: cus_...")
    provider_payment_method_id = models.CharField(max_length=255, help_text="Stripe: pm_...")
    brand = models.CharField(max_length=32, blank=True, default="")
    last4 = models.CharField(max_length=4, blank=True, default="")
    synced_at = models.DateTimeField(
        null=True, blank=True, help_text="Time of the provider event that saved it: an older event changes nothing."
    )
    removed_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When the owner removed it (kept, so that a late event from before cannot bring it back).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(provider="stripe"), name="saved_pm_provider_supported"),
            models.CheckConstraint(
                condition=~Q(provider_customer_id="") & ~Q(provider_payment_method_id=""),
                name="saved_pm_ids_present",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.brand or 'card'} ...{self.last4 or '????'} of {self.account_id}"


ACTIVE = Q(removed_at__isnull=True)  # a saved payment method that has not been removed


class RechargeStatus(models.TextChoices):
    PENDING = "pending", "Pending (recorded; the charge is being made)"
    PROCESSING = "processing", "Processing (charged; waiting for the provider's confirmation)"
    SUCCEEDED = "succeeded", "Succeeded (credited)"
    FAILED = "failed", "Failed"


IN_FLIGHT = (RechargeStatus.PENDING, RechargeStatus.PROCESSING)


class Recharge(models.Model):
    """One automatic top-up: an off-session PaymentIntent whose Stripe idempotency key is ``recharge:<id>``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="recharges", db_index=False)
    status = models.CharField(max_length=16, choices=RechargeStatus.choices, default=RechargeStatus.PENDING)
    amount_usd = models.DecimalField(max_digits=12, decimal_places=2)
    credits = models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES)
    provider_customer_id = models.CharField(max_length=255)
    provider_payment_method_id = models.CharField(max_length=255)
    provider_payment_id = models.CharField(max_length=255, blank=True, default="", help_text="Stripe: pi_...")
    ledger_entry = models.OneToOneField(
        LedgerEntry, on_delete=models.PROTECT, null=True, blank=True, related_name="recharge"
    )
    attempts = models.PositiveIntegerField(default=0, help_text="Times the charge was sent to the provider.")
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["account", "-created_at"], name="recharge_account_created")]
        constraints = [
            models.UniqueConstraint(
                fields=["account"], condition=Q(status__in=IN_FLIGHT), name="recharge_one_in_flight"
            ),
            models.CheckConstraint(condition=Q(status__in=RechargeStatus.values), name="recharge_status_valid"),
            models.CheckConstraint(condition=Q(amount_usd__gt=0), name="recharge_amount_positive"),
            models.CheckConstraint(
                condition=~Q(status=RechargeStatus.SUCCEEDED) | Q(ledger_entry__isnull=False),
                name="recharge_succeeded_credited",
            ),
        ]

    def __str__(self) -> str:
        return f"recharge {self.id} {self.amount_usd} USD ({self.status})"

    @property
    def amount_cents(self) -> int:
        return int(self.amount_usd * 100)
