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


class LoginAttemptsExceeded(DomainError):
    """Too many failed logins for this username or from this address in the window: 429 with ``Retry-After``,
    the seconds until the oldest failure of the window leaves it. The password is not checked meanwhile."""

    status_code = 429
    code = "login_attempts_exceeded"
    default_message = "Too many failed logins: wait before trying again."

    def __init__(self, *, retry_after: int) -> None:
        super().__init__(details={"retry_after": retry_after})
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class MemberNotFound(NotFound):
    code = "member_not_found"
    default_message = "No member of this platform has that username."


class SignInLinkInvalid(DomainError):
    """A sign-in link that was used, expired, never existed, or whose member left the platform: one answer for
    all, so a link reveals nothing."""

    status_code = 410
    code = "sign_in_link_invalid"
    default_message = "This sign-in link has expired or was already used: ask for a new one."


class ApiTokenNotFound(NotFound):
    code = "api_token_not_found"
    default_message = "No such API token (or not one you may see)."
