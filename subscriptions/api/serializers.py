"""Shapes of the plan and subscription endpoints. Input fields take JSON values of exactly their type (a price
is a JSON integer of cents, a flag a JSON boolean) and check them with ``subscriptions.validation``; the rules
across fields and against the database live in ``subscriptions.services``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing_service.inputs import (
    EchoTolerantInputSerializer,
    QueryBooleanField,
    QueryIntegerField,
    StrictBooleanField,
    StrictChoiceField,
    TextField,
)
from billing_service.money import MAX_AMOUNT, MoneyField
from billing_service.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from credits.api.serializers import MoneyOutField
from subscriptions.models import (
    BillingCycle,
    Plan,
    Provider,
    RolloverPolicy,
    Subscription,
    SubscriptionStatus,
)
from subscriptions.selectors import FREE_TRIAL
from subscriptions.validation import (
    DESCRIPTION_MAX_LENGTH,
    FEATURE_MAX_LENGTH,
    MAX_FEATURES,
    MAX_PRICE_CENTS,
    MAX_SORT_ORDER,
    NAME_MAX_LENGTH,
    PROVIDER_ID_MAX_LENGTH,
    SLUG_HELP,
    SLUG_MAX_LENGTH,
    SLUG_RE,
    STRIPE_PRICE_PREFIXES,
    SUPPORTED_CURRENCIES,
    cents_problem,
    features_problem,
    provider_id_problem,
    slug_problem,
    sort_order_problem,
)


class CheckedField(serializers.Field):
    """A JSON value taken as it is and checked by one of ``subscriptions.validation``'s functions."""

    check: Callable[[Any], str | None]

    def __init__(self, *, check: Callable[[Any], str | None] | None = None, **kwargs: Any) -> None:
        if check is not None:
            self.check = check
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        problem = self.check(data)
        if problem:
            raise serializers.ValidationError(problem)
        return data

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field(
    {"type": "string", "pattern": SLUG_RE.pattern, "maxLength": SLUG_MAX_LENGTH, "description": SLUG_HELP}
)
class PlanSlugField(CheckedField):
    check = staticmethod(slug_problem)


@extend_schema_field({"type": "integer", "minimum": 0, "maximum": MAX_PRICE_CENTS, "example": 999})
class CentsField(CheckedField):
    check = staticmethod(cents_problem)


@extend_schema_field(
    {
        "type": "array",
        "items": {"type": "string", "minLength": 1, "maxLength": FEATURE_MAX_LENGTH},
        "maxItems": MAX_FEATURES,
        "uniqueItems": True,
        "example": ["Unlimited AI chat", "Priority support"],
    }
)
class FeaturesField(CheckedField):
    check = staticmethod(features_problem)

    def to_internal_value(self, data: Any) -> list[str]:
        return list(super().to_internal_value(data))


@extend_schema_field({"type": "string", "maxLength": PROVIDER_ID_MAX_LENGTH, "pattern": r"^[A-Za-z0-9_-]*$"})
class ProviderIdField(CheckedField):
    check = staticmethod(provider_id_problem)


@extend_schema_field(
    {
        "type": "string",
        "maxLength": PROVIDER_ID_MAX_LENGTH,
        "pattern": rf"^$|^({'|'.join(STRIPE_PRICE_PREFIXES)})[A-Za-z0-9_-]*$",
    }
)
class StripePriceIdField(CheckedField):
    @staticmethod
    def check(value: Any) -> str | None:
        return provider_id_problem(value, prefix=STRIPE_PRICE_PREFIXES)


@extend_schema_field({"type": "integer", "minimum": 0, "maximum": MAX_SORT_ORDER})
class SortOrderField(CheckedField):
    check = staticmethod(sort_order_problem)


# --- input -----------------------------------------------------------------------------------------------

# Fields of the output that clients may send back unchanged (a PUT of a fetched plan): ignored on input.
READ_ONLY_FIELDS = frozenset({"id", "created_at", "updated_at", "is_current"})


def plan_input_fields(*, for_update: bool) -> dict[str, serializers.Field]:
    """The writable fields of a plan. For a create, optional fields get their defaults; for an update an
    omitted field stays as it is, and the slug is optional (it cannot change)."""

    def optional(default: Any) -> dict[str, Any]:
        return {"required": False} if for_update else {"required": False, "default": default}

    return {
        "slug": PlanSlugField(required=not for_update),
        "name": TextField(
            max_length=NAME_MAX_LENGTH, blank=False, help_text="Display name, 1-100 characters."
        ),
        "description": TextField(max_length=DESCRIPTION_MAX_LENGTH, multiline=True, **optional("")),
        "price_monthly": CentsField(
            help_text="Price per month in cents (a JSON integer, 0 for free): 999 = 9.99."
        ),
        "price_yearly": CentsField(help_text="Price per year in cents (a JSON integer, 0 for free)."),
        "currency": StrictChoiceField(choices=list(SUPPORTED_CURRENCIES), **optional("USD")),
        "credits_included": MoneyField(
            allow_zero=True,
            help_text=f'Credits granted per billing period, a decimal string: "1000.00" (0 to '
            f"{MAX_AMOUNT}, at most 6 decimals).",
        ),
        "features": FeaturesField(
            help_text=f"Feature lines to display: up to {MAX_FEATURES} distinct non-blank strings.",
            **optional([]),
        ),
        "free_trial": StrictBooleanField(
            help_text="A trial plan: its subscribers count as on the free trial.", **optional(False)
        ),
        "unlimited_credits": StrictBooleanField(
            help_text="Subscribers have credits whatever their balance (`has_credits`).", **optional(False)
        ),
        "rollover_policy": StrictChoiceField(
            choices=RolloverPolicy.choices,
            help_text="What happens to unused plan credits at period end.",
            **optional(RolloverPolicy.NONE),
        ),
        "rollover_cap": MoneyField(
            allow_null=True,
            help_text="Most credits carried over: required (above 0) when rollover_policy is "
            '"capped", null otherwise. Leaving "capped" without naming it clears it.',
            **optional(None),
        ),
        "purchasable": StrictBooleanField(
            help_text="Offered for self-service purchase (the pricing table).", **optional(True)
        ),
        "is_active": StrictBooleanField(
            help_text="Plans are never deleted: deactivate them. Inactive plans are hidden from members; "
            "current subscribers keep them.",
            **optional(True),
        ),
        "stripe_price_monthly": StripePriceIdField(
            help_text='Stripe price id of the monthly price ("price_..."; "" for none); unique in the '
            "platform. Changing price_monthly of a plan that has one needs a new id in the same request "
            '(or "").',
            **optional(""),
        ),
        "stripe_price_yearly": StripePriceIdField(
            help_text='Stripe price id of the yearly price ("" for none); the same rules as the monthly one.',
            **optional(""),
        ),
        "creem_product_id": ProviderIdField(
            help_text='Creem product id ("" for none); unique in the platform.', **optional("")
        ),
        "sort_order": SortOrderField(
            help_text="Position in listings, ascending (then by price and slug).", **optional(0)
        ),
    }


class _PlanInputBase(EchoTolerantInputSerializer):
    echoed_fields = frozenset(READ_ONLY_FIELDS)


PlanInputSerializer = type(
    "PlanInputSerializer",
    (_PlanInputBase,),
    {
        "__module__": __name__,
        "__doc__": "A new plan. Unknown fields are refused (400): a misspelt one is never silently ignored.",
        **plan_input_fields(for_update=False),
    },
)
PlanUpdateInputSerializer = type(
    "PlanUpdateInputSerializer",
    (_PlanInputBase,),
    {
        "__module__": __name__,
        "__doc__": "PUT: `name`, the prices and `credits_included` are required; other omitted fields stay "
        "as they are. PATCH: only the fields sent change.",
        **plan_input_fields(for_update=True),
    },
)


class PlanListQuerySerializer(serializers.Serializer):
    page = QueryIntegerField(
        min_value=1, max_value=10_000_000, default=1, help_text="Page number (1-based)."
    )
    page_size = QueryIntegerField(
        min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE, help_text="Plans per page (max 100)."
    )


class AdminPlanListQuerySerializer(PlanListQuerySerializer):
    is_active = QueryBooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Only active (true) or inactive (false) plans.",
    )
    purchasable = QueryBooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Only purchasable (true) or not purchasable (false) plans.",
    )


# --- output ----------------------------------------------------------------------------------------------


class PlanSerializer(serializers.Serializer):
    """A plan as members see it."""

    id = serializers.UUIDField()
    slug = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    price_monthly = serializers.IntegerField(help_text="Cents per month.")
    price_yearly = serializers.IntegerField(help_text="Cents per year.")
    currency = serializers.CharField()
    credits_included = MoneyOutField(help_text="Credits granted per billing period.")
    features = serializers.ListField(child=serializers.CharField())
    free_trial = serializers.BooleanField()
    unlimited_credits = serializers.BooleanField()
    rollover_policy = serializers.ChoiceField(choices=RolloverPolicy.choices)
    rollover_cap = MoneyOutField(allow_null=True, help_text='Most credits carried over ("capped" only).')


class CatalogPlanSerializer(PlanSerializer):
    is_current = serializers.SerializerMethodField(help_text="Your current subscription is on this plan.")

    def get_is_current(self, plan: Plan) -> bool:
        return plan.pk == self.context.get("current_plan_id")


class AdminPlanSerializer(PlanSerializer):
    """A plan with everything owners and admins manage."""

    purchasable = serializers.BooleanField()
    is_active = serializers.BooleanField()
    stripe_price_monthly = serializers.CharField()
    stripe_price_yearly = serializers.CharField()
    creem_product_id = serializers.CharField()
    sort_order = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class SubscriptionPlanSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    slug = serializers.CharField()
    name = serializers.CharField()
    credits_included = MoneyOutField()
    unlimited_credits = serializers.BooleanField()
    free_trial = serializers.BooleanField()


class SubscriptionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    account_id = serializers.UUIDField()
    plan = SubscriptionPlanSerializer()
    previous_plan = serializers.SerializerMethodField(
        help_text=f'Slug of the plan before this one; "{FREE_TRIAL}" when there was none.'
    )
    status = serializers.ChoiceField(choices=SubscriptionStatus.choices)
    billing_cycle = serializers.ChoiceField(choices=BillingCycle.choices)
    price = serializers.SerializerMethodField(help_text="The plan's price for this billing cycle, in cents.")
    currency = serializers.CharField(source="plan.currency")
    current_period_start = serializers.DateTimeField(allow_null=True)
    current_period_end = serializers.DateTimeField(allow_null=True)
    trial_end = serializers.DateTimeField(allow_null=True)
    cancel_at_period_end = serializers.BooleanField()
    canceled_at = serializers.DateTimeField(allow_null=True)
    provider = serializers.ChoiceField(choices=Provider.choices)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_previous_plan(self, subscription: Subscription) -> str:
        return subscription.previous_plan.slug if subscription.previous_plan_id else FREE_TRIAL

    def get_price(self, subscription: Subscription) -> int:
        return subscription.plan.price_for(subscription.billing_cycle)


class CurrentSubscriptionSerializer(serializers.Serializer):
    subscription = SubscriptionSerializer(
        allow_null=True, help_text="Your current subscription (trialing, active or past due), or null."
    )
