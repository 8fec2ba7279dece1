from billing_service.routers import BillingRouter
from subscriptions.api.views import AdminPlanViewSet, PlanViewSet, SubscriptionViewSet

router = BillingRouter()
router.register("plans", PlanViewSet, "billing-plans")
router.register_singleton("subscription", SubscriptionViewSet, "billing-subscription")
router.register("admin/plans", AdminPlanViewSet, "billing-admin-plans", item_name="billing-admin-plan")

urlpatterns = router.urls
