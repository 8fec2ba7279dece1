"""State only: the ledger is partitioned by month (credits 0013), which replaced the foreign keys naming its rows
with triggers; these fields say so (``db_constraint=False``)."""

import django.db.models.deletion
from django.db import migrations, models


def _entry(**kwargs) -> models.OneToOneField:  # noqa: ANN003
    return models.OneToOneField(blank=True, db_constraint=False, null=True,
                                on_delete=django.db.models.deletion.PROTECT, to="credits.ledgerentry", **kwargs)


class Migration(migrations.Migration):
    dependencies = [
        ("credits", "0013_partitioned_history"),
        ("payments", "0013_coupons"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.AlterField(
                model_name="couponredemption", name="ledger_entry",
                field=_entry(help_text="The promotion row of a credits coupon.", related_name="+"),
            ),
            migrations.AlterField(
                model_name="order", name="ledger_entry",
                field=_entry(help_text="The ledger add row that credited this order (a subscription: its first "
                                       "period's grant).", related_name="order"),
            ),
            migrations.AlterField(
                model_name="plancreditperiod", name="grant_entry",
                field=_entry(help_text="The add row of the grant (none when the plan includes no credits).",
                             related_name="+"),
            ),
            migrations.AlterField(
                model_name="plancreditperiod", name="rollover_entry",
                field=_entry(help_text="The rollover row that removed the expired plan credits.", related_name="+"),
            ),
            migrations.AlterField(model_name="recharge", name="ledger_entry", field=_entry(related_name="recharge")),
        ]),
    ]
