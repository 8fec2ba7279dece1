"""Django admin of coupons and their redemptions: readable, searchable, filtered records. Coupons are created and
changed through the API (``payments.coupons``' rules); the admin's one write is the "deactivate" action, which goes
through ``payments.coupons.coupon_deactivate``. Imported at the end of ``payments.admin``."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest

from billing_service.admin_base import ReadOnlyAdmin
from billing_service.errors import DomainError
from payments.coupons import coupon_deactivate
from payments.models import Coupon, CouponAttempt, CouponRedemption


class CouponRedemptionInline(admin.TabularInline):
    model = CouponRedemption
    fields = ["created_at", "source", "account", "user", "credits", "discount_usd", "order", "ledger_entry",
              "over_limit"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ["-created_at"]

    def has_add_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False

    def has_change_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False


@admin.register(Coupon)
class CouponAdmin(ReadOnlyAdmin):
    list_display = ["code", "platform", "kind", "value", "redemptions_count", "max_redemptions", "max_per_account",
                    "valid_from", "valid_until", "active", "created_at"]
    list_filter = ["active", "kind", "top_ups_only", "first_purchase_only", "platform"]
    search_fields = ["code", "platform__platform_key", "id"]
    list_select_related = ["platform"]
    readonly_fields = ["id", "platform", "code", "kind", "value", "max_redemptions", "max_per_account", "valid_from",
                       "valid_until", "plans", "top_ups_only", "first_purchase_only", "active", "redemptions_count",
                       "stripe_coupon_id", "created_by", "created_at", "updated_at"]
    inlines = [CouponRedemptionInline]
    actions = ["deactivate"]
    date_hierarchy = "created_at"

    def has_deactivate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("payments.change_coupon")

    @admin.action(description="Deactivate the selected coupons", permissions=["deactivate"])
    def deactivate(self, request: HttpRequest, queryset) -> None:  # noqa: ANN001
        """Each coupon withdrawn through the service (its own transaction); a refusal is reported, the rest go on."""
        done = 0
        for coupon_id in queryset.filter(active=True).values_list("pk", flat=True):
            try:
                coupon_deactivate(coupon_id=coupon_id, actor=request.user)
            except DomainError as exc:
                self.message_user(request, f"{coupon_id}: {exc.message}", messages.ERROR)
            else:
                done += 1
        self.message_user(request, f"{done} coupon(s) deactivated.", messages.SUCCESS)


@admin.register(CouponRedemption)
class CouponRedemptionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "coupon", "source", "account", "user", "credits", "discount_usd", "order",
                    "over_limit"]
    list_filter = ["source", "over_limit", "coupon__kind", "coupon__platform"]
    search_fields = ["coupon__code", "account__id", "user__username", "order__id"]
    list_select_related = ["coupon", "account__user", "account__platform", "user", "order"]
    date_hierarchy = "created_at"


@admin.register(CouponAttempt)
class CouponAttemptAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "user", "platform", "code", "outcome"]
    list_filter = ["outcome", "platform"]
    search_fields = ["user__username", "code"]
    list_select_related = ["user", "platform"]
    date_hierarchy = "created_at"
