"""Creem against this service, as far as Creem's API allows.

Creem lists its transactions (``GET /v1/transactions/search``, paged by ``page_number``; ``payments.providers.
creem.transactions_pages``) with no date filter and no refund list; a transaction names its subscription, the
period it paid for (``period_start``, ms), its ``amount``, ``currency`` and the ``refunded_amount`` so far. This
service sells only subscriptions through Creem, so each paid transaction of a subscription of ours must have its
plan period here (``PlanCreditPeriod`` of that subscription starting at ``period_start``: what
``subscription.paid`` / ``checkout.completed`` grant), for the amount the grant recorded, in USD, and each refund
of it must have been processed (the ``refund.created`` events processed for it, counted once per refund id).
Every transaction is read (Creem cannot filter by date), so a Creem period of ours since the moment that matches
none is one Creem does not know.

Nothing here is fixed by ``--fix``: Creem's handlers need what only the event carries (the subscription with its
product and our metadata; the refund's id, which keys its take-back), and the transactions list has neither. A
person resends the event from Creem's dashboard (or processes the stored failed one again in the admin)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from accounts.models import Platform
from billing_service.money import format_money
from payments.models import PlanCreditPeriod, WebhookEvent, WebhookProvider, WebhookStatus
from payments.providers import creem as creem_provider
from payments.providers.creem_events import REFUND_CREATED, moment
from payments.providers.lookups import object_id
from payments.reconcile.report import DriftKind, Report
from subscriptions.models import Provider, Subscription

PROVIDER = "creem"
PAID = ("paid", "refunded", "partially_refunded")  # a transaction whose payment went through


def _usd(cents: Any) -> str:
    return format_money(Decimal(cents) / 100) if isinstance(cents, int) and not isinstance(cents, bool) else "?"


@dataclass
class CreemRun:
    report: Report
    since: datetime
    platform: Platform | None
    on_page: Callable[[str, int], None]
    seen_periods: set[int] = field(default_factory=set)


def creem_reconcile(*, since: datetime, platform: Platform | None,
                    on_page: Callable[[str, int], None] = lambda source, count: None) -> Report:
    """Compares Creem's transactions with our Creem plan periods; returns the report (no fixes: see above)."""
    creem_provider.ensure_configured()
    run = CreemRun(report=Report(provider=PROVIDER, since=since, platform_key=platform.platform_key if platform
                                 else None), since=since, platform=platform, on_page=on_page)
    for page in creem_provider.transactions_pages():
        run.report.checked["transactions"] += len(page)
        on_page("transactions", len(page))
        _transactions(run, page)
    _our_periods(run)
    return run.report


def _transactions(run: CreemRun, page: list[dict[str, Any]]) -> None:
    paid = []
    for txn in page:
        subscription_id, start = object_id(txn.get("subscription")), moment(txn.get("period_start"))
        if txn.get("status") in PAID and subscription_id and start is not None:
            paid.append((txn, subscription_id, start))
    subscriptions = Subscription.objects.filter(
        provider=Provider.CREEM, provider_subscription_id__in={sub for _, sub, _ in paid})
    if run.platform is not None:
        subscriptions = subscriptions.filter(account__platform=run.platform)
    subscriptions = {sub.provider_subscription_id: sub for sub in subscriptions}
    periods = {
        (period.subscription_id, period.period_start): period
        for period in PlanCreditPeriod.objects.filter(
            subscription__in=subscriptions.values(), period_start__in={start for _, _, start in paid}
        ).select_related("grant_entry")
    }
    refunded = _refunds_processed([str(txn.get("id")) for txn, _, _ in paid])
    for txn, subscription_id, start in paid:
        subscription = subscriptions.get(subscription_id)
        if subscription is None:
            continue  # not ours (or another platform's)
        txn_id = str(txn.get("id") or "")
        period = periods.get((subscription.pk, start))
        if period is not None:
            run.seen_periods.add(period.pk)
        created = moment(txn.get("created_at"))
        if created is not None and created < run.since:
            continue
        ours = f"plan period {period.pk}" if period is not None else f"subscription {subscription_id}"
        currency = str(txn.get("currency") or "")
        if currency.upper() != "USD":
            run.report.add(DriftKind.CURRENCY_MISMATCH, txn_id, ours, f"paid in {currency or '(none)'}; "
                           "plan periods are paid in USD")
            continue
        if period is None:
            run.report.add(DriftKind.MISSING_CREDIT, txn_id, ours,
                           f"paid {_usd(txn.get('amount'))} USD for the period from {start:%Y-%m-%d}; no plan period "
                           "granted here (resend its subscription.paid from Creem)")
            continue
        grant = period.grant_entry
        amount = txn.get("amount")
        if (grant is not None and grant.payment_amount_usd is not None and isinstance(amount, int)
                and Decimal(amount) / 100 != grant.payment_amount_usd):
            run.report.add(DriftKind.AMOUNT_MISMATCH, txn_id, ours,
                           f"paid {_usd(amount)} USD, the grant records {format_money(grant.payment_amount_usd)}")
        theirs, here = txn.get("refunded_amount"), refunded.get(txn_id, 0)
        if isinstance(theirs, int) and theirs > here:
            run.report.add(DriftKind.REFUND_NOT_TAKEN_BACK, txn_id, ours,
                           f"{_usd(theirs)} USD refunded, {_usd(here)} processed here (resend its refund.created "
                           "from Creem)")


def _refunds_processed(transaction_ids: list[str]) -> dict[str, int]:
    """Cents refunded per transaction by the ``refund.created`` events processed here, each refund counted once."""
    rows = WebhookEvent.objects.filter(
        provider=WebhookProvider.CREEM, type=REFUND_CREATED, status=WebhookStatus.PROCESSED,
        payload__object__transaction__id__in=transaction_ids,
    ).values_list("object_id", "payload__object__transaction__id", "payload__object__refund_amount")
    by_refund = {refund_id: (txn_id, amount) for refund_id, txn_id, amount in rows}
    totals: dict[str, int] = defaultdict(int)
    for txn_id, amount in by_refund.values():
        if isinstance(amount, int):
            totals[str(txn_id)] += amount
    return totals


def _our_periods(run: CreemRun) -> None:
    """Our Creem periods since the moment that no transaction paid for: Creem does not know them."""
    periods = PlanCreditPeriod.objects.filter(subscription__provider=Provider.CREEM, created_at__gte=run.since)
    if run.platform is not None:
        periods = periods.filter(subscription__account__platform=run.platform)
    rows = periods.order_by("pk").values_list("pk", "subscription__provider_subscription_id", "period_start")
    for pk, subscription_id, start in rows.iterator(chunk_size=500):
        run.report.checked["plan periods here"] += 1
        if pk not in run.seen_periods:
            run.report.add(DriftKind.UNKNOWN_TO_PROVIDER, subscription_id, f"plan period {pk}",
                           f"granted here for the period from {start:%Y-%m-%d}; no paid Creem transaction of it")

