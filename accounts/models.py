"""Platforms (tenants) and the memberships that give users a role in them."""

from __future__ import annotations

import hashlib
import re
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

PLATFORM_KEY_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
platform_key_validator = RegexValidator(
    rf"^{PLATFORM_KEY_RE.pattern}$",
    "A platform key is 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit.",
)


def secret_digest(secret: str) -> str:
    """What is stored of a secret handed out once (an API token's key, a sign-in link's token): its SHA-256, hex.
    Those secrets are random (128 bits or more), so a fast hash is enough: nothing can be guessed from it."""
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def time_zone_validator(value: str) -> None:
    if not time_zone_known(value):
        raise ValidationError(f"Unknown time zone {value!r}: use an IANA name such as 'Europe/Paris'.")


def time_zone_known(value: object) -> bool:
    if not isinstance(value, str) or not value or value != value.strip():
        return False
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


class Platform(models.Model):
    platform_key = models.CharField(max_length=63, unique=True, validators=[platform_key_validator])
    name = models.CharField(max_length=200)
    time_zone = models.CharField(
        max_length=64, default="UTC", validators=[time_zone_validator],
        help_text="An IANA time zone (Europe/Paris): a seat's weekly budget renews on Monday 00:00 there.",
    )
    alert_threshold_default = models.DecimalField(
        max_digits=20, decimal_places=6, null=True, blank=True,
        help_text="The balance alert threshold of the platform's new credit accounts (outbound webhooks "
                  "balance.low / balance.depleted); set with PUT /api/billing/admin/balance-alerts/.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["platform_key"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(platform_key__regex=rf"^{PLATFORM_KEY_RE.pattern}$"),
                name="platform_key_format",
            )
        ]

    def __str__(self) -> str:
        return self.platform_key


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


ADMIN_ROLES = frozenset({Role.OWNER, Role.ADMIN})


class Membership(models.Model):
    platform = models.ForeignKey(Platform, on_delete=models.PROTECT, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["platform_id", "user_id"]
        constraints = [
            models.UniqueConstraint(fields=["platform", "user"], name="membership_unique_user_per_platform"),
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.platform} ({self.role})"

    @property
    def is_admin(self) -> bool:
        return self.role in ADMIN_ROLES


class LoginFailure(models.Model):
    """A failed password login (``POST /api/auth/jwt/``): what the brute-force limits count, per username and per
    client address, in a sliding window (``accounts.services.login_failures_check``). In PostgreSQL, so every
    worker shares the count; rows older than the window are deleted as new ones come."""

    id = models.BigAutoField(primary_key=True)
    username = models.CharField(max_length=150, help_text="As typed, in lower case.")
    ip = models.GenericIPAddressField(null=True, blank=True, help_text="The client's address (REMOTE_ADDR).")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["username", "created_at"], name="login_failure_username"),
            models.Index(fields=["ip", "created_at"], name="login_failure_ip"),
            models.Index(fields=["created_at"], name="login_failure_created"),  # the purge of old rows
        ]

    def __str__(self) -> str:
        return f"{self.username} from {self.ip} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class SignInLink(models.Model):
    """A short-lived, single-use link that signs a member in to the billing page (``/billing/``): minted by the
    platform's backend (``POST /api/billing/admin/page-links/``), so its users need no second login. Only the
    token's SHA-256 is kept; the token itself is in the URL handed out once."""

    id = models.BigAutoField(primary_key=True)
    token_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    platform = models.ForeignKey(Platform, on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(expires_at__gt=models.F("created_at")),
                                   name="sign_in_link_expires_after_creation"),
        ]

    def __str__(self) -> str:
        return f"sign-in link for {self.user_id} @ {self.platform_id} ({'used' if self.used_at else 'unused'})"



class ApiToken(models.Model):
    """An API key (``Authorization: Token <key>``). Only the key's SHA-256 is kept: the key itself is shown once,
    when issued (``accounts.tokens.token_issue``). A token may be scoped to one platform (it acts there and
    nowhere else, as a JWT does), may expire, and is revoked by setting ``revoked_at`` (the row stays, for the
    record of who held what)."""

    id = models.BigAutoField(primary_key=True)
    digest = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the key, hexadecimal.")
    prefix = models.CharField(max_length=8, help_text="The key's first characters, to tell keys apart.")
    name = models.CharField(max_length=100, blank=True, default="")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens",
                             db_index=False)  # api_token_user leads with it
    platform = models.ForeignKey(Platform, on_delete=models.CASCADE, null=True, blank=True, related_name="+",
                                 help_text="Empty: the token acts in any platform its user belongs to.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: it does not expire.")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "created_at"], name="api_token_user")]
        constraints = [
            models.CheckConstraint(condition=models.Q(digest__regex=r"^[0-9a-f]{64}$"), name="api_token_digest_hex"),
            models.CheckConstraint(condition=models.Q(expires_at__isnull=True)
                                   | models.Q(expires_at__gt=models.F("created_at")),
                                   name="api_token_expires_after_creation"),
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… of {self.user_id}" + (f" @ {self.platform_id}" if self.platform_id else "")



class RateCounter(models.Model):
    """Requests counted per public endpoint scope and client address in fixed windows (``accounts.throttles``): in
    PostgreSQL, so every worker of every web server shares the count. One row per key and window, incremented by one
    upsert; windows past are deleted as new ones open."""

    id = models.BigAutoField(primary_key=True)
    key = models.CharField(max_length=200, help_text="scope:client address")
    window_start = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "window_start"], name="rate_counter_key_window")]
        indexes = [models.Index(fields=["window_start"], name="rate_counter_window")]

    def __str__(self) -> str:
        return f"{self.key} @ {self.window_start:%H:%M:%S}: {self.count}"


# Outbound webhooks (their own module: a platform's endpoints, the outbox, deliveries and attempts).
from accounts.outbound_models import (  # noqa: E402, F401 - registered with the app
    DeliveryStatus,
    OutboundAttempt,
    OutboundDelivery,
    OutboundEvent,
    OutboundEventType,
    WebhookEndpoint,
)

