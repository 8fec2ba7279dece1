"""Reads of the payments app."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Platform
from billing_service.inputs import uuid_or_none
from credits.models import CreditAccount
from entitlements.models import SEATED_STATUSES, AIPlan, SeatProvider, SeatSubscription
from payments.models import (
    Channel,
    Order,
    OrderType,
    PlanCreditPeriod,
    PlatformPaymentSettings,
    WebhookEvent,
    WebhookProvider,
    WebhookStatus,
)
from payments.providers.creem_events import REFUND_CREATED
from payments.providers.stripe_events import INVOICE_PAYMENT_PAID, invoice_payment_facts
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


def invoice_payment_intent_stored(*, invoice_id: str) -> str:
    """The payment intent a stored, paid ``invoice_payment.paid`` names for the invoice, or "" (``invoice.paid``
    reads it when its own payload leaves the payment intent out)."""
    if not invoice_id:
        return ""
    stored = WebhookEvent.objects.filter(
        provider=WebhookProvider.STRIPE, type=INVOICE_PAYMENT_PAID, invoice_id=invoice_id
    ).exclude(payment_intent_id="").order_by("pk").values_list("payment_intent_id", "payload")
    for payment_intent_id, payload in stored:
        if invoice_payment_facts(payload).status == "paid":
            return payment_intent_id
    return ""


def order_of_payment(*, payment_intent_id: str) -> uuid.UUID | None:
    """The Stripe order paid by the payment intent, if any."""
    if not payment_intent_id:
        return None
    return Order.objects.filter(channel=Channel.STRIPE, provider_payment_id=payment_intent_id).values_list(
        "pk", flat=True).first()


def order_of_grant(*, grant_entry_id: uuid.UUID | None) -> uuid.UUID | None:
    """The Stripe subscription order whose first period the ledger row granted, if any."""
    if grant_entry_id is None:
        return None
    return Order.objects.filter(type=OrderType.SUBSCRIPTION, channel=Channel.STRIPE, ledger_entry_id=grant_entry_id
                                ).values_list("pk", flat=True).first()


def invoice_period(*, invoice_id: str) -> tuple[int, uuid.UUID, uuid.UUID | None] | None:
    """The plan period an invoice granted: (its pk, its account, its grant's ledger row), or None."""
    return PlanCreditPeriod.objects.filter(invoice_id=invoice_id).values_list(
        "pk", "subscription__account_id", "grant_entry_id").first()


def creem_refund_processed(*, refund_id: str, other_than: int) -> str | None:
    """The event id of another, already processed Creem ``refund.created`` of refund ``refund_id`` (Creem may
    deliver one refund under several event ids), or None."""
    return WebhookEvent.objects.filter(
        provider=WebhookProvider.CREEM, type=REFUND_CREATED, status=WebhookStatus.PROCESSED, object_id=refund_id,
    ).exclude(pk=other_than).values_list("event_id", flat=True).first()


def webhook_events_to_reprocess(*, older_than_seconds: int, max_attempts: int, limit: int = 500) -> list[int]:
    """Stored events whose processing failed for a passing reason (or never ran), untouched for
    ``older_than_seconds`` and tried fewer than ``max_attempts`` times; not those whose order is flagged for
    review (an operator's)."""
    cutoff = timezone.now() - timezone.timedelta(seconds=older_than_seconds)
    return list(
        WebhookEvent.objects.filter(status__in=[WebhookStatus.RECEIVED, WebhookStatus.FAILED],
                                    updated_at__lt=cutoff, attempts__lt=max_attempts)
        .exclude(order__needs_review=True)
        .order_by("id").values_list("pk", flat=True)[:limit]
    )


# --- seats bought through Stripe ------------------------------------------------------------------------------


def seat_subscription_list(*, platform: Platform) -> QuerySet[SeatSubscription]:
    """The platform's seat subscriptions (every provider and status), newest first, with their plan and platform."""
    return (SeatSubscription.objects.filter(platform=platform).select_related("ai_plan", "platform")
            .order_by("-created_at", "-id"))


def seat_subscription_get(*, platform: Platform, subscription_id: object) -> SeatSubscription | None:
    """One of the platform's seat subscriptions, by its id (None for another platform's, or a malformed id)."""
    pk = uuid_or_none(subscription_id)
    return seat_subscription_list(platform=platform).filter(pk=pk).first() if pk is not None else None


def seat_subscription_seated(*, platform: Platform, ai_plan: AIPlan) -> SeatSubscription | None:
    """The platform's current (active or past due) Stripe subscription of the plan's seats, if any."""
    return SeatSubscription.objects.filter(
        platform=platform, ai_plan=ai_plan, provider=SeatProvider.STRIPE, status__in=SEATED_STATUSES
    ).order_by("-started_at").first()


def seat_customer_of(*, platform: Platform) -> str:
    """The Stripe customer the platform's seats are billed to: its latest Stripe seat subscription's, else its
    latest seats order's ("" when it has bought none yet: Checkout creates one)."""
    return (
        SeatSubscription.objects.filter(platform=platform, provider=SeatProvider.STRIPE)
        .exclude(provider_customer_id="").order_by("-created_at").values_list("provider_customer_id", flat=True)
        .first()
        or Order.objects.filter(platform=platform, type=OrderType.SEATS, channel=Channel.STRIPE)
        .exclude(provider_customer_id="").order_by("-created_at").values_list("provider_customer_id", flat=True)
        .first()
        or ""
    )


def seat_customers_of(*, platform: Platform) -> list[str]:
    """Every Stripe customer the platform's seats were billed to (of its seat subscriptions and seats orders)."""
    subscriptions = SeatSubscription.objects.filter(platform=platform, provider=SeatProvider.STRIPE).exclude(
        provider_customer_id="").values_list("provider_customer_id", flat=True)
    orders = Order.objects.filter(platform=platform, type=OrderType.SEATS, channel=Channel.STRIPE).exclude(
        provider_customer_id="").values_list("provider_customer_id", flat=True)
    return sorted(set(subscriptions) | set(orders))


def platforms_with_stripe_seats() -> list[int]:
    """The platforms that hold, or bought, seats through Stripe: what the periodic refresh reads."""
    subscriptions = SeatSubscription.objects.filter(provider=SeatProvider.STRIPE).values_list("platform_id",
                                                                                               flat=True)
    orders = Order.objects.filter(type=OrderType.SEATS, channel=Channel.STRIPE).exclude(
        provider_customer_id="").values_list("platform_id", flat=True)
    return sorted(set(subscriptions) | set(orders))
