"""Single-row changes of credit accounts: grants, debits, adjustments, refunds.

Each public service is atomic: the debit family is a single statement (see ``credits.ledger``), the
multi-row ones (holds, captures, refunds) open a transaction. Every service that a client may retry
takes an ``idempotency_key``, unique per account: the same key with the same arguments returns the
first result (``replayed=True``), with other arguments it raises ``IdempotencyConflict``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Sum

from accounts.models import Platform
from billing_service.money import format_money
from credits import ledger
from credits.errors import AccountNotFound, EntryNotFound, InvalidRefundTarget, RefundExceedsOriginal
from credits.ledger import Posting, PostResult
from credits.locks import account_lock, accounts_lock
from credits.models import CreditAccount, LedgerEntry, TransactionType
from credits.selectors import ledger_entry_by_key
from credits.services.common import actor_id_of, require_positive

# --- accounts ---------------------------------------------------------------------------------------


def account_ensure(*, platform: Platform, user: AbstractBaseUser | None) -> CreditAccount:
    """The credit account of a member (or, with ``user=None``, of the platform); created if missing."""
    account, _ = CreditAccount.objects.get_or_create(
        # read only when the account is created, as it stands (not as a caller's Platform instance remembers it),
        # waiting for a platform-wide change in progress (``alert_threshold_set`` locks the platform first)
        platform=platform, user=user, defaults={"alert_threshold": lambda: Platform.objects.select_for_update(
            no_key=True).filter(pk=platform.pk).values_list("alert_threshold_default", flat=True).first()}
    )
    return account


@transaction.atomic(durable=True)
def alert_threshold_set(
    *, platform: Platform, threshold: Decimal | None, account_id: uuid.UUID | None = None
) -> int:
    """The balance alert threshold (None: no alerts) of one account of the platform or, without ``account_id``, of
    the platform: every account it has and the ones it will have (``Platform.alert_threshold_default``). The
    platform hears of an account's balance by outbound webhooks (``balance.low`` crossing it, ``balance.depleted``;
    the rule: ``credits.sql.alert_events``). The number of accounts changed (0: no such account)."""
    if threshold is not None and (not isinstance(threshold, Decimal) or not threshold.is_finite() or threshold < 0):
        raise ValueError(f"threshold must be None or a finite Decimal >= 0, got {threshold!r}")
    accounts = CreditAccount.objects.filter(platform=platform)
    if account_id is not None:
        return accounts.filter(pk=account_id).update(alert_threshold=threshold)
    # The platform first (an account created meanwhile reads the new default), then its accounts in primary-key
    # order, as every other path locks them (no deadlock with a usage batch), a thousand at a time.
    Platform.objects.filter(pk=platform.pk).update(alert_threshold_default=threshold)  # locks the platform
    platform.alert_threshold_default = threshold
    changed = 0
    ids = list(accounts.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), 1000):
        chunk = ids[start:start + 1000]
        accounts_lock(chunk)
        changed += CreditAccount.objects.filter(pk__in=chunk).update(alert_threshold=threshold)
    return changed


def low_balance_threshold_set(*, account_id: uuid.UUID | str, threshold: Decimal | None) -> None:
    """Sets the account's ``low_balance_threshold`` (None: no hook): ``settings.CREDITS_LOW_BALANCE_HOOK`` runs
    after a debit leaves ``available`` below it. For a caller that holds the account's lock (``credits.locks``)
    inside its own transaction (payments' auto-recharge settings); opens none."""
    if not connection.in_atomic_block:
        raise RuntimeError("low_balance_threshold_set runs inside the caller's transaction, under the account's lock")
    if threshold is not None and (not isinstance(threshold, Decimal) or not threshold.is_finite() or threshold < 0):
        raise ValueError(f"threshold must be None or a finite Decimal >= 0, got {threshold!r}")
    if not CreditAccount.objects.filter(pk=account_id).update(low_balance_threshold=threshold):
        raise AccountNotFound()


def external_funding_set(*, platform: Platform, user: AbstractBaseUser, funded: bool) -> CreditAccount:
    """Marks the member's account (created if missing) as funded first by ``settings.CREDITS_USAGE_FUNDER`` or
    not, under the account's lock: its usage paths read the mark under the same lock, so a request is funded as
    the mark stood when it began. For a caller inside its own transaction (entitlements' seat assignments, which
    take their seats lock first); opens none."""
    if not connection.in_atomic_block:
        raise RuntimeError("external_funding_set runs inside the caller's transaction")
    account = account_ensure(platform=platform, user=user)
    account_lock(account_id=account.pk)
    CreditAccount.objects.filter(pk=account.pk).update(external_funding=funded)
    return account


# --- single-row changes --------------------------------------------------------------------------------


def credits_grant(
    *,
    account_id: uuid.UUID | str,
    amount: Decimal,
    description: str = "",
    reference: str = "",
    metadata: dict[str, Any] | None = None,
    payment_amount_usd: Decimal | None = None,
    actor: AbstractBaseUser | None = None,
    idempotency_key: str | None = None,
    key_locked: bool = False,
) -> PostResult:
    """Adds credits (top-up, purchase, plan grant, promotion): an ``add`` row. ``key_locked``: the caller holds a
    lock that no other writer of this idempotency key can pass (an order's row lock for ``order:<id>``), so the
    post needs no savepoint to survive losing a race for the key (``ledger.post``'s ``savepoint=False``)."""
    return ledger.post(
        account_id,
        Posting(
            transaction_type=TransactionType.ADD,
            balance_delta=require_positive(amount),
            description=description,
            reference=reference,
            metadata=metadata,
            payment_amount_usd=payment_amount_usd,
            actor_id=actor_id_of(actor),
            idempotency_key=idempotency_key,
        ),
        savepoint=False if key_locked else None,
    )


def credits_debit(
    *,
    account_id: uuid.UUID | str,
    amount: Decimal,
    description: str = "",
    reference: str = "",
    metadata: dict[str, Any] | None = None,
    actor: AbstractBaseUser | None = None,
    idempotency_key: str | None = None,
) -> PostResult:
    """Spends available credits: a ``subtract`` row. Refused (nothing written) beyond ``available``."""
    return ledger.post(
        account_id,
        Posting(
            transaction_type=TransactionType.SUBTRACT,
            balance_delta=-require_positive(amount),
            description=description,
            reference=reference,
            metadata=metadata,
            actor_id=actor_id_of(actor),
            idempotency_key=idempotency_key,
        ),
    )


def credits_adjust(
    *,
    account_id: uuid.UUID | str,
    amount: Decimal,
    description: str,
    actor: AbstractBaseUser | None,
    reference: str = "",
    metadata: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> PostResult:
    """A manual correction by an admin, either sign: an ``adjustment`` row. A removal is refused
    beyond ``available``."""
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount == 0:
        raise ValueError(f"amount must be a non-zero finite Decimal, got {amount!r}")
    return ledger.post(
        account_id,
        Posting(
            transaction_type=TransactionType.ADJUSTMENT,
            balance_delta=amount,
            description=description,
            reference=reference,
            metadata=metadata,
            actor_id=actor_id_of(actor),
            idempotency_key=idempotency_key,
        ),
    )


@transaction.atomic
def credits_refund(
    *,
    account_id: uuid.UUID | str,
    amount: Decimal,
    refund_of_id: uuid.UUID | str | None = None,
    description: str = "",
    reference: str = "",
    metadata: dict[str, Any] | None = None,
    actor: AbstractBaseUser | None = None,
    idempotency_key: str | None = None,
) -> PostResult:
    """Returns spent credits: a ``refund`` row. With ``refund_of_id`` (a ``subtract`` row of the same
    account) the refunds of that row never add up to more than it took."""
    require_positive(amount)
    if refund_of_id is not None:
        # The account lock serialises refunds of one account, so the remaining amount cannot race.
        if account_lock(account_id=account_id) is None:
            raise AccountNotFound()
        original = LedgerEntry.objects.filter(pk=refund_of_id, account_id=account_id).first()
        if original is None:
            raise EntryNotFound()
        if original.transaction_type != TransactionType.SUBTRACT:
            raise InvalidRefundTarget()
        refunded = LedgerEntry.objects.filter(refund_of=original).aggregate(total=Sum("balance_delta"))["total"]
        remaining = -original.balance_delta - (refunded or Decimal(0))
        already = idempotency_key and ledger_entry_by_key(account_id=account_id, key=idempotency_key) is not None
        if amount > remaining and not already:
            raise RefundExceedsOriginal(details={"refundable": format_money(remaining)})
    return ledger.post(
        account_id,
        Posting(
            transaction_type=TransactionType.REFUND,
            balance_delta=amount,
            description=description,
            reference=reference,
            metadata=metadata,
            actor_id=actor_id_of(actor),
            refund_of_id=refund_of_id,
            idempotency_key=idempotency_key,
        ),
    )


# --- removals that stop at what is available ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemovalResult:
    entry: LedgerEntry | None  # None: nothing could be removed (or nothing was asked)
    removed: Decimal  # what the row took (positive)
    shortfall: Decimal  # what was asked but not available (already spent or reserved)
    replayed: bool


def _remove_available(
    *, account_id: uuid.UUID | str, amount: Decimal, transaction_type: str, description: str, reference: str,
    metadata: dict[str, Any] | None, idempotency_key: str,
) -> RemovalResult:
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0:
        raise ValueError(f"amount must be a finite Decimal >= 0, got {amount!r}")
    account = account_lock(account_id=account_id)
    if account is None:
        raise AccountNotFound()
    prior = ledger_entry_by_key(account_id=account_id, key=idempotency_key)
    if prior is not None:
        return RemovalResult(prior, -prior.balance_delta, max(amount + prior.balance_delta, Decimal(0)), True)
    removed = min(amount, max(account.available, Decimal(0)))
    if removed == 0:
        return RemovalResult(None, Decimal(0), amount, False)
    result = ledger.post(
        account_id,
        Posting(
            transaction_type=transaction_type,
            balance_delta=-removed,
            description=description,
            reference=reference,
            metadata={**(metadata or {}), "requested": format_money(amount)},
            idempotency_key=idempotency_key,
        ),
    )
    return RemovalResult(result.entry, removed, amount - removed, result.replayed)


@transaction.atomic
def credits_reverse_purchase(
    *,
    account_id: uuid.UUID | str,
    amount: Decimal,
    idempotency_key: str,
    description: str = "",
    reference: str = "",
    metadata: dict[str, Any] | None = None,
) -> RemovalResult:
    """Takes back credits of a refunded payment: a ``refund`` row with a negative delta. Only what is
    available is taken (the balance never goes negative and reserved credits stay reserved); the rest is the
    ``shortfall`` the caller records (policy: payments flag the order for review). Keyed: a replay returns
    the first row. Runs inside the caller's transaction when there is one (the account row is locked)."""
    return _remove_available(
        account_id=account_id, amount=amount, transaction_type=TransactionType.REFUND, description=description,
        reference=reference, metadata=metadata, idempotency_key=idempotency_key,
    )


@transaction.atomic
def credits_expire_plan(
    *,
    account_id: uuid.UUID | str,
    amount: Decimal,
    idempotency_key: str,
    description: str = "",
    reference: str = "",
    metadata: dict[str, Any] | None = None,
) -> RemovalResult:
    """Removes unused plan credits at a period's end: a ``rollover`` row with a negative delta, never more
    than is available. Keyed: a replay returns the first row."""
    return _remove_available(
        account_id=account_id, amount=amount, transaction_type=TransactionType.ROLLOVER, description=description,
        reference=reference, metadata=metadata, idempotency_key=idempotency_key,
    )
