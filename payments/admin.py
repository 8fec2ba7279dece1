"""Django admin: payment settings are editable; orders, webhook events and plan credit periods are read-only
records (they change only through the checkout and webhook services). A failed webhook event can be processed
again from here."""

from __future__ import annotations

from urllib.parse import urlsplit

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from billing_service import forms as strict
from billing_service.errors import DomainError
from billing_service.admin_base import ReadOnlyAdmin
from billing_service.forms import StrictModelForm
from billing_service.money import format_money
from payments import dashboard
from payments.errors import InvalidAutoRecharge
from payments.models import Order, PlanCreditPeriod, PlatformPaymentSettings, WebhookEvent, WebhookStatus
from payments.recharge import auto_recharge_admin_save, auto_recharge_check
from payments.recharge_models import ACTIVE, AutoRechargeSettings, Recharge, SavedPaymentMethod
from payments.refunds import order_refund_request
from payments.selectors import origin_of, payment_settings_for
from payments.webhooks.events import webhook_event_process

# The admin's index links to the billing dashboard (OrderAdmin.dashboard_view).
admin.site.index_template = "admin/payments/index_with_dashboard.html"


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


class RefundForm(forms.Form):
    reason = strict.TextField(max_length=500, help_text="Why: sent to Stripe with the refund and kept in the "
                                                        "admin's history of the order.")


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
    actions = ["refund_orders"]

    # --- refund through the provider ---

    def has_refund_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("payments.change_order")

    @admin.action(description="Refund the selected orders through Stripe…", permissions=["refund"])
    def refund_orders(self, request: HttpRequest, queryset) -> HttpResponse | None:  # noqa: ANN001
        """An intermediate page asks the reason; each order is then refunded of what is left of it through
        ``payments.refunds.order_refund_request`` (Stripe), and its credits are taken back when Stripe's
        ``charge.refunded`` arrives (the webhook's one rule). Refusals and provider failures are reported per
        order."""
        orders = list(queryset.select_related("platform", "user").order_by("created_at", "pk"))
        form = RefundForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST:
            if form.is_valid():
                self._refund(request, orders, form.cleaned_data["reason"])
                return None
            self.message_user(request, "Nothing was refunded: give a reason.", messages.ERROR)
        context = {
            **self.admin_site.each_context(request),
            "title": "Refund orders through Stripe",
            "orders": [(order, order.amount_usd - order.amount_refunded_usd) for order in orders],
            "form": form,
            "opts": self.model._meta,
            "action_name": "refund_orders",
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/payments/order/refund.html", context)

    def _refund(self, request: HttpRequest, orders: list[Order], reason: str) -> None:
        for order in orders:
            try:
                amount = order_refund_request(order_id=order.pk, reason=reason, actor_id=request.user.pk)
            except DomainError as exc:
                detail = exc.details.get("provider_message") if exc.details else ""
                self.message_user(request, f"Order {order.pk}: not refunded: {exc.message}"
                                           f"{f' ({detail})' if detail else ''}", messages.ERROR)
            else:
                self.log_change(request, order, f"Refund of {format_money(amount)} USD requested: {reason}")
                self.message_user(request, f"Order {order.pk}: refund of {format_money(amount)} USD requested from "
                                           f"Stripe; the credits are taken back when Stripe confirms it.",
                                  messages.SUCCESS)

    # --- the billing dashboard ---

    def get_urls(self):  # noqa: ANN201
        return [path("dashboard/", self.admin_site.admin_view(self.dashboard_view), name="billing_dashboard"),
                *super().get_urls()]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        """Staff only (``admin_view``): a superuser sees every platform or the one chosen (``?platform=KEY``),
        other staff the platforms they own or administer."""
        allowed = dashboard.dashboard_platforms(user=request.user)
        if not allowed:
            raise PermissionDenied
        chosen_key = request.GET.get("platform", "")
        if chosen_key:
            chosen = [p for p in allowed if p.platform_key == chosen_key]
            if not chosen:
                raise Http404("No such platform here.")
        elif request.user.is_superuser:
            chosen = allowed
        else:
            chosen = allowed[:1]
        context = {
            **self.admin_site.each_context(request),
            "title": "Billing dashboard",
            "opts": self.model._meta,
            "board": dashboard.dashboard_get(platforms=chosen, now=dashboard.clock(),
                                             provider_events=request.user.is_superuser),
            "allowed": allowed,
            "chosen_key": chosen_key,
            "all_allowed": request.user.is_superuser,
            "stalled_after": dashboard.STALLED_AFTER,
        }
        return TemplateResponse(request, "admin/payments/dashboard.html", context)


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
        """Through ``webhook_event_process`` (what ``payments.tasks.webhook_events_reprocess`` runs): each event
        not done is processed again in its own transaction. An event that fails again is reported with its
        error; events already done, or parked, are skipped."""
        done = failed = 0
        selected = queryset.filter(status__in=[WebhookStatus.FAILED, WebhookStatus.RECEIVED])
        for pk, event_id in selected.order_by("pk").values_list("pk", "event_id"):
            try:
                outcome = webhook_event_process(event_pk=pk)
            except DomainError:
                outcome = None
            if outcome is not None and outcome.status != WebhookStatus.FAILED:
                done += 1
                continue
            failed += 1
            error = WebhookEvent.objects.filter(pk=pk).values_list("last_error", flat=True).first() or ""
            self.message_user(request, f"{event_id} failed again: {error[:300]}", messages.ERROR)
        skipped = queryset.count() - done - failed
        self.message_user(request, f"{done} processed, {failed} failed again"
                                   f"{f', {skipped} skipped (not failed)' if skipped else ''}.",
                          messages.WARNING if failed or not done else messages.SUCCESS)


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
    list_filter = ["provider", ("removed_at", admin.EmptyFieldListFilter), "brand", "account__platform"]
    search_fields = ["=account__id", "account__user__username", "=provider_customer_id", "=provider_payment_method_id",
                     "=last4"]
    list_select_related = ["account__platform", "account__user"]
    readonly_fields = [f.name for f in SavedPaymentMethod._meta.fields]


class RechargeAttentionFilter(admin.SimpleListFilter):
    """The recharges an operator should look at (``payments.dashboard``): in flight but untouched for longer than
    the upkeep takes to settle one (stalled), or given up lately."""

    title = "needs attention"
    parameter_name = "attention"

    def lookups(self, request, model_admin):  # noqa: ANN001, ANN201
        return [("stalled", f"Stalled (in flight, untouched for {dashboard.STALLED_AFTER})"),
                ("any", "Needs attention (stalled, or given up in the last "
                        f"{dashboard.GAVE_UP_WITHIN.days} days)")]

    def queryset(self, request, queryset):  # noqa: ANN001, ANN201
        if self.value() == "stalled":
            return queryset.filter(dashboard.recharges_stalled_q())
        if self.value() == "any":
            return queryset.filter(dashboard.recharges_needing_attention_q())
        return queryset


@admin.register(Recharge)
class RechargeAdmin(ReadOnlyAdmin):
    list_display = ["id", "account", "status", "failure_reason", "amount_usd", "attempts", "last_error",
                    "created_at", "updated_at", "settled_at"]
    list_filter = [RechargeAttentionFilter, "status", "failure_reason", "account__platform"]
    search_fields = ["=id", "=account__id", "account__user__username", "=provider_payment_id"]
    list_select_related = ["account__platform", "account__user"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Recharge._meta.fields]
from payments import coupon_admin  # noqa: E402, F401  (registers the coupon pages)
