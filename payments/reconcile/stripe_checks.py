"""Stripe against this service: what Stripe lists since a moment, compared with the rows its webhooks write.

The provider's side, each list paged by the library (``payments.providers.stripe.objects_list``), each page looked
up here in one query per kind of row it names:
- paid Checkout Sessions (``complete``, ``payment_status`` paid): the order they name (``client_reference_id`` /
  ``metadata.order_id``, read by ``stripe_events.session_facts`` as the webhook reads them). A top-up must be
  credited (``orders.order_is_credited``) for the session's amount in its currency; a subscription order paid.
- succeeded PaymentIntents: a top-up's (``metadata.order_id``) not listed as a session, and an auto-recharge's
  (``metadata.recharge_id``), which must be credited (``Recharge`` succeeded) for its amount.
- paid invoices of subscriptions (not a plan change's proration invoice, not seats'): the plan period their
  ``invoice.paid`` grants (``PlanCreditPeriod.invoice_id``), for the amount paid, in USD.
- refunds: the charge they refund, as Stripe has it now (cumulative ``amount_refunded``), against what the order
  (matched by its payment intent) or else the plan period has processed (``amount_refunded_usd``).
Our side, streamed in chunks: the paid Stripe orders since the moment (one ``add`` row each, for the order's
credits), and every order, recharge and period whose payment the lists above did not show, read back one by one
(``object_get``): Stripe not knowing it is reported.

Fixes (``--fix``): a missing credit and a refund not taken back go through the webhook's own path
(``payments.reconcile.replay``); a second credit of one order is taken back by an ``adjustment`` row
(``credits_adjust``, keyed ``reconcile:stripe:double:<the extra row>``, never more than is available). Amount and
currency disagreements, payments of orders that are not here, and payments Stripe does not know are for a person.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import CharField, Count, IntegerField, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Cast, Coalesce, Concat

from accounts.models import Platform
from billing_service.errors import DomainError
from billing_service.inputs import uuid_or_none
from billing_service.money import format_money
from credits.models import CreditAccount, LedgerEntry, TransactionType
from credits.services import credits_adjust
from payments import plan_periods
from payments.models import Channel, Order, OrderType, PlanCreditPeriod
from payments.orders import PAID_STATUSES, order_is_credited
from payments.providers import stripe as stripe_provider
from payments.providers.stripe_events import SEATS_KIND, charge_facts, invoice_facts, session_facts
from payments.recharge_models import Recharge, RechargeStatus
from payments.reconcile.replay import replay
from payments.reconcile.report import DriftKind, Report
from subscriptions.models import Provider, Subscription

PROVIDER = "stripe"
CHUNK = 500  # our rows read per round trip on our side
DOUBLE_KEY = "reconcile:stripe:double:"
CHECKED_TYPES = (OrderType.TOP_UP, OrderType.SUBSCRIPTION)  # seats are sold through Stripe too: not credits


def _event(obj: dict[str, Any]) -> dict[str, Any]:
    return {"data": {"object": obj}}


def _usd(cents: int | None) -> str:
    return "?" if cents is None else format_money(Decimal(cents) / 100)


@dataclass
class StripeRun:
    report: Report
    since: datetime
    platform: Platform | None
    on_page: Callable[[str, int], None]
    seen_orders: set[uuid.UUID] = field(default_factory=set)
    seen_recharges: set[uuid.UUID] = field(default_factory=set)
    seen_periods: set[int] = field(default_factory=set)

    @property
    def gte(self) -> int:
        return int(self.since.timestamp())

    def orders(self) -> QuerySet[Order]:
        orders = Order.objects.filter(channel=Channel.STRIPE)
        return orders.filter(platform=self.platform) if self.platform is not None else orders

    def pages(self, kind: str) -> Iterable[list[dict[str, Any]]]:
        for page in stripe_provider.objects_list(kind=kind, created_gte=self.gte):
            page = [obj for obj in page if not isinstance(obj.get("created"), int) or obj["created"] >= self.gte]
            self.report.checked[kind] += len(page)
            self.on_page(kind, len(page))
            yield page


def stripe_reconcile(*, since: datetime, platform: Platform | None,
                     on_page: Callable[[str, int], None] = lambda source, count: None) -> Report:
    """Compares Stripe's side since ``since`` with ours (of ``platform``, or all); returns the report, fixes
    attached. Raises ``PaymentProviderNotConfigured`` / ``PaymentProviderError``. No transaction may be open."""
    stripe_provider.ensure_configured()
    run = StripeRun(report=Report(provider=PROVIDER, since=since, platform_key=platform.platform_key if platform
                                  else None), since=since, platform=platform, on_page=on_page)
    for page in run.pages("checkout_sessions"):
        _sessions(run, page)
    for page in run.pages("payment_intents"):
        _payment_intents(run, page)
    for page in run.pages("invoices"):
        _invoices(run, page)
    for page in run.pages("refunds"):
        _refunds(run, page)
    _our_orders(run)
    _our_recharges(run)
    _our_periods(run)
    return run.report


# --- the provider's side --------------------------------------------------------------------------------------


def _sessions(run: StripeRun, page: list[dict[str, Any]]) -> None:
    paid = []
    for obj in page:
        facts = session_facts(_event(obj))
        if obj.get("status") != "complete" or facts.mode not in ("payment", "subscription"):
            continue
        if facts.payment_status == "paid" or (facts.mode == "subscription"
                                              and facts.payment_status == "no_payment_required"):
            paid.append((obj, facts, uuid_or_none(facts.order_ref)))
    orders = run.orders().in_bulk([ref for _, _, ref in paid if ref is not None])
    for obj, facts, ref in paid:
        order = orders.get(ref) if ref is not None else None
        if order is None:
            if ref is not None and run.platform is None and obj.get("metadata", {}).get("order_type"):
                run.report.add(DriftKind.MISSING_CREDIT, facts.session_id, "",
                               f"paid {_usd(facts.amount_total)} {facts.currency}, naming order {ref}, which is "
                               "not here")
            continue
        if order.type not in CHECKED_TYPES:
            continue
        run.seen_orders.add(order.pk)
        _compare_payment(run, order, provider_ref=facts.session_id, cents=facts.amount_total,
                         currency=facts.currency, subscription=facts.mode == "subscription",
                         fix=lambda obj=obj, facts=facts: replay(
                             provider=PROVIDER, event_type="checkout.session.completed", obj=obj,
                             key=f"checkout.session.completed:{facts.session_id}", drift=DriftKind.MISSING_CREDIT,
                             created=obj.get("created")))


def _compare_payment(run: StripeRun, order: Order, *, provider_ref: str, cents: int | None, currency: str,
                     subscription: bool, fix: Callable[[], tuple[bool, str]] | None) -> None:
    """One payment of ``order`` that Stripe shows as succeeded."""
    ours = f"order {order.pk}"
    if currency != order.currency.lower():
        run.report.add(DriftKind.CURRENCY_MISMATCH, provider_ref, ours,
                       f"paid in {currency or '(none)'}, the order is in {order.currency.lower()}")
    elif not subscription and cents != order.amount_cents:
        run.report.add(DriftKind.AMOUNT_MISMATCH, provider_ref, ours,
                       f"paid {_usd(cents)} {currency}, the order is {format_money(order.amount_usd)} "
                       f"({'credited' if order_is_credited(order) else 'not credited'})")
    elif not order_is_credited(order):
        what = "the subscription order is not paid" if subscription else (
            f"no credit posted for the {format_money(order.credits)} credits of the order")
        run.report.add(DriftKind.MISSING_CREDIT, provider_ref, ours,
                       f"paid {_usd(cents)} {currency}; {what} (order {order.status})"
                       + ("" if fix else "; no paid checkout session of it was listed"), fix=fix)


def _payment_intents(run: StripeRun, page: list[dict[str, Any]]) -> None:
    succeeded = [obj for obj in page if obj.get("status") == "succeeded"]
    metadata = [(obj, obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}) for obj in succeeded]
    order_refs = {uuid_or_none(meta.get("order_id")) for _, meta in metadata} - {None} - run.seen_orders
    recharge_refs = {uuid_or_none(meta.get("recharge_id")) for _, meta in metadata} - {None}
    orders = run.orders().in_bulk(order_refs) if order_refs else {}
    recharges = Recharge.objects.all()
    if run.platform is not None:
        recharges = recharges.filter(account__platform=run.platform)
    recharges = recharges.in_bulk(recharge_refs) if recharge_refs else {}
    for obj, meta in metadata:
        intent_id = str(obj.get("id") or "")
        cents = obj.get("amount_received", obj.get("amount"))
        currency = str(obj.get("currency") or "").lower()
        order = orders.get(uuid_or_none(meta.get("order_id")))
        if order is not None and order.pk not in run.seen_orders and order.type == OrderType.TOP_UP:
            run.seen_orders.add(order.pk)
            _compare_payment(run, order, provider_ref=intent_id, cents=cents, currency=currency,
                             subscription=False, fix=None)
            continue
        recharge = recharges.get(uuid_or_none(meta.get("recharge_id")))
        if recharge is None:
            continue
        run.seen_recharges.add(recharge.pk)
        ours = f"recharge {recharge.pk}"
        if currency != "usd":
            run.report.add(DriftKind.CURRENCY_MISMATCH, intent_id, ours, f"paid in {currency}, recharges are in usd")
        elif cents != recharge.amount_cents:
            run.report.add(DriftKind.AMOUNT_MISMATCH, intent_id, ours,
                           f"paid {_usd(cents)} usd, the recharge is {format_money(recharge.amount_usd)}")
        elif recharge.status != RechargeStatus.SUCCEEDED:
            run.report.add(
                DriftKind.MISSING_CREDIT, intent_id, ours,
                f"paid {_usd(cents)} usd; the recharge is {recharge.status}, its credits not posted",
                fix=lambda obj=obj, intent_id=intent_id: replay(
                    provider=PROVIDER, event_type="payment_intent.succeeded", obj=obj,
                    key=f"payment_intent.succeeded:{intent_id}", drift=DriftKind.MISSING_CREDIT,
                    created=obj.get("created")))


def _invoices(run: StripeRun, page: list[dict[str, Any]]) -> None:
    paid = []
    for obj in page:
        if obj.get("status") != "paid":
            continue
        facts = invoice_facts(_event(obj))
        if not facts.subscription_id or facts.metadata.get("kind") == SEATS_KIND:
            continue
        if plan_periods.is_proration_invoice(_event(obj), facts.billing_reason):
            continue
        paid.append((obj, facts))
    periods = {
        period.invoice_id: period
        for period in PlanCreditPeriod.objects.filter(invoice_id__in=[facts.invoice_id for _, facts in paid])
        .select_related("subscription__account")
    }
    unmatched = [(obj, facts) for obj, facts in paid if facts.invoice_id not in periods]
    subscriptions = dict(
        Subscription.objects.filter(
            provider=Provider.STRIPE, provider_subscription_id__in=[facts.subscription_id for _, facts in unmatched]
        ).values_list("provider_subscription_id", "account__platform_id")
    )
    named = {uuid_or_none(facts.metadata.get("account_id")) for _, facts in unmatched} - {None}
    accounts = dict(CreditAccount.objects.filter(pk__in=named).values_list("pk", "platform_id")) if named else {}
    for obj, facts in paid:
        period = periods.get(facts.invoice_id)
        if period is not None:
            if run.platform is not None and period.subscription.account.platform_id != run.platform.pk:
                continue
            run.seen_periods.add(period.pk)
            ours = f"plan period {period.pk}"
            if facts.currency != "usd":
                run.report.add(DriftKind.CURRENCY_MISMATCH, facts.invoice_id, ours,
                               f"paid in {facts.currency}; plan periods are paid in usd")
            elif (period.amount_paid_usd is not None and facts.amount_paid is not None
                  and Decimal(facts.amount_paid) / 100 != period.amount_paid_usd):
                run.report.add(DriftKind.AMOUNT_MISMATCH, facts.invoice_id, ours,
                               f"paid {_usd(facts.amount_paid)} usd, the period records "
                               f"{format_money(period.amount_paid_usd)}")
            continue
        platform_id = subscriptions.get(facts.subscription_id) or accounts.get(
            uuid_or_none(facts.metadata.get("account_id")))
        if platform_id is None or (run.platform is not None and platform_id != run.platform.pk):
            continue  # another integration's subscription on the same Stripe account
        where = f"subscription {facts.subscription_id}"
        if facts.currency != "usd":
            run.report.add(DriftKind.CURRENCY_MISMATCH, facts.invoice_id, where,
                           f"paid in {facts.currency}; plan periods are paid in usd")
            continue
        run.report.add(
            DriftKind.MISSING_CREDIT, facts.invoice_id, where,
            f"paid {_usd(facts.amount_paid)} usd for the period from {facts.period_start}; no plan period granted",
            fix=lambda obj=obj, facts=facts: replay(
                provider=PROVIDER, event_type="invoice.paid", obj=obj, key=f"invoice.paid:{facts.invoice_id}",
                drift=DriftKind.MISSING_CREDIT,
                created=(obj.get("status_transitions") or {}).get("paid_at") or obj.get("created")))


def _refunds(run: StripeRun, page: list[dict[str, Any]]) -> None:
    charge_ids = list(dict.fromkeys(
        str(obj.get("charge")) for obj in page if obj.get("charge") and obj.get("status") in ("succeeded", "pending")
    ))
    charges = {}
    for charge_id in charge_ids:  # the cumulative amount refunded is the charge's
        charge = stripe_provider.object_get(kind="charges", object_id=charge_id)
        if charge is not None:
            charges[charge_id] = charge
    facts = {charge_id: charge_facts(_event(charge)) for charge_id, charge in charges.items()}
    intents = [f.payment_intent_id for f in facts.values() if f.payment_intent_id]
    orders = {order.provider_payment_id: order for order in run.orders().filter(provider_payment_id__in=intents)}
    periods = PlanCreditPeriod.objects.filter(payment_intent_id__in=intents).select_related("subscription__account")
    periods = {period.payment_intent_id: period for period in periods}
    for charge_id, f in facts.items():
        order, period = orders.get(f.payment_intent_id), periods.get(f.payment_intent_id)
        if order is not None and order_is_credited(order):
            ours, processed = f"order {order.pk}", order.amount_refunded_usd
        elif order is None and period is not None and (
            run.platform is None or period.subscription.account.platform_id == run.platform.pk
        ):
            ours, processed = f"plan period {period.pk}", period.amount_refunded_usd
        else:
            continue  # not ours, or its payment is not credited yet (reported with the payment)
        refunded = Decimal(f.amount_refunded or 0) / 100
        if f.currency and f.currency != "usd":
            run.report.add(DriftKind.CURRENCY_MISMATCH, charge_id, ours, f"refunded in {f.currency}")
        elif refunded > processed:
            run.report.add(
                DriftKind.REFUND_NOT_TAKEN_BACK, charge_id, ours,
                f"{format_money(refunded)} usd refunded, {format_money(processed)} taken back here",
                fix=lambda charge=charges[charge_id], f=f: replay(
                    provider=PROVIDER, event_type="charge.refunded", obj=charge,
                    key=f"charge.refunded:{f.charge_id}:{f.amount_refunded}", drift=DriftKind.REFUND_NOT_TAKEN_BACK,
                    created=charge.get("created")))
        elif refunded < processed:
            run.report.add(DriftKind.AMOUNT_MISMATCH, charge_id, ours,
                           f"{format_money(refunded)} usd refunded, but {format_money(processed)} processed here")


# --- our side ------------------------------------------------------------------------------------------------


def _order_rows(kind: str) -> Subquery:
    """Per order (outer query): the number (``count``) or sum of balance (``sum``) of its account's ledger rows of
    the given kind that name it (``reference`` ``order:<id>``): its ``add`` rows, or this reconciliation's
    take-backs of a second credit."""
    reference = Concat(Value("order:"), Cast(OuterRef("pk"), output_field=CharField()), output_field=CharField())
    rows = LedgerEntry.objects.filter(account_id=OuterRef("account_id"), reference=reference)
    if kind == "taken_back":
        rows = rows.filter(transaction_type=TransactionType.ADJUSTMENT, idempotency_key__startswith=DOUBLE_KEY)
    else:
        rows = rows.filter(transaction_type=TransactionType.ADD)
    rows = rows.order_by().values("account_id")
    if kind == "sum":
        return Subquery(rows.annotate(total=Sum("balance_delta")).values("total"))
    return Subquery(rows.annotate(n=Count("pk")).values("n"), output_field=IntegerField())


def _chunks(queryset: QuerySet) -> Iterable[tuple]:
    return itertools.batched(queryset.iterator(chunk_size=CHUNK), CHUNK)


def _our_orders(run: StripeRun) -> None:
    """Paid Stripe orders since the moment: a top-up credited once, for its credits; Stripe knowing each payment."""
    orders = (
        run.orders().filter(status__in=PAID_STATUSES, type__in=CHECKED_TYPES, created_at__gte=run.since)
        .annotate(add_rows=Coalesce(_order_rows("count"), 0), added=_order_rows("sum"),
                  taken_back=Coalesce(_order_rows("taken_back"), 0))
        .order_by("pk")
    )
    for chunk in _chunks(orders):
        run.report.checked["orders here"] += len(chunk)
        run.on_page("orders here", len(chunk))
        for order in chunk:
            if order.type == OrderType.TOP_UP:
                _compare_credits(run, order)
            if order.pk in run.seen_orders or (order.type == OrderType.SUBSCRIPTION and not order.provider_payment_id):
                continue  # shown by a list; or a subscription that began with a trial (no payment yet)
            _known_to_stripe(run, f"order {order.pk}", order.provider_payment_id, kind="payment_intents")


def _compare_credits(run: StripeRun, order: Order) -> None:
    ours = f"order {order.pk}"
    extra = order.add_rows - 1 - order.taken_back
    if extra > 0:
        run.report.add(DriftKind.DOUBLE_CREDIT, order.provider_payment_id, ours,
                       f"{order.add_rows} add rows ({format_money(order.added)} credits) for an order of "
                       f"{format_money(order.credits)}", fix=lambda order_id=order.pk: _take_back_extra(order_id))
    elif order.add_rows == 1 and order.added != order.credits:
        run.report.add(DriftKind.AMOUNT_MISMATCH, order.provider_payment_id, ours,
                       f"credited {format_money(order.added)}, the order grants {format_money(order.credits)}")


def _take_back_extra(order_id: uuid.UUID) -> tuple[bool, str]:
    """Takes back each credit of the order after its first (its ``ledger_entry``) with an ``adjustment`` row keyed
    ``reconcile:stripe:double:<that row>``, never more than is available (refused otherwise: a person decides)."""
    order = Order.objects.get(pk=order_id)
    rows = LedgerEntry.objects.filter(account_id=order.account_id, reference=f"order:{order.pk}",
                                      transaction_type=TransactionType.ADD).order_by("sequence")
    first = order.ledger_entry_id or rows.values_list("pk", flat=True).first()
    notes = []
    for row in rows.exclude(pk=first):
        try:
            with transaction.atomic(durable=True):
                credits_adjust(
                    account_id=order.account_id, amount=-row.balance_delta, actor=None,
                    description=f"Reconciliation with Stripe (manage.py reconcile stripe --fix): order {order.pk} "
                    f"was credited twice; the second credit ({row.pk}) taken back",
                    reference=f"order:{order.pk}",
                    metadata={"reconciliation": "stripe", "drift": str(DriftKind.DOUBLE_CREDIT),
                              "order_id": str(order.pk), "duplicate_entry_id": str(row.pk)},
                    idempotency_key=f"{DOUBLE_KEY}{row.pk}",
                )
        except DomainError as exc:
            notes.append(f"{row.pk}: {exc}")
    return not notes, "; ".join(notes)


def _known_to_stripe(run: StripeRun, ours: str, object_id: str, *, kind: str) -> None:
    """A payment of ours the lists did not show (made before the moment, or unknown to Stripe): read back."""
    if not object_id:
        run.report.add(DriftKind.UNKNOWN_TO_PROVIDER, "", ours, "paid here, with no Stripe payment recorded")
        return
    obj = stripe_provider.object_get(kind=kind, object_id=object_id)
    status = obj.get("status") if obj is not None else None
    if status not in ("succeeded", "paid"):
        run.report.add(DriftKind.UNKNOWN_TO_PROVIDER, object_id, ours,
                       "paid here; Stripe has no such payment" if obj is None else f"paid here; Stripe says {status}")


def _our_recharges(run: StripeRun) -> None:
    recharges = Recharge.objects.filter(status=RechargeStatus.SUCCEEDED, created_at__gte=run.since)
    if run.platform is not None:
        recharges = recharges.filter(account__platform=run.platform)
    _unseen_known_to_stripe(run, recharges.values_list("pk", "provider_payment_id"), seen=run.seen_recharges,
                            what="recharge", counted="recharges here", kind="payment_intents")


def _our_periods(run: StripeRun) -> None:
    periods = PlanCreditPeriod.objects.filter(subscription__provider=Provider.STRIPE, created_at__gte=run.since
                                              ).exclude(invoice_id="")
    if run.platform is not None:
        periods = periods.filter(subscription__account__platform=run.platform)
    _unseen_known_to_stripe(run, periods.values_list("pk", "invoice_id"), seen=run.seen_periods,
                            what="plan period", counted="plan periods here", kind="invoices")


def _unseen_known_to_stripe(run: StripeRun, rows, *, seen: set, what: str, counted: str, kind: str) -> None:  # noqa: ANN001
    """Our rows (pk, Stripe object id), in chunks: each no listing showed is looked up at Stripe one by one."""
    for chunk in _chunks(rows.order_by("pk")):
        run.report.checked[counted] += len(chunk)
        for pk, object_id in chunk:
            if pk not in seen:
                _known_to_stripe(run, f"{what} {pk}", object_id, kind=kind)
