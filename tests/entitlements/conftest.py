from __future__ import annotations

from decimal import Decimal

import pytest

from entitlements.models import AIPlan, Tier


def make_ai_plan(slug: str = "advanced", tier: str = Tier.ADVANCED, **fields: object) -> AIPlan:
    values = {"name": slug.title(), "weekly_budget": Decimal("2.00"), "session_budget": Decimal("0.40"),
              "price_per_seat_cents": 2500} | fields
    return AIPlan.objects.create(slug=slug, tier=tier, **values)


@pytest.fixture
def ai_plan(db) -> AIPlan:  # noqa: ANN001
    return make_ai_plan()
