"""Django admin. Every write goes through the services the API calls:

- AI plans and their models: operators edit them here; the plan form and its models are checked by the
  catalogue's rules (``entitlements.catalogue.ai_plan_check``) and written by ``ai_plan_create`` /
  ``ai_plan_update``. Never deleted (``is_active`` retires a plan).
- Seat assignments: "Add" assigns a seat through ``seat_assign`` (which keeps assignments within the seats, one
  per member); the "Free the selected seats" action calls ``seat_unassign``. Assignments are never edited or
  deleted directly.
- Seat subscriptions are shown (written by ``seats_grant`` and the payment providers); budget windows and seat
  charges are read-only (written by the usage path only).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from accounts.models import Platform
from billing_service import forms as strict
from billing_service.errors import DomainError
from billing_service.admin_base import ReadOnlyAdmin
from billing_service.forms import StrictModelForm
from billing_service.money import format_exact, format_money
from entitlements import catalogue, selectors
from entitlements.models import AIPlan, AIPlanModel, SeatAssignment, SeatCharge, SeatSubscription, SeatWindow
from entitlements.services import seat_assign, seat_unassign


# --- AI plans (the catalogue) ----------------------------------------------------------------------------------


class AIPlanForm(StrictModelForm):
    class Meta:
        model = AIPlan
        fields = list(catalogue.PLAN_FIELDS) + ["platforms"]
        help_texts = {"slug": catalogue.SLUG_HELP}

    def clean_slug(self):  # noqa: ANN201
        slug = self.cleaned_data["slug"]
        problem = catalogue.slug_problem(slug)
        if problem:
            raise forms.ValidationError(problem)
        return slug


def _plan_values(plan: AIPlan) -> dict[str, Any]:
    return {field: getattr(plan, field) for field in catalogue.PLAN_FIELDS}


class AIPlanModelFormSet(BaseInlineFormSet):
    """The plan's models, checked with the plan's values by the catalogue's rules before anything is written."""

    def models(self) -> list[dict[str, str]]:
        return [
            {"model": f.cleaned_data["model"], "display_name": f.cleaned_data.get("display_name") or "",
             "tier": f.cleaned_data["tier"]}
            for f in self.forms
            if f.cleaned_data and not f.cleaned_data.get("DELETE") and f.cleaned_data.get("model")
        ]

    def models_changed(self) -> bool:
        current = [] if self.instance._state.adding else sorted(
            self.instance.models.values_list("model", "display_name", "tier"))
        return sorted((m["model"], m["display_name"], m["tier"]) for m in self.models()) != current

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        plan = self.instance  # the plan form's values applied (ModelAdmin.save_form)
        adding = plan._state.adding
        values = _plan_values(plan) | {"models": self.models(), "platforms": []}
        problems = catalogue.ai_plan_check(values, plan_id=None if adding else plan.pk,
                                           models_changed=adding or self.models_changed())
        problems.pop("slug", None)  # shown by the plan form itself (format, and uniqueness)
        if problems:
            raise forms.ValidationError([f"{field}: {message}" for field, found in problems.items()
                                         for message in found])


class AIPlanModelInline(admin.TabularInline):
    model = AIPlanModel
    formset = AIPlanModelFormSet
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

    def get_readonly_fields(self, request, obj=None):  # noqa: ANN001, ANN201
        return ["slug"] if obj is not None else []  # fixed once created

    def has_delete_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False  # never deleted: retire it with is_active

    def save_model(self, request, obj, form, change):  # noqa: ANN001, ANN201
        pass  # written with its models and platforms by save_related, through the catalogue's services

    def construct_change_message(self, request, form, formsets, add=False):  # noqa: ANN001, ANN201
        message = super().construct_change_message(request, form, [], add)  # the inline is not saved by formsets
        if any(f.has_changed() for f in formsets):
            message.append({"changed": {"fields": ["models"]}})
        return message

    def save_related(self, request, form, formsets, change):  # noqa: ANN001, ANN201
        formset = next(f for f in formsets if isinstance(f, AIPlanModelFormSet))
        plan = form.instance
        values = {field: form.cleaned_data[field] for field in catalogue.PLAN_FIELDS if field in form.cleaned_data}
        platforms = [p.platform_key for p in form.cleaned_data.get("platforms", [])]
        if change:
            models = {"models": formset.models()} if formset.models_changed() else {}
            values.pop("slug", None)
            saved = catalogue.ai_plan_update(ai_plan_id=plan.pk, **values, **models, platforms=platforms,
                                             actor=request.user)
        else:
            saved = catalogue.ai_plan_create(**values, models=formset.models(), platforms=platforms,
                                             actor=request.user)
        for field in AIPlan._meta.concrete_fields:
            setattr(plan, field.attname, getattr(saved, field.attname))
        plan._state.adding = False


@admin.register(SeatSubscription)
class SeatSubscriptionAdmin(admin.ModelAdmin):
    list_display = ["platform", "ai_plan", "quantity", "status", "provider", "billing_cycle", "started_at", "ends_at",
                    "synced_at"]
    list_filter = ["provider", "status", "ai_plan"]
    search_fields = ["=provider_subscription_id", "platform__platform_key"]
    list_select_related = ["platform", "ai_plan"]
    readonly_fields = ["created_at", "updated_at", "synced_at"]

    def has_delete_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False


# --- seat assignments ------------------------------------------------------------------------------------------


class SeatAssignForm(forms.Form):
    platform = forms.ModelChoiceField(Platform.objects.order_by("platform_key"))
    ai_plan = forms.ModelChoiceField(AIPlan.objects.filter(is_active=True).order_by("slug"), label="AI plan")
    username = strict.TextField(max_length=150, help_text="A member of the platform without a seat there.")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        platform, plan = data.get("platform"), data.get("ai_plan")
        if platform and plan and not selectors.ai_plans_offered(platform=platform).filter(pk=plan.pk).exists():
            self.add_error("ai_plan", f"Not offered to the platform {platform.platform_key}.")
        return data


@admin.register(SeatAssignment)
class SeatAssignmentAdmin(admin.ModelAdmin):
    list_display = ["user", "platform", "ai_plan", "assigned_at", "assigned_by"]
    list_filter = ["ai_plan", "platform"]
    search_fields = ["user__username", "platform__platform_key"]
    list_select_related = ["user", "platform", "ai_plan", "assigned_by"]
    readonly_fields = ["platform", "ai_plan", "user", "assigned_at", "assigned_by"]
    actions = ["unassign_seats"]

    def has_change_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False  # a seat moves by freeing it and assigning another

    def has_delete_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False  # freed by the action below, through seat_unassign

    def has_unassign_permission(self, request) -> bool:  # noqa: ANN001
        return request.user.has_perm("entitlements.delete_seatassignment")

    @admin.action(description="Free the selected seats", permissions=["unassign"])
    def unassign_seats(self, request: HttpRequest, queryset) -> None:  # noqa: ANN001
        freed = 0
        for assignment in queryset.select_related("platform", "ai_plan", "user").order_by("pk"):
            try:
                seat_unassign(platform=assignment.platform, ai_plan=assignment.ai_plan,
                              username=assignment.user.get_username())
            except DomainError as exc:
                self.message_user(request, f"{assignment.user}: {exc.message}", messages.ERROR)
            else:
                freed += 1
        self.message_user(request, f"Freed {freed} seat(s).", messages.SUCCESS)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        """Assigns a seat through ``seat_assign``: its refusals (not a member, a seat already held, no seat left)
        come back on the form, and nothing is written."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = SeatAssignForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                assignment = seat_assign(platform=data["platform"], ai_plan=data["ai_plan"],
                                         username=data["username"], actor=request.user)
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                self.log_addition(request, assignment, [{"added": {}}])
                self.message_user(request, f"{data['username']} holds a seat on {data['ai_plan'].slug} "
                                           f"({data['platform'].platform_key}).", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:entitlements_seatassignment_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Assign a seat",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/entitlements/seatassignment/assign.html", context)


# --- budgets: read-only ----------------------------------------------------------------------------------------


@admin.register(SeatWindow)
class SeatWindowAdmin(ReadOnlyAdmin):
    list_display = ["user", "platform", "kind", "starts_at", "ends_at", "spent_display", "reserved_display"]
    list_filter = ["kind", "platform"]
    search_fields = ["user__username", "platform__platform_key"]
    list_select_related = ["user", "platform"]
    date_hierarchy = "starts_at"

    @admin.display(description="spent", ordering="spent")
    def spent_display(self, window: SeatWindow) -> str:
        return format_exact(window.spent)

    @admin.display(description="reserved", ordering="reserved")
    def reserved_display(self, window: SeatWindow) -> str:
        return format_exact(window.reserved)


@admin.register(SeatCharge)
class SeatChargeAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "user", "platform", "ai_plan", "kind", "spent_delta_display",
                    "reserved_delta_display", "model", "weekly_budget_display", "weekly_spent_after",
                    "session_spent_after"]
    list_filter = ["kind", "platform", "ai_plan"]
    search_fields = ["user__username", "=model", "=usage_event__request_id"]
    list_select_related = ["user", "platform", "ai_plan"]
    date_hierarchy = "created_at"

    @admin.display(description="spent", ordering="spent_delta")
    def spent_delta_display(self, charge: SeatCharge) -> str:
        return format_exact(charge.spent_delta)

    @admin.display(description="reserved", ordering="reserved_delta")
    def reserved_delta_display(self, charge: SeatCharge) -> str:
        return format_exact(charge.reserved_delta)

    @admin.display(description="weekly budget")
    def weekly_budget_display(self, charge: SeatCharge) -> str:
        return format_money(charge.weekly_budget)


@admin.register(AIPlanModel)
class AIPlanModelAdmin(ReadOnlyAdmin):
    """The models of every AI plan, for finding which plans offer a model; edited on their plan's page (checked
    and written with the plan by the catalogue's services)."""

    list_display = ["model", "display_name", "tier", "plan"]
    list_filter = ["tier", "plan"]
    search_fields = ["model", "display_name", "plan__slug", "plan__name"]
    list_select_related = ["plan"]
