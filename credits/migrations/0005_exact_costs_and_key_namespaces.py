"""Exact usage costs with a carried remainder, and holds keyed by request. The data follows in 0006 (its own
transaction: this one rewrites credits_usageevent, and an update of the rewritten rows in the same transaction
would leave foreign-key checks pending under the constraints added here)."""

from decimal import Decimal

from django.conf import settings
from django.db import migrations, models


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
