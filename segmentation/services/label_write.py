"""The label write: every customer's new segment and reason, switched in one transaction.

Vendor-aware on purpose: labels are staged in temp tables (binary COPY on PostgreSQL,
executemany on SQLite), compared with the current memberships in numpy so that only the
labels that change are written, then applied with set-based SQL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
from django.db import connection, transaction
from django.utils import timezone

from crm.models import Customer
from segmentation import selectors
from segmentation.feature_store import customer_features_store
from segmentation.models import (
    Membership,
    Segment,
    SegmentationRun,
    SegmentMembershipChange,
    SegmentTransition,
)
from segmentation.pg_copy import (
    COPY_CHUNK,
    copy_binary,
    indexes_built_after_if_empty,
    sqlite_insert_many,
)
from segmentation.services.common import RunAlreadyFinished, SegmentationCheckFailed, jsonable
from segmentation.services.plan import NO_REASON, Label, RunPlan, SegmentSlot, StagedLabels
from segmentation.services.segment_records import (
    SPECIAL_SEGMENTS,
    segment_figures_write,
    segments_apply,
)

if TYPE_CHECKING:  # the engine loads scikit-learn; this module only reads its result
    pass

logger = logging.getLogger(__name__)

REASON_MAX = Membership._meta.get_field("reason").max_length
# A nightly run stages a few thousand labels of a million. At the default page cost the
# planner hashes the whole memberships table to find them (0.45-0.53 s for 7,000 labels at
# 1M); at an SSD-like one, as the feature read uses (selectors._PLANNER_SETTINGS), it looks
# each up by primary key (0.19-0.22 s), and still hashes when most of the table is staged.
_WRITE_PLANNER_SETTINGS = {"random_page_cost": "1.1"}
LABELS_TABLE = "segmentation_new_labels"
REASONS_TABLE = "segmentation_new_reasons"
MAP_TABLE = "segmentation_label_map"


def labels_write(
    *,
    run: SegmentationRun,
    plan: RunPlan,
    progress: Callable[..., None],
    timings: dict[str, float],
    succeed: Callable[[int, selectors.CustomerCounts], None],
) -> WrittenFor:
    """Stage the labels that change, then in one transaction: segments, history, the switch,
    segment figures and snapshots, and ``succeed(n_moved, counts)`` (the run's own success
    record, with the customers counted by the staging's read).
    Returns every customer it may have written a history, membership or figures row for,
    and every customer its staging read found, for the sweep of those deleted meanwhile.

    Raises RunAlreadyFinished when another attempt finished the run meanwhile, and
    SegmentationCheckFailed when the segments changed under the run; nothing is written then.
    """
    progress("writing", 0)
    started = time.perf_counter()
    staged = _labels_stage(plan)
    staging = time.perf_counter() - started
    progress("writing", 30)
    with transaction.atomic():
        planner_saved = {}
        if connection.vendor == "postgresql":
            # Check the history rows' foreign keys as they are inserted (timed there), not
            # in the commit.
            with connection.cursor() as cur:
                cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
                planner_saved = selectors.planner_settings_set(cur, _WRITE_PLANNER_SETTINGS)
        locked = SegmentationRun.objects.select_for_update().get(pk=run.pk)
        if locked.status != SegmentationRun.Status.RUNNING:
            raise RunAlreadyFinished(locked.status)
        segment_of_label = segments_apply(run, plan)
        for label, segment_id in staged.expected_segments.items():
            if (segment_of_label.get(label) or SegmentSlot.NONE) != segment_id:
                # Unstaged customers were left out because of this expectation.
                raise SegmentationCheckFailed(
                    "The segments changed while the run was computing; nothing was written."
                )
        _label_map_load(segment_of_label)
        t0 = time.perf_counter()
        n_moved = _history_write(run)
        t1 = time.perf_counter()
        labels_switch()
        t2 = time.perf_counter()
        segment_figures_write(run, plan, staged, segment_of_label)
        t3 = time.perf_counter()
        # The figures each customer was segmented on, switched with the labels (a customer
        # deleted since they were read is swept after the run: segmentation.customer_rows).
        customer_features_store(run=run, frame=plan.raw, plain=plan.result.plain)
        t4 = time.perf_counter()
        timings["label_write"] = staging + (t2 - t1)
        timings["history_write"] = (t1 - t0) + (t3 - t2)
        timings["feature_write"] = t4 - t3
        succeed(n_moved, staged.counts)
        if connection.vendor == "postgresql":
            with connection.cursor() as cur:  # back to Django's default, for enclosing blocks
                cur.execute("SET CONSTRAINTS ALL DEFERRED")
                selectors.planner_settings_set(cur, planner_saved)
        committing = time.perf_counter()
    # The commit makes the new labels durable: it belongs to the label write.
    timings["label_write"] += time.perf_counter() - committing
    analyzing = time.perf_counter()
    _history_statistics_refresh()
    timings["history_write"] += time.perf_counter() - analyzing
    SegmentationRun.objects.filter(pk=run.pk).update(timings=jsonable(timings))
    progress("done", 100, stage="writing")
    return WrittenFor(
        customer_ids=np.concatenate([staged.labelled, plan.raw["customer_id"].to_numpy(np.int64)]),
        seen=staged.seen,
    )


class WrittenFor(NamedTuple):
    """The customers a label write may have written rows for (unsorted, with repeats), and
    every customer id its staging read found (sorted)."""

    customer_ids: np.ndarray
    seen: np.ndarray


def temp_tables_drop() -> None:
    """Drop the staging tables (they are per connection; a failed run may leave them)."""
    if connection.connection is None or connection.in_atomic_block:
        return
    try:
        with connection.cursor() as cur:
            for table in (LABELS_TABLE, REASONS_TABLE, MAP_TABLE):
                cur.execute(f"DROP TABLE IF EXISTS {table}")
    except Exception:  # the connection may be gone after a failure; the tables die with it
        logger.debug("Could not drop the segmentation temp tables", exc_info=True)


# --- staging -------------------------------------------------------------------------------

# PostgreSQL's binary COPY format: a signature, flags and header extension, then the rows,
# then a field count of -1.
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


def label_rows_binary(ids: np.ndarray, labels: np.ndarray, reason_ids: np.ndarray) -> bytes:
    """(bigint, integer, integer) rows in the binary COPY format, built by numpy.

    A million rows take milliseconds this way; as CSV text they take a second to write and
    the server another to parse.
    """
    rows = np.empty(len(ids), dtype=_LABEL_ROW)
    rows["fields"] = 3
    rows["id_len"], rows["label_len"], rows["reason_len"] = 8, 4, 4
    rows["id"], rows["label"], rows["reason_id"] = ids, labels, reason_ids
    return rows.tobytes()


def _labels_stage(plan: RunPlan) -> StagedLabels:
    """Load the labels that change into temp tables (not a shared write: the web goes on).

    Every customer gets a label: clustered customers from the engine; the others by their
    flags (archived, opted out, else a prospect). Pinned customers are left out. A reason is
    one of a few sentences (one per rule of the surrogate tree), so customers get the
    sentence's number and the sentences go to a small table of their own. Then only the
    customers whose segment or reason differ from their current membership are staged: a
    daily rerun moves a handful of a million, and the history and the switch join what is
    staged. The segment a label will get is known from the engine's matching; labels_write
    checks that expectation before anything is written.
    """
    result = plan.result
    ids = np.asarray(result.customer_ids, dtype=np.int64)
    labels = np.asarray(result.labels, dtype=np.int64)
    # The engine numbers the customers by their sentence (numbering a million texts again
    # took 0.11-0.12 s at 1M); the few sentences in use are cut to the column's length, and
    # two that only differ past the cut, or appear twice, share a number.
    codes = np.asarray(result.reason_codes, dtype=np.int64)
    table = np.asarray(result.reason_table, dtype=object)
    used = np.flatnonzero(np.bincount(codes, minlength=len(table)))
    cut_codes, sentences = pd.factorize(
        np.asarray([str(table[i])[:REASON_MAX] for i in used], dtype=object)
    )
    number = np.full(len(table), -1, dtype=np.int64)
    number[used] = cut_codes
    reason_ids = number[codes]
    # One number (>= 0) per distinct text; current reasons are matched to these by their text
    # (on PostgreSQL by a hash of it: selectors.customer_flags_and_memberships).
    number_of = {str(text): i for i, text in enumerate(sentences)}
    special_reason: dict[Label, int] = {}
    for label, text in (
        (Label.PROSPECT, SPECIAL_SEGMENTS[Segment.Kind.PROSPECTS]["reason"]),
        (Label.OPTED_OUT, SPECIAL_SEGMENTS[Segment.Kind.OPTED_OUT]["reason"]),
        (Label.ARCHIVED, ""),
    ):
        special_reason[label] = number_of.setdefault(text, len(number_of))
    reason_rows = [(number, text) for text, number in number_of.items()]
    _temp_tables_create()
    _rows_insert(REASONS_TABLE, ("id", "reason"), reason_rows)
    # Every customer as they are now, each with their current membership if any.
    now = selectors.customer_flags_and_memberships(reasons_table=REASONS_TABLE)
    others = ~np.isin(now["id"], ids)
    other_ids = now["id"][others]
    other_labels = np.where(
        now["is_archived"][others] == 1,
        Label.ARCHIVED,
        np.where(now["profiling_opt_out"][others] == 1, Label.OPTED_OUT, Label.PROSPECT),
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
    other_counts = {
        label: int((labels == label).sum()) for label in (Label.PROSPECT, Label.OPTED_OUT)
    }

    # The run's customer counts come from this read, not from a query of their own.
    counts = selectors.CustomerCounts.of_flags(
        now["is_archived"], now["profiling_opt_out"], pinned=len(plan.pins)
    )

    expected = _expected_segments(plan)
    # Each customer's current membership, if any, next to the new label (a clustered
    # customer deleted since the features were read has none).
    position = np.searchsorted(now["id"], ids)
    padded_ids = np.append(now["id"], -1)  # past the end: "not found"
    found = (padded_ids[position] == ids) & (np.append(now["has_membership"], 0)[position] == 1)
    position[~found] = len(now["id"])
    current_segment = np.append(now["segment_id"], SegmentSlot.NO_MEMBERSHIP)[position]
    current_reason = np.append(now["reason_id"], NO_REASON)[position]
    expected_segment = (
        pd.Series(labels).map(expected).fillna(SegmentSlot.NOT_YET_CREATED).to_numpy(np.int64)
    )
    unchanged = found & (current_segment == expected_segment) & (current_reason == reason_ids)
    # An archived customer never placed needs no row: no segment, no reason.
    unchanged |= ~found & (labels == Label.ARCHIVED)
    changed = ~unchanged
    _labels_copy(ids[changed], labels[changed], reason_ids[changed])
    return StagedLabels(
        other_counts=other_counts,
        counts=counts,
        expected_segments={
            int(label): expected[int(label)] for label in np.unique(labels[unchanged]).tolist()
        },
        labelled=ids,
        seen=now["id"],
    )


def _expected_segments(plan: RunPlan) -> dict[int, int]:
    """Engine label -> the segment id it will be written with, where already known
    (SegmentSlot.NONE for none): clusters matched to an active segment keep it, the special
    labels keep theirs."""
    active = dict(Segment.objects.active().values_list("pk", "kind"))  # a few dozen rows at most
    expected = {
        int(sr.label): int(sr.segment_id)
        for sr in plan.result.segments
        if sr.segment_id in active and active[sr.segment_id] == Segment.Kind.CLUSTER
    }
    for label, kind in (
        (Label.PROSPECT, Segment.Kind.PROSPECTS),
        (Label.OPTED_OUT, Segment.Kind.OPTED_OUT),
    ):
        special = sorted(pk for pk, k in active.items() if k == kind)
        if special:
            expected[int(label)] = special[0]
    expected[int(Label.ARCHIVED)] = int(SegmentSlot.NONE)
    return expected


def _temp_tables_create() -> None:
    creates = {
        LABELS_TABLE: "(id bigint PRIMARY KEY, label integer NOT NULL, reason_id integer NOT NULL)",
        REASONS_TABLE: "(id integer PRIMARY KEY, reason text NOT NULL UNIQUE)",
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
        sqlite_insert_many(sql, rows)
        if own_transaction:
            raw_conn.execute("COMMIT")
    except BaseException:
        if own_transaction:
            raw_conn.execute("ROLLBACK")
        raise


def _labels_copy(ids: np.ndarray, labels: np.ndarray, reason_ids: np.ndarray) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            parts = (slice(start, start + COPY_CHUNK) for start in range(0, len(ids), COPY_CHUNK))
            chunks = (label_rows_binary(ids[p], labels[p], reason_ids[p]) for p in parts)
            copy_binary(cur, f"COPY {LABELS_TABLE} FROM STDIN WITH (FORMAT binary)", chunks)
            cur.execute(f"ANALYZE {LABELS_TABLE}")
        return
    _rows_insert(
        LABELS_TABLE,
        ("id", "label", "reason_id"),
        zip(ids.tolist(), labels.tolist(), reason_ids.tolist(), strict=True),
    )
    # Without statistics SQLite takes the staged labels for as many as the memberships: the
    # switch's update then walked all million memberships for the 3,000 labels of a night
    # (0.40 s against 0.18 s at 1M) and the history every customer (0.18 s against 0.06 s).
    # A sample of the rows is enough to tell (SQLite 3.32 on; before, the whole table).
    with connection.cursor() as cur:
        cur.execute("PRAGMA analysis_limit")
        limit = cur.fetchone()
        cur.execute("PRAGMA analysis_limit = 1000")
        cur.execute(f"ANALYZE temp.{LABELS_TABLE}")
        if limit is not None:
            cur.execute(f"PRAGMA analysis_limit = {int(limit[0])}")


# --- inside the write transaction ----------------------------------------------------------


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
    """One history row per customer whose segment changes (before the switch reads it); none
    for a customer deleted since the run read them (no foreign key would refuse the row)."""
    membership = Membership._meta.db_table
    changes = SegmentMembershipChange._meta.db_table
    transitions = SegmentTransition._meta.db_table
    with connection.cursor() as cur, indexes_built_after_if_empty(changes):
        cur.execute(
            f"INSERT INTO {changes} "
            "(customer_id, run_id, from_segment_id, to_segment_id, changed_at, reason) "
            f"SELECT n.id, %s, m.segment_id, n.segment_id, %s, n.reason "
            f"FROM ({_new_labels_sql()}) n JOIN {Customer._meta.db_table} c ON c.id = n.id "
            f"LEFT JOIN {membership} m ON m.customer_id = n.id "
            f"WHERE NOT COALESCE(m.pinned, {_false()}) "
            f"AND {_distinct('m.segment_id', 'n.segment_id')}",
            [run.pk, timezone.now()],
        )
        moved = cur.rowcount
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {transitions} (run_id, from_segment_id, to_segment_id, count) "
            f"SELECT run_id, from_segment_id, to_segment_id, COUNT(*) FROM {changes} "
            "WHERE run_id = %s GROUP BY run_id, from_segment_id, to_segment_id",
            [run.pk],
        )
    return moved


def _history_statistics_refresh() -> None:
    """On PostgreSQL, sample the segment history again now that the run's rows are in.

    Pages read it by run (Today's newly at risk, a segment's movers). With the statistics
    of the run before, the planner takes this run for a row or two and joins row by row:
    Today's query took 70 ms instead of 37 after a daily run at a million customers, 2.1 s
    instead of 1.65 after one that moved 150,000 into an at-risk segment; the sample takes
    0.1-0.2 s. A daily run adds too few rows for autovacuum to sample them. The other
    tables a run rewrites need none: pages read them by customer or down an index to a
    limit (the predictions' plans were the same either way).
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cur:
        cur.execute(f"ANALYZE {connection.ops.quote_name(SegmentMembershipChange._meta.db_table)}")


def labels_switch() -> int:
    """Write only the labels that change: update the memberships whose segment or reason
    changes, then add the customers who have none yet.

    Not one upsert: ON CONFLICT locks every conflicting row even when its WHERE then skips
    the update, which rewrote all million rows of a rerun that changes five.
    """
    membership = Membership._meta.db_table
    with connection.cursor() as cur, indexes_built_after_if_empty(membership):
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
