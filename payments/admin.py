"""Django admin: payment settings are editable; orders, webhook events and plan credit periods are read-only
records (they change only through the checkout and webhook services). A failed webhook event can be processed
again from here."""

from __future__ import annotations

from urllib.parse import urlsplit

from django import forms
from django.contrib import admin, messages

from billing_service.errors import DomainError
from billing_service.admin_base import ReadOnlyAdmin
from billing_service.forms import StrictModelForm
from payments.errors import InvalidAutoRecharge
from payments.models import Order, PlanCreditPeriod, PlatformPaymentSettings, WebhookEvent, WebhookStatus
from payments.recharge import auto_recharge_admin_save, auto_recharge_check
from payments.recharge_models import ACTIVE, AutoRechargeSettings, Recharge, SavedPaymentMethod
from payments.selectors import origin_of, payment_settings_for
from payments.webhooks.events import webhook_event_process


class PlatformPaymentSettingsForm(StrictModelForm):
    class Meta:
        model = PlatformPaymentSettings
        fields = ["platform", "top_up_min_usd", "top_up_max_usd", "allowed_redirect_origins"]

    def clean_allowed_redirect_origins(self):  # noqa: ANN201
        value = self.cleaned_data["allowed_redirect_origins"] or []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise forms.ValidationError('A JSON list of origins, e.g. ["https://app.example.com"].')
        normalised = []
        for item in value:
            origin, parts = origin_of(item), urlsplit(item)
            if origin is None or parts.path not in ("", "/") or parts.query or parts.fragment:
                raise forms.ValidationError(f"{item!r} is not an origin (scheme://host[:port], nothing after).")
            normalised.append(origin)
        return sorted(set(normalised))

    def clean(self):  # noqa: ANN201
        data = super().clean()
        low, high = data.get("top_up_min_usd"), data.get("top_up_max_usd")
        if low is not None and low <= 0:
            self.add_error("top_up_min_usd", "Must be greater than zero.")
        if low is not None and high is not None and high < low:
            self.add_error("top_up_max_usd", "Must not be below the minimum.")
        return data


@admin.register(PlatformPaymentSettings)
class PlatformPaymentSettingsAdmin(admin.ModelAdmin):
    form = PlatformPaymentSettingsForm
    list_display = ["platform", "top_up_min_usd", "top_up_max_usd", "allowed_redirect_origins", "updated_at"]
    search_fields = ["platform__platform_key"]
    list_select_related = ["platform"]

    def get_readonly_fields(self, request, obj=None):  # noqa: ANN001, ANN201
        return ["platform", "updated_at"] if obj else ["updated_at"]

    def has_delete_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ["id", "platform", "user", "type", "channel", "status", "amount_usd", "credits", "needs_review",
                    "created_at", "paid_at"]
    list_filter = ["status", "type", "channel", "needs_review", "platform"]
    search_fields = ["=id", "user__username", "user__email", "=provider_checkout_id", "=provider_payment_id",
                     "=provider_customer_id"]
    list_select_related = ["platform", "user"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Order._meta.fields]


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "provider", "type", "status", "attempts", "order", "received_at", "processed_at"]
    list_filter = ["provider", "status", "type"]
    search_fields = ["=event_id", "=order__id", "=object_id", "=payment_intent_id", "=invoice_id", "=order_ref", "type"]
    date_hierarchy = "received_at"
    readonly_fields = [f.name for f in WebhookEvent._meta.fields]
    actions = ["process_again"]

    @admin.action(description="Process the selected failed events again")
    def process_again(self, request, queryset):  # noqa: ANN001, ANN201
        done = failed = 0
        for pk in queryset.filter(status__in=[WebhookStatus.FAILED, WebhookStatus.RECEIVED]).values_list(
            "pk", flat=True
        ):
            try:
                webhook_event_process(event_pk=pk)
                done += 1
            except DomainError:
                failed += 1
        self.message_user(request, f"{done} processed, {failed} failed again.",
                          messages.WARNING if failed else messages.SUCCESS)


class PeriodStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):  # noqa: ANN001, ANN201
        return [("open", "Open (current period)"), ("closed", "Closed (rollover applied)"),
                ("upgraded", "Upgraded mid-period"), ("refunded", "Refunded"),
                ("shortfall", "Refund shortfall (credits already spent)")]

    def queryset(self, request, queryset):  # noqa: ANN001, ANN201
        return {
            "open": lambda: queryset.filter(closed_at__isnull=True),
            "closed": lambda: queryset.filter(closed_at__isnull=False),
            "upgraded": lambda: queryset.filter(upgrade_granted__gt=0),
            "refunded": lambda: queryset.filter(amount_refunded_usd__gt=0),
            "shortfall": lambda: queryset.filter(refund_shortfall_credits__gt=0),
        }.get(self.value(), lambda: queryset)()


@admin.register(PlanCreditPeriod)
class PlanCreditPeriodAdmin(ReadOnlyAdmin):
    """The plan credits of each paid period: granted, upgraded, carried in and out, expired, refunded."""

    list_display = ["subscription", "plan", "period_start", "period_end", "granted", "upgrade_granted", "carried_in",
                    "carried_out", "expired", "credits_reversed", "closed_at"]
    list_filter = [PeriodStateFilter, "subscription__provider", "plan__rollover_policy", "plan", "period_start"]
    search_fields = ["=subscription__id", "=subscription__provider_subscription_id", "=invoice_id",
                     "=payment_intent_id", "=subscription__account__id"]
    list_select_related = ["subscription", "plan"]
    date_hierarchy = "period_start"
    ordering = ["-period_start", "-id"]
    readonly_fields = [f.name for f in PlanCreditPeriod._meta.fields]


# --- saved payment methods and auto-recharge ---------------------------------------------------------------------


_SETTINGS = ["enabled", "threshold_usd", "amount_usd", "spending_limit_usd"]


class AutoRechargeSettingsForm(StrictModelForm):
    """The API's rules (``recharge.auto_recharge_check``), and enabling needs a saved card, as in the API."""

    class Meta:
        model = AutoRechargeSettings
        fields = ["account", *_SETTINGS]

    def clean(self):  # noqa: ANN201
        data = super().clean()
        account = data.get("account") or getattr(self.instance, "account", None)
        if account is None or any(name in self.errors for name in _SETTINGS):
            return data
        candidate = AutoRechargeSettings(account=account, **{name: data.get(name) for name in _SETTINGS})
        limits = payment_settings_for(platform=account.platform)
        try:
            auto_recharge_check(candidate, top_up_min=limits.top_up_min_usd, top_up_max=limits.top_up_max_usd)
        except InvalidAutoRecharge as exc:
            for field, problems in (exc.details or {}).items():
                self.add_error(field.removeprefix("auto_recharge_"), problems)
            return data
        if candidate.enabled and not SavedPaymentMethod.objects.filter(ACTIVE, account_id=account.pk).exists():
            self.add_error("enabled", "Auto-recharge needs a saved payment method.")
        return data


@admin.register(AutoRechargeSettings)
class AutoRechargeSettingsAdmin(admin.ModelAdmin):
    """Saved through ``recharge.auto_recharge_admin_save``: under the account's lock, with the account's
    ``low_balance_threshold`` kept equal to the threshold while enabled."""

    form = AutoRechargeSettingsForm
    list_display = ["account", "enabled", "threshold_usd", "amount_usd", "spending_limit_usd", "last_triggered_at"]
    list_filter = ["enabled", "account__platform"]
    search_fields = ["=account__id", "account__user__username", "account__platform__platform_key"]
    list_select_related = ["account__platform", "account__user"]
    raw_id_fields = ["account"]

    def get_readonly_fields(self, request, obj=None):  # noqa: ANN001, ANN201
        return ["account", "last_triggered_at", "updated_at"] if obj else ["last_triggered_at", "updated_at"]

    def has_delete_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False

    def save_model(self, request, obj, form, change):  # noqa: ANN001, ANN201
        auto_recharge_admin_save(settings=obj)


@admin.register(SavedPaymentMethod)
class SavedPaymentMethodAdmin(ReadOnlyAdmin):
    list_display = ["account", "provider", "brand", "last4", "provider_customer_id", "removed_at", "updated_at"]
    list_filter = ["provider", ("removed_at", admin.EmptyFieldListFilter)]
    search_fields = ["=account__id", "=provider_customer_id", "=provider_payment_method_id"]
    list_select_related = ["account__platform", "account__user"]
    readonly_fields = [f.name for f in SavedPaymentMethod._meta.fields]


@admin.register(Recharge)
class RechargeAdmin(ReadOnlyAdmin):
    list_display = ["id", "account", "status", "failure_reason", "amount_usd", "attempts", "created_at",
                    "settled_at"]
    list_filter = ["status", "failure_reason"]
    search_fields = ["=id", "=account__id", "=provider_payment_id"]
    list_select_related = ["account__platform", "account__user"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Recharge._meta.fields]
