"""Moving Offer and OfferResponse from crm to offers keeps every row, target and admin record."""

from datetime import date
from decimal import Decimal

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from offers.models import Offer, OfferResponse

# crm before it let go of the offers; going back there unapplies offers.0001 too.
# The schema of the release before the move (segmentation as it was then, too).
BEFORE_MOVE = [
    ("crm", "0011_customer_segment_moved_to_membership"),
    ("segmentation", "0007_membership_sort_figures"),
]


def _migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    ContentType.objects.clear_cache()
    return executor


def _leaves() -> list[tuple[str, str]]:
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_moving_offers_to_their_app_keeps_offers_targets_responses_and_admin_records(alice):
    executor = _migrate(BEFORE_MOVE)
    old = executor.loader.project_state(BEFORE_MOVE).apps
    assert ("offers", "offer") not in old.all_models.get("offers", {})
    segment = old.get_model("segmentation", "Segment").objects.create(name="Loyal regulars")
    customer = old.get_model("crm", "Customer").objects.create(name="Ann Lee")
    offer = old.get_model("crm", "Offer").objects.create(
        title="Spring coaching",
        discount_percent=Decimal("15.00"),
        starts_on=date(2026, 3, 1),
        ends_on=date(2026, 4, 30),
    )
    offer.segments.add(segment)
    presented = timezone.now()
    response = old.get_model("crm", "OfferResponse").objects.create(
        offer=offer,
        customer=customer,
        segment=segment,
        outcome="accepted",
        presented_at=presented,
        responded_at=presented,
    )
    # Content types as a database migrated on the old code has them: under crm.
    offer_type = ContentType.objects.get(app_label="crm", model="offer")
    # (Models added to offers later, such as Delivery, have theirs from the test database.)
    assert not ContentType.objects.filter(
        app_label="offers", model__in=["offer", "offerresponse"]
    ).exists()
    permission = Permission.objects.get(content_type_id=offer_type.pk, codename="change_offer")
    entry = LogEntry.objects.create(
        user=alice,
        content_type_id=offer_type.pk,
        object_id=str(offer.pk),
        object_repr="Spring coaching",
        action_flag=ADDITION,
    )

    _migrate(_leaves())

    moved = Offer.objects.get(pk=offer.pk)
    assert (moved.title, moved.discount_percent, moved.ends_on) == (
        "Spring coaching",
        Decimal("15.00"),
        date(2026, 4, 30),
    )
    assert list(moved.segments.values_list("pk", flat=True)) == [segment.pk]
    answer = OfferResponse.objects.get(pk=response.pk)
    assert (answer.offer_id, answer.customer_id, answer.segment_id) == (
        offer.pk,
        customer.pk,
        segment.pk,
    )
    assert answer.outcome == OfferResponse.Outcome.ACCEPTED
    assert answer.responded_at == presented
    # Same content type row, now under offers: permissions and admin history follow it.
    assert ContentType.objects.get_for_model(Offer).pk == offer_type.pk
    assert Permission.objects.get(pk=permission.pk).content_type.app_label == "offers"
    assert LogEntry.objects.get(pk=entry.pk).get_edited_object() == moved
    assert not ContentType.objects.filter(app_label="crm", model__startswith="offer").exists()
