"""The auto-recharge settings left the credit account: payments 0010 copied them to
``payments.AutoRechargeSettings``; the account keeps only ``low_balance_threshold`` (0007), which the debit
statement reads."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("credits", "0007_low_balance_threshold")]  # payments 0010 runs before (its run_before)

    operations = [
        migrations.RemoveField(model_name="creditaccount", name="auto_recharge_enabled"),
        migrations.RemoveField(model_name="creditaccount", name="auto_recharge_threshold_usd"),
        migrations.RemoveField(model_name="creditaccount", name="auto_recharge_amount_usd"),
        migrations.RemoveField(model_name="creditaccount", name="auto_recharge_spending_limit_usd"),
        migrations.RemoveField(model_name="creditaccount", name="auto_recharge_last_triggered_at"),
    ]
