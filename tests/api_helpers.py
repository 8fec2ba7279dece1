"""Assertions shared by the HTTP tests: the error envelope, money and time formats, "nothing was written"."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from credits.models import CreditAccount, Hold, LedgerEntry

ACCOUNT_URL = "/api/billing/account/"
TRANSACTIONS_URL = "/api/billing/transactions/"
MANUAL_URL = "/api/billing/admin/credits/manual/"
ADMIN_TRANSACTIONS_URL = "/api/billing/admin/credits/transactions/"

MONEY_RE = re.compile(r"^-?\d+\.\d{2,6}$")
UTC_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


def error_of(response, status: int, code: str | None = None) -> dict[str, Any]:  # noqa: ANN001
    """Asserts the status and the one error envelope; returns the inner ``error`` object."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    if code is not None:
        assert error["code"] == code, error
    return error


def invalid_field(response, field: str, status: int = 400) -> dict[str, Any]:  # noqa: ANN001
    """A 4xx naming ``field`` in ``error.details``."""
    error = error_of(response, status)
    assert field in error["details"], (field, error)
    assert field in error["message"] or status != 400, error
    return error


def assert_money(value: Any) -> None:
    assert isinstance(value, str) and MONEY_RE.match(value), value


def assert_utc(value: Any) -> datetime:
    assert isinstance(value, str) and UTC_RE.match(value), value
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset().total_seconds() == 0
    return parsed


def iso_z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Snapshot:
    entries: int
    holds: int
    accounts: dict[str, tuple[Decimal, Decimal, int]]


def db_snapshot() -> Snapshot:
    """Every ledger row, hold and account figure: compare before and after a refused request."""
    return Snapshot(
        entries=LedgerEntry.objects.count(),
        holds=Hold.objects.count(),
        accounts={
            str(pk): (balance, reserved, seq)
            for pk, balance, reserved, seq in CreditAccount.objects.values_list(
                "pk", "balance", "reserved", "last_sequence"
            )
        },
    )


def post_json(client, url: str, body: Any, **extra: Any):  # noqa: ANN001, ANN201
    """POSTs ``body`` as JSON text (a str is sent verbatim: malformed or non-standard JSON)."""
    raw = body if isinstance(body, str) else json.dumps(body)
    return client.post(url, data=raw, content_type="application/json", **extra)


def full_state() -> tuple:
    """Every row a request of the API can write, and every account's figures: equal before and after a
    refused request."""
    from django.apps import apps

    tables = []
    for label in ("credits", "subscriptions", "payments", "accounts"):
        for model in apps.get_app_config(label).get_models():
            tables.append((model._meta.label, model.objects.count()))
    accounts = sorted(
        CreditAccount.objects.values_list("pk", "balance", "reserved", "last_sequence", "carried_remainder")
    )
    return tuple(tables), tuple(accounts)
