from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CreditsConfig(AppConfig):
    name = "credits"
    verbose_name = "Credits and ledger"

    def ready(self) -> None:
        # Every platform and every member of one has a credit account: created with them (accounts calls what
        # the apps above it register; it imports none of them).
        from accounts.services import holder_handler_register
        from credits.services import account_ensure

        holder_handler_register(account_ensure)
        # Every migrate creates the coming months' partitions of the history tables (the beat does it too).
        post_migrate.connect(_partitions_ensure, sender=self)


def _partitions_ensure(using: str, **kwargs: object) -> None:
    from django.db import connections

    from credits.partitions import partitions_ensure

    if using == "default" and connections[using].vendor == "postgresql":
        partitions_ensure()
