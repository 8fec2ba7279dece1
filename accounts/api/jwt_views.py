"""``/api/auth/jwt/``: obtain, refresh and verify JWT Bearer tokens scoped to one platform (``accounts.jwt``).

These endpoints take no credentials but the body's: a Token or Bearer header is ignored. Only a failed login writes
(``accounts.models.LoginFailure``, what the brute-force limits count)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.tokens import RefreshToken, UntypedToken

from accounts.jwt import access_token_issue, token_holder, token_pair_issue, token_parse
from accounts.services import client_address, login_failure_record, login_failures_check
from accounts.tenancy import tenant_resolve
from accounts.throttles import AddressRateThrottle
from billing_service.inputs import StrictInputSerializer, TextField
from billing_service.schema import BODY_RESPONSES, SERVICE_RESPONSES, error_response, extend_schema

TOKEN_MAX_LENGTH = 4096


class TokenObtainInputSerializer(StrictInputSerializer):
    username = TextField(max_length=150, blank=False)
    password = TextField(max_length=1024, blank=False)
    platform_key = TextField(
        max_length=63, blank=False, required=False,
        help_text="The platform the tokens act in; needed when you belong to several.",
    )


class TokenRefreshInputSerializer(StrictInputSerializer):
    refresh = TextField(max_length=TOKEN_MAX_LENGTH, blank=False)


class TokenVerifyInputSerializer(StrictInputSerializer):
    token = TextField(max_length=TOKEN_MAX_LENGTH, blank=False, help_text="An access or a refresh token.")


TokenPairSerializer = inline_serializer(
    name="TokenPair",
    fields={
        "access": serializers.CharField(help_text="Send as `Authorization: Bearer <access>`; short-lived."),
        "refresh": serializers.CharField(help_text="Exchange at /api/auth/jwt/refresh/ for a new access token."),
    },
)
AccessTokenSerializer = inline_serializer(
    name="AccessToken", fields={"access": serializers.CharField(help_text="A new access token.")}
)
# An empty JSON object (a raw schema: drf-spectacular documents a serializer without fields as no body).
EMPTY_OBJECT = {"type": "object", "properties": {}, "additionalProperties": False}

_COMMON = {
    400: error_response("Invalid input (the fields are named in details)."),
    401: error_response("Bad credentials or token (authentication_failed): the user is unknown or inactive, or "
                        "no longer a member of the token's platform, or the token is invalid or expired."),
    **SERVICE_RESPONSES,
    **BODY_RESPONSES,
}


class _AuthView(APIView):
    authentication_classes: list = []  # the body holds the credentials
    permission_classes = [AllowAny]
    throttle_classes = [AddressRateThrottle]  # RATE_LIMITS["auth"] per client address
    throttle_scope = "auth"
    tenant_scoped = False

    def get_authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="api"'  # a 401, not DRF's 403 for a view without authentication classes

    @staticmethod
    def _input(serializer_class: type[serializers.Serializer], request: Any) -> dict[str, Any]:
        serializer = serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


class TokenObtainView(_AuthView):
    @extend_schema(
        operation_id="auth_jwt_obtain",
        summary="Obtain a JWT pair for one platform",
        description=(
            "Exchanges a username and password for an access and a refresh token, both scoped to one platform: "
            "`platform_key`, or the user's only platform. Failed logins are counted per username and per client "
            "address: past `JWT_LOGIN_FAILURES_PER_USERNAME` (10) or `JWT_LOGIN_FAILURES_PER_IP` (100) in "
            "`JWT_LOGIN_WINDOW_MINUTES` (15), a 429 `login_attempts_exceeded` with `Retry-After`, and the password "
            "is not checked."
        ),
        request=TokenObtainInputSerializer,
        responses={
            200: TokenPairSerializer,
            **_COMMON,
            400: error_response("Invalid input, or platform_ambiguous: you belong to several platforms, name one "
                                "with platform_key."),
            403: error_response("not_a_member: you are not a member of that platform (no token is issued)."),
            404: error_response("platform_not_found: an operator named a platform that does not exist."),
            429: error_response("login_attempts_exceeded: too many failed logins for this username or from this "
                                "address; Retry-After says when to try again."),
        },
        examples=[OpenApiExample("Request", request_only=True,
                                 value={"username": "alice", "password": "s3cret", "platform_key": "acme"})],
        auth=[],
    )
    def post(self, request: Any) -> Response:
        data = self._input(TokenObtainInputSerializer, request)
        ip, now = client_address(request.META), timezone.now()
        login_failures_check(username=data["username"], ip=ip, now=now)
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if user is None or not user.is_active:
            login_failure_record(username=data["username"], ip=ip, now=now)
            raise exceptions.AuthenticationFailed("No active account found with the given credentials.")
        tenant = tenant_resolve(user=user, platform_key=data.get("platform_key"))
        return Response(token_pair_issue(user=user, platform=tenant.platform))


class TokenRefreshView(_AuthView):
    @extend_schema(
        operation_id="auth_jwt_refresh",
        summary="Exchange a refresh token for a new access token",
        description=(
            "A new access token for the refresh token's user and platform, while the user is active and still a "
            "member of the platform. The refresh token is not rotated: it stays valid until it expires."
        ),
        request=TokenRefreshInputSerializer,
        responses={200: AccessTokenSerializer, **_COMMON},
        auth=[],
    )
    def post(self, request: Any) -> Response:
        data = self._input(TokenRefreshInputSerializer, request)
        refresh = token_parse(data["refresh"], RefreshToken)
        token_holder(refresh)
        return Response(access_token_issue(refresh=refresh))


class TokenVerifyView(_AuthView):
    @extend_schema(
        operation_id="auth_jwt_verify",
        summary="Check that a token would be accepted",
        description=(
            "200 with an empty object when the token (access or refresh) is valid, unexpired, and its user is "
            "active and still a member of its platform; 401 otherwise."
        ),
        request=TokenVerifyInputSerializer,
        responses={200: OpenApiResponse(EMPTY_OBJECT, description="The token would be accepted."), **_COMMON},
        auth=[],
    )
    def post(self, request: Any) -> Response:
        data = self._input(TokenVerifyInputSerializer, request)
        token_holder(token_parse(data["token"], UntypedToken))
        return Response({})
