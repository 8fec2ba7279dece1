"""AI plans (the operator's catalogue), the seats a platform holds on them, and who holds a seat.

Invariants kept by PostgreSQL (constraints below) and by the services (``entitlements.services``):
- An AI plan's budgets are exact credits above zero, its session budget at most its weekly one; its price per
  seat is whole cents, not negative. A plan is never deleted (``is_active`` retires it).
- A seat subscription's quantity is at least 1; a provider subscription id names at most one of them; a
  platform has at most one manual (operator-recorded) subscription per plan, which ``seats_grant`` updates.
- A member holds at most one seat per platform (``SeatAssignment``: unique platform and user), whatever the
  plan. Assignments never exceed the seats of the plan's current subscriptions when they are made (the services
  check it under the plan's seats lock, ``entitlements.locks``); a quantity lowered later keeps them (the plan
  is then ``over_assigned`` and new assignments are refused until it is not).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from accounts.models import Platform
from credits.models import Hold, UsageEvent, exact_field, money_field
from subscriptions.models import BillingCycle


class Tier(models.TextChoices):
    EVERYDAY = "everyday", "Everyday"
    ADVANCED = "advanced", "Advanced"
    STRATEGIC = "strategic", "Strategic"


TIER_RANK = {Tier.EVERYDAY: 1, Tier.ADVANCED: 2, Tier.STRATEGIC: 3}


def model_tier(tiers: list[str]) -> str | None:
    """A model's tier, from the tiers the active AI plans of the catalogue list it with: the lowest (the catalogue
    keeps them equal, ``entitlements.catalogue``); None for a model no active plan lists. The one statement of the
    rule, for the usage path (``entitlements.funding``) and for what a seat is shown (``selectors``)."""
    return min(tiers, key=TIER_RANK.__getitem__) if tiers else None


class Overage(models.TextChoices):
    REFUSE = "refuse", "Refuse spending beyond a budget"
    CREDITS = "credits", "Charge spending beyond a budget to the member's credits"


class AIPlan(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    tier = models.CharField(max_length=16, choices=Tier.choices)
    icon = models.CharField(max_length=64, blank=True, default="")
    weekly_budget = money_field(help_text="Credits a seat may spend per calendar week (the platform's time zone).")
    session_budget = money_field(help_text="Credits a seat may spend per 6-hour session.")
    overage = models.CharField(max_length=16, choices=Overage.choices, default=Overage.REFUSE)
    purchasable = models.BooleanField(default=True)
    billing_cycle = models.CharField(max_length=8, choices=BillingCycle.choices, default=BillingCycle.MONTHLY)
    price_per_seat_cents = models.PositiveIntegerField(default=0, help_text="Per seat per billing cycle, in cents.")
    currency = models.CharField(max_length=3, default="USD")
    stripe_price_id = models.CharField(max_length=255, blank=True, default="")
    is_active = models.BooleanField(default=True)
    platforms = models.ManyToManyField(
        Platform, blank=True, related_name="ai_plans",
        help_text="The platforms it is offered to; none: every platform.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "AI plan"
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(condition=Q(tier__in=Tier.values), name="ai_plan_tier_valid"),
            models.CheckConstraint(condition=Q(overage__in=Overage.values), name="ai_plan_overage_valid"),
            models.CheckConstraint(condition=Q(billing_cycle__in=BillingCycle.values), name="ai_plan_cycle_valid"),
            models.CheckConstraint(condition=Q(currency="USD"), name="ai_plan_currency_supported"),
            models.CheckConstraint(condition=Q(session_budget__gt=0, weekly_budget__gt=0),
                                   name="ai_plan_budgets_positive"),
            models.CheckConstraint(condition=Q(session_budget__lte=F("weekly_budget")),
                                   name="ai_plan_session_within_week"),
            models.UniqueConstraint(fields=["stripe_price_id"], condition=~Q(stripe_price_id=""),
                                    name="ai_plan_unique_stripe_price"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.tier})"


class AIPlanModel(models.Model):
    """A model a seat of the plan may call (a model name of the rate card), and its tier."""

    plan = models.ForeignKey(AIPlan, on_delete=models.PROTECT, related_name="models")
    model = models.CharField(max_length=200, help_text="The model's name on the rate card.")
    display_name = models.CharField(max_length=200, blank=True, default="")
    tier = models.CharField(max_length=16, choices=Tier.choices)

    class Meta:
        verbose_name = "AI plan model"
        ordering = ["plan_id", "model"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "model"], name="ai_plan_model_unique"),
            models.CheckConstraint(condition=Q(tier__in=Tier.values), name="ai_plan_model_tier_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.model} ({self.tier}) on {self.plan_id}"


class SeatProvider(models.TextChoices):
    STRIPE = "stripe", "Stripe"
    MANUAL = "manual", "Manual (a contract paid outside Stripe)"


class SeatStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAST_DUE = "past_due", "Past due"
    CANCELED = "canceled", "Canceled"
    EXPIRED = "expired", "Expired"


# The statuses whose seats count: a past-due subscription keeps its seats while the provider retries.
SEATED_STATUSES = (SeatStatus.ACTIVE, SeatStatus.PAST_DUE)


class SeatSubscription(models.Model):
    """Seats a platform holds on an AI plan: the quantity comes from the provider (the licence source)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    platform = models.ForeignKey(Platform, on_delete=models.PROTECT, related_name="seat_subscriptions")
    ai_plan = models.ForeignKey(AIPlan, on_delete=models.PROTECT, related_name="subscriptions")
    quantity = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=SeatStatus.choices, default=SeatStatus.ACTIVE)
    billing_cycle = models.CharField(max_length=8, choices=BillingCycle.choices, default=BillingCycle.MONTHLY)
    provider = models.CharField(max_length=16, choices=SeatProvider.choices)
    provider_subscription_id = models.CharField(max_length=255, blank=True, default="")
    provider_customer_id = models.CharField(max_length=255, blank=True, default="")
    started_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True, help_text="None: ongoing.")
    next_billing_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True, help_text="When the provider last confirmed it.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["platform_id", "ai_plan_id", "-started_at"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=1), name="seat_subscription_quantity_positive"),
            models.CheckConstraint(condition=Q(status__in=SeatStatus.values), name="seat_subscription_status_valid"),
            models.CheckConstraint(condition=Q(provider__in=SeatProvider.values),
                                   name="seat_subscription_provider_valid"),
            models.CheckConstraint(condition=Q(billing_cycle__in=BillingCycle.values),
                                   name="seat_subscription_cycle_valid"),
            models.CheckConstraint(condition=Q(ends_at__isnull=True) | Q(ends_at__gt=F("started_at")),
                                   name="seat_subscription_ordered"),
            models.UniqueConstraint(fields=["provider", "provider_subscription_id"],
                                    condition=~Q(provider_subscription_id=""), name="seat_subscription_unique_id"),
            models.UniqueConstraint(fields=["platform", "ai_plan"], condition=Q(provider=SeatProvider.MANUAL),
                                    name="seat_subscription_one_manual_per_plan"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.ai_plan_id} for {self.platform_id} ({self.provider}, {self.status})"


class SeatAssignment(models.Model):
    """A member's seat on an AI plan of their platform: at most one per member and platform."""

    platform = models.ForeignKey(Platform, on_delete=models.PROTECT, related_name="seat_assignments")
    ai_plan = models.ForeignKey(AIPlan, on_delete=models.PROTECT, related_name="assignments")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="seat_assignments")
    assigned_at = models.DateTimeField(auto_now_add=True)
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["platform_id", "ai_plan_id", "assigned_at"]
        constraints = [
            models.UniqueConstraint(fields=["platform", "user"], name="seat_assignment_one_per_member"),
        ]
        indexes = [models.Index(fields=["platform", "ai_plan"], name="seat_assignment_plan")]

    def __str__(self) -> str:
        return f"{self.user_id} on {self.ai_plan_id} @ {self.platform_id}"


# --- budgets: what each seat spends per window -----------------------------------------------------------------

SESSION_HOURS = 6


class WindowKind(models.TextChoices):
    WEEKLY = "weekly", "Calendar week (Monday 00:00 in the platform's time zone)"
    SESSION = "session", "Session (6 hours from the first request after the previous one ended)"


class SeatWindow(models.Model):
    """A member's seat spending in one budget window, exact: ``spent`` by usage, ``reserved`` by active holds.
    Written only by the usage path (``entitlements.funding``) under the member's credit account lock, so two
    requests of one seat never interleave; each change has its ``SeatCharge`` row. The window is the member's on
    the platform, whatever their plan: a seat moved to another plan keeps the week's spending."""

    id = models.BigAutoField(primary_key=True)
    platform = models.ForeignKey(Platform, on_delete=models.PROTECT, related_name="+", db_index=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=8, choices=WindowKind.choices)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    spent = exact_field(default=0)
    reserved = exact_field(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["platform_id", "user_id", "kind", "-starts_at"]
        constraints = [
            models.UniqueConstraint(fields=["platform", "user", "kind", "starts_at"], name="seat_window_unique"),
            models.CheckConstraint(condition=Q(kind__in=WindowKind.values), name="seat_window_kind_valid"),
            models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")), name="seat_window_ordered"),
            models.CheckConstraint(condition=Q(spent__gte=0, reserved__gte=0), name="seat_window_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.starts_at:%Y-%m-%d %H:%M} of {self.user_id}@{self.platform_id}: {self.spent}"


class ChargeKind(models.TextChoices):
    SPEND = "spend", "Usage paid by the seat"
    RESERVE = "reserve", "A hold reserved on the seat"
    CAPTURE = "capture", "A hold captured (its reservation becomes spending)"
    RELEASE = "release", "A hold released or expired (its reservation given back)"


class SeatCharge(models.Model):
    """One change of a seat's windows, append-only: the audit of budgets as the ledger is of credits. For each
    window, ``spent`` is the sum of its rows' ``spent_delta`` and ``reserved`` the sum of ``reserved_delta``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    platform = models.ForeignKey(Platform, on_delete=models.PROTECT, related_name="+", db_index=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False)
    ai_plan = models.ForeignKey(AIPlan, on_delete=models.PROTECT, related_name="+", db_index=False)
    kind = models.CharField(max_length=8, choices=ChargeKind.choices)
    weekly_window = models.ForeignKey(SeatWindow, on_delete=models.PROTECT, related_name="+")
    session_window = models.ForeignKey(SeatWindow, on_delete=models.PROTECT, related_name="+")
    spent_delta = exact_field()
    reserved_delta = exact_field()
    weekly_budget = money_field(help_text="The plan's weekly budget when the row was written.")
    session_budget = money_field()
    weekly_spent_after = exact_field()
    session_spent_after = exact_field()
    usage_event = models.ForeignKey(UsageEvent, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
                                    db_index=False, db_constraint=False)  # partitioned: a trigger checks it
    hold = models.ForeignKey(Hold, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    model = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["platform", "created_at"], name="seat_charge_platform_created")]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=ChargeKind.values), name="seat_charge_kind_valid"),
            models.CheckConstraint(condition=~Q(spent_delta=0) | ~Q(reserved_delta=0),
                                   name="seat_charge_moves_something"),
            models.CheckConstraint(condition=Q(spent_delta__gte=0), name="seat_charge_spending_only_grows"),
            models.CheckConstraint(condition=Q(kind="reserve") | Q(hold__isnull=True) | Q(reserved_delta__lte=0),
                                   name="seat_charge_only_reserve_reserves"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.spent_delta}/{self.reserved_delta} by {self.user_id}@{self.platform_id}"
