"""Drop the segment columns of customers: segmentation 0005 moved them to Membership."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0010_fk_indexes_covered_by_composites"),
        ("segmentation", "0005_membership"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="customer", name="customer_segment_idx"),
        migrations.RemoveIndex(model_name="customer", name="customer_segment_spent_idx"),
        migrations.RemoveIndex(model_name="customer", name="customer_segment_last_idx"),
        migrations.RemoveField(model_name="customer", name="segment"),
        migrations.RemoveField(model_name="customer", name="segment_pinned"),
        migrations.RemoveField(model_name="customer", name="segment_reason"),
    ]
