from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count, F, Max, Min, Q
from django.utils import timezone

from crm.models import Customer, Feedback, Purchase, Tag
from offers.models import Offer
from pages.demo import demo_seed


def _snapshot() -> list[tuple]:
    return list(
        Customer.objects.order_by("email", "name", "created_at").values_list(
            "name", "email", "city", "age", "purchase_count", "total_spent", "last_purchase_at"
        )
    )


def test_demo_has_customers_of_distinct_behaviours(db):
    demo_seed(customers=400, seed=5)
    now = timezone.now()

    assert Customer.objects.count() == 400
    prospects = Customer.objects.filter(purchase_count=0).count()
    one_off = Customer.objects.filter(purchase_count=1).count()
    frequent = Customer.objects.filter(purchase_count__gte=15).count()
    lapsed = Customer.objects.filter(last_purchase_at__lt=now - timedelta(days=200)).count()
    new = Customer.objects.filter(first_purchase_at__gte=now - timedelta(days=61)).count()
    unhappy = Customer.objects.filter(feedback__rating__lte=2).distinct().count()
    assert all(n >= 10 for n in (prospects, one_off, frequent, lapsed, new, unhappy)), (
        prospects, one_off, frequent, lapsed, new, unhappy,
    )  # fmt: skip


def test_demo_purchases_span_two_years_and_none_is_in_the_future(db):
    demo_seed(customers=300, seed=2)
    now = timezone.now()

    dates = Purchase.objects.aggregate(first=Min("purchased_at"), last=Max("purchased_at"))
    assert dates["last"] <= now
    assert dates["first"] < now - timedelta(days=600)
    assert not Purchase.objects.filter(purchased_at__gt=now).exists()
    assert not Feedback.objects.filter(created_at__gt=now).exists()
    assert Purchase.objects.filter(kind=Purchase.Kind.REFUND).exists()


def test_demo_refreshes_the_purchase_statistics_of_customers(db):
    demo_seed(customers=200, seed=3)

    counted = Customer.objects.annotate(
        n=Count("purchases", filter=Q(purchases__kind=Purchase.Kind.SALE))
    ).exclude(n=F("purchase_count"))
    assert not counted.exists()
    assert not Customer.objects.filter(first_purchase_at__lt=F("created_at")).exists()


def test_demo_is_deterministic_for_a_seed(db):
    day = date(2026, 3, 14)
    demo_seed(customers=150, seed=11, today=day)
    first = _snapshot()
    Customer.objects.all().delete()

    demo_seed(customers=150, seed=11, today=day)
    assert _snapshot() == first

    Customer.objects.all().delete()
    demo_seed(customers=150, seed=12, today=day)
    assert _snapshot() != first


def test_demo_dates_end_before_the_given_day(db):
    demo_seed(customers=100, seed=1, today=date(2025, 1, 10))

    last = Purchase.objects.aggregate(last=Max("purchased_at"))["last"]
    assert last < datetime(2025, 1, 10, tzinfo=UTC)
    assert last > datetime(2024, 12, 1, tzinfo=UTC)


def test_demo_adds_feedback_tags_offers_ages_and_incomes(db):
    summary = demo_seed(customers=300, seed=4)

    assert Feedback.objects.count() == summary.feedback > 0
    assert Feedback.objects.exclude(comment="").exists()
    assert Feedback.objects.filter(nps__isnull=False).exists()
    assert Feedback.objects.filter(purchase__isnull=False).exists()
    assert Tag.objects.filter(name="vip", customers__isnull=False).exists()
    assert Offer.objects.count() == summary.offers >= 3
    assert not Offer.objects.filter(segments__isnull=False).exists()
    with_age = Customer.objects.filter(Q(age__isnull=False) | Q(birth_date__isnull=False))
    assert 0.4 < with_age.count() / 300 < 0.9
    assert Customer.objects.filter(annual_income__isnull=False).exists()


def test_seeding_twice_adds_customers_without_clashing_or_duplicating_offers(db):
    demo_seed(customers=100, seed=1)
    offers = Offer.objects.count()

    summary = demo_seed(customers=100, seed=1)

    assert Customer.objects.count() == 200
    assert summary.offers == 0
    assert Offer.objects.count() == offers


def test_seed_demo_command_reports_what_it_inserted(db, capsys):
    call_command("seed_demo", customers=50, seed=9)

    assert "50 customers" in capsys.readouterr().out
    assert Customer.objects.count() == 50


def test_seed_demo_command_rejects_a_negative_count(db):
    with pytest.raises(CommandError, match="--customers"):
        call_command("seed_demo", customers=-1, seed=1)
    assert not Customer.objects.exists()
