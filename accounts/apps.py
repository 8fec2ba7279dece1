from django.apps import AppConfig
from django.core import checks


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Platforms and members"

    def ready(self) -> None:
        # Services queue tasks by name (billing_service.queue): registered in every process, not only the worker's.
        from accounts import tasks  # noqa: F401
        from accounts.throttles import rate_limits_check

        checks.register(rate_limits_check)
