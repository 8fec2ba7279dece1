"""What the surfaces' tests share."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient


@pytest.fixture(scope="module")
def schema(django_db_blocker) -> dict:  # noqa: ANN001
    """The OpenAPI document as /api/schema/ serves it."""
    with django_db_blocker.unblock():
        response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()
