from billing_service.errors import Conflict, NotFound


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
