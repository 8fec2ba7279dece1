"""Shapes of the payments API (no rules here: they live in the services: ``payments.checkout``, ``payments.webhooks.events``)."""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing_service.inputs import (
    EchoTolerantInputSerializer,
    InstantField,
    QueryBooleanField,
    QueryIntegerField,
    StrictBooleanField,
    StrictChoiceField,
    StrictInputSerializer,
    StrictIntegerField,
    StrictUUIDField,
    TextField,
    URLField,
)
from billing_service.money import MoneyField, format_money
from entitlements.models import SeatProvider, SeatStatus
from payments.seat_sync import MAX_SEATS
from billing_service.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from credits.api.serializers import LedgerEntrySerializer
from payments.coupons import CODE_HELP, CODE_RE, MAX_PER_ACCOUNT, MAX_PLANS, MAX_REDEMPTIONS, code_problem
from payments.models import COUPON_CODE_MAX_LENGTH, Channel, CouponKind, OrderStatus, OrderType
from subscriptions.models import BillingCycle


@extend_schema_field({"type": "string", "format": "decimal", "example": "25.00"})
class MoneyOutField(serializers.Field):
    def to_representation(self, value):
        return format_money(value)


class CheckoutInputSerializer(StrictInputSerializer):
    channel = StrictChoiceField(
        choices=Channel.choices, help_text="Payment provider; `creem` sells subscriptions only."
    )
    type = StrictChoiceField(
        choices=OrderType.choices,
        help_text="What is bought: `top_up` (credits), `subscription` (a credit plan) or `seats` (seats on an AI "
        "plan; owners and admins, channel `stripe`).",
    )
    amount = MoneyField(
        required=False,
        max_digits=12,
        decimal_places=2,
        help_text='Top-up amount in USD, whole cents ("25.00"), within the platform\'s limits '
        "(5.00-1000.00 unless the platform set others). Buys as many credits (1 credit = 1 USD).",
    )
    plan_id = TextField(
        required=False, max_length=64, blank=False, help_text="The plan's id, for a subscription (active and purchasable)."
    )
    billing_cycle = StrictChoiceField(
        choices=["monthly", "yearly"], required=False,
        help_text="For a subscription: a cycle the plan sells through a Stripe price.",
    )
    success_url = URLField(
        help_text="Where the provider sends the customer after paying; on an allowed origin."
    )
    cancel_url = URLField(
        help_text="Where the provider sends the customer who gives up; on an allowed origin."
    )
    save_payment_method = StrictBooleanField(
        required=False, default=False,
        help_text="Stripe top-ups only: also keep the card for auto-recharge (off-session charges).",
    )
    ai_plan_id = TextField(
        required=False, max_length=100, blank=False,
        help_text="Seats only: the AI plan's id or slug (offered to the platform, active, purchasable, sold through "
        "a Stripe price).",
    )
    quantity = StrictIntegerField(
        required=False, min_value=1, max_value=MAX_SEATS,
        help_text=f"Seats only: how many seats, a whole number from 1 to {MAX_SEATS}.",
    )
    coupon = TextField(
        required=False, max_length=COUPON_CODE_MAX_LENGTH, blank=False,
        help_text="A discount coupon's code (any case): Stripe top-ups and Stripe or Creem subscriptions. The order "
        "costs the discounted price; a top-up still buys `amount` credits. Counts towards the hourly limit of "
        "coupon codes tried.",
    )

    def validate_coupon(self, value: str) -> str:
        problem = code_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value


class CheckoutOutputSerializer(serializers.Serializer):
    order_id = serializers.UUIDField(source="id")
    url = serializers.URLField(source="checkout_url", help_text="The provider's checkout page: redirect there.")


class PortalInputSerializer(StrictInputSerializer):
    return_url = URLField(
        help_text="Where the portal sends the customer back; on an allowed origin."
    )


class PortalOutputSerializer(serializers.Serializer):
    url = serializers.URLField(help_text="The provider's billing portal session: redirect there.")


class OrderSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = StrictChoiceField(choices=OrderType.choices)
    channel = serializers.ChoiceField(choices=Channel.choices)
    status = serializers.ChoiceField(choices=OrderStatus.choices)
    currency = serializers.CharField()
    amount_usd = MoneyOutField(help_text="Price of the order (after its coupon's discount).")
    discount_usd = MoneyOutField(help_text="What its coupon took off the price (0.00 without one).")
    coupon_id = serializers.UUIDField(allow_null=True, help_text="The discount coupon applied at checkout.")
    credits = MoneyOutField(help_text="Credits the order grants once paid.")
    amount_paid_usd = MoneyOutField(allow_null=True, help_text="What the provider reported as paid; null before.")
    provider_checkout_id = serializers.CharField(help_text="Checkout session id (Stripe: cs_...), or empty.")
    provider_payment_id = serializers.CharField(help_text="Payment id (Stripe: pi_...), or empty.")
    provider_customer_id = serializers.CharField(help_text="Customer id (Stripe: cus_...), or empty.")
    checkout_url = serializers.CharField(help_text="The checkout page, while it is open; or empty.")
    transaction_id = serializers.UUIDField(
        source="ledger_entry_id", allow_null=True, help_text="The ledger `add` row that credited the order."
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    paid_at = serializers.DateTimeField(allow_null=True)
    failed_at = serializers.DateTimeField(allow_null=True)
    canceled_at = serializers.DateTimeField(allow_null=True)
    refunded_at = serializers.DateTimeField(allow_null=True)
    plan_id = serializers.UUIDField(allow_null=True, help_text="The plan a subscription order buys.")
    billing_cycle = serializers.CharField(help_text="monthly or yearly (subscriptions), or empty.")
    provider_subscription_id = serializers.CharField(help_text="Subscription id (Stripe: sub_...), or empty.")
    ai_plan_id = serializers.UUIDField(allow_null=True, help_text="The AI plan a seats order buys seats on.")
    quantity = serializers.IntegerField(allow_null=True, help_text="The seats a seats order buys.")
    amount_refunded_usd = MoneyOutField(help_text="Refunded so far, in USD.")
    credits_reversed = MoneyOutField(help_text="Credits taken back by refunds.")
    refund_shortfall_credits = MoneyOutField(
        help_text="Credits a refund could not take back because they were already spent (see needs review)."
    )


class WebhookReceiptSerializer(serializers.Serializer):
    received = serializers.BooleanField()
    event_id = serializers.CharField()
    status = serializers.ChoiceField(
        choices=["processed", "ignored", "parked", "failed"],
        help_text="`parked`: a refund waiting for its order or invoice (applied when that arrives). `failed` here "
        "is a permanent disagreement with the order (recorded, flagged, not retried).",
    )
    duplicate = serializers.BooleanField(help_text="The event had already been handled: nothing changed.")


class PaymentMethodSetupInputSerializer(StrictInputSerializer):
    success_url = URLField(
        help_text="Where Stripe sends the customer once the card is saved; on an allowed origin."
    )
    cancel_url = URLField(
        help_text="Where Stripe sends the customer who gives up; on an allowed origin."
    )


class PaymentMethodSetupOutputSerializer(serializers.Serializer):
    url = serializers.URLField(help_text="Stripe's page where the customer enters the card: redirect there.")


class PaymentMethodSerializer(serializers.Serializer):
    provider = serializers.CharField(help_text="Where the card is kept: `stripe`.")
    brand = serializers.CharField(help_text="Card brand (`visa`, `mastercard`...); empty until Stripe told us.")
    last4 = serializers.CharField(help_text="The card's last 4 digits; empty until Stripe told us.")
    updated_at = serializers.DateTimeField(help_text="When it was last saved (or its brand and digits read).")


# --- seats on AI plans (bought through Stripe, or an operator's contract) -------------------------------------


@extend_schema_field({"type": "string", "format": "decimal", "example": "25.00"})
class PricePerSeatField(serializers.Field):
    """The AI plan's price per seat per billing cycle, in dollars (from its integer cents)."""

    def __init__(self, **kwargs):  # noqa: ANN003
        super().__init__(source="ai_plan.price_per_seat_cents", read_only=True, **kwargs)

    def to_representation(self, value):
        return format_money(Decimal(value) / 100)


@extend_schema_field({"type": "string", "format": "decimal", "example": "75.00"})
class SeatsTotalField(serializers.Field):
    """The price per seat times the quantity, in dollars."""

    def __init__(self, **kwargs):  # noqa: ANN003
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, value):
        return format_money(Decimal(value.ai_plan.price_per_seat_cents) * value.quantity / 100)


class SeatSubscriptionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    tenant_id = serializers.CharField(source="platform.platform_key", help_text="The platform's key.")
    plan_id = serializers.UUIDField(source="ai_plan_id", help_text="The AI plan.")
    plan_slug = serializers.CharField(source="ai_plan.slug")
    billing_cycle = serializers.ChoiceField(choices=BillingCycle.choices)
    status = serializers.ChoiceField(
        choices=SeatStatus.choices, help_text="`active` and `past_due` seats count; `canceled` and `expired` not."
    )
    quantity = serializers.IntegerField(
        help_text="Seats, as the provider last confirmed them (a requested change shows once it confirms it)."
    )
    start_date = serializers.DateTimeField(source="started_at")
    end_date = serializers.DateTimeField(
        source="ends_at", allow_null=True, help_text="When it ended or is set to end; null: ongoing."
    )
    next_billing_date = serializers.DateTimeField(
        source="next_billing_at", allow_null=True, help_text="The next renewal; null when none is due."
    )
    price_per_seat = PricePerSeatField(help_text="The AI plan's price per seat per billing cycle.")
    total_amount = SeatsTotalField(help_text="price_per_seat x quantity.")
    currency = serializers.CharField(source="ai_plan.currency")
    provider = serializers.ChoiceField(
        choices=SeatProvider.choices, help_text="`stripe`, or `manual`: an operator's contract paid outside Stripe."
    )
    synced_at = serializers.DateTimeField(
        allow_null=True, help_text="When the provider last confirmed this state (null: not yet, or manual)."
    )


class SeatQuantityInputSerializer(StrictInputSerializer):
    quantity = StrictIntegerField(
        min_value=1, max_value=MAX_SEATS, help_text=f"The seats wanted: a whole number from 1 to {MAX_SEATS}."
    )


class SeatQuantityChangeSerializer(serializers.Serializer):
    subscription = SeatSubscriptionSerializer(help_text="As recorded: unchanged until Stripe confirms the change.")
    requested_quantity = serializers.IntegerField(help_text="The quantity asked of Stripe.")


class EntitlementsRefreshInputSerializer(StrictInputSerializer):
    """No fields: an empty body (or none)."""


class EntitlementsRefreshSerializer(serializers.Serializer):
    refreshed = serializers.BooleanField()
    plans_updated = serializers.IntegerField(help_text="AI plans whose seats changed.")
    seats_updated = serializers.IntegerField(
        help_text="Seat subscriptions whose recorded state changed (new, quantity, status or dates)."
    )
    timestamp = serializers.DateTimeField(help_text="When the refresh began reading Stripe.")


# --- coupons (payments.coupons) -------------------------------------------------------------------------------


@extend_schema_field({"type": "string", "pattern": f"^{CODE_RE.pattern}$", "maxLength": COUPON_CODE_MAX_LENGTH})
class CouponCodeField(TextField):
    """A coupon code: 1-64 ASCII letters, digits, '-' or '_' (matched in any case)."""

    def __init__(self, **kwargs):  # noqa: ANN003
        kwargs.setdefault("help_text", f"The coupon's code: {CODE_HELP} Matched whatever its case.")
        super().__init__(max_length=COUPON_CODE_MAX_LENGTH, blank=False, **kwargs)

    def to_internal_value(self, data):  # noqa: ANN001, ANN201
        value = super().to_internal_value(data)
        problem = code_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value


# Fields of the output a client may send back unchanged (a PUT of a fetched coupon): ignored on input.
COUPON_READ_ONLY_FIELDS = frozenset({"id", "redemptions", "created_at", "updated_at"})


def coupon_input_fields(*, for_update: bool) -> dict[str, serializers.Field]:
    """The writable fields of a coupon. For a create, optional fields get their defaults; for an update an omitted
    field stays as it is; ``code`` and ``kind`` may be sent back unchanged, never changed."""

    def optional(default):  # noqa: ANN001, ANN202
        return {"required": False} if for_update else {"required": False, "default": default}

    return {
        "code": CouponCodeField(required=not for_update),
        "kind": StrictChoiceField(
            choices=CouponKind.choices, required=not for_update,
            help_text="`credits` (redeemed for `value` credits), `percent_off` or `amount_off` (a discount at "
            "checkout). Fixed once created.",
        ),
        "value": MoneyField(
            help_text='credits: the credits granted ("10.00", up to 6 decimals); percent_off: the percent, above 0 '
            'and at most 100 (2 decimals: "12.5"); amount_off: USD off, whole cents ("5.00").',
        ),
        "max_redemptions": StrictIntegerField(
            min_value=1, max_value=MAX_REDEMPTIONS, allow_null=True,
            help_text="Redemptions in all; null: no limit.", **optional(None),
        ),
        "max_per_account": StrictIntegerField(
            min_value=1, max_value=MAX_PER_ACCOUNT, help_text="Redemptions per credit account.", **optional(1),
        ),
        "valid_from": InstantField(allow_null=True, help_text="Not usable before; null: at once.", **optional(None)),
        "valid_until": InstantField(
            allow_null=True, help_text="Not usable from then on (after valid_from); null: no end.", **optional(None)
        ),
        "plan_ids": serializers.ListField(
            child=StrictUUIDField(), max_length=MAX_PLANS,
            help_text="Discounts only: the only plans (subscriptions) it takes money off; empty: no restriction.",
            **optional([]),
        ),
        "top_ups_only": StrictBooleanField(help_text="Discounts only: for top-ups, not subscriptions.",
                                           **optional(False)),
        "first_purchase_only": StrictBooleanField(
            help_text="Only for an account that has never paid an order.", **optional(False)
        ),
        "active": StrictBooleanField(
            help_text="Coupons are never deleted: false withdraws one (paid redemptions stay counted).",
            **optional(True),
        ),
    }


class _CouponInputBase(EchoTolerantInputSerializer):
    echoed_fields = frozenset(COUPON_READ_ONLY_FIELDS)


CouponInputSerializer = type(
    "CouponInputSerializer",
    (_CouponInputBase,),
    {
        "__module__": __name__,
        "__doc__": "A new coupon. Unknown fields are refused (400).",
        **coupon_input_fields(for_update=False),
    },
)
CouponUpdateInputSerializer = type(
    "CouponUpdateInputSerializer",
    (_CouponInputBase,),
    {
        "__module__": __name__,
        "__doc__": "PUT: `value` is required; other omitted fields stay as they are. PATCH: only the fields sent "
        "change. `code` and `kind` are fixed (sent back unchanged they are ignored).",
        **coupon_input_fields(for_update=True),
    },
)


class CouponListQuerySerializer(serializers.Serializer):
    page = QueryIntegerField(min_value=1, max_value=10_000_000, default=1, help_text="Page number (1-based).")
    page_size = QueryIntegerField(
        min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE, help_text="Coupons per page (max 100)."
    )
    active = QueryBooleanField(required=False, allow_null=True, default=None,
                               help_text="Only active (true) or withdrawn (false) coupons.")
    kind = StrictChoiceField(choices=CouponKind.choices, required=False, allow_null=True, default=None,
                             help_text="Only coupons of this kind.")


@extend_schema_field({"type": "string", "format": "decimal", "example": "12.50"})
class CouponValueField(serializers.Field):
    def to_representation(self, value):  # noqa: ANN001, ANN201
        return format_money(value)


class CouponSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    code = serializers.CharField()
    kind = serializers.ChoiceField(choices=CouponKind.choices)
    value = CouponValueField(help_text="credits: credits; percent_off: percent; amount_off: USD.")
    max_redemptions = serializers.IntegerField(allow_null=True)
    max_per_account = serializers.IntegerField()
    valid_from = serializers.DateTimeField(allow_null=True)
    valid_until = serializers.DateTimeField(allow_null=True)
    plan_ids = serializers.SerializerMethodField(help_text="The only plans it applies to; empty: any.")
    top_ups_only = serializers.BooleanField()
    first_purchase_only = serializers.BooleanField()
    active = serializers.BooleanField()
    redemptions = serializers.IntegerField(
        source="redemptions_count", help_text="Redemptions so far (credits redeemed, or paid checkouts)."
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_plan_ids(self, coupon) -> list[str]:  # noqa: ANN001
        return sorted(str(plan.pk) for plan in coupon.plans.all())


class CouponRedeemInputSerializer(StrictInputSerializer):
    code = CouponCodeField()


class CouponRedemptionSerializer(serializers.Serializer):
    redemption_id = serializers.UUIDField(source="id")
    coupon_id = serializers.UUIDField()
    code = serializers.CharField(source="coupon.code")
    credits_awarded = MoneyOutField(source="credits")
    balance = MoneyOutField(source="ledger_entry.balance_after", help_text="Your balance after the grant.")
    transaction = LedgerEntrySerializer(source="ledger_entry", help_text="The `promotion` ledger row.")
