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
