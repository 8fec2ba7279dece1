"""``CreditAccount.low_balance_threshold``: the credits-level threshold below which a debit calls
``settings.CREDITS_LOW_BALANCE_HOOK``. The hot debit statements read it instead of the auto-recharge columns
(which move to payments); filled from them: the threshold while auto-recharge is enabled, NULL otherwise."""

from django.db import migrations, models

FILL = (
    "UPDATE credits_creditaccount SET low_balance_threshold = "
    "CASE WHEN auto_recharge_enabled THEN auto_recharge_threshold_usd END "
    "WHERE low_balance_threshold IS DISTINCT FROM CASE WHEN auto_recharge_enabled THEN auto_recharge_threshold_usd END"
)


class Migration(migrations.Migration):
    dependencies = [
        ("credits", "0006_exact_costs_and_key_namespaces_data"),
    ]

    operations = [
        migrations.AddField(
            model_name="creditaccount",
            name="low_balance_threshold",
            field=models.DecimalField(
                blank=True,
                decimal_places=6,
                max_digits=20,
                help_text=(
                    "The hook CREDITS_LOW_BALANCE_HOOK runs after a debit leaves `available` below it. Set by "
                    "payments' auto-recharge while it is enabled, NULL otherwise."
                ),
                null=True,
            ),
        ),
        migrations.RunSQL(FILL, reverse_sql=migrations.RunSQL.noop),
    ]
