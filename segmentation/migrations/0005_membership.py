"""Customers' current segments move from crm_customer to their own narrow table.

A run rewrites up to every label; on crm_customer each rewrite also updated a dozen and a
half indexes. This migration creates the table and copies the labels; crm 0011 then drops
the old columns.
"""

import django.db.models.deletion
from django.db import migrations, models

COPY = """
INSERT INTO segmentation_membership (customer_id, segment_id, reason, pinned)
SELECT id, segment_id, segment_reason, segment_pinned FROM crm_customer
WHERE segment_id IS NOT NULL OR segment_pinned OR segment_reason <> ''
"""

COPY_BACK = """
UPDATE crm_customer SET
    segment_id = (SELECT m.segment_id FROM segmentation_membership m
                  WHERE m.customer_id = crm_customer.id),
    segment_reason = (SELECT m.reason FROM segmentation_membership m
                      WHERE m.customer_id = crm_customer.id),
    segment_pinned = (SELECT m.pinned FROM segmentation_membership m
                      WHERE m.customer_id = crm_customer.id)
WHERE id IN (SELECT customer_id FROM segmentation_membership)
"""


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0010_fk_indexes_covered_by_composites"),
        ("segmentation", "0004_run_worker_losses"),
    ]

    operations = [
        migrations.CreateModel(
            name="Membership",
            fields=[
                (
                    "customer",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="membership",
                        serialize=False,
                        to="crm.customer",
                    ),
                ),
                ("reason", models.CharField(blank=True, max_length=300)),
                ("pinned", models.BooleanField(default=False)),
                (
                    "segment",
                    models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="memberships",
                        to="segmentation.segment",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(fields=["segment", "customer"], name="membership_segment_idx"),
                    models.Index(
                        condition=models.Q(("pinned", True)),
                        fields=["customer"],
                        name="membership_pinned_idx",
                    ),
                ],
            },
        ),
        migrations.RunSQL(COPY, COPY_BACK),
    ]
