from django.urls import path

from payments.api.views import CheckoutViewSet, OrderViewSet, StripeWebhookView

urlpatterns = [
    path("checkout/", CheckoutViewSet.as_view({"post": "create"}), name="billing-checkout"),
    path("orders/", OrderViewSet.as_view({"get": "list"}), name="billing-orders"),
    path("orders/<str:order_id>/", OrderViewSet.as_view({"get": "retrieve"}), name="billing-order"),
    path("webhooks/stripe/", StripeWebhookView.as_view(), name="billing-webhooks-stripe"),
]
