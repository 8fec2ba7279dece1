from django.apps import AppConfig


class CreditsConfig(AppConfig):
    name = "credits"
    verbose_name = "Credits and ledger"

    def ready(self) -> None:
        # Every platform and every member of one has a credit account: created with them (accounts calls what
        # the apps above it register; it imports none of them).
        from accounts.services import holder_handler_register
        from credits.services import account_ensure

        holder_handler_register(account_ensure)
