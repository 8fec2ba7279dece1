"""The three surfaces in the OpenAPI schema and on /api/docs/: each under its own tag, every operation of the
documents there, and the schema generated without a warning."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

SURFACES = {
    "billing-service-api": "/api/v1/",
    "account-api": "/auth/account/",
    "entitlements-plans-api": ("/api/ai-entitlements", "/api/ai-plans", "/api/ai-subscriptions"),
}


@pytest.mark.parametrize(("tag", "prefix"), SURFACES.items())
def test_each_surface_has_its_own_tag(schema, tag, prefix):
    tagged = {(path, method) for path, item in schema["paths"].items() for method, op in item.items()
              if op.get("tags") == [tag]}
    under = {(path, method) for path, item in schema["paths"].items() for method in item
             if path.startswith(prefix)}

    assert tagged and tagged == under


def test_the_docs_page_serves_the_schema(schema):
    page = APIClient().get("/api/docs/")

    assert page.status_code == 200 and b"swagger" in page.content.lower()
    assert {"billing-service-api", "account-api", "entitlements-plans-api"} <= {
        tag for item in schema["paths"].values() for op in item.values() for tag in op.get("tags", [])}


def test_the_schema_validates_without_warnings(capsys):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")
