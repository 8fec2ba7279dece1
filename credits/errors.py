from billing_service.errors import Conflict, DomainError, NotFound, PermissionDenied


class InsufficientCredits(DomainError):
    status_code = 402
    code = "insufficient_credits"
    default_message = "The account does not have enough available credits."


class AccountNotFound(NotFound):
    code = "account_not_found"
    default_message = "No such credit account."


class HoldNotFound(NotFound):
    code = "hold_not_found"
    default_message = "No such hold."


class EntryNotFound(NotFound):
    code = "transaction_not_found"
    default_message = "No such transaction."


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"
    default_message = "This idempotency key was already used with different arguments."


class HoldNotActive(Conflict):
    code = "hold_not_active"
    default_message = "The hold was already captured or released."


class HoldExpired(Conflict):
    code = "hold_expired"
    default_message = "The hold expired and its credits were released."


class BalanceLimitExceeded(Conflict):
    code = "balance_limit_exceeded"
    default_message = "The balance would exceed the largest amount an account can hold."


class RefundExceedsOriginal(Conflict):
    code = "refund_exceeds_original"
    default_message = "The refund is larger than what remains refundable on the original transaction."


class InvalidRefundTarget(DomainError):
    status_code = 400
    code = "invalid_refund_target"
    default_message = "Only a usage (subtract) transaction of the same account can be refunded."


class ModelNotPriced(DomainError):
    status_code = 400
    code = "model_not_priced"
    default_message = "The model has no price on the rate card at that time; give an amount or add a price."


class AmountOrModelRequired(DomainError):
    status_code = 400
    code = "invalid"
    default_message = "Invalid input: amount or model."


class ModelPriceConflict(Conflict):
    code = "model_price_version_exists"
    default_message = "This model already has a price version taking effect at exactly that instant."


class ModelPriceNotFound(NotFound):
    code = "model_not_found"
    default_message = "No price version of this model on the platform's rate card."


class RequestIdHeld(Conflict):
    code = "request_id_held"
    default_message = (
        "This request_id belongs to a hold of the account: capture or release the hold; a request_id names one "
        "AI call."
    )


class RequestIdRecorded(Conflict):
    code = "request_id_recorded"
    default_message = "This request_id is already recorded as a usage event of the account: a hold needs its own."


class CheckinDisabled(PermissionDenied):
    code = "checkin_disabled"
    default_message = "The daily check-in is not enabled on this platform."


class AlreadyCheckedIn(Conflict):
    code = "already_checked_in"
    default_message = "You have already checked in today: come back at next_checkin_at."


class HistoryError(Conflict):
    """A month of history cannot be detached (``credits.partitions``): an operator's command, not an endpoint."""

    code = "history_not_detachable"
    default_message = "This month cannot be detached."
