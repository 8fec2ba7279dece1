"""Django admin of outbound webhooks: endpoints (their secret never shown), events, deliveries with their attempts,
and the redelivery button. Writes go through ``accounts.outbound``."""

from __future__ import annotations

from django.contrib import admin, messages

from accounts import outbound
from accounts.outbound_models import (
    DeliveryStatus,
    OutboundAttempt,
    OutboundDelivery,
    OutboundEvent,
    WebhookEndpoint,
)
from billing_service.admin_base import ReadOnlyAdmin


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdmin):
    list_display = ("url", "platform", "active", "events", "created_at")
    list_filter = ("active", "platform")
    list_select_related = ("platform",)
    search_fields = ("url", "description", "platform__platform_key")
    exclude = ("secret",)
    actions = ("deactivate",)

    @admin.action(description="Deactivate the selected endpoints")
    def deactivate(self, request, queryset):  # noqa: ANN001, ANN201
        for endpoint in queryset.filter(active=True):
            outbound.endpoint_update(endpoint=endpoint, active=False)
        messages.success(request, "Deactivated.")


@admin.register(OutboundEvent)
class OutboundEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "type", "platform", "account_id", "fanned_out", "created_at")
    list_filter = ("type", "fanned_out", "platform")
    list_select_related = ("platform",)
    search_fields = ("=event_id", "=account_id", "dedupe_key")
    date_hierarchy = "created_at"
    show_full_result_count = False


@admin.register(OutboundAttempt)
class OutboundAttemptAdmin(ReadOnlyAdmin):
    list_display = ("id", "delivery", "attempted_at", "status_code", "error", "duration_ms", "manual")
    list_filter = ("manual", "status_code")
    list_select_related = ("delivery",)
    search_fields = ("=delivery__id", "error")
    show_full_result_count = False


class OutboundAttemptInline(admin.TabularInline):
    model = OutboundAttempt
    fields = ("attempted_at", "status_code", "error", "duration_ms", "manual", "response_body")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-id",)

    def has_add_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False


@admin.register(OutboundDelivery)
class OutboundDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("id", "event_type", "endpoint", "status", "attempts", "last_status_code", "next_attempt_at",
                    "delivered_at")
    list_filter = ("status", "event__type", "endpoint__platform")
    search_fields = ("=event__event_id", "=event__account_id", "endpoint__url", "last_error")
    list_select_related = ("event", "endpoint")
    inlines = (OutboundAttemptInline,)
    actions = ("redeliver",)
    show_full_result_count = False

    @admin.display(description="event")
    def event_type(self, delivery: OutboundDelivery) -> str:
        return delivery.event.type

    # The redelivery button: select deliveries (or open one from the list) and run this action.
    @admin.action(description="Redeliver the selected deliveries now")
    def redeliver(self, request, queryset):  # noqa: ANN001, ANN201
        for delivery in queryset[:50]:
            self._redeliver(request, delivery)

    def _redeliver(self, request, delivery: OutboundDelivery) -> None:  # noqa: ANN001
        delivery = outbound.delivery_redeliver(delivery=delivery)
        level = messages.SUCCESS if delivery.status == DeliveryStatus.DELIVERED else messages.WARNING
        messages.add_message(request, level, f"Delivery {delivery.pk}: {delivery.status} "
                             f"({delivery.last_status_code or delivery.last_error or 'no answer'}).")
