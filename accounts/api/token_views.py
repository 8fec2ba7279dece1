"""API tokens (``Authorization: Token <key>``; only their SHA-256 is stored, so a key is shown once, when issued).

``tokens/``: the caller's own tokens usable in their platform; issue one (scoped to that platform), revoke one.
``admin/tokens/``: owners and admins see every token usable in their platform (scoped to it, or unscoped of one of
its members), issue one for a member (scoped to the platform) and revoke any of them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from rest_framework import serializers, status
from rest_framework.mixins import ListModelMixin
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.views import IsPlatformAdmin, TenantGenericViewSet
from accounts.errors import ApiTokenNotFound, MemberNotFound
from accounts.models import ApiToken, Platform
from accounts.services import IssuedToken, api_token_issue, api_token_revoke
from billing_service.inputs import QueryBooleanField, StrictIntegerField, StrictInputSerializer, TextField
from billing_service.pagination import CountedPagination
from billing_service.schema import ERROR_RESPONSES, error_response, extend_schema, paginated
from billing_service.validation import validated

TAGS = ["API tokens"]
MAX_TOKEN_DAYS = 3650


class TokenInputSerializer(StrictInputSerializer):
    name = TextField(max_length=100, required=False, default="", help_text="What the token is for.")
    expires_in_days = StrictIntegerField(
        min_value=1, max_value=MAX_TOKEN_DAYS, required=False, allow_null=True, default=None,
        help_text="Days until the token stops working; omitted or null: it does not expire.",
    )


class AdminTokenInputSerializer(TokenInputSerializer):
    username = TextField(max_length=150, blank=False, help_text="The member the token acts as.")


class TokenListQuerySerializer(serializers.Serializer):
    active = QueryBooleanField(required=False, allow_null=True, default=None, help_text="true: only tokens neither revoked nor expired; false: only "
                                                         "the others.")


class AdminTokenListQuerySerializer(TokenListQuerySerializer):
    username = serializers.CharField(required=False, max_length=150, help_text="Only this member's tokens.")


class TokenSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="The key's first 8 characters (the key itself is never shown again).")
    username = serializers.CharField(source="user.username")
    platform_key = serializers.SerializerMethodField(help_text="The platform it is scoped to; null: any platform "
                                                               "its user belongs to.")
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    active = serializers.SerializerMethodField(help_text="Neither revoked nor expired.")

    def get_platform_key(self, token: ApiToken) -> str | None:
        return token.platform.platform_key if token.platform_id else None

    def get_active(self, token: ApiToken) -> bool:
        return token.revoked_at is None and (token.expires_at is None or token.expires_at > timezone.now())


TOKEN_PAGE = paginated(TokenSerializer, "PaginatedApiTokenList")


class IssuedTokenSerializer(TokenSerializer):
    key = serializers.CharField(help_text="The key (`Authorization: Token <key>`): shown this once, keep it safe.")


def _live() -> Q:
    return Q(revoked_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))


def tokens_usable_in(platform: Platform) -> QuerySet[ApiToken]:
    """Tokens that act in ``platform``: scoped to it, or unscoped of one of its members; newest first."""
    return (ApiToken.objects.filter(Q(platform=platform) | Q(platform__isnull=True, user__memberships__platform=platform))
            .select_related("user", "platform").order_by("-created_at", "-id"))


def _issued_response(issued: IssuedToken, *, location: str) -> Response:
    body = {**TokenSerializer(issued.token).data, "key": issued.key}  # IssuedTokenSerializer's shape
    return Response(body, status=status.HTTP_201_CREATED, headers={"Location": location})


def _expiry(data: dict[str, Any], now: Any) -> Any:
    days = data.get("expires_in_days")
    return now + timedelta(days=days) if days else None


class _TokenViewSet(ListModelMixin, TenantGenericViewSet):
    serializer_class = TokenSerializer
    pagination_class = CountedPagination
    lookup_url_kwarg = "token_id"
    list_query = TokenListQuerySerializer

    def tokens(self) -> QuerySet[ApiToken]:
        raise NotImplementedError

    def get_queryset(self) -> QuerySet[ApiToken]:
        query = validated(self.list_query, self.request.query_params)
        rows = self.tokens()
        if query.get("active") is not None:
            rows = rows.filter(_live()) if query["active"] else rows.exclude(_live())
        if "username" in query:
            rows = rows.filter(user__username=query["username"])
        return rows

    def get_object(self) -> ApiToken:
        raw = self.kwargs[self.lookup_url_kwarg]
        known = raw.isascii() and raw.isdigit() and len(raw) < 19  # a bigint
        token = self.tokens().filter(pk=int(raw)).first() if known else None
        if token is None:
            raise ApiTokenNotFound()
        return token

    def retrieve(self, request: Request, token_id: str) -> Response:
        return Response(TokenSerializer(self.get_object()).data)

    def destroy(self, request: Request, token_id: str) -> Response:
        api_token_revoke(token=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenViewSet(_TokenViewSet):
    """Your API tokens usable in this platform (scoped to it, or unscoped). A token you issue here is scoped to this
    platform: it acts in no other, whatever you belong to."""

    permission_classes = [IsAuthenticated]

    def tokens(self) -> QuerySet[ApiToken]:
        return tokens_usable_in(self.tenant.platform).filter(user=self.request.user)

    @extend_schema(operation_id="billing_tokens_list", summary="Your API tokens", parameters=[TokenListQuerySerializer],
                   responses={200: TOKEN_PAGE, **ERROR_RESPONSES}, tags=TAGS)
    def list(self, request: Request) -> Response:
        return super().list(request)

    @extend_schema(operation_id="billing_tokens_create", summary="Issue an API token for yourself (shown once)",
                   request=TokenInputSerializer, responses={201: IssuedTokenSerializer, **ERROR_RESPONSES}, tags=TAGS)
    def create(self, request: Request) -> Response:
        data = validated(TokenInputSerializer, request.data)
        now = timezone.now()
        issued = api_token_issue(user=request.user, platform=self.tenant.platform, name=data["name"],
                                 expires_at=_expiry(data, now), actor=request.user, now=now)
        return _issued_response(issued, location=reverse("billing-token", kwargs={"token_id": issued.token.pk}))

    @extend_schema(operation_id="billing_tokens_retrieve", summary="One of your API tokens",
                   responses={200: TokenSerializer, **ERROR_RESPONSES}, tags=TAGS)
    def retrieve(self, request: Request, token_id: str) -> Response:
        return super().retrieve(request, token_id)

    @extend_schema(operation_id="billing_tokens_destroy",
                   summary="Revoke one of your API tokens (from its next use on; revoking twice is no error)",
                   responses={204: None, **ERROR_RESPONSES}, tags=TAGS)
    def destroy(self, request: Request, token_id: str) -> Response:
        return super().destroy(request, token_id)


class AdminTokenViewSet(_TokenViewSet):
    """Every API token usable in your platform (owners and admins): scoped to it, or unscoped of one of its
    members (revoking an unscoped token ends it everywhere). A token issued here is scoped to your platform."""

    permission_classes = [IsAuthenticated, IsPlatformAdmin]
    list_query = AdminTokenListQuerySerializer

    def tokens(self) -> QuerySet[ApiToken]:
        return tokens_usable_in(self.tenant.platform)

    @extend_schema(operation_id="billing_admin_tokens_list", summary="API tokens usable in your platform",
                   parameters=[AdminTokenListQuerySerializer],
                   responses={200: TOKEN_PAGE, **ERROR_RESPONSES}, tags=TAGS)
    def list(self, request: Request) -> Response:
        return super().list(request)

    @extend_schema(
        operation_id="billing_admin_tokens_create", summary="Issue an API token for a member (shown once)",
        request=AdminTokenInputSerializer,
        responses={201: IssuedTokenSerializer, **ERROR_RESPONSES,
                   404: error_response("No active member of the platform has that username (member_not_found).")},
        tags=TAGS,
    )
    def create(self, request: Request) -> Response:
        data = validated(AdminTokenInputSerializer, request.data)
        platform = self.tenant.platform
        user = get_user_model().objects.filter(username=data["username"], is_active=True,
                                               memberships__platform=platform).first()
        if user is None:
            raise MemberNotFound(details={"username": data["username"]})
        now = timezone.now()
        issued = api_token_issue(user=user, platform=platform, name=data["name"], expires_at=_expiry(data, now),
                                 actor=request.user, now=now)
        return _issued_response(issued, location=reverse("billing-admin-token", kwargs={"token_id": issued.token.pk}))

    @extend_schema(operation_id="billing_admin_tokens_retrieve", summary="An API token usable in your platform",
                   responses={200: TokenSerializer, **ERROR_RESPONSES}, tags=TAGS)
    def retrieve(self, request: Request, token_id: str) -> Response:
        return super().retrieve(request, token_id)

    @extend_schema(operation_id="billing_admin_tokens_destroy", summary="Revoke an API token usable in your platform",
                   responses={204: None, **ERROR_RESPONSES}, tags=TAGS)
    def destroy(self, request: Request, token_id: str) -> Response:
        return super().destroy(request, token_id)
