"""Drop the single-column customer_id indexes of purchases and feedback.

Their composite indexes (purchase_cust_date_amt_idx, feedback_cust_date_idx) start with
customer_id and serve the same lookups. The index is dropped by name rather than through
AlterField, because on SQLite AlterField rebuilds the table and that would drop the
purchase_not_in_future triggers.
"""

import django.db.models.deletion
from django.db import migrations, models

TABLES = ("crm_purchase", "crm_feedback")


def _single_customer_indexes(connection, table):
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return [
        name
        for name, info in constraints.items()
        if info["index"]
        and not info["unique"]
        and not info["primary_key"]
        and info["columns"] == ["customer_id"]
    ]


def drop_indexes(apps, schema_editor):
    for table in TABLES:
        for name in _single_customer_indexes(schema_editor.connection, table):
            schema_editor.execute(f"DROP INDEX {schema_editor.quote_name(name)}")


def create_indexes(apps, schema_editor):
    for table in TABLES:
        name = f"{table}_customer_id_idx"
        schema_editor.execute(
            f"CREATE INDEX {schema_editor.quote_name(name)} ON {table} (customer_id)"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0009_customer_segment_sort_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="feedback",
                    name="customer",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="feedback",
                        to="crm.customer",
                    ),
                ),
                migrations.AlterField(
                    model_name="purchase",
                    name="customer",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="purchases",
                        to="crm.customer",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_indexes, create_indexes)],
        ),
    ]
