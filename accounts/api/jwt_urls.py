"""``/api/auth/``: JWT Bearer tokens (``accounts.api.jwt_views``)."""

from django.urls import path

from accounts.api.jwt_views import TokenObtainView, TokenRefreshView, TokenVerifyView

urlpatterns = [
    path("jwt/", TokenObtainView.as_view(), name="auth-jwt-obtain"),
    path("jwt/refresh/", TokenRefreshView.as_view(), name="auth-jwt-refresh"),
    path("jwt/verify/", TokenVerifyView.as_view(), name="auth-jwt-verify"),
]
