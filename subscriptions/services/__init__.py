"""Every write of the subscriptions app: plans (``plans``) and subscriptions (``subscriptions``); see each
module for its rules. Views and other apps import from here."""

from subscriptions.services.common import UNSET, as_uuid
from subscriptions.services.plans import plan_conflicts, plan_create, plan_update, plan_update_problems
from subscriptions.services.subscriptions import (
    SubscriptionResult,
    subscription_change_plan,
    subscription_set_status,
    subscription_start,
)

__all__ = [
    "UNSET",
    "SubscriptionResult",
    "as_uuid",
    "plan_conflicts",
    "plan_create",
    "plan_update",
    "plan_update_problems",
    "subscription_change_plan",
    "subscription_set_status",
    "subscription_start",
]
