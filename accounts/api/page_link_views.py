"""``admin/page-links/``: a single-use sign-in link to the billing page for a member of the platform (owners and
admins: the platform's backend mints one and redirects its user there, so nobody signs in twice)."""

from __future__ import annotations

from django.urls import reverse
from django.utils import timezone
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.views import IsPlatformAdmin, TenantGenericViewSet
from accounts.services import sign_in_link_create
from billing_service.inputs import StrictInputSerializer, TextField
from billing_service.schema import ERROR_RESPONSES, error_response, extend_schema
from billing_service.validation import validated


class PageLinkInputSerializer(StrictInputSerializer):
    username = TextField(max_length=150, blank=False, help_text="The member the link signs in.")


class PageLinkSerializer(serializers.Serializer):
    url = serializers.URLField(help_text="Open it once, before expires_at: it signs the member in and shows the "
                                         "billing page.")
    expires_at = serializers.DateTimeField()


class PageLinkViewSet(TenantGenericViewSet):
    """A sign-in link to the billing page (`/billing/`) for a member of your platform."""

    permission_classes = [IsAuthenticated, IsPlatformAdmin]
    serializer_class = PageLinkSerializer

    @extend_schema(
        operation_id="billing_admin_page_links_create",
        summary="A single-use sign-in link to the billing page for a member (owners and admins)",
        description="The link signs the member in (a session cookie) and lands on `/billing/`. It works once, "
        "within `SIGN_IN_LINK_MINUTES` (5); a used or expired link is refused, and so is one whose member has "
        "left the platform since.",
        request=PageLinkInputSerializer,
        responses={201: PageLinkSerializer, **ERROR_RESPONSES,
                   404: error_response("No member of the platform has that username (member_not_found).")},
        tags=["billing page"],
    )
    def create(self, request: Request) -> Response:
        data = validated(PageLinkInputSerializer, request.data)
        link, token = sign_in_link_create(platform=self.tenant.platform, username=data["username"],
                                          actor=request.user, now=timezone.now())
        url = request.build_absolute_uri(reverse("billing-page-sign-in", kwargs={"token": token}))
        return Response(PageLinkSerializer({"url": url, "expires_at": link.expires_at}).data,
                        status=status.HTTP_201_CREATED)
