"""Single-row changes of credit accounts: grants, debits, adjustments, refunds.

Each public service is atomic: the debit family is a single statement (see ``credits.ledger``), the
multi-row ones (holds, captures, refunds) open a transaction. Every service that a client may retry
takes an ``idempotency_key``, unique per account: the same key with the same arguments returns the
first result (``replayed=True``), with other arguments it raises ``IdempotencyConflict``.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Sum

from accounts.models import Platform
from billing_service.money import format_money
from credits import ledger
from credits.errors import AccountNotFound, EntryNotFound, InvalidRefundTarget, RefundExceedsOriginal
from credits.ledger import Posting, PostResult
from credits.locks import account_lock
from credits.models import CreditAccount, LedgerEntry, TransactionType
from credits.services.common import actor_id_of, require_positive

# --- accounts ---------------------------------------------------------------------------------------


def account_ensure(*, platform: Platform, user: AbstractBaseUser | None) -> CreditAccount:
    """The credit account of a member (or, with ``user=None``, of the platform); created if missing."""
    account, _ = CreditAccount.objects.get_or_create(platform=platform, user=user)
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
) -> PostResult:
    """Adds credits (top-up, purchase, plan grant, promotion): an ``add`` row."""
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
        already = idempotency_key and LedgerEntry.objects.filter(
            account_id=account_id, idempotency_key=idempotency_key
        ).exists()
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
