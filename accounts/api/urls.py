from accounts.api.page_link_views import PageLinkViewSet
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

urlpatterns = router.urls
