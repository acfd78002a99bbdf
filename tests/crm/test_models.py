"""The database itself refuses impossible rows, whatever path writes them."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from crm.models import Customer, Feedback, Purchase
from segmentation.models import Membership, SegmentMembershipChange
from tests.factories import CustomerFactory, PurchaseFactory, SegmentFactory

pytestmark = pytest.mark.django_db


def _refused(**fields) -> bool:
    try:
        with transaction.atomic():
            Purchase.objects.create(**fields)
    except IntegrityError:
        return True
    return False


def test_a_purchase_dated_more_than_a_day_ahead_is_refused_but_tomorrow_is_fine():
    customer = CustomerFactory()
    now = timezone.now()

    assert _refused(customer=customer, amount=Decimal("5"), purchased_at=now + timedelta(days=2))
    assert not _refused(
        customer=customer, amount=Decimal("5"), purchased_at=now + timedelta(hours=20)
    )
    # An update may not move a purchase into the future either.
    with pytest.raises(IntegrityError), transaction.atomic():
        Purchase.objects.filter(customer=customer).update(purchased_at=now + timedelta(days=5))


def test_a_negative_amount_is_refused_refunds_are_their_own_kind():
    customer = CustomerFactory()

    assert _refused(customer=customer, amount=Decimal("-1"))
    assert not _refused(customer=customer, amount=Decimal("1"), kind=Purchase.Kind.REFUND)


@pytest.mark.parametrize(
    ("rating", "nps"), [(0, None), (6, None), (None, 11), (None, None)], ids=str
)
def test_feedback_scores_out_of_range_or_missing_are_refused(rating, nps):
    customer = CustomerFactory()

    with pytest.raises(IntegrityError), transaction.atomic():
        Feedback.objects.create(customer=customer, rating=rating, nps=nps)


def test_emails_are_unique_whatever_their_case_but_blank_is_allowed_twice():
    CustomerFactory(email="Ann@Example.com")
    CustomerFactory(email="")
    CustomerFactory(email="")

    with pytest.raises(IntegrityError), transaction.atomic():
        Customer.objects.create(name="Ann again", email="ann@example.COM")


def test_deleting_a_customer_deletes_their_membership_and_segment_history():
    # Neither table has a database FK constraint (see segmentation.Membership): Django's
    # cascade is what keeps them clean.
    segment = SegmentFactory()
    customer = CustomerFactory(segment=segment, segment_reason="Buys often.")
    SegmentMembershipChange.objects.create(customer=customer, to_segment=segment)
    customer.delete()
    assert not Membership.objects.exists()
    assert not SegmentMembershipChange.objects.exists()


@pytest.mark.django_db
def test_purchases_are_found_by_their_shop_order_ids_never_by_a_blank_one():
    customer = CustomerFactory()
    shop_order = PurchaseFactory(customer=customer, external_source="shop", external_order_id="A1")
    PurchaseFactory(customer=customer, external_source="shop", external_order_id="")
    PurchaseFactory(customer=customer, external_source="other", external_order_id="A1")

    found = Purchase.objects.with_order_ids(source="shop", order_ids=["A1", ""])

    assert list(found) == [shop_order]
