"""Read the bounce Maildir every 15 minutes (the task does nothing while EMAIL_BOUNCE_MAILDIR
is unset)."""

from django.db import migrations

TASK_NAME = "Read bounce reports"


def schedule_create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    if PeriodicTask.objects.filter(name=TASK_NAME).exists():
        return
    every, _ = IntervalSchedule.objects.get_or_create(every=15, period="minutes")
    PeriodicTask.objects.create(
        name=TASK_NAME,
        task="offers.tasks.bounces_process_maildir",
        interval=every,
        enabled=True,
        description="Mark bounced the offer e-mails reported in EMAIL_BOUNCE_MAILDIR.",
    )


def schedule_delete(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("offers", "0003_delivery_address_and_bounces"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule_create, schedule_delete)]
