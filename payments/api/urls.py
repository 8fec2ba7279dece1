from django.urls import path

from billing_service.routers import BillingRouter
from payments.api.account_views import AccountSummaryViewSet, CreditAccountViewSet
from payments.api.coupon_views import AdminCouponViewSet, CouponRedeemViewSet
from payments.api.payment_method_views import PaymentMethodViewSet
from payments.api.seat_views import EntitlementsRefreshViewSet, SeatSubscriptionViewSet
from payments.api.views import (
    WEBHOOK_ENDPOINTS,
    CheckoutViewSet,
    OrderViewSet,
    PortalViewSet,
    ProviderWebhookView,
)

router = BillingRouter()
# The caller's account (credits, plan, auto-recharge): composed here, the highest layer it needs.
router.register_singleton("account", CreditAccountViewSet, "billing-account")
router.register_singleton("summary", AccountSummaryViewSet, "billing-summary")
router.register("checkout", CheckoutViewSet, "billing-checkout")
router.register("portal", PortalViewSet, "billing-portal")
router.register_singleton("payment-method", PaymentMethodViewSet, "billing-payment-method")
router.register("orders", OrderViewSet, "billing-orders", item_name="billing-order")
# Seats on AI plans, where they need Stripe (the rest of seats is the entitlements app's API). The refresh is a
# path of its own under entitlements/: this app's URLs are included before the entitlements app's.
router.register("ai-subscriptions", SeatSubscriptionViewSet, "billing-ai-subscriptions",
                item_name="billing-ai-subscription")
router.register_singleton("entitlements/refresh", EntitlementsRefreshViewSet, "billing-entitlements-refresh")
# Coupons: the platform's (owners and admins), and redeeming a credits coupon (members).
router.register("admin/coupons", AdminCouponViewSet, "billing-admin-coupons", item_name="billing-admin-coupon")
router.register_singleton("coupons/redeem", CouponRedeemViewSet, "billing-coupons-redeem")

urlpatterns = [
    *router.urls,
    # One webhook view, routed once per provider (its signature check and documentation: WEBHOOK_ENDPOINTS).
    *(
        path(f"webhooks/{provider}/", ProviderWebhookView.as_view(provider=provider),
             name=f"billing-webhooks-{provider}")
        for provider in WEBHOOK_ENDPOINTS
    ),
]
