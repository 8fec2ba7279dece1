"""Orders, the payment settings of a platform, and the webhook events the providers send.

Invariants kept by PostgreSQL (constraints below) and by the services:
- An order's amount is whole cents above zero in USD (NUMERIC(12, 2), so ``amount_usd * 100`` is the exact
  integer a provider charges); its credits are above zero (a top-up buys 1 credit per USD), or zero for a
  subscription (its credits come with its invoices) and for seats (an AI plan's seats, no credits: ``ai_plan`` and
  ``quantity`` say what it buys; the seats themselves are ``entitlements.SeatSubscription``, from the webhooks).
- A ``paid`` order has ``paid_at``; a paid top-up has exactly one ledger ``add`` row (``ledger_entry``, unique:
  one row never pays two orders). A ``failed`` order has ``failed_at``.
- A provider's checkout session names at most one order. A provider's event id is stored at most once
  (``WebhookEvent``: unique per provider), which is what makes a redelivery a no-op.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Upper
from django.utils import timezone

from accounts.models import Platform
from billing_service.money import DECIMAL_PLACES, MAX_DIGITS
from credits.models import CreditAccount, LedgerEntry
from entitlements.models import AIPlan
from subscriptions.models import Plan, Subscription

USD_DIGITS = 12  # NUMERIC(12, 2): up to 9,999,999,999.99 USD in one order
DEFAULT_TOP_UP_MIN = Decimal("5.00")
DEFAULT_TOP_UP_MAX = Decimal("1000.00")


def usd_field(**kwargs) -> models.DecimalField:  # noqa: ANN003
    return models.DecimalField(max_digits=USD_DIGITS, decimal_places=2, **kwargs)


class Channel(models.TextChoices):
    STRIPE = "stripe", "Stripe"
    CREEM = "creem", "Creem"


class OrderType(models.TextChoices):
    SUBSCRIPTION = "subscription", "Subscription"
    TOP_UP = "top_up", "Credit top-up"
    SEATS = "seats", "Seats on an AI plan"


# Orders that grant no credits of their own (a subscription's come with its invoices; seats are no credits).
ORDER_TYPES_WITHOUT_CREDITS = (OrderType.SUBSCRIPTION, OrderType.SEATS)


class OrderStatus(models.TextChoices):
    PENDING = "pending", "Pending (checkout open or payment processing)"
    PAID = "paid", "Paid"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"
    REFUNDED = "refunded", "Refunded"
    PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"


class PlatformPaymentSettings(models.Model):
    """What a platform allows at checkout: the top-up range and the origins a checkout may redirect to.

    A platform without a row uses the defaults (5.00-1000.00 USD; only the deployment's
    ``CHECKOUT_ALLOWED_ORIGINS``)."""

    platform = models.OneToOneField(
        Platform, on_delete=models.PROTECT, primary_key=True, related_name="payment_settings"
    )
    top_up_min_usd = usd_field(default=DEFAULT_TOP_UP_MIN, help_text="Smallest top-up, in USD.")
    top_up_max_usd = usd_field(default=DEFAULT_TOP_UP_MAX, help_text="Largest top-up, in USD.")
    allowed_redirect_origins = models.JSONField(
        default=list,
        blank=True,
        help_text='Origins that success and cancel URLs may point at, e.g. ["https://app.example.com"]; '
        "in addition to the deployment's CHECKOUT_ALLOWED_ORIGINS.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "platform payment settings"
        verbose_name_plural = "platform payment settings"
        constraints = [
            models.CheckConstraint(condition=Q(top_up_min_usd__gt=0), name="payment_settings_min_positive"),
            models.CheckConstraint(
                condition=Q(top_up_max_usd__gte=F("top_up_min_usd")), name="payment_settings_max_at_least_min"
            ),
        ]

    def __str__(self) -> str:
        return f"payment settings of {self.platform_id}"


class CouponKind(models.TextChoices):
    CREDITS = "credits", "Credits (redeemed for a promotion ledger row)"
    PERCENT_OFF = "percent_off", "Percent off a checkout"
    AMOUNT_OFF = "amount_off", "Amount (USD) off a checkout"


DISCOUNT_KINDS = (CouponKind.PERCENT_OFF, CouponKind.AMOUNT_OFF)
COUPON_CODE_MAX_LENGTH = 64


class Coupon(models.Model):
    """A code of a platform (unique per platform whatever its case) that grants credits (``credits``: ``value``
    credits, redeemed through the API) or takes ``value`` percent / ``value`` USD off a checkout (``percent_off``,
    ``amount_off``; counted when the payment succeeds). Never deleted: ``active`` false withdraws it. ``code`` and
    ``kind`` are fixed once created. ``redemptions_count`` counts its redemptions (``CouponRedemption`` rows), kept
    by the services under the coupon's row lock. See ``payments.coupons``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    platform = models.ForeignKey(Platform, on_delete=models.PROTECT, related_name="coupons", db_index=False)
    code = models.CharField(max_length=COUPON_CODE_MAX_LENGTH, help_text="What customers type; any case matches.")
    kind = models.CharField(max_length=16, choices=CouponKind.choices)
    value = models.DecimalField(
        max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES,
        help_text="credits: the credits granted; percent_off: the percent (0-100, 2 decimals); amount_off: USD off "
        "(whole cents).",
    )
    max_redemptions = models.PositiveIntegerField(null=True, blank=True, help_text="Redemptions in all; none: no limit.")
    max_per_account = models.PositiveIntegerField(default=1, help_text="Redemptions per credit account.")
    valid_from = models.DateTimeField(null=True, blank=True)
    valid_until = models.DateTimeField(null=True, blank=True)
    plans = models.ManyToManyField(
        Plan, blank=True, related_name="+", help_text="Discounts only: the only plans it takes money off (none: any)."
    )
    top_ups_only = models.BooleanField(default=False, help_text="Discounts only: for top-ups, not subscriptions.")
    first_purchase_only = models.BooleanField(
        default=False, help_text="Only for an account that has never paid an order."
    )
    active = models.BooleanField(default=True)
    redemptions_count = models.PositiveIntegerField(default=0, editable=False)
    stripe_coupon_id = models.CharField(
        max_length=255, blank=True, default="", editable=False,
        help_text="The Stripe coupon known to exist for the current terms (created on first use).",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["platform", "-created_at"], name="coupon_platform_created")]
        constraints = [
            models.UniqueConstraint(F("platform"), Upper("code"), name="coupon_unique_code_per_platform"),
            models.CheckConstraint(condition=Q(kind__in=CouponKind.values), name="coupon_kind_valid"),
            models.CheckConstraint(condition=Q(value__gt=0), name="coupon_value_positive"),
            models.CheckConstraint(
                condition=~Q(kind=CouponKind.PERCENT_OFF) | Q(value__lte=100), name="coupon_percent_at_most_100"
            ),
            models.CheckConstraint(
                condition=Q(max_redemptions__isnull=True) | Q(max_redemptions__gte=1),
                name="coupon_max_redemptions_positive",
            ),
            models.CheckConstraint(condition=Q(max_per_account__gte=1), name="coupon_max_per_account_positive"),
            models.CheckConstraint(
                condition=Q(valid_from__isnull=True) | Q(valid_until__isnull=True)
                | Q(valid_until__gt=F("valid_from")),
                name="coupon_validity_ordered",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=DISCOUNT_KINDS) | Q(top_ups_only=False), name="coupon_credits_unrestricted"
            ),
            models.CheckConstraint(condition=~Q(code=""), name="coupon_code_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.kind} {self.value})"

    @property
    def is_discount(self) -> bool:
        return self.kind in DISCOUNT_KINDS



class Order(models.Model):
    """One purchase: a top-up or a subscription, paid through one provider's checkout."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    platform = models.ForeignKey(Platform, on_delete=models.PROTECT, related_name="orders", db_index=False)
    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="orders", db_index=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders", db_index=False
    )
    type = models.CharField(max_length=16, choices=OrderType.choices)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    status = models.CharField(max_length=24, choices=OrderStatus.choices, default=OrderStatus.PENDING)
    currency = models.CharField(max_length=3, default="USD")
    amount_usd = usd_field(help_text="Price of the order, in USD (whole cents).")
    credits = models.DecimalField(
        max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, help_text="Credits the order grants once paid."
    )
    amount_paid_usd = usd_field(null=True, blank=True, help_text="What the provider reported as paid.")
    success_url = models.URLField(max_length=2000)
    cancel_url = models.URLField(max_length=2000)
    checkout_url = models.URLField(max_length=2000, blank=True, default="")
    provider_checkout_id = models.CharField(
        max_length=255, blank=True, default="", help_text="The provider's checkout session id (Stripe: cs_...)."
    )
    provider_payment_id = models.CharField(
        max_length=255, blank=True, default="", help_text="The provider's payment id (Stripe: pi_...)."
    )
    provider_customer_id = models.CharField(
        max_length=255, blank=True, default="", help_text="The provider's customer id (Stripe: cus_...)."
    )
    ledger_entry = models.OneToOneField(
        LedgerEntry, on_delete=models.PROTECT, null=True, blank=True, db_constraint=False, related_name="order",
        help_text="The ledger add row that credited this order (a subscription: its first period's grant).",
    )
    plan = models.ForeignKey(
        Plan, on_delete=models.PROTECT, null=True, blank=True, related_name="orders", db_index=False,
        help_text="The plan a subscription order buys.",
    )
    billing_cycle = models.CharField(max_length=8, blank=True, default="", help_text="monthly or yearly.")
    ai_plan = models.ForeignKey(
        AIPlan, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False,
        help_text="The AI plan a seats order buys seats on.",
    )
    quantity = models.PositiveIntegerField(null=True, blank=True, help_text="The seats a seats order buys.")
    provider_subscription_id = models.CharField(
        max_length=255, blank=True, default="", help_text="The provider's subscription id (Stripe: sub_...)."
    )
    amount_refunded_usd = usd_field(
        default=Decimal(0), help_text="What the provider reported as refunded so far (cumulative)."
    )
    credits_reversed = models.DecimalField(
        max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, default=Decimal(0),
        help_text="Credits removed by refunds (``refund`` rows).",
    )
    refund_shortfall_credits = models.DecimalField(
        max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, default=Decimal(0),
        help_text="Credits a refund should have removed but were already spent (the order needs review).",
    )
    coupon = models.ForeignKey(
        Coupon, on_delete=models.PROTECT, null=True, blank=True, related_name="orders", db_index=False,
        help_text="The discount coupon applied at checkout; its redemption counts when the order is paid.",
    )
    discount_usd = usd_field(
        default=Decimal(0),
        help_text="What the coupon took off: the customer pays amount_usd, the price before it was amount_usd + this.",
    )
    needs_review = models.BooleanField(
        default=False, help_text="A provider event disagreed with the order (amount, currency...); see last_error."
    )
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "platform", "-created_at", "-id"], name="order_user_created"),
            models.Index(fields=["platform", "-created_at"], name="order_platform_created"),
            models.Index(fields=["status"], condition=Q(needs_review=True), name="order_needs_review"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(type__in=OrderType.values), name="order_type_valid"),
            models.CheckConstraint(condition=Q(channel__in=Channel.values), name="order_channel_valid"),
            models.CheckConstraint(condition=Q(status__in=OrderStatus.values), name="order_status_valid"),
            models.CheckConstraint(condition=Q(currency="USD"), name="order_currency_supported"),
            models.CheckConstraint(condition=Q(amount_usd__gt=0), name="order_amount_positive"),
            models.CheckConstraint(
                condition=Q(credits__gt=0) | Q(type__in=ORDER_TYPES_WITHOUT_CREDITS, credits__gte=0),
                name="order_credits_positive",
            ),
            models.CheckConstraint(
                condition=~Q(type=OrderType.SUBSCRIPTION) | Q(plan__isnull=False), name="order_subscription_has_plan"
            ),
            models.CheckConstraint(
                condition=~Q(type=OrderType.SEATS) | Q(ai_plan__isnull=False, quantity__gte=1, credits=0),
                name="order_seats_have_plan_and_quantity",
            ),
            models.CheckConstraint(
                condition=Q(amount_refunded_usd__gte=0, credits_reversed__gte=0, refund_shortfall_credits__gte=0),
                name="order_refunds_not_negative",
            ),
            models.CheckConstraint(
                condition=~Q(status=OrderStatus.PAID) | Q(paid_at__isnull=False), name="order_paid_has_paid_at"
            ),
            models.CheckConstraint(
                condition=~Q(status=OrderStatus.PAID, type=OrderType.TOP_UP) | Q(ledger_entry__isnull=False),
                name="order_paid_top_up_credited",
            ),
            models.CheckConstraint(
                condition=~Q(status=OrderStatus.FAILED) | Q(failed_at__isnull=False),
                name="order_failed_has_failed_at",
            ),
            models.CheckConstraint(
                condition=Q(discount_usd=0) | Q(discount_usd__gt=0, coupon__isnull=False),
                name="order_discount_has_coupon",
            ),
            models.UniqueConstraint(
                fields=["channel", "provider_checkout_id"],
                condition=~Q(provider_checkout_id=""),
                name="order_unique_provider_checkout",
            ),
        ]

    def __str__(self) -> str:
        return f"order {self.id} {self.type} {self.amount_usd} USD ({self.status})"

    @property
    def amount_cents(self) -> int:
        """The amount in the provider's smallest unit (exact: ``amount_usd`` has two decimals)."""
        return int(self.amount_usd * 100)

    @property
    def list_amount_cents(self) -> int:
        """The price before the coupon's discount, in cents (what the provider's line item says)."""
        return int((self.amount_usd + self.discount_usd) * 100)


class PlanCreditPeriod(models.Model):
    """The plan credits of one billing period of a subscription: granted once when its invoice is paid.

    Accounting (see ``payments.plan_periods``): plan credits are spent before purchased ones. When the next
    period's invoice is paid, this period's unused plan credits are
    ``min(available now, granted + carried_in - spent since the grant)`` (spent: ``subtract`` rows after
    ``grant_sequence`` minus usage refunds); the plan's rollover policy keeps some (``carried_out``, the next
    period's ``carried_in``) and removes the rest (``expired``, one negative ``rollover`` row). Purchased
    credits are never removed: the removal never exceeds what is available nor the unused plan credits.

    A mid-period upgrade (``payments.plan_periods``) tops the period up to the new plan's credits
    (``upgrade_granted``; ``plan`` becomes that plan, whose rollover policy then applies), and a refund of the
    period's invoice takes back a share of ``granted`` (``credits_reversed``, what was already spent being
    ``refund_shortfall_credits``): both count in the unused plan credits above (granted + upgrade_granted +
    carried_in - spent - credits_reversed). A refund that arrives after the period closed can only take back what
    the period carried out (``carried_reversed``, taken off the next open period's ``carried_in``); the rest had
    left with the close and is recorded, not debited (``refund_expired_credits``)."""

    id = models.BigAutoField(primary_key=True)
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="credit_periods")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+", db_index=False)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    invoice_id = models.CharField(max_length=255, blank=True, default="")
    granted = models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES)
    carried_in = models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, default=Decimal(0))
    grant_entry = models.OneToOneField(
        LedgerEntry, on_delete=models.PROTECT, null=True, blank=True, db_constraint=False, related_name="+",
        help_text="The add row of the grant (none when the plan includes no credits).",
    )
    grant_sequence = models.BigIntegerField(help_text="The account's ledger sequence right after the grant.")
    upgrade_granted = models.DecimalField(
        max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, default=Decimal(0),
        help_text="Credits added by mid-period upgrades (``upgrade`` grants), on top of ``granted``.",
    )
    payment_intent_id = models.CharField(
        max_length=255, blank=True, default="", help_text="The payment intent of the period's invoice (pi_...)."
    )
    amount_paid_usd = usd_field(null=True, blank=True, help_text="What the period's invoice paid.")
    amount_refunded_usd = usd_field(
        default=Decimal(0), help_text="Refunded so far of the invoice's payment (cumulative, as processed)."
    )
    credits_reversed = models.DecimalField(
        max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, default=Decimal(0),
        help_text="Plan credits taken back by refunds of the period's invoice.",
    )
    refund_shortfall_credits = models.DecimalField(
        max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, default=Decimal(0),
        help_text="Credits a refund should have taken back but were already spent.",
    )
    refund_expired_credits = models.DecimalField(
        max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, default=Decimal(0),
        help_text="Credits a refund after the period's close did not take back: they had left with the close "
        "(expired by its rollover, or spent); only what it carried out could still be taken back.",
    )
    carried_reversed = models.DecimalField(
        max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, default=Decimal(0),
        help_text="Of credits_reversed, what refunds took back after the close out of carried_out (the next open "
        "period's carried_in was lowered by as much).",
    )
    closed_at = models.DateTimeField(null=True, blank=True, help_text="When the next period applied rollover.")
    unused = models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, null=True, blank=True)
    carried_out = models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, null=True, blank=True)
    expired = models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, null=True, blank=True)
    rollover_entry = models.OneToOneField(
        LedgerEntry, on_delete=models.PROTECT, null=True, blank=True, db_constraint=False, related_name="+",
        help_text="The rollover row that removed the expired plan credits.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["subscription_id", "-period_start"]
        constraints = [
            models.UniqueConstraint(fields=["subscription", "period_start"], name="plan_period_unique_start"),
            models.CheckConstraint(condition=Q(period_end__gt=F("period_start")), name="plan_period_ordered"),
            models.CheckConstraint(
                condition=Q(granted__gte=0, carried_in__gte=0), name="plan_period_amounts_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(upgrade_granted__gte=0, amount_refunded_usd__gte=0, credits_reversed__gte=0,
                            refund_shortfall_credits__gte=0),
                name="plan_period_changes_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(refund_expired_credits__gte=0, carried_reversed__gte=0),
                name="plan_period_late_refunds_not_negative",
            ),
        ]
        indexes = [
            models.Index(fields=["payment_intent_id"], condition=~Q(payment_intent_id=""),
                         name="plan_period_payment_intent"),
            models.Index(fields=["invoice_id"], condition=~Q(invoice_id=""), name="plan_period_invoice"),
        ]

    def __str__(self) -> str:
        return f"{self.subscription_id} {self.period_start:%Y-%m-%d}: {self.granted} + {self.carried_in}"


class RedemptionSource(models.TextChoices):
    REDEEM = "redeem", "Redeemed for credits (POST /coupons/redeem/)"
    CHECKOUT = "checkout", "A discount on a paid checkout"


class CouponRedemption(models.Model):
    """One use of a coupon by a credit account: a ``credits`` coupon redeemed (its ``promotion`` ledger row), or a
    discount coupon on a checkout whose payment succeeded (its order, one redemption per order). ``over_limit``: a
    paid checkout recorded past the coupon's limits (the checkout was allowed when it opened; the customer paid
    the discounted price, so the redemption is a fact the count keeps)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    coupon = models.ForeignKey(Coupon, on_delete=models.PROTECT, related_name="redemptions", db_index=False)
    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="+", db_index=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False,
        help_text="Who redeemed it (the ledger row's actor), or whose order it was.",
    )
    source = models.CharField(max_length=16, choices=RedemptionSource.choices)
    ledger_entry = models.OneToOneField(
        LedgerEntry, on_delete=models.PROTECT, null=True, blank=True, db_constraint=False, related_name="+",
        help_text="The promotion row of a credits coupon.",
    )
    order = models.OneToOneField(
        Order, on_delete=models.PROTECT, null=True, blank=True, related_name="coupon_redemption",
        help_text="The paid order a discount was applied to.",
    )
    credits = models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, default=Decimal(0))
    discount_usd = usd_field(default=Decimal(0))
    over_limit = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["coupon", "account"], name="coupon_redemption_account"),
            models.Index(fields=["coupon", "-created_at"], name="coupon_redemption_created"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(source__in=RedemptionSource.values), name="redemption_source_valid"),
            models.CheckConstraint(
                condition=Q(source=RedemptionSource.REDEEM, ledger_entry__isnull=False, order__isnull=True,
                            credits__gt=0)
                | Q(source=RedemptionSource.CHECKOUT, order__isnull=False, ledger_entry__isnull=True),
                name="redemption_source_shape",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.coupon_id} by {self.account_id} ({self.source})"


class CouponAttempt(models.Model):
    """A coupon code a user tried (redeem or checkout): what the per-user rate limit counts
    (``COUPON_REDEEM_ATTEMPTS_PER_HOUR`` in a sliding hour), in PostgreSQL so every worker sees the same count."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    platform = models.ForeignKey(Platform, on_delete=models.CASCADE, related_name="+", db_index=False)
    code = models.CharField(max_length=COUPON_CODE_MAX_LENGTH, help_text="The code as typed.")
    outcome = models.CharField(max_length=48, blank=True, default="", help_text="'redeemed', 'applied' or an error code.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="coupon_attempt_user_created")]

    def __str__(self) -> str:
        return f"{self.user_id} tried {self.code!r} ({self.outcome or 'pending'})"


class WebhookProvider(models.TextChoices):
    STRIPE = "stripe", "Stripe"
    CREEM = "creem", "Creem"


class WebhookStatus(models.TextChoices):
    RECEIVED = "received", "Received (not processed yet)"
    PROCESSED = "processed", "Processed"
    IGNORED = "ignored", "Ignored (a type or object this service does not handle)"
    PARKED = "parked", "Parked (a refund waiting for its order or invoice; applied when that arrives)"
    FAILED = "failed", "Failed (see last_error)"


# An event in one of these is done: a redelivery changes nothing (a parked one is applied by the event it waits for).
WEBHOOK_DONE_STATUSES = (WebhookStatus.PROCESSED, WebhookStatus.IGNORED, WebhookStatus.PARKED)


class WebhookEvent(models.Model):
    """One provider event, stored before it is processed. A redelivery finds it here.

    The ids other events look it up by are columns, read out of the payload when it is stored
    (``payments.providers.stripe_events.event_lookups`` / ``creem_events.event_lookups``): the object it is about,
    the payment intent and invoice that object names, and the order its metadata names."""

    id = models.BigAutoField(primary_key=True)
    provider = models.CharField(max_length=16, choices=WebhookProvider.choices)
    event_id = models.CharField(max_length=255)
    type = models.CharField(max_length=255)
    payload = models.JSONField()
    object_id = models.CharField(
        max_length=255, blank=True, default="", help_text="The id of the event's object (cs_..., ch_..., ref_...)."
    )
    payment_intent_id = models.CharField(
        max_length=255, blank=True, default="", help_text="The payment intent the object names (pi_...)."
    )
    invoice_id = models.CharField(max_length=255, blank=True, default="", help_text="The invoice it names (in_...).")
    order_ref = models.UUIDField(
        null=True, blank=True, help_text="The order of this service its metadata names (it may not exist)."
    )
    status = models.CharField(max_length=16, choices=WebhookStatus.choices, default=WebhookStatus.RECEIVED)
    attempts = models.PositiveIntegerField(default=0, help_text="Times processing was tried.")
    last_error = models.TextField(blank=True, default="")
    order = models.ForeignKey(
        Order, on_delete=models.PROTECT, null=True, blank=True, related_name="webhook_events", db_index=False
    )
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["status", "-received_at"], name="webhook_status_received"),
            models.Index(fields=["order"], condition=Q(order__isnull=False), name="webhook_order"),
            # refunds waiting for their order or invoice (payments.refunds): looked for on every credited order
            # and every recorded period, so the look-up reads only them
            models.Index(fields=["provider", "type"], condition=Q(status=WebhookStatus.PARKED), name="webhook_parked"),
            # invoice.paid reads the invoice_payment.paid of its invoice; a Creem refund looks for its other events
            models.Index(fields=["invoice_id"], condition=~Q(invoice_id=""), name="webhook_invoice"),
            models.Index(fields=["provider", "type", "object_id"], name="webhook_object"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["provider", "event_id"], name="webhook_unique_provider_event"),
            models.CheckConstraint(condition=Q(provider__in=WebhookProvider.values), name="webhook_provider_valid"),
            models.CheckConstraint(condition=Q(status__in=WebhookStatus.values), name="webhook_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.event_id} {self.type} ({self.status})"


# Auto-recharge rows live in their own module; imported here so Django registers them with this app.
from payments.recharge_models import Recharge, RechargeStatus, SavedPaymentMethod  # noqa: E402, F401
