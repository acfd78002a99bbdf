"""Synthetic customers, purchases and feedback written straight into the database.

PostgreSQL gets COPY (psycopg 3), SQLite one executemany per table in one transaction; no ORM
rows. The bench only ever writes to a database that is empty or that it created itself: it
marks its databases with a small table (bench_dataset) and refuses any other.
"""

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from django.apps import apps
from django.core.management import call_command
from django.db import connection, transaction

from crm.models import OVERDUE_FACTOR, OVERDUE_MIN_PURCHASES, Customer, Feedback, Purchase
from crm.search import customer_search_text

MARKER_TABLE = "bench_dataset"
BLOCK_CUSTOMERS = 100_000  # customers generated and written per block (bounds memory)
DAY = 86_400
HISTORY_DAYS = 730  # purchases spread over two years, never in the future


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST_NAMES = _words(
    "Ava Liam Emma Noah Olivia Lucas Mia Hugo Sofia Leo Chloe Louis Lina Jules Alice Adam Zoe "
    "Arthur Lea Gabriel Ines Raphael Jade Nathan Manon Tom Sarah Paul Clara Sam Nina Oscar Eva "
    "Victor Rose Martin Anna Felix Maya Elias"
)
LAST_NAMES = _words(
    "Smith Jones Martin Bernard Dubois Moreau Laurent Simon Michel Garcia Muller Schmidt "
    "Schneider Fischer Weber Meyer Wagner Becker Rossi Russo Ferrari Esposito Bianchi Romano "
    "Colombo Silva Santos Costa Pereira Oliveira Novak Kowalski Nowak Wisniewski Jansen Visser "
    "Smit Bakker Janssen Peeters Murphy Kelly Byrne Walsh Taylor Brown Wilson Evans Thomas Roberts"
)
CITIES = ("London", "Paris", "Berlin", "Madrid", "Rome", "Lisbon", "Dublin", "Amsterdam")
PRODUCTS = (
    ("Consultation", "Services"),
    ("Workshop", "Services"),
    ("Gift card", "Gifts"),
    ("Notebook", "Stationery"),
    ("Candle", "Home"),
    ("Coffee beans", "Food"),
    ("Tea set", "Home"),
    ("Subscription", "Services"),
)
CHANNELS = ("online", "in_person", "phone", "marketplace", "other")


# What the generated rows hold beyond the spec; data of another layout is generated again.
# 2: customers carry their search_text.
DATA_LAYOUT = 2


class BenchRefused(Exception):
    """The configured database holds data the bench did not create."""


@dataclass(frozen=True)
class DatasetSpec:
    customers: int
    purchases_per_customer: float
    seed: int

    def matches(self, marker: dict | None) -> bool:
        return bool(marker) and (
            marker.get("customers") == self.customers
            and float(marker.get("purchases_per_customer", -1)) == self.purchases_per_customer
            and marker.get("seed") == self.seed
            and marker.get("complete") is True
            and marker.get("layout") == DATA_LAYOUT
        )


# --- pure generation (numpy) -------------------------------------------------------------


def purchase_counts(rng: np.random.Generator, n: int, mean: float) -> np.ndarray:
    """Purchases per customer: ~5% prospects with none, about half of buyers buy once, a long
    Pareto tail of regulars; scaled so the total is round(n * mean) exactly."""
    total = round(n * mean)
    buyer = rng.random(n) >= 0.05
    if not buyer.any() and n:
        buyer[0] = True
    n_buyers = int(buyer.sum())
    if total < n_buyers:
        raise ValueError(
            f"--purchases-per-customer {mean} is too low: at least {n_buyers / n:.2f} is needed"
        )
    # Buyers: 1 + a heavy tail (Lomax, shape 1.3) on about half of them.
    extra = np.where(rng.random(n_buyers) < 0.5, 0.0, rng.pareto(1.3, n_buyers))
    extra = np.minimum(extra, np.quantile(extra, 0.9999) if n_buyers > 1 else extra)
    wanted = total - n_buyers
    counts_extra = np.zeros(n_buyers, dtype=np.int64)
    if wanted and extra.sum() > 0:
        scaled = extra * (wanted / extra.sum())
        counts_extra = np.floor(scaled).astype(np.int64)
        # Hand the rounding remainder to the largest fractional parts (exact total).
        remainder = wanted - int(counts_extra.sum())
        if remainder:
            order = np.argsort(-(scaled - counts_extra), kind="stable")[:remainder]
            counts_extra[order] += 1
    elif wanted:
        counts_extra += wanted // n_buyers
        counts_extra[: wanted % n_buyers] += 1
    counts = np.zeros(n, dtype=np.int64)
    counts[buyer] = 1 + counts_extra
    return counts


@dataclass
class Block:
    customers: pd.DataFrame
    purchases: pd.DataFrame
    feedback: pd.DataFrame


def synthetic_block(
    rng: np.random.Generator, *, first_id: int, counts: np.ndarray, now: int, next_purchase_id: int
) -> Block:
    """Customers first_id.. with counts[i] purchases each, feedback and denormalised stats.

    Times are epoch seconds (UTC); amounts are integer cents so sums are exact.
    """
    n = len(counts)
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    span = HISTORY_DAYS * DAY
    start = now - rng.integers(3600, span, n)  # first purchase
    # Active life: exponential, mean 300 days, cut at today.
    life = np.minimum(rng.exponential(300 * DAY, n).astype(np.int64), now - start)
    spend_level = rng.normal(3.6, 0.6, n)  # log scale of the customer's basket

    owner = np.repeat(np.arange(n), counts)
    m = len(owner)
    first_of_customer = np.zeros(m, dtype=bool)
    offsets = np.cumsum(counts) - counts
    first_of_customer[offsets[counts > 0]] = True
    at = start[owner] + (rng.random(m) * life[owner]).astype(np.int64)
    at[first_of_customer] = start[owner[first_of_customer]]
    cents = np.maximum(
        100, np.round(np.exp(rng.normal(spend_level[owner], 0.7)) * 100).astype(np.int64)
    )
    refund = (rng.random(m) < 0.03) & ~first_of_customer
    cents[refund] = np.maximum(100, cents[refund] // 2)
    product = rng.integers(0, len(PRODUCTS), m)
    channel = rng.integers(0, len(CHANNELS), m)

    purchases = pd.DataFrame(
        {
            "customer_id": ids[owner],
            "kind": np.where(refund, "refund", "sale"),
            "cents": cents,
            "at": at,
            "product": product,
            "channel": channel,
        }
    )
    # Rows arrive in time order, as a shop records them.
    purchases = purchases.sort_values("at", kind="stable").reset_index(drop=True)
    purchases.insert(0, "id", np.arange(next_purchase_id, next_purchase_id + m, dtype=np.int64))

    sales = purchases[purchases["kind"] == "sale"]
    signed = np.where(purchases["kind"] == "sale", purchases["cents"], -purchases["cents"])
    stats = pd.DataFrame(
        {
            "purchase_count": sales.groupby("customer_id").size(),
            "total_cents": pd.Series(signed).groupby(purchases["customer_id"].to_numpy()).sum(),
            "first_at": sales.groupby("customer_id")["at"].min(),
            "last_at": sales.groupby("customer_id")["at"].max(),
        }
    ).reindex(ids)

    known_age = rng.random(n) < 0.4
    known_income = rng.random(n) < 0.3
    first = rng.integers(0, len(FIRST_NAMES), n)
    last = rng.integers(0, len(LAST_NAMES), n)
    first_at = stats["first_at"].to_numpy(dtype=float)
    created = np.where(
        np.isnan(first_at),
        now - rng.integers(0, span, n),
        np.nan_to_num(first_at).astype(np.int64) - rng.integers(0, 30 * DAY, n),
    )
    customers = pd.DataFrame(
        {
            "id": ids,
            "first": first,
            "last": last,
            "age": np.where(known_age, np.clip(rng.normal(42, 13, n), 18, 90).round(), np.nan),
            "income": np.where(known_income, np.round(np.exp(rng.normal(10.6, 0.5, n)), 2), np.nan),
            "city": rng.integers(0, len(CITIES), n),
            "consent": rng.random(n) < 0.6,
            "opt_out": rng.random(n) < 0.01,
            "created": np.minimum(created, now),
            "purchase_count": stats["purchase_count"].fillna(0).astype(np.int64).to_numpy(),
            "total_cents": stats["total_cents"].fillna(0).astype(np.int64).to_numpy(),
            "first_at": stats["first_at"].to_numpy(dtype=float),
            "last_at": stats["last_at"].to_numpy(dtype=float),
        }
    )

    # Feedback: ~15% of buyers, one or two answers each, mostly happy.
    buyers = ids[counts > 0]
    givers = buyers[rng.random(len(buyers)) < 0.15]
    repeat = np.where(rng.random(len(givers)) < 0.3, 2, 1)
    fb_customer = np.repeat(givers, repeat)
    k = len(fb_customer)
    rating = rng.choice(np.arange(1, 6), size=k, p=[0.05, 0.07, 0.13, 0.35, 0.40])
    nps = np.clip(np.round(rating * 2 + rng.normal(0, 1.2, k)), 0, 10)
    has_nps = rng.random(k) < 0.7
    last_at = stats["last_at"].reindex(fb_customer).to_numpy(dtype=np.int64)
    feedback = pd.DataFrame(
        {
            "customer_id": fb_customer,
            "rating": rating,
            "nps": np.where(has_nps, nps, np.nan),
            "at": np.minimum(last_at + rng.integers(0, 5 * DAY, k), now),
        }
    )
    return Block(customers=customers, purchases=purchases, feedback=feedback)


# --- database -----------------------------------------------------------------------------


def _bench_tables() -> list[str]:
    models = list(apps.get_app_config("crm").get_models()) + list(
        apps.get_app_config("segmentation").get_models()
    )
    tables = [m._meta.db_table for m in models]
    for m in models:
        for f in m._meta.local_many_to_many:
            tables.append(f.remote_field.through._meta.db_table)
    return sorted(set(tables))


def dataset_marker() -> dict | None:
    """The bench's record of what it generated in this database, or None."""
    if MARKER_TABLE not in connection.introspection.table_names():
        return None
    with connection.cursor() as cur:
        cur.execute(f"SELECT spec FROM {MARKER_TABLE} ORDER BY id DESC LIMIT 1")
        row = cur.fetchone()
    return json.loads(row[0]) if row else {}


def database_guard() -> None:
    """Refuse unless this database is empty or was created by the bench."""
    marker = dataset_marker()
    if marker is not None and (
        not marker.get("complete") or Customer.objects.count() == marker.get("customers")
    ):
        return  # the bench's own data (or its interrupted generation)
    existing = set(connection.introspection.table_names())
    held = []
    for model in (Customer, Purchase, Feedback):
        if model._meta.db_table in existing and model.objects.exists():
            held.append(str(model._meta.verbose_name_plural))
    if held:
        name = connection.settings_dict["NAME"]
        raise BenchRefused(
            f"the database {name!r} already holds {', '.join(held)} that the bench did not "
            "create; the bench deletes and regenerates its data, so point it at an empty "
            "database (DATABASE_URL=postgres://.../crm_bench, or VAR_DIR=var/bench for SQLite)"
        )


def database_schema_ready() -> None:
    """Refuse foreign data, then bring the schema up to date (quietly): every benchmark
    starts here, so a new, empty database works too."""
    database_guard()
    call_command("migrate", verbosity=0, interactive=False)


def _marker_write(spec: dict) -> None:
    with connection.cursor() as cur:
        if MARKER_TABLE not in connection.introspection.table_names():
            cur.execute(f"CREATE TABLE {MARKER_TABLE} (id integer PRIMARY KEY, spec text NOT NULL)")
        cur.execute(f"DELETE FROM {MARKER_TABLE}")
        cur.execute(f"INSERT INTO {MARKER_TABLE} (id, spec) VALUES (1, %s)", [json.dumps(spec)])


def _wipe() -> None:
    tables = _bench_tables()
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        else:
            cur.execute("PRAGMA foreign_keys=OFF")
            try:
                with transaction.atomic():
                    for table in tables:
                        cur.execute(f"DELETE FROM {table}")
                    placeholders = ", ".join(["%s"] * len(tables))
                    cur.execute(
                        f"DELETE FROM sqlite_sequence WHERE name IN ({placeholders})", tables
                    )
            finally:
                cur.execute("PRAGMA foreign_keys=ON")


def _column_defaults(model, generated: set[str]) -> dict[str, object]:
    """Constant values for the model's columns the generator does not fill."""
    out = {}
    for field in model._meta.concrete_fields:
        if field.column in generated:
            continue
        value = field.get_default()
        out[field.column] = field.get_db_prep_save(value, connection)
    return out


def _iso(seconds: np.ndarray, *, sqlite: bool) -> np.ndarray:
    text = np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s")
    text = np.char.replace(text, "T", " ")
    return text if sqlite else np.char.add(text, "+00")


def _customer_rows(block: Block, *, sqlite: bool) -> pd.DataFrame:
    c = block.customers
    first = np.asarray(FIRST_NAMES, dtype=object)[c["first"]]
    last = np.asarray(LAST_NAMES, dtype=object)[c["last"]]
    ids = c["id"].to_numpy()
    first_at = c["first_at"].to_numpy()
    last_at = c["last_at"].to_numpy()
    has = ~np.isnan(first_at)

    def optional_time(values: np.ndarray, present: np.ndarray = has) -> np.ndarray:
        out = np.full(len(values), None, dtype=object)
        out[present] = _iso(values[present].astype(np.int64), sqlite=sqlite)
        return out

    # The same rule as crm.services.customer_overdue_from_refresh, for rows written directly.
    gaps = c["purchase_count"].to_numpy(np.int64) - 1
    span = np.where(has, last_at - first_at, 0.0)
    has_rhythm = has & (gaps >= OVERDUE_MIN_PURCHASES - 1) & (span >= gaps * 86400.0)
    overdue_at = np.where(has_rhythm, last_at + OVERDUE_FACTOR * span / np.maximum(gaps, 1), 0.0)

    created_text = _iso(c["created"].to_numpy(np.int64), sqlite=sqlite)
    names = first + " " + last
    emails = [
        f"{f.lower()}.{s.lower()}.{i}@example.com" for f, s, i in zip(first, last, ids, strict=True)
    ]
    phones = [f"+44 20 {i:08d}" for i in ids]
    return pd.DataFrame(
        {
            "id": ids,
            "name": names,
            "email": emails,
            "phone": phones,
            # What Customer.search_text_set writes, so that the search pages find people.
            "search_text": [
                customer_search_text(name=n, email=e, phone=p)
                for n, e, p in zip(names, emails, phones, strict=True)
            ],
            "external_source": "bench",
            "external_id": ids.astype(str),
            "age": c["age"].astype("Int64"),
            "annual_income": c["income"],
            "city": np.asarray(CITIES, dtype=object)[c["city"]],
            "country": "",
            "marketing_consent": c["consent"],
            "profiling_opt_out": c["opt_out"],
            "created_at": created_text,
            "updated_at": created_text,
            "purchase_count": c["purchase_count"],
            "total_spent": c["total_cents"] / 100,
            "first_purchase_at": optional_time(first_at),
            "last_purchase_at": optional_time(last_at),
            "overdue_from": optional_time(overdue_at, has_rhythm),
        }
    )


def _purchase_rows(block: Block, *, sqlite: bool) -> pd.DataFrame:
    p = block.purchases
    at = _iso(p["at"].to_numpy(np.int64), sqlite=sqlite)
    products = np.asarray([name for name, _ in PRODUCTS], dtype=object)
    categories = np.asarray([cat for _, cat in PRODUCTS], dtype=object)
    return pd.DataFrame(
        {
            "id": p["id"],
            "customer_id": p["customer_id"],
            "kind": p["kind"],
            "amount": p["cents"] / 100,
            "purchased_at": at,
            "product": products[p["product"]],
            "category": categories[p["product"]],
            "channel": np.asarray(CHANNELS, dtype=object)[p["channel"]],
            "created_at": at,
        }
    )


def _feedback_rows(block: Block, *, sqlite: bool, first_id: int) -> pd.DataFrame:
    f = block.feedback
    return pd.DataFrame(
        {
            "id": np.arange(first_id, first_id + len(f), dtype=np.int64),
            "customer_id": f["customer_id"],
            "rating": f["rating"].astype("Int64"),
            "nps": f["nps"].astype("Int64"),
            "source": "import",
            "created_at": _iso(f["at"].to_numpy(np.int64), sqlite=sqlite),
        }
    )


def _write(model, frame: pd.DataFrame) -> None:
    """Append frame's rows to model's table, filling the other columns with their defaults."""
    if frame.empty:
        return
    table = model._meta.db_table
    defaults = _column_defaults(model, set(frame.columns))
    frame = frame.assign(**defaults)
    columns = list(frame.columns)
    if connection.vendor == "postgresql":
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False, header=False, na_rep="\\N", float_format="%.2f")
        quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
        with connection.cursor() as cur:
            copy_sql = f"COPY {table} ({quoted}) FROM STDIN WITH (FORMAT csv, NULL '\\N')"
            with cur.cursor.copy(copy_sql) as copy:
                copy.write(buffer.getvalue())
        return
    values = frame.astype(object).where(frame.notna(), None)
    rows = list(values.itertuples(index=False, name=None))
    placeholders = ", ".join("?" * len(columns))
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"
    connection.ensure_connection()
    connection.connection.executemany(sql, rows)


def _finish_postgresql() -> None:
    with connection.cursor() as cur:
        for model in (Customer, Purchase, Feedback):
            table = model._meta.db_table
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"coalesce((SELECT max(id) FROM {table}), 1))"
            )
        # VACUUM sets the visibility map so the aggregate can use index-only scans.
        for model in (Customer, Purchase, Feedback):
            cur.execute(f"VACUUM (ANALYZE) {model._meta.db_table}")


def dataset_generate(
    spec: DatasetSpec, *, now: datetime | None = None, log: Callable[[str], None] = print
) -> dict:
    """Delete the bench's tables' rows and generate spec's customers, purchases and feedback."""
    database_guard()
    if spec.customers < 1:
        raise ValueError("--customers must be at least 1")
    if spec.purchases_per_customer <= 0:
        raise ValueError("--purchases-per-customer must be positive")
    started = time.perf_counter()
    now_s = int((now or datetime.now(UTC)).timestamp()) - 60
    rng = np.random.default_rng(spec.seed)
    counts = purchase_counts(rng, spec.customers, spec.purchases_per_customer)
    marker = {
        "customers": spec.customers,
        "purchases_per_customer": spec.purchases_per_customer,
        "seed": spec.seed,
        "layout": DATA_LAYOUT,
        "complete": False,
    }
    _marker_write(marker)
    _wipe()
    sqlite = connection.vendor == "sqlite"
    next_purchase, next_feedback, n_feedback = 1, 1, 0
    for first in range(0, spec.customers, BLOCK_CUSTOMERS):
        block = synthetic_block(
            rng,
            first_id=first + 1,
            counts=counts[first : first + BLOCK_CUSTOMERS],
            now=now_s,
            next_purchase_id=next_purchase,
        )
        with transaction.atomic():
            _write(Customer, _customer_rows(block, sqlite=sqlite))
            _write(Purchase, _purchase_rows(block, sqlite=sqlite))
            _write(Feedback, _feedback_rows(block, sqlite=sqlite, first_id=next_feedback))
        next_purchase += len(block.purchases)
        next_feedback += len(block.feedback)
        n_feedback += len(block.feedback)
        done = min(first + BLOCK_CUSTOMERS, spec.customers)
        log(f"  generated {done:,} / {spec.customers:,} customers")
    if sqlite:
        with connection.cursor() as cur:
            cur.execute("ANALYZE")
    else:
        _finish_postgresql()
    marker.update(
        complete=True,
        purchases=int(counts.sum()),
        feedback=n_feedback,
        buyers=int((counts > 0).sum()),
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - started, 2),
    )
    _marker_write(marker)
    return marker


def dataset_ensure(
    spec: DatasetSpec, *, reuse: bool, log: Callable[[str], None] = print
) -> tuple[dict, bool]:
    """The dataset for spec, reused when asked and already there; returns (marker, reused)."""
    database_guard()
    marker = dataset_marker()
    if reuse and spec.matches(marker):
        return marker, True
    return dataset_generate(spec, log=log), False
