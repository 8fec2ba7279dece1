"""What keeps the ledger's rules whole once its history is partitioned by month (``credits.partitions``).

A partitioned table's unique indexes must include its partition key (the month), so the rules that span every
month live here, in unpartitioned tables written by triggers on the history tables (migration 0013):

- ``LedgerKey``: an idempotency key posts once per account. Every keyed ledger row claims its key in the
  statement that writes it; a twin's claim is a unique violation of ``credits_ledger_key_pkey``.
- ``UsageKey``: a request_id is recorded once per account, the same way (``credits_usage_key_pkey``).
- ``ArchivedTotals``: what the months detached from the ledger and from the usage events held, per account, so
  that the ledger's invariants (``credits.verification``) still add up without them.

A month detached (``partitions detach``) takes its keys with it: they are unique across the attached months."""

from __future__ import annotations

from decimal import Decimal

from django.db import models

from credits.models import CreditAccount, exact_field, money_field


class LedgerKey(models.Model):
    pk = models.CompositePrimaryKey("account_id", "idempotency_key")
    account_id = models.UUIDField()
    idempotency_key = models.CharField(max_length=255)
    entry_id = models.UUIDField()
    created_at = models.DateTimeField(help_text="The ledger row's: the month it lives in.")

    class Meta:
        db_table = "credits_ledger_key"

    def __str__(self) -> str:
        return f"{self.account_id} {self.idempotency_key}"


class UsageKey(models.Model):
    pk = models.CompositePrimaryKey("account_id", "request_id")
    account_id = models.UUIDField()
    request_id = models.CharField(max_length=255)
    event_id = models.UUIDField()
    recorded_at = models.DateTimeField(help_text="The usage event's: the month it lives in.")

    class Meta:
        db_table = "credits_usage_key"

    def __str__(self) -> str:
        return f"{self.account_id} {self.request_id}"


class ArchivedTotals(models.Model):
    """One account's history in detached months: its ledger rows up to ``through_sequence`` (the running totals
    after the last of them and the rows per type) and its usage events' sums. Written only by
    ``credits.partitions.partition_detach``, in the transaction that detaches a month."""

    account = models.OneToOneField(CreditAccount, on_delete=models.PROTECT, primary_key=True, related_name="+")
    through_sequence = models.BigIntegerField(default=0)
    balance = money_field(default=Decimal(0))
    reserved = money_field(default=Decimal(0))
    counts = models.JSONField(default=dict, help_text="Detached ledger rows per transaction type.")
    usage_cost = exact_field(default=Decimal(0))
    usage_charged = money_field(default=Decimal(0))
    usage_funded = exact_field(default=Decimal(0))

    class Meta:
        verbose_name_plural = "archived totals"

    def __str__(self) -> str:
        return f"{self.account_id} through #{self.through_sequence}"
