"""The import and export bench: a purchases file imported against the bare bulk load of the
same rows, and the customer export against a plain dump of the same table.

Each timed step runs in a child process (`bench_import --once <step>`) that reports its
own peak memory (VmHWM), so one step's garbage never counts against another.
"""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import connection, transaction

from crm.exports import csv_write, customer_rows
from crm.importers import purchases_import
from crm.models import Customer, Purchase
from segmentation.benchmark.generate import (
    FIRST_NAMES,
    LAST_NAMES,
    PRODUCTS,
    _finish_postgresql,
    _marker_write,
    _wipe,
    _write,
    database_schema_ready,
)
from segmentation.exports import CUSTOMER_EXPORT_PROVIDERS

RESULT_PREFIX = "BENCH_IMPORT_RESULT "
LINES_PER_ORDER = 1.5  # 1,000,000 lines: 667k orders
LINES_PER_CUSTOMER = 10  # 1,000,000 lines: 100k customers
KNOWN_SHARE = 0.9  # the rest of the file's customers are created by the import
FLOOR_TABLE = "bench_import_floor"
FILE_COLUMNS = (
    "customer_email",
    "customer_name",
    "order_id",
    "product",
    "category",
    "quantity",
    "unit_price",
    "purchased_at",
    "currency",
    "channel",
)


def peak_mb() -> float:
    """This process's peak resident memory (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _email(i: int) -> str:
    return f"buyer.{i}@example.com"


def purchases_file_write(path: Path, *, lines: int, seed: int = 1) -> dict:
    """A purchases CSV of `lines` lines, ~1.5 lines per order, ~10 lines per customer."""
    rng = np.random.default_rng(seed)
    orders = max(1, round(lines / LINES_PER_ORDER))
    customers = max(1, lines // LINES_PER_CUSTOMER)
    # Every order gets one line, the rest are spread at random: lines of one order adjacent.
    per_order = np.ones(orders, dtype=np.int64)
    np.add.at(per_order, rng.integers(0, orders, lines - orders), 1)
    order_of_line = np.repeat(np.arange(orders), per_order)
    order_customer = rng.integers(0, customers, orders)
    now = int(time.time()) - 86_400
    order_at = now - rng.integers(0, 730 * 86_400, orders)
    product = rng.integers(0, len(PRODUCTS), lines)
    frame = pd.DataFrame(
        {
            "customer_email": [_email(i) for i in order_customer[order_of_line]],
            "customer_name": np.asarray(FIRST_NAMES, dtype=object)[
                order_customer[order_of_line] % len(FIRST_NAMES)
            ]
            + " "
            + np.asarray(LAST_NAMES, dtype=object)[order_customer[order_of_line] % len(LAST_NAMES)],
            "order_id": np.char.add("B", order_of_line.astype(str)),
            "product": np.asarray([p for p, _ in PRODUCTS], dtype=object)[product],
            "category": np.asarray([c for _, c in PRODUCTS], dtype=object)[product],
            "quantity": rng.integers(1, 4, lines),
            "unit_price": (rng.integers(100, 20_000, lines) / 100).round(2),
            "purchased_at": np.char.replace(
                np.datetime_as_string(order_at[order_of_line].astype("datetime64[s]")), "T", " "
            ),
            "currency": "EUR",
            "channel": "online",
        },
        columns=FILE_COLUMNS,
    )
    frame.to_csv(path, index=False, float_format="%.2f")
    return {"lines": lines, "orders": orders, "customers": customers, "bytes": path.stat().st_size}


def database_prepare(*, customers: int, log: Callable[[str], None]) -> None:
    """Refuse a database the bench did not make; then empty it and store the known customers."""
    database_schema_ready()
    _marker_write({"purpose": "bench_import", "complete": False})
    _wipe()
    known = int(customers * KNOWN_SHARE)
    ids = np.arange(1, known + 1)
    stamp = "2024-01-01 00:00:00" + ("" if connection.vendor == "sqlite" else "+00")
    frame = pd.DataFrame(
        {
            "id": ids,
            "name": [f"Buyer {i}" for i in ids - 1],
            "email": [_email(i) for i in ids - 1],
            "search_text": [f"buyer {i} {_email(i)}" for i in ids - 1],
            "created_at": stamp,
            "updated_at": stamp,
        }
    )
    with transaction.atomic():
        _write(Customer, frame)
    if connection.vendor == "postgresql":
        _finish_postgresql()
    log(f"  {known:,} of the file's {customers:,} customers stored beforehand")


def _purchases_reset(known: int) -> None:
    """Back to the state before an import: no purchases, only the customers stored first."""
    with connection.cursor() as cur, transaction.atomic():
        cur.execute(f"DELETE FROM {Purchase._meta.db_table}")
        cur.execute(f"DELETE FROM {Customer._meta.db_table} WHERE id > %s", [known])


def _marker_complete() -> None:
    _marker_write(
        {"purpose": "bench_import", "complete": True, "customers": Customer.objects.count()}
    )


# --- the steps, each run in its own process ----------------------------------------------


def step_import(path: str) -> dict:
    started = time.perf_counter()
    report = purchases_import(source=path, create_customers=True, external_source="bench")
    seconds = time.perf_counter() - started
    if not report.written:
        raise RuntimeError("; ".join(report.summary() + [str(e) for e in report.errors[:5]]))
    return {
        "seconds": seconds,
        "peak_mb": peak_mb(),
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "customers_created": report.customers_created,
    }


def step_floor_load(path: str) -> dict:
    """The bare bulk load of the file's rows into a plain table (no checks, no grouping)."""
    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
        columns = ", ".join(f"{c} text" for c in FILE_COLUMNS)
        cur.execute(f"CREATE TABLE {FLOOR_TABLE} ({columns})")
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cur:
        if connection.vendor == "postgresql":
            with (
                open(path, "rb") as source,
                cur.cursor.copy(f"COPY {FLOOR_TABLE} FROM STDIN WITH (FORMAT csv, HEADER)") as copy,
            ):
                while block := source.read(1 << 20):
                    copy.write(block)
        else:
            with open(path, newline="", encoding="utf-8") as source:
                reader = csv.reader(source)
                next(reader)
                marks = ", ".join("?" * len(FILE_COLUMNS))
                sql = f"INSERT INTO {FLOOR_TABLE} VALUES ({marks})"
                while batch := [row for _, row in zip(range(10_000), reader, strict=False)]:
                    connection.connection.executemany(sql, batch)
    seconds = time.perf_counter() - started
    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE {FLOOR_TABLE}")
    return {"seconds": seconds, "peak_mb": peak_mb()}


def step_export(path: str) -> dict:
    """What `manage.py export_customers -o <path>` does."""
    started = time.perf_counter()
    with open(path, "w", newline="", encoding="utf-8") as out:
        count = csv_write(
            customer_rows(Customer.objects.all(), extra_columns=CUSTOMER_EXPORT_PROVIDERS), out
        )
    return {"seconds": time.perf_counter() - started, "peak_mb": peak_mb(), "customers": count}


def step_floor_dump(path: str) -> dict:
    """The customer table as CSV the cheapest way: COPY TO on PostgreSQL, a cursor on SQLite."""
    table = Customer._meta.db_table
    started = time.perf_counter()
    with open(path, "wb") as out, connection.cursor() as cur:
        if connection.vendor == "postgresql":
            with cur.cursor.copy(f"COPY {table} TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
                for block in copy:
                    out.write(block)
        else:
            text = io.TextIOWrapper(out, encoding="utf-8", newline="")
            writer = csv.writer(text)
            cur.execute(f"SELECT * FROM {table}")
            writer.writerow(c[0] for c in cur.description)
            while rows := cur.fetchmany(10_000):
                writer.writerows(rows)
            text.flush()
            text.detach()
    return {"seconds": time.perf_counter() - started, "peak_mb": peak_mb()}


STEPS = {
    "import": step_import,
    "floor_load": step_floor_load,
    "export": step_export,
    "floor_dump": step_floor_dump,
}


def step_run(step: str, path: str) -> dict:
    settings.DEBUG = False
    return STEPS[step](path)


def child_step(command: str, step: str, path: str, *, prefix: str) -> dict:
    """Run ``manage.py <command> --once <step> --file <path>`` in a child process (so its
    peak memory is its own) and return the result it printed after ``prefix``."""
    done = subprocess.run(
        [sys.executable, "manage.py", command, "--once", step, "--file", path],
        cwd=settings.BASE_DIR,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith(prefix):
            return json.loads(line[len(prefix) :])
    raise RuntimeError(f"step {step} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")


def _child(step: str, path: str) -> dict:
    return child_step("bench_import", step, path, prefix=RESULT_PREFIX)


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def bench_import_run(
    *, lines: int, runs: int, workdir: Path, log: Callable[[str], None]
) -> list[str]:
    """Generate, time each step `runs` times (median), and return the printed summary."""
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / f"purchases-{lines}.csv"
    shape = purchases_file_write(source, lines=lines)
    log(
        f"file: {shape['lines']:,} lines, {shape['orders']:,} orders, "
        f"{shape['customers']:,} customers, {shape['bytes'] / 1e6:,.0f} MB"
    )
    database_prepare(customers=shape["customers"], log=log)
    known = int(shape["customers"] * KNOWN_SHARE)
    timed: dict[str, list[dict]] = {step: [] for step in STEPS}
    for run in range(runs):
        _purchases_reset(known)
        timed["import"].append(_child("import", str(source)))
        log(f"  import run {run + 1}: {timed['import'][-1]}")
        timed["floor_load"].append(_child("floor_load", str(source)))
        log(f"  floor load run {run + 1}: {timed['floor_load'][-1]}")
    _marker_complete()
    customers = Customer.objects.count()
    for run in range(runs):
        timed["export"].append(_child("export", str(workdir / "customers.csv")))
        log(f"  export run {run + 1}: {timed['export'][-1]}")
        timed["floor_dump"].append(_child("floor_dump", str(workdir / "customers-floor.csv")))
        log(f"  dump run {run + 1}: {timed['floor_dump'][-1]}")
    imported = _median(timed["import"], "seconds")
    loaded = _median(timed["floor_load"], "seconds")
    exported = _median(timed["export"], "seconds")
    dumped = _median(timed["floor_dump"], "seconds")
    return [
        f"database: {connection.vendor}; medians of {runs} run(s)",
        f"purchases import: {lines:,} lines ({shape['orders']:,} orders, "
        f"{shape['customers']:,} customers) in {imported:.1f} s = {lines / imported:,.0f} "
        f"lines/s, peak {max(r['peak_mb'] for r in timed['import']):,.0f} MB",
        f"  floor (bare bulk load of the same rows): {loaded:.1f} s = {lines / loaded:,.0f} "
        f"lines/s, peak {max(r['peak_mb'] for r in timed['floor_load']):,.0f} MB; "
        f"import / floor = {imported / loaded:.1f}x",
        f"customer export: {customers:,} customers in {exported:.1f} s = "
        f"{customers / exported:,.0f} customers/s, "
        f"peak {max(r['peak_mb'] for r in timed['export']):,.0f} MB",
        f"  floor (plain dump of the table): {dumped:.2f} s = {customers / dumped:,.0f} "
        f"customers/s; export / floor = {exported / dumped:.1f}x",
    ]
