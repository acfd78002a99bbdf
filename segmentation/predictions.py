"""Customer predictions: fit the purchase models on the CRM's sales and store what they expect."""

import logging
import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import DatabaseError, OperationalError, connection, transaction
from django.utils import timezone

from segmentation import clv, prediction_selectors
from segmentation.models import (
    CustomerPrediction,
    CustomerPurchaseDays,
    PurchaseDaysRead,
    SegmentationRun,
)
from segmentation.pg_copy import (
    EPOCH_DATE,
    copy_fixed_rows,
    indexes_built_after_if_empty,
    sqlite_insert_many,
)
from segmentation.prediction_selectors import PurchaseDaysKeep, PurchaseTotals

logger = logging.getLogger(__name__)

MODEL = "bgnbd+gamma-gamma"
# Written in this order by both the PostgreSQL COPY and the SQLite INSERT.
_COLUMNS = (
    "customer_id",
    "run_id",
    "as_of",
    "p_alive",
    "expected_purchases_30d",
    "expected_purchases_90d",
    "expected_purchases_365d",
    "expected_order_value",
    "value_12m",
    "value_at_risk",
)


def _time_unit_days() -> float:
    return float(getattr(settings, "PREDICTIONS_TIME_UNIT_DAYS", 7.0))


def _time_unit_name(days: float) -> str:
    return {1.0: "days", 7.0: "weeks"}.get(days, f"{days:g} days")


@dataclass(frozen=True)
class PurchaseDaysSummed:
    """The purchase days a read summed, to be kept for the next run (CustomerPurchaseDays)."""

    rows: pd.DataFrame  # customer_purchase_totals' columns
    keep: PurchaseDaysKeep
    replace_all: bool  # nothing kept was used: the kept rows are replaced whole

    @classmethod
    def of(cls, totals: PurchaseTotals) -> "PurchaseDaysSummed | None":
        if totals.keep is None:
            return None
        rows = totals.frame if totals.all_summed else totals.frame[totals.summed]
        return cls(rows.reset_index(drop=True), totals.keep, totals.all_summed)


@dataclass
class PredictionsComputed:
    """What a fit produced before anything is written: the record for the run, its status
    and reason, every customer's scores when the status is ok, and the purchase days the
    read summed (kept whatever the status)."""

    record: dict
    status: str
    reason: str = ""
    scores: pd.DataFrame | None = None
    started: float = field(default_factory=time.perf_counter)
    purchase_days: PurchaseDaysSummed | None = None

    def customer_ids(self) -> np.ndarray:
        """The customers predictions_store writes a row for: those scored, when the status
        is ok, and those whose purchase days are kept (unsorted, with repeats)."""
        parts = [np.empty(0, dtype=np.int64)]
        if self.status == "ok" and self.scores is not None:
            parts.append(self.scores.index.to_numpy(np.int64))
        if self.purchase_days is not None:
            parts.append(self.purchase_days.rows["customer_id"].to_numpy(np.int64))
        return np.concatenate(parts)


def predictions_refresh(*, run: SegmentationRun, as_of: date) -> dict:
    """Fit the purchase models on every profiled customer's sales up to ``as_of`` and, if the
    fit is plausible, replace every CustomerPrediction in one transaction.

    Side effects: ``run.predictions`` records the fitted parameters, the status (ok,
    not_enough_data, implausible) and the reason in words; on ok, all CustomerPrediction
    rows are deleted and rewritten. On any other status the previous rows stay as they were.
    Returns the recorded dict.
    """
    return predictions_store(run=run, computed=predictions_compute(as_of=as_of))


def predictions_compute(
    *, as_of: date, buyers: prediction_selectors.RunBuyers | None = None
) -> PredictionsComputed:
    """Read every profiled customer's sales up to ``as_of``, fit the models and score every
    customer. Reads only: a run computes this beside its segments (on a connection of its
    own) and stores it with predictions_store once its labels are written. ``buyers``: the
    customers the run's feature read found, which spare the read a pass over every
    customer (customer_purchase_totals_nightly)."""
    unit = _time_unit_days()
    discount = float(getattr(settings, "PREDICTIONS_MONTHLY_DISCOUNT", 0.01))
    started = time.perf_counter()
    totals = prediction_selectors.customer_purchase_totals_nightly(as_of=as_of, buyers=buyers)
    read_seconds = time.perf_counter() - started
    summary = clv.rfm_from_totals(totals.frame, as_of=as_of, time_unit_days=unit)
    purchase_days = PurchaseDaysSummed.of(totals)
    summed, kept = int(totals.summed.sum()), totals.kept
    del totals
    repeat = int((summary["x"] > 0).sum())
    record: dict = {
        "model": MODEL,
        "time_unit": _time_unit_name(unit),
        "as_of": as_of.isoformat(),
        "customers": len(summary),
        "repeat_customers": repeat,
        "read_seconds": round(read_seconds, 3),
        # Customers whose purchase days the read summed, and those it read as kept.
        "customers_summed": summed,
        "customers_kept": kept,
    }
    outcome = {"started": started, "purchase_days": purchase_days}
    reason = clv.data_problem(repeat_customers=repeat)
    if reason:
        return PredictionsComputed(record, "not_enough_data", reason, **outcome)
    # The last fit's parameters are where this run's most likely are: the searches start
    # there (and again from zeros if that leads nowhere: the answer does not depend on it).
    bgnbd_start, gg_start = _fit_starts(
        prediction_selectors.predictions_last_fit(), time_unit=record["time_unit"]
    )
    try:
        bgnbd = clv.bgnbd_fit(summary["x"], summary["t_x"], summary["T"], start=bgnbd_start)
        gg = clv.gamma_gamma_fit(summary["x"], summary["monetary"], start=gg_start)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        # Numbers the optimiser cannot work with are the data's problem, not a crash of the
        # run: the previous predictions stay and the reason is recorded.
        reason = f"The models could not be fitted to these purchases ({exc})."
        return PredictionsComputed(record, "implausible", reason, **outcome)
    record.update(
        r=bgnbd.r,
        alpha=bgnbd.alpha,
        a=bgnbd.a,
        b=bgnbd.b,
        log_likelihood=bgnbd.log_likelihood,
        gg_p=gg.p,
        gg_q=gg.q,
        gg_gamma=gg.gamma,
        fit_seconds=round(bgnbd.fit_seconds, 3),
        gg_fit_seconds=round(gg.fit_seconds, 3),
        fit_start=_FIT_START_WORDS[bgnbd.started_from],
        gg_fit_start=_FIT_START_WORDS[gg.started_from],
    )
    reason = clv.fit_problem(bgnbd, gg, repeat_customers=repeat, time_unit_days=unit)
    if reason:
        return PredictionsComputed(record, "implausible", reason, **outcome)
    scores = clv.prediction_scores(
        summary, bgnbd=bgnbd, gg=gg, time_unit_days=unit, monthly_discount=discount
    )
    # What the model expects of the whole customer base, kept on the run so the dashboard can
    # later set it against what happened.
    record["expected_purchases_30d_total"] = round(float(scores["expected_purchases_30d"].sum()), 2)
    record["expected_purchases_90d_total"] = round(float(scores["expected_purchases_90d"].sum()), 2)
    return PredictionsComputed(record, "ok", scores=scores, **outcome)


# Where each fit's search began (clv's started_from), as the run records it.
_FIT_START_WORDS = {
    "start": "previous run",
    "zeros": "zeros",
    "zeros instead": "zeros after the previous run's",
}


def _fit_starts(
    previous: dict | None, *, time_unit: str
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """The BG/NBD and Gamma-Gamma parameters of a run's predictions record to start the fits
    from: only from the same models, and the BG/NBD's only in the same time unit (alpha is
    measured in it)."""
    if not previous or previous.get("model") != MODEL:
        return None, None
    bgnbd = _numbers(previous, ("r", "alpha", "a", "b"))
    if previous.get("time_unit") != time_unit:
        bgnbd = None
    return bgnbd, _numbers(previous, ("gg_p", "gg_q", "gg_gamma"))


def _numbers(record: dict, keys: tuple[str, ...]) -> tuple[float, ...] | None:
    values = [record.get(key) for key in keys]
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return tuple(float(v) for v in values)
    return None


def predictions_store(*, run: SegmentationRun, computed: PredictionsComputed) -> dict:
    """Record the outcome on the run and, when the fit is ok, replace every prediction in
    one transaction; whatever the outcome, keep the purchase days the read summed
    (purchase_days_keep). Returns the recorded dict."""
    record = computed.record
    if computed.status == "ok":
        as_of = date.fromisoformat(record["as_of"])
        written = time.perf_counter()
        table = CustomerPrediction._meta.db_table
        with transaction.atomic():
            if _predictions_clear(table):
                with indexes_built_after_if_empty(table):
                    _predictions_insert(computed.scores, run_id=run.pk, as_of=as_of)
            else:
                _predictions_insert(computed.scores, run_id=run.pk, as_of=as_of)
        record["write_seconds"] = round(time.perf_counter() - written, 3)
    if computed.purchase_days is not None:
        written = time.perf_counter()
        try:
            purchase_days_keep(summed=computed.purchase_days, run_id=run.pk)
        except DatabaseError:
            # Only the next run's speed depends on them: the failed write changed nothing,
            # and the rows left are judged by their own dates, so it sums these customers
            # again.
            logger.exception("Purchase days of run %s not kept", run.pk)
            record["purchase_days_not_kept"] = True
        record["keep_seconds"] = round(time.perf_counter() - written, 3)
    return _record(
        run, record, status=computed.status, reason=computed.reason, started=computed.started
    )


def predictions_track_record_fill(*, today: date | None = None) -> int:
    """Record, on each earlier run whose 30-day window has now passed, the purchase days that
    really came in it: the dashboard sets them against what that run expected. Each run is
    counted once, the day after its window closes; returns how many were filled."""
    today = today or timezone.localdate()
    window = timedelta(days=prediction_selectors.TRACK_RECORD_DAYS)
    filled = 0
    pending = (
        SegmentationRun.objects.predictions_fitted()
        .filter(predictions__has_key="expected_purchases_30d_total")
        .exclude(predictions__has_key="actual_purchases_30d")
    )
    for run in pending.order_by("-finished_at", "-id")[
        : prediction_selectors.TRACK_RECORD_RUNS * 3
    ]:
        as_of = date.fromisoformat(run.predictions["as_of"])
        if as_of + window > today:
            continue
        record = {
            **run.predictions,
            "actual_purchases_30d": prediction_selectors.repeat_purchase_days(
                after=as_of, until=as_of + window
            ),
        }
        SegmentationRun.objects.filter(pk=run.pk).update(predictions=record)
        filled += 1
    return filled


def _record(run: SegmentationRun, record: dict, *, status: str, reason: str, started: float):
    record.update(status=status, reason=reason)
    record["seconds"] = round(time.perf_counter() - started, 3)
    run.predictions = record
    SegmentationRun.objects.filter(pk=run.pk).update(predictions=record)
    predictions_track_record_fill()
    if status != "ok":
        logger.info("Predictions of run %s not refreshed: %s", run.pk, reason)
    return record


# How long the predictions' write waits for pages still reading the table before it
# deletes row by row instead of emptying it at once.
TRUNCATE_LOCK_WAIT = "2s"


def _predictions_clear(table: str) -> bool:
    """Remove every prediction inside the caller's transaction; True when the table was
    emptied at once and is held alone until the commit, so that its indexes can be built
    after the load. On PostgreSQL it is (TRUNCATE: a million rows in milliseconds, where a
    DELETE leaves a million dead rows for the new ones to be indexed around); pages
    reading predictions wait for the commit, a few seconds. A page or export that holds
    the table longer than TRUNCATE_LOCK_WAIT is not waited for (nor queued behind): the
    rows are deleted instead, and the indexes kept. On SQLite a DELETE of every row empties
    the table at once, and readers go on reading the last commit."""
    quoted = connection.ops.quote_name(table)
    with connection.cursor() as cur:
        if connection.vendor != "postgresql":
            cur.execute(f"DELETE FROM {quoted}")
            return True
        cur.execute("SELECT current_setting('lock_timeout')")
        previous = cur.fetchone()[0]
        try:
            with transaction.atomic():  # a savepoint: a timeout leaves the transaction usable
                cur.execute("SELECT set_config('lock_timeout', %s, true)", [TRUNCATE_LOCK_WAIT])
                cur.execute(f"TRUNCATE {quoted}")
            truncated = True
        except OperationalError:
            cur.execute(f"DELETE FROM {quoted}")
            truncated = False
        cur.execute("SELECT set_config('lock_timeout', %s, true)", [previous])
    return truncated


# PostgreSQL's binary types of the columns: bigint ids, a date (int4 days since 2000-01-01),
# float8 figures.
_PG_TYPES = {"customer_id": ">i8", "run_id": ">i8", "as_of": ">i4"}


def _predictions_insert(scores: pd.DataFrame, *, run_id: int, as_of: date) -> None:
    table = CustomerPrediction._meta.db_table
    n = len(scores)
    values = {
        "customer_id": scores.index.to_numpy(np.int64),
        "run_id": np.full(n, run_id, dtype=np.int64),
        **{c: scores[c].to_numpy() for c in _COLUMNS[3:]},
    }
    if connection.vendor == "postgresql":
        values["as_of"] = (as_of - EPOCH_DATE).days
        copy_fixed_rows(table, {c: (_PG_TYPES.get(c, ">f8"), values[c]) for c in _COLUMNS}, rows=n)
        return
    columns = ", ".join(connection.ops.quote_name(c) for c in _COLUMNS)
    values["as_of"] = np.full(n, as_of.isoformat(), dtype=object)
    placeholders = ", ".join(["%s"] * len(_COLUMNS))
    rows = zip(*(values[c].tolist() for c in _COLUMNS), strict=True)
    sqlite_insert_many(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", rows)


# CustomerPurchaseDays' columns in the order both writes below use, with PostgreSQL's binary
# type of each (a date: int4 days since 2000-01-01).
_KEPT_COLUMNS = {
    "customer_id": ">i8",
    "run_id": ">i8",
    "read_id": ">i8",
    "days": ">i4",
    "first_day": ">i4",
    "last_day": ">i4",
    "total": ">f8",
    "first_total": ">f8",
}


def purchase_days_keep(*, summed: PurchaseDaysSummed, run_id: int) -> int:
    """Keep the purchase days a read summed, for the next run to read instead of summing
    them again: replace the rows of those customers (or, when the read used none, every
    row) in one transaction, each pointing to one new PurchaseDaysRead (the zone, day and
    moment of the read). Returns the rows written."""
    rows, keep = summed.rows, summed.keep
    table = CustomerPurchaseDays._meta.db_table
    ids = rows["customer_id"].to_numpy(np.int64)
    days = {c: rows[c].to_numpy().astype("datetime64[D]") for c in ("first_day", "last_day")}
    with transaction.atomic():
        if summed.replace_all:
            _predictions_clear(table)
        elif connection.vendor == "postgresql":
            with connection.cursor() as cur:
                cur.execute(f"DELETE FROM {table} WHERE customer_id = ANY(%s)", [ids.tolist()])
        read = PurchaseDaysRead.objects.create(
            time_zone=keep.time_zone, as_of=keep.as_of, computed_at=keep.computed_at
        )
        if connection.vendor == "postgresql":
            epoch = np.datetime64(EPOCH_DATE, "D")
            values = {
                "customer_id": ids,
                "run_id": run_id,
                "read_id": read.pk,
                "days": rows["days"].to_numpy(),
                **{c: (days[c] - epoch).astype(np.int64) for c in days},
                "total": rows["total"].to_numpy(),
                "first_total": rows["first_total"].to_numpy(),
            }
            copy_fixed_rows(
                table, {c: (kind, values[c]) for c, kind in _KEPT_COLUMNS.items()}, rows=len(rows)
            )
            return len(rows)
        # SQLite: one statement replaces each customer's row (its primary key).
        n = len(rows)
        values = zip(
            ids.tolist(),
            [run_id] * n,
            [read.pk] * n,
            rows["days"].to_numpy(np.int64).tolist(),
            *(np.datetime_as_string(days[c], unit="D").tolist() for c in days),
            rows["total"].to_numpy(np.float64).tolist(),
            rows["first_total"].to_numpy(np.float64).tolist(),
            strict=True,
        )
        columns = ", ".join(connection.ops.quote_name(c) for c in _KEPT_COLUMNS)
        placeholders = ", ".join(["%s"] * len(_KEPT_COLUMNS))
        sqlite_insert_many(
            f"INSERT OR REPLACE INTO {table} ({columns}) VALUES ({placeholders})", values
        )
    return len(rows)
