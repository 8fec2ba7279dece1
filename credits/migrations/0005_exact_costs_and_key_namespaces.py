"""Exact usage costs with a carried remainder, and idempotency keys in namespaces that never meet.

Data: the events recorded so far were charged their cost (it had 6 decimals), so ``charged = cost``. Ledger keys
that clients chose move into the client namespace: a manual adjustment's Idempotency-Key becomes
``client:<key>``, and a hold's request_id becomes the key of its AI call (``usage:<request_id>``, shared with
direct usage debits). This rewrites only the ``idempotency_key`` column of those rows, with the append-only
trigger lifted for this migration's transaction alone; a hold row whose call key is already taken by a usage
debit of the same request_id (the collision this change prevents from now on) keeps its old key."""

from decimal import Decimal

from django.conf import settings
from django.db import migrations, models


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

    dependencies = [
        ('accounts', '0001_initial'),
        ('credits', '0004_hold_request_id'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='creditaccount',
            name='carried_remainder',
            field=models.DecimalField(db_default=Decimal('0'), decimal_places=12, default=Decimal('0'), editable=False, max_digits=32),
        ),
        migrations.AddField(
            model_name='usageevent',
            name='charged',
            field=models.DecimalField(db_default=Decimal('0'), decimal_places=6, default=Decimal('0'), help_text="What its ledger row debited: whole quanta of the account's carried remainder plus the cost.", max_digits=20),
        ),
        migrations.AlterField(
            model_name='usageevent',
            name='cost',
            field=models.DecimalField(decimal_places=12, help_text='The exact cost of the call (0 when it failed).', max_digits=32),
        ),
        migrations.RunSQL(
            "UPDATE credits_usageevent SET charged = cost WHERE success AND cost > 0",
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.RunSQL(REKEY, reverse_sql=migrations.RunSQL.noop),
        migrations.AlterField(
            model_name='usagerollup',
            name='credits_consumed',
            field=models.DecimalField(decimal_places=12, default=Decimal('0'), max_digits=32),
        ),
        migrations.AddConstraint(
            model_name='creditaccount',
            constraint=models.CheckConstraint(condition=models.Q(('carried_remainder__gte', 0), ('carried_remainder__lt', Decimal('0.000001'))), name='account_carried_remainder_below_quantum'),
        ),
        migrations.AddConstraint(
            model_name='hold',
            constraint=models.UniqueConstraint(condition=models.Q(('request_id', ''), _negated=True), fields=('account', 'request_id'), name='hold_unique_request_per_account'),
        ),
        migrations.AddConstraint(
            model_name='usageevent',
            constraint=models.CheckConstraint(condition=models.Q(('charged__gte', 0)), name='usage_charged_not_negative'),
        ),
        migrations.AddConstraint(
            model_name='usageevent',
            constraint=models.CheckConstraint(condition=models.Q(('success', True), ('charged', 0), _connector='OR'), name='usage_failed_charged_nothing'),
        ),
    ]
