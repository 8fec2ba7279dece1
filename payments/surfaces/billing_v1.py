"""billing-service-api.txt, served under ``BILLING_V1_PREFIX`` (default ``/api/v1/``) by the native views.

Shapes: ``{"success": true, "data": ...}``, and ``{"success": false, "error": {"code", "message", "details"}}``
with the native status. Listings take ``limit`` (default 20, max 100) and any ``offset``; ``data`` is the array
of rows and ``pagination`` says ``{limit, offset, total}``.

Credits are integers there: one of that API's credits is ``BILLING_V1_CREDIT_UNIT`` of ours (default 0.01, so
"15.00" here is 1500 there). A balance with a fraction of a unit keeps its decimals (1500.5): nothing is ever
truncated. Amounts sent in (a manual adjustment, a plan's ``credits_included``, the check-in settings) are
counted in the same unit. Prices are integer cents, as natively; an order's USD amounts stay decimal strings.

The ledger's types, as that API names them (``TRANSACTION_TYPES``): a member sees ``ai_usage`` for usage,
``purchase`` for top-ups and grants, ``subscription`` for plan credits, ``checkin``, ``refund``, ``adjustment``,
``promotion``, ``expiry``, ``reserve``/``release`` for holds and ``rollover`` for period ends."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.urls import path
from django.utils.text import slugify
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from billing_service.errors import InvalidInput
from billing_service.schema import extend_schema
from billing_service.surfaces import (
    ExactNumberField,
    SurfaceView,
    error_shape_register,
    from_units,
    native_view,
    units,
)
from credits.api.checkin_views import CheckinConfigViewSet, CheckinViewSet
from credits.api.views import LedgerEntryViewSet, ManualAdjustmentViewSet, PlatformLedgerEntryViewSet
from credits.models import TransactionType
from payments.api.account_views import CreditAccountViewSet
from payments.api.coupon_views import AdminCouponViewSet
from payments.api.serializers import (
    CheckoutInputSerializer,
    CouponInputSerializer,
    PortalInputSerializer,
    WebhookReceiptSerializer,
)
from payments.api.views import WEBHOOK_ENDPOINTS, CheckoutViewSet, OrderViewSet, PortalViewSet, ProviderWebhookView
from subscriptions.api.views import AdminPlanViewSet, PlanViewSet

TAG = "billing-service-api"
MAX_MAGNITUDE = 40  # decimal digits either side of the point a credit amount sent in may have

# Our ledger types as that API names them. An ``add`` row is a ``subscription`` when it is a plan's credits (it
# names the subscription: ``payments.plan_periods``), else a ``purchase``.
TRANSACTION_TYPES = {
    TransactionType.SUBTRACT: "ai_usage",
    TransactionType.ADD: "purchase",
    TransactionType.CHECKIN: "checkin",
    TransactionType.REFUND: "refund",
    TransactionType.ADJUSTMENT: "adjustment",
    TransactionType.PROMOTION: "promotion",
    TransactionType.EXPIRY: "expiry",
    TransactionType.RESERVE: "reserve",
    TransactionType.RELEASE: "release",
    TransactionType.ROLLOVER: "rollover",
}


def unit() -> Decimal:
    return settings.BILLING_V1_CREDIT_UNIT


# The native views, as their routers mount them.
NATIVE = {
    "account": native_view(CreditAccountViewSet, "billing-account", True, get="retrieve"),
    "transactions": native_view(LedgerEntryViewSet, "billing-transactions", get="list"),
    "orders": native_view(OrderViewSet, "billing-orders", get="list"),
    "order": native_view(OrderViewSet, "billing-orders", True, get="retrieve"),
    "plans": native_view(PlanViewSet, "billing-plans", get="list"),
    "checkin": native_view(CheckinViewSet, "billing-checkin", True, post="create"),
    "checkout": native_view(CheckoutViewSet, "billing-checkout", post="create"),
    "portal": native_view(PortalViewSet, "billing-portal", post="create"),
    "admin_plans": native_view(AdminPlanViewSet, "billing-admin-plans", get="list", post="create"),
    "admin_plan": native_view(AdminPlanViewSet, "billing-admin-plans", True, put="update"),
    "admin_coupons": native_view(AdminCouponViewSet, "billing-admin-coupons", get="list", post="create"),
    "admin_transactions": native_view(PlatformLedgerEntryViewSet, "billing-admin-credits-transactions", get="list"),
    "admin_manual": native_view(ManualAdjustmentViewSet, "billing-admin-credits-manual", post="create"),
    "admin_checkin_config": native_view(CheckinConfigViewSet, "billing-admin-checkin-config", True, get="retrieve",
                                    put="update"),
}


# --- shapes -----------------------------------------------------------------------------------------------


def transaction(row: dict[str, Any]) -> dict[str, Any]:
    """A native ledger row as that API's transaction."""
    kind = TRANSACTION_TYPES.get(row["transaction_type"], row["transaction_type"])
    if kind == "purchase" and "subscription_id" in (row.get("metadata") or {}):
        kind = "subscription"
    shaped = {
        "id": row["id"],
        "type": kind,
        "amount": units(row["balance_change"], unit()),
        "description": row["description"],
        "created_at": row["created_at"],
        "balance_after": units(row["credits_balance_after"], unit()),
        "reference": row["reference"],
    }
    if "username" in row:  # the platform's ledger (admins)
        shaped |= {"account_id": row["account_id"], "username": row["username"], "actor": row["actor"]}
    return shaped


def in_credits(row: dict[str, Any], *names: str) -> dict[str, Any]:
    """``row`` with its credit amounts ``names`` in this API's credits (the rest as natively)."""
    return {**row, **{name: units(row[name], unit()) for name in names if name in row}}


def plan(row: dict[str, Any]) -> dict[str, Any]:
    return in_credits(row, "credits_included", "rollover_cap")


def order(row: dict[str, Any]) -> dict[str, Any]:
    return in_credits(row, "credits", "credits_reversed", "refund_shortfall_credits")


def checkin_done(body: dict[str, Any]) -> dict[str, Any]:
    return in_credits(body, "credits_awarded", "balance")


def checkin_config(body: dict[str, Any]) -> dict[str, Any]:
    return {
        **in_credits(body, "credits_per_day", "monthly_cap"),
        "streak_bonuses": {day: units(bonus, unit()) for day, bonus in body["streak_bonuses"].items()},
    }


# --- request mapping ---------------------------------------------------------------------------------------


def with_credits(body: Any, *names: str, where: str = "") -> Any:
    """``body`` with its fields ``names``, this API's credits, as our decimal strings. They must be JSON numbers
    (or null): a string would be read natively as our credits, 100 times more at the default unit, so it is a
    400 naming the field. The native view judges the amount (sign, size, decimals)."""
    if not isinstance(body, dict):
        return body
    out = dict(body)
    for name in names:
        value = out.get(name)
        if value is None:
            continue
        field = f"{where}.{name}" if where else name
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            raise InvalidInput(f"Invalid input: {field}.", details={
                field: [f"Must be a number of credits (a JSON number, 1 = {unit()} of the native unit)."]})
        digits = Decimal(value).as_tuple().digits
        if abs(Decimal(value).adjusted()) > MAX_MAGNITUDE or len(digits) > 2 * MAX_MAGNITUDE:  # 1e400: too long
            raise InvalidInput(f"Invalid input: {field}.", details={field: ["Out of range."]})
        out[name] = from_units(value, unit())
    return out


V1Error = inline_serializer(name="V1Error", fields={
    "success": serializers.BooleanField(help_text="false"),
    "error": inline_serializer(name="V1ErrorBody", fields={
        "code": serializers.CharField(help_text="Stable machine-readable code, as the native API's."),
        "message": serializers.CharField(),
        "details": serializers.DictField(help_text="Per-field messages for invalid input; otherwise extra context."),
    }),
})


def failures(**statuses: str) -> dict[int, OpenApiResponse]:
    """The statuses an endpoint answers besides 400/401/403/404/503, as its native endpoint documents them:
    ``failures(_409="already_checked_in")``."""
    return {int(code.lstrip("_")): OpenApiResponse(V1Error, description=text) for code, text in statuses.items()}


def v1_error(error: dict[str, Any]) -> dict[str, Any]:
    return {"success": False, "error": error}


class BillingV1View(SurfaceView):
    """A view of billing-service-api.txt: the ``{success, data}`` envelope."""

    error_serializer = V1Error

    def shape_error(self, error: dict[str, Any]) -> Any:
        return v1_error(error)

    def envelope(self, native: Response, shape: Any = None) -> Response:
        """``{"success": true, "data": shape(native body)}``."""
        return self.reply(native, lambda body: {"success": True, "data": shape(body) if shape else body})

    def listing(self, native: Response, row: Any = None) -> Response:
        """A native page as ``{"success": true, "data": [row(...)], "pagination": {limit, offset, total}}``."""
        return self.reply(native, lambda body: {
            "success": True, "data": [row(item) if row else item for item in body["results"]],
            "pagination": {"limit": self.limit, "offset": self.offset, "total": body["count"]}})

    def page_query(self, request: Request) -> dict[str, str]:
        """``limit`` (default 20) and ``offset``, as natively (validated there)."""
        return self.paging(request, offset="offset", limit="limit", default_limit=20)


PAGE_PARAMS = [
    OpenApiParameter("limit", int, description="Rows per page (default 20, max 100)."),
    OpenApiParameter("offset", int, description="Rows to skip, any number (default 0)."),
]


def _body(name: str, data: Any) -> Any:
    return inline_serializer(name=name, fields={"success": serializers.BooleanField(), "data": data})


def _listing(name: str, row: Any) -> Any:
    return inline_serializer(name=name, fields={
        "success": serializers.BooleanField(), "data": serializers.ListField(child=row),
        "pagination": inline_serializer(name=f"{name}Pagination", fields={
            "limit": serializers.IntegerField(), "offset": serializers.IntegerField(),
            "total": serializers.IntegerField()})})


def _credits_number(help_text: str) -> serializers.Field:
    return ExactNumberField(help_text=help_text)


TransactionV1 = inline_serializer(name="V1Transaction", fields={
    "id": serializers.UUIDField(),
    "type": serializers.CharField(help_text="ai_usage, purchase, subscription, checkin, refund, adjustment, "
                                            "promotion, expiry, reserve, release, rollover."),
    "amount": _credits_number("Signed change of the balance, in this API's credits."),
    "description": serializers.CharField(),
    "created_at": serializers.DateTimeField(),
    "balance_after": _credits_number("The balance after it."),
    "reference": serializers.CharField(),
})
def _any() -> serializers.Field:
    return serializers.JSONField(help_text="As the native endpoint shows it, credits in this API's unit.")


# --- views -----------------------------------------------------------------------------------------------


class BalanceView(BillingV1View):
    @extend_schema(operation_id="v1_credits_balance", summary="Your balance", tags=[TAG], responses={
        200: _body("V1Balance", inline_serializer(name="V1BalanceData", fields={
            "balance": _credits_number("Credits, reserved ones included."),
            "available": _credits_number("Credits that can be spent now."),
            "reserved": _credits_number("Credits held for calls in progress.")}))})
    def get(self, request: Request) -> Response:
        return self.envelope(self.forward(request, NATIVE["account"], query={}), lambda account: {
            "balance": units(account["balance"], unit()),
            "available": units(account["available_credits"], unit()),
            "reserved": units(account["reserved"], unit()),
        })


class TransactionsView(BillingV1View):
    @extend_schema(operation_id="v1_credits_transactions", summary="Your transactions, newest first", tags=[TAG],
                   parameters=PAGE_PARAMS, responses={200: _listing("V1Transactions", TransactionV1)})
    def get(self, request: Request) -> Response:
        native = self.forward(request, NATIVE["transactions"], query=self.page_query(request))
        return self.listing(native, transaction)


class OrdersView(BillingV1View):
    @extend_schema(operation_id="v1_orders_list", summary="Your orders, newest first", tags=[TAG],
                   parameters=PAGE_PARAMS, responses={200: _listing("V1Orders", _any())})
    def get(self, request: Request) -> Response:
        native = self.forward(request, NATIVE["orders"], query=self.page_query(request))
        return self.listing(native, order)


class OrderView(BillingV1View):
    @extend_schema(operation_id="v1_orders_retrieve", summary="One of your orders", tags=[TAG],
                   responses={200: _body("V1Order", _any())})
    def get(self, request: Request, order_id: str) -> Response:
        return self.envelope(self.forward(request, NATIVE["order"], query={}, order_id=order_id), order)


class PlansView(BillingV1View):
    @extend_schema(operation_id="v1_subscription_plans", summary="The plans on sale", tags=[TAG],
                   responses={200: _body("V1Plans", _any())})
    def get(self, request: Request) -> Response:
        native = self.forward(request, NATIVE["plans"], query={"limit": 100})
        return self.envelope(native, lambda body: [plan(row) for row in body["results"]])


class CheckinView(BillingV1View):
    @extend_schema(operation_id="v1_checkin", summary="Daily check-in", tags=[TAG], request=None,
                   responses={201: _body("V1Checkin", _any()), **failures(
                       _409="Already checked in today (already_checked_in).")})
    def post(self, request: Request) -> Response:
        return self.envelope(self.forward(request, NATIVE["checkin"], query={}), checkin_done)


class CreateSessionView(BillingV1View):
    @extend_schema(
        operation_id="v1_payment_create_session", summary="Start a checkout session", tags=[TAG],
        description="The native checkout (`POST /api/billing/checkout/`): `channel` `stripe` or `creem`, `type` "
        "`subscription` (with `plan_id`; `billing_cycle` defaults to `monthly`) or `top_up` (with `amount` in USD, "
        "a decimal string), `success_url`, `cancel_url`, `coupon`.",
        request=CheckoutInputSerializer, responses={201: _body("V1Session", inline_serializer(name="V1SessionData", fields={
            "url": serializers.URLField(), "order_id": serializers.UUIDField()})), **failures(
            _409="A current subscription exists (subscription_exists), or a coupon's limit.",
            _429="Too many coupon codes tried (coupon_attempts_exceeded).",
            _502="The payment provider refused or failed (payment_provider_error).")})
    def post(self, request: Request) -> Response:
        return self.envelope(self.forward(request, NATIVE["checkout"], query={}))


class PortalView(BillingV1View):
    @extend_schema(operation_id="v1_subscription_portal", summary="Open the billing portal", tags=[TAG],
                   request=PortalInputSerializer, responses={200: _body("V1Portal", inline_serializer(
                       name="V1PortalData", fields={"url": serializers.URLField()})), **failures(
                       _409="No customer at the provider yet (no_billing_account).",
                       _502="The payment provider refused or failed (payment_provider_error).")})
    def post(self, request: Request) -> Response:
        return self.envelope(self.forward(request, NATIVE["portal"], query={}))


def webhook_view(provider: str) -> type[BillingV1View]:
    """The view of a provider's deliveries: the native handler, its signature check included (public)."""
    native_view = ProviderWebhookView.as_view(provider=provider)
    name = WEBHOOK_ENDPOINTS[provider].name

    class WebhookView(BillingV1View):
        public_endpoint = True  # no token: the provider's signature (billing_service.schema)
        authentication_classes: list = []
        permission_classes = (AllowAny,)

        @extend_schema(operation_id=f"v1_payment_webhook_{provider}", summary=f"{name}'s webhook", tags=[TAG],
                       description=f"{name}'s signed deliveries, as `POST /api/billing/webhooks/{provider}/` takes "
                       "them.", request=OpenApiTypes.OBJECT, responses={200: _body(
                           f"V1WebhookReceipt{name}", WebhookReceiptSerializer()), **failures(
                           _500="A failure a later delivery may get past: the provider retries.")}, auth=[])
        def post(self, request: Request) -> Response:
            return self.envelope(self.forward(request, native_view))

    WebhookView.__name__ = f"{name}WebhookView"
    return WebhookView


class AdminPlansView(BillingV1View):
    @extend_schema(operation_id="v1_admin_plans_list", summary="Every plan (owners and admins)", tags=[TAG],
                   parameters=PAGE_PARAMS, responses={200: _listing("V1AdminPlans", _any())})
    def get(self, request: Request) -> Response:
        native = self.forward(request, NATIVE["admin_plans"], query=self.page_query(request))
        return self.listing(native, plan)

    @extend_schema(operation_id="v1_admin_plans_create", summary="Create a plan (owners and admins)", tags=[TAG],
                   description="The native plan fields; `credits_included` in this API's credits; `slug` defaults "
                   "to the name's.", request=OpenApiTypes.OBJECT, responses={201: _body("V1AdminPlan", _any()), **failures(
                       _409="The slug or a provider price id is taken.")})
    def post(self, request: Request) -> Response:
        body = with_credits(request.data, "credits_included", "rollover_cap")
        if isinstance(body, dict) and "slug" not in body and isinstance(body.get("name"), str) and slugify(
                body["name"]):
            body["slug"] = slugify(body["name"])[:50]  # else the native 400 asks for a slug
        return self.envelope(self.forward(request, NATIVE["admin_plans"], query={}, body=body), plan)


class AdminPlanView(BillingV1View):
    @extend_schema(operation_id="v1_admin_plans_update", summary="Update a plan (owners and admins)", tags=[TAG],
                   description="The native plan fields; `credits_included` in this API's credits.",
                   request=OpenApiTypes.OBJECT, responses={200: _body("V1AdminPlanUpdated", _any()), **failures(
                       _409="A provider price id is taken, or a priced amount changed without a new one.")})
    def put(self, request: Request, plan_id: str) -> Response:
        body = with_credits(request.data, "credits_included", "rollover_cap")
        return self.envelope(
            self.forward(request, NATIVE["admin_plan"], query={}, body=body, plan_id=plan_id), plan
        )


class AdminCouponsView(BillingV1View):
    @extend_schema(operation_id="v1_admin_coupons_list", summary="Coupons (owners and admins)", tags=[TAG],
                   parameters=PAGE_PARAMS, responses={200: _listing("V1Coupons", _any())})
    def get(self, request: Request) -> Response:
        native = self.forward(request, NATIVE["admin_coupons"], query=self.page_query(request))
        return self.listing(native)

    @extend_schema(operation_id="v1_admin_coupons_create", summary="Create a coupon (owners and admins)", tags=[TAG],
                   description="The native coupon fields (`value` a decimal string, as natively).",
                   request=CouponInputSerializer, responses={201: _body("V1Coupon", _any()), **failures(
                       _409="The code is taken (coupon_code_exists).")})
    def post(self, request: Request) -> Response:
        return self.envelope(self.forward(request, NATIVE["admin_coupons"], query={}))


class AdminTransactionsView(BillingV1View):
    @extend_schema(operation_id="v1_admin_credits_transactions", summary="Every transaction of the platform",
                   tags=[TAG], parameters=PAGE_PARAMS, responses={200: _listing("V1AdminTransactions", _any())})
    def get(self, request: Request) -> Response:
        native = self.forward(request, NATIVE["admin_transactions"], query=self.page_query(request))
        return self.listing(native, transaction)


class AdminManualView(BillingV1View):
    @extend_schema(operation_id="v1_admin_credits_manual", summary="Adjust an account's credits by hand",
                   tags=[TAG], description="`account_id`, `amount` (signed, in this API's credits), `description`, "
                   "`reference`; an `Idempotency-Key` header makes a retry safe.",
                   request=OpenApiTypes.OBJECT, responses={
                       201: _body("V1Adjustment", TransactionV1),
                       200: OpenApiResponse(_body("V1AdjustmentReplay", TransactionV1),
                                            description="Replay of an earlier request with this Idempotency-Key."),
                       **failures(_402="The removal exceeds the available credits (insufficient_credits).",
                                  _409="The Idempotency-Key was used with another body (idempotency_conflict).")})
    def post(self, request: Request) -> Response:
        native = self.forward(request, NATIVE["admin_manual"], query={}, body=with_credits(request.data, "amount"))
        return self.envelope(native, transaction)


class AdminCheckinConfigView(BillingV1View):
    @extend_schema(operation_id="v1_admin_checkin_config_get", summary="The check-in settings", tags=[TAG],
                   responses={200: _body("V1CheckinConfig", _any())})
    def get(self, request: Request) -> Response:
        return self.envelope(self.forward(request, NATIVE["admin_checkin_config"], query={}), checkin_config)

    @extend_schema(operation_id="v1_admin_checkin_config_put", summary="Set the check-in", tags=[TAG],
                   description="The native settings; `credits_per_day`, `monthly_cap` and `streak_bonuses` in this "
                   "API's credits.", request=OpenApiTypes.OBJECT, responses={200: _body("V1CheckinConfigSet", _any())})
    def put(self, request: Request) -> Response:
        body = with_credits(request.data, "credits_per_day", "monthly_cap")
        if isinstance(body, dict) and isinstance(body.get("streak_bonuses"), dict):
            bonuses = body["streak_bonuses"]
            body["streak_bonuses"] = with_credits(bonuses, *bonuses, where="streak_bonuses")
        native = self.forward(request, NATIVE["admin_checkin_config"], query={}, body=body)
        return self.envelope(native, checkin_config)


error_shape_register(settings.BILLING_V1_PREFIX, v1_error)  # errors answered before the views (middleware, 404)
urlpatterns = [
    path("credits/balance", BalanceView.as_view(), name="v1-credits-balance"),
    path("credits/transactions", TransactionsView.as_view(), name="v1-credits-transactions"),
    path("orders", OrdersView.as_view(), name="v1-orders"),
    path("orders/<str:order_id>", OrderView.as_view(), name="v1-order"),
    path("subscription/plans", PlansView.as_view(), name="v1-subscription-plans"),
    path("subscription/portal", PortalView.as_view(), name="v1-subscription-portal"),
    path("checkin", CheckinView.as_view(), name="v1-checkin"),
    path("payment/create-session", CreateSessionView.as_view(), name="v1-payment-create-session"),
    *(
        path(f"payment/webhook/{provider}", webhook_view(provider).as_view(), name=f"v1-payment-webhook-{provider}")
        for provider in WEBHOOK_ENDPOINTS
    ),
    path("admin/billing/plans", AdminPlansView.as_view(), name="v1-admin-plans"),
    path("admin/billing/plans/<str:plan_id>", AdminPlanView.as_view(), name="v1-admin-plan"),
    path("admin/billing/coupons", AdminCouponsView.as_view(), name="v1-admin-coupons"),
    path("admin/credits/transactions", AdminTransactionsView.as_view(), name="v1-admin-credits-transactions"),
    path("admin/credits/manual", AdminManualView.as_view(), name="v1-admin-credits-manual"),
    path("admin/checkin/config", AdminCheckinConfigView.as_view(), name="v1-admin-checkin-config"),
]
