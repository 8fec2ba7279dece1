"""API tokens stored hashed. The keys of rest_framework.authtoken (stored in clear in ``authtoken_token``) become
``ApiToken`` rows holding their SHA-256, so every existing key keeps working; then that table is dropped (the app
is no longer installed) and no key is stored in clear any more. Not reversible: the keys are gone."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

from accounts.models import secret_digest


def keys_hashed(apps, schema_editor):  # noqa: ANN001, ANN201
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('authtoken_token') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return  # a database created after rest_framework.authtoken was removed
        cursor.execute("SELECT key, user_id, created FROM authtoken_token ORDER BY created, key")
        rows = cursor.fetchall()
    ApiToken = apps.get_model("accounts", "ApiToken")
    ApiToken.objects.bulk_create(
        [ApiToken(digest=secret_digest(key), prefix=key[:8], name="API token", user_id=user_id, created_at=created)
         for key, user_id, created in rows],
        batch_size=1000,
    )
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE authtoken_token")
        cursor.execute("DELETE FROM django_migrations WHERE app = 'authtoken'")


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0006_login_failure_purge_index'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='ApiToken',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('digest', models.CharField(help_text='SHA-256 of the key, hexadecimal.', max_length=64, unique=True)),
                ('prefix', models.CharField(help_text="The key's first characters, to tell keys apart.", max_length=8)),
                ('name', models.CharField(blank=True, default='', max_length=100)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('expires_at', models.DateTimeField(blank=True, help_text='Empty: it does not expire.', null=True)),
                ('revoked_at', models.DateTimeField(blank=True, null=True)),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('platform', models.ForeignKey(blank=True, help_text='Empty: the token acts in any platform its user belongs to.', null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='accounts.platform')),
                ('user', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='api_tokens', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-created_at', '-id'],
                'indexes': [models.Index(fields=['user', 'created_at'], name='api_token_user')],
                'constraints': [models.CheckConstraint(condition=models.Q(('digest__regex', '^[0-9a-f]{64}$')), name='api_token_digest_hex'), models.CheckConstraint(condition=models.Q(('expires_at__isnull', True), ('expires_at__gt', models.F('created_at')), _connector='OR'), name='api_token_expires_after_creation')],
            },
        ),
        migrations.RunPython(keys_hashed, migrations.RunPython.noop, elidable=False),
    ]
