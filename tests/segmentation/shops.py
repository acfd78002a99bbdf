"""Small shops with planted customer groups, written in bulk for the segmentation tests."""

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.db.models import Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from crm.models import Customer, Feedback, Purchase
from crm.services import customer_stats_refresh

# (group, customers, purchases each, days since the last one, days between, amount)
GROUPS = (
    ("champions", 20, 12, 3, 9, Decimal("180.00")),
    ("casual", 20, 3, 60, 45, Decimal("40.00")),
    ("lost", 20, 1, 600, 0, Decimal("15.00")),
)


@dataclass
class Shop:
    groups: dict[str, list[int]] = field(default_factory=dict)
    prospects: list[int] = field(default_factory=list)
    opted_out: list[int] = field(default_factory=list)

    @property
    def buyers(self) -> list[int]:
        return sorted(i for ids in self.groups.values() for i in ids)


def shop_build(*, scale: int = 1, prospects: int = 2, opted_out: int = 1) -> Shop:
    """Planted groups (frequent big spenders, casual, lost), prospects and opted-out customers."""
    now = timezone.now()
    shop = Shop()
    purchases, feedback = [], []
    for group, count, n_purchases, last_days, gap, amount in GROUPS:
        customers = Customer.objects.bulk_create(
            [Customer(name=f"{group} {i}") for i in range(count * scale)]
        )
        shop.groups[group] = [c.pk for c in customers]
        for i, customer in enumerate(customers):
            for j in range(n_purchases):
                purchases.append(
                    Purchase(
                        customer=customer,
                        # Spend varies a little from purchase to purchase, as in any shop:
                        # with none, the order value model has nothing to fit.
                        amount=amount * (1 + Decimal(j % 3) / 10) + i % 7,
                        purchased_at=now - timedelta(days=last_days + j * gap + i % 5),
                    )
                )
            if group == "champions":
                feedback.append(Feedback(customer=customer, rating=5, nps=9 + i % 2))
            elif group == "lost" and i % 2:
                feedback.append(Feedback(customer=customer, rating=2, nps=3))
    new = Customer.objects.bulk_create(Customer(name="prospect") for _ in range(prospects))
    shop.prospects = [c.pk for c in new]
    opted = Customer.objects.bulk_create(
        Customer(name="private", profiling_opt_out=True) for _ in range(opted_out)
    )
    shop.opted_out = [c.pk for c in opted]
    for customer in opted:
        purchases.append(Purchase(customer=customer, amount=Decimal("99"), purchased_at=now))
    Purchase.objects.bulk_create(purchases)
    customer_stats_refresh()
    Feedback.objects.bulk_create(feedback)
    return shop


def labels() -> dict[int, tuple[int | None, str]]:
    """Every customer's segment id and reason."""
    return {
        pk: (segment_id, reason)
        for pk, segment_id, reason in Customer.objects.values_list(
            "pk", "membership__segment_id", Coalesce("membership__reason", Value(""))
        )
    }
