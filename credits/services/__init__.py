"""Every write of the credits app. Views and other apps import from here."""

from credits.services.balances import (
    RemovalResult,
    account_ensure,
    alert_threshold_set,
    credits_adjust,
    credits_debit,
    credits_expire_plan,
    credits_grant,
    credits_refund,
    credits_reverse_purchase,
    external_funding_set,
    low_balance_threshold_set,
)
from credits.services.expiry import ExpiryRun, checkin_credits_expire
from credits.services.holds import (
    DEFAULT_HOLD_SECONDS,
    MAX_HOLD_SECONDS,
    HoldResult,
    hold_capture,
    hold_create,
    hold_release,
    holds_release_expired,
)
from credits.services.rate_card import model_price_create
from credits.services.rollups import ledger_rollups_backfill, ledger_rollups_refresh, ledger_rollups_refresh_range
from credits.services.usage import UsageResult, usage_capture, usage_record
from credits.services.usage_events import UsageInput
from credits.services.usage_batch import BatchOutcome, usage_record_batch

__all__ = [
    "ExpiryRun",
    "checkin_credits_expire",
    "BatchOutcome",
    "UsageInput",
    "UsageResult",
    "usage_capture",
    "usage_record",
    "usage_record_batch",
    "DEFAULT_HOLD_SECONDS",
    "MAX_HOLD_SECONDS",
    "HoldResult",
    "RemovalResult",
    "account_ensure",
    "alert_threshold_set",
    "credits_adjust",
    "credits_debit",
    "credits_expire_plan",
    "credits_grant",
    "credits_refund",
    "credits_reverse_purchase",
    "external_funding_set",
    "hold_capture",
    "low_balance_threshold_set",
    "model_price_create",
    "hold_create",
    "ledger_rollups_backfill",
    "ledger_rollups_refresh",
    "ledger_rollups_refresh_range",
    "hold_release",
    "holds_release_expired",
]
