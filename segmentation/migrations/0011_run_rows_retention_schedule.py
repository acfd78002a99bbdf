"""The daily clean-up of old runs' per-customer rows at 03:45 (editable under Periodic tasks)."""

from django.conf import settings
from django.db import migrations

TASK_NAME = "Clean up old runs' per-customer rows daily"


def schedule_create(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    if PeriodicTask.objects.filter(name=TASK_NAME).exists():
        return
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="45",
        hour="3",
        day_of_week="*",
        day_of_month="*",
        month_of_year="*",
        timezone=settings.TIME_ZONE,
    )
    PeriodicTask.objects.create(
        name=TASK_NAME,
        task="segmentation.tasks.run_rows_retention",
        crontab=crontab,
        enabled=True,
        description="Delete stored features and predictions of runs older than "
        "RUN_ROWS_KEEP_RUNS runs and RUN_ROWS_KEEP_DAYS days, and rows of deleted customers.",
    )


def schedule_delete(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("segmentation", "0010_run_permission"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule_create, schedule_delete)]
