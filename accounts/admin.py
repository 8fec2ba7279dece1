from django.contrib import admin, messages

from accounts.models import ApiToken, LoginFailure, Membership, Platform, RateCounter, SignInLink
from billing_service.admin_base import ReadOnlyAdmin
from billing_service.db_router import LaggingChangelistMixin
from accounts.services import api_token_revoke, membership_saved, platform_create


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]
    show_change_link = True

    def has_delete_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False  # a member with a ledger stays; change the role instead


@admin.register(Platform)
class PlatformAdmin(LaggingChangelistMixin, admin.ModelAdmin):  # its list may lag (README, "Read replicas")
    list_display = ["platform_key", "name", "member_count", "created_at"]
    search_fields = ["platform_key", "name"]
    date_hierarchy = "created_at"
    inlines = [MembershipInline]

    def get_readonly_fields(self, request, obj=None):  # noqa: ANN001, ANN201
        return ["platform_key", "created_at"] if obj else ["created_at"]

    @admin.display(description="members")
    def member_count(self, platform: Platform) -> int:
        return platform.memberships.count()

    def save_model(self, request, obj, form, change):  # noqa: ANN001, ANN201
        if change:
            super().save_model(request, obj, form, change)
        else:  # through the service: the platform gets its own credit account
            created, _ = platform_create(platform_key=obj.platform_key, name=obj.name)
            obj.pk = created.pk

    def save_formset(self, request, form, formset, change):  # noqa: ANN001, ANN201
        for membership in formset.save():
            membership_saved(membership=membership)

    def has_delete_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False


@admin.register(Membership)
class MembershipAdmin(LaggingChangelistMixin, admin.ModelAdmin):  # its list may lag
    list_display = ["user", "platform", "role", "created_at"]
    list_filter = ["role", "platform"]
    search_fields = ["user__username", "user__email", "platform__platform_key"]
    raw_id_fields = ["user"]
    list_select_related = ["user", "platform"]

    def save_model(self, request, obj, form, change):  # noqa: ANN001, ANN201
        super().save_model(request, obj, form, change)
        membership_saved(membership=obj)

    def has_delete_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False


@admin.register(LoginFailure)
class LoginFailureAdmin(ReadOnlyAdmin):
    """Failed password logins (POST /api/auth/jwt/), what the brute-force limits count; older than the window, a
    username's rows go with its next failure."""

    list_display = ["created_at", "username", "ip"]
    search_fields = ["username", "ip"]
    date_hierarchy = "created_at"

    def has_delete_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return request.user.is_superuser  # deleting a username's failures lifts its limit now


@admin.register(SignInLink)
class SignInLinkAdmin(ReadOnlyAdmin):
    """Sign-in links to the billing page (POST /api/billing/admin/page-links/): who, for whom, until when, used or
    not (the token itself is never kept)."""

    list_display = ["created_at", "user", "platform", "created_by", "expires_at", "used_at"]
    list_filter = ["platform"]
    search_fields = ["user__username", "platform__platform_key"]
    list_select_related = ["user", "platform", "created_by"]
    exclude = ["token_hash"]


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """API tokens: whose, scoped to which platform, used when, revoked or not (only the key's SHA-256 is kept, so no
    key can be shown). Revoke with the action; issue with ``manage.py api_token issue`` or the API."""

    list_display = ["prefix", "name", "user", "platform", "created_at", "expires_at", "revoked_at"]
    list_filter = ["platform", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "name", "user__username", "platform__platform_key"]
    list_select_related = ["user", "platform"]
    exclude = ["digest"]
    actions = ["revoke"]

    def has_revoke_permission(self, request) -> bool:  # noqa: ANN001
        return request.user.has_perm("accounts.change_apitoken")

    @admin.action(description="Revoke the selected tokens", permissions=["revoke"])
    def revoke(self, request, queryset):  # noqa: ANN001, ANN201
        revoked = sum(api_token_revoke(token=token) for token in queryset)
        self.message_user(request, f"{revoked} token(s) revoked.", messages.SUCCESS)


@admin.register(RateCounter)
class RateCounterAdmin(ReadOnlyAdmin):
    """Requests counted by the public endpoints' rate limits (accounts.throttles), per scope and client address and
    window: who is being throttled now. Closed windows are deleted as new ones open."""

    list_display = ["key", "window_start", "count"]
    search_fields = ["key"]
    ordering = ["-window_start", "-count"]


# Outbound webhooks' pages (their own module).
from accounts.outbound_admin import OutboundDeliveryAdmin, OutboundEventAdmin, WebhookEndpointAdmin  # noqa: E402, F401
