from django.urls import path

from payments.api.account_views import AccountSummaryViewSet, CreditAccountViewSet
from payments.api.creem_views import CreemWebhookView
from payments.api.payment_method_views import PaymentMethodViewSet
from payments.api.views import CheckoutViewSet, OrderViewSet, PortalViewSet, StripeWebhookView

urlpatterns = [
    # The caller's account (credits, plan, auto-recharge): composed here, the highest layer it needs.
    path("account/", CreditAccountViewSet.as_view({"get": "retrieve", "patch": "partial_update"}), name="billing-account"),
    path("summary/", AccountSummaryViewSet.as_view({"get": "retrieve"}), name="billing-summary"),
    path("checkout/", CheckoutViewSet.as_view({"post": "create"}), name="billing-checkout"),
    path("portal/", PortalViewSet.as_view({"post": "create"}), name="billing-portal"),
    path(
        "payment-method/",
        PaymentMethodViewSet.as_view({"get": "retrieve", "post": "create", "delete": "destroy"}),
        name="billing-payment-method",
    ),
    path("orders/", OrderViewSet.as_view({"get": "list"}), name="billing-orders"),
    path("orders/<str:order_id>/", OrderViewSet.as_view({"get": "retrieve"}), name="billing-order"),
    path("webhooks/stripe/", StripeWebhookView.as_view(), name="billing-webhooks-stripe"),
    path("webhooks/creem/", CreemWebhookView.as_view(), name="billing-webhooks-creem"),
]
