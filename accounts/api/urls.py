from accounts.api.page_link_views import PageLinkViewSet
from accounts.api.token_views import AdminTokenViewSet, TokenViewSet
from accounts.api.webhook_views import WebhookDeliveryViewSet, WebhookEndpointViewSet
from billing_service.routers import BillingRouter

router = BillingRouter()
# Outbound webhooks of the platform (owners and admins).
router.register("admin/webhook-endpoints", WebhookEndpointViewSet, "billing-admin-webhook-endpoints",
                item_name="billing-admin-webhook-endpoint")
router.register("admin/webhook-deliveries", WebhookDeliveryViewSet, "billing-admin-webhook-deliveries",
                item_name="billing-admin-webhook-delivery")

# Sign-in links to the billing page (owners and admins).
router.register("admin/page-links", PageLinkViewSet, "billing-admin-page-links")

# API tokens: the caller's own, and (owners and admins) every one usable in the platform.
router.register("tokens", TokenViewSet, "billing-tokens", item_name="billing-token")
router.register("admin/tokens", AdminTokenViewSet, "billing-admin-tokens", item_name="billing-admin-token")

urlpatterns = router.urls
