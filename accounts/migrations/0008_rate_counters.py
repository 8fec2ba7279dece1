"""Request counters of the public endpoints' rate limits (accounts.throttles)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0007_api_tokens'),
    ]

    operations = [
        migrations.CreateModel(
            name='RateCounter',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('key', models.CharField(help_text='scope:client address', max_length=200)),
                ('window_start', models.DateTimeField()),
                ('count', models.PositiveIntegerField(default=0)),
            ],
            options={
                'indexes': [models.Index(fields=['window_start'], name='rate_counter_window')],
                'constraints': [models.UniqueConstraint(fields=('key', 'window_start'), name='rate_counter_key_window')],
            },
        ),
    ]
