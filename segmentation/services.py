"""Segmentation writes: the run lifecycle, the one-transaction switch of every label, and pins.

Imports the engine (scikit-learn) at module level, so a worker pays for it once at start
rather than inside every run; web code that only needs pins imports this module lazily.
"""

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import pandas as pd
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone

from crm.models import Customer
from segmentation import selectors
from segmentation.engine import EngineConfig, EngineRejected, segment_customers
from segmentation.models import (
    Membership,
    Segment,
    SegmentationRun,
    SegmentMembershipChange,
    SegmentSnapshot,
    SegmentTransition,
)

logger = logging.getLogger(__name__)

Status = SegmentationRun.Status
FINISHED = {Status.SUCCEEDED, Status.FAILED, Status.REJECTED, Status.SKIPPED}
# A pending or running run without a heartbeat for this long past the task's hard time limit
# belongs to a worker that died: the next trigger recovers its slot.
STALE_GRACE_SECONDS = 60
# A run whose worker died this many times (each death redelivers its task) is failed.
MAX_WORKER_LOSSES = 2

SPECIAL_SEGMENTS = {
    Segment.Kind.PROSPECTS: {
        "name": "Prospects / no purchase yet",
        "description": "Customers who have not bought anything yet. Welcome them and make the "
        "first purchase easy.",
        "reason": "No purchase yet.",
        "color": "#9e9e9e",
    },
    Segment.Kind.OPTED_OUT: {
        "name": "Opted out of profiling",
        "description": "Customers who asked not to be profiled. They are never clustered.",
        "reason": "Opted out of profiling.",
        "color": "#616161",
    },
}
# Labels of the customers the engine does not see, in the labels temp table.
LABEL_PROSPECT = -1
LABEL_OPTED_OUT = -2
LABEL_ARCHIVED = -3  # archived customers leave every segment
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
    "#393b79",
    "#637939",
)
REASON_MAX = Membership._meta.get_field("reason").max_length
COPY_CHUNK = 100_000
LABELS_TABLE = "segmentation_new_labels"
REASONS_TABLE = "segmentation_new_reasons"
MAP_TABLE = "segmentation_label_map"


class _RunAlreadyFinished(Exception):
    """Another attempt of the same run finished it meanwhile (a redelivered task)."""


class SegmentationCheckFailed(Exception):
    """The computed segmentation fails a sanity check; nothing is written."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --- requesting a run ----------------------------------------------------------------------


def segmentation_runs_recover_stale() -> int:
    """Fail pending/running runs whose worker stopped answering, freeing the slot they hold."""
    limit = getattr(settings, "CELERY_TASK_TIME_LIMIT", 35 * 60) + STALE_GRACE_SECONDS
    cutoff = timezone.now() - timedelta(seconds=limit)
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


def segmentation_run_request(*, trigger: str, enqueue: bool = True) -> SegmentationRun:
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
                trigger=trigger, status=Status.PENDING, active_slot=1, heartbeat_at=now
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
    return run


def _run_enqueue(run_id: int) -> None:
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
    run.reference_time = run.reference_time or now
    run.heartbeat_at = now
    run.error = ""
    fields = ["status", "started_at", "reference_time", "heartbeat_at", "error", "worker_losses"]
    run.save(update_fields=fields)
    reporter = _Progress(run, progress)
    timings: dict[str, float] = {}
    try:
        plan = _plan_compute(run, reporter, timings)
        _plan_write(run, plan, reporter, timings)
    except _RunAlreadyFinished:
        pass
    except Exception as exc:
        run.timings = _jsonable(timings)
        if isinstance(exc, EngineRejected | SegmentationCheckFailed):
            reason = getattr(exc, "reason", "") or str(exc)
            _run_finish(run, status=Status.REJECTED, error=reason)
        elif isinstance(exc, OperationalError) and retry_on_operational_error:
            SegmentationRun.objects.filter(pk=run.pk).update(
                status=Status.PENDING, phase="waiting to retry", error=f"Retrying after: {exc}"
            )
            raise
        else:
            logger.exception("Segmentation run %s failed", run.pk)
            _run_finish(run, status=Status.FAILED, error=f"{type(exc).__name__}: {exc}")
    finally:
        _temp_tables_drop()
    run.refresh_from_db()
    return run


def _run_finish(run: SegmentationRun, *, status: str, error: str = "") -> None:
    """Record a run's end without touching any segmentation data."""
    now = timezone.now()
    run.status, run.error, run.finished_at, run.active_slot = status, error[:5000], now, None
    run.started_at = run.started_at or now
    run.phase = "" if status == Status.SUCCEEDED else status
    fields = ["status", "error", "finished_at", "active_slot", "started_at", "phase", "timings"]
    SegmentationRun.objects.filter(pk=run.pk).update(
        **{f: getattr(run, f) for f in fields}, heartbeat_at=now
    )


@dataclass
class _Plan:
    """Everything a run computed, ready to be written in one transaction."""

    raw: pd.DataFrame
    result: object  # engine.EngineResult
    counts: selectors.CustomerCounts
    pins: dict[int, int | None]
    config: object
    extra: dict = field(default_factory=dict)


def _engine_config() -> EngineConfig:
    return EngineConfig(**getattr(settings, "SEGMENTATION_ENGINE", {}))


def _plan_compute(run: SegmentationRun, reporter: _Progress, timings: dict) -> _Plan:
    reporter("features", 0)
    features = selectors.customer_features(reference_time=run.reference_time)
    timings.update(features.timings)
    raw = features.frame
    counts = selectors.customer_counts()
    pins = selectors.pinned_segments()
    previous = selectors.previous_segments()
    config = _engine_config()
    SegmentationRun.objects.filter(pk=run.pk).update(
        n_customers=counts.total,
        n_clustered=len(raw),
        n_opted_out=counts.opted_out,
        n_pinned=counts.pinned,
        n_prospects=max(0, counts.total - counts.opted_out - len(raw)),
    )
    reporter("features", 100)
    if raw.empty:
        raise SegmentationCheckFailed(
            "No profiled customer has bought anything yet: there is nothing to cluster."
        )
    result = segment_customers(
        raw[selectors.FEATURE_COLUMNS], previous=previous, config=config, progress=reporter.engine
    )
    timings.update({k: float(v) for k, v in result.timings.items()})
    _result_check(raw, result)
    return _Plan(raw=raw, result=result, counts=counts, pins=pins, config=config)


def _result_check(raw: pd.DataFrame, result) -> None:
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


# --- writing -------------------------------------------------------------------------------


def _temp_tables_drop() -> None:
    if connection.connection is None or connection.in_atomic_block:
        return
    try:
        with connection.cursor() as cur:
            for table in (LABELS_TABLE, REASONS_TABLE, MAP_TABLE):
                cur.execute(f"DROP TABLE IF EXISTS {table}")
    except Exception:  # the connection may be gone after a failure; the tables die with it
        logger.debug("Could not drop the segmentation temp tables", exc_info=True)


# PostgreSQL's binary COPY format: a signature, flags and header extension, then the rows,
# then a field count of -1.
_COPY_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_BINARY_TRAILER = (-1).to_bytes(2, "big", signed=True)
_LABEL_ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("id_len", ">i4"),
        ("id", ">i8"),
        ("label_len", ">i4"),
        ("label", ">i4"),
        ("reason_len", ">i4"),
        ("reason_id", ">i4"),
    ]
)


def _label_rows_binary(ids: np.ndarray, labels: np.ndarray, reason_ids: np.ndarray) -> bytes:
    """(bigint, integer, integer) rows in the binary COPY format, built by numpy.

    A million rows take milliseconds this way; as CSV text they take a second to write and
    the server another to parse.
    """
    rows = np.empty(len(ids), dtype=_LABEL_ROW)
    rows["fields"] = 3
    rows["id_len"], rows["label_len"], rows["reason_len"] = 8, 4, 4
    rows["id"], rows["label"], rows["reason_id"] = ids, labels, reason_ids
    return rows.tobytes()


def _labels_stage(plan: _Plan) -> None:
    """Load the labels that change into temp tables (not a shared write: the web goes on).

    Every customer gets a label: clustered customers from the engine; the others by their
    flags (archived, opted out, else a prospect). Pinned customers are left out. A reason is
    one of a few sentences (one per rule of the surrogate tree), so customers get the
    sentence's number and the sentences go to a small table of their own. Then only the
    customers whose segment or reason differ from their current membership are staged: a
    daily rerun moves a handful of a million, and the history and the switch join what is
    staged. The segment a label will get is known from the engine's matching; _plan_write
    checks that expectation before anything is written.
    """
    result = plan.result
    ids = np.asarray(result.customer_ids, dtype=np.int64)
    labels = np.asarray(result.labels, dtype=np.int64)
    reasons = pd.Series(np.asarray(result.reasons, dtype=object), dtype=object)
    reason_ids, sentences = pd.factorize(reasons.astype(str).str.slice(0, REASON_MAX))
    # One number per distinct text (current reasons are matched to these by text).
    number_of = {str(text): i for i, text in enumerate(sentences)}
    special_reason = {}
    for label, text in (
        (LABEL_PROSPECT, SPECIAL_SEGMENTS[Segment.Kind.PROSPECTS]["reason"]),
        (LABEL_OPTED_OUT, SPECIAL_SEGMENTS[Segment.Kind.OPTED_OUT]["reason"]),
        (LABEL_ARCHIVED, ""),
    ):
        special_reason[label] = number_of.setdefault(text, label)
    reason_rows = [(number, text) for text, number in number_of.items()]
    everyone = selectors.customer_flags()
    others = ~np.isin(everyone["id"], ids)
    other_ids = everyone["id"][others]
    other_labels = np.where(
        everyone["is_archived"][others] == 1,
        LABEL_ARCHIVED,
        np.where(everyone["profiling_opt_out"][others] == 1, LABEL_OPTED_OUT, LABEL_PROSPECT),
    ).astype(np.int64)
    other_reasons = np.select(
        [other_labels == label for label in special_reason], list(special_reason.values())
    ).astype(np.int64)
    ids = np.concatenate([ids, other_ids])
    labels = np.concatenate([labels, other_labels])
    reason_ids = np.concatenate([reason_ids.astype(np.int64), other_reasons])
    if plan.pins:
        keep = ~np.isin(ids, np.fromiter(plan.pins.keys(), dtype=np.int64))
        ids, labels, reason_ids = ids[keep], labels[keep], reason_ids[keep]
    # Segment sizes count these (pinned customers are counted where they are pinned).
    plan.extra["other_counts"] = {
        label: int((labels == label).sum()) for label in (LABEL_PROSPECT, LABEL_OPTED_OUT)
    }

    _temp_tables_create()
    _rows_insert(REASONS_TABLE, ("id", "reason"), reason_rows)
    expected = _expected_segments(plan)
    current = selectors.memberships_current(reasons_table=REASONS_TABLE)
    # Each customer's current membership, if any, next to the new label.
    current_ids = np.append(current["customer_id"], -1)  # a sentinel for "not found"
    position = np.searchsorted(current["customer_id"], ids)
    found = current_ids[position] == ids
    position[~found] = len(current["customer_id"])
    current_segment = np.append(current["segment_id"], _NEW - 1)[position]
    current_reason = np.append(current["reason_id"], -1000)[position]
    expected_segment = pd.Series(labels).map(expected).fillna(_NEW).to_numpy(np.int64)
    unchanged = found & (current_segment == expected_segment) & (current_reason == reason_ids)
    # An archived customer never placed needs no row: no segment, no reason.
    unchanged |= ~found & (labels == LABEL_ARCHIVED)
    plan.extra["expected_segments"] = {
        int(label): expected[int(label)] for label in np.unique(labels[unchanged]).tolist()
    }
    changed = ~unchanged
    _labels_copy(ids[changed], labels[changed], reason_ids[changed])


# The expected segment of a label the previous run did not have (never equal to a current one).
_NEW = -2


def _expected_segments(plan: _Plan) -> dict[int, int]:
    """Engine label -> the segment id it will be written with, where already known (-1 for
    none): clusters matched to an active segment keep it, the special labels keep theirs."""
    active = dict(Segment.objects.active().values_list("pk", "kind"))  # a few dozen rows at most
    expected = {
        int(sr.label): int(sr.segment_id)
        for sr in plan.result.segments
        if sr.segment_id in active and active[sr.segment_id] == Segment.Kind.CLUSTER
    }
    for label, kind in (
        (LABEL_PROSPECT, Segment.Kind.PROSPECTS),
        (LABEL_OPTED_OUT, Segment.Kind.OPTED_OUT),
    ):
        special = sorted(pk for pk, k in active.items() if k == kind)
        if special:
            expected[label] = special[0]
    expected[LABEL_ARCHIVED] = -1
    return expected


def _temp_tables_create() -> None:
    creates = {
        LABELS_TABLE: "(id bigint PRIMARY KEY, label integer NOT NULL, reason_id integer NOT NULL)",
        REASONS_TABLE: "(id integer PRIMARY KEY, reason text NOT NULL)",
    }
    with connection.cursor() as cur:
        for table, columns in creates.items():
            cur.execute(f"DROP TABLE IF EXISTS {table}")
            cur.execute(f"CREATE TEMP TABLE {table} {columns}")


def _rows_insert(table: str, columns: tuple[str, ...], rows) -> None:
    """Insert rows into a temp table. On SQLite in a deferred transaction of its own: writing
    to a temp table takes no lock on the main database (BEGIN IMMEDIATE would)."""
    placeholders = ", ".join(["%s"] * len(columns))
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.executemany(sql, rows)
        return
    connection.ensure_connection()
    raw_conn = connection.connection
    own_transaction = not connection.in_atomic_block
    if own_transaction:
        raw_conn.execute("BEGIN DEFERRED")
    try:
        raw_conn.executemany(sql.replace("%s", "?"), rows)
        if own_transaction:
            raw_conn.execute("COMMIT")
    except BaseException:
        if own_transaction:
            raw_conn.execute("ROLLBACK")
        raise


def _labels_copy(ids: np.ndarray, labels: np.ndarray, reason_ids: np.ndarray) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            with cur.cursor.copy(f"COPY {LABELS_TABLE} FROM STDIN WITH (FORMAT binary)") as copy:
                copy.write(_COPY_BINARY_HEADER)
                for start in range(0, len(ids), COPY_CHUNK):
                    part = slice(start, start + COPY_CHUNK)
                    copy.write(_label_rows_binary(ids[part], labels[part], reason_ids[part]))
                copy.write(_COPY_BINARY_TRAILER)
            cur.execute(f"ANALYZE {LABELS_TABLE}")
        return
    _rows_insert(
        LABELS_TABLE,
        ("id", "label", "reason_id"),
        zip(ids.tolist(), labels.tolist(), reason_ids.tolist(), strict=True),
    )


def _plan_write(run: SegmentationRun, plan: _Plan, reporter: _Progress, timings: dict) -> None:
    reporter("writing", 0)
    started = time.perf_counter()
    _labels_stage(plan)
    staged = time.perf_counter() - started
    reporter("writing", 30)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Check the history rows' foreign keys as they are inserted (timed there), not
            # in the commit.
            with connection.cursor() as cur:
                cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        locked = SegmentationRun.objects.select_for_update().get(pk=run.pk)
        if locked.status != Status.RUNNING:
            raise _RunAlreadyFinished(locked.status)
        segment_of_label = _segments_apply(run, plan)
        for label, segment_id in plan.extra.get("expected_segments", {}).items():
            if (segment_of_label.get(label) or -1) != segment_id:
                # Unstaged customers were left out because of this expectation.
                raise SegmentationCheckFailed(
                    "The segments changed while the run was computing; nothing was written."
                )
        _label_map_load(segment_of_label)
        t0 = time.perf_counter()
        n_moved = _history_write(run)
        t1 = time.perf_counter()
        _labels_switch()
        t2 = time.perf_counter()
        _segment_figures_write(run, plan, segment_of_label)
        t3 = time.perf_counter()
        timings["label_write"] = staged + (t2 - t1)
        timings["history_write"] = (t1 - t0) + (t3 - t2)
        _run_succeed(run, plan, n_moved=n_moved, timings=timings)
        if connection.vendor == "postgresql":
            with connection.cursor() as cur:  # back to Django's default, for enclosing blocks
                cur.execute("SET CONSTRAINTS ALL DEFERRED")
        t4 = time.perf_counter()
    # The commit makes the new labels durable: it belongs to the label write.
    timings["label_write"] += time.perf_counter() - t4
    SegmentationRun.objects.filter(pk=run.pk).update(timings=_jsonable(timings))
    reporter("done", 100, stage="writing")


def _unique_name(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate = f"{name} ({n})"
        n += 1
    taken.add(candidate)
    return candidate


def _segments_apply(run: SegmentationRun, plan: _Plan) -> dict[int, int | None]:
    """Create, update and retire Segment rows; return engine label -> segment id."""
    result = plan.result
    now = timezone.now()
    active = {s.pk: s for s in Segment.objects.select_for_update().filter(is_active=True)}
    specials: dict[str, Segment] = {}
    for seg in active.values():
        if seg.kind != Segment.Kind.CLUSTER and seg.kind not in specials:
            specials[seg.kind] = seg
    matched_ids = {
        sr.segment_id
        for sr in result.segments
        if sr.segment_id in active and active[sr.segment_id].kind == Segment.Kind.CLUSTER
    }
    retired = [
        s for s in active.values() if s.kind == Segment.Kind.CLUSTER and s.pk not in matched_ids
    ]
    for seg in retired:
        seg.is_active, seg.retired_at, seg.last_run = False, now, run
        seg.save(update_fields=["is_active", "retired_at", "last_run"])
    # Names: the owner's custom names and the special segments' names are taken first; a
    # proposed name that collides gets a number.
    taken = {s.name for s in specials.values()}
    taken |= {active[i].name for i in matched_ids if active[i].name_is_custom}
    for kind, spec in SPECIAL_SEGMENTS.items():
        if kind not in specials:
            specials[kind] = Segment.objects.create(
                kind=kind,
                name=_unique_name(spec["name"], taken),
                auto_name=spec["name"],
                description=spec["description"],
                auto_description=spec["description"],
                color=spec["color"],
                created_by_run=run,
                last_run=run,
            )
    # Park renamed matched segments on a placeholder first: two of them may swap names.
    for sid in matched_ids:
        seg = active[sid]
        if not seg.name_is_custom:
            Segment.objects.filter(pk=sid).update(name=f"~{sid}~")
    used_colors = {s.color for s in active.values() if s.pk in matched_ids and s.color}
    free_colors = [c for c in PALETTE if c not in used_colors]
    label_map: dict[int, int | None] = {}
    for sr in sorted(result.segments, key=lambda s: (-s.size, s.label)):
        seg = active[sr.segment_id] if sr.segment_id in matched_ids else None
        if seg is None:
            seg = Segment(kind=Segment.Kind.CLUSTER, created_by_run=run, created_at=now)
        if not seg.name_is_custom:
            seg.name = _unique_name(sr.name, taken)
        seg.auto_name = sr.name[:100]
        seg.behaviour = sr.behaviour
        seg.auto_description = sr.description
        if not seg.description_is_custom:
            seg.description = sr.description
        seg.profile = sr.profile
        seg.profile_values = _jsonable(sr.profile_values)
        seg.rules = _jsonable(list(sr.rules))
        seg.rules_text = "\n".join(sr.rules)
        seg.fidelity = result.fidelity
        seg.centroid = _jsonable(sr.centroid)
        seg.last_run = run
        if not seg.color:
            seg.color = free_colors.pop(0) if free_colors else PALETTE[sr.label % len(PALETTE)]
        seg.save()
        label_map[int(sr.label)] = seg.pk
    label_map[LABEL_PROSPECT] = specials[Segment.Kind.PROSPECTS].pk
    label_map[LABEL_OPTED_OUT] = specials[Segment.Kind.OPTED_OUT].pk
    label_map[LABEL_ARCHIVED] = None
    return label_map


def _label_map_load(label_map: dict[int, int | None]) -> None:
    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {MAP_TABLE}")
        cur.execute(f"CREATE TEMP TABLE {MAP_TABLE} (label integer PRIMARY KEY, segment_id bigint)")
        cur.executemany(
            f"INSERT INTO {MAP_TABLE} (label, segment_id) VALUES (%s, %s)",
            list(label_map.items()),
        )


def _false() -> str:
    return "FALSE" if connection.vendor == "postgresql" else "0"


def _distinct(a: str, b: str) -> str:
    return f"{a} IS DISTINCT FROM {b}" if connection.vendor == "postgresql" else f"{a} IS NOT {b}"


def _new_labels_sql() -> str:
    return (
        f"SELECT t.id, m.segment_id, r.reason FROM {LABELS_TABLE} t "
        f"JOIN {MAP_TABLE} m ON m.label = t.label JOIN {REASONS_TABLE} r ON r.id = t.reason_id"
    )


def _history_write(run: SegmentationRun) -> int:
    """One history row per customer whose segment changes (before the switch reads it)."""
    membership = Membership._meta.db_table
    changes = SegmentMembershipChange._meta.db_table
    transitions = SegmentTransition._meta.db_table
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {changes} "
            "(customer_id, run_id, from_segment_id, to_segment_id, changed_at, reason) "
            f"SELECT n.id, %s, m.segment_id, n.segment_id, %s, n.reason "
            f"FROM ({_new_labels_sql()}) n LEFT JOIN {membership} m ON m.customer_id = n.id "
            f"WHERE NOT COALESCE(m.pinned, {_false()}) "
            f"AND {_distinct('m.segment_id', 'n.segment_id')}",
            [run.pk, timezone.now()],
        )
        moved = cur.rowcount
        cur.execute(
            f"INSERT INTO {transitions} (run_id, from_segment_id, to_segment_id, count) "
            f"SELECT run_id, from_segment_id, to_segment_id, COUNT(*) FROM {changes} "
            "WHERE run_id = %s GROUP BY run_id, from_segment_id, to_segment_id",
            [run.pk],
        )
    return moved


def _labels_switch() -> int:
    """Write only the labels that change: update the memberships whose segment or reason
    changes, then add the customers who have none yet.

    Not one upsert: ON CONFLICT locks every conflicting row even when its WHERE then skips
    the update, which rewrote all million rows of a rerun that changes five.
    """
    membership = Membership._meta.db_table
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE {membership} SET segment_id = n.segment_id, reason = n.reason "
            f"FROM ({_new_labels_sql()}) n WHERE {membership}.customer_id = n.id "
            f"AND NOT {membership}.pinned "
            f"AND ({_distinct(f'{membership}.segment_id', 'n.segment_id')} "
            f"OR {membership}.reason <> n.reason)"
        )
        changed = cur.rowcount
        cur.execute(
            f"INSERT INTO {membership} "
            "(customer_id, segment_id, reason, pinned, total_spent, last_purchase_at) "
            f"SELECT n.id, n.segment_id, n.reason, {_false()}, c.total_spent, c.last_purchase_at "
            f"FROM ({_new_labels_sql()}) n JOIN {Customer._meta.db_table} c ON c.id = n.id "
            f"WHERE NOT EXISTS (SELECT 1 FROM {membership} m WHERE m.customer_id = n.id) "
            # A customer pinned meanwhile has a membership now: the pin wins.
            "ON CONFLICT (customer_id) DO NOTHING"
        )
        return changed + cur.rowcount


def _segment_figures_write(
    run: SegmentationRun, plan: _Plan, label_map: dict[int, int | None]
) -> None:
    """Precompute each segment's size, revenue and shares, and snapshot them for this run."""
    raw, result, pins = plan.raw, plan.result, plan.pins
    seg_of = pd.Series(np.asarray(result.labels, dtype=np.int64)).map(label_map)
    seg_of.index = raw.index
    ids = raw["customer_id"]
    if pins:
        pinned = ids.isin(pins.keys())
        seg_of[pinned] = ids[pinned].map(pins)
    frame = pd.DataFrame(
        {
            "segment_id": seg_of,
            "revenue": raw["monetary_total"],
            "rating_sum": raw["rating_mean"].fillna(0) * raw["rating_count"],
            "rating_count": raw["rating_count"],
            "promoters": raw["nps_promoters"],
            "detractors": raw["nps_detractors"],
            "nps_count": raw["nps_count"],
        }
    ).dropna(subset=["segment_id"])
    per = frame.groupby("segment_id").agg(
        size=("revenue", "size"),
        revenue=("revenue", "sum"),
        rating_sum=("rating_sum", "sum"),
        rating_count=("rating_count", "sum"),
        promoters=("promoters", "sum"),
        detractors=("detractors", "sum"),
        nps_count=("nps_count", "sum"),
    )
    sizes = {int(k): int(v) for k, v in per["size"].items()}
    # Customers outside the frame: prospects, opted out (pinned ones stay where they are).
    pinned_inside = set(ids[ids.isin(pins.keys())].tolist()) if pins else set()
    pinned_outside = {
        cid: sid for cid, sid in pins.items() if sid is not None and cid not in pinned_inside
    }
    for label, count in plan.extra.get("other_counts", {}).items():
        sid = label_map[label]
        sizes[sid] = sizes.get(sid, 0) + count
    for sid in pinned_outside.values():
        sizes[sid] = sizes.get(sid, 0) + 1
    total_customers = max(1, plan.counts.total)
    total_revenue = float(per["revenue"].clip(lower=0).sum()) or 1.0
    snapshots = []
    segments = list(Segment.objects.filter(is_active=True) | Segment.objects.filter(pk__in=sizes))
    for seg in segments:
        size = sizes.get(seg.pk, 0)
        row = per.loc[seg.pk] if seg.pk in per.index else None
        revenue = float(row["revenue"]) if row is not None else 0.0
        seg.size = size
        seg.share_customers = size / total_customers
        seg.revenue = round(revenue, 2)
        seg.share_revenue = max(revenue, 0.0) / total_revenue
        if seg.is_active:
            rating = nps = None
            if row is not None and row["rating_count"] > 0:
                rating = float(row["rating_sum"] / row["rating_count"])
            if row is not None and row["nps_count"] > 0:
                nps = float(100.0 * (row["promoters"] - row["detractors"]) / row["nps_count"])
            snapshots.append(
                SegmentSnapshot(
                    run=run,
                    segment=seg,
                    size=size,
                    revenue=seg.revenue,
                    avg_rating=rating,
                    nps=nps,
                    profile_values=seg.profile_values,
                )
            )
    Segment.objects.bulk_update(
        segments, ["size", "share_customers", "revenue", "share_revenue"], batch_size=500
    )
    # Retired segments nobody is pinned to are empty now.
    Segment.objects.filter(is_active=False, size__gt=0).exclude(pk__in=sizes).update(
        size=0, share_customers=0, revenue=0, share_revenue=0
    )
    SegmentSnapshot.objects.bulk_create(snapshots)


def _run_succeed(run: SegmentationRun, plan: _Plan, *, n_moved: int, timings: dict) -> None:
    result = plan.result
    now = timezone.now()
    sizes = {s.name: int(s.size) for s in result.segments}
    params = dict(_jsonable(result.params))
    params.setdefault("config", _jsonable(dataclasses.asdict(plan.config)))
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
        missing=_jsonable(result.missing),
        params=params,
        timings=_jsonable(timings),
        candidates=_jsonable(result.candidates),
        warnings=list(result.warnings),
        n_moved=n_moved,
        error="",
    )


def _jsonable(value):
    """Plain JSON types from numpy scalars/arrays and nested containers."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, set | tuple | range):
        return list(obj)
    return str(obj)


# --- pins and segment edits ----------------------------------------------------------------


def segment_pin(*, customer: Customer, segment: Segment | None = None) -> Customer:
    """Pin a customer to a segment (their current one by default); runs then leave them be.

    Side effects: the customer's membership (segment, reason, pin); a history row when the
    segment changes; both segments' precomputed sizes.
    """
    segment = segment or customer.segment
    if segment is None:
        raise ValidationError(f"{customer} has no segment yet: choose one to pin them to.")
    if not segment.is_active:
        raise ValidationError(f"{segment} is retired: pin the customer to an active segment.")
    with transaction.atomic():
        membership = _membership_locked(customer)
        previous = membership.segment_id
        membership.segment = segment
        membership.pinned = True
        membership.reason = f"Pinned to {segment.name} by the owner."[:REASON_MAX]
        membership.save()
        if previous != segment.pk:
            SegmentMembershipChange.objects.create(
                customer_id=customer.pk,
                from_segment_id=previous,
                to_segment=segment,
                reason=membership.reason,
            )
            Segment.objects.filter(pk=segment.pk).update(size=F("size") + 1)
            if previous:
                Segment.objects.filter(pk=previous, size__gt=0).update(size=F("size") - 1)
    return _customer_fresh(customer)


def segment_unpin(*, customer: Customer) -> Customer:
    """Let the next run place the customer again. Side effects: the pin, a history row."""
    with transaction.atomic():
        membership = _membership_locked(customer)
        if not membership.pinned:
            return _customer_fresh(customer)
        membership.pinned = False
        membership.reason = "Unpinned by the owner; the next run places them."
        membership.save(update_fields=["pinned", "reason"])
        SegmentMembershipChange.objects.create(
            customer_id=customer.pk,
            from_segment_id=membership.segment_id,
            to_segment_id=membership.segment_id,
            reason=membership.reason,
        )
    return _customer_fresh(customer)


def _membership_locked(customer: Customer) -> Membership:
    """The customer's membership row, locked (created, empty, for a customer never placed)."""
    # Lock the customer row first: two first pins of the same customer then queue up here
    # instead of both inserting a membership.
    list(Customer.objects.select_for_update().filter(pk=customer.pk).values_list("pk"))
    membership = Membership.objects.select_for_update().filter(customer_id=customer.pk).first()
    if membership is None:
        figures = Customer.objects.values("total_spent", "last_purchase_at").get(pk=customer.pk)
        membership = Membership(customer_id=customer.pk, **figures)
    return membership


def _customer_fresh(customer: Customer) -> Customer:
    return Customer.objects.select_related("membership__segment").get(pk=customer.pk)


def segment_update(*, segment: Segment, name: str, description: str) -> Segment:
    """The owner's name and description for a segment; later runs keep what the owner set.

    Setting the name back to the proposed one (auto_name) hands it back to the runs.
    """
    name = name.strip()
    if not name:
        raise ValidationError("A segment needs a name.")
    clash = Segment.objects.active().filter(name=name).exclude(pk=segment.pk)
    if segment.is_active and clash.exists():
        raise ValidationError(f"Another active segment is already called {name!r}.")
    segment.name = name
    segment.name_is_custom = name != segment.auto_name
    segment.description = description
    segment.description_is_custom = description != segment.auto_description
    segment.save(update_fields=["name", "name_is_custom", "description", "description_is_custom"])
    return segment
