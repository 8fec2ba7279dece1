from django.urls import path

from subscriptions.api.views import AdminPlanViewSet, PlanViewSet, SubscriptionViewSet

urlpatterns = [
    path("plans/", PlanViewSet.as_view({"get": "list"}), name="billing-plans"),
    path("subscription/", SubscriptionViewSet.as_view({"get": "retrieve"}), name="billing-subscription"),
    path(
        "admin/plans/",
        AdminPlanViewSet.as_view({"get": "list", "post": "create"}),
        name="billing-admin-plans",
    ),
    path(
        "admin/plans/<str:plan_id>/",
        AdminPlanViewSet.as_view({"get": "retrieve", "put": "update", "patch": "partial_update"}),
        name="billing-admin-plan",
    ),
]
