"""factory_boy factories for the project's models."""

from datetime import timedelta
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from crm.models import Customer, Feedback, Purchase, Tag
from crm.search import customer_search_text
from offers.models import Offer, OfferResponse
from segmentation.models import (
    CustomerPrediction,
    CustomerPurchaseDays,
    Membership,
    PurchaseDaysRead,
    Segment,
    SegmentationRun,
)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery staple")


class TagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tag
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"tag{n}")


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    name = factory.Faker("name")
    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    phone = factory.Sequence(lambda n: f"+4420700{n:05d}")
    city = "London"
    country = "United Kingdom"
    marketing_consent = True
    # What every writer of a customer keeps in step (crm.search).
    search_text = factory.LazyAttribute(
        lambda c: customer_search_text(name=c.name, email=c.email, phone=c.phone)
    )

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        # segment, segment_reason and segment_pinned live in segmentation.Membership.
        label = {
            "segment": kwargs.pop("segment", None),
            "reason": kwargs.pop("segment_reason", ""),
            "pinned": kwargs.pop("segment_pinned", False),
        }
        customer = super()._create(model_class, *args, **kwargs)
        if label["segment"] is not None or label["reason"] or label["pinned"]:
            Membership.objects.create(
                customer=customer,
                total_spent=customer.total_spent,
                last_purchase_at=customer.last_purchase_at,
                **label,
            )
        else:  # known to have none, as select_related("membership") would tell
            Customer.membership.related.set_cached_value(customer, None)
        return customer


class PurchaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Purchase

    customer = factory.SubFactory(CustomerFactory)
    amount = Decimal("50.00")
    currency = "EUR"
    purchased_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=10))
    product = "Consultation"
    category = "Services"
    channel = Purchase.Channel.ONLINE

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        # As every write of the product does: the customer's purchase figures follow.
        from crm.services import customer_stats_refresh

        purchase = super()._create(model_class, *args, **kwargs)
        customer_stats_refresh(customer_ids=[purchase.customer_id])
        return purchase


class FeedbackFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Feedback

    customer = factory.SubFactory(CustomerFactory)
    rating = 5
    comment = "Great service."


class SegmentationRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SegmentationRun

    status = SegmentationRun.Status.SUCCEEDED
    trigger = SegmentationRun.Trigger.MANUAL
    method = SegmentationRun.Method.KMEANS
    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyFunction(timezone.now)


class SegmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Segment

    name = factory.Sequence(lambda n: f"Segment {n}")
    auto_name = factory.SelfAttribute("name")
    description = "Customers who behave alike."


class OfferFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Offer

    title = factory.Sequence(lambda n: f"Offer {n}")
    description = "10% off the next order."
    discount_percent = Decimal("10")


class OfferResponseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OfferResponse

    offer = factory.SubFactory(OfferFactory)
    customer = factory.SubFactory(CustomerFactory)


class PurchaseDaysReadFactory(factory.django.DjangoModelFactory):
    """A read that summed purchase days today, in the business's zone."""

    class Meta:
        model = PurchaseDaysRead

    time_zone = factory.LazyFunction(timezone.get_current_timezone_name)
    as_of = factory.LazyFunction(timezone.localdate)
    computed_at = factory.LazyFunction(timezone.now)


class CustomerPurchaseDaysFactory(factory.django.DjangoModelFactory):
    """A customer's purchase days as a run keeps them."""

    class Meta:
        model = CustomerPurchaseDays

    customer = factory.SubFactory(CustomerFactory)
    read = factory.SubFactory(PurchaseDaysReadFactory)
    days = 3
    first_day = factory.LazyFunction(lambda: timezone.localdate() - timedelta(days=40))
    last_day = factory.LazyFunction(lambda: timezone.localdate() - timedelta(days=3))
    total = 120.0
    first_total = 40.0


class CustomerPredictionFactory(factory.django.DjangoModelFactory):
    """A customer's prediction as a run stores it (time in weeks)."""

    class Meta:
        model = CustomerPrediction

    customer = factory.SubFactory(CustomerFactory)
    as_of = factory.LazyFunction(timezone.localdate)
    p_alive = 0.9
    expected_purchases_30d = 0.7
    expected_purchases_90d = 2.1
    expected_purchases_365d = 7.5
    expected_order_value = 45.0
    value_12m = 340.0
    value_at_risk = factory.LazyAttribute(lambda o: o.value_12m / o.p_alive * (1 - o.p_alive))
