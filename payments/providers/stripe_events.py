"""Reading Stripe's objects out of event payloads (and out of objects the API returns): the facts the webhook
handlers act on, each a typed dataclass. No network call here (``payments.providers.stripe`` makes them).

Both shapes are read, the newer first and the older as the fallback (an account pinned to an older API version
still sends the older one): after API version 2025-03-31 (``invoice.parent.subscription_details``,
``invoice.payments``, ``line.parent.subscription_item_details``, ``line.pricing.price_details.price``,
``subscription.items.data[].price`` and ``.current_period_*``) and before it (``invoice.subscription``,
``invoice.subscription_details.metadata``, ``invoice.payment_intent``, ``line.type``/``line.subscription``,
``line.price``, or ``line.plan`` and ``subscription.items.data[].plan`` / ``subscription.plan`` before prices,
``subscription.current_period_*``, ``charge.invoice``). A subscription line's ``metadata`` is the subscription's
in the older shape, the last place an invoice names the account.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from payments.providers.lookups import EventLookups, object_id, order_ref

CHARGE_REFUNDED = "charge.refunded"
INVOICE_PAYMENT_PAID = "invoice_payment.paid"  # names the payment intent an invoice event leaves out (2025-03-31+)


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What processing needs from a ``checkout.session.*`` event's object."""

    session_id: str
    order_ref: str  # the order id the session names, "" if none
    conflicting_refs: bool  # client_reference_id and metadata.order_id name different orders
    mode: str
    payment_status: str
    amount_total: int | None
    currency: str
    payment_intent_id: str
    customer_id: str
    subscription_id: str = ""


def session_facts(event: dict[str, Any]) -> SessionFacts:
    obj = (event.get("data") or {}).get("object") or {}
    if not isinstance(obj, dict):
        obj = {}
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    client_ref = obj.get("client_reference_id") if isinstance(obj.get("client_reference_id"), str) else ""
    meta_ref = metadata.get("order_id") if isinstance(metadata.get("order_id"), str) else ""
    amount = obj.get("amount_total")
    return SessionFacts(
        session_id=object_id(obj.get("id")),
        order_ref=client_ref or meta_ref,
        conflicting_refs=bool(client_ref and meta_ref and client_ref != meta_ref),
        mode=obj.get("mode") if isinstance(obj.get("mode"), str) else "",
        payment_status=obj.get("payment_status") if isinstance(obj.get("payment_status"), str) else "",
        amount_total=amount if isinstance(amount, int) and not isinstance(amount, bool) else None,
        currency=obj.get("currency").lower() if isinstance(obj.get("currency"), str) else "",
        payment_intent_id=object_id(obj.get("payment_intent")),
        customer_id=object_id(obj.get("customer")),
        subscription_id=object_id(obj.get("subscription")),
    )


def _obj(event: dict[str, Any]) -> dict[str, Any]:
    return _dict(_dict(event.get("data")).get("object"))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_dict(value: Any) -> dict[str, str]:
    return {k: v for k, v in _dict(value).items() if isinstance(k, str) and isinstance(v, str)}


@dataclass(frozen=True, slots=True)
class InvoiceFacts:
    invoice_id: str
    subscription_id: str
    customer_id: str
    payment_intent_id: str
    price_id: str
    period_start: int | None
    period_end: int | None
    amount_paid: int | None
    currency: str
    billing_reason: str
    metadata: dict[str, str]  # the subscription's metadata (order_id, account_id, plan_id)


def invoice_facts(event: dict[str, Any]) -> InvoiceFacts:
    """The newer shape is read first, the older one as the fallback (see the note above this section)."""
    obj = _obj(event)
    details = _dict(_dict(obj.get("parent")).get("subscription_details"))
    lines = [line for line in (_dict(obj.get("lines")).get("data") or []) if isinstance(line, dict)]
    line = subscription_period_line(lines)
    item_details = _line_item_details(line)
    period = _dict(line.get("period"))
    metadata = _str_dict(details.get("metadata")) or _str_dict(_dict(obj.get("subscription_details")).get("metadata"))
    metadata = metadata or _str_dict(line.get("metadata"))
    return InvoiceFacts(
        invoice_id=object_id(obj.get("id")),
        subscription_id=object_id(details.get("subscription")) or object_id(obj.get("subscription"))
        or object_id(item_details.get("subscription")) or object_id(line.get("subscription")),
        customer_id=object_id(obj.get("customer")),
        payment_intent_id=_invoice_payment_intent(obj) or object_id(obj.get("payment_intent")),
        price_id=object_id(_dict(_dict(line.get("pricing")).get("price_details")).get("price"))
        or object_id(line.get("price")) or object_id(line.get("plan")),
        period_start=_int(period.get("start")),
        period_end=_int(period.get("end")),
        amount_paid=_int(obj.get("amount_paid")),
        currency=obj.get("currency").lower() if isinstance(obj.get("currency"), str) else "",
        billing_reason=obj.get("billing_reason") if isinstance(obj.get("billing_reason"), str) else "",
        metadata=metadata,
    )


def _line_item_details(line: dict[str, Any]) -> dict[str, Any]:
    return _dict(_dict(line.get("parent")).get("subscription_item_details"))


def subscription_period_line(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The line of the subscription's price for the period: a subscription item's line (``parent.type``
    "subscription_item_details" in the newer shape, ``type`` "subscription" in the older) that is not a proration
    (the lines of a plan change come before it); else a line naming a subscription; else any other line. Never a
    proration line nor a one-off invoice item (``parent.type`` "invoice_item_details", ``type`` "invoiceitem"):
    their periods are no billing period, so an invoice with only those has no period line (``{}``)."""

    def is_item(line: dict[str, Any]) -> bool:
        parent_type = _dict(line.get("parent")).get("type")
        return parent_type == "subscription_item_details" or line.get("type") == "subscription"

    def is_proration(line: dict[str, Any]) -> bool:
        invoice_item = _dict(_dict(line.get("parent")).get("invoice_item_details"))
        return (line.get("proration") is True or _line_item_details(line).get("proration") is True
                or invoice_item.get("proration") is True)

    def is_invoice_item(line: dict[str, Any]) -> bool:
        return _dict(line.get("parent")).get("type") == "invoice_item_details" or line.get("type") == "invoiceitem"

    def names_subscription(line: dict[str, Any]) -> bool:
        return bool(object_id(_line_item_details(line).get("subscription")) or object_id(line.get("subscription")))

    periodic = [line for line in lines if not is_proration(line) and not is_invoice_item(line)]
    for candidates in (
        [line for line in periodic if is_item(line)],
        [line for line in periodic if names_subscription(line)],
        periodic,
    ):
        if candidates:
            return candidates[0]
    return {}


def _invoice_payment_intent(invoice: dict[str, Any]) -> str:
    """Since 2025-03-31 an invoice names its payment intents under ``payments`` (when the list is included; a
    webhook's invoice usually leaves it out: ``invoice_payment.paid`` then names it): the paid one first."""
    items = [_dict(item) for item in _dict(invoice.get("payments")).get("data") or []]
    for item in sorted(items, key=lambda item: item.get("status") != "paid"):
        payment = _dict(item.get("payment"))
        if object_id(payment.get("payment_intent")):
            return object_id(payment.get("payment_intent"))
    return ""


@dataclass(frozen=True, slots=True)
class InvoicePaymentFacts:
    """What processing needs from an ``invoice_payment.*`` event's object (an InvoicePayment)."""

    invoice_id: str
    payment_intent_id: str
    status: str
    amount_paid: int | None


def invoice_payment_facts(event: dict[str, Any]) -> InvoicePaymentFacts:
    obj = _dict(_dict(event.get("data")).get("object"))
    amount = obj.get("amount_paid")
    return InvoicePaymentFacts(
        invoice_id=object_id(obj.get("invoice")),
        payment_intent_id=object_id(_dict(obj.get("payment")).get("payment_intent")),
        status=object_id(obj.get("status")),
        amount_paid=amount if isinstance(amount, int) and not isinstance(amount, bool) else None,
    )


@dataclass(frozen=True, slots=True)
class SubscriptionFacts:
    subscription_id: str
    customer_id: str
    status: str
    price_id: str
    current_period_start: int | None
    current_period_end: int | None
    trial_end: int | None
    cancel_at_period_end: bool
    canceled_at: int | None
    metadata: dict[str, str]
    # what seats read besides (``payments.seat_sync``): the item's quantity and id, the price's interval, and when
    # the subscription started, ended or is set to end
    quantity: int | None = None
    item_id: str = ""
    interval: str = ""  # the price's recurring interval: month, year...
    start_date: int | None = None
    created: int | None = None
    ended_at: int | None = None
    cancel_at: int | None = None


def subscription_facts(event: dict[str, Any]) -> SubscriptionFacts:
    """The facts of a ``customer.subscription.*`` event's subscription (``subscription_object_facts``)."""
    return subscription_object_facts(_obj(event))


def subscription_object_facts(obj: Any, *, price_id: str = "") -> SubscriptionFacts:
    """A subscription object's facts (an event's, or one the API returned). The newer shape is read first (price
    and period on the item), the older one as the fallback (the item's ``plan``, or the subscription's own
    ``plan``, ``quantity`` and ``current_period_*``). The item read is the one of ``price_id`` when given and
    present, else the first."""
    obj = _dict(obj)
    items = [i for i in (_dict(obj.get("items")).get("data") or []) if isinstance(i, dict)]
    item = next((i for i in items if price_id and _item_price(i) == price_id), items[0] if items else {})
    price = _dict(item.get("price")) or _dict(item.get("plan")) or _dict(obj.get("plan"))
    interval = _dict(price.get("recurring")).get("interval") or price.get("interval")
    return SubscriptionFacts(
        subscription_id=object_id(obj.get("id")),
        customer_id=object_id(obj.get("customer")),
        status=obj.get("status") if isinstance(obj.get("status"), str) else "",
        price_id=_item_price(item) or object_id(obj.get("plan")),
        current_period_start=_first_int(item.get("current_period_start"), obj.get("current_period_start")),
        current_period_end=_first_int(item.get("current_period_end"), obj.get("current_period_end")),
        trial_end=_int(obj.get("trial_end")),
        cancel_at_period_end=obj.get("cancel_at_period_end") is True,
        canceled_at=_int(obj.get("canceled_at")),
        metadata=_str_dict(obj.get("metadata")),
        quantity=_first_int(item.get("quantity"), obj.get("quantity") if len(items) <= 1 else None),
        item_id=object_id(item.get("id")),
        interval=interval if isinstance(interval, str) else "",
        start_date=_int(obj.get("start_date")),
        created=_int(obj.get("created")),
        ended_at=_int(obj.get("ended_at")),
        cancel_at=_int(obj.get("cancel_at")),
    )


def _item_price(item: dict[str, Any]) -> str:
    return object_id(item.get("price")) or object_id(item.get("plan"))


def _first_int(*values: Any) -> int | None:
    return next((v for v in map(_int, values) if v is not None), None)


@dataclass(frozen=True, slots=True)
class ChargeFacts:
    charge_id: str
    payment_intent_id: str
    invoice_id: str
    amount: int | None
    amount_refunded: int | None
    currency: str
    metadata: dict[str, str]


def charge_facts(event: dict[str, Any]) -> ChargeFacts:
    obj = _obj(event)
    return ChargeFacts(
        charge_id=object_id(obj.get("id")),
        payment_intent_id=object_id(obj.get("payment_intent")),
        invoice_id=object_id(obj.get("invoice")),
        amount=_int(obj.get("amount")),
        amount_refunded=_int(obj.get("amount_refunded")),
        currency=obj.get("currency").lower() if isinstance(obj.get("currency"), str) else "",
        metadata=_str_dict(obj.get("metadata")),
    )


@dataclass(frozen=True, slots=True)
class CardFacts:
    brand: str
    last4: str


def card_facts(payment_method: Any) -> CardFacts:
    """Brand and last 4 digits of a payment method object (empty for an id or a method that is not a card)."""
    card = _dict(_dict(payment_method).get("card"))
    brand, last4 = card.get("brand"), card.get("last4")
    return CardFacts(brand=brand if isinstance(brand, str) else "", last4=last4 if isinstance(last4, str) else "")


@dataclass(frozen=True, slots=True)
class SetupIntentFacts:
    setup_intent_id: str
    status: str
    usage: str
    customer_id: str
    payment_method_id: str
    card: CardFacts
    metadata: dict[str, str]


def setup_intent_facts(obj: Any) -> SetupIntentFacts:
    """What saving a card needs from a SetupIntent (an event's object, or one read from Stripe)."""
    obj = _dict(obj)
    return SetupIntentFacts(
        setup_intent_id=object_id(obj.get("id")),
        status=obj.get("status") if isinstance(obj.get("status"), str) else "",
        usage=obj.get("usage") if isinstance(obj.get("usage"), str) else "",
        customer_id=object_id(obj.get("customer")),
        payment_method_id=object_id(obj.get("payment_method")),
        card=card_facts(obj.get("payment_method")),
        metadata=_str_dict(obj.get("metadata")),
    )


SEATS_KIND = "seats"  # ``metadata.kind`` of a seats checkout session and of the subscription it starts


def metadata_kind(event: dict[str, Any]) -> str:
    """``metadata.kind`` of the event's object (a checkout session, a subscription), or of the subscription an
    invoice is for (its ``subscription_details`` or lines, as ``invoice_facts`` reads them); "" when none."""
    obj = _obj(event)
    kind = _str_dict(obj.get("metadata")).get("kind", "")
    if not kind and obj.get("object") == "invoice":
        kind = invoice_facts(event).metadata.get("kind", "")
    return kind


def event_lookups(event: dict[str, Any]) -> EventLookups:
    """The lookup columns of a stored Stripe event (``payments.providers.lookups``): its object's id, the payment
    intent and invoice the object names (a charge's, a session's, an invoice payment's, an invoice's), and the
    order its ``metadata.order_id`` (or a session's ``client_reference_id``) names."""
    obj = _obj(event)
    kind = obj.get("object")
    own_id = object_id(obj.get("id"))
    payment_intent = own_id if kind == "payment_intent" else (
        object_id(obj.get("payment_intent")) or object_id(_dict(obj.get("payment")).get("payment_intent"))
        or (_invoice_payment_intent(obj) if kind == "invoice" else "")
    )
    return EventLookups(
        object_id=own_id,
        payment_intent_id=payment_intent,
        invoice_id=own_id if kind == "invoice" else object_id(obj.get("invoice")),
        order_ref=order_ref(_dict(obj.get("metadata")).get("order_id"), obj.get("client_reference_id")),
    )
