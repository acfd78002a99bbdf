"""Purchases may not be dated more than a day in the future, enforced by the database.

A CHECK constraint with now() works on PostgreSQL; SQLite refuses non-deterministic
functions in CHECK constraints, so there the same rule is two triggers.
"""

from django.db import migrations

PG_FORWARD = (
    "ALTER TABLE crm_purchase ADD CONSTRAINT purchase_not_in_future "
    "CHECK (purchased_at <= now() + interval '1 day')"
)
PG_BACKWARD = "ALTER TABLE crm_purchase DROP CONSTRAINT purchase_not_in_future"

SQLITE_TRIGGER = """
CREATE TRIGGER purchase_not_in_future_{event}
BEFORE {event} ON crm_purchase
WHEN NEW.purchased_at > strftime('%Y-%m-%d %H:%M:%f', 'now', '+1 day')
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: purchase_not_in_future');
END
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_FORWARD)
    elif schema_editor.connection.vendor == "sqlite":
        for event in ("INSERT", "UPDATE"):
            schema_editor.execute(SQLITE_TRIGGER.format(event=event))


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_BACKWARD)
    elif schema_editor.connection.vendor == "sqlite":
        for event in ("INSERT", "UPDATE"):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS purchase_not_in_future_{event}")


class Migration(migrations.Migration):
    dependencies = [("crm", "0002_initial")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
