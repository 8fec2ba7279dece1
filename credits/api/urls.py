from django.urls import path

from credits.api.usage_views import UsageViewSet
from credits.api.views import (
    CreditAccountViewSet,
    LedgerEntryViewSet,
    ManualAdjustmentViewSet,
    PlatformLedgerEntryViewSet,
)

urlpatterns = [
    path("account/", CreditAccountViewSet.as_view({"get": "retrieve"}), name="billing-account"),
    path("transactions/", LedgerEntryViewSet.as_view({"get": "list"}), name="billing-transactions"),
    path(
        "admin/credits/manual/",
        ManualAdjustmentViewSet.as_view({"post": "create"}),
        name="billing-admin-credits-manual",
    ),
    path(
        "admin/credits/transactions/",
        PlatformLedgerEntryViewSet.as_view({"get": "list"}),
        name="billing-admin-credits-transactions",
    ),
    path("usage/", UsageViewSet.as_view({"post": "create"}), name="billing-usage"),
    path("usage/batch/", UsageViewSet.as_view({"post": "batch"}), name="billing-usage-batch"),
]
