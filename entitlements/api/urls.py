from billing_service.routers import BillingRouter
from entitlements.api.views import AIPlanViewSet, EntitlementsViewSet, MyEntitlementViewSet

router = BillingRouter()
# Exact paths: "entitlements/" leaves "entitlements/refresh/" (payments) and "entitlements/me/" to their views.
router.register_singleton("entitlements", EntitlementsViewSet, "billing-entitlements")
router.register_singleton("entitlements/me", MyEntitlementViewSet, "billing-entitlements-me")
router.register("ai-plans", AIPlanViewSet, "billing-ai-plans", item_name="billing-ai-plan")

urlpatterns = router.urls
