"""The audit trail: what is recorded, by whom and from where; append-only; retention."""

import io
from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from crm.audit import SYSTEM, Actor, audit_prune, audit_record
from crm.importers import customers_import
from crm.models import AuditEntry, Customer
from tests.factories import CustomerFactory, SegmentFactory, UserFactory

pytestmark = pytest.mark.django_db

Action = AuditEntry.Action


def entries(**filters) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(**filters).order_by("id"))


def test_opening_a_customer_records_who_viewed_it_and_from_where(staff_client, alice):
    ann = CustomerFactory(name="Ann")

    staff_client.get(reverse("pages:customer_detail", args=[ann.pk]))
    staff_client.get(reverse("admin:crm_customer_change", args=[ann.pk]))
    staff_client.get(reverse("pages:customer_detail", args=[ann.pk + 1000]))  # a 404

    viewed = entries(action=Action.VIEWED)
    assert [(e.username, e.user_id, e.address) for e in viewed] == [
        ("alice", alice.pk, "127.0.0.1")
    ] * 2
    assert {(e.object_type, e.object_id) for e in viewed} == {("crm.customer", str(ann.pk))}


def test_an_admin_export_records_the_number_of_rows_and_the_filter(staff_client):
    customers = [CustomerFactory(), CustomerFactory(), CustomerFactory()]
    url = reverse("admin:crm_customer_changelist") + "?marketing_consent=1"
    body = {"action": "export_selected_csv", ACTION_CHECKBOX_NAME: [c.pk for c in customers[:2]]}

    response = staff_client.post(url, body)
    b"".join(response.streaming_content)

    (entry,) = entries(action=Action.EXPORTED)
    assert (entry.object_type, entry.count) == ("crm.customer", 2)
    assert entry.detail == "selected; filter: marketing_consent=1"


def test_a_segment_members_export_is_recorded(staff_client):
    segment = SegmentFactory()
    CustomerFactory(segment=segment)

    staff_client.get(reverse("segmentation:segment_members_export", args=[segment.pk]))

    (entry,) = entries(action=Action.EXPORTED)
    assert (entry.object_type, entry.object_id, entry.count) == (
        "segmentation.segment",
        str(segment.pk),
        1,
    )


def test_an_import_is_recorded_with_its_counts_but_a_dry_run_is_not(alice):
    data = b"email,name\nann@example.com,Ann\nbob@example.com,Bob\n"
    customers_import(source=io.BytesIO(data), dry_run=True, actor=Actor(user=alice))
    customers_import(source=io.BytesIO(data), actor=Actor(user=alice, address="10.0.0.7"))

    (entry,) = entries(action=Action.IMPORTED)
    assert (entry.username, entry.address, entry.count) == ("alice", "10.0.0.7", 2)
    assert entry.detail == "created 2, updated 0, invalid rows 0"


def test_admin_edits_and_deletions_are_recorded_with_the_changed_fields(staff_client):
    ann = CustomerFactory(name="Ann", email="ann@example.com")
    change = reverse("admin:crm_customer_change", args=[ann.pk])
    form = staff_client.get(change).context["adminform"].form
    data = {name: form[name].value() or "" for name in form.fields if name != "tags"}
    data.update(
        name="Ann Lee",
        **{
            f"{prefix}-{key}": value
            for prefix in ("purchases", "feedback")
            for key, value in (("TOTAL_FORMS", 0), ("INITIAL_FORMS", 0))
        },
    )
    data = {k: ("on" if v is True else v) for k, v in data.items() if v is not False}

    response = staff_client.post(change, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    staff_client.post(reverse("admin:crm_customer_delete", args=[ann.pk]), {"post": "yes"})

    (edited,) = entries(action=Action.EDITED)
    assert edited.detail == "changed: Name"
    (deleted,) = entries(action=Action.DELETED)
    assert (deleted.object_id, deleted.object_repr) == (str(ann.pk), "Ann Lee")
    assert not Customer.objects.exists()


def test_starting_a_run_and_pinning_a_customer_are_recorded(staff_client):
    segment = SegmentFactory()
    ann = CustomerFactory(segment=segment)

    staff_client.post(reverse("segmentation:segmentation_run_start"))
    staff_client.post(reverse("pages:customer_segment_pin", args=[ann.pk]))

    (ran,) = entries(action=Action.RAN_SEGMENTATION)
    assert ran.object_type == "segmentation.segmentationrun"
    (pinned,) = entries(action=Action.CHANGED_SEGMENT)
    assert pinned.object_id == str(ann.pk)


def test_an_entry_cannot_be_changed_in_the_database():
    entry = audit_record(actor=SYSTEM, action=Action.VIEWED, object_type="crm.customer")

    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(action=Action.DELETED)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the DELETE guard is PostgreSQL's")
def test_a_recent_entry_cannot_be_deleted_in_the_database():
    entry = audit_record(actor=SYSTEM, action=Action.VIEWED, object_type="crm.customer")

    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).delete()


def test_owners_read_the_trail_in_the_admin_and_nobody_edits_it(client):
    entry = audit_record(actor=SYSTEM, action=Action.VIEWED, object_type="crm.customer")
    for role, status in (("Owner", 200), ("Assistant", 403), ("Viewer", 403)):
        user = UserFactory(username=role, is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        client.force_login(user)

        assert client.get(reverse("admin:crm_auditentry_changelist")).status_code == status
        for view in ("change", "delete"):
            url = reverse(f"admin:crm_auditentry_{view}", args=[entry.pk])
            assert client.post(url, {"post": "yes"}).status_code == 403
        assert client.get(reverse("admin:crm_auditentry_add")).status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_entries_older_than_the_retention_are_pruned(settings):
    settings.AUDIT_RETENTION_DAYS = 365
    now = timezone.now()
    kept = audit_record(actor=SYSTEM, action=Action.VIEWED)
    # Written as old (an UPDATE is refused, so it cannot be backdated afterwards).
    AuditEntry.objects.bulk_create(
        [AuditEntry(at=now - timedelta(days=400), action=Action.EXPORTED, count=5)]
    )

    assert audit_prune() == 1
    out = io.StringIO()
    call_command("audit_prune", stdout=out)

    assert out.getvalue().strip() == "Deleted 0 audit entries older than 365 days."
    assert [e.pk for e in AuditEntry.objects.all()] == [kept.pk]
