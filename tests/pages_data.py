"""A small shop for the staff pages' tests: two runs, segments with history, customers
written in bulk (so a thousand of them take a fraction of a second), offers and feedback."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from crm.models import Customer, Feedback, Purchase
from crm.services import customer_stats_refresh
from offers.models import Offer, OfferResponse
from segmentation.models import (
    Membership,
    Segment,
    SegmentationRun,
    SegmentMembershipChange,
    SegmentSnapshot,
    SegmentTransition,
)
from tests.factories import OfferFactory, SegmentationRunFactory, SegmentFactory


@dataclass
class Shop:
    now: datetime
    previous_run: SegmentationRun
    run: SegmentationRun
    loyal: Segment
    at_risk: Segment
    offer: Offer
    regular: Customer  # a loyal customer with a steady rhythm, overdue now
    lapsing: Customer  # a big spender the last run moved from loyal to at risk
    unhappy: Customer  # gave a low rating nobody answered yet
    newcomer: Customer  # first purchase a few days ago, no offer yet
    next_index: int = 0


def shop_create(*, customers: int = 10) -> Shop:
    """The shop with ``customers`` customers in all (at least the four named ones)."""
    now = timezone.now()
    previous_run = SegmentationRunFactory(
        started_at=now - timedelta(days=7, minutes=2), finished_at=now - timedelta(days=7)
    )
    run = SegmentationRunFactory(
        started_at=now - timedelta(hours=1, minutes=1),
        finished_at=now - timedelta(hours=1),
        k=2,
        confidence=SegmentationRun.Confidence.HIGH,
        confidence_note="Clear, well separated groups.",
        n_clustered=customers,
    )
    loyal = SegmentFactory(
        name="Loyal regulars",
        behaviour=Segment.Behaviour.LOYAL,
        color="#0072B2",
        profile="buy every few weeks and spend well",
        profile_values={"recency_days": 12.0, "frequency": 6.0, "monetary_total": 480.0},
        rules=["total spend > 300 and last purchase <= 60 days ago"],
        fidelity=0.93,
        created_by_run=previous_run,
        last_run=run,
    )
    at_risk = SegmentFactory(
        name="At risk",
        auto_name="At risk",
        behaviour=Segment.Behaviour.AT_RISK,
        color="#D55E00",
        profile="used to buy often, quiet for months",
        rules=["last purchase > 120 days ago"],
        created_by_run=previous_run,
        last_run=run,
    )
    offer = OfferFactory(title="Loyalty thank-you", fixed_cost=Decimal("5"))
    offer.segments.add(loyal)

    shop = Shop(
        now=now,
        previous_run=previous_run,
        run=run,
        loyal=loyal,
        at_risk=at_risk,
        offer=offer,
        regular=_customer(name="Rita Regular", segment=loyal, index=0),
        lapsing=_customer(name="Lars Lapsing", segment=at_risk, index=1),
        unhappy=_customer(name="Una Unhappy", segment=loyal, index=2),
        newcomer=_customer(name="Nina Newcomer", segment=loyal, index=3),
        next_index=4,
    )
    day = timedelta(days=1)
    Purchase.objects.bulk_create(
        # Every 20 days, last 45 days ago: overdue by her own rhythm.
        [_sale(shop.regular, now - (45 + 20 * i) * day, "80.00") for i in range(5)]
        + [_sale(shop.lapsing, now - (150 + 15 * i) * day, "400.00") for i in range(6)]
        + [_sale(shop.unhappy, now - 20 * day, "35.00")]
        + [_sale(shop.newcomer, now - 3 * day, "60.00")]
    )
    Feedback.objects.bulk_create(
        [
            Feedback(customer=shop.unhappy, rating=1, comment="Parcel arrived broken.",
                     created_at=now - 2 * day),
            Feedback(customer=shop.regular, rating=5, nps=10, created_at=now - 30 * day),
        ]
    )  # fmt: skip
    customer_stats_refresh()
    SegmentMembershipChange.objects.create(
        customer=shop.lapsing,
        run=run,
        from_segment=loyal,
        to_segment=at_risk,
        changed_at=run.finished_at,
        reason="In At risk because last purchase > 120 days ago.",
    )
    SegmentTransition.objects.bulk_create(
        [
            SegmentTransition(run=run, from_segment=loyal, to_segment=loyal, count=3),
            SegmentTransition(run=run, from_segment=loyal, to_segment=at_risk, count=1),
        ]
    )
    customers_add(shop, max(customers - 4, 0))
    return shop


def customers_add(shop: Shop, n: int) -> None:
    """Add n ordinary customers (two purchases each, every tenth with feedback) in bulk, and
    refresh the precomputed figures the pages read (stats, segment sizes, snapshots)."""
    start = shop.next_index
    segments = (shop.loyal, shop.at_risk)
    created = Customer.objects.bulk_create(
        [
            Customer(
                name=f"Customer {i:05d}",
                email=f"customer{i:05d}@example.com",
                city="Lyon" if i % 3 else "Porto",
                created_at=shop.now - timedelta(days=400),
            )
            for i in range(start, start + n)
        ]
    )
    Membership.objects.bulk_create(
        [
            Membership(
                customer=c,
                segment=segments[i % 2],
                reason=f"In {segments[i % 2].name} because of the rules.",
            )
            for i, c in enumerate(created, start=start)
        ]
    )
    shop.next_index = start + n
    day = timedelta(days=1)
    purchases = []
    for k, c in enumerate(created):
        first = shop.now - (200 + k % 100) * day
        purchases.append(_sale(c, first, f"{20 + k % 50}.00"))
        purchases.append(_sale(c, first + (30 + k % 60) * day, f"{10 + k % 90}.00"))
    Purchase.objects.bulk_create(purchases, batch_size=500)
    Feedback.objects.bulk_create(
        [
            Feedback(customer=c, rating=3 + k % 3, nps=6 + k % 5, created_at=shop.now - 5 * day)
            for k, c in enumerate(created)
            if k % 10 == 0
        ]
    )
    figures_refresh(shop)


def figures_refresh(shop: Shop) -> None:
    """What a segmentation run precomputes: purchase stats, segment sizes and snapshots."""
    customer_stats_refresh()
    total = Customer.objects.count()
    revenue = {s.pk: Decimal("0") for s in (shop.loyal, shop.at_risk)}
    for segment_id, spent in Customer.objects.values_list("membership__segment_id", "total_spent"):
        revenue[segment_id] += spent
    all_revenue = sum(revenue.values()) or Decimal("1")
    for s in (shop.loyal, shop.at_risk):
        s.size = Customer.objects.filter(membership__segment=s).count()
        s.share_customers = s.size / total
        s.revenue = revenue[s.pk]
        s.share_revenue = float(revenue[s.pk] / all_revenue)
        s.save()
        for run, factor, rating in ((shop.previous_run, 0.9, 3.8), (shop.run, 1.0, 4.1)):
            SegmentSnapshot.objects.update_or_create(
                run=run,
                segment=s,
                defaults={
                    "size": int(s.size * factor),
                    "revenue": s.revenue * Decimal(str(factor)),
                    "avg_rating": rating,
                    "nps": 20.0,
                },
            )


def respond(shop: Shop, customer: Customer, outcome: str) -> OfferResponse:
    return OfferResponse.objects.create(
        offer=shop.offer, customer=customer, segment=customer.membership.segment, outcome=outcome
    )


def _customer(*, name: str, segment: Segment, index: int) -> Customer:
    customer = Customer(
        name=name,
        email=f"{name.split()[0].lower()}@example.com",
        phone=f"+4420700{index:05d}",
        city="London",
        marketing_consent=True,
        created_at=timezone.now() - timedelta(days=500),
    )
    customer.search_text_set()
    customer.save()
    Membership.objects.create(
        customer=customer, segment=segment, reason=f"In {segment.name} because of the rules."
    )
    return customer


def _sale(customer: Customer, when: datetime, amount: str) -> Purchase:
    return Purchase(customer=customer, amount=Decimal(amount), purchased_at=when, product="Box")
