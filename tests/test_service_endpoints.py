"""/healthz, the OpenAPI schema (/api/schema/) and the Swagger UI (/api/docs/)."""

from __future__ import annotations

import copy
import re
from decimal import Decimal

import jsonschema
import pytest
from django.test import Client
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from credits.models import CreditAccount, TransactionType
from credits.services import credits_grant
from tests.api_helpers import (
    ACCOUNT_URL,
    ADMIN_TRANSACTIONS_URL,
    MANUAL_URL,
    TRANSACTIONS_URL,
    error_of,
    post_json,
)
from tests.conftest import client_for

OPERATIONS = {
    ("/healthz", "get"),
    ("/readyz", "get"),
    # billing-service-api.txt (payments/surfaces/billing_v1.py)
    *((f"/api/v1/{path}", method) for path, method in [
        ("credits/balance", "get"), ("credits/transactions", "get"), ("orders", "get"), ("orders/{order_id}", "get"),
        ("subscription/plans", "get"), ("subscription/portal", "post"), ("checkin", "post"),
        ("payment/create-session", "post"), ("payment/webhook/stripe", "post"), ("payment/webhook/creem", "post"),
        ("admin/billing/plans", "get"), ("admin/billing/plans", "post"), ("admin/billing/plans/{plan_id}", "put"),
        ("admin/billing/coupons", "get"), ("admin/billing/coupons", "post"), ("admin/credits/transactions", "get"),
        ("admin/credits/manual", "post"), ("admin/checkin/config", "get"), ("admin/checkin/config", "put"),
    ]),
    # account-api.txt (payments/surfaces/account_api.py)
    ("/auth/account/usage", "get"), ("/auth/account/credits", "get"), ("/auth/account/ledger", "get"),
    ("/auth/account/summary", "get"),
    # entitlements-plans-api.txt (payments/surfaces/entitlements_plans.py)
    ("/api/ai-entitlements", "get"), ("/api/ai-entitlements/_refresh", "post"), ("/api/ai-plans", "get"),
    ("/api/ai-plans/{id}", "get"), ("/api/ai-subscriptions", "get"),
    # JWT Bearer tokens (accounts/api/jwt_views.py): credentials in the body, no token needed
    ("/api/auth/jwt/", "post"),
    ("/api/auth/jwt/refresh/", "post"),
    ("/api/auth/jwt/verify/", "post"),
    (ACCOUNT_URL, "get"),
    (ACCOUNT_URL, "patch"),
    (TRANSACTIONS_URL, "get"),
    (MANUAL_URL, "post"),
    (ADMIN_TRANSACTIONS_URL, "get"),
    ("/api/billing/usage/", "post"),
    ("/api/billing/usage/batch/", "post"),
    ("/api/billing/usage/stats/", "get"),
    ("/api/billing/summary/", "get"),
    ("/api/billing/reservations/", "get"),
    ("/api/billing/reservations/", "post"),
    ("/api/billing/reservations/{hold_id}/", "get"),
    ("/api/billing/reservations/{hold_id}/capture/", "post"),
    ("/api/billing/reservations/{hold_id}/release/", "post"),
    ("/api/billing/admin/models/", "get"),
    ("/api/billing/admin/models/", "post"),
    ("/api/billing/admin/models/{model}/", "get"),
    ("/api/billing/plans/", "get"),
    ("/api/billing/subscription/", "get"),
    ("/api/billing/admin/plans/", "get"),
    ("/api/billing/admin/plans/", "post"),
    ("/api/billing/admin/plans/{plan_id}/", "get"),
    ("/api/billing/admin/plans/{plan_id}/", "put"),
    ("/api/billing/admin/plans/{plan_id}/", "patch"),
    ("/api/billing/checkout/", "post"),
    ("/api/billing/portal/", "post"),
    ("/api/billing/payment-method/", "get"),
    ("/api/billing/payment-method/", "post"),
    ("/api/billing/payment-method/", "delete"),
    ("/api/billing/orders/", "get"),
    ("/api/billing/orders/{order_id}/", "get"),
    ("/api/billing/webhooks/stripe/", "post"),
    ("/api/billing/webhooks/creem/", "post"),
    # seats, where they need Stripe (payments)
    ("/api/billing/ai-subscriptions/", "get"),
    ("/api/billing/ai-subscriptions/{subscription_id}/", "get"),
    ("/api/billing/ai-subscriptions/{subscription_id}/", "patch"),
    ("/api/billing/entitlements/refresh/", "post"),
    ("/api/billing/entitlements/", "get"),
    ("/api/billing/checkin/", "get"),
    ("/api/billing/checkin/", "post"),
    ("/api/billing/admin/checkin/config/", "get"),
    ("/api/billing/admin/checkin/config/", "put"),
    ("/api/billing/entitlements/me/", "get"),
    ("/api/billing/ai-plans/", "get"),
    ("/api/billing/ai-plans/", "post"),
    ("/api/billing/ai-plans/{ai_plan}/", "get"),
    ("/api/billing/ai-plans/{ai_plan}/", "patch"),
    ("/api/billing/ai-plans/{ai_plan}/seats/", "post"),
    ("/api/billing/ai-plans/{ai_plan}/seats/{username}/", "delete"),
    # coupons (payments)
    ("/api/billing/admin/coupons/", "get"),
    ("/api/billing/admin/coupons/", "post"),
    ("/api/billing/admin/coupons/{coupon_id}/", "get"),
    ("/api/billing/admin/coupons/{coupon_id}/", "put"),
    ("/api/billing/admin/coupons/{coupon_id}/", "patch"),
    ("/api/billing/coupons/redeem/", "post"),
    # outbound webhooks (accounts) and balance alerts (credits)
    ("/api/billing/admin/webhook-endpoints/", "get"),
    ("/api/billing/admin/webhook-endpoints/", "post"),
    ("/api/billing/admin/page-links/", "post"),
    ("/api/billing/tokens/", "get"),
    ("/api/billing/tokens/", "post"),
    ("/api/billing/tokens/{token_id}/", "get"),
    ("/api/billing/tokens/{token_id}/", "delete"),
    ("/api/billing/admin/tokens/", "get"),
    ("/api/billing/admin/tokens/", "post"),
    ("/api/billing/admin/tokens/{token_id}/", "get"),
    ("/api/billing/admin/tokens/{token_id}/", "delete"),
    ("/api/billing/admin/webhook-endpoints/{endpoint_id}/", "get"),
    ("/api/billing/admin/webhook-endpoints/{endpoint_id}/", "put"),
    ("/api/billing/admin/webhook-endpoints/{endpoint_id}/", "patch"),
    ("/api/billing/admin/webhook-endpoints/{endpoint_id}/rotate-secret/", "post"),
    ("/api/billing/admin/webhook-deliveries/", "get"),
    ("/api/billing/admin/webhook-deliveries/{delivery_id}/", "get"),
    ("/api/billing/admin/webhook-deliveries/{delivery_id}/redeliver/", "post"),
    ("/api/billing/admin/balance-alerts/", "get"),
    ("/api/billing/admin/balance-alerts/", "put"),
}
BILLING_OPERATIONS = {op for op in OPERATIONS if op[0].startswith("/api/billing/")}
AUTH_OPERATIONS = {op for op in OPERATIONS if op[0].startswith("/api/auth/")}
# Called by a payment provider, authenticated by its signature: no token, so no 401/403/404.
PUBLIC_OPERATIONS = {("/api/billing/webhooks/stripe/", "post"), ("/api/billing/webhooks/creem/", "post")}


# --- /healthz -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_healthz_is_ok_without_credentials():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ready_when_the_database_answers_and_every_migration_is_applied(settings):
    settings.CELERY_BROKER_URL = ""

    response = Client().get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "migrations": "ok"}}


@pytest.mark.django_db
def test_readyz_is_unavailable_while_a_migration_is_not_applied(settings):
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader
    from django.db.migrations.recorder import MigrationRecorder

    settings.CELERY_BROKER_URL = ""
    [(app, latest)] = MigrationLoader(connection).graph.leaf_nodes("accounts")
    MigrationRecorder.Migration.objects.filter(app=app, name=latest).delete()

    response = Client().get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "migrations": "1 not applied"}


@pytest.mark.django_db
def test_readyz_checks_the_broker_when_there_is_one(settings, tmp_path):
    from tests.payments.local_servers import free_port, start_redis, stop

    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens there
    down = Client().get("/readyz")
    redis, settings.CELERY_BROKER_URL = start_redis(str(tmp_path))
    try:
        up = Client().get("/readyz")
    finally:
        stop(redis)

    assert down.status_code == 503 and down.json()["checks"]["broker"] == "unreachable"
    assert up.status_code == 200 and up.json()["checks"]["broker"] == "ok"


@pytest.mark.django_db
def test_healthz_ignores_a_bad_token():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token nope")
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.django_db
def test_healthz_only_answers_get():
    error_of(APIClient().post("/healthz"), 405, "method_not_allowed")


@pytest.mark.django_db
def test_unknown_url_is_a_404_envelope():
    error_of(Client().get("/api/billing/nope/"), 404, "not_found")


# --- the schema -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict:
    response = Client().get("/api/schema/?format=json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json") or response[
        "Content-Type"
    ].startswith("application/json")
    return response.json()


def test_schema_is_valid_openapi_3(schema):
    assert schema["openapi"].startswith("3.")
    validate_schema(copy.deepcopy(schema))  # the OpenAPI 3 JSON Schema bundled with drf-spectacular
    assert schema["info"]["title"]
    assert schema["info"]["version"]


def test_schema_is_public(db):
    assert APIClient().get("/api/schema/?format=json").status_code == 200


def _refs(node) -> list[str]:  # noqa: ANN001
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


def test_every_ref_resolves(schema):
    refs = _refs(schema)
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schema["components"]["schemas"], ref


def test_every_path_and_operation_is_documented(schema):
    documented = {(path, method) for path, ops in schema["paths"].items() for method in ops
                  if method in {"get", "post", "put", "patch", "delete"}}
    assert documented == OPERATIONS
    for path, method in OPERATIONS:
        op = schema["paths"][path][method]
        assert op.get("operationId")
        assert op.get("summary")
        success = {"200", "201", "202"} | ({"204"} if method == "delete" else set())
        assert success & set(op["responses"]), (path, method)
    operation_ids = [op["operationId"] for ops in schema["paths"].values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))


def _is_error_envelope(schema: dict, response: dict) -> bool:
    ref = response["content"]["application/json"]["schema"]["$ref"]
    return ref == "#/components/schemas/Error"


@pytest.mark.parametrize(("path", "method"), sorted(BILLING_OPERATIONS))
def test_error_responses_are_documented_with_the_envelope(schema, path, method):
    responses = schema["paths"][path][method]["responses"]
    expected = {"400", "401", "403", "404"} | ({"402", "409"} if path == MANUAL_URL else set())
    if (path, method) in PUBLIC_OPERATIONS:
        expected = {"400"}
    assert expected <= set(responses), sorted(responses)
    for code in expected:
        assert responses[code]["description"], code
        assert _is_error_envelope(schema, responses[code]), (code, responses[code])


def test_the_error_envelope_component(schema):
    components = schema["components"]["schemas"]
    error = components["Error"]
    assert error["required"] == ["error"]
    body = error["properties"]["error"]
    if "$ref" in body:
        body = components[body["$ref"].rsplit("/", 1)[1]]
    assert set(body["properties"]) == {"code", "message", "details"}
    assert set(body["required"]) == {"code", "message", "details"}


def test_manual_adjustment_documents_its_body_header_and_statuses(schema):
    op = schema["paths"][MANUAL_URL]["post"]
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    request = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"account_id", "amount", "description"} <= set(request["required"])
    assert request["properties"]["amount"]["type"] == "string"
    assert request["properties"]["account_id"]["format"] == "uuid"
    assert request["properties"]["description"]["maxLength"] == 500
    headers = {p["name"] for p in op["parameters"] if p["in"] == "header"}
    assert {"Idempotency-Key", "X-Platform-Key"} <= headers
    assert {"200", "201", "402", "409"} <= set(op["responses"])
    assert "insufficient_credits" in op["responses"]["402"]["description"]
    assert "idempotency_conflict" in op["responses"]["409"]["description"]


def _query_params(schema: dict, path: str) -> dict[str, dict]:
    return {p["name"]: p for p in schema["paths"][path]["get"].get("parameters", []) if p["in"] == "query"}


@pytest.mark.parametrize("path", [TRANSACTIONS_URL, ADMIN_TRANSACTIONS_URL])
def test_listings_document_every_query_parameter(schema, path):
    params = _query_params(schema, path)
    expected = {"transaction_type", "from_date", "to_date", "created_from", "created_to", "direction", "page",
                "page_size", "offset", "limit", "pagination", "cursor"}
    if path == ADMIN_TRANSACTIONS_URL:
        expected |= {"account_id", "username"}
    else:
        expected |= {"platform_key"}
    assert expected <= set(params), sorted(params)
    type_schema = params["transaction_type"]["schema"]
    if "$ref" in type_schema:
        type_schema = schema["components"]["schemas"][type_schema["$ref"].rsplit("/", 1)[1]]
    assert set(type_schema["enum"]) == set(TransactionType.values)
    assert params["from_date"]["schema"]["format"] == "date"
    assert params["to_date"]["schema"]["format"] == "date"
    assert params["page_size"]["schema"]["maximum"] == 100
    assert params["page_size"]["schema"]["default"] == 20
    assert params["page"]["schema"]["minimum"] == 1
    if path == ADMIN_TRANSACTIONS_URL:
        assert params["account_id"]["schema"]["format"] == "uuid"


def test_account_documents_platform_key(schema):
    assert "platform_key" in _query_params(schema, ACCOUNT_URL)
    headers = {p["name"] for p in schema["paths"][ACCOUNT_URL]["get"]["parameters"] if p["in"] == "header"}
    assert "X-Platform-Key" in headers


def test_token_auth_is_documented(schema):
    schemes = schema["components"]["securitySchemes"]
    token = next(s for s in schemes.values() if s.get("in") == "header")
    assert token["name"] == "Authorization"
    for path, method in BILLING_OPERATIONS - PUBLIC_OPERATIONS:
        assert {"tokenAuth": []} in schema["paths"][path][method]["security"]
    assert "security" not in schema  # no document-wide requirement: an operation without one is public
    for path, method in PUBLIC_OPERATIONS:
        assert schema["paths"][path][method].get("security") in (None, [], [{}])


def test_jwt_bearer_auth_is_documented(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["jwtAuth"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    for path, method in BILLING_OPERATIONS - PUBLIC_OPERATIONS:
        assert {"jwtAuth": []} in schema["paths"][path][method]["security"]
    for path, method in AUTH_OPERATIONS:  # the credentials are in the body
        op = schema["paths"][path][method]
        assert op.get("security") in (None, [], [{}])
        assert {"200", "400", "401"} <= set(op["responses"])
        for code in ("400", "401"):
            assert _is_error_envelope(schema, op["responses"][code])
        assert "X-Platform-Key" not in {p["name"] for p in op.get("parameters", [])}
    obtain = schema["paths"]["/api/auth/jwt/"]["post"]
    assert {"403"} <= set(obtain["responses"])
    body = obtain["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    fields = schema["components"]["schemas"][body]
    assert set(fields["properties"]) == {"username", "password", "platform_key"}
    assert set(fields["required"]) == {"username", "password"}


@pytest.mark.django_db
def test_jwt_responses_match_the_schema(schema, member):
    member.user.set_password("pw")
    member.user.save()
    obtained = post_json(APIClient(), "/api/auth/jwt/", {"username": member.user.username, "password": "pw"})
    _check(schema, "/api/auth/jwt/", "post", obtained)
    pair = obtained.json()
    _check(schema, "/api/auth/jwt/", "post", post_json(APIClient(), "/api/auth/jwt/", {"username": "x",
                                                                                        "password": "y"}))
    _check(schema, "/api/auth/jwt/", "post", post_json(APIClient(), "/api/auth/jwt/", {"username": 1}))
    _check(schema, "/api/auth/jwt/refresh/", "post",
           post_json(APIClient(), "/api/auth/jwt/refresh/", {"refresh": pair["refresh"]}))
    _check(schema, "/api/auth/jwt/refresh/", "post",
           post_json(APIClient(), "/api/auth/jwt/refresh/", {"refresh": "x"}))
    _check(schema, "/api/auth/jwt/verify/", "post",
           post_json(APIClient(), "/api/auth/jwt/verify/", {"token": pair["access"]}))
    _check(schema, "/api/auth/jwt/verify/", "post", post_json(APIClient(), "/api/auth/jwt/verify/", {"token": "x"}))
    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {pair['access']}")
    _check(schema, ACCOUNT_URL, "get", bearer.get(ACCOUNT_URL))


# --- real responses match the documented schemas ----------------------------------------------------------


def _json_schema(node, components: dict):  # noqa: ANN001, ANN202
    """An OpenAPI 3.0 schema as plain JSON Schema: $refs inlined, ``nullable`` as a null alternative."""
    if isinstance(node, list):
        return [_json_schema(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _json_schema(components[node["$ref"].rsplit("/", 1)[1]], components)
    out = {k: _json_schema(v, components) for k, v in node.items() if k not in {"nullable", "example", "readOnly",
                                                                                 "writeOnly"}}
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def _check(schema: dict, path: str, method: str, response) -> None:  # noqa: ANN001
    documented = schema["paths"][path][method]["responses"]
    assert str(response.status_code) in documented, (path, response.status_code)
    body_schema = documented[str(response.status_code)]["content"]["application/json"]["schema"]
    validator = jsonschema.Draft7Validator(
        _json_schema(body_schema, schema["components"]["schemas"]), format_checker=jsonschema.FormatChecker()
    )
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(response.json())]
    assert not errors, (path, response.status_code, errors[:5])


@pytest.mark.django_db
def test_real_responses_match_the_schema(schema, platform, admin, member):
    credits_grant(account_id=member.account.id, amount=Decimal("25"), payment_amount_usd=Decimal("25.00"),
                  description="top-up")
    _check(schema, "/healthz", "get", Client().get("/healthz"))
    _check(schema, ACCOUNT_URL, "get", client_for(member).get(ACCOUNT_URL))
    _check(schema, ACCOUNT_URL, "get", client_for(admin).get(ACCOUNT_URL, {"platform_key": "acme"}))
    _check(schema, TRANSACTIONS_URL, "get", client_for(member).get(TRANSACTIONS_URL, {"page_size": 1}))
    _check(schema, TRANSACTIONS_URL, "get", client_for(member).get(TRANSACTIONS_URL, {"pagination": "cursor"}))
    created = post_json(client_for(admin), MANUAL_URL, {"account_id": str(member.account.id), "amount": "-1",
                                                        "description": "fix"}, HTTP_IDEMPOTENCY_KEY="k1")
    _check(schema, MANUAL_URL, "post", created)
    replayed = post_json(client_for(admin), MANUAL_URL, {"account_id": str(member.account.id), "amount": "-1",
                                                         "description": "fix"}, HTTP_IDEMPOTENCY_KEY="k1")
    _check(schema, MANUAL_URL, "post", replayed)
    _check(schema, ADMIN_TRANSACTIONS_URL, "get", client_for(admin).get(ADMIN_TRANSACTIONS_URL))
    _check(schema, ADMIN_TRANSACTIONS_URL, "get",
           client_for(admin).get(ADMIN_TRANSACTIONS_URL, {"pagination": "cursor", "page_size": 1}))
    # errors
    _check(schema, ACCOUNT_URL, "get", APIClient().get(ACCOUNT_URL))
    _check(schema, ACCOUNT_URL, "get", client_for(member).get(ACCOUNT_URL, {"platform_key": "acme"}))
    _check(schema, TRANSACTIONS_URL, "get", client_for(member).get(TRANSACTIONS_URL, {"page_size": 0}))
    _check(schema, TRANSACTIONS_URL, "get", client_for(member).get(TRANSACTIONS_URL, {"page": 9}))
    _check(schema, MANUAL_URL, "post", post_json(client_for(admin), MANUAL_URL, {"amount": "x"}))
    _check(schema, MANUAL_URL, "post", post_json(client_for(admin), MANUAL_URL, {
        "account_id": str(member.account.id), "amount": "-1000", "description": "too much"}))
    _check(schema, MANUAL_URL, "post", post_json(client_for(admin), MANUAL_URL, {
        "account_id": str(member.account.id), "amount": "-2", "description": "fix"}, HTTP_IDEMPOTENCY_KEY="k1"))


# --- the docs page ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_docs_page_is_served_with_local_assets():
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "swagger-ui" in html.lower()
    assert "/api/schema/" in html
    assert not re.search(r"https?://(cdn\.jsdelivr\.net|unpkg\.com|cdnjs)", html)
    assets = re.findall(r"""(?:src|href)=["'](/static/[^"']+)["']""", html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets), assets
    for asset in assets:
        served = Client().get(asset)
        assert served.status_code == 200, asset
        content = b"".join(served.streaming_content) if served.streaming else served.content
        assert content
