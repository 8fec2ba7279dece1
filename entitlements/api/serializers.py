"""Shapes of the entitlements endpoints: the platform's AI plans and seats, a member's own seat, and the operators'
catalogue writes. Input fields take JSON values of exactly their type (a price is a JSON integer of cents, a
budget a decimal string or number, a flag a JSON boolean); the rules across fields and against the database are
``entitlements.catalogue``'s."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing_service.inputs import (
    QueryBooleanField,
    StrictBooleanField,
    StrictChoiceField,
    StrictInputSerializer,
    TextField,
)
from billing_service.money import MAX_AMOUNT, MoneyField, format_money
from credits.api.serializers import ExactOutField, MoneyOutField
from credits.services.rate_card import MODEL_NAME_HELP, MODEL_NAME_MAX_LENGTH
from entitlements.catalogue import (
    DISPLAY_NAME_MAX_LENGTH,
    ICON_MAX_LENGTH,
    MAX_PLAN_MODELS,
    MAX_PLAN_PLATFORMS,
    MAX_SEAT_PRICE_CENTS,
    NAME_MAX_LENGTH,
    SLUG_HELP,
    SLUG_MAX_LENGTH,
    SLUG_RE,
    SUPPORTED_CURRENCIES,
    seat_price_problem,
    slug_problem,
)
from entitlements.models import AIPlan, Overage, Tier
from subscriptions.models import BillingCycle
from subscriptions.api.serializers import CheckedField, StripePriceIdField

# --- input -----------------------------------------------------------------------------------------------------


@extend_schema_field({"type": "string", "pattern": f"^{SLUG_RE.pattern}$", "maxLength": SLUG_MAX_LENGTH,
                      "description": SLUG_HELP, "example": "advanced"})
class AIPlanSlugField(CheckedField):
    check = staticmethod(slug_problem)


@extend_schema_field({"type": "integer", "minimum": 0, "maximum": MAX_SEAT_PRICE_CENTS, "example": 2500})
class SeatPriceCentsField(CheckedField):
    check = staticmethod(seat_price_problem)


def _choice(choices: list[tuple[str, str]] | list[str], **kwargs: Any) -> StrictChoiceField:
    """A choice whose 400 lists the choices."""
    values = [c[0] if isinstance(c, tuple) else c for c in choices]
    message = f'"{{input}}" is not a valid choice: one of {", ".join(values)}.'
    return StrictChoiceField(choices=choices, error_messages={"invalid_choice": message}, **kwargs)


class AIPlanModelInputSerializer(StrictInputSerializer):
    """A model the plan's seats may call."""

    model = TextField(max_length=MODEL_NAME_MAX_LENGTH, blank=False,
                      help_text=f"The model's name on the rate card (priced on some platform). {MODEL_NAME_HELP}")
    display_name = TextField(max_length=DISPLAY_NAME_MAX_LENGTH, required=False, default="",
                             help_text="The name shown to members (default: the model's name).")
    tier = _choice(Tier.choices,
                             help_text="The model's tier: at or below the plan's, and the same in every active plan.")


def ai_plan_input_fields(*, for_update: bool) -> dict[str, serializers.Field]:
    """The writable fields of an AI plan. For a create, optional fields get their defaults; for an update an
    omitted field stays as it is (and ``models``, ``platforms``, when given, replace the lists)."""

    def optional(default: Any) -> dict[str, Any]:
        return {"required": False} if for_update else {"required": False, "default": default}

    required = {"required": not for_update}
    budget_help = f'a decimal string such as "2.00": above 0, at most 6 decimals, at most {MAX_AMOUNT}'
    return {
        "slug": AIPlanSlugField(**required, help_text=f"{SLUG_HELP} On an update only its current value is taken."),
        "name": TextField(max_length=NAME_MAX_LENGTH, blank=False, **required,
                          help_text=f"Display name, 1-{NAME_MAX_LENGTH} characters."),
        "tier": _choice(Tier.choices, **required,
                                  help_text="everyday < advanced < strategic: a seat may call the catalogue's "
                                            "models of its plan's tier and below."),
        "icon": TextField(max_length=ICON_MAX_LENGTH, help_text="Icon identifier (e.g. \"sparkles\").",
                          **optional("")),
        "weekly_budget": MoneyField(**required, help_text=f"Credits a seat may spend per calendar week: "
                                                          f"{budget_help}."),
        "session_budget": MoneyField(**required, help_text=f"Credits a seat may spend per 6-hour session: "
                                                           f"{budget_help}; at most weekly_budget."),
        "overage": _choice(Overage.choices, help_text="Spending beyond a budget.",
                                     **optional(Overage.REFUSE)),
        "purchasable": StrictBooleanField(help_text="Seats can be bought (checkout).", **optional(True)),
        "billing_cycle": _choice(BillingCycle.choices, **optional(BillingCycle.MONTHLY)),
        "price_per_seat_cents": SeatPriceCentsField(
            help_text=f"Price per seat per billing cycle in cents (a JSON integer, 0 to {MAX_SEAT_PRICE_CENTS}).",
            **optional(0)),
        "currency": _choice(list(SUPPORTED_CURRENCIES), **optional("USD")),
        "stripe_price_id": StripePriceIdField(
            help_text='Stripe price id of a seat ("price_..."; "" for none); names at most one AI plan.',
            **optional("")),
        "is_active": StrictBooleanField(help_text="Plans are never deleted: false retires one.", **optional(True)),
        "models": AIPlanModelInputSerializer(
            many=True, max_length=MAX_PLAN_MODELS, help_text=f"Up to {MAX_PLAN_MODELS} models, each once; replaces "
            "the plan's list.", **optional([])),
        "platforms": serializers.ListField(
            child=TextField(max_length=63, blank=False, help_text="A platform key."), max_length=MAX_PLAN_PLATFORMS,
            help_text="Keys of the platforms it is offered to, each once; empty: every platform. Replaces the "
                      "plan's list.", **optional([])),
    }


AIPlanInputSerializer = type(
    "AIPlanInputSerializer",
    (StrictInputSerializer,),
    {"__module__": __name__, "__doc__": "A new AI plan of the catalogue. Unknown fields are refused (400).",
     **ai_plan_input_fields(for_update=False)},
)
AIPlanUpdateInputSerializer = type(
    "AIPlanUpdateInputSerializer",
    (StrictInputSerializer,),
    {"__module__": __name__, "__doc__": "The fields to change; the others stay. Unknown fields are refused (400).",
     **ai_plan_input_fields(for_update=True)},
)


class AIPlanListQuerySerializer(serializers.Serializer):
    # default None (not False): DRF hands a query string's missing boolean to the field as its default.
    include_seats = QueryBooleanField(required=False, allow_null=True, default=None,
                                      help_text='"true": each plan with its seats on your platform (default false).')


class SeatAssignInputSerializer(StrictInputSerializer):
    username = TextField(max_length=150, blank=False, help_text="The member who gets the seat.")


# --- output ----------------------------------------------------------------------------------------------------


class SeatCountsSerializer(serializers.Serializer):
    total = serializers.IntegerField(help_text="Seats of the plan's current subscriptions.")
    assigned = serializers.IntegerField()
    unassigned = serializers.IntegerField()
    over_assigned = serializers.IntegerField(
        help_text="Assignments beyond the seats (a quantity lowered below them): kept, new ones refused.")


class SeatAssignmentSerializer(serializers.Serializer):
    username = serializers.CharField()
    display_name = serializers.CharField(help_text="The member's full name, or their username.")
    assigned_at = serializers.DateTimeField()
    assigned_by = serializers.CharField(allow_null=True, help_text="Username of who assigned it (null: unknown).")
    weekly_cost_used = ExactOutField(help_text="Credits spent this week (the platform's time zone).")
    session_cost_used = ExactOutField(help_text="Credits spent in the open session (0 when none is open).")


class SeatDetailSerializer(SeatCountsSerializer):
    assignments = SeatAssignmentSerializer(many=True)


class ModelSerializer(serializers.Serializer):
    id = serializers.CharField(source="model", help_text="The model's name, as usage names it.")
    name = serializers.CharField(source="display_name")
    tier = serializers.ChoiceField(choices=Tier.choices)


class AIPlanSummarySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    slug = serializers.CharField()
    tier = serializers.ChoiceField(choices=Tier.choices)
    icon = serializers.CharField()
    weekly_budget = MoneyOutField(help_text="Credits per seat per calendar week.")
    session_budget = MoneyOutField(help_text="Credits per seat per 6-hour session.")
    purchasable = serializers.BooleanField()


class AIPlanSeatsSerializer(AIPlanSummarySerializer):
    seats = SeatCountsSerializer(source="seat_counts")


class EntitlementsSerializer(serializers.Serializer):
    plans = AIPlanSeatsSerializer(many=True, help_text="The AI plans offered to the platform.")
    total_seats = serializers.IntegerField()
    assigned_seats = serializers.IntegerField()
    weekly_usage = ExactOutField(help_text="Credits the platform's seats spent since Monday 00:00 (its time zone).")
    monthly_usage = ExactOutField(help_text="Credits the platform's seats spent since the 1st 00:00 (its time zone).")
    last_refresh = serializers.DateTimeField(allow_null=True,
                                             help_text="When a provider last confirmed a seat subscription.")


@extend_schema_field({"type": "string", "format": "decimal", "example": "25.00"})
class CentsAsMoneyField(serializers.Field):
    def to_representation(self, value: int) -> str | None:
        return format_money(Decimal(value) / 100)


class AIPlanSerializer(AIPlanSummarySerializer):
    """An AI plan as owners and admins see it; ``stripe_price_id`` for operators only; ``seats`` when asked."""

    overage = serializers.ChoiceField(choices=Overage.choices)
    billing_cycle = serializers.ChoiceField(choices=BillingCycle.choices)
    price_per_seat = CentsAsMoneyField(source="price_per_seat_cents", help_text="Per seat per billing cycle, USD.")
    price_per_seat_cents = serializers.IntegerField()
    currency = serializers.CharField()
    stripe_price_id = serializers.CharField(required=False, help_text="Operators (superusers) only.")
    is_active = serializers.BooleanField()
    seats = SeatCountsSerializer(source="seat_counts", required=False, help_text="With include_seats=true only.")

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = super().to_representation(instance)
        if not self.context.get("operator"):
            data.pop("stripe_price_id", None)
        return data


class AIPlanDetailSerializer(AIPlanSerializer):
    seats = SeatDetailSerializer(source="seat_detail", help_text="The plan's seats on your platform.")
    models = ModelSerializer(many=True, source="model_list", help_text="The plan's own models.")


class CatalogueModelSerializer(serializers.Serializer):
    model = serializers.CharField()
    display_name = serializers.CharField()
    tier = serializers.ChoiceField(choices=Tier.choices)


class AIPlanCatalogueSerializer(AIPlanSerializer):
    """An AI plan as operators keep it in the catalogue: every field, its models as written and its platforms."""

    stripe_price_id = serializers.CharField()
    seats = None  # the catalogue's plan is no platform's: no seats
    models = CatalogueModelSerializer(many=True, source="models.all")
    platforms = serializers.SerializerMethodField(help_text="Keys of the platforms it is offered to; empty: every "
                                                            "platform.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_platforms(self, plan: AIPlan) -> list[str]:
        return sorted(plan.platforms.values_list("platform_key", flat=True))


class SeatPlanSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    slug = serializers.CharField()
    name = serializers.CharField()
    tier = serializers.ChoiceField(choices=Tier.choices)
    icon = serializers.CharField()


class BudgetSerializer(serializers.Serializer):
    budget = MoneyOutField()
    used = ExactOutField(help_text="Spent by usage.")
    reserved = ExactOutField(help_text="Held by calls in progress.")
    remaining = ExactOutField(help_text="budget - used - reserved, never below 0.")
    resets_at = serializers.DateTimeField(allow_null=True, help_text="When it renews; null: no session open (the "
                                                                     "next request opens one).")


class BudgetsSerializer(serializers.Serializer):
    weekly = BudgetSerializer(help_text="The calendar week (Monday 00:00 in the platform's time zone).")
    session = BudgetSerializer(help_text="The 6-hour session.")


class SeatSerializer(serializers.Serializer):
    ai_plan = SeatPlanSerializer()
    tier = serializers.ChoiceField(choices=Tier.choices)
    assigned_at = serializers.DateTimeField()
    models = ModelSerializer(many=True, help_text="The models the seat may call.")
    budgets = BudgetsSerializer()


class MySeatSerializer(serializers.Serializer):
    seat = SeatSerializer(allow_null=True, help_text="Your seat on this platform, or null.")

