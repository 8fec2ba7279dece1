"""Auto-recharge: the saved payment method of an account and the off-session charges made with it.

Kept beside ``payments.models`` (which imports this module) so that the auto-recharge rows stay apart from
orders and subscriptions. Invariants kept by PostgreSQL:
- an account has at most one saved payment method (the one auto-recharge charges);
- an account has at most one recharge in flight (``pending``: recorded, the charge not confirmed yet;
  ``processing``: Stripe accepted the PaymentIntent, its webhook not arrived yet) - a partial unique index;
- a ``succeeded`` recharge has exactly one ledger ``add`` row (``ledger_entry``, unique);
- a ``failed`` recharge, and only a failed one, says why in ``failure_reason`` (``last_error`` is the message);
- enabled auto-recharge settings are complete (a threshold and an amount).

The auto-recharge settings of an account (``AutoRechargeSettings``) are payments' own: the credit account only
carries ``low_balance_threshold``, which ``payments.recharge`` keeps equal to the threshold while auto-recharge is
enabled (NULL otherwise), so that the debit statement learns from its own row whether to call the hook.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from billing_service.money import DECIMAL_PLACES, MAX_DIGITS
from credits.models import CreditAccount, LedgerEntry, money_field


class AutoRechargeSettings(models.Model):
    """An account's auto-recharge settings (``PATCH /api/billing/account/``). No row: never set (off). Written only
    by ``payments.recharge`` under the account's lock, which also keeps ``CreditAccount.low_balance_threshold``."""

    account = models.OneToOneField(
        CreditAccount, on_delete=models.PROTECT, primary_key=True, related_name="auto_recharge"
    )
    enabled = models.BooleanField(default=False)
    threshold_usd = money_field(
        null=True, blank=True, help_text="Recharge when available credits fall below this."
    )
    amount_usd = money_field(null=True, blank=True, help_text="USD charged per recharge.")
    spending_limit_usd = money_field(
        null=True, blank=True, help_text="Most USD auto-recharge may charge per calendar month (UTC); empty: no limit."
    )
    last_triggered_at = models.DateTimeField(null=True, blank=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "auto-recharge settings"
        verbose_name_plural = "auto-recharge settings"
        constraints = [
            models.CheckConstraint(
                condition=Q(enabled=False) | (Q(threshold_usd__isnull=False) & Q(amount_usd__isnull=False)),
                name="auto_recharge_enabled_complete",
            ),
        ]

    def __str__(self) -> str:
        return f"auto-recharge of {self.account_id} ({'on' if self.enabled else 'off'})"


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


class RechargeFailure(models.TextChoices):
    """Why a recharge failed (``Recharge.failure_reason``, set exactly when it is ``failed``)."""

    DECLINED = "declined", "Declined (the provider refused the payment)"
    GAVE_UP = "gave_up", "Given up (sent too often, each time a provider error)"
    CANCELLED = "cancelled", "Cancelled (auto-recharge turned off, or the card replaced, before it was sent)"
    PAYMENT_METHOD_REMOVED = "payment_method_removed", "Cancelled (the owner removed the card before it was sent)"


# Failures that are not the payment's: never counted towards turning auto-recharge off.
CANCELLATIONS = (RechargeFailure.CANCELLED, RechargeFailure.PAYMENT_METHOD_REMOVED)


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
        LedgerEntry, on_delete=models.PROTECT, null=True, blank=True, db_constraint=False, related_name="recharge"
    )
    attempts = models.PositiveIntegerField(default=0, help_text="Times the charge was sent to the provider.")
    failure_reason = models.CharField(max_length=32, choices=RechargeFailure.choices, blank=True, default="")
    last_error = models.TextField(blank=True, default="", help_text="The provider's (or our) message, for people.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["account", "-created_at"], name="recharge_account_created"),
            # the failed recharges by reason (the admin's filter, an operator's "which gave up lately")
            models.Index(
                fields=["failure_reason", "-created_at"], condition=Q(status=RechargeStatus.FAILED),
                name="recharge_failed_reason",
            ),
        ]
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
            models.CheckConstraint(
                condition=(Q(status=RechargeStatus.FAILED) & Q(failure_reason__in=RechargeFailure.values))
                | (~Q(status=RechargeStatus.FAILED) & Q(failure_reason="")),
                name="recharge_failure_reason_when_failed",
            ),
        ]

    def __str__(self) -> str:
        return f"recharge {self.id} {self.amount_usd} USD ({self.status})"

    @property
    def amount_cents(self) -> int:
        return int(self.amount_usd * 100)
