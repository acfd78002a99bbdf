"""Segmentation's columns of the customer export (crm.exports.customer_rows providers)."""

from dataclasses import dataclass
from typing import Any

from crm.exports import ColumnProvider, ids_filter
from segmentation.feature_store import FeatureExportColumns
from segmentation.models import CustomerPrediction, Membership


@dataclass(frozen=True)
class SegmentColumns:
    """The customer's current segment, by name (one query per chunk of customers)."""

    columns: tuple[str, ...] = ("segment",)

    def values(self, customer_ids: list[int]) -> dict[int, dict[str, Any]]:
        rows = Membership.objects.filter(
            ids_filter("customer_id", customer_ids), segment__isnull=False
        ).values_list("customer_id", "segment__name")
        return {customer_id: {"segment": name} for customer_id, name in rows}


SEGMENT_COLUMNS = SegmentColumns()


class PredictionColumns:
    """Each customer's chance of still being a customer, expected purchases in the next 90
    days and expected value over the next 12 months (one query per chunk; customers without
    a prediction get empty cells)."""

    columns = ("p_alive", "expected_purchases_90d", "value_12m")

    def values(self, customer_ids: list[int]) -> dict[int, dict[str, Any]]:
        rows = CustomerPrediction.objects.filter(
            ids_filter("customer_id", customer_ids)
        ).values_list("customer_id", *self.columns)
        return {
            row[0]: {
                name: round(value, 4 if name == "p_alive" else 2)
                for name, value in zip(self.columns, row[1:], strict=True)
            }
            for row in rows
        }


PREDICTION_COLUMNS = PredictionColumns()

# Every column segmentation adds to customer exports (command, admin action, segment CSV):
# a new provider is one more entry here.
CUSTOMER_EXPORT_PROVIDERS: tuple[ColumnProvider, ...] = (
    SEGMENT_COLUMNS,
    FeatureExportColumns(),
    PREDICTION_COLUMNS,
)
