"""The ledger's rows and the usage events partitioned by month (``credits.partitions``).

Each table is rebuilt as a partitioned one (PostgreSQL cannot partition a table in place): renamed, recreated with
the same columns and checks, its months created from its first row's through the coming ones, its rows copied,
then its primary key (the id and the month's column), indexes, foreign keys and triggers added. What a partitioned
table cannot hold moves out of it:
- the unique idempotency keys and request_ids: to ``credits_ledger_key`` and ``credits_usage_key``, claimed by a
  statement trigger (the copy claims the rows' keys already there);
- ``(account, sequence)`` unique: an index of each month;
- the foreign keys naming its rows (orders, plan periods, recharges, coupon redemptions, check-ins, usage events,
  refunds, seat charges): constraint triggers checked at commit, and a usage event that one names is protected.
Their fields keep ``db_constraint=False`` in the state (here and in payments 0014, entitlements 0003).
Reversible: the backwards step rebuilds the plain tables with their unique constraints and foreign keys."""

from decimal import Decimal

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.utils import timezone

from credits import partitions

FORBID_CHANGES = (
    f"CREATE TRIGGER credits_ledger_append_only BEFORE UPDATE OR DELETE ON {partitions.LEDGER} "
    "FOR EACH ROW EXECUTE FUNCTION credits_ledger_forbid_change()"
)
# The index standing for the usage events' unique constraint (the key table holds it across months; this one finds
# an account's events). A ledger row is found by its key through the key table: no index.
NEW_INDEXES = {"ledgerentry": None, "usageevent": models.Index(fields=["account", "request_id"],
                                                                name="usage_account_request")}
_MODELS = {partitions.LEDGER: "ledgerentry", partitions.EVENTS: "usageevent"}
_FK_SUFFIX = "_fk_%(to_table)s_%(to_column)s"


def _months_of(schema_editor, table: str, column: str) -> list:  # noqa: ANN001
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT min({column}) FROM {table}")
        first = cursor.fetchone()[0] or timezone.now()
    month = partitions.month_start(first)
    last = partitions.month_after(partitions.month_start(timezone.now()), settings.PARTITION_MONTHS_AHEAD)
    months = []
    while month <= last:
        months.append(month)
        month = partitions.month_after(month)
    return months


def _foreign_keys(schema_editor, model) -> None:  # noqa: ANN001
    """The foreign keys of ``model`` to tables that are not partitioned."""
    for field in model._meta.concrete_fields:
        if field.is_relation and field.db_constraint and field.related_model._meta.db_table not in partitions.HISTORY:
            schema_editor.execute(schema_editor._create_fk_sql(model, field, _FK_SUFFIX))


def _executor(schema_editor):  # noqa: ANN001, ANN202
    """Runs SQL as it is (the triggers' bodies hold ``%``), collected by ``sqlmigrate`` too."""
    return lambda sql: schema_editor.execute(sql, None)


def partition(apps, schema_editor) -> None:  # noqa: ANN001
    execute = _executor(schema_editor)
    refs = partitions.references(apps)
    for table, column in partitions.HISTORY.items():
        model = apps.get_model("credits", _MODELS[table])
        old = f"{table}_unpartitioned"
        execute(f"ALTER TABLE {table} RENAME TO {old}")
        execute(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
                f"PARTITION BY RANGE ({column})")
        for month in [None, *_months_of(schema_editor, old, column)]:
            partitions.partition_create(table, month)
        execute(partitions.key_claim_sql(table))  # the copy below claims the keys of the rows already there
        execute(f"INSERT INTO {table} SELECT * FROM {old}")
        execute(f"DROP TABLE {old} CASCADE")  # with the foreign keys naming its rows
        execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (id, {column})")
        for index in [*model._meta.indexes, NEW_INDEXES[_MODELS[table]]]:
            if index is not None:
                execute(index.create_sql(model, schema_editor))
        _foreign_keys(schema_editor, model)
        execute(f"ANALYZE {table}")
    execute(FORBID_CHANGES)
    for ref in refs:
        execute(partitions.reference_check_sql(ref))
    execute(partitions.protect_sql(partitions.EVENTS, refs))


def unpartition(apps, schema_editor) -> None:  # noqa: ANN001
    execute = _executor(schema_editor)
    refs = partitions.references(apps)
    for ref in refs:
        execute(f"DROP TRIGGER {ref.name}_insert ON {ref.table}; DROP TRIGGER {ref.name}_update ON {ref.table}; "
                f"DROP FUNCTION {ref.name}()")
    for table, column in partitions.HISTORY.items():
        model = apps.get_model("credits", _MODELS[table])
        old = f"{table}_partitioned"
        execute(f"ALTER TABLE {table} RENAME TO {old}")
        execute(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        execute(f"INSERT INTO {table} SELECT * FROM {old}")
        execute(f"DROP TABLE {old} CASCADE")
        execute(f"DROP FUNCTION {table}_claim_keys()")
        execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (id)")
        for index in model._meta.indexes:
            execute(index.create_sql(model, schema_editor))
        for constraint in model._meta.constraints:
            if isinstance(constraint, models.UniqueConstraint):
                execute(constraint.create_sql(model, schema_editor))
        _foreign_keys(schema_editor, model)
    execute(f"DROP FUNCTION {partitions.EVENTS}_protect()")
    execute(FORBID_CHANGES)
    for ref in refs:
        referencing = ref.field.model
        execute(schema_editor._create_fk_sql(referencing, ref.field, _FK_SUFFIX))


class Migration(migrations.Migration):
    dependencies = [
        ("credits", "0012_ledger_daily_rollup"),
        # the tables naming ledger rows and usage events: their foreign keys become triggers here
        ("payments", "0013_coupons"),
        ("entitlements", "0002_seat_budgets"),
    ]

    operations = [
        migrations.CreateModel(
            name="ArchivedTotals",
            fields=[
                ("account", models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, primary_key=True,
                                                 related_name="+", serialize=False, to="credits.creditaccount")),
                ("through_sequence", models.BigIntegerField(default=0)),
                ("balance", models.DecimalField(decimal_places=6, default=Decimal("0"), max_digits=20)),
                ("reserved", models.DecimalField(decimal_places=6, default=Decimal("0"), max_digits=20)),
                ("counts", models.JSONField(default=dict, help_text="Detached ledger rows per transaction type.")),
                ("usage_cost", models.DecimalField(decimal_places=12, default=Decimal("0"), max_digits=32)),
                ("usage_charged", models.DecimalField(decimal_places=6, default=Decimal("0"), max_digits=20)),
                ("usage_funded", models.DecimalField(decimal_places=12, default=Decimal("0"), max_digits=32)),
            ],
            options={"verbose_name_plural": "archived totals"},
        ),
        migrations.CreateModel(
            name="LedgerKey",
            fields=[
                ("pk", models.CompositePrimaryKey("account_id", "idempotency_key", blank=True, editable=False,
                                                  primary_key=True, serialize=False)),
                ("account_id", models.UUIDField()),
                ("idempotency_key", models.CharField(max_length=255)),
                ("entry_id", models.UUIDField()),
                ("created_at", models.DateTimeField(help_text="The ledger row's: the month it lives in.")),
            ],
            options={"db_table": "credits_ledger_key"},
        ),
        migrations.CreateModel(
            name="UsageKey",
            fields=[
                ("pk", models.CompositePrimaryKey("account_id", "request_id", blank=True, editable=False,
                                                  primary_key=True, serialize=False)),
                ("account_id", models.UUIDField()),
                ("request_id", models.CharField(max_length=255)),
                ("event_id", models.UUIDField()),
                ("recorded_at", models.DateTimeField(help_text="The usage event's: the month it lives in.")),
            ],
            options={"db_table": "credits_usage_key"},
        ),
        # Runs on the state before the changes below (both ways): the plain tables' constraints and foreign keys.
        migrations.RunPython(partition, unpartition),
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.RemoveConstraint(model_name="ledgerentry", name="ledger_unique_sequence"),
            migrations.RemoveConstraint(model_name="ledgerentry", name="ledger_unique_idempotency_key"),
            migrations.RemoveConstraint(model_name="usageevent", name="usage_unique_request_per_account"),
            migrations.AlterField(
                model_name="checkin", name="expiry_entry",
                field=models.ForeignKey(blank=True, db_constraint=False, db_index=False,
                                        help_text="The `expiry` ledger row that took them back.", null=True,
                                        on_delete=django.db.models.deletion.PROTECT, related_name="+",
                                        to="credits.ledgerentry"),
            ),
            migrations.AlterField(
                model_name="checkin", name="ledger_entry",
                field=models.OneToOneField(blank=True, db_constraint=False, null=True,
                                           on_delete=django.db.models.deletion.PROTECT, related_name="+",
                                           to="credits.ledgerentry"),
            ),
            migrations.AlterField(
                model_name="ledgerentry", name="refund_of",
                field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True,
                                        on_delete=django.db.models.deletion.PROTECT, related_name="refunds",
                                        to="credits.ledgerentry"),
            ),
            migrations.AlterField(
                model_name="usageevent", name="ledger_entry",
                field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True,
                                        on_delete=django.db.models.deletion.PROTECT, related_name="+",
                                        to="credits.ledgerentry"),
            ),
            migrations.AddIndex(model_name="usageevent", index=NEW_INDEXES["usageevent"]),
        ]),
    ]
