"""A customer's rights: all their data in one file; their erasure, leaving nothing that names
them and figures that still add up."""

import io
import json
from datetime import timedelta

import pytest
from django.apps import apps
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.management import CommandError, call_command
from django.db import DatabaseError, models, transaction
from django.urls import reverse
from django.utils import timezone

from api.models import WebhookEvent
from crm.audit import SYSTEM, audit_record
from crm.models import Activity, AuditEntry, Customer, FollowUp
from offers.models import Delivery
from pages.customer_data import customer_data, customer_erase
from segmentation.models import (
    CustomerFeatures,
    CustomerPrediction,
    CustomerPurchaseDays,
    Membership,
    Segment,
    SegmentationRun,
    SegmentMembershipChange,
    moment_us,
)
from tests.factories import (
    CustomerFactory,
    CustomerPredictionFactory,
    CustomerPurchaseDaysFactory,
    FeedbackFactory,
    OfferFactory,
    OfferResponseFactory,
    PurchaseFactory,
    SegmentationRunFactory,
    SegmentFactory,
    TagFactory,
)

pytestmark = pytest.mark.django_db

NAME = "Annabel Quixoté"
EMAIL = "annabel.quixote@example.org"
PHONE = "+44 7700 900123"


@pytest.fixture
def annabel(alice):
    """A customer with a row in every table that can hold one, and mentions elsewhere."""
    segment = SegmentFactory(name="Loyal", size=2, revenue=500)
    other = CustomerFactory(name="Other Person", segment=segment)
    customer = CustomerFactory(name=NAME, email=EMAIL, phone=PHONE, segment=segment)
    customer.tags.add(TagFactory(name="vip"))
    run = SegmentationRunFactory(
        status=SegmentationRun.Status.SUCCEEDED, reference_time=timezone.now()
    )
    purchase = PurchaseFactory(customer=customer, amount=120, product="Teapot")
    FeedbackFactory(customer=customer, purchase=purchase, rating=4, comment=f"From {NAME}")
    Activity.objects.create(customer=customer, kind="call", summary=f"Called {NAME}")
    FollowUp.objects.create(customer=customer, due_on=timezone.localdate(), note="Call back")
    offer = OfferFactory(title="Spring tea")
    OfferResponseFactory(offer=offer, customer=customer, segment=segment, outcome="accepted")
    OfferResponseFactory(offer=offer, customer=other, segment=segment, outcome="declined")
    Delivery.objects.create(offer=offer, customer=customer, error=f"bounced: {EMAIL}")
    SegmentMembershipChange.objects.create(
        customer=customer, run=run, to_segment=segment, reason="Buys often"
    )
    CustomerFeatures.objects.create(
        customer=customer, last_purchase_us=moment_us(run.reference_time - timedelta(days=3)),
        first_purchase_us=moment_us(run.reference_time - timedelta(days=100)), frequency=4,
        monetary_total=120, avg_order_value=30,
    )  # fmt: skip
    CustomerPredictionFactory(customer=customer, run=run)
    CustomerPurchaseDaysFactory(customer=customer, run=run)
    audit_record(actor=SYSTEM, action=AuditEntry.Action.VIEWED, obj=customer)
    audit_record(
        actor=SYSTEM, action=AuditEntry.Action.EXPORTED, object_type="crm.customer",
        count=1, detail=f"filter: q={EMAIL}",
    )  # fmt: skip
    LogEntry.objects.create(
        user=alice, content_type=ContentType.objects.get_for_model(Customer),
        object_id=str(customer.pk), object_repr=NAME, action_flag=CHANGE,
    )  # fmt: skip
    WebhookEvent.objects.create(
        source="stripe", event_id="evt_1", payload={"customer": {"email": EMAIL, "name": NAME}}
    )
    return customer


def test_the_export_holds_every_row_about_the_customer(annabel):
    data = json.loads(json.dumps(customer_data(customer=annabel), default=str))

    assert data["customer"]["email"] == EMAIL
    assert data["tags"] == ["vip"]
    assert [p["product"] for p in data["purchases"]] == ["Teapot"]
    assert data["feedback"][0]["comment"] == f"From {NAME}"
    assert data["activities"][0]["summary"] == f"Called {NAME}"
    assert [f["note"] for f in data["follow_ups"]] == ["Call back"]
    assert data["offer_responses"][0]["offer"] == "Spring tea"
    assert data["deliveries"][0]["error"] == f"bounced: {EMAIL}"
    assert data["membership"][0]["segment"] == "Loyal"
    assert data["segment_changes"][0]["reason"] == "Buys often"
    assert data["segment_features"][0]["frequency"] == 4
    # The figures' days as the customer page gives them: as of the run.
    assert data["segment_features"][0]["recency_days"] == 3
    assert data["segment_features"][0]["tenure_days"] == 100
    assert len(data["prediction"]) == 1
    assert data["purchase_days"][0]["days"] == 3
    assert [e["action"] for e in data["audit_entries"]] == ["viewed"]


def test_owner_downloads_the_file_from_the_customer_page_and_it_is_audited(staff_client, annabel):
    page = staff_client.get(reverse("pages:customer_detail", args=[annabel.pk]))
    url = reverse("pages:customer_data_export", args=[annabel.pk])
    assert url in page.content.decode()

    response = staff_client.get(url)

    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        f'attachment; filename="customer-{annabel.pk}-data.json"'
    )
    assert json.loads(response.content)["customer"]["name"] == NAME
    exported = AuditEntry.objects.filter(action="exported", object_id=str(annabel.pk))
    assert exported.get().username == "alice"


def test_the_export_command_finds_the_customer_by_id_or_email(annabel, tmp_path):
    target = tmp_path / "annabel.json"
    call_command("customer_data_export", EMAIL.upper(), output=str(target), stdout=io.StringIO())
    assert json.loads(target.read_text())["customer"]["id"] == annabel.pk

    out = io.StringIO()
    call_command("customer_data_export", str(annabel.pk), output="-", stdout=out)
    assert json.loads(out.getvalue())["customer"]["email"] == EMAIL

    with pytest.raises(CommandError, match="No customer"):
        call_command("customer_data_export", "nobody@example.org", output="-")


def _rows_naming(*texts: str) -> list[str]:
    """Every row of every model whose text columns hold one of the texts."""
    found = []
    for model in apps.get_models():
        fields = [
            f for f in model._meta.concrete_fields
            if isinstance(f, models.CharField | models.TextField | models.JSONField)
        ]  # fmt: skip
        for obj in model._default_manager.all():
            for f in fields:
                value = json.dumps(getattr(obj, f.attname), default=str, ensure_ascii=False)
                value = value.casefold()
                if any(t.casefold() in value for t in texts):
                    found.append(f"{model._meta.label}.{f.name} #{obj.pk}")
    return found


def test_after_erasure_no_row_of_any_table_names_the_customer(annabel):
    assert _rows_naming(NAME, EMAIL, PHONE)  # the fixture does name them everywhere
    customer_id = annabel.pk

    customer_erase(customer=annabel, actor=SYSTEM)

    assert _rows_naming(NAME, EMAIL, PHONE) == []
    assert not Customer.objects.filter(pk=customer_id).exists()
    for model in (
        Membership,
        SegmentMembershipChange,
        CustomerFeatures,
        CustomerPrediction,
        CustomerPurchaseDays,
        Delivery,
    ):
        assert not model.objects.filter(customer_id=customer_id).exists()
    about = AuditEntry.objects.filter(object_type="crm.customer", object_id=str(customer_id))
    viewed = about.get(action="viewed")
    assert viewed.object_repr == f"erased customer #{customer_id}"
    erased = about.get(action="erased")
    assert "rows deleted" in erased.detail
    assert AuditEntry.objects.get(action="exported").detail == "filter: q=[erased]"


def test_erasure_keeps_segment_sizes_and_offer_results_consistent(annabel):
    segment = Segment.objects.get(name="Loyal")
    offer_responses = annabel.offer_responses.get().offer.responses

    customer_erase(customer=annabel, actor=SYSTEM)

    segment.refresh_from_db()
    assert segment.size == Membership.objects.filter(segment=segment).count() == 1
    assert segment.revenue == 500 - 120
    assert list(offer_responses.values_list("outcome", flat=True)) == ["declined"]


def test_owner_erases_after_typing_the_word_and_a_wrong_word_changes_nothing(staff_client, annabel):
    url = reverse("pages:customer_erase", args=[annabel.pk])
    assert url in staff_client.get(annabel.get_absolute_url()).content.decode()
    assert staff_client.get(url).status_code == 200

    wrong = staff_client.post(url, {"confirm": "yes"})
    assert wrong.status_code == 400
    assert "to erase this customer" in wrong.content.decode()
    assert Customer.objects.filter(pk=annabel.pk).exists()

    done = staff_client.post(url, {"confirm": "Erase"}, follow=True)

    assert not Customer.objects.filter(pk=annabel.pk).exists()
    assert f"Customer #{annabel.pk} was erased" in done.content.decode()
    erased = AuditEntry.objects.get(action="erased")
    assert (erased.username, erased.object_id) == ("alice", str(annabel.pk))
    assert NAME not in erased.detail and EMAIL not in erased.detail


def test_the_erase_command_asks_unless_told_yes(annabel, monkeypatch):
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    call_command("customer_erase", EMAIL, stdout=io.StringIO())
    assert Customer.objects.filter(pk=annabel.pk).exists()

    out = io.StringIO()
    call_command("customer_erase", str(annabel.pk), yes=True, stdout=out)

    assert f"Customer #{annabel.pk} erased" in out.getvalue()
    assert not Customer.objects.filter(pk=annabel.pk).exists()


def test_an_audit_entry_still_cannot_be_changed_but_to_erase(annabel):
    entry = AuditEntry.objects.get(action="viewed")
    for change in ({"action": "deleted"}, {"object_repr": "someone else"},
                   {"at": entry.at - timedelta(days=1)}):  # fmt: skip
        with pytest.raises(DatabaseError), transaction.atomic():
            AuditEntry.objects.filter(pk=entry.pk).update(**change)
