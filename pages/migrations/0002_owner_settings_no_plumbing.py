"""The Owner may edit the business settings; the admin's plumbing leaves the Owner's admin home.

Login attempts (django-axes) and the schedules' building blocks (django-celery-beat's
intervals, crontabs, solar and clocked events) are machinery, not the business: the Owner
role no longer holds their permissions, so the admin index does not list them. Superusers
still see them; the periodic tasks themselves stay with the Owner.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

OWNER_GAINS = {"crm": ["view_businesssettings", "change_businesssettings"]}
OWNER_LOSES = {
    "axes": ["accessattempt", "accessfailurelog", "accesslog"],
    "django_celery_beat": [
        "intervalschedule",
        "crontabschedule",
        "solarschedule",
        "clockedschedule",
    ],
}


def _permissions(apps, spec, *, models: bool):
    Permission = apps.get_model("auth", "Permission")
    found = []
    for app_label, names in spec.items():
        lookup = "content_type__model__in" if models else "codename__in"
        found.extend(
            Permission.objects.filter(content_type__app_label=app_label, **{lookup: names})
        )
    return found


def owner_update(apps, schema_editor):
    # Permissions are made after all migrations ran; the Owner needs the new ones now.
    for config in apps.get_app_configs():
        config.models_module = True
        create_permissions(config, verbosity=0, apps=apps)
        config.models_module = None
    owner = apps.get_model("auth", "Group").objects.filter(name="Owner").first()
    if owner is None:
        return
    owner.permissions.add(*_permissions(apps, OWNER_GAINS, models=False))
    owner.permissions.remove(*_permissions(apps, OWNER_LOSES, models=True))


def owner_restore(apps, schema_editor):
    owner = apps.get_model("auth", "Group").objects.filter(name="Owner").first()
    if owner is None:
        return
    owner.permissions.remove(*_permissions(apps, OWNER_GAINS, models=False))
    owner.permissions.add(*_permissions(apps, OWNER_LOSES, models=True))


class Migration(migrations.Migration):
    dependencies = [
        ("pages", "0001_roles"),
        ("crm", "0023_business_settings_feedback_short_link"),
    ]

    operations = [migrations.RunPython(owner_update, owner_restore)]
