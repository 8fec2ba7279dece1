"""The only place this app locks, always in this order:

1. a platform's plans (``platform_plans_lock``, advisory), then the plan row being changed (``plan_lock``);
2. an account's subscriptions (``account_subscriptions_lock``, advisory);
3. subscription rows, by primary key (``subscription_lock``);

and all of them before any lock of the credits app (``credits.locks``: accounts, then holds), which the ledger
takes last. Payments takes its own locks before these (``payments.locks``).

The first two are transaction-scoped PostgreSQL advisory locks, not row locks: the rows they stand for
(``accounts_platform``, ``credits_creditaccount``) are on the credit hot path (every ledger insert takes a key
share on the platform, every debit updates the account), and plan or subscription writes must never queue
behind or in front of them."""

from __future__ import annotations

import uuid

from django.db import connection

from subscriptions.models import Plan, Subscription

# The first key of pg_advisory_xact_lock(int, int): one namespace per kind of lock ("SP" and "SA").
_PLANS = 0x5350
_ACCOUNT_SUBSCRIPTIONS = 0x5341


def platform_plans_lock(*, platform_id: int) -> None:
    """Serializes the writes of one platform's plans (their slugs and provider ids are unique together)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [_PLANS, str(platform_id)])


def account_subscriptions_lock(*, account_id: uuid.UUID | str) -> None:
    """Serializes the subscription writes of one credit account."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [_ACCOUNT_SUBSCRIPTIONS, str(account_id)]
        )


def subscription_lock(*, subscription_id: uuid.UUID | str) -> Subscription | None:
    return Subscription.objects.select_for_update().filter(pk=subscription_id).first()


def plan_lock(*, plan_id: uuid.UUID | str) -> Plan:
    """The plan row, locked (after ``platform_plans_lock`` of its platform). ``Plan.DoesNotExist`` when missing."""
    return Plan.objects.select_for_update().get(pk=plan_id)
