"""State only: the usage events are partitioned by month (credits 0013), which replaced the foreign key naming
them with triggers; this field says so (``db_constraint=False``)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("credits", "0013_partitioned_history"),
        ("entitlements", "0002_seat_budgets"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.AlterField(
                model_name="seatcharge", name="usage_event",
                field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True,
                                        on_delete=django.db.models.deletion.PROTECT, related_name="+",
                                        to="credits.usageevent"),
            ),
        ]),
    ]
