"""Query filters of the order and seat subscription listings."""

from __future__ import annotations

import django_filters

from billing_service.filters import TextFilter
from entitlements.models import SeatStatus, SeatSubscription
from payments.models import Order, OrderStatus, OrderType
from subscriptions.models import BillingCycle


class OrderFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=OrderStatus.choices, help_text="Only orders in this state.")
    type = django_filters.ChoiceFilter(choices=OrderType.choices, help_text="Only orders of this type.")

    class Meta:
        model = Order
        fields = ["status", "type"]


class SeatSubscriptionFilterSet(django_filters.FilterSet):
    plan_slug = TextFilter(field_name="ai_plan__slug", max_length=100, help_text="Only this AI plan's (its slug).")
    billing_cycle = django_filters.ChoiceFilter(choices=BillingCycle.choices, help_text="Only this billing cycle.")
    status = django_filters.ChoiceFilter(choices=SeatStatus.choices, help_text="Only subscriptions in this state.")

    class Meta:
        model = SeatSubscription
        fields = ["plan_slug", "billing_cycle", "status"]
