# Offer and OfferResponse as they were in the crm app (crm.0012 let go of them). The tables
# already exist (crm_offer, crm_offerresponse, crm_offer_segments) and keep their names and
# rows: this migration only tells Django that the offers app owns them now.

from decimal import Decimal

import django.core.validators
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

MOVED = ("offer", "offerresponse")


def content_types_move(apps, schema_editor):
    """Admin permissions and log entries point at content types: keep them by relabelling."""
    _content_types_relabel(apps, schema_editor, old="crm", new="offers")


def content_types_move_back(apps, schema_editor):
    _content_types_relabel(apps, schema_editor, old="offers", new="crm")


def _content_types_relabel(apps, schema_editor, *, old: str, new: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = ContentType.objects.using(schema_editor.connection.alias)
    for model in MOVED:
        # A content type already created under the new label (a post_migrate of an earlier
        # partial run) has no permissions or log entries worth more than the old one's.
        if db.filter(app_label=old, model=model).exists():
            db.filter(app_label=new, model=model).delete()
            db.filter(app_label=old, model=model).update(app_label=new)
    ContentType.objects.clear_cache()


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("crm", "0012_offers_moved_to_offers_app"),
        ("segmentation", "0007_membership_sort_figures"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Offer",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("title", models.CharField(max_length=200)),
                        ("description", models.TextField(blank=True)),
                        ("channel", models.CharField(choices=[("email", "E-mail"), ("phone", "Phone"), ("in_person", "In person"), ("sms", "SMS"), ("other", "Other")], default="email", max_length=20)),
                        ("starts_on", models.DateField(blank=True, null=True)),
                        ("ends_on", models.DateField(blank=True, null=True)),
                        ("discount_percent", models.DecimalField(blank=True, decimal_places=2, help_text="Discount on the purchases it brings, if any.", max_digits=5, null=True, validators=[django.core.validators.MinValueValidator(0), django.core.validators.MaxValueValidator(100)])),
                        ("fixed_cost", models.DecimalField(blank=True, decimal_places=2, help_text="Cost per acceptance (a gift, a free session...), if any.", max_digits=10, null=True, validators=[django.core.validators.MinValueValidator(0)])),
                        ("holdout_share", models.DecimalField(decimal_places=3, default=Decimal("0.100"), max_digits=4, validators=[django.core.validators.MinValueValidator(0), django.core.validators.MaxValueValidator(Decimal("0.9"))])),
                        ("attribution_days", models.PositiveSmallIntegerField(default=30)),
                        ("is_active", models.BooleanField(default=True)),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("segments", models.ManyToManyField(blank=True, db_table="crm_offer_segments", help_text="Target segments.", related_name="offers", to="segmentation.segment")),
                    ],
                    options={
                        "db_table": "crm_offer",
                        "ordering": ["-created_at", "-id"],
                        "constraints": [
                            models.CheckConstraint(condition=models.Q(("starts_on__isnull", True), ("ends_on__isnull", True), ("ends_on__gte", models.F("starts_on")), _connector="OR"), name="offer_window_ordered"),
                            models.CheckConstraint(condition=models.Q(("discount_percent__isnull", True), models.Q(("discount_percent__gte", 0), ("discount_percent__lte", 100)), _connector="OR"), name="offer_discount_range"),
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="OfferResponse",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("outcome", models.CharField(choices=[("presented", "Presented, no answer yet"), ("accepted", "Accepted"), ("declined", "Declined"), ("holdout", "Held out (control group)")], default="presented", max_length=10)),
                        ("presented_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("responded_at", models.DateTimeField(blank=True, null=True)),
                        ("customer", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="offer_responses", to="crm.customer")),
                        ("offer", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="responses", to="offers.offer")),
                        ("segment", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="offer_responses", to="segmentation.segment")),
                    ],
                    options={
                        "db_table": "crm_offerresponse",
                        "ordering": ["-presented_at", "-id"],
                        "indexes": [
                            models.Index(fields=["offer", "outcome"], name="offer_response_outcome_idx"),
                            models.Index(fields=["segment", "offer"], name="offer_response_segment_idx"),
                        ],
                        "constraints": [
                            models.UniqueConstraint(fields=("offer", "customer"), name="offer_response_unique"),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(content_types_move, content_types_move_back, elidable=False),
    ]
