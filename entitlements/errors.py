from billing_service.errors import Conflict, DomainError, NotFound, PermissionDenied


class AIPlanNotFound(NotFound):
    code = "ai_plan_not_found"
    default_message = "No such AI plan offered to this platform."


class NotAPlatformMember(NotFound):
    code = "member_not_found"
    default_message = "No member of this platform has that username."


class NoSeatAvailable(Conflict):
    code = "no_seat_available"
    default_message = "Every seat of this AI plan is assigned: buy more seats or free one."


class SeatAlreadyAssigned(Conflict):
    code = "seat_already_assigned"
    default_message = "The member already holds a seat on this platform (one seat per member)."


class SeatNotAssigned(NotFound):
    code = "seat_not_assigned"
    default_message = "The member holds no seat on this AI plan."


class ModelNotEntitled(DomainError):
    status_code = 403
    code = "model_not_entitled"
    default_message = "The member's seat does not include this model: its tier is above the seat's plan."


class BudgetExceeded(DomainError):
    """A seat's weekly or session budget cannot take the request: ``details`` name the budget, what remains and
    when it renews; ``Retry-After`` says the same in seconds."""

    status_code = 429
    code = "budget_exceeded"
    default_message = "The seat's budget cannot take this request: it renews at resets_at."

    def __init__(self, message: str | None = None, *, details: dict | None = None, retry_after: int = 1) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class AIPlanConflict(Conflict):
    code = "ai_plan_conflict"
    default_message = "Another AI plan already uses this slug or Stripe price id."


class OperatorRequired(PermissionDenied):
    code = "operator_required"
    default_message = "Only operators (Django superusers) may change the catalogue of AI plans."
