from billing_service.errors import Conflict, NotFound


class PlanNotFound(NotFound):
    code = "plan_not_found"
    default_message = "No such plan."


class PlanConflict(Conflict):
    """A slug, Stripe price id or Creem product id that another plan of the platform already has."""

    code = "plan_conflict"
    default_message = "Another plan of this platform already uses this value."


class SubscriptionNotFound(NotFound):
    code = "subscription_not_found"
    default_message = "No such subscription."


class SubscriptionExists(Conflict):
    code = "subscription_exists"
    default_message = "The account already has a current subscription."


class SubscriptionEnded(Conflict):
    code = "subscription_ended"
    default_message = "The subscription has ended (canceled or expired): it cannot change any more."


class SubscriptionOwnerMismatch(Conflict):
    code = "subscription_owner_mismatch"
    default_message = "This provider subscription id already belongs to another account."
