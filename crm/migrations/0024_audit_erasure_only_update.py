"""The audit trail stays append-only, with one exception: erasing a customer.

An UPDATE may rewrite only what an entry says about the customer, and only to erase it: the
object's description becomes "erased customer #<id>" and personal data in the detail becomes
"[erased]" (crm.audit.audit_customer_anonymise); who, when, from where, what and on which id
never change. Any other UPDATE is still refused, and the DELETE guard is unchanged.
"""

from django.db import migrations, models

ERASED_REPR = "erased customer #%"
ERASED_MARK = "%[erased]%"


def _erasure_only(same: str) -> str:
    """The condition an UPDATE must meet; `same` is the vendor's null-safe equality."""
    unchanged = " AND ".join(
        f"NEW.{c} {same} OLD.{c}"
        for c in ("at", "user_id", "username", "address", "action", "object_type", "object_id",
                  "count")
    )  # fmt: skip
    return (
        f"{unchanged} AND (NEW.object_repr = OLD.object_repr "
        f"OR NEW.object_repr LIKE '{ERASED_REPR}') "
        f"AND (NEW.detail = OLD.detail OR NEW.detail LIKE '{ERASED_MARK}')"
    )


SQLITE = [
    "DROP TRIGGER IF EXISTS audit_no_update",
    f"""CREATE TRIGGER audit_no_update BEFORE UPDATE ON crm_auditentry
    WHEN NOT ({_erasure_only("IS")})
    BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END""",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS audit_no_update",
    """CREATE TRIGGER audit_no_update BEFORE UPDATE ON crm_auditentry
    BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END""",
]


def _postgres_function(update_rule: str) -> str:
    return f"""CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' THEN
            IF {update_rule} THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION 'audit entries are append-only';
        END IF;
        IF OLD.at > now() - interval '30 days' THEN
            RAISE EXCEPTION 'audit entries younger than 30 days are kept';
        END IF;
        RETURN OLD;
    END $$"""


POSTGRES = [_postgres_function(_erasure_only("IS NOT DISTINCT FROM"))]
POSTGRES_BACKWARD = [_postgres_function("FALSE")]


def _run(statements: dict):
    def run(apps, schema_editor):
        for sql in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql, params=None)  # LIKE patterns hold "%"

    return run


class Migration(migrations.Migration):
    dependencies = [("crm", "0023_business_settings_feedback_short_link")]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE, "postgresql": POSTGRES}),
            _run({"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRES_BACKWARD}),
        ),
        migrations.AlterField(
            model_name="auditentry",
            name="action",
            field=models.CharField(
                choices=[
                    ("viewed", "Viewed"),
                    ("exported", "Exported"),
                    ("imported", "Imported"),
                    ("created", "Created"),
                    ("edited", "Edited"),
                    ("deleted", "Deleted"),
                    ("ran_segmentation", "Ran the segmentation"),
                    ("changed_segment", "Changed a segment"),
                    ("erased", "Erased (right to erasure)"),
                ],
                max_length=20,
            ),
        ),
    ]
