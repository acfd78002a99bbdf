"""The papers' holdout check: fit up to a date, predict the next period, compare with what
happened. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from segmentation.clv import (
    BgNbd,
    _days,
    bgnbd_expected_purchases,
    bgnbd_expected_purchases_population,
    bgnbd_fit,
    rfm_summary,
)


@dataclass(frozen=True)
class HoldoutCheck:
    """Predicted against actual repeat purchases in a holdout period."""

    customers: int
    predicted_total: float  # sum of conditional expectations
    predicted_population_total: float  # the paper's aggregate (unconditional) forecast
    actual_total: int
    by_x: pd.DataFrame  # x in calibration (0..7+): customers, actual mean, predicted mean


def holdout_check(
    transactions: pd.DataFrame,
    *,
    calibration_end: date,
    holdout_end: date,
    time_unit_days: float = 7.0,
    top_x: int = 7,
) -> tuple[BgNbd, HoldoutCheck]:
    """Fit on purchases up to ``calibration_end``, predict each customer's purchases (days
    with a purchase) in (calibration_end, holdout_end], and compare with what happened.

    Only customers whose first purchase is on or before ``calibration_end`` are compared.
    """
    summary = rfm_summary(transactions, as_of=calibration_end, time_unit_days=time_unit_days)
    model = bgnbd_fit(summary["x"], summary["t_x"], summary["T"])
    days = _days(transactions["date"])
    after = (days > np.datetime64(calibration_end, "D")) & (days <= np.datetime64(holdout_end, "D"))
    holdout_days = (
        pd.DataFrame(
            {"customer_id": transactions["customer_id"].to_numpy()[after], "d": days[after]}
        )
        .drop_duplicates()
        .groupby("customer_id")
        .size()
    )
    actual = holdout_days.reindex(summary.index, fill_value=0).to_numpy()
    span = (holdout_end - calibration_end).days / time_unit_days
    x, t_x, T = (summary[c].to_numpy() for c in ("x", "t_x", "T"))
    predicted = bgnbd_expected_purchases(model, span, x, t_x, T)
    population = bgnbd_expected_purchases_population(
        model, T + span
    ) - bgnbd_expected_purchases_population(model, T)
    groups = np.minimum(x, top_x)
    table = (
        pd.DataFrame({"x": groups, "actual": actual, "predicted": predicted})
        .groupby("x")
        .agg(
            customers=("actual", "size"),
            actual=("actual", "mean"),
            predicted=("predicted", "mean"),
        )
    )
    table.index = [f"{i}+" if i == top_x else str(i) for i in table.index]
    return model, HoldoutCheck(
        customers=len(summary),
        predicted_total=float(predicted.sum()),
        predicted_population_total=float(population.sum()),
        actual_total=int(actual.sum()),
        by_x=table,
    )
