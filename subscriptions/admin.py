"""Django admin: plans are created and edited through the services (the form shows their problems on its
fields); subscriptions and their changes are read-only (they are written by checkout and webhooks)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin
from django.core.validators import MaxValueValidator, MinValueValidator

from billing_service.admin_base import ReadOnlyAdmin
from billing_service.forms import StrictModelForm
from billing_service.money import MAX_AMOUNT, format_money
from subscriptions.models import Plan, Subscription, SubscriptionChange
from subscriptions.services import plan_conflicts, plan_create, plan_update, plan_update_problems
from subscriptions.validation import MAX_PRICE_CENTS, PLAN_FIELDS, SLUG_HELP, plan_problems


class PlanForm(StrictModelForm):
    """Checked with the services' own rules, so a mistake comes back on the form; saved by the services."""

    features = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6}),
        required=False,
        help_text="One feature per line (blank lines are dropped).",
    )

    class Meta:
        model = Plan
        fields = ["platform", *PLAN_FIELDS]
        help_texts = {"slug": SLUG_HELP}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.instance._state.adding and "features" in self.fields:
            self.initial["features"] = "\n".join(self.instance.features)
        for name in ("price_monthly", "price_yearly"):
            if name in self.fields:
                self.fields[name].validators += [MinValueValidator(0), MaxValueValidator(MAX_PRICE_CENTS)]
                self.fields[name].help_text = "In cents: 999 is 9.99."
        for name in ("credits_included", "rollover_cap"):
            if name in self.fields:
                self.fields[name].validators += [MinValueValidator(Decimal(0)), MaxValueValidator(MAX_AMOUNT)]

    def clean_features(self) -> list[str]:
        text = self.cleaned_data.get("features") or ""
        return [line.strip() for line in text.splitlines() if line.strip()]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for name in ("description", "stripe_price_monthly", "stripe_price_yearly", "creem_product_id"):
            if name in data and data[name] is None:
                data[name] = ""
        if self.errors:
            return data  # a field is already wrong: the rules below need every value
        if not self.instance._state.adding:  # a change (a new plan's UUID pk is set already)
            changes = {name: data[name] for name in PLAN_FIELDS if name in data}
            merged, problems = plan_update_problems(self.instance, changes)
            platform_id, exclude = self.instance.platform_id, self.instance.pk
        else:
            merged = {name: data.get(name) for name in PLAN_FIELDS}
            problems = plan_problems(merged)
            platform_id, exclude = data["platform"].pk, None
        if not problems:
            problems = plan_conflicts(platform_id=platform_id, values=merged, exclude=exclude)
        for name, messages in problems.items():
            self.add_error(name if name in self.fields else None, messages)
        return data

    def validate_constraints(self) -> None:
        """Skipped: ``clean`` ran the services' checks, which cover every constraint with clearer messages
        (and PostgreSQL checks them again on save)."""


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    form = PlanForm
    list_display = [
        "slug",
        "name",
        "platform",
        "price_monthly_display",
        "price_yearly_display",
        "credits_included",
        "unlimited_credits",
        "purchasable",
        "is_active",
        "sort_order",
    ]
    list_filter = [
        "platform",
        "is_active",
        "purchasable",
        "free_trial",
        "unlimited_credits",
        "rollover_policy",
    ]
    search_fields = [
        "slug",
        "name",
        "platform__platform_key",
        "=stripe_price_monthly",
        "=stripe_price_yearly",
        "=creem_product_id",
    ]
    list_select_related = ["platform"]
    ordering = ["platform__platform_key", "sort_order", "slug"]
    readonly_fields = ["id", "created_at", "updated_at"]

    def get_readonly_fields(self, request, obj=None):
        fixed = ["platform", "slug"] if obj else []
        return [*fixed, *self.readonly_fields]

    def has_delete_permission(self, request, obj=None):
        return False  # deactivate instead

    @admin.display(description="monthly", ordering="price_monthly")
    def price_monthly_display(self, plan: Plan) -> str:
        return f"{format_money(Decimal(plan.price_monthly) / 100)} {plan.currency}"

    @admin.display(description="yearly", ordering="price_yearly")
    def price_yearly_display(self, plan: Plan) -> str:
        return f"{format_money(Decimal(plan.price_yearly) / 100)} {plan.currency}"

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:  # every field shown (the service writes only what differs); platform and slug are fixed
            changes = {name: data[name] for name in PLAN_FIELDS if name in data}
            saved = plan_update(plan_id=obj.pk, actor=request.user, **changes)
        else:
            values = {name: data[name] for name in PLAN_FIELDS if name in data}
            saved = plan_create(platform=data["platform"], actor=request.user, **values)
        for field in Plan._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))
        obj._state.adding = False


class SubscriptionChangeInline(admin.TabularInline):
    model = SubscriptionChange
    fields = [
        "created_at",
        "kind",
        "plan_from",
        "plan_to",
        "status_from",
        "status_to",
        "billing_cycle",
        "as_of",
        "actor",
    ]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("plan_from", "plan_to", "actor")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "account",
        "plan",
        "status",
        "billing_cycle",
        "provider",
        "current_period_end",
        "cancel_at_period_end",
        "created_at",
    ]
    list_filter = ["status", "billing_cycle", "provider", "cancel_at_period_end", "account__platform", "plan"]
    search_fields = [
        "=id",
        "=account__id",
        "account__user__username",
        "account__user__email",
        "plan__slug",
        "=provider_subscription_id",
        "=provider_customer_id",
    ]
    list_select_related = ["account__platform", "account__user", "plan"]
    raw_id_fields = ["account"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    inlines = [SubscriptionChangeInline]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(SubscriptionChange)
class SubscriptionChangeAdmin(ReadOnlyAdmin):
    """Every change of every subscription (written by ``subscriptions.services`` only), searchable on its own."""

    list_display = ["created_at", "subscription", "kind", "plan_from", "plan_to", "status_from", "status_to",
                    "billing_cycle", "as_of", "actor"]
    list_filter = ["kind", "status_to", "billing_cycle", "subscription__provider", "subscription__account__platform"]
    search_fields = ["=subscription__id", "=subscription__provider_subscription_id", "=subscription__account__id",
                     "subscription__account__user__username", "plan_to__slug", "plan_from__slug"]
    list_select_related = ["subscription", "plan_from", "plan_to", "actor"]
    date_hierarchy = "created_at"
