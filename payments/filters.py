"""Query filters of the order listing."""

from __future__ import annotations

import django_filters

from payments.models import Order, OrderStatus, OrderType


class OrderFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=OrderStatus.choices, help_text="Only orders in this state.")
    type = django_filters.ChoiceFilter(choices=OrderType.choices, help_text="Only orders of this type.")

    class Meta:
        model = Order
        fields = ["status", "type"]
