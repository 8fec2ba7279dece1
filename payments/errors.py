"""Domain errors of the payments app."""

from billing_service.errors import Conflict, DomainError, InvalidInput, NotFound


class ChannelNotAvailable(DomainError):
    status_code = 400
    code = "channel_not_available"
    default_message = "This payment channel is not available yet."


class CheckoutTypeNotAvailable(DomainError):
    status_code = 400
    code = "checkout_type_not_available"
    default_message = "This checkout type is not available yet."


class InvalidCheckout(InvalidInput):
    """A checkout the platform's rules refuse (amount outside its limits, redirect to a foreign origin)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"Invalid input: {field}.", details={field: [message]})


class OrderNotFound(NotFound):
    code = "order_not_found"
    default_message = "No such order."


class PaymentProviderNotConfigured(DomainError):
    status_code = 503
    code = "payment_provider_not_configured"
    default_message = "The payment provider is not configured on this service."


class PaymentProviderError(DomainError):
    status_code = 502
    code = "payment_provider_error"
    default_message = "The payment provider refused or failed the request; no payment was taken."


class WebhookSignatureInvalid(DomainError):
    status_code = 400
    code = "invalid_signature"
    default_message = "The webhook signature is missing, invalid or too old."


class WebhookPayloadInvalid(DomainError):
    status_code = 400
    code = "invalid_payload"
    default_message = "The webhook body is not an event."


class WebhookProcessingFailed(DomainError):
    """Answered with a 5xx so that the provider delivers the event again later."""

    status_code = 500
    code = "webhook_processing_failed"
    default_message = "The event was stored but could not be processed; it will be retried."


class EventNotApplicable(Exception):
    """A permanent disagreement between an event and its order (amount, currency, ids): recorded, flagged on
    the order, never retried (a redelivery would disagree again)."""

    def __init__(self, message: str, *, order_id=None, amount_paid_usd=None) -> None:  # noqa: ANN001
        super().__init__(message)
        self.order_id = order_id
        self.amount_paid_usd = amount_paid_usd


class EventRetryable(Exception):
    """A failure a later delivery may get past (its order is not known here yet): recorded, answered 5xx."""


class NoBillingCustomer(Conflict):
    code = "no_billing_customer"
    default_message = "This account has no customer at the payment provider yet: subscribe or buy first."


class PaymentMethodRequired(Conflict):
    code = "payment_method_required"
    default_message = "Auto-recharge needs a saved payment method: complete a top-up with a card first."


class InvalidAutoRecharge(InvalidInput):
    """Auto-recharge settings that do not hold together (amount outside the platform's top-up range...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"Invalid input: {field}.", details={field: [message]})


class PaymentMethodNotFound(NotFound):
    code = "payment_method_not_found"
    default_message = "No saved payment method: save one through POST /api/billing/payment-method/."


class SeatSubscriptionNotFound(NotFound):
    code = "seat_subscription_not_found"
    default_message = "No such seat subscription in this platform."


class SeatSubscriptionManual(Conflict):
    code = "seat_subscription_manual"
    default_message = (
        "These seats are an operator's contract, paid outside Stripe: the operator changes them (seats_grant)."
    )


class SeatSubscriptionEnded(Conflict):
    code = "seat_subscription_ended"
    default_message = "The seat subscription has ended (canceled or expired): buy seats again through checkout."


class SeatSubscriptionExists(Conflict):
    code = "seat_subscription_exists"
    default_message = (
        "The platform already has a current Stripe subscription of this AI plan's seats: change its quantity "
        "(PATCH /api/billing/ai-subscriptions/{id}/)."
    )


# --- coupons (payments.coupons) -------------------------------------------------------------------------------


class CouponNotFound(NotFound):
    code = "coupon_not_found"
    default_message = "No such coupon in this platform."


class CouponError(DomainError):
    """A coupon code that cannot be used here: a 4xx with a code of its own; ``details.coupon`` says why (the
    checkout's field is named ``coupon``, the redeem's ``code``: both are in ``details.field``)."""

    def __init__(self, message: str | None = None, *, field: str = "code", details: dict | None = None) -> None:
        message = message or self.default_message
        super().__init__(message, details={field: [message], **(details or {})})


class CouponUnknown(CouponError):
    status_code = 400
    code = "coupon_unknown"
    default_message = "No such coupon code in this platform."


class CouponInactive(CouponError):
    status_code = 400
    code = "coupon_inactive"
    default_message = "This coupon has been withdrawn."


class CouponNotYetValid(CouponError):
    status_code = 400
    code = "coupon_not_yet_valid"
    default_message = "This coupon is not valid yet."


class CouponExpired(CouponError):
    status_code = 400
    code = "coupon_expired"
    default_message = "This coupon has expired."


class CouponExhausted(CouponError):
    status_code = 409
    code = "coupon_exhausted"
    default_message = "This coupon has been redeemed as many times as it may be."


class CouponAlreadyRedeemed(CouponError):
    status_code = 409
    code = "coupon_already_redeemed"
    default_message = "You have already used this coupon as many times as it allows."


class CouponNotRedeemable(CouponError):
    status_code = 400
    code = "coupon_not_redeemable"
    default_message = "This coupon is a discount: give it to checkout (`coupon`), it grants no credits by itself."


class CouponNotADiscount(CouponError):
    status_code = 400
    code = "coupon_not_a_discount"
    default_message = "This coupon grants credits: redeem it (POST /api/billing/coupons/redeem/), not at checkout."


class CouponNotApplicable(CouponError):
    """The coupon's restrictions refuse this checkout (``details.reason``: ``plan``, ``top_ups_only``, ``seats``,
    ``channel``, ``too_large``)."""

    status_code = 400
    code = "coupon_not_applicable"
    default_message = "This coupon does not apply to this purchase."


class CouponFirstPurchaseOnly(CouponError):
    status_code = 409
    code = "coupon_first_purchase_only"
    default_message = "This coupon is for a first purchase only, and this account has paid before."


class CouponAttemptsExceeded(DomainError):
    """Too many coupon codes tried in the last hour (``COUPON_REDEEM_ATTEMPTS_PER_HOUR``): 429 with
    ``Retry-After``, the seconds until the oldest attempt of the window leaves it."""

    status_code = 429
    code = "coupon_attempts_exceeded"
    default_message = "Too many coupon codes tried: wait before trying again."

    def __init__(self, *, retry_after: int, limit: int) -> None:
        super().__init__(details={"retry_after": retry_after, "limit_per_hour": limit})
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class CouponCodeTaken(Conflict):
    code = "coupon_code_taken"
    default_message = "Another coupon of this platform already has this code (codes match whatever their case)."


class InvalidCoupon(InvalidInput):
    """Coupon settings that do not hold together (a value out of its kind's range, validity out of order...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"Invalid input: {field}.", details={field: [message]})


class OrderNotRefundable(Conflict):
    """An operator's refund (``refunds.order_refund_request``) of an order that has nothing left to refund here."""

    code = "order_not_refundable"
    default_message = "This order cannot be refunded through the provider from here."
