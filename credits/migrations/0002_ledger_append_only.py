"""The ledger is append-only, enforced by PostgreSQL: any UPDATE or DELETE of a row raises."""

from django.db import migrations

FORBID = """
CREATE OR REPLACE FUNCTION credits_ledger_forbid_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'credits_ledger_entry is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Correct a mistake with a new entry (an adjustment or a refund).';
END;
$$;

CREATE TRIGGER credits_ledger_append_only
    BEFORE UPDATE OR DELETE ON credits_ledger_entry
    FOR EACH ROW EXECUTE FUNCTION credits_ledger_forbid_change();
"""

ALLOW = """
DROP TRIGGER IF EXISTS credits_ledger_append_only ON credits_ledger_entry;
DROP FUNCTION IF EXISTS credits_ledger_forbid_change();
"""


class Migration(migrations.Migration):
    dependencies = [("credits", "0001_initial")]

    operations = [migrations.RunSQL(FORBID, reverse_sql=ALLOW)]
