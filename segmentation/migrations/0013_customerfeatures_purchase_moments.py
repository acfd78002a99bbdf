"""The stored figures keep the first and last sale instead of the days from them to the run's
reference time, and no longer the run and that time on every row (readers take it from the
latest succeeded run): nothing in a row then depends on when the run ran.

Existing rows are converted in SQL: each sale is the row's own as-of moment less its days.
Going back, the days are counted to the latest succeeded run's reference time, that run on
every row; without such a run the rows are dropped (the next run writes them again).
"""

from datetime import UTC, datetime, timedelta

from django.db import migrations, models

TABLE = "segmentation_customerfeatures"
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECONDS_PER_DAY = 86_400_000_000


def _microseconds_sql(column: str, vendor: str) -> str:
    """A stored moment as whole microseconds since 1970-01-01 UTC, exactly."""
    if vendor == "postgresql":
        return f"(EXTRACT(EPOCH FROM {column}) * 1000000)::bigint"
    # Django keeps it as UTC text, "YYYY-MM-DD HH:MM:SS[.ffffff]".
    seconds = f"CAST(round((julianday(substr({column}, 1, 19)) - 2440587.5) * 86400) AS INTEGER)"
    fraction = f"CAST(substr(substr({column}, 21) || '000000', 1, 6) AS INTEGER)"
    return f"({seconds} * 1000000 + {fraction})"


def moments_from_days(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    as_of = _microseconds_sql("as_of", vendor)
    whole = "bigint" if vendor == "postgresql" else "INTEGER"
    with schema_editor.connection.cursor() as cur:
        cur.execute(
            f"UPDATE {TABLE} SET "
            f"last_purchase_us = {as_of} - CAST(round(recency_days * {MICROSECONDS_PER_DAY}) "
            f"AS {whole}), "
            f"first_purchase_us = {as_of} - CAST(round(tenure_days * {MICROSECONDS_PER_DAY}) "
            f"AS {whole})"
        )


def days_from_moments(apps, schema_editor):
    SegmentationRun = apps.get_model("segmentation", "SegmentationRun")
    latest = (
        SegmentationRun.objects.filter(status="succeeded", reference_time__isnull=False)
        .order_by("-finished_at", "-id")
        .first()
    )
    connection = schema_editor.connection
    with connection.cursor() as cur:
        if latest is None:
            cur.execute(f"DELETE FROM {TABLE}")
            return
        reference = latest.reference_time
        reference_us = (reference - UNIX_EPOCH) // timedelta(microseconds=1)
        cur.execute(
            f"UPDATE {TABLE} SET as_of = %s, run_id = %s, "
            f"recency_days = (%s - last_purchase_us) / {MICROSECONDS_PER_DAY}.0, "
            f"tenure_days = (%s - first_purchase_us) / {MICROSECONDS_PER_DAY}.0",
            [
                connection.ops.adapt_datetimefield_value(reference),
                latest.pk,
                reference_us,
                reference_us,
            ],
        )


class Migration(migrations.Migration):
    dependencies = [
        ("segmentation", "0012_customerpurchasedays"),
    ]

    operations = [
        migrations.AddField(
            model_name="customerfeatures",
            name="last_purchase_us",
            field=models.BigIntegerField(null=True),
        ),
        migrations.AddField(
            model_name="customerfeatures",
            name="first_purchase_us",
            field=models.BigIntegerField(null=True),
        ),
        # Nullable before they go, so that going back adds them empty, to be filled.
        migrations.AlterField(
            model_name="customerfeatures",
            name="as_of",
            field=models.DateTimeField(null=True),
        ),
        migrations.AlterField(
            model_name="customerfeatures",
            name="recency_days",
            field=models.FloatField(null=True),
        ),
        migrations.AlterField(
            model_name="customerfeatures",
            name="tenure_days",
            field=models.FloatField(null=True),
        ),
        migrations.RunPython(moments_from_days, days_from_moments),
        migrations.RemoveField(model_name="customerfeatures", name="as_of"),
        migrations.RemoveField(model_name="customerfeatures", name="recency_days"),
        migrations.RemoveField(model_name="customerfeatures", name="tenure_days"),
        migrations.RemoveField(model_name="customerfeatures", name="run"),
        migrations.AlterField(
            model_name="customerfeatures",
            name="last_purchase_us",
            field=models.BigIntegerField(),
        ),
        migrations.AlterField(
            model_name="customerfeatures",
            name="first_purchase_us",
            field=models.BigIntegerField(),
        ),
    ]
