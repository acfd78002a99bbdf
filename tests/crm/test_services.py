"""Customer, purchase, feedback and tag services: validation and side effects."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from crm.models import Customer, Feedback
from crm.services import (
    FEEDBACK_COMMENT_MAX,
    customer_create,
    customer_stats_refresh,
    customer_update,
    customers_tag,
    feedback_submit,
    purchase_record,
)
from tests.factories import CustomerFactory, PurchaseFactory

pytestmark = pytest.mark.django_db


def test_customer_create_refuses_an_email_taken_in_another_case():
    CustomerFactory(email="ann@example.com")

    with pytest.raises(ValidationError) as error:
        customer_create(name="Ann", email="ANN@example.com")
    assert "already has the e-mail" in str(error.value.message_dict["email"])
    assert Customer.objects.count() == 1


def test_customer_create_validates_and_tags():
    customer = customer_create(name="Ann", email="ann@example.com", tag_names=["vip"])
    assert list(customer.tags.values_list("name", flat=True)) == ["vip"]

    with pytest.raises(ValidationError) as error:
        customer_create(name="Old", age=200)
    assert "age" in error.value.message_dict


def test_customer_update_changes_only_the_given_fields():
    customer = CustomerFactory(city="Paris", phone="+331")
    customer_update(customer=customer, city="Lyon")

    customer.refresh_from_db()
    assert (customer.city, customer.phone) == ("Lyon", "+331")
    with pytest.raises(ValidationError):
        customer_update(customer=customer, total_spent=Decimal("1"))


def test_purchase_record_refreshes_the_customer_statistics():
    customer = CustomerFactory()
    purchase_record(customer=customer, amount=Decimal("30"))
    purchase_record(customer=customer, amount=Decimal("5"), kind="refund")

    assert customer.purchase_count == 1 and customer.total_spent == Decimal("25.00")
    with pytest.raises(ValidationError) as error:
        purchase_record(customer=customer, amount=Decimal("-1"))
    assert "negative" in str(error.value)
    with pytest.raises(ValidationError):
        purchase_record(
            customer=customer, amount=Decimal("1"), purchased_at=timezone.now() + timedelta(days=3)
        )


def test_feedback_submit_requires_a_score_in_range():
    customer = CustomerFactory()
    feedback = feedback_submit(customer=customer, nps=9, comment="  Great  ")
    assert (feedback.nps, feedback.rating, feedback.comment) == (9, None, "Great")
    assert feedback.source == Feedback.Source.STAFF

    for kwargs, field in (({}, "rating"), ({"rating": 6}, "rating"), ({"nps": 11}, "nps")):
        with pytest.raises(ValidationError) as error:
            feedback_submit(customer=customer, **kwargs)
        assert field in error.value.message_dict
    other_purchase = PurchaseFactory()
    with pytest.raises(ValidationError) as error:
        feedback_submit(customer=customer, rating=3, purchase=other_purchase)
    assert "purchase" in error.value.message_dict
    assert Feedback.objects.count() == 1


def test_customers_tag_tags_a_whole_queryset_once():
    customers = CustomerFactory.create_batch(3)
    customers_tag(customers=Customer.objects.all(), tag_names=["vip", " vip ", "spring"])
    count = customers_tag(customers=[customers[0].pk], tag_names=["vip"])

    assert count == 1
    for customer in customers:
        assert sorted(customer.tags.values_list("name", flat=True)) == ["spring", "vip"]
    with pytest.raises(ValidationError):
        customers_tag(customers=customers, tag_names=[" "])


def test_stats_refresh_counts_sales_and_subtracts_refunds():
    customer = CustomerFactory()
    PurchaseFactory(customer=customer, amount=Decimal("40"))
    PurchaseFactory(customer=customer, amount=Decimal("10"), kind="refund")

    assert customer_stats_refresh(customer_ids=[customer.pk]) == 1
    customer.refresh_from_db()
    assert customer.purchase_count == 1 and customer.total_spent == Decimal("30.00")


def test_stats_refresh_of_everyone_matches_the_per_customer_refresh():
    buyer, refunded_only, stale = CustomerFactory.create_batch(3)
    first = timezone.now() - timedelta(days=30)
    last = timezone.now() - timedelta(days=2)
    PurchaseFactory(customer=buyer, amount=Decimal("40.50"), purchased_at=first)
    PurchaseFactory(customer=buyer, amount=Decimal("9.50"), purchased_at=last)
    PurchaseFactory(customer=buyer, amount=Decimal("5"), kind="refund", purchased_at=last)
    PurchaseFactory(customer=refunded_only, amount=Decimal("7"), kind="refund")
    # Statistics left over from purchases that no longer exist must be cleared.
    Customer.objects.filter(pk=stale.pk).update(
        purchase_count=3, total_spent=Decimal("99"), last_purchase_at=last
    )

    assert customer_stats_refresh() == 3

    buyer.refresh_from_db()
    assert (buyer.purchase_count, buyer.total_spent) == (2, Decimal("45.00"))
    assert (buyer.first_purchase_at, buyer.last_purchase_at) == (first, last)
    refunded_only.refresh_from_db()
    assert (refunded_only.purchase_count, refunded_only.total_spent) == (0, Decimal("-7.00"))
    assert refunded_only.last_purchase_at is None
    stale.refresh_from_db()
    assert (stale.purchase_count, stale.total_spent, stale.last_purchase_at) == (0, 0, None)


@pytest.mark.parametrize("everyone", [False, True], ids=["by ids", "everyone"])
def test_stats_refresh_stamps_when_the_customers_purchases_changed(everyone):
    ann, bob = CustomerFactory.create_batch(2)
    Customer.objects.update(purchases_changed_at=None)
    before = timezone.now()

    customer_stats_refresh(customer_ids=None if everyone else [ann.pk])

    after = timezone.now()
    stamped = dict(Customer.objects.values_list("pk", "purchases_changed_at"))
    assert before <= stamped[ann.pk] <= after
    assert (stamped[bob.pk] is not None) is everyone


def test_feedback_submit_refuses_an_overlong_comment_and_writes_nothing():
    customer = CustomerFactory()

    with pytest.raises(ValidationError, match="under 2000 characters"):
        feedback_submit(customer=customer, rating=4, comment="x" * (FEEDBACK_COMMENT_MAX + 1))
    assert not Feedback.objects.exists()
    feedback_submit(customer=customer, rating=4, comment="x" * FEEDBACK_COMMENT_MAX)
    assert Feedback.objects.count() == 1


def _bought(customer, *days_ago: float) -> None:
    for days in days_ago:
        PurchaseFactory(customer=customer, purchased_at=timezone.now() - timedelta(days=days))


def test_overdue_from_is_last_purchase_plus_one_and_a_half_usual_gaps():
    regular = CustomerFactory()
    _bought(regular, 40, 30, 20)  # every 10 days, last 20 days ago: overdue 5 days ago
    customer_stats_refresh(customer_ids=[regular.pk])

    regular.refresh_from_db()
    expected = regular.last_purchase_at + timedelta(days=15)
    assert abs((regular.overdue_from - expected).total_seconds()) < 1


@pytest.mark.parametrize(
    "days_ago",
    [(), (30, 20), (20.0, 19.99, 19.98)],
    ids=["never bought", "two purchases are no rhythm", "one visit is no rhythm"],
)
def test_overdue_from_stays_empty_without_a_buying_rhythm(days_ago):
    customer = CustomerFactory()
    _bought(customer, *days_ago)
    customer_stats_refresh(customer_ids=[customer.pk])

    customer.refresh_from_db()
    assert customer.overdue_from is None


def test_overdue_from_follows_purchases_removed_and_the_refresh_of_everyone():
    customer = CustomerFactory()
    _bought(customer, 40, 30, 20)
    customer_stats_refresh(customer_ids=[customer.pk])
    customer.purchases.order_by("purchased_at").first().delete()
    customer_stats_refresh(customer_ids=[customer.pk])
    customer.refresh_from_db()
    assert customer.overdue_from is None

    _bought(customer, 35)
    customer_stats_refresh()
    customer.refresh_from_db()
    expected = customer.last_purchase_at + timedelta(days=1.5 * 7.5)
    assert abs((customer.overdue_from - expected).total_seconds()) < 1
