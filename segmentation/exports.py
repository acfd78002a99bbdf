"""Segmentation's columns of the customer export (crm.exports.customer_rows providers)."""

from dataclasses import dataclass
from typing import Any

from crm.exports import ColumnProvider
from segmentation.models import Membership


@dataclass(frozen=True)
class SegmentColumns:
    """The customer's current segment, by name (one query per chunk of customers)."""

    columns: tuple[str, ...] = ("segment",)

    def values(self, customer_ids: list[int]) -> dict[int, dict[str, Any]]:
        rows = Membership.objects.filter(
            customer_id__in=customer_ids, segment__isnull=False
        ).values_list("customer_id", "segment__name")
        return {customer_id: {"segment": name} for customer_id, name in rows}


SEGMENT_COLUMNS = SegmentColumns()

# Every column segmentation adds to customer exports (command, admin action, segment CSV):
# a new provider is one more entry here.
CUSTOMER_EXPORT_PROVIDERS: tuple[ColumnProvider, ...] = (SEGMENT_COLUMNS,)
