# PostgreSQL only: a trigram GIN index so that "contains" searches on search_text are index
# lookups. SQLite has no trigram index; there the search scans the column (see the README).

from django.db import migrations

_INDEX = "customer_search_trgm_idx"


def trigram_index_create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {_INDEX} ON crm_customer USING gin (search_text gin_trgm_ops)"
    )


def trigram_index_drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX IF EXISTS {_INDEX}")


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0013_customer_search_text"),
    ]

    operations = [
        migrations.RunPython(trigram_index_create, trigram_index_drop),
    ]
