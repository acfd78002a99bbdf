"""The audit trail is append-only in the database too, and pruned daily by beat.

An UPDATE is refused; on PostgreSQL (the production database) a DELETE of an entry younger
than AUDIT_MIN_DAYS (the least AUDIT_RETENTION_DAYS may be) too: through the application's
connection nobody rewrites the trail or erases its recent part. SQLite keeps only the UPDATE
guard: Django empties its tables with DELETE (test flushes), which such a trigger would stop.
"""

from django.conf import settings
from django.db import migrations

AUDIT_MIN_DAYS = 30
TASK_NAME = "Prune the audit trail daily"

SQLITE = [
    """CREATE TRIGGER audit_no_update BEFORE UPDATE ON crm_auditentry
    BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END""",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS audit_no_update",
]
POSTGRES = [
    f"""CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' THEN
            RAISE EXCEPTION 'audit entries are append-only';
        END IF;
        IF OLD.at > now() - interval '{AUDIT_MIN_DAYS} days' THEN
            RAISE EXCEPTION 'audit entries younger than {AUDIT_MIN_DAYS} days are kept';
        END IF;
        RETURN OLD;
    END $$""",
    """CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON crm_auditentry
    FOR EACH ROW EXECUTE FUNCTION audit_append_only()""",
]
POSTGRES_BACKWARD = [
    "DROP TRIGGER IF EXISTS audit_append_only ON crm_auditentry",
    "DROP FUNCTION IF EXISTS audit_append_only()",
]


def _run(statements: dict):
    def run(apps, schema_editor):
        for sql in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return run


def schedule_create(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    if PeriodicTask.objects.filter(name=TASK_NAME).exists():
        return
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="30",
        hour="3",
        day_of_week="*",
        day_of_month="*",
        month_of_year="*",
        timezone=settings.TIME_ZONE,
    )
    PeriodicTask.objects.create(
        name=TASK_NAME,
        task="crm.tasks.audit_prune",
        crontab=crontab,
        enabled=True,
        description="Delete audit entries older than AUDIT_RETENTION_DAYS.",
    )


def schedule_delete(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0018_audit_entry"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE, "postgresql": POSTGRES}),
            _run({"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRES_BACKWARD}),
        ),
        migrations.RunPython(schedule_create, schedule_delete),
    ]
