from billing_service.errors import Conflict, DomainError, NotFound, PermissionDenied


class PlatformNotFound(NotFound):
    code = "platform_not_found"
    default_message = "No such platform."


class PlatformRequired(DomainError):
    status_code = 400
    code = "platform_ambiguous"
    default_message = "You belong to several platforms: choose one with the X-Platform-Key header."


class NotAMember(PermissionDenied):
    code = "not_a_member"
    default_message = "You are not a member of this platform."


class AdminRequired(PermissionDenied):
    code = "admin_required"
    default_message = "Only owners and admins of the platform may do this."


class WebhookEndpointNotFound(NotFound):
    code = "webhook_endpoint_not_found"
    default_message = "No such webhook endpoint on this platform."


class WebhookDeliveryNotFound(NotFound):
    code = "webhook_delivery_not_found"
    default_message = "No such webhook delivery on this platform."


class WebhookEndpointLimit(Conflict):
    code = "endpoint_limit"
    default_message = "The platform has as many webhook endpoints as it may: deactivate or change one."
