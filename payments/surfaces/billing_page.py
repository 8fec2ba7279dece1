"""The billing page (``/billing/``): what a member sees under Settings > Billing (ibl-billing-account-api.txt), as
server-rendered HTML over the native API views (``billing_service.surfaces.forward``), so every figure, filter,
page and error is the API's own: no rule is written twice.

A member arrives signed in: by a single-use link that the platform's backend mints
(``POST /api/billing/admin/page-links/``, ``accounts.services.sign_in_link_use``), or with a password through the
form (``/billing/sign-in/``, under the brute-force limits of the JWT login). The session remembers the platform
the member signed in to; every native call acts in it (``X-Platform-Key``)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import authenticate, login, logout
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone, translation
from django.views.decorators.http import require_http_methods

from accounts.errors import LoginAttemptsExceeded, SignInLinkInvalid
from accounts.selectors import membership_list_for_user
from accounts.services import client_address, login_failure_record, login_failures_check, sign_in_link_use
from billing_service.surfaces import forward, native_view
from credits.api.metering_views import UsageStatsViewSet
from credits.api.views import LedgerEntryViewSet
from credits.models import TransactionType
from entitlements.api.views import MyEntitlementViewSet
from payments.api.account_views import CreditAccountViewSet
from payments.api.payment_method_views import PaymentMethodViewSet
from payments.api.views import CheckoutViewSet, OrderViewSet, PortalViewSet
from subscriptions.api.views import PlanViewSet, SubscriptionViewSet

SESSION_PLATFORM = "billing_platform"  # the platform_key the member signed in to
HISTORY_PAGE_SIZE = 20
HISTORY_FILTERS = ("transaction_type", "from_date", "to_date", "page")

USAGE_DAYS = 30
ORDERS_SHOWN = 10

NATIVE = {
    "account": native_view(CreditAccountViewSet, "billing-account", True, get="retrieve", patch="partial_update"),
    "subscription": native_view(SubscriptionViewSet, "billing-subscription", True, get="retrieve"),
    "transactions": native_view(LedgerEntryViewSet, "billing-transactions", get="list"),
    "plans": native_view(PlanViewSet, "billing-plans", get="list"),
    "usage": native_view(UsageStatsViewSet, "billing-usage-stats", True, get="retrieve"),
    "orders": native_view(OrderViewSet, "billing-orders", get="list"),
    "order": native_view(OrderViewSet, "billing-orders", True, get="retrieve"),
    "checkout": native_view(CheckoutViewSet, "billing-checkout", post="create"),
    "portal": native_view(PortalViewSet, "billing-portal", post="create"),
    "seat": native_view(MyEntitlementViewSet, "billing-entitlements-me", True, get="retrieve"),
    "card": native_view(PaymentMethodViewSet, "billing-payment-method", True, get="retrieve", post="create",
                        delete="destroy"),
}


def _platform_key(request: HttpRequest) -> str | None:
    key = request.session.get(SESSION_PLATFORM)
    return key if isinstance(key, str) else None


def _sign_in(request: HttpRequest, user: Any, platform_key: str) -> HttpResponse:
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session[SESSION_PLATFORM] = platform_key
    return redirect("billing-page")


@require_http_methods(["GET"])
def sign_in_link(request: HttpRequest, token: str) -> HttpResponse:
    """Opening a sign-in link: the member is signed in (a new session) and lands on the page, once."""
    try:
        user, platform = sign_in_link_use(token=token, now=timezone.now())
    except SignInLinkInvalid as exc:
        return render(request, "billing/sign_in.html", {"error": exc.message, "link_refused": True}, status=410)
    return _sign_in(request, user, platform.platform_key)


@require_http_methods(["GET", "POST"])
def sign_in_form(request: HttpRequest) -> HttpResponse:
    """A member with a password signs in here (the JWT login's limits apply: the same counted failures)."""
    if request.method == "GET":
        return render(request, "billing/sign_in.html", {})
    username = str(request.POST.get("username", ""))[:150]
    password = str(request.POST.get("password", ""))[:1024]
    ip, now = client_address(request.META), timezone.now()
    context: dict[str, Any] = {"username": username}
    try:
        login_failures_check(username=username, ip=ip, now=now)
    except LoginAttemptsExceeded as exc:
        context["error"] = f"{exc.message} (about {max(1, exc.retry_after // 60)} min)"
        return render(request, "billing/sign_in.html", context, status=429)
    user = authenticate(request, username=username, password=password) if username and password else None
    if user is None or not user.is_active:
        login_failure_record(username=username, ip=ip, now=now)
        context["error"] = "The username or the password is wrong."
        return render(request, "billing/sign_in.html", context, status=401)
    memberships = membership_list_for_user(user=user)
    if not memberships:
        context["error"] = "You are not a member of any platform."
        return render(request, "billing/sign_in.html", context, status=403)
    return _sign_in(request, user, memberships[0].platform.platform_key)


@require_http_methods(["POST"])
def sign_out(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect("billing-sign-in")


def _native(request: HttpRequest, name: str, **kwargs: Any) -> Any:
    """The native view ``name``'s response, acting in the session's platform. A write goes with the CSRF token
    the page's own form was checked with (the native view checks it again); the page's reads after a write are
    reads (GET)."""
    headers = {"X-Platform-Key": _platform_key(request) or ""}
    if "body" in kwargs or kwargs.get("method"):
        headers["X-CSRFToken"] = get_token(request)
        kwargs.setdefault("method", "POST")
    else:
        kwargs["method"] = "GET"
    return forward(request, NATIVE[name], headers=headers, **kwargs)


def _usage_chart(usage: dict[str, Any]) -> dict[str, Any]:
    """Bars of credits consumed per day, scaled to the busiest day (exact decimals; the chart only draws)."""
    days = [(bucket["period_start"][:10], Decimal(bucket["credits_consumed"]), bucket["total_requests"])
            for bucket in usage["buckets"]]
    top = max((credits for _, credits, _ in days), default=Decimal(0))
    bars = []
    for index, (day, credits, requests) in enumerate(days):
        height = int(credits / top * 100) if top else 0
        bars.append({"day": day, "credits": credits, "requests": requests, "x": index * 20, "y": 105 - height,
                     "height": height})
    return {"bars": bars, "top": top, "width": len(bars) * 20,
            "total": usage["credits_consumed"], "requests": usage["total_requests"],
            "by_endpoint": list(usage["requests_by_endpoint"].items())}


def _usage(request: HttpRequest, known: dict[str, Any]) -> tuple[dict[str, Any], int]:
    today = timezone.now().date()
    usage = _native(request, "usage", query={"period": "daily", "from": str(today - timedelta(days=USAGE_DAYS - 1)),
                                             "to": str(today)})
    return {"usage": _usage_chart(usage.data) if usage.status_code == 200 else None}, 200


def _history(request: HttpRequest, known: dict[str, Any]) -> tuple[dict[str, Any], int]:
    filters = {name: request.GET.get(name, "") for name in HISTORY_FILTERS}
    query = {name: value for name, value in filters.items() if value} | {"page_size": HISTORY_PAGE_SIZE}
    history = _native(request, "transactions", query=query)
    error = history.data.get("error") if history.status_code >= 400 else None
    page = int(filters["page"]) if filters["page"].isdigit() else 1
    return {
        "history": None if error else history.data,
        "history_error": error,
        "filters": filters,
        "transaction_types": TransactionType.choices,
        "page": page,
        "previous_page": page - 1 if page > 1 and not error else None,
        "next_page": page + 1 if not error and history.data.get("next") else None,
    }, history.status_code if error else 200


def _subscription(request: HttpRequest) -> dict[str, Any] | None:
    subscription = _native(request, "subscription", query={})
    return subscription.data.get("subscription") if subscription.status_code == 200 else None


def _plans(request: HttpRequest, known: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The plans on sale; "Upgrade" only without a current subscription (the page's top knows it already)."""
    plans = _native(request, "plans", query={"page_size": 100})
    rows = [{**plan, "price_monthly_usd": Decimal(plan["price_monthly"]) / 100}
            for plan in plans.data["results"]] if plans.status_code == 200 else []
    subscription = known["subscription"] if "subscription" in known else _subscription(request)
    return {"plans": rows, "subscription": subscription}, 200


def _card(request: HttpRequest, known: dict[str, Any]) -> tuple[dict[str, Any], int]:
    card = _native(request, "card", query={})
    return {"card": card.data if card.status_code == 200 else None}, 200


def _orders(request: HttpRequest, known: dict[str, Any]) -> tuple[dict[str, Any], int]:
    orders = _native(request, "orders", query={"page_size": ORDERS_SHOWN})
    return {"orders": orders.data["results"] if orders.status_code == 200 else []}, 200


# The sections below the top of the page: each its own native call(s), rendered in the page (``?full=1``, and after
# a form) or loaded after the first paint from ``fragment/<name>/``.
SECTIONS = {"usage": _usage, "history": _history, "plans": _plans, "card": _card, "orders": _orders}


def _render(request: HttpRequest, template: str, context: dict[str, Any], status: int) -> HttpResponse:
    # The reader's language (Accept-Language) for numbers and dates; the page's own words are English until
    # translations are added (its strings are marked for them).
    with translation.override(translation.get_language_from_request(request)):
        return render(request, template, context, status=status)


def _page(request: HttpRequest, *, notice: str | None = None, problem: dict[str, Any] | None = None,
          typed: Any = None, status: int = 200) -> HttpResponse:
    """The page. Its top (plan, credits, seat; the order a checkout came back with) is in the first response; the
    sections below it (``SECTIONS``) follow it, unless the page is asked ``?full=1`` or answers a form (``problem``
    or ``notice``: the section that refused shows why). ``problem``: an API error to show beside its form."""
    platform_key = _platform_key(request)
    if not request.user.is_authenticated or platform_key is None:
        return redirect("billing-sign-in")
    account = _native(request, "account", query={})
    if account.status_code != 200:  # e.g. the membership was removed since: the API's own refusal
        return _render(request, "billing/error.html", {"error": account.data.get("error", {})},
                       account.status_code)
    seat = _native(request, "seat", query={})
    full = request.GET.get("full") == "1" or problem is not None or notice is not None
    context = {
        "platform_key": platform_key,
        "account": account.data,
        "subscription": _subscription(request),
        "seat": seat.data.get("seat") if seat.status_code == 200 else None,
        "waiting_order": _waiting_order(request),
        "notice": notice,
        "problem": problem,
        "typed": typed or {},
        "full": full,
    }
    if full:
        for section in SECTIONS.values():
            part, part_status = section(request, context)
            context |= part
            if part_status != 200 and status == 200:
                status = part_status
    return _render(request, "billing/page.html", context, status)


def _waiting_order(request: HttpRequest) -> dict[str, Any] | None:
    """Back from a checkout (``?checkout=done``): the newest order as the API shows it now. The page refreshes
    itself while it is pending: what counts is the provider's webhook, never the redirect."""
    if request.GET.get("checkout") != "done":
        return None
    orders = _native(request, "orders", query={"page_size": 1})
    return orders.data["results"][0] if orders.status_code == 200 and orders.data["results"] else None


@require_http_methods(["GET"])
def fragment(request: HttpRequest, name: str) -> HttpResponse:
    """One section below the page's top, as the page loads it after its first paint (with the page's query)."""
    if name not in SECTIONS:
        return HttpResponse(status=404)
    if not request.user.is_authenticated or _platform_key(request) is None:
        return HttpResponse(status=401)
    context, status = SECTIONS[name](request, {})
    return _render(request, f"billing/sections/{name}.html", context, status)


@require_http_methods(["GET"])
def billing_page(request: HttpRequest) -> HttpResponse:
    """The member's billing page."""
    return _page(request)


def _back_url(request: HttpRequest, **params: str) -> str:
    url = request.build_absolute_uri(reverse("billing-page"))
    return url + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")


# The API's field names as the page's forms label them (a refusal names what the person typed in).
FIELD_LABELS = {
    "amount": "Amount (USD)",
    "auto_recharge_threshold_usd": "When available credits fall below",
    "auto_recharge_amount_usd": "Top up by",
    "auto_recharge_spending_limit_usd": "At most per month",
    "auto_recharge_enabled": "Top up automatically",
    "plan_id": "Plan",
    "success_url": "Return address",
    "cancel_url": "Return address",
}


def _refused(request: HttpRequest, response: Any, form: str) -> HttpResponse:
    """The page again, with the API's error beside ``form`` (its fields named by their labels), what was typed
    kept in the form, and the API's status."""
    error = response.data.get("error", {}) if isinstance(response.data, dict) else {}
    details = error.get("details") if isinstance(error.get("details"), dict) else {}
    problems = [(FIELD_LABELS.get(field, field), messages if isinstance(messages, list) else [messages])
                for field, messages in details.items()]
    problem = {"form": form, "code": error.get("code"), "message": error.get("message"), "fields": problems}
    return _page(request, problem=problem, typed=request.POST, status=response.status_code)


@require_http_methods(["POST"])
def checkout(request: HttpRequest) -> HttpResponse:
    """Upgrade (``plan_id``) or top up (``amount``): the native checkout, then the provider's page. The provider
    sends the member back to ``/billing/?checkout=done``, where the page waits for the webhook."""
    if _platform_key(request) is None or not request.user.is_authenticated:
        return redirect("billing-sign-in")
    if request.POST.get("plan_id"):
        body = {"channel": "stripe", "type": "subscription", "plan_id": request.POST["plan_id"],
                "billing_cycle": request.POST.get("billing_cycle") or "monthly"}
        form = "plans"
    else:
        body = {"channel": "stripe", "type": "top_up", "amount": request.POST.get("amount", ""),
                "save_payment_method": request.POST.get("save_payment_method") == "on"}
        form = "top-up"
    body |= {"success_url": _back_url(request, checkout="done"), "cancel_url": _back_url(request)}
    response = _native(request, "checkout", query={}, body=body)
    if response.status_code != 201:
        return _refused(request, response, form)
    return redirect(response.data["url"])


@require_http_methods(["POST"])
def portal(request: HttpRequest) -> HttpResponse:
    if _platform_key(request) is None or not request.user.is_authenticated:
        return redirect("billing-sign-in")
    response = _native(request, "portal", query={}, body={"return_url": _back_url(request)})
    if response.status_code != 200:
        return _refused(request, response, "subscription")
    return redirect(response.data["url"])


@require_http_methods(["POST"])
def card(request: HttpRequest) -> HttpResponse:
    """Save a card (Stripe's setup page) or forget it."""
    if _platform_key(request) is None or not request.user.is_authenticated:
        return redirect("billing-sign-in")
    if request.POST.get("action") == "forget":
        response = _native(request, "card", query={}, method="DELETE")
        if response.status_code != 204:
            return _refused(request, response, "card")
        return _page(request, notice="Your card was removed; auto-recharge is off.")
    response = _native(request, "card", query={}, body={"success_url": _back_url(request, card="saved"),
                                                        "cancel_url": _back_url(request)})
    if response.status_code != 201:
        return _refused(request, response, "card")
    return redirect(response.data["url"])


@require_http_methods(["POST"])
def auto_recharge(request: HttpRequest) -> HttpResponse:
    """The auto-recharge settings, as the native ``PATCH /account/`` takes and judges them."""
    if _platform_key(request) is None or not request.user.is_authenticated:
        return redirect("billing-sign-in")
    body: dict[str, Any] = {"auto_recharge_enabled": request.POST.get("enabled") == "on"}
    for field, name in (("threshold", "auto_recharge_threshold_usd"), ("amount", "auto_recharge_amount_usd"),
                        ("spending_limit", "auto_recharge_spending_limit_usd")):
        value = request.POST.get(field, "").strip()
        body[name] = value or None
    response = _native(request, "account", query={}, body=body, method="PATCH")
    if response.status_code != 200:
        return _refused(request, response, "auto-recharge")
    return _page(request, notice="Auto-recharge settings saved.")


urlpatterns = [
    path("", billing_page, name="billing-page"),
    path("fragment/<str:name>/", fragment, name="billing-page-fragment"),
    path("checkout/", checkout, name="billing-page-checkout"),
    path("portal/", portal, name="billing-page-portal"),
    path("card/", card, name="billing-page-card"),
    path("auto-recharge/", auto_recharge, name="billing-page-auto-recharge"),
    path("sign-in/", sign_in_form, name="billing-sign-in"),
    path("sign-in/<str:token>/", sign_in_link, name="billing-page-sign-in"),
    path("sign-out/", sign_out, name="billing-sign-out"),
]
