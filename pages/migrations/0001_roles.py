"""The three roles as groups: Owner (everything), Assistant (daily work), Viewer (view only).

In the top app because a role spans every app's permissions. The lists are frozen here, as a
migration's data must be; tests/test_roles.py checks what each role may open.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

# Every permission of these apps, and of the users, schedules and lockouts the admin shows.
OWNER_APPS = ("crm", "segmentation", "offers", "api", "auth", "django_celery_beat", "axes")

ASSISTANT = {
    "crm": [
        "view_customer",
        "add_customer",
        "change_customer",
        "view_purchase",
        "add_purchase",
        "change_purchase",
        "view_feedback",
        "add_feedback",
        "change_feedback",
        "view_tag",
        "add_tag",
        "view_activity",
        "add_activity",
        "view_followup",
        "add_followup",
        "change_followup",
    ],
    "segmentation": ["view_segment", "view_membership"],
    "offers": ["view_offer", "view_offerresponse", "add_offerresponse", "change_offerresponse"],
}

VIEWER = {
    "crm": [
        "view_customer",
        "view_purchase",
        "view_feedback",
        "view_tag",
        "view_activity",
        "view_followup",
    ],
    "segmentation": [
        "view_segment",
        "view_membership",
        "view_segmentationrun",
        "view_segmentmembershipchange",
    ],
    "offers": ["view_offer", "view_offerresponse"],
}


def roles_create(apps, schema_editor):
    # Permissions are made after all migrations ran; the groups need them now.
    for config in apps.get_app_configs():
        config.models_module = True
        create_permissions(config, verbosity=0, apps=apps)
        config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")

    def chosen(spec: dict[str, list[str]]):
        perms = []
        for app_label, codenames in spec.items():
            found = Permission.objects.filter(
                content_type__app_label=app_label, codename__in=codenames
            )
            missing = set(codenames) - {p.codename for p in found}
            assert not missing, f"unknown permissions in {app_label}: {missing}"
            perms.extend(found)
        return perms

    owner, _ = Group.objects.get_or_create(name="Owner")
    owner.permissions.set(Permission.objects.filter(content_type__app_label__in=OWNER_APPS))
    assistant, _ = Group.objects.get_or_create(name="Assistant")
    assistant.permissions.set(chosen(ASSISTANT))
    viewer, _ = Group.objects.get_or_create(name="Viewer")
    viewer.permissions.set(chosen(VIEWER))


def roles_delete(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(
        name__in=["Owner", "Assistant", "Viewer"]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("crm", "0019_audit_append_only"),
        ("segmentation", "0010_run_permission"),
        ("offers", "0002_offer_email_and_delivery"),
        ("api", "0001_initial"),
        ("django_celery_beat", "__latest__"),
        ("axes", "__latest__"),
    ]

    operations = [migrations.RunPython(roles_create, roles_delete)]
