"""The daily recluster at 03:00 (editable in the admin under Periodic tasks)."""

from django.conf import settings
from django.db import migrations

TASK_NAME = "Recluster customers daily"


def schedule_create(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    if PeriodicTask.objects.filter(name=TASK_NAME).exists():
        return
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="0",
        hour="3",
        day_of_week="*",
        day_of_month="*",
        month_of_year="*",
        timezone=settings.TIME_ZONE,
    )
    PeriodicTask.objects.create(
        name=TASK_NAME,
        task="segmentation.tasks.segmentation_run_scheduled",
        crontab=crontab,
        enabled=True,
        description="Recompute every customer's segment once a day.",
    )


def schedule_delete(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("segmentation", "0002_run_slot_heartbeat_active_names"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule_create, schedule_delete)]
