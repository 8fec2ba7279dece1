"""Plans a platform sells, and the subscriptions that put a credit account on a plan.

Invariants kept by PostgreSQL (constraints below) and by the services:
- A plan's slug is unique in its platform; prices are whole cents from 0; the currency is USD; ``features``
  is a JSON array of strings; ``rollover_cap`` is set exactly when ``rollover_policy`` is "capped"; a Stripe
  price id or Creem product id names at most one plan of a platform. Plans are never deleted (deactivate).
- An account has at most one current subscription (trialing, active or past due); an ended one (canceled,
  expired) never becomes current again. A provider's subscription id names at most one subscription.
- ``Subscription.previous_plan`` is the plan the account was on before this subscription's plan (null: on no
  plan, the free trial). Every start, plan change and status change leaves a ``SubscriptionChange`` row.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Func, Q, Value
from django.db.models.lookups import Exact

from accounts.models import Platform
from billing_service.money import DECIMAL_PLACES, MAX_AMOUNT, MAX_DIGITS
from credits.models import CreditAccount
from subscriptions.validation import MAX_PRICE_CENTS, MAX_SORT_ORDER, SLUG_MAX_LENGTH, SLUG_RE, RolloverPolicy


def credits_field(**kwargs) -> models.DecimalField:
    return models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, **kwargs)


class BillingCycle(models.TextChoices):
    MONTHLY = "monthly", "Monthly"
    YEARLY = "yearly", "Yearly"


class SubscriptionStatus(models.TextChoices):
    TRIALING = "trialing", "Trialing"
    ACTIVE = "active", "Active"
    PAST_DUE = "past_due", "Past due"
    CANCELED = "canceled", "Canceled"
    EXPIRED = "expired", "Expired"


CURRENT_STATUSES = (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)
ENDED_STATUSES = (SubscriptionStatus.CANCELED, SubscriptionStatus.EXPIRED)


class Provider(models.TextChoices):
    STRIPE = "stripe", "Stripe"
    CREEM = "creem", "Creem"
    MANUAL = "manual", "Manual (granted by an admin)"


def _jsonb_is_array_of_strings(field: str) -> Q:
    is_array = Exact(Func(F(field), function="jsonb_typeof", output_field=models.CharField()), Value("array"))
    # jsonb_path_exists is true when some element is not a string.
    has_other = Exact(
        Func(
            F(field),
            Value('$[*] ? (@.type() != "string")'),
            function="jsonb_path_exists",
            template="%(function)s(%(expressions)s::jsonpath)",
            output_field=models.BooleanField(),
        ),
        False,
    )
    return Q(is_array) & Q(has_other)


class Plan(models.Model):
    """A plan a platform offers: prices per billing cycle, credits per period, features, provider ids."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    platform = models.ForeignKey(Platform, on_delete=models.PROTECT, related_name="plans", db_index=False)
    slug = models.CharField(max_length=SLUG_MAX_LENGTH)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, default="")
    price_monthly = models.BigIntegerField(help_text="Cents per month.")
    price_yearly = models.BigIntegerField(help_text="Cents per year.")
    currency = models.CharField(max_length=3, default="USD")
    credits_included = credits_field(help_text="Credits granted per billing period.")
    features = models.JSONField(default=list, blank=True)
    free_trial = models.BooleanField(
        default=False, help_text="A trial plan: its subscribers count as on trial."
    )
    unlimited_credits = models.BooleanField(default=False)
    rollover_policy = models.CharField(
        max_length=8, choices=RolloverPolicy.choices, default=RolloverPolicy.NONE
    )
    rollover_cap = credits_field(null=True, blank=True, help_text="Most credits carried over (capped only).")
    purchasable = models.BooleanField(default=True, help_text="Offered for self-service purchase.")
    is_active = models.BooleanField(
        default=True, help_text="Inactive plans are hidden; subscribers keep them."
    )
    stripe_price_monthly = models.CharField(max_length=255, blank=True, default="")
    stripe_price_yearly = models.CharField(max_length=255, blank=True, default="")
    creem_product_id = models.CharField(max_length=255, blank=True, default="")
    sort_order = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["platform_id", "sort_order", "slug"]
        constraints = [
            models.UniqueConstraint(fields=["platform", "slug"], name="plan_unique_slug_per_platform"),
            models.UniqueConstraint(
                fields=["platform", "stripe_price_monthly"],
                condition=~Q(stripe_price_monthly=""),
                name="plan_unique_stripe_price_monthly",
            ),
            models.UniqueConstraint(
                fields=["platform", "stripe_price_yearly"],
                condition=~Q(stripe_price_yearly=""),
                name="plan_unique_stripe_price_yearly",
            ),
            models.UniqueConstraint(
                fields=["platform", "creem_product_id"],
                condition=~Q(creem_product_id=""),
                name="plan_unique_creem_product",
            ),
            models.CheckConstraint(
                condition=Q(slug__regex=SLUG_RE.pattern) & ~Q(slug="free_trial"), name="plan_slug_format"
            ),
            models.CheckConstraint(
                condition=Q(price_monthly__gte=0, price_monthly__lte=MAX_PRICE_CENTS)
                & Q(price_yearly__gte=0, price_yearly__lte=MAX_PRICE_CENTS),
                name="plan_prices_in_range",
            ),
            models.CheckConstraint(condition=Q(currency="USD"), name="plan_currency_supported"),
            models.CheckConstraint(
                condition=Q(credits_included__gte=0, credits_included__lte=MAX_AMOUNT),
                name="plan_credits_included_in_range",
            ),
            models.CheckConstraint(
                condition=_jsonb_is_array_of_strings("features"), name="plan_features_strings"
            ),
            models.CheckConstraint(
                condition=Q(rollover_policy__in=RolloverPolicy.values), name="plan_rollover_policy_valid"
            ),
            models.CheckConstraint(
                condition=(
                    Q(
                        rollover_policy=RolloverPolicy.CAPPED,
                        rollover_cap__isnull=False,  # else NULL > 0 is NULL, and a NULL check passes
                        rollover_cap__gt=0,
                        rollover_cap__lte=MAX_AMOUNT,
                    )
                    | (~Q(rollover_policy=RolloverPolicy.CAPPED) & Q(rollover_cap__isnull=True))
                ),
                name="plan_rollover_cap_iff_capped",
            ),
            models.CheckConstraint(
                condition=Q(stripe_price_monthly="") | ~Q(stripe_price_monthly=F("stripe_price_yearly")),
                name="plan_stripe_prices_differ",
            ),
            models.CheckConstraint(
                condition=Q(sort_order__gte=0, sort_order__lte=MAX_SORT_ORDER),
                name="plan_sort_order_in_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.slug} ({self.platform_id})" if not self.name else f"{self.name} [{self.slug}]"

    def price_for(self, cycle: str) -> int:
        return self.price_yearly if cycle == BillingCycle.YEARLY else self.price_monthly

    def stripe_price_for(self, cycle: str) -> str:
        """The Stripe price id of ``cycle`` ("" when the cycle is not sold through Stripe)."""
        return self.stripe_price_yearly if cycle == BillingCycle.YEARLY else self.stripe_price_monthly


class Subscription(models.Model):
    """A credit account on a plan, for one billing cycle, through a payment provider (or granted by hand)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="subscriptions")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    previous_plan = models.ForeignKey(
        Plan,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The account's plan before this subscription's plan; empty: no plan (the free trial).",
    )
    status = models.CharField(max_length=16, choices=SubscriptionStatus.choices)
    billing_cycle = models.CharField(max_length=8, choices=BillingCycle.choices)
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    trial_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    canceled_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True, help_text="When it became canceled or expired.")
    provider = models.CharField(max_length=8, choices=Provider.choices)
    provider_customer_id = models.CharField(max_length=255, blank=True, default="")
    provider_subscription_id = models.CharField(max_length=255, blank=True, default="")
    # The time of the latest provider event applied (``as_of``): an older event arriving late is ignored.
    synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["account"],
                condition=Q(status__in=[s.value for s in CURRENT_STATUSES]),
                name="subscription_one_current_per_account",
            ),
            models.UniqueConstraint(
                fields=["provider", "provider_subscription_id"],
                condition=~Q(provider_subscription_id=""),
                name="subscription_unique_provider_id",
            ),
            models.CheckConstraint(
                condition=Q(status__in=SubscriptionStatus.values), name="subscription_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(billing_cycle__in=BillingCycle.values), name="subscription_billing_cycle_valid"
            ),
            models.CheckConstraint(
                condition=Q(provider__in=Provider.values), name="subscription_provider_valid"
            ),
            models.CheckConstraint(
                condition=Q(provider=Provider.MANUAL) | ~Q(provider_subscription_id=""),
                name="subscription_provider_id_required",
            ),
            models.CheckConstraint(
                condition=(
                    Q(status__in=[s.value for s in ENDED_STATUSES], ended_at__isnull=False)
                    | (~Q(status__in=[s.value for s in ENDED_STATUSES]) & Q(ended_at__isnull=True))
                ),
                name="subscription_ended_at_iff_ended",
            ),
            models.CheckConstraint(
                condition=Q(current_period_start__isnull=True)
                | Q(current_period_end__isnull=True)
                | Q(current_period_end__gt=F("current_period_start")),
                name="subscription_period_ordered",
            ),
            models.CheckConstraint(
                condition=Q(previous_plan__isnull=True) | ~Q(previous_plan=F("plan")),
                name="subscription_previous_plan_differs",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} on {self.plan_id} ({self.status})"

    @property
    def is_current(self) -> bool:
        return self.status in CURRENT_STATUSES


class ChangeKind(models.TextChoices):
    STARTED = "started", "Started"
    PLAN_CHANGED = "plan_changed", "Plan changed"
    STATUS_CHANGED = "status_changed", "Status changed"
    REPLACED = "replaced", "Replaced by a new subscription"


class SubscriptionChange(models.Model):
    """One change of a subscription, written by the service that made it (never updated or deleted)."""

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="changes")
    kind = models.CharField(max_length=16, choices=ChangeKind.choices)
    plan_from = models.ForeignKey(Plan, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    plan_to = models.ForeignKey(Plan, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    status_from = models.CharField(max_length=16, blank=True, default="")
    status_to = models.CharField(max_length=16, blank=True, default="")
    billing_cycle = models.CharField(max_length=8, blank=True, default="")
    as_of = models.DateTimeField(
        null=True, blank=True, help_text="The provider event's time, when one caused it."
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=ChangeKind.values), name="change_kind_valid")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.plan_from_id}->{self.plan_to_id} {self.status_from}->{self.status_to}"
