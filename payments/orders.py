"""An order's life after checkout: paid and credited, failed, linked to its subscription, flagged for review.

The handlers of every provider (``payments.webhooks.stripe_handlers`` / ``.creem_handlers``) call these with the order locked
(``payments.locks.order_lock``) inside the webhook's transaction; ``order_checkout_failed`` opens its own (the
checkout calls it after the provider failed). The one crediting rule of a paid top-up is ``order_credit``: one
``add`` row per order, keyed ``order:<id>``, whichever event or provider reports the payment and however often."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from accounts import outbound
from accounts.outbound_models import OutboundEventType
from credits.services import credits_grant
from payments import locks
from payments.models import Order, OrderStatus

UNPAID_STATUSES = (OrderStatus.PENDING, OrderStatus.FAILED)
# what crediting changes on the order (with the provider's ids the handler recorded before it)
_PAID_FIELDS = ["status", "paid_at", "amount_paid_usd", "ledger_entry", "last_error", "provider_checkout_id",
                "provider_payment_id", "provider_customer_id", "updated_at"]
PAID_STATUSES = (OrderStatus.PAID, OrderStatus.REFUNDED, OrderStatus.PARTIALLY_REFUNDED)


def order_is_credited(order: Order) -> bool:
    """Paid and its credits granted (a subscription order that grants none counts as credited once paid)."""
    if order.status in (*UNPAID_STATUSES, OrderStatus.CANCELED):
        return False
    return order.ledger_entry_id is not None or order.credits == 0


def order_credit(order: Order, *, amount_paid_usd: Decimal) -> None:
    """Credits a paid top-up (the order locked, not paid yet) and marks it paid."""
    result = credits_grant(
        account_id=order.account_id,
        amount=order.credits,
        payment_amount_usd=order.amount_usd,
        description=f"Top-up via {order.channel}",
        reference=f"order:{order.id}",
        metadata={"order_id": str(order.id), "channel": order.channel},
        idempotency_key=f"order:{order.id}",
        key_locked=True,  # the order's row lock: no other delivery writes this key meanwhile
    )
    order_mark_paid(order, amount_paid_usd=amount_paid_usd)
    order.ledger_entry_id = result.entry.id
    order.save(update_fields=_PAID_FIELDS)


def order_mark_paid(order: Order, *, amount_paid_usd: Decimal | None = None) -> None:
    """A pending or failed order becomes paid (unsaved); ``amount_paid_usd`` is recorded when given."""
    became_paid = order.status in UNPAID_STATUSES
    if became_paid:
        order.status = OrderStatus.PAID
        order.paid_at = timezone.now()
        order.last_error = ""
    if amount_paid_usd is not None:
        order.amount_paid_usd = amount_paid_usd
    if became_paid:  # the platform hears of it when the order's transaction commits
        outbound.event_record(
            platform_id=order.platform_id, type=OutboundEventType.ORDER_PAID, account_id=order.account_id,
            data={"order_id": order.pk, "type": order.type, "channel": order.channel, "user_id": order.user_id,
                  "amount_usd": order.amount_usd, "amount_paid_usd": order.amount_paid_usd, "credits": order.credits,
                  "paid_at": order.paid_at},
        )


def order_fail(order: Order, reason: str) -> bool:
    """A pending order's payment failed (unsaved); returns whether it did (a paid one stays paid)."""
    if order.status != OrderStatus.PENDING:
        return False
    order.status, order.failed_at, order.last_error = OrderStatus.FAILED, timezone.now(), reason
    return True


def order_link(order: Order, *, subscription_id: str = "", customer_id: str = "", payment_id: str = "",
               checkout_id: str = "") -> None:
    """Records the provider's ids on the order (unsaved), never replacing one already recorded."""
    order.provider_subscription_id = order.provider_subscription_id or subscription_id
    order.provider_customer_id = order.provider_customer_id or customer_id
    order.provider_payment_id = order.provider_payment_id or payment_id
    order.provider_checkout_id = order.provider_checkout_id or checkout_id


def order_refund_record(
    order: Order, *, removed: Decimal, shortfall: Decimal, review_note: str = "",
    amount_refunded_usd: Decimal | None = None, full: bool | None = None,
) -> None:
    """Records a refund on the order (unsaved): the credits it took back, those already spent (the order flagged
    for review with ``review_note``), what was refunded so far, and its status (``full``; None: unchanged)."""
    order.credits_reversed += removed
    order.refund_shortfall_credits += shortfall
    if shortfall > 0:
        order.needs_review, order.last_error = True, review_note
    if amount_refunded_usd is not None:
        order.amount_refunded_usd = amount_refunded_usd
    if full is not None:
        order.status = OrderStatus.REFUNDED if full else OrderStatus.PARTIALLY_REFUNDED
        order.refunded_at = order.refunded_at or timezone.now()


def order_flag(*, order_id: uuid.UUID, reason: str, amount_paid_usd: Decimal | None = None) -> None:
    """A provider event disagreed with the order: flagged ``needs_review`` with the reason (the order is locked
    already when this transaction handled the event)."""
    order = locks.order_lock(order_id=order_id)
    if order is None:
        return
    order.needs_review = True
    order.last_error = reason
    if amount_paid_usd is not None:
        order.amount_paid_usd = amount_paid_usd
    order.save(update_fields=["needs_review", "last_error", "amount_paid_usd", "updated_at"])


def order_checkout_failed(*, order_id: uuid.UUID, reason: str) -> None:
    """The provider did not open the checkout: the pending order fails (its own transaction)."""
    with transaction.atomic(durable=True):
        order = locks.order_lock(order_id=order_id)
        if order is not None and order_fail(order, reason):
            order.save(update_fields=["status", "failed_at", "last_error", "updated_at"])
