from django.urls import path

from credits.api.metering_views import ModelPriceViewSet, UsageStatsViewSet
from credits.api.reservation_views import ReservationViewSet
from credits.api.usage_views import UsageViewSet
from credits.api.views import (
    LedgerEntryViewSet,
    ManualAdjustmentViewSet,
    PlatformLedgerEntryViewSet,
)

urlpatterns = [
    # The caller's account and ledger.
    path("transactions/", LedgerEntryViewSet.as_view({"get": "list"}), name="billing-transactions"),
    path("usage/stats/", UsageStatsViewSet.as_view({"get": "retrieve"}), name="billing-usage-stats"),
    # Metering, from the platform's backend.
    path("usage/", UsageViewSet.as_view({"post": "create"}), name="billing-usage"),
    path("usage/batch/", UsageViewSet.as_view({"post": "batch"}), name="billing-usage-batch"),
    path(
        "reservations/", ReservationViewSet.as_view({"get": "list", "post": "create"}), name="billing-reservations"
    ),
    path("reservations/<str:hold_id>/", ReservationViewSet.as_view({"get": "retrieve"}), name="billing-reservation"),
    path(
        "reservations/<str:hold_id>/capture/",
        ReservationViewSet.as_view({"post": "capture"}),
        name="billing-reservation-capture",
    ),
    path(
        "reservations/<str:hold_id>/release/",
        ReservationViewSet.as_view({"post": "release"}),
        name="billing-reservation-release",
    ),
    # Platform administration.
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
    path("admin/models/", ModelPriceViewSet.as_view({"get": "list", "post": "create"}), name="billing-admin-models"),
    # ``path``: model names may contain "/" (meta-llama/Llama-3-70b).
    path("admin/models/<path:model>/", ModelPriceViewSet.as_view({"get": "retrieve"}), name="billing-admin-model"),
]
