"""Check the purchase model against what happened: fit up to a day, predict the next period."""

from datetime import date

import pandas as pd
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from segmentation import clv_holdout, prediction_selectors


class Command(BaseCommand):
    help = (
        "Fit the purchase model on the sales up to --calibration-end, predict each customer's "
        "purchases up to --holdout-end and print predicted against actual (in total and by "
        "the number of repeat purchases before the calibration end)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--calibration-end", type=date.fromisoformat, required=True, metavar="YYYY-MM-DD"
        )
        parser.add_argument(
            "--holdout-end",
            type=date.fromisoformat,
            default=None,
            metavar="YYYY-MM-DD",
            help="Last day of the holdout period (default: today).",
        )

    def handle(self, *args, calibration_end: date, holdout_end: date | None, **options):
        holdout_end = holdout_end or timezone.localdate()
        if holdout_end <= calibration_end:
            raise CommandError("--holdout-end must come after --calibration-end.")
        unit = float(getattr(settings, "PREDICTIONS_TIME_UNIT_DAYS", 7.0))
        daily = prediction_selectors.customer_daily_sales(as_of=holdout_end)
        if daily.empty:
            raise CommandError("No sales up to the holdout end: import purchases first.")
        model, check = clv_holdout.holdout_check(
            daily.rename(columns={"day": "date"}),
            calibration_end=calibration_end,
            holdout_end=holdout_end,
            time_unit_days=unit,
        )
        out = self.stdout.write
        out(
            f"Fitted on {check.customers:,} customers' sales up to {calibration_end} "
            f"(time unit {unit:g} days): r={model.r:.4g} alpha={model.alpha:.4g} "
            f"a={model.a:.4g} b={model.b:.4g} log-likelihood={model.log_likelihood:.1f}"
        )
        out(f"Repeat purchases (days with a purchase) {calibration_end} to {holdout_end}:")
        out(f"  actual                      {check.actual_total:>10,}")
        out(f"  predicted (per customer)    {check.predicted_total:>10,.1f}")
        out(f"  predicted (whole cohort)    {check.predicted_population_total:>10,.1f}")
        out("By repeat purchases before the calibration end (mean per customer):")
        table = check.by_x.copy()
        table.index.name = "x"
        with pd.option_context("display.float_format", "{:.3f}".format):
            out(table.to_string())
