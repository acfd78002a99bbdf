"""Beat deletes abandoned import uploads and fails jobs of dead workers, every hour."""

from django.db import migrations

TASK_NAME = "Clean up abandoned imports hourly"


def schedule_create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    if PeriodicTask.objects.filter(name=TASK_NAME).exists():
        return
    every_hour, _ = IntervalSchedule.objects.get_or_create(every=1, period="hours")
    PeriodicTask.objects.create(
        name=TASK_NAME,
        task="crm.tasks.import_jobs_clean",
        interval=every_hour,
        enabled=True,
        description="Delete uploads nobody confirmed within IMPORT_ABANDONED_HOURS; fail "
        "import jobs whose worker stopped.",
    )


def schedule_delete(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0021_import_job"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule_create, schedule_delete)]
