"""Django admin for accounts, holds and the ledger. Balances are never edited here: a correction is a
manual adjustment made through ``credits_adjust`` (a ledger row naming the acting admin)."""

from __future__ import annotations

import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from billing_service import forms as strict
from billing_service.errors import DomainError
from billing_service.admin_base import ReadOnlyAdmin
from billing_service.forms import StrictModelForm
from billing_service.money import DECIMAL_PLACES, MAX_AMOUNT, format_exact, format_money
from credits.models import (
    ArchivedTotals, CreditAccount, Hold, HoldStatus, LedgerDailyRollup, LedgerEntry,
)
from credits.services import credits_adjust, hold_release


class RecentEntriesInline(admin.TabularInline):
    model = LedgerEntry
    fk_name = "account"
    verbose_name_plural = "latest ledger entries"
    fields = ["sequence", "transaction_type", "balance_delta", "reserved_delta", "balance_after", "description",
              "actor", "created_at"]
    readonly_fields = fields
    ordering = ["-sequence"]
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request):  # noqa: ANN001, ANN201
        return super().get_queryset(request).select_related("actor")

    def has_add_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False

    def has_change_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False


class AdjustmentForm(forms.Form):
    # The API's rules (billing_service.inputs): a strict decimal string, text without control characters.
    amount = strict.DecimalField(
        max_digits=20,
        decimal_places=DECIMAL_PLACES,
        min_value=-MAX_AMOUNT,
        max_value=MAX_AMOUNT,
        help_text="Signed: 25.00 adds credits, -3.50 removes them (never beyond what is available).",
    )
    description = strict.TextField(max_length=500, help_text="Why: kept on the ledger row.")
    reference = strict.TextField(max_length=255, required=False)

    def clean_amount(self):  # noqa: ANN201
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("Must not be zero.")
        return amount


class SelectedAdjustmentForm(AdjustmentForm):
    """The "grant or take back credits" action's form: one adjustment for each selected account. ``key`` makes
    a form sent twice (a double click, a reload) write once: each account's row is keyed ``admin:<key>``."""

    key = forms.UUIDField(widget=forms.HiddenInput)


@admin.register(CreditAccount)
class CreditAccountAdmin(admin.ModelAdmin):
    form = StrictModelForm  # the same input rules as the API (auto-recharge settings: payments' admin)
    actions = ["grant_or_take_back"]
    list_display = ["__str__", "platform", "user", "balance_display", "reserved_display", "available_display",
                    "last_entry_at"]
    list_filter = ["platform", "currency"]
    search_fields = ["=id", "user__username", "user__email", "platform__platform_key"]
    list_select_related = ["platform", "user"]
    readonly_fields = ["id", "platform", "user", "currency", "balance", "reserved", "available_display",
                       "carried_remainder_display", "last_sequence", "last_entry_at",
                       "created_at", "adjust_link"]
    fields = ["id", "platform", "user", "currency", "balance", "reserved", "available_display",
              "carried_remainder_display", "adjust_link", "last_sequence", "last_entry_at", "created_at"]
    inlines = [RecentEntriesInline]

    def has_add_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False  # accounts come with platforms and memberships

    def has_delete_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False

    @admin.display(description="carried remainder")
    def carried_remainder_display(self, account: CreditAccount) -> str:
        """Usage cost not debited yet (below 0.000001): README, "Exact usage costs"."""
        return format_exact(account.carried_remainder)

    @admin.display(description="balance", ordering="balance")
    def balance_display(self, account: CreditAccount) -> str:
        return format_money(account.balance)

    @admin.display(description="reserved", ordering="reserved")
    def reserved_display(self, account: CreditAccount) -> str:
        return format_money(account.reserved)

    @admin.display(description="available")
    def available_display(self, account: CreditAccount) -> str:
        return format_money(account.available)

    @admin.display(description="manual adjustment")
    def adjust_link(self, account: CreditAccount) -> str:
        if not account.pk:
            return "-"
        url = reverse("admin:credits_creditaccount_adjust", args=[account.pk])
        return format_html('<a class="button" href="{}">Adjust credits…</a>', url)

    def get_urls(self):  # noqa: ANN201
        custom = [
            path(
                "<uuid:account_id>/adjust/",
                self.admin_site.admin_view(self.adjust_view),
                name="credits_creditaccount_adjust",
            )
        ]
        return custom + super().get_urls()

    def has_adjust_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("credits.add_ledgerentry")

    @admin.action(description="Grant or take back credits…", permissions=["adjust"])
    def grant_or_take_back(self, request: HttpRequest, queryset) -> HttpResponse | None:  # noqa: ANN001
        """An intermediate page asks the amount (signed) and the reason; each selected account then gets an
        ``adjustment`` row through ``credits_adjust``, naming the admin. A refusal (taking back more than is
        available) is reported per account and writes nothing for it."""
        accounts = list(queryset.select_related("platform", "user").order_by("pk"))
        if "apply" not in request.POST:
            form = SelectedAdjustmentForm(initial={"key": uuid.uuid4()})
        else:
            form = SelectedAdjustmentForm(request.POST)
            if form.is_valid():
                self._adjust_selected(request, accounts, form.cleaned_data)
                return None  # back to the list, with the messages
            self.message_user(request, "Nothing was written: correct the form.", messages.ERROR)
        context = {
            **self.admin_site.each_context(request),
            "title": "Grant or take back credits",
            "accounts": accounts,
            "form": form,
            "opts": self.model._meta,
            "action_name": "grant_or_take_back",
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/credits/creditaccount/adjust_selected.html", context)

    def _adjust_selected(self, request: HttpRequest, accounts: list[CreditAccount], data: dict) -> None:
        done = 0
        for account in accounts:
            try:
                result = credits_adjust(
                    account_id=account.pk,
                    amount=data["amount"],
                    description=data["description"],
                    reference=data["reference"],
                    actor=request.user,
                    idempotency_key=f"admin:{data['key']}",
                )
            except DomainError as exc:
                self.message_user(request, f"{account}: {exc.message} Nothing written for it.", messages.ERROR)
            else:
                done += 1
                self.log_change(request, account, f"Adjusted by {format_money(result.entry.balance_delta)}: "
                                                  f"{data['description']}")
        if done:
            self.message_user(request, f"Adjusted {done} account(s) by {format_money(data['amount'])}.",
                              messages.SUCCESS)

    def adjust_view(self, request: HttpRequest, account_id: str) -> HttpResponse:
        account = get_object_or_404(CreditAccount.objects.select_related("platform", "user"), pk=account_id)
        if not self.has_view_permission(request, account) or not request.user.has_perm("credits.add_ledgerentry"):
            raise PermissionDenied
        form = AdjustmentForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                result = credits_adjust(
                    account_id=account.pk,
                    amount=form.cleaned_data["amount"],
                    description=form.cleaned_data["description"],
                    reference=form.cleaned_data["reference"],
                    actor=request.user,
                )
            except DomainError as exc:
                form.add_error("amount", exc.message)
            else:
                self.message_user(
                    request,
                    f"Adjusted by {format_money(result.entry.balance_delta)}: balance is now "
                    f"{format_money(result.entry.balance_after)}.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:credits_creditaccount_change", args=[account.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Adjust credits of {account}",
            "account": account,
            "available": format_money(account.available),
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/credits/creditaccount/adjust.html", context)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["sequence", "account", "transaction_type", "balance_delta", "reserved_delta", "balance_after",
                    "description", "actor", "created_at"]
    list_filter = ["transaction_type", "status", "platform", "created_at"]
    search_fields = ["=id", "=account__id", "account__user__username", "reference", "description",
                     "=idempotency_key"]
    list_select_related = ["account__platform", "account__user", "actor"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    ordering = ["-created_at"]


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = ["id", "account", "amount", "status", "captured_amount", "expires_at", "settled_at"]
    list_filter = ["status", "account__platform"]
    search_fields = ["=id", "=account__id", "account__user__username", "reference"]
    list_select_related = ["account__platform", "account__user"]
    actions = ["release_holds"]

    @admin.action(description="Release the selected active holds", permissions=["settle"])
    def release_holds(self, request: HttpRequest, queryset) -> None:  # noqa: ANN001
        released = 0
        for hold in queryset.filter(status=HoldStatus.ACTIVE).only("id"):
            try:
                hold_release(hold_id=hold.id, actor=request.user)
                released += 1
            except DomainError:
                continue
        self.message_user(request, f"Released {released} hold(s).", messages.SUCCESS)

    def has_change_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False

    def has_settle_permission(self, request) -> bool:  # noqa: ANN001
        return request.user.has_perm("credits.add_ledgerentry")


# --- metering: the rate card, usage events and rollups ----------------------------------------------------

from decimal import Decimal  # noqa: E402

from django.core.validators import MaxValueValidator, MinValueValidator  # noqa: E402
from django.utils import timezone  # noqa: E402

from credits.models import ModelPrice, UsageEvent, UsageRollup  # noqa: E402
from credits.services.rate_card import (  # noqa: E402
    MODEL_NAME_HELP,
    effective_from_problem,
    is_valid_model_name,
    model_price_create,
)


class ModelPriceForm(StrictModelForm):
    """A new price version. Checked here so that a mistake comes back on the form; written by the service."""

    class Meta:
        model = ModelPrice
        fields = ["platform", "model", "input_per_million", "output_per_million", "effective_from",
                  "description"]
        help_texts = {"model": MODEL_NAME_HELP}

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        if "effective_from" not in self.fields:  # the read-only view of a saved version
            return
        for name in ("input_per_million", "output_per_million"):
            field = self.fields[name]
            field.validators += [MinValueValidator(Decimal(0)), MaxValueValidator(MAX_AMOUNT)]
            field.help_text = "Credits per million tokens (0 allowed)."
        effective_from = self.fields["effective_from"]
        effective_from.required = False
        effective_from.help_text = (
            "UTC. Leave empty for now. May be in the future; more than a minute in the past only where no "
            "earlier version of the model exists."
        )

    def clean_model(self):  # noqa: ANN201
        model = self.cleaned_data["model"]
        if not is_valid_model_name(model):
            raise forms.ValidationError(MODEL_NAME_HELP)
        return model

    def clean(self):  # noqa: ANN201
        data = super().clean()
        now = timezone.now()
        data["effective_from"] = data.get("effective_from") or now  # empty: now
        if data.get("platform") and data.get("model") and "effective_from" not in self.errors:
            problem = effective_from_problem(
                platform_id=data["platform"].pk,
                model=data["model"],
                effective_from=data["effective_from"],
                now=now,
            )
            if problem:
                self.add_error("effective_from", problem)
        # A version at the same instant is refused by the model's unique constraint, which the form validates.
        return data


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    """Versions are added, never changed or deleted: a price change is a new version."""

    form = ModelPriceForm
    list_display = ["model", "platform", "input_per_million", "output_per_million", "effective_from",
                    "description", "created_by", "created_at"]
    list_filter = ["platform", "model"]
    search_fields = ["model", "platform__platform_key", "description"]
    list_select_related = ["platform", "created_by"]
    ordering = ["platform__platform_key", "model", "-effective_from"]
    readonly_fields = ["created_by", "created_at"]

    def has_change_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False

    def has_delete_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False

    def save_model(self, request, obj, form, change):  # noqa: ANN001, ANN201
        if change:
            raise PermissionDenied
        data = form.cleaned_data
        created = model_price_create(
            platform=data["platform"],
            model=data["model"],
            input_per_million=data["input_per_million"],
            output_per_million=data["output_per_million"],
            effective_from=data.get("effective_from"),
            description=data.get("description") or "",
            actor=request.user,
        )
        for field in ModelPrice._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created, field.attname))
        obj._state.adding = False


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "request_id", "account", "endpoint", "model", "input_tokens",
                    "output_tokens", "cost", "charged", "priced_by", "price", "success"]
    list_filter = ["success", "priced_by", "platform"]
    # Exact matches only: the table is large and these are what support looks up.
    search_fields = ["=request_id", "=id", "=account__id", "=account__user__username", "=endpoint", "=model"]
    list_select_related = ["account__platform", "account__user", "price"]
    raw_id_fields = ["account", "ledger_entry", "hold", "price"]
    show_full_result_count = False
    ordering = ["-occurred_at"]


@admin.register(UsageRollup)
class UsageRollupAdmin(ReadOnlyAdmin):
    list_display = ["day", "account", "endpoint", "total_requests", "successful_requests", "failed_requests",
                    "credits_consumed", "input_tokens", "output_tokens"]
    list_filter = ["account__platform"]
    search_fields = ["=account__id", "=account__user__username", "=endpoint"]
    list_select_related = ["account__platform", "account__user"]
    show_full_result_count = False
    ordering = ["-day", "endpoint"]


# --- the daily check-in (set through PUT /api/billing/admin/checkin/config/, which validates it) ---------------

from credits.models import Checkin, CheckinConfig  # noqa: E402


@admin.register(CheckinConfig)
class CheckinConfigAdmin(ReadOnlyAdmin):
    list_display = ["platform", "enabled", "credits_per_day", "monthly_cap", "streak_bonuses", "updated_by",
                    "updated_at"]
    list_filter = ["enabled"]
    list_select_related = ["platform", "updated_by"]


@admin.register(Checkin)
class CheckinAdmin(ReadOnlyAdmin):
    list_display = ["day", "account", "streak", "credits", "ledger_entry", "created_at"]
    list_filter = ["day"]
    search_fields = ["account__user__username", "=account__id"]
    list_select_related = ["account__platform", "account__user"]
    date_hierarchy = "day"


@admin.register(LedgerDailyRollup)
class LedgerDailyRollupAdmin(ReadOnlyAdmin):
    """The dashboard's sums of the ledger per platform, UTC day and type (``credits.services.rollups``)."""

    list_display = ["day", "platform", "transaction_type", "entries", "credits_in", "credits_out", "credits_in_paid",
                    "payment_usd", "refreshed_at"]
    list_filter = ["transaction_type", "platform", "day"]
    search_fields = ["platform__platform_key", "=transaction_type"]
    list_select_related = ["platform"]
    date_hierarchy = "day"


# LedgerKey and UsageKey (the keys claimed across months) have composite primary keys, which the admin cannot show.


@admin.register(ArchivedTotals)
class ArchivedTotalsAdmin(ReadOnlyAdmin):
    """What the detached months held per account (``partitions detach``)."""

    list_display = ["account", "through_sequence", "balance", "reserved", "usage_cost", "usage_charged"]
    search_fields = ["=account__id", "account__user__username"]
    list_select_related = ["account__user"]
