"""The run lifecycle: request a run, execute it (features -> engine -> label write), finish it.

The only services module that uses the engine (scikit-learn). It loads it when a run is
executed, so web processes that request runs or pin customers never pay for it; a worker
loads it once when its process starts (segmentation.tasks), not inside its first run.
"""

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    connections,
    transaction,
)
from django.utils import timezone

from crm.cache import pages_cache_changed
from crm.selectors import business_get
from segmentation import selectors
from segmentation.customer_rows import run_orphans_delete
from segmentation.features import EngineRejected
from segmentation.models import SegmentationRun
from segmentation.prediction_selectors import RunBuyers
from segmentation.predictions import PredictionsComputed, predictions_compute, predictions_store
from segmentation.run_memory import memory_reuse_start, run_memory
from segmentation.services.common import RunAlreadyFinished, SegmentationCheckFailed, jsonable
from segmentation.services.label_write import labels_write, temp_tables_drop
from segmentation.services.plan import RunPlan

if TYPE_CHECKING:
    from segmentation.engine import EngineConfig, EngineResult

logger = logging.getLogger(__name__)

Status = SegmentationRun.Status
FINISHED = {Status.SUCCEEDED, Status.FAILED, Status.REJECTED, Status.SKIPPED}
# A running run touches its heartbeat every RUN_HEARTBEAT_SECONDS (settings), from a thread
# of its own, whatever phase it is in; a pending or running run silent for RUN_STALE_SECONDS
# belongs to a worker that died or never came: the next trigger frees its slot.
# Attempts to record a run's end when the database connection broke under it (a restart).
FINISH_ATTEMPTS = 4
# A run whose worker died this many times (each death redelivers its task) is failed.
MAX_WORKER_LOSSES = 2


# --- requesting a run ----------------------------------------------------------------------


def segmentation_runs_recover_stale() -> int:
    """Fail pending/running runs whose worker stopped answering, freeing the slot they hold."""
    cutoff = timezone.now() - timedelta(seconds=settings.RUN_STALE_SECONDS)
    recovered = 0
    for run in SegmentationRun.objects.filter(active_slot__isnull=False):
        last_sign = run.heartbeat_at or run.created_at
        if last_sign < cutoff:
            _run_finish(
                run,
                status=Status.FAILED,
                error=f"No sign of life from the worker since {last_sign:%Y-%m-%d %H:%M:%S} UTC "
                "(it died or was never started); the slot was recovered by a later trigger.",
            )
            recovered += 1
    return recovered


def segmentation_run_request(
    *, trigger: str, enqueue: bool = True, as_of: date | None = None
) -> SegmentationRun:
    """Create a run and enqueue it after commit; if a run is in progress, record a skipped run.

    Side effects: one SegmentationRun row (pending, or skipped); the Celery task
    `segmentation_run_execute` on commit, unless ``enqueue`` is False (the caller executes
    the run itself, as `recluster --sync` does). Stale runs of dead workers are failed first.
    """
    segmentation_runs_recover_stale()
    now = timezone.now()
    try:
        with transaction.atomic():
            run = SegmentationRun.objects.create(
                trigger=trigger, status=Status.PENDING, active_slot=1, heartbeat_at=now, as_of=as_of
            )
    except IntegrityError:
        holder = selectors.segmentation_run_active()
        what = f"run #{holder.pk} was {holder.get_status_display().lower()}" if holder else "a run"
        return SegmentationRun.objects.create(
            trigger=trigger,
            status=Status.SKIPPED,
            started_at=now,
            finished_at=now,
            error=f"Skipped: {what} at the time.",
        )
    if enqueue:
        transaction.on_commit(lambda: _run_enqueue(run.pk))
        if not connection.in_atomic_block:
            # Enqueued already (or failed to, with the broker down): report what happened.
            run.refresh_from_db()
    return run


def _run_enqueue(run_id: int) -> None:
    # At call time: segmentation.tasks imports this module to execute runs.
    from segmentation.tasks import segmentation_run_execute as task

    try:
        result = task.delay(run_id)
    except Exception as exc:  # the broker is down: say so on the run and free the slot
        logger.exception("Could not enqueue segmentation run %s", run_id)
        run = SegmentationRun.objects.get(pk=run_id)
        _run_finish(run, status=Status.FAILED, error=f"Could not reach the task queue: {exc}")
        return
    SegmentationRun.objects.filter(pk=run_id, task_id="").update(task_id=result.id or "")


# --- executing a run -----------------------------------------------------------------------


class _Progress:
    """Writes phase and percent to the run row in short transactions of their own."""

    # Share of the whole run each stage covers (the engine's own percent is scaled into it).
    STAGES = {"features": (0, 15), "engine": (15, 80), "writing": (80, 100)}

    def __init__(self, run: SegmentationRun, callback: Callable[[str, int], None] | None):
        self.run = run
        self.callback = callback
        self.last: tuple[str, int] | None = None

    def __call__(self, phase: str, percent: int, *, stage: str | None = None) -> None:
        low, high = self.STAGES.get(stage or phase, (0, 100))
        overall = int(low + (high - low) * max(0, min(100, percent)) / 100)
        if (phase, overall) == self.last:
            return
        self.last = (phase, overall)
        if not connection.in_atomic_block:
            SegmentationRun.objects.filter(pk=self.run.pk).update(
                phase=phase[:40], progress=overall, heartbeat_at=timezone.now()
            )
        self.run.phase, self.run.progress = phase[:40], overall
        if self.callback:
            self.callback(phase, overall)

    def engine(self, phase: str, percent: int) -> None:
        self(phase, percent, stage="engine")


def _run_claim(run: SegmentationRun) -> bool:
    """Take the one-run slot for a run created without segmentation_run_request."""
    if run.active_slot is not None:
        return True
    segmentation_runs_recover_stale()
    try:
        with transaction.atomic():
            SegmentationRun.objects.filter(pk=run.pk).update(active_slot=1)
    except IntegrityError:
        holder = selectors.segmentation_run_active()
        _run_finish(
            run,
            status=Status.SKIPPED,
            error=f"Skipped: run #{holder.pk if holder else '?'} was in progress at the time.",
        )
        return False
    run.active_slot = 1
    return True


def segmentation_run_execute(
    *,
    run: SegmentationRun,
    progress: Callable[[str, int], None] | None = None,
    retry_on_operational_error: bool = False,
) -> SegmentationRun:
    """Compute a new segmentation and switch every customer to it in one transaction.

    Idempotent: a run that already finished is returned untouched. On failure or failed
    sanity checks the run is marked FAILED/REJECTED with the reason and nothing else
    changes. With retry_on_operational_error, a database OperationalError puts the run back
    to pending (keeping its slot) and is re-raised, for the task to retry.
    Side effects: the run row; Segment rows (created, updated, retired); every customer's
    segment and reason; SegmentMembershipChange, SegmentTransition, SegmentSnapshot rows.
    """
    run.refresh_from_db()
    if run.status in FINISHED:
        return run
    if not _run_claim(run):
        run.refresh_from_db()
        return run
    if run.status == Status.RUNNING:
        # Still "running" yet executed again: the task was redelivered because its worker
        # died mid-run (hard time limit, out of memory, restart). Nothing was written, since
        # the write is one transaction; start over, but not forever.
        run.worker_losses += 1
        if run.worker_losses >= MAX_WORKER_LOSSES:
            run.save(update_fields=["worker_losses"])
            _run_finish(
                run,
                status=Status.FAILED,
                error=f"Gave up: the worker stopped {run.worker_losses} times during this run "
                "(time limit or memory). Earlier labels are unchanged.",
            )
            run.refresh_from_db()
            return run
    now = timezone.now()
    run.status = Status.RUNNING
    run.started_at = run.started_at or now
    # As of a past day, durations are counted to the start of that day (a purchase the day
    # before is 1 day old).
    run.reference_time = run.reference_time or (
        selectors.day_start(run.as_of) if run.as_of else now
    )
    run.heartbeat_at = now
    run.error = ""
    fields = ["status", "started_at", "reference_time", "heartbeat_at", "error", "worker_losses"]
    run.save(update_fields=fields)
    reporter = _Progress(run, progress)
    timings: dict[str, float] = {}
    predictions = _Predictions(as_of=run.as_of or timezone.localdate())
    try:
        with run_memory(), _heartbeat(run.pk):
            plan = _plan_compute(run, reporter, timings)
            written = labels_write(
                run=run,
                plan=plan,
                progress=reporter,
                timings=timings,
                succeed=lambda n_moved, counts: _run_succeed(
                    run, plan, n_moved=n_moved, counts=counts, timings=timings
                ),
            )
            predicted = _predictions_refresh(
                run, timings, predictions, buyers=RunBuyers.of_features(plan.raw)
            )
            # No row for a customer deleted since the run read them: the bulk writes
            # have no foreign key to refuse one (segmentation.customer_rows).
            run_orphans_delete(
                run_id=run.pk,
                customer_ids=np.concatenate([written.customer_ids, predicted]),
                seen=written.seen,
            )
    except RunAlreadyFinished:
        pass
    except Exception as exc:
        run.timings = jsonable(timings)
        if isinstance(exc, EngineRejected | SegmentationCheckFailed):
            reason = getattr(exc, "reason", "") or str(exc)
            _run_finish(run, status=Status.REJECTED, error=reason)
            _run_counts_record(run)
        elif isinstance(exc, OperationalError) and retry_on_operational_error:
            retry_note = f"Retrying after: {exc}"
            _with_fresh_connection(
                lambda: SegmentationRun.objects.filter(pk=run.pk).update(
                    status=Status.PENDING, phase="waiting to retry", error=retry_note
                )
            )
            raise
        else:
            logger.exception("Segmentation run %s failed", run.pk)
            _run_finish(run, status=Status.FAILED, error=f"{type(exc).__name__}: {exc}")
            _run_counts_record(run)
    finally:
        temp_tables_drop()
        predictions.wait()  # never leave its thread reading after the run
    run.refresh_from_db()
    return run


class _Predictions:
    """The run's predictions, read and fitted while the segments are computed and written.

    With settings.PREDICTIONS_ALONGSIDE (by default only with more than two cores: on two it
    would take the web's core), in a thread of its own with its own database connection
    (reads only; the rows are written after the labels, see _predictions_refresh): their
    read keeps the database busy on one core while the engine works on another. Otherwise
    computed when asked.
    """

    def __init__(self, *, as_of: date):
        self.as_of = as_of
        self._computed: PredictionsComputed | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if getattr(settings, "PREDICTIONS_ALONGSIDE", False):
            zone = timezone.get_current_timezone_name()  # a thread starts with the default
            self._thread = threading.Thread(
                target=self._compute, args=(zone,), name="run-predictions", daemon=True
            )
            self._thread.start()

    def _compute(self, zone: str) -> None:
        try:
            with timezone.override(zone):
                self._computed = predictions_compute(as_of=self.as_of)
        except BaseException as exc:  # handed to the run's own thread by result()
            self._error = exc
        finally:
            connections.close_all()  # this thread's connection only

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def result(self, *, buyers: RunBuyers | None = None) -> PredictionsComputed:
        """The predictions; computed now, when not in a thread of their own, for the
        ``buyers`` the run's feature read found (the thread started before that read)."""
        if self._thread is None:
            return predictions_compute(as_of=self.as_of, buyers=buyers)
        self.wait()
        if self._error is not None:
            raise self._error
        assert self._computed is not None
        return self._computed


def _predictions_refresh(
    run: SegmentationRun,
    timings: dict[str, float],
    predictions: _Predictions,
    *,
    buyers: RunBuyers | None = None,
) -> np.ndarray:
    """Predictions after the segments, in the same run. Their failure never undoes the
    segments: the previous predictions stay and the run says why in words. Timed is what
    they add to the run: the wait for their thread, if any, and their write. Returns the
    customers they may have written a row for."""
    started = time.perf_counter()
    written = np.empty(0, dtype=np.int64)
    try:
        computed = predictions.result(buyers=buyers)
        written = computed.customer_ids()
        predictions_store(run=run, computed=computed)
    except Exception as exc:
        logger.exception("Predictions of run %s failed", run.pk)
        failure = {
            "status": "failed",
            "reason": "The predictions could not be computed this time "
            f"({type(exc).__name__}); the previous ones are kept.",
        }
        _with_fresh_connection(
            lambda: SegmentationRun.objects.filter(pk=run.pk).update(predictions=failure)
        )
    timings["predictions"] = time.perf_counter() - started
    SegmentationRun.objects.filter(pk=run.pk).update(timings=jsonable(timings))
    return written


def _run_finish(run: SegmentationRun, *, status: str, error: str = "") -> None:
    """Record a run's end without touching any segmentation data.

    Also after the database restarted under the run: the broken connection is dropped and the
    write tried again on a new one, so the slot is freed instead of held until it goes stale.
    """
    now = timezone.now()
    run.status, run.error, run.finished_at, run.active_slot = status, error[:5000], now, None
    run.started_at = run.started_at or now
    run.phase = "" if status == Status.SUCCEEDED else status
    fields = ["status", "error", "finished_at", "active_slot", "started_at", "phase", "timings"]
    _with_fresh_connection(
        lambda: SegmentationRun.objects.filter(pk=run.pk).update(
            **{f: getattr(run, f) for f in fields}, heartbeat_at=now
        )
    )


def _with_fresh_connection(write: Callable[[], object]) -> None:
    """Run a small write; if the connection is broken, reconnect and try again a few times."""
    for attempt in range(1, FINISH_ATTEMPTS + 1):
        try:
            write()
            return
        except (OperationalError, InterfaceError):
            if attempt == FINISH_ATTEMPTS or connection.in_atomic_block:
                raise
            logger.warning("Database connection lost; reconnecting (attempt %s)", attempt)
            connection.close()
            time.sleep(0.5 * 2**attempt)


@contextmanager
def _heartbeat(run_id: int) -> Iterator[None]:
    """Touch the run's heartbeat every RUN_HEARTBEAT_SECONDS while the block runs, from a thread
    with its own database connection: the engine and the label write have long phases with
    no progress step, and a live run must never look like a dead one."""
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(settings.RUN_HEARTBEAT_SECONDS):
                try:
                    SegmentationRun.objects.filter(pk=run_id, status=Status.RUNNING).update(
                        heartbeat_at=timezone.now()
                    )
                except Exception:  # SQLite busy with the run's own write: next beat
                    logger.debug("Heartbeat of run %s skipped", run_id, exc_info=True)
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"run-{run_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def run_process_prepare() -> None:
    """Make this process ready to execute runs, as a worker does when it starts: reuse the
    memory its runs free (segmentation.run_memory), then load the engine (scikit-learn), so
    that neither costs the first run."""
    memory_reuse_start()
    _engine()


def _engine():
    # Loaded on the first run, not at import: see the module's docstring.
    from segmentation import engine

    return engine


def _engine_config() -> "EngineConfig":
    # The reasons name amounts in the business's own currency.
    config = {"currency": business_get().currency, **getattr(settings, "SEGMENTATION_ENGINE", {})}
    return _engine().EngineConfig(**config)


def _plan_compute(run: SegmentationRun, reporter: _Progress, timings: dict) -> RunPlan:
    reporter("features", 0)
    features = selectors.customer_features(reference_time=run.reference_time, as_of=run.as_of)
    timings.update(features.timings)
    raw = features.frame
    pins = selectors.pinned_segments()
    previous = selectors.previous_segments()
    previous_thresholds = selectors.previous_tree_thresholds()
    config = _engine_config()
    # The other customers are counted by the label staging's read (_run_succeed), or by
    # _run_counts_record when the run stops before it.
    SegmentationRun.objects.filter(pk=run.pk).update(n_clustered=len(raw), n_pinned=len(pins))
    reporter("features", 100)
    if raw.empty:
        raise SegmentationCheckFailed(
            "No profiled customer has bought anything yet: there is nothing to cluster."
        )
    result = _engine().segment_customers(
        raw[selectors.FEATURE_COLUMNS],
        previous=previous,
        config=config,
        progress=reporter.engine,
        previous_thresholds=previous_thresholds,
    )
    timings.update({k: float(v) for k, v in result.timings.items()})
    _result_check(raw, result)
    return RunPlan(raw=raw, result=result, pins=pins, config=config)


def _result_check(raw: pd.DataFrame, result: "EngineResult") -> None:
    """Our own checks on top of the engine's, before anything is written."""
    if len(result.customer_ids) != len(raw) or not np.array_equal(
        np.asarray(result.customer_ids, dtype=np.int64), raw["customer_id"].to_numpy(np.int64)
    ):
        raise SegmentationCheckFailed(
            "The engine returned customers other than those it was given."
        )
    labels = np.asarray(result.labels)
    known = {s.label for s in result.segments}
    if len(labels) and not set(np.unique(labels).tolist()) <= known:
        raise SegmentationCheckFailed("Some customers were given a cluster that has no segment.")
    if len(known) < 2 or len(np.unique(labels)) < 2:
        raise SegmentationCheckFailed(
            "Only one cluster was found: nothing to tell customers apart."
        )
    names = [s.name for s in result.segments]
    if len(set(names)) != len(names):
        raise SegmentationCheckFailed("Two clusters were given the same name.")
    for metric in ("silhouette", "davies_bouldin", "calinski_harabasz", "fidelity"):
        value = getattr(result, metric)
        if value is not None and not math.isfinite(value):
            raise SegmentationCheckFailed(f"The {metric.replace('_', '-')} score is not a number.")


def _counts_fields(counts: selectors.CustomerCounts, *, clustered: int) -> dict[str, int]:
    return {
        "n_customers": counts.total,
        "n_opted_out": counts.opted_out,
        "n_prospects": max(0, counts.total - counts.opted_out - clustered),
    }


def _run_counts_record(run: SegmentationRun) -> None:
    """Count the customers of a run that stopped before its label staging counted them."""
    try:
        run.refresh_from_db(fields=["n_clustered", "n_customers"])
        if run.n_customers:
            return
        counts = selectors.customer_counts(pinned=0)
        SegmentationRun.objects.filter(pk=run.pk).update(
            **_counts_fields(counts, clustered=run.n_clustered)
        )
    except (DatabaseError, InterfaceError):  # the failure is what the run records
        logger.warning("Could not count the customers of run %s", run.pk, exc_info=True)


def _run_succeed(
    run: SegmentationRun,
    plan: RunPlan,
    *,
    n_moved: int,
    counts: selectors.CustomerCounts,
    timings: dict,
) -> None:
    result = plan.result
    now = timezone.now()
    sizes = {s.name: int(s.size) for s in result.segments}
    params = dict(jsonable(result.params))
    params.setdefault("config", jsonable(dataclasses.asdict(plan.config)))
    SegmentationRun.objects.filter(pk=run.pk).update(
        status=Status.SUCCEEDED,
        finished_at=now,
        heartbeat_at=now,
        active_slot=None,
        phase="",
        progress=100,
        method=result.method,
        k=result.k,
        silhouette=result.silhouette,
        davies_bouldin=result.davies_bouldin,
        calinski_harabasz=result.calinski_harabasz,
        fidelity=result.fidelity,
        confidence=result.confidence,
        confidence_note=result.confidence_note[:200],
        sizes=sizes,
        missing=jsonable(result.missing),
        params=params,
        timings=jsonable(timings),
        candidates=jsonable(result.candidates),
        warnings=list(result.warnings),
        n_moved=n_moved,
        error="",
        **_counts_fields(counts, clustered=len(plan.raw)),
    )
    pages_cache_changed()
