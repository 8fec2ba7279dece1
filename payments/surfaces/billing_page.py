"""The billing page (``/billing/``): what a member sees under Settings > Billing (ibl-billing-account-api.txt), as
server-rendered HTML over the native API views (``billing_service.surfaces.forward``), so every figure, filter,
page and error is the API's own: no rule is written twice.

A member arrives signed in: by a single-use link that the platform's backend mints
(``POST /api/billing/admin/page-links/``, ``accounts.services.sign_in_link_use``), or with a password through the
form (``/billing/sign-in/``, under the brute-force limits of the JWT login). The session remembers the platform
the member signed in to; every native call acts in it (``X-Platform-Key``)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate, login, logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from accounts.errors import LoginAttemptsExceeded, SignInLinkInvalid
from accounts.selectors import membership_list_for_user
from accounts.services import login_failure_record, login_failures_check, sign_in_link_use
from billing_service.surfaces import forward, native_view
from credits.api.views import LedgerEntryViewSet
from credits.models import TransactionType
from payments.api.account_views import CreditAccountViewSet
from subscriptions.api.views import SubscriptionViewSet

SESSION_PLATFORM = "billing_platform"  # the platform_key the member signed in to
HISTORY_PAGE_SIZE = 20
HISTORY_FILTERS = ("transaction_type", "from_date", "to_date", "page")

NATIVE = {
    "account": native_view(CreditAccountViewSet, "billing-account", True, get="retrieve"),
    "subscription": native_view(SubscriptionViewSet, "billing-subscription", True, get="retrieve"),
    "transactions": native_view(LedgerEntryViewSet, "billing-transactions", get="list"),
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
    ip, now = request.META.get("REMOTE_ADDR") or None, timezone.now()
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


@require_http_methods(["GET"])
def billing_page(request: HttpRequest) -> HttpResponse:
    """The member's billing page: plan, balance and history (filtered and paged as the API's listing)."""
    platform_key = _platform_key(request)
    if not request.user.is_authenticated or platform_key is None:
        return redirect("billing-sign-in")
    headers = {"X-Platform-Key": platform_key}
    account = forward(request, NATIVE["account"], query={}, headers=headers)
    if account.status_code != 200:  # e.g. the membership was removed since: the API's own refusal
        return render(request, "billing/error.html", {"error": account.data.get("error", {})},
                      status=account.status_code)
    subscription = forward(request, NATIVE["subscription"], query={}, headers=headers)
    filters = {name: request.GET.get(name, "") for name in HISTORY_FILTERS}
    query = {name: value for name, value in filters.items() if value} | {"page_size": HISTORY_PAGE_SIZE}
    history = forward(request, NATIVE["transactions"], query=query, headers=headers)
    history_error = history.data.get("error") if history.status_code >= 400 else None
    page = int(filters["page"]) if filters["page"].isdigit() else 1
    context = {
        "platform_key": platform_key,
        "account": account.data,
        "subscription": subscription.data.get("subscription") if subscription.status_code == 200 else None,
        "history": None if history_error else history.data,
        "history_error": history_error,
        "filters": filters,
        "transaction_types": TransactionType.choices,
        "page": page,
        "previous_page": page - 1 if page > 1 and not history_error else None,
        "next_page": page + 1 if not history_error and history.data.get("next") else None,
    }
    return render(request, "billing/page.html", context, status=200 if not history_error else 400)


urlpatterns = [
    path("", billing_page, name="billing-page"),
    path("sign-in/", sign_in_form, name="billing-sign-in"),
    path("sign-in/<str:token>/", sign_in_link, name="billing-page-sign-in"),
    path("sign-out/", sign_out, name="billing-sign-out"),
]
