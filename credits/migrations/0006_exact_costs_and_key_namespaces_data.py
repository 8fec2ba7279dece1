"""The data of 0005: an event's ``charged`` is what its ledger row debited (for the events recorded so far, their
cost, which had 6 decimals).
Ledger keys that clients chose move into the client namespace: a manual adjustment's Idempotency-Key becomes
``client:<key>``, and a hold's request_id becomes the key of its AI call (``usage:<request_id>``, shared with
direct usage debits). This rewrites only the ``idempotency_key`` column of those rows, with the append-only
trigger lifted for this migration's transaction alone; a hold row whose call key is already taken by a usage
debit of the same request_id (the collision this change prevents from now on) keeps its old key."""

from django.db import migrations

# What each event's ledger row debited (its cost, for every event recorded before 0005): read from the row, so
# that running it again, or over events recorded since, changes nothing.
CHARGED = """
UPDATE credits_usageevent e SET charged = -l.balance_delta
  FROM credits_ledger_entry l
 WHERE l.id = e.ledger_entry_id AND e.charged <> -l.balance_delta;
"""
REKEY = """
ALTER TABLE credits_ledger_entry DISABLE TRIGGER credits_ledger_append_only;
UPDATE credits_ledger_entry
   SET idempotency_key = CASE
       WHEN length(idempotency_key) <= 248 THEN 'client:' || idempotency_key
       ELSE 'client-sha256:' || encode(sha256(convert_to(idempotency_key, 'UTF8')), 'hex') END
 WHERE transaction_type = 'adjustment' AND idempotency_key IS NOT NULL
   AND idempotency_key NOT LIKE 'client:%' AND idempotency_key NOT LIKE 'client-sha256:%';
WITH keyed AS (
    SELECT id, account_id, CASE
        WHEN length(idempotency_key) <= 249 THEN 'usage:' || idempotency_key
        ELSE 'usage-sha256:' || encode(sha256(convert_to(idempotency_key, 'UTF8')), 'hex') END AS call_key
      FROM credits_ledger_entry
     WHERE transaction_type = 'reserve' AND idempotency_key IS NOT NULL
       AND idempotency_key NOT LIKE 'usage:%' AND idempotency_key NOT LIKE 'usage-sha256:%'
)
UPDATE credits_ledger_entry e SET idempotency_key = k.call_key
  FROM keyed k
 WHERE e.id = k.id AND NOT EXISTS (
       SELECT 1 FROM credits_ledger_entry o WHERE o.account_id = k.account_id AND o.idempotency_key = k.call_key);
ALTER TABLE credits_ledger_entry ENABLE TRIGGER credits_ledger_append_only;
"""


class Migration(migrations.Migration):
    dependencies = [("credits", "0005_exact_costs_and_key_namespaces")]

    operations = [
        migrations.RunSQL(CHARGED, reverse_sql=migrations.RunSQL.noop),
        migrations.RunSQL(REKEY, reverse_sql=migrations.RunSQL.noop),
    ]
