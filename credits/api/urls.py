from billing_service.routers import BillingRouter
from credits.api.alert_views import BalanceAlertsViewSet
from credits.api.checkin_views import CheckinConfigViewSet, CheckinViewSet
from credits.api.metering_views import ModelPriceViewSet, UsageStatsViewSet
from credits.api.reservation_views import ReservationViewSet
from credits.api.usage_views import UsageViewSet
from credits.api.views import LedgerEntryViewSet, ManualAdjustmentViewSet, PlatformLedgerEntryViewSet

router = BillingRouter()
# The caller's account and ledger.
router.register("transactions", LedgerEntryViewSet, "billing-transactions")
router.register_singleton("usage/stats", UsageStatsViewSet, "billing-usage-stats")
router.register_singleton("checkin", CheckinViewSet, "billing-checkin")
# Metering, from the platform's backend.
router.register("usage", UsageViewSet, "billing-usage")
router.register("reservations", ReservationViewSet, "billing-reservations", item_name="billing-reservation")
# Platform administration.
router.register("admin/credits/manual", ManualAdjustmentViewSet, "billing-admin-credits-manual")
router.register(
    "admin/credits/transactions", PlatformLedgerEntryViewSet, "billing-admin-credits-transactions"
)
router.register_singleton("admin/checkin/config", CheckinConfigViewSet, "billing-admin-checkin-config")
router.register_singleton("admin/balance-alerts", BalanceAlertsViewSet, "billing-admin-balance-alerts")
router.register("admin/models", ModelPriceViewSet, "billing-admin-models", item_name="billing-admin-model")

urlpatterns = router.urls
