"""Segmentation follows crm's signals: membership copies of the customer figures."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from crm.services import customer_stats_refresh
from crm.signals import CUSTOMERS_ALL, customer_stats_refreshed
from segmentation.models import Membership
from tests.factories import CustomerFactory, PurchaseFactory, SegmentFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("everyone", [False, True])
def test_stats_refresh_carries_spend_and_last_purchase_to_the_segment_membership(everyone):
    segment = SegmentFactory()
    customer = CustomerFactory(segment=segment)
    when = timezone.now() - timedelta(days=3)
    PurchaseFactory(customer=customer, amount=Decimal("70.00"), purchased_at=when)

    customer_stats_refresh(customer_ids=None if everyone else [customer.pk])

    membership = Membership.objects.get(customer=customer)
    assert (membership.total_spent, membership.last_purchase_at) == (Decimal("70.00"), when)


def test_crm_announces_each_refreshed_batch_and_a_refresh_of_everyone():
    heard = []

    def listen(sender, *, customer_ids, **kwargs):
        heard.append(customer_ids)

    customer_stats_refreshed.connect(listen)
    try:
        ids = sorted(c.pk for c in CustomerFactory.create_batch(2))
        customer_stats_refresh(customer_ids=ids)
        customer_stats_refresh()
    finally:
        customer_stats_refreshed.disconnect(listen)

    assert heard == [ids, CUSTOMERS_ALL]


def test_membership_copies_are_updated_in_one_statement_per_batch(django_assert_num_queries):
    segment = SegmentFactory()
    customers = CustomerFactory.create_batch(3, segment=segment)
    for customer in customers:
        PurchaseFactory(customer=customer, amount=Decimal("12.00"))

    # One UPDATE of the customers' figures (their overdue moment included), one of their
    # memberships.
    with django_assert_num_queries(2):
        customer_stats_refresh(customer_ids=[c.pk for c in customers])

    assert set(Membership.objects.values_list("total_spent", flat=True)) == {Decimal("12.00")}
