# The kept purchase days point to the read that summed them instead of each carrying its
# zone, day and moment. The rows kept so far are dropped: they are only a saving, and the
# next run sums every customer again and keeps them anew.

import django.db.models.deletion
from django.db import migrations, models


def kept_rows_drop(apps, schema_editor):
    apps.get_model("segmentation", "CustomerPurchaseDays").objects.all().delete()


class Migration(migrations.Migration):

    dependencies = [
        ("segmentation", "0015_customerprediction_without_summary"),
    ]

    operations = [
        migrations.CreateModel(
            name="PurchaseDaysRead",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("time_zone", models.CharField(max_length=64)),
                ("as_of", models.DateField()),
                ("computed_at", models.DateTimeField()),
            ],
        ),
        migrations.RunPython(kept_rows_drop, migrations.RunPython.noop),
        migrations.RemoveField(model_name="customerpurchasedays", name="as_of"),
        migrations.RemoveField(model_name="customerpurchasedays", name="computed_at"),
        migrations.RemoveField(model_name="customerpurchasedays", name="time_zone"),
        migrations.AddField(
            model_name="customerpurchasedays",
            name="read",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                default=0,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="segmentation.purchasedaysread",
            ),
            preserve_default=False,
        ),
    ]
