"""Django admin: operators edit the AI plans and their models; seat subscriptions and assignments are shown
(assignments change through the API's services, which keep them within the seats)."""

from __future__ import annotations

from django.contrib import admin

from billing_service.forms import StrictModelForm
from entitlements.models import AIPlan, AIPlanModel, SeatAssignment, SeatSubscription


class AIPlanForm(StrictModelForm):
    class Meta:
        model = AIPlan
        fields = ["name", "slug", "tier", "icon", "weekly_budget", "session_budget", "overage", "purchasable",
                  "billing_cycle", "price_per_seat_cents", "currency", "stripe_price_id", "is_active", "platforms"]


class AIPlanModelInline(admin.TabularInline):
    model = AIPlanModel
    extra = 0
    fields = ["model", "display_name", "tier"]


@admin.register(AIPlan)
class AIPlanAdmin(admin.ModelAdmin):
    form = AIPlanForm
    list_display = ["name", "slug", "tier", "weekly_budget", "session_budget", "price_per_seat_cents",
                    "billing_cycle", "purchasable", "is_active"]
    list_filter = ["tier", "is_active", "purchasable", "billing_cycle"]
    search_fields = ["name", "=slug"]
    filter_horizontal = ["platforms"]
    inlines = [AIPlanModelInline]

    def has_delete_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False  # never deleted: retire it with is_active


@admin.register(SeatSubscription)
class SeatSubscriptionAdmin(admin.ModelAdmin):
    list_display = ["platform", "ai_plan", "quantity", "status", "provider", "billing_cycle", "started_at", "ends_at"]
    list_filter = ["provider", "status", "ai_plan"]
    search_fields = ["=provider_subscription_id", "platform__platform_key"]
    readonly_fields = ["created_at", "updated_at", "synced_at"]

    def has_delete_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False


@admin.register(SeatAssignment)
class SeatAssignmentAdmin(admin.ModelAdmin):
    list_display = ["user", "platform", "ai_plan", "assigned_at", "assigned_by"]
    list_filter = ["ai_plan", "platform"]
    search_fields = ["user__username", "platform__platform_key"]
    readonly_fields = ["platform", "ai_plan", "user", "assigned_at", "assigned_by"]

    def has_add_permission(self, request):  # noqa: ANN001, ANN201
        return False  # through the seats API, which keeps assignments within the seats
