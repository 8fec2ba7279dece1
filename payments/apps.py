from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments and orders"

    def ready(self) -> None:
        # Services queue tasks by name (billing_service.queue): registered in every process, not only the worker's.
        from payments import tasks  # noqa: F401
