from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from billing_service.health import healthz, readyz
from billing_service.metrics import metrics_view

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),  # Prometheus, behind METRICS_TOKEN (billing_service/metrics.py)
    path("api/auth/", include("accounts.api.jwt_urls")),  # JWT Bearer tokens (obtain, refresh, verify)
    path("api/billing/", include("accounts.api.urls")),
    path("api/billing/", include("credits.api.urls")),
    path("api/billing/", include("subscriptions.api.urls")),
    path("api/billing/", include("payments.api.urls")),
    path("api/billing/", include("entitlements.api.urls")),
    # Drop-in surfaces of the other published billing APIs (payments/surfaces/).
    path(settings.BILLING_V1_PREFIX, include("payments.surfaces.billing_v1")),
    path("auth/account/", include("payments.surfaces.account_api")),
    path("api/", include("payments.surfaces.entitlements_plans")),
    # The billing page (payments/surfaces/billing_page.py): HTML over the same native views.
    path("billing/", include("payments.surfaces.billing_page")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("admin/", admin.site.urls),
]

if settings.BENCH_ENDPOINTS:  # baselines: bench/usage_http.py (token auth), bench/webhooks.py (Stripe signature)
    from billing_service.bench_views import noop
    from payments.api.bench_views import webhook_baseline, webhook_verify

    urlpatterns.append(path("api/bench/noop/", noop, name="bench-noop"))
    urlpatterns.append(path("api/bench/webhook-verify/", webhook_verify, name="bench-webhook-verify"))
    urlpatterns.append(path("api/bench/webhook-baseline/", webhook_baseline, name="bench-webhook-baseline"))

handler400 = "billing_service.exceptions.handler400"
handler403 = "billing_service.exceptions.handler403"
handler404 = "billing_service.exceptions.handler404"
handler500 = "billing_service.exceptions.handler500"
