"""Auto-recharge settings move from the credit account to payments (``AutoRechargeSettings``), and a failed
recharge says why in a column (``Recharge.failure_reason``) instead of a prefix of ``last_error``.

- The settings of every account with any of them set are copied from ``credits_creditaccount`` (credits 0008
  then drops those columns). Settings enabled but incomplete (no threshold or no amount) never charged anything
  (``recharge_start`` skipped them); they are copied disabled, as the new constraint requires, and their
  ``low_balance_threshold`` (filled by credits 0007 from the enabled threshold) is cleared: the hook had nothing
  to do for them either.
- ``failure_reason`` of the failed recharges comes from the prefixes the code used to write: "cancelled: payment
  method removed" (the owner's removal), "cancelled: " (auto-recharge off, card replaced), "gave up: ", and any
  other failure is a decline. The prefix is taken off ``last_error``, which keeps the message.
Both are reversed (the columns of credits 0008 are back by then)."""

import django.db.models.deletion
from django.db import migrations, models

SETTINGS_COPY = """
INSERT INTO payments_autorechargesettings
       (account_id, enabled, threshold_usd, amount_usd, spending_limit_usd, last_triggered_at, updated_at)
SELECT id,
       auto_recharge_enabled AND auto_recharge_threshold_usd IS NOT NULL AND auto_recharge_amount_usd IS NOT NULL,
       auto_recharge_threshold_usd, auto_recharge_amount_usd, auto_recharge_spending_limit_usd,
       auto_recharge_last_triggered_at, now()
  FROM credits_creditaccount
 WHERE auto_recharge_enabled OR auto_recharge_threshold_usd IS NOT NULL OR auto_recharge_amount_usd IS NOT NULL
       OR auto_recharge_spending_limit_usd IS NOT NULL OR auto_recharge_last_triggered_at IS NOT NULL;
UPDATE credits_creditaccount c SET low_balance_threshold = CASE WHEN s.enabled THEN s.threshold_usd END
  FROM payments_autorechargesettings s
 WHERE s.account_id = c.id
   AND c.low_balance_threshold IS DISTINCT FROM CASE WHEN s.enabled THEN s.threshold_usd END;
"""

SETTINGS_COPY_BACK = """
UPDATE credits_creditaccount c
   SET auto_recharge_enabled = s.enabled, auto_recharge_threshold_usd = s.threshold_usd,
       auto_recharge_amount_usd = s.amount_usd, auto_recharge_spending_limit_usd = s.spending_limit_usd,
       auto_recharge_last_triggered_at = s.last_triggered_at
  FROM payments_autorechargesettings s
 WHERE s.account_id = c.id;
"""

REASONS_FILL = """
UPDATE payments_recharge
   SET failure_reason = CASE
           WHEN starts_with(last_error, 'cancelled: payment method removed') THEN 'payment_method_removed'
           WHEN starts_with(last_error, 'cancelled: ') THEN 'cancelled'
           WHEN starts_with(last_error, 'gave up: ') THEN 'gave_up'
           ELSE 'declined' END,
       last_error = CASE
           WHEN starts_with(last_error, 'cancelled: ') THEN substr(last_error, 12)
           WHEN starts_with(last_error, 'gave up: ') THEN substr(last_error, 10)
           ELSE last_error END
 WHERE status = 'failed';
"""

REASONS_BACK = """
UPDATE payments_recharge
   SET last_error = CASE failure_reason
           WHEN 'payment_method_removed' THEN 'cancelled: ' || last_error
           WHEN 'cancelled' THEN 'cancelled: ' || last_error
           WHEN 'gave_up' THEN 'gave up: ' || last_error
           ELSE last_error END
 WHERE status = 'failed';
"""

FAILURE_REASONS = [
    ("declined", "Declined (the provider refused the payment)"),
    ("gave_up", "Given up (sent too often, each time a provider error)"),
    ("cancelled", "Cancelled (auto-recharge turned off, or the card replaced, before it was sent)"),
    ("payment_method_removed", "Cancelled (the owner removed the card before it was sent)"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0009_creem_refund_id_index"),
        ("credits", "0007_low_balance_threshold"),
    ]
    # The settings are copied here before credits drops them: the lower app's migration names no higher app.
    run_before = [("credits", "0008_auto_recharge_settings_moved")]

    operations = [
        migrations.CreateModel(
            name="AutoRechargeSettings",
            fields=[
                ("account", models.OneToOneField(
                    on_delete=django.db.models.deletion.PROTECT, primary_key=True, related_name="auto_recharge",
                    serialize=False, to="credits.creditaccount")),
                ("enabled", models.BooleanField(default=False)),
                ("threshold_usd", models.DecimalField(
                    blank=True, decimal_places=6, help_text="Recharge when available credits fall below this.",
                    max_digits=20, null=True)),
                ("amount_usd", models.DecimalField(
                    blank=True, decimal_places=6, help_text="USD charged per recharge.", max_digits=20, null=True)),
                ("spending_limit_usd", models.DecimalField(
                    blank=True, decimal_places=6,
                    help_text="Most USD auto-recharge may charge per calendar month (UTC); empty: no limit.",
                    max_digits=20, null=True)),
                ("last_triggered_at", models.DateTimeField(blank=True, editable=False, null=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "verbose_name": "auto-recharge settings",
                "verbose_name_plural": "auto-recharge settings",
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            ("enabled", False),
                            models.Q(("threshold_usd__isnull", False), ("amount_usd__isnull", False)),
                            _connector="OR",
                        ),
                        name="auto_recharge_enabled_complete",
                    ),
                ],
            },
        ),
        migrations.RunSQL(SETTINGS_COPY, SETTINGS_COPY_BACK),
        migrations.AddField(
            model_name="recharge",
            name="failure_reason",
            field=models.CharField(blank=True, choices=FAILURE_REASONS, default="", max_length=32),
        ),
        migrations.AlterField(
            model_name="recharge",
            name="last_error",
            field=models.TextField(blank=True, default="", help_text="The provider's (or our) message, for people."),
        ),
        migrations.RunSQL(REASONS_FILL, REASONS_BACK),
        migrations.AddIndex(
            model_name="recharge",
            index=models.Index(
                condition=models.Q(("status", "failed")), fields=["failure_reason", "-created_at"],
                name="recharge_failed_reason",
            ),
        ),
        migrations.AddConstraint(
            model_name="recharge",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("status", "failed"), ("failure_reason__in", [r for r, _ in FAILURE_REASONS])),
                    models.Q(models.Q(("status", "failed"), _negated=True), ("failure_reason", "")),
                    _connector="OR",
                ),
                name="recharge_failure_reason_when_failed",
            ),
        ),
    ]
