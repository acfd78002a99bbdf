"""The floors that bound a recluster: each step done the fastest known way, nothing else.

- the per-customer aggregate alone, its result discarded inside the database;
- the bare scikit-learn fits on the run's feature matrix, with the run's k range and samples,
  and the fits on halves of the sample by which the engine keeps only stable k;
- the best bulk label write (PostgreSQL: COPY into a temporary table, one UPDATE ... FROM;
  SQLite: executemany in one transaction), on the real column, always rolled back, and the
  read of the current labels that tells which change;
- the scaling of the feature matrix (the log of the purchase figures, then every column
  standardised);
- the predictions' floors (prediction_floors; predictions_floor below is their previous
  count, kept for comparison).
"""

import io
import re
import select
import statistics
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from django.db import connection, transaction
from psycopg import pq
from scipy.optimize import minimize
from scipy.special import gammaln, hyp2f1
from sklearn import config_context
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score
from threadpoolctl import threadpool_limits

from crm.models import Customer, Purchase
from segmentation import clv
from segmentation.benchmark.recluster import tables_vacuum
from segmentation.models import Membership

try:  # the engine's silhouettes of several labelings in one pass over the distances
    from segmentation.clustering import silhouettes as one_pass_silhouettes
except ImportError:  # pragma: no cover - an engine without it
    one_pass_silhouettes = None

# The outer aggregates read every column: with a bare count(*) PostgreSQL drops the unused
# sum/min/max and counts groups from the narrowest index, which is no floor at all.
AGGREGATE_SQL = (
    "SELECT count(*), sum(n), sum(total), max(first_at), max(last_at) FROM ("
    "SELECT customer_id, count(*) AS n, sum(amount) AS total, min(purchased_at) AS first_at, "
    "max(purchased_at) AS last_at FROM {purchase} GROUP BY customer_id) AS per_customer"
)


def binary_copy_row(fields: dict[str, str]) -> np.dtype:
    """One row of PostgreSQL's binary COPY with no NULL: a field count ("fields"), then per
    field its length ("<name>_len") and its big-endian value of numpy type ``fields[name]``."""
    layout = [("fields", ">i2")]
    for name, kind in fields.items():
        layout += [(f"{name}_len", ">i4"), (name, kind)]
    return np.dtype(layout)


def binary_copy_out(sql: str, params: dict | None, fields: dict[str, str]) -> np.ndarray:
    """The rows of a query (no NULL) through PostgreSQL's binary COPY, decoded by numpy as
    binary_copy_row(fields)."""
    buffer = bytearray()
    copy_sql = f"COPY ({sql}) TO STDOUT (FORMAT binary)"
    with connection.cursor() as cur, cur.cursor.copy(copy_sql, params) as copy:
        # Every row libpq holds is taken at once; the socket is waited on only when it holds
        # none (a wait per row, as iterating over the Copy does, doubles the client's time).
        pgconn = copy.connection.pgconn
        while (received := pgconn.get_copy_data(1))[0] != -1:
            if received[0]:
                buffer += received[1]
            else:
                select.select([pgconn.socket], [], [])
                pgconn.consume_input()
        errors = []
        while (result := pgconn.get_result()) is not None:
            if result.status != pq.ExecStatus.COMMAND_OK:
                errors.append(result.get_error_message())
        if errors:
            raise RuntimeError(errors[0])
    # 19 bytes of header before the rows, a 2-byte trailer after them.
    return np.frombuffer(memoryview(buffer)[19:-2], dtype=binary_copy_row(fields))


def binary_copy_in(cursor, table: str, columns: dict[str, tuple[str, object]]) -> None:
    """Load ``columns`` (name -> numpy big-endian type and values, none NULL) into ``table``
    by one binary COPY of records numpy lays out: no Python per row."""
    n = max(np.size(values) for _, values in columns.values())
    records = np.zeros(
        n, dtype=binary_copy_row({name: kind for name, (kind, _) in columns.items()})
    )
    records["fields"] = len(columns)
    for name, (kind, values) in columns.items():
        records[f"{name}_len"], records[name] = np.dtype(kind).itemsize, values
    header, trailer = b"PGCOPY\n\xff\r\n\x00" + bytes(8), b"\xff\xff"
    with cursor.cursor.copy(f"COPY {table} FROM STDIN (FORMAT binary)") as copy:
        copy.write(header)
        for start in range(0, n, 100_000):
            copy.write(records[start : start + 100_000].tobytes())
        copy.write(trailer)


def _timed(fn, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - started, result


def _aggregate_run() -> int:
    with connection.cursor() as cur:
        cur.execute(AGGREGATE_SQL.format(purchase=Purchase._meta.db_table))
        return cur.fetchone()[0]


def purchases_warm_up() -> None:
    """Read every purchase once, as the floors do before they are timed."""
    _aggregate_run()


def aggregate_floor(*, repeat: int = 3) -> dict:
    """Seconds of the bare GROUP BY over purchases (median of `repeat`, after one warm-up)."""
    purchases_warm_up()
    times = [_timed(_aggregate_run)[0] for _ in range(repeat)]
    return {"seconds": statistics.median(times), "runs": times}


def pull_floor() -> dict:
    """Seconds to bring the aggregate's rows into pandas the fastest known way (for reference:
    not one of the floors the ratio adds up)."""
    sql = (
        "SELECT customer_id, count(*) AS n, sum(amount) AS total, min(purchased_at) AS first, "
        f"max(purchased_at) AS last FROM {Purchase._meta.db_table} GROUP BY customer_id "
        "ORDER BY customer_id"
    )
    started = time.perf_counter()
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            buffer = io.BytesIO()
            with cur.cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)") as copy:
                for chunk in copy:
                    buffer.write(chunk)
            buffer.seek(0)
            frame = pd.read_csv(buffer, header=None)
        else:
            cur.execute(sql)
            frame = pd.DataFrame(cur.fetchall())
    return {"seconds": time.perf_counter() - started, "rows": len(frame)}


@dataclass(frozen=True)
class FitParams:
    k_values: tuple[int, ...]
    chosen_k: int
    seed: int
    sample_size: int  # rows the k-selection fits and silhouettes use
    sample_n_init: int = 1  # k-means++ starts per k on the sample
    working_memory: int = 64  # MB, silhouette chunks


def sklearn_floor(x: np.ndarray, params: FitParams) -> dict:
    """The bare fits, with the default thread pools and with one thread; the faster counts.

    On two shared cores OpenMP threads that wait on a busy sibling can be slower than one.
    """
    default = _sklearn_fits(x, params)
    with threadpool_limits(limits=1):
        single = _sklearn_fits(x, params)
    best = min(default, single, key=lambda r: r["seconds"])
    return {**best, "default_threads": default, "one_thread": single}


def _sklearn_fits(x: np.ndarray, params: FitParams) -> dict:
    """Seconds of the bare fits the engine needs: for each k a K-Means fit on the seeded
    sample, its silhouette and its stability (a fit on each half of the sample, both
    labelling the whole sample, compared by adjusted Rand index: the engine keeps only a
    k whose groups come back on both halves), then one fit of the chosen k on every row
    started from the sample's centres. Silhouettes are timed both with scikit-learn's
    silhouette_score and with the engine's one-pass computation of every k (when it has
    one); the faster counts. ``seconds_without_stability``: the previous floor's count."""
    rng = np.random.default_rng(params.seed)
    n = len(x)
    sample = x[np.sort(rng.choice(n, size=min(params.sample_size, n), replace=False))]
    centres, labelings = None, []
    started = time.perf_counter()
    for k in params.k_values:
        if k >= len(sample):
            break
        model = KMeans(n_clusters=k, n_init=params.sample_n_init, random_state=params.seed)
        labelings.append(model.fit(sample).labels_)
        if k == params.chosen_k:
            centres = model.cluster_centers_
    sample_fits = time.perf_counter() - started
    started = time.perf_counter()
    with config_context(working_memory=params.working_memory):
        for labels in labelings:
            silhouette_score(sample, labels)
    silhouette_sklearn = time.perf_counter() - started
    started = time.perf_counter()
    order = rng.permutation(len(sample))
    halves = (sample[order[: len(sample) // 2]], sample[order[len(sample) // 2 :]])
    for k in params.k_values[: len(labelings)]:
        a, b = (
            KMeans(n_clusters=k, n_init=params.sample_n_init, random_state=params.seed)
            .fit(half)
            .predict(sample)
            for half in halves
        )
        adjusted_rand_score(a, b)
    stability = time.perf_counter() - started
    silhouette_one_pass = None
    if one_pass_silhouettes is not None:
        started = time.perf_counter()
        one_pass_silhouettes(sample, labelings)
        silhouette_one_pass = time.perf_counter() - started
    started = time.perf_counter()
    if len(sample) < n:
        init = centres if centres is not None else "k-means++"
        KMeans(n_clusters=params.chosen_k, init=init, n_init=1, random_state=params.seed).fit(x)
    fit = time.perf_counter() - started
    silhouettes = min(s for s in (silhouette_sklearn, silhouette_one_pass) if s is not None)
    return {
        "seconds": sample_fits + silhouettes + stability + fit,
        "seconds_without_stability": sample_fits + silhouettes + fit,
        "k_selection": sample_fits + silhouettes + stability,
        "fit": fit,
        "sample_fits": sample_fits,
        "stability": stability,
        "silhouette_sklearn": silhouette_sklearn,
        "silhouette_one_pass": silhouette_one_pass,
    }


# --- labels --------------------------------------------------------------------------------


@dataclass
class Labels:
    """Every customer's segment and reason, ordered by id."""

    ids: np.ndarray
    segment_ids: np.ndarray  # float, NaN for none
    reasons: np.ndarray  # object

    def changed_from(self, other: "Labels") -> np.ndarray:
        """Positions of rows whose segment or reason differ from other's (same ids)."""
        if not np.array_equal(self.ids, other.ids):
            raise ValueError("label sets cover different customers")
        a, b = self.segment_ids, other.segment_ids
        seg_diff = ~((a == b) | (np.isnan(a) & np.isnan(b)))
        return np.flatnonzero(seg_diff | (self.reasons != other.reasons))


def labels_read() -> Labels:
    customer, membership = Customer._meta.db_table, Membership._meta.db_table
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT c.id, m.segment_id, COALESCE(m.reason, '') FROM {customer} c "
            f"LEFT JOIN {membership} m ON m.customer_id = c.id ORDER BY c.id"
        )
        rows = cur.fetchall()
    frame = pd.DataFrame(rows, columns=["id", "segment_id", "reason"])
    return Labels(
        ids=frame["id"].to_numpy(np.int64),
        segment_ids=frame["segment_id"].to_numpy(dtype=float, na_value=np.nan),
        reasons=frame["reason"].to_numpy(dtype=object),
    )


def _labels_write(labels: Labels, rows: np.ndarray) -> None:
    """The best bulk write of labels' rows `rows` onto the memberships (rows that exist)."""
    table = Membership._meta.db_table
    ids = labels.ids[rows]
    seg = labels.segment_ids[rows]
    reasons = labels.reasons[rows]
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute(
                "CREATE TEMP TABLE bench_labels (id bigint PRIMARY KEY, segment_id bigint, "
                "segment_reason text NOT NULL) ON COMMIT DROP"
            )
            frame = pd.DataFrame(
                {"id": ids, "segment_id": pd.array(seg, dtype="Int64"), "reason": reasons}
            )
            buffer = io.StringIO()
            frame.to_csv(buffer, index=False, header=False, na_rep="\\N")
            copy_sql = "COPY bench_labels FROM STDIN WITH (FORMAT csv, NULL '\\N')"
            with cur.cursor.copy(copy_sql) as copy:
                copy.write(buffer.getvalue())
            cur.execute(
                f"UPDATE {table} AS m SET segment_id = t.segment_id, "
                "reason = t.segment_reason FROM bench_labels AS t WHERE m.customer_id = t.id"
            )
            cur.execute("DROP TABLE bench_labels")
        else:
            seg_values = [None if np.isnan(s) else int(s) for s in seg]
            connection.connection.executemany(
                f"UPDATE {table} SET segment_id = ?, reason = ? WHERE customer_id = ?",
                zip(seg_values, reasons.tolist(), ids.tolist(), strict=True),
            )


def _relabelled(labels: Labels, rows: np.ndarray) -> Labels:
    """labels with every row of `rows` moved to another segment (reasons kept)."""
    segments = np.unique(labels.segment_ids[~np.isnan(labels.segment_ids)])
    moved = labels.segment_ids.copy()
    if len(segments) >= 2:
        position = np.searchsorted(segments, np.nan_to_num(moved[rows], nan=segments[0]))
        moved[rows] = segments[(position + 1) % len(segments)]
    else:
        moved[rows] = np.where(np.isnan(moved[rows]), -1.0, np.nan)
    return Labels(ids=labels.ids, segment_ids=moved, reasons=labels.reasons)


def label_write_floor(*, before: Labels, after: Labels) -> dict:
    """Seconds to switch as many customers' labels as went from `before` to `after`.

    Measured from the table's current state (the `after` labels) by moving those same rows
    to another segment: the same rows, indexes and bytes change as in the real switch,
    without first rewriting the table back to `before`. Inside a transaction that is rolled
    back, so the table is left as it was.
    """
    changed = after.changed_from(before)
    current = labels_read()
    with transaction.atomic():
        if len(current.changed_from(after)):
            # The table is not in the `after` state: put it there first (untimed).
            _labels_write(after, after.changed_from(current))
        seconds, _ = _timed(_labels_write, _relabelled(after, changed), changed)
        transaction.set_rollback(True)
    tables_vacuum(Membership)  # the rolled-back rows are dead, not gone
    return {"seconds": seconds, "rows_changed": len(changed), "rows_total": len(after.ids)}


def current_labels_floor() -> dict:
    """Seconds to read every customer's current segment and reason: what a run must know to
    write only the labels that change (label_write_floor is handed both sets of labels, so
    it does not count this read). PostgreSQL: a binary COPY of the membership rows with a
    32-bit hash of each reason, decoded by numpy (the hash instead of the text: the same
    read, less to send and decode); SQLite: one fetch of the rows, the reasons as text."""
    table = Membership._meta.db_table
    started = time.perf_counter()
    if connection.vendor == "postgresql":
        rows = binary_copy_out(
            f"SELECT customer_id, COALESCE(segment_id, -1), hashtext(reason) FROM {table}",
            None,
            {"id": ">i8", "segment_id": ">i8", "reason_hash": ">i4"},
        )
    else:
        with connection.cursor() as cur:
            cur.execute(f"SELECT customer_id, segment_id, reason FROM {table}")
            rows = cur.fetchall()
    return {"seconds": time.perf_counter() - started, "rows": len(rows)}


# The purchase figures a clustering takes the log of: recency, frequency, spend, average
# order and tenure, the first columns of the engine's matrix; the others (satisfaction, age,
# markers of a known figure) are only standardised.
LOGGED_COLUMNS = 5


def scaling_floor(x: np.ndarray) -> dict:
    """Seconds to scale a feature matrix the size of ``x`` the cheapest way a clustering can
    take it, in place: the log of the purchase figures, then every column centred and
    divided by its spread (on a copy of ``x`` made positive beforehand, untimed)."""
    scaled = np.abs(x)
    logged = min(LOGGED_COLUMNS, scaled.shape[1])
    started = time.perf_counter()
    np.log1p(scaled[:, :logged], out=scaled[:, :logged])
    scaled -= scaled.mean(axis=0)
    scaled /= scaled.std(axis=0)
    return {"seconds": time.perf_counter() - started, "shape": list(scaled.shape)}


# --- honest floors ---------------------------------------------------------------------------

# The planner settings a query of the product's may take (the feature query takes these): the
# aggregate's floor is its best plan, not PostgreSQL's default one, which spills at 100k.
BEST_PLAN_SETTINGS = {
    "enable_hashagg": "off",
    "max_parallel_workers_per_gather": "0",
    "jit": "off",
    "random_page_cost": "1.1",
    "enable_hashjoin": "off",
}


def aggregate_floor_best_plan(*, repeat: int = 3) -> dict:
    """The bare aggregate under the default plan and under BEST_PLAN_SETTINGS; the faster
    is the floor (SQLite has one plan)."""
    default = aggregate_floor(repeat=repeat)
    if connection.vendor != "postgresql":
        return {**default, "plan": "default", "default_plan_seconds": default["seconds"]}
    with transaction.atomic(), connection.cursor() as cur:
        for name, value in BEST_PLAN_SETTINGS.items():
            cur.execute("SELECT set_config(%s, %s, true)", [name, value])
        tuned = aggregate_floor(repeat=repeat)
    best, plan = (
        (tuned, "tuned") if tuned["seconds"] <= default["seconds"] else (default, "default")
    )
    return {
        **best,
        "plan": plan,
        "default_plan_seconds": default["seconds"],
        "tuned_plan_seconds": tuned["seconds"],
    }


def _membership_rows() -> list[tuple]:
    """Every membership row as it stands (the rows a first run persists)."""
    table = Membership._meta.db_table
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT customer_id, segment_id, reason, pinned, total_spent, last_purchase_at "
            f"FROM {table} ORDER BY customer_id"
        )
        return cur.fetchall()


def secondary_index_sql(table: str, copy: str) -> list[str]:
    """The CREATE INDEX statements of `table`'s secondary indexes, renamed onto `copy`."""
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i "
                "JOIN pg_class c ON c.relname = i.indexname "
                "JOIN pg_index x ON x.indexrelid = c.oid "
                "WHERE i.tablename = %s AND NOT x.indisprimary",
                [table],
            )
        else:
            cur.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s "
                "AND sql IS NOT NULL",
                [table],
            )
        found = cur.fetchall()
    statements = []
    for name, sql in found:
        sql = re.sub(rf'INDEX\s+"?{re.escape(name)}"?', f"INDEX {name}_floor", sql, count=1)
        sql = re.sub(rf'\sON\s+(?:public\.)?"?{re.escape(table)}"?', f" ON {copy}", sql, count=1)
        statements.append(sql)
    return statements


def label_load_floor() -> dict:
    """A first run's honest floor: every current membership row bulk-loaded into an empty
    table with the membership's columns and primary key (PostgreSQL: COPY; SQLite:
    executemany in one transaction), then its secondary indexes built. Rolled back."""
    table = Membership._meta.db_table
    copy = "bench_floor_membership"
    rows = _membership_rows()
    indexes = secondary_index_sql(table, copy)
    with transaction.atomic(), connection.cursor() as cur:
        started = time.perf_counter()
        cur.execute(
            f"CREATE TABLE {copy} (customer_id bigint PRIMARY KEY, segment_id bigint, "
            "reason varchar(300) NOT NULL, pinned boolean NOT NULL, "
            "total_spent numeric(14, 2) NOT NULL, last_purchase_at timestamp with time zone)"
        )
        if connection.vendor == "postgresql":
            with cur.cursor.copy(f"COPY {copy} FROM STDIN") as cp:
                for row in rows:
                    cp.write_row(row)
        else:
            connection.connection.executemany(f"INSERT INTO {copy} VALUES (?, ?, ?, ?, ?, ?)", rows)
        for sql in indexes:
            cur.execute(sql)
        seconds = time.perf_counter() - started
        transaction.set_rollback(True)
    return {"seconds": seconds, "rows": len(rows), "indexes": len(indexes)}


# --- predictions -----------------------------------------------------------------------------


def bgnbd_negative_ll(log_params: np.ndarray, x, t_x, big_t, weights) -> float:
    r, alpha, a, b = np.exp(log_params)
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + big_t)
    with np.errstate(divide="ignore"):
        a4 = np.where(
            x > 0,
            np.log(a) - np.log(np.maximum(b + x - 1, 1e-12)) - (r + x) * np.log(alpha + t_x),
            -np.inf,
        )
    return -float(np.sum(weights * (a1 + a2 + np.logaddexp(a3, a4))))


def gamma_gamma_negative_ll(log_params: np.ndarray, x, m, weights) -> float:
    p, q, v = np.exp(log_params)
    px = p * x
    ll = (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(x * m + v)
    )
    return -float(np.sum(weights * ll))


def predictions_floor() -> dict:
    """Seconds of the bare BG/NBD and Gamma-Gamma fits (maximum likelihood, L-BFGS-B over
    the distinct (x, t_x, T) rows weighted by their counts; the product's own fits when
    faster), then every customer's scores and their write, on every buyer's repeat
    purchases, time since first and last purchase. The per-customer read is the aggregate's
    floor already; only the compression and the fits are timed here.

    The previous count, kept for comparison: it counts transactions where the product counts
    purchase days, scores one horizon and writes four columns without the risk index.
    prediction_floors.predictions_floor_honest is the floor the ratios use."""
    table = Purchase._meta.db_table
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT count(*), sum(amount), min(purchased_at), max(purchased_at) FROM {table} "
            "GROUP BY customer_id"
        )
        rows = cur.fetchall()
    frame = pd.DataFrame(rows, columns=["n", "total", "first", "last"])
    first = pd.to_datetime(frame["first"], utc=True, format="ISO8601")
    last = pd.to_datetime(frame["last"], utc=True, format="ISO8601")
    now = last.max()
    started = time.perf_counter()
    x = frame["n"].to_numpy(float) - 1
    t_x = ((last - first).dt.total_seconds() / 86400 / 7).to_numpy().round(1)
    big_t = ((now - first).dt.total_seconds() / 86400 / 7).to_numpy().round(1)
    rows3, counts = np.unique(np.column_stack([x, t_x, big_t]), axis=0, return_counts=True)
    bg = minimize(
        bgnbd_negative_ll,
        np.zeros(4),
        args=(rows3[:, 0], rows3[:, 1], rows3[:, 2], counts),
        method="L-BFGS-B",
    )
    repeat = x > 0
    mean_value = (frame["total"].astype(float).to_numpy() / frame["n"].to_numpy())[repeat]
    pairs, pair_counts = np.unique(
        np.column_stack([x[repeat], mean_value.round(2)]), axis=0, return_counts=True
    )
    gg = minimize(
        gamma_gamma_negative_ll,
        np.zeros(3),
        args=(pairs[:, 0], np.maximum(pairs[:, 1], 0.01), pair_counts),
        method="L-BFGS-B",
    )
    fits = time.perf_counter() - started
    # Every customer's scores (chance still a customer, purchases in the next 13 weeks,
    # expected order value), then persisted: one row each, loaded into an empty table.
    r, alpha, a, b = np.exp(bg.x)
    p, q, v = np.exp(gg.x)
    old_err = np.seterr(all="ignore")  # a few extreme rows overflow: NaN, as in any scorer
    ratio = (alpha + big_t) / (alpha + t_x)
    p_alive = 1 / (1 + (x > 0) * (a / np.maximum(b + x - 1, 1e-12)) * ratio ** (r + x))
    horizon = 13.0
    z = horizon / (alpha + big_t + horizon)
    expected = (
        (a + b + x - 1)
        / (a - 1)
        * (
            1
            - ((alpha + big_t) / (alpha + big_t + horizon)) ** (r + x)
            * hyp2f1(r + x, b + x, a + b + x - 1, z)
        )
        * p_alive
    )
    mean_all = frame["total"].astype(float).to_numpy() / frame["n"].to_numpy()
    order_value = np.where(
        x > 0,
        (q - 1) / (p * x + q - 1) * (v * p / (q - 1)) + (p * x) / (p * x + q - 1) * mean_all,
        v * p / (q - 1),
    )
    np.seterr(**old_err)
    ids = np.arange(len(frame), dtype=np.int64)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "CREATE TABLE bench_floor_predictions (customer_id bigint PRIMARY KEY, "
            "p_alive double precision, expected double precision, order_value double precision)"
        )
        if connection.vendor == "postgresql":
            binary_copy_in(
                cur,
                "bench_floor_predictions",
                {
                    "id": (">i8", ids),
                    "p": (">f8", p_alive),
                    "e": (">f8", expected),
                    "v": (">f8", order_value),
                },
            )
        else:
            rows = zip(
                ids.tolist(), p_alive.tolist(), expected.tolist(), order_value.tolist(), strict=True
            )
            connection.connection.executemany(
                "INSERT INTO bench_floor_predictions VALUES (?, ?, ?, ?)", rows
            )
        transaction.set_rollback(True)
    seconds = time.perf_counter() - started
    # The product's own fits (from zeros, as a first run) on the same figures: when they
    # are faster than the textbook ones above, the floor counts them, as the silhouettes
    # do in sklearn_floor.
    product_started = time.perf_counter()
    clv.bgnbd_fit(x, t_x, big_t)
    clv.gamma_gamma_fit(x, mean_all)
    product_fits = time.perf_counter() - product_started
    return {
        "seconds": seconds - fits + min(fits, product_fits),
        "fits": min(fits, product_fits),
        "fits_textbook": fits,
        "fits_product": product_fits,
        "customers": len(frame),
        "distinct_rows": len(rows3),
        "converged": bool(bg.success and gg.success),
    }
