"""Reads of the payments app."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from accounts.models import Platform
from credits.models import CreditAccount
from payments.models import Order, PlatformPaymentSettings
from subscriptions.models import Provider, Subscription

_FORBIDDEN_URL_CHARS = frozenset("\\ \t\r\n\x00")


def payment_settings_for(*, platform: Platform) -> PlatformPaymentSettings:
    """The platform's payment settings, or (unsaved) the defaults when it has none."""
    found = PlatformPaymentSettings.objects.filter(platform=platform).first()
    return found or PlatformPaymentSettings(platform=platform)


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute http(s) URL, normalised (lowercase, default port dropped); None
    for anything else: another scheme, no host, credentials in the authority, backslashes or whitespace
    (which browsers and parsers disagree about), an invalid port."""
    if not isinstance(url, str) or any(
        ch in _FORBIDDEN_URL_CHARS or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url
    ):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc or not parts.hostname:
        return None
    default_port = 443 if scheme == "https" else 80
    suffix = f":{port}" if port is not None and port != default_port else ""
    return f"{scheme}://{parts.hostname.lower()}{suffix}"


def allowed_redirect_origins(*, platform: Platform) -> frozenset[str]:
    """The origins a checkout of the platform may send the customer back to: the deployment's
    ``CHECKOUT_ALLOWED_ORIGINS`` and the platform's own list."""
    own = payment_settings_for(platform=platform).allowed_redirect_origins or []
    configured = [*settings.CHECKOUT_ALLOWED_ORIGINS, *own]
    return frozenset(origin for origin in (origin_of(str(item)) for item in configured) if origin)


def order_list(*, platform: Platform, user: AbstractBaseUser) -> QuerySet[Order]:
    """The user's orders in the platform, newest first."""
    return Order.objects.filter(platform=platform, user=user).order_by("-created_at", "-id")


def order_get(*, order_id: uuid.UUID | str, platform: Platform, user: AbstractBaseUser) -> Order | None:
    try:
        order_id = uuid.UUID(str(order_id))
    except ValueError:
        return None
    return order_list(platform=platform, user=user).filter(pk=order_id).first()


def stripe_customer_of(*, account: CreditAccount) -> str:
    """The account's Stripe customer id: its latest Stripe subscription's, else its latest Stripe order's
    ("" when it has never reached Stripe checkout with a customer)."""
    found = (
        Subscription.objects.filter(account=account, provider=Provider.STRIPE)
        .exclude(provider_customer_id="")
        .order_by("-created_at")
        .values_list("provider_customer_id", flat=True)
        .first()
    )
    return found or (
        Order.objects.filter(account=account, channel="stripe")
        .exclude(provider_customer_id="")
        .order_by("-created_at")
        .values_list("provider_customer_id", flat=True)
        .first()
        or ""
    )
