"""Shapes of the payments API (no rules here: they live in the services: ``payments.checkout``, ``payments.webhooks.events``)."""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing_service.inputs import (
    StrictBooleanField,
    StrictChoiceField,
    StrictInputSerializer,
    StrictIntegerField,
    TextField,
    URLField,
)
from billing_service.money import MoneyField, format_money
from entitlements.models import SeatProvider, SeatStatus
from payments.seat_sync import MAX_SEATS
from payments.models import Channel, OrderStatus, OrderType
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
    amount_usd = MoneyOutField(help_text="Price of the order.")
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
