"""Writes with rules or side effects for customers, purchases and feedback."""

from collections.abc import Iterable
from decimal import Decimal

from django.db.models import (
    Case,
    Count,
    DecimalField,
    F,
    Max,
    Min,
    OuterRef,
    Q,
    Subquery,
    Sum,
    When,
)
from django.db.models.functions import Coalesce

from crm.models import Customer, Purchase

_ID_BATCH = 500


def _purchase_stats(field_expr, *, name: str):
    """A correlated subquery of one aggregate over the customer's purchases."""
    return Subquery(
        Purchase.objects.filter(customer_id=OuterRef("pk"))
        .order_by()
        .values("customer_id")
        .annotate(**{name: field_expr})
        .values(name)[:1]
    )


def customer_stats_refresh(*, customer_ids: Iterable[int] | None = None) -> int:
    """Recompute purchase_count, total_spent, first/last_purchase_at from purchases.

    Call after every write that adds, changes or removes purchases. Sales count; refunds
    are subtracted from total_spent but are not purchases. With no ids, refreshes everyone.
    Returns the number of customers updated.
    """
    sales = Purchase.Kind.SALE
    signed_amount = Case(
        When(kind=sales, then=F("amount")),
        default=-F("amount"),
        output_field=DecimalField(max_digits=14, decimal_places=2),
    )
    values = {
        "purchase_count": Coalesce(_purchase_stats(Count("id", filter=_sales_q()), name="n"), 0),
        "total_spent": Coalesce(
            _purchase_stats(Sum(signed_amount), name="total"),
            Decimal("0"),
            output_field=DecimalField(max_digits=14, decimal_places=2),
        ),
        "first_purchase_at": _purchase_stats(Min("purchased_at", filter=_sales_q()), name="first"),
        "last_purchase_at": _purchase_stats(Max("purchased_at", filter=_sales_q()), name="last"),
    }
    if customer_ids is None:
        return Customer.objects.update(**values)
    ids = sorted(set(customer_ids))
    updated = 0
    for start in range(0, len(ids), _ID_BATCH):
        updated += Customer.objects.filter(pk__in=ids[start : start + _ID_BATCH]).update(**values)
    return updated


def _sales_q() -> Q:
    return Q(kind=Purchase.Kind.SALE)
