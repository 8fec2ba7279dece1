"""Credit accounts, the append-only ledger, and holds (reservations).

Invariants kept by the services and, where a database can, by PostgreSQL itself:
- ``balance`` is the sum of the ledger's ``balance_delta``; ``reserved`` the sum of ``reserved_delta``
  and equals the amounts of the active holds; ``available = balance - reserved`` is never negative.
- Ledger rows are numbered 1, 2, 3... per account with no gap (``sequence``), carry the running
  ``balance_after``, and can never be updated or deleted (a trigger refuses it).
- ``created_at`` never decreases along ``sequence`` within an account, so a date range is a sequence range.
- The ledger and the usage events are partitioned by month (``credits.partitions``); the rules spanning every
  month (an idempotency key or a request_id used once per account, references to their rows) are kept by triggers
  and the key tables below (``LedgerKey``, ``UsageKey``).
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from accounts.models import Platform
from billing_service.money import (
    DECIMAL_PLACES,
    EXACT_DECIMAL_PLACES,
    EXACT_MAX_DIGITS,
    MAX_DIGITS,
    QUANTUM,
)

MAX_BALANCE = Decimal("100000000000000") - Decimal("0.000001")  # what NUMERIC(20, 6) holds


def money_field(**kwargs) -> models.DecimalField:  # noqa: ANN003
    return models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, **kwargs)


def exact_field(**kwargs) -> models.DecimalField:  # noqa: ANN003
    """An exact usage cost or a sum of them (12 decimals: no price x tokens product is ever rounded)."""
    return models.DecimalField(max_digits=EXACT_MAX_DIGITS, decimal_places=EXACT_DECIMAL_PLACES, **kwargs)


class TransactionType(models.TextChoices):
    ADD = "add", "Add (top-up, purchase, grant)"
    SUBTRACT = "subtract", "Subtract (usage)"
    RESERVE = "reserve", "Reserve (hold)"
    RELEASE = "release", "Release (hold freed)"
    ROLLOVER = "rollover", "Rollover (period end)"
    REFUND = "refund", "Refund"
    ADJUSTMENT = "adjustment", "Manual adjustment"
    CHECKIN = "checkin", "Daily check-in"
    PROMOTION = "promotion", "Promotion (coupon)"
    EXPIRY = "expiry", "Expiry (promotional credits past their date)"


class CreditAccount(models.Model):
    """One per (platform, member), and one per platform for the platform itself (``user`` is null)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    platform = models.ForeignKey(Platform, on_delete=models.PROTECT, related_name="credit_accounts")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="credit_accounts"
    )
    currency = models.CharField(max_length=3, default="USD")
    balance = money_field(default=Decimal(0), editable=False)
    reserved = money_field(default=Decimal(0), editable=False)
    # The last ledger sequence number and the number of rows of each type: exact counts for
    # paginated listings at constant cost.
    last_sequence = models.BigIntegerField(default=0, editable=False)
    count_add = models.BigIntegerField(default=0, editable=False)
    count_subtract = models.BigIntegerField(default=0, editable=False)
    count_reserve = models.BigIntegerField(default=0, editable=False)
    count_release = models.BigIntegerField(default=0, editable=False)
    count_rollover = models.BigIntegerField(default=0, editable=False)
    count_refund = models.BigIntegerField(default=0, editable=False)
    count_adjustment = models.BigIntegerField(default=0, editable=False)
    count_checkin = models.BigIntegerField(default=0, db_default=0, editable=False)
    count_promotion = models.BigIntegerField(default=0, db_default=0, editable=False)
    count_expiry = models.BigIntegerField(default=0, db_default=0, editable=False)
    last_entry_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Usage cost not yet debited: less than one quantum (0.000001). The ledger debits whole quanta; the rest of
    # each exact cost waits here for the next charge (credits.ledger.charge_split), so that for every account
    # the usage debits plus this remainder equal the exact costs of its usage events.
    carried_remainder = exact_field(default=Decimal(0), db_default=Decimal(0), editable=False)
    low_balance_threshold = money_field(
        null=True,
        blank=True,
        help_text=(
            "The hook CREDITS_LOW_BALANCE_HOOK runs after a debit leaves `available` below it. Set by payments' "
            "auto-recharge while it is enabled, NULL otherwise."
        ),
    )

    alert_threshold = money_field(
        null=True,
        blank=True,
        help_text=(
            "The platform hears of this account's balance (outbound webhooks): `balance.low` when a debit takes "
            "`available` from at least this to below it, `balance.depleted` when one takes it to zero. NULL: no alerts."
        ),
    )

    external_funding = models.BooleanField(
        default=False,
        db_default=False,
        editable=False,
        help_text=(
            "Usage of this account is first offered to settings.CREDITS_USAGE_FUNDER (a member's seat: kept by the "
            "entitlements app, true while the member holds one); what it does not fund is paid with credits."
        ),
    )

    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["platform_id", "created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["platform", "user"], condition=Q(user__isnull=False), name="account_one_per_member"
            ),
            models.UniqueConstraint(
                fields=["platform"], condition=Q(user__isnull=True), name="account_one_per_platform"
            ),
            models.CheckConstraint(condition=Q(reserved__gte=0), name="account_reserved_not_negative"),
            models.CheckConstraint(condition=Q(balance__gte=F("reserved")), name="account_available_not_negative"),
            models.CheckConstraint(condition=Q(balance__lte=MAX_BALANCE), name="account_balance_within_limit"),
            models.CheckConstraint(condition=Q(currency="USD"), name="account_currency_supported"),
            models.CheckConstraint(
                condition=Q(carried_remainder__gte=0) & Q(carried_remainder__lt=QUANTUM),
                name="account_carried_remainder_below_quantum",
            ),
        ]

    def __str__(self) -> str:
        owner = self.user.get_username() if self.user_id else "(platform)"
        return f"{self.platform.platform_key}/{owner}"

    @property
    def available(self) -> Decimal:
        return self.balance - self.reserved

    @property
    def is_platform_account(self) -> bool:
        return self.user_id is None

    def count_of(self, transaction_type: str) -> int:
        return getattr(self, f"count_{transaction_type}")


class HoldStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    CAPTURED = "captured", "Captured"
    RELEASED = "released", "Released"
    EXPIRED = "expired", "Expired"


class Hold(models.Model):
    """Credits reserved before an AI call; captured (real cost) or released exactly once."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="holds", db_index=False)
    amount = money_field()
    request_id = models.CharField(max_length=255, blank=True, default="", help_text="The caller's idempotency key.")
    status = models.CharField(max_length=16, choices=HoldStatus.choices, default=HoldStatus.ACTIVE)
    captured_amount = money_field(null=True, blank=True)
    funded = money_field(
        default=Decimal(0),
        db_default=Decimal(0),
        help_text="The part of the amount reserved on the account's funder (a seat's budgets), not on its credits.",
    )
    reference = models.CharField(max_length=255, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    expires_at = models.DateTimeField()
    settled_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["expires_at"], condition=Q(status="active"), name="hold_active_by_expiry"),
            models.Index(fields=["account", "status", "-created_at"], name="hold_account_status"),
        ]
        constraints = [
            # A request_id names one AI call: its hold's, or its direct usage event's (credits.services.common
            # .call_key), never two holds.
            models.UniqueConstraint(
                fields=["account", "request_id"], condition=~Q(request_id=""), name="hold_unique_request_per_account"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="hold_amount_positive"),
            models.CheckConstraint(condition=Q(funded__gte=0, funded__lte=F("amount")), name="hold_funded_within"),
            models.CheckConstraint(condition=Q(status__in=HoldStatus.values), name="hold_status_valid"),
            models.CheckConstraint(
                condition=Q(status="active", settled_at__isnull=True) | Q(settled_at__isnull=False),
                name="hold_settled_when_not_active",
            ),
        ]

    def __str__(self) -> str:
        return f"hold {self.id} {self.amount} ({self.status})"


class EntryStatus(models.TextChoices):
    COMPLETED = "completed", "Completed"


class LedgerEntry(models.Model):
    """One immutable change to an account. Written only by ``credits.ledger.post``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Foreign keys below are covered by the composite and partial indexes in Meta (no index of their own:
    # fewer indexes to maintain on the hot insert).
    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="entries", db_index=False)
    platform = models.ForeignKey(Platform, on_delete=models.PROTECT, related_name="+", db_index=False)
    sequence = models.BigIntegerField()
    transaction_type = models.CharField(max_length=16, choices=TransactionType.choices)
    status = models.CharField(max_length=16, choices=EntryStatus.choices, default=EntryStatus.COMPLETED)
    balance_delta = money_field()
    reserved_delta = money_field()
    balance_after = money_field()
    reserved_after = money_field()
    payment_amount_usd = money_field(null=True, blank=True)
    description = models.CharField(max_length=500, blank=True, default="")
    reference = models.CharField(max_length=255, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    hold = models.ForeignKey(
        Hold, on_delete=models.PROTECT, null=True, blank=True, related_name="entries", db_index=False
    )
    # A reference to a partitioned row: checked by a trigger, not a foreign key (``credits.partitions``).
    refund_of = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="refunds", db_index=False,
        db_constraint=False,
    )
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    request_hash = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        db_table = "credits_ledger_entry"
        ordering = ["-sequence"]
        verbose_name = "ledger entry"
        verbose_name_plural = "ledger entries"
        indexes = [
            models.Index(fields=["account", "created_at"], name="ledger_account_created"),
            models.Index(fields=["account", "transaction_type", "sequence"], name="ledger_account_type_seq"),
            models.Index(fields=["platform", "-created_at"], name="ledger_platform_created"),
            models.Index(fields=["refund_of"], condition=Q(refund_of__isnull=False), name="ledger_refund_of"),
            models.Index(fields=["hold"], condition=Q(hold__isnull=False), name="ledger_hold"),
        ]
        # (account, sequence) is unique by an index of each month's partition (``credits.partitions``); an
        # idempotency key by the key table ``LedgerKey``, through which a key's row is found (no index here).
        constraints = [
            models.CheckConstraint(condition=Q(sequence__gte=1), name="ledger_sequence_positive"),
            models.CheckConstraint(
                condition=Q(transaction_type__in=TransactionType.values), name="ledger_type_valid"
            ),
            models.CheckConstraint(
                condition=~Q(balance_delta=0) | ~Q(reserved_delta=0), name="ledger_entry_moves_something"
            ),
            models.CheckConstraint(
                condition=Q(reserved_after__gte=0) & Q(balance_after__gte=F("reserved_after")),
                name="ledger_after_consistent",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.transaction_type} {self.balance_delta}"

    @property
    def credits_amount(self) -> Decimal:
        """The credits the row moved: the hold amount for reserve/release, else the balance change."""
        if self.transaction_type in (TransactionType.RESERVE, TransactionType.RELEASE):
            return abs(self.reserved_delta)
        return abs(self.balance_delta)


# --- metering: the rate card, usage events and their rollups ------------------------------------------


class ModelPrice(models.Model):
    """One version of a model's price on a platform's rate card, in credits per million tokens.

    A price change is a new version with its own ``effective_from``; a usage event is priced by the version
    in effect when it occurred, and keeps a reference to it."""

    platform = models.ForeignKey(Platform, on_delete=models.PROTECT, related_name="model_prices", db_index=False)
    model = models.CharField(max_length=100)
    input_per_million = money_field()
    output_per_million = money_field()
    effective_from = models.DateTimeField()
    description = models.CharField(max_length=200, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["platform_id", "model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["platform", "model", "effective_from"], name="model_price_one_version_per_instant"
            ),
            models.CheckConstraint(
                condition=Q(input_per_million__gte=0) & Q(output_per_million__gte=0), name="model_price_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} from {self.effective_from:%Y-%m-%d %H:%M}"


class PricingSource(models.TextChoices):
    AMOUNT = "amount", "Amount given by the caller"
    RATE_CARD = "rate_card", "Priced from the rate card"


class UsageEvent(models.Model):
    """One AI request as the platform reported it, with what it cost and the ledger row that charged it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="usage_events", db_index=False)
    platform = models.ForeignKey(Platform, on_delete=models.PROTECT, related_name="+", db_index=False)
    request_id = models.CharField(max_length=255)
    endpoint = models.CharField(max_length=200)
    model = models.CharField(max_length=100, blank=True, default="")
    input_tokens = models.BigIntegerField(null=True, blank=True)
    output_tokens = models.BigIntegerField(null=True, blank=True)
    cost = exact_field(help_text="The exact cost of the call (0 when it failed).")
    charged = money_field(
        default=Decimal(0),
        db_default=Decimal(0),
        help_text="What its ledger row debited: whole quanta of the account's carried remainder plus the cost.",
    )
    funded = exact_field(
        default=Decimal(0),
        db_default=Decimal(0),
        help_text="The part of the cost paid by the account's funder (a seat), not with credits.",
    )
    funded_by = models.CharField(
        max_length=120, blank=True, default="", help_text="What paid ``funded``: 'seat:<AI plan slug>'."
    )
    priced_by = models.CharField(max_length=16, choices=PricingSource.choices)
    price = models.ForeignKey(
        ModelPrice, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    success = models.BooleanField(default=True)
    description = models.CharField(max_length=500, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    ledger_entry = models.ForeignKey(
        LedgerEntry, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False,
        db_constraint=False,
    )
    hold = models.ForeignKey(Hold, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False)
    request_hash = models.CharField(max_length=64)
    occurred_at = models.DateTimeField()
    recorded_at = models.DateTimeField()

    class Meta:
        ordering = ["-occurred_at"]
        # Unique per account: a key table (``UsageKey``) holds it across months.
        indexes = [models.Index(fields=["account", "request_id"], name="usage_account_request")]
        constraints = [
            models.CheckConstraint(condition=Q(cost__gte=0), name="usage_cost_not_negative"),
            models.CheckConstraint(
                condition=(Q(input_tokens__isnull=True) | Q(input_tokens__gte=0))
                & (Q(output_tokens__isnull=True) | Q(output_tokens__gte=0)),
                name="usage_tokens_not_negative",
            ),
            models.CheckConstraint(condition=Q(success=True) | Q(cost=0), name="usage_failed_costs_nothing"),
            models.CheckConstraint(condition=Q(charged__gte=0), name="usage_charged_not_negative"),
            models.CheckConstraint(condition=Q(success=True) | Q(charged=0), name="usage_failed_charged_nothing"),
            models.CheckConstraint(condition=Q(funded__gte=0, funded__lte=F("cost")), name="usage_funded_within_cost"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.endpoint} {self.cost}"


class UsageRollup(models.Model):
    """Usage per account, UTC day and endpoint, kept in the transaction that records each event, so that
    statistics cost the same however many raw events there are."""

    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="+", db_index=False)
    day = models.DateField()
    endpoint = models.CharField(max_length=200)
    total_requests = models.BigIntegerField(default=0)
    successful_requests = models.BigIntegerField(default=0)
    failed_requests = models.BigIntegerField(default=0)
    credits_consumed = exact_field(default=Decimal(0))
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "day", "endpoint"], name="usage_rollup_unique_bucket"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.day} {self.endpoint}"


# --- promotions: the daily check-in --------------------------------------------------------------------------


class CheckinConfig(models.Model):
    """A platform's daily check-in: off until an admin turns it on (``PUT /admin/checkin/config/``). The day is
    the calendar day in the platform's time zone (``Platform.time_zone``)."""

    platform = models.OneToOneField(Platform, on_delete=models.PROTECT, primary_key=True,
                                    related_name="checkin_config")
    enabled = models.BooleanField(default=False)
    credits_per_day = money_field(default=Decimal(0))
    streak_bonuses = models.JSONField(
        default=dict, blank=True,
        help_text='Extra credits on a given day of a streak: {"7": "5.00"} adds 5 on the 7th day in a row.',
    )
    monthly_cap = money_field(null=True, blank=True,
                              help_text="Credits a member may earn by check-ins per calendar month; none: no cap.")
    credits_expire_after_days = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Check-in credits not spent this many days after the check-in day leave by an `expiry` ledger row "
                  "(at the platform's local midnight); none: they never expire.",
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="+")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(credits_per_day__gte=0), name="checkin_credits_not_negative"),
            models.CheckConstraint(condition=Q(monthly_cap__isnull=True) | Q(monthly_cap__gte=0),
                                   name="checkin_cap_not_negative"),
        ]

    def __str__(self) -> str:
        return f"check-in of {self.platform_id}: {self.credits_per_day}/day ({'on' if self.enabled else 'off'})"


class Checkin(models.Model):
    """A member's check-in of one day: at most one per account and day (a constraint, so concurrent check-ins
    grant once), with its streak and the credits it granted (its ``checkin`` ledger row; none when it granted 0)."""

    id = models.BigAutoField(primary_key=True)
    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="checkins", db_index=False)
    day = models.DateField()
    streak = models.PositiveIntegerField()
    credits = money_field()
    ledger_entry = models.OneToOneField(LedgerEntry, on_delete=models.PROTECT, null=True, blank=True,
                                        related_name="+", db_constraint=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Expiry of the credits granted (CheckinConfig.credits_expire_after_days when granted; none: never).
    expires_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True, help_text="When the expiry of these credits was settled.")
    expired_credits = money_field(null=True, blank=True, help_text="What was left of them and taken back then.")
    expiry_entry = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
                                     db_index=False, db_constraint=False,
                                     help_text="The `expiry` ledger row that took them back.")

    class Meta:
        ordering = ["-day"]
        indexes = [
            models.Index(fields=["expires_at"], condition=Q(expires_at__isnull=False, expired_at__isnull=True),
                         name="checkin_expiry_due"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["account", "day"], name="checkin_one_per_account_and_day"),
            models.CheckConstraint(condition=Q(streak__gte=1), name="checkin_streak_positive"),
            models.CheckConstraint(condition=Q(credits__gte=0), name="checkin_credits_granted_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} checked in {self.day} (streak {self.streak}, {self.credits})"


# --- the admin dashboard: the ledger summed per platform, UTC day and type -----------------------------------


class LedgerDailyRollup(models.Model):
    """The ledger rows of one platform, UTC day and transaction type, summed: what the admin dashboard reads
    instead of the ledger. Recomputed for whole days from the ledger by ``credits.services.ledger_rollups_refresh``
    (the beat: today and yesterday every 5 minutes; ``backfill_ledger_rollups`` for every day), never written
    anywhere else, so it is only as fresh as its last refresh (``refreshed_at``).

    ``credits_in`` sums the positive ``balance_delta``s, ``credits_out`` the negative ones (as a positive number),
    ``credits_in_paid`` the positive ones of rows with a ``payment_amount_usd`` (credits sold) and ``payment_usd``
    what those payments were. Reserve and release rows move no balance: they are counted only."""

    platform = models.ForeignKey(Platform, on_delete=models.PROTECT, related_name="+", db_index=False)
    day = models.DateField(help_text="The UTC day of the rows' created_at.")
    transaction_type = models.CharField(max_length=16, choices=TransactionType.choices)
    entries = models.BigIntegerField(default=0)
    credits_in = money_field(default=Decimal(0))
    credits_out = money_field(default=Decimal(0))
    credits_in_paid = money_field(default=Decimal(0))
    payment_usd = money_field(default=Decimal(0))
    refreshed_at = models.DateTimeField()

    class Meta:
        ordering = ["-day", "platform", "transaction_type"]
        constraints = [
            models.UniqueConstraint(fields=["platform", "day", "transaction_type"],
                                    name="ledger_daily_rollup_unique_bucket"),
        ]
        indexes = [models.Index(fields=["day"], name="ledger_daily_rollup_day")]

    def __str__(self) -> str:
        return f"{self.platform_id} {self.day} {self.transaction_type}: +{self.credits_in} -{self.credits_out}"


# --- history partitioned by month: what spans every month (``credits.partitions``) ----------------------------
#
# A partitioned table's unique indexes must include its partition key (the month), so the rules that span every
# month live in unpartitioned tables written by triggers on the history tables (migration 0013):
# - ``LedgerKey``: an idempotency key posts once per account. Every keyed ledger row claims its key in the
#   statement that writes it; a twin's claim is a unique violation of ``credits_ledger_key_pkey``. A key's row is
#   found through it (it knows the row's month).
# - ``UsageKey``: a request_id is recorded once per account, the same way (``credits_usage_key_pkey``).
# - ``ArchivedTotals``: what the months detached from the ledger and the usage events held, per account, so that
#   the ledger's invariants (``credits.verification``) still add up without them.
# A month detached (``partitions detach``) takes its keys with it: they are unique across the attached months.


class LedgerKey(models.Model):
    pk = models.CompositePrimaryKey("account_id", "idempotency_key")
    account_id = models.UUIDField()
    idempotency_key = models.CharField(max_length=255)
    entry_id = models.UUIDField()
    created_at = models.DateTimeField(help_text="The ledger row's: the month it lives in.")

    class Meta:
        db_table = "credits_ledger_key"

    def __str__(self) -> str:
        return f"{self.account_id} {self.idempotency_key}"


class UsageKey(models.Model):
    pk = models.CompositePrimaryKey("account_id", "request_id")
    account_id = models.UUIDField()
    request_id = models.CharField(max_length=255)
    event_id = models.UUIDField()
    recorded_at = models.DateTimeField(help_text="The usage event's: the month it lives in.")

    class Meta:
        db_table = "credits_usage_key"

    def __str__(self) -> str:
        return f"{self.account_id} {self.request_id}"


class ArchivedTotals(models.Model):
    """One account's history in detached months: its ledger rows up to ``through_sequence`` (the running totals
    after the last of them and the rows per type) and its usage events' sums. Written only by
    ``credits.partitions.partition_detach``, in the transaction that detaches a month."""

    account = models.OneToOneField(CreditAccount, on_delete=models.PROTECT, primary_key=True, related_name="+")
    through_sequence = models.BigIntegerField(default=0)
    balance = money_field(default=Decimal(0))
    reserved = money_field(default=Decimal(0))
    counts = models.JSONField(default=dict, help_text="Detached ledger rows per transaction type.")
    usage_cost = exact_field(default=Decimal(0))
    usage_charged = money_field(default=Decimal(0))
    usage_funded = exact_field(default=Decimal(0))

    class Meta:
        verbose_name_plural = "archived totals"

    def __str__(self) -> str:
        return f"{self.account_id} through #{self.through_sequence}"
