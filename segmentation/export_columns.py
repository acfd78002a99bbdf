"""Prediction columns for customer exports: each customer's chance of still being a customer,
expected purchases in the next 90 days and expected value over the next 12 months."""

from typing import Any

from segmentation.models import CustomerPrediction


class PredictionColumns:
    """An export column provider: ``columns`` names the columns, ``values`` reads them for a
    batch of customers in one query (customers without a prediction are left out)."""

    columns = ("p_alive", "expected_purchases_90d", "value_12m")

    def values(self, customer_ids: list[int]) -> dict[int, dict[str, Any]]:
        rows = CustomerPrediction.objects.filter(customer_id__in=customer_ids).values_list(
            "customer_id", *self.columns
        )
        return {
            row[0]: {
                name: round(value, 4 if name == "p_alive" else 2)
                for name, value in zip(self.columns, row[1:], strict=True)
            }
            for row in rows
        }


prediction_columns = PredictionColumns()
