from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from billing_service.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("api/billing/", include("credits.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("admin/", admin.site.urls),
]

handler400 = "billing_service.exceptions.handler400"
handler403 = "billing_service.exceptions.handler403"
handler404 = "billing_service.exceptions.handler404"
handler500 = "billing_service.exceptions.handler500"
