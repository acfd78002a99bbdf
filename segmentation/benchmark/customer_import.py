"""The customers import bench: a customers file previewed, imported into an empty table and
imported again with changed names, each step timed in a child process that reports its own
peak memory and the longest time it held the write transaction (the lock staff edits wait on).
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from crm.importers import customers as customers_module
from crm.importers import customers_import
from crm.models import Customer
from segmentation.benchmark.generate import FIRST_NAMES, LAST_NAMES, _wipe, database_schema_ready
from segmentation.benchmark.imports import child_step, peak_mb

RESULT_PREFIX = "BENCH_CUSTOMER_IMPORT_RESULT "
STEPS = ("preview", "create", "update")
FILE_COLUMNS = (
    "email",
    "name",
    "phone",
    "external_id",
    "age",
    "annual_income",
    "city",
    "country",
    "tags",
    "marketing_consent",
    "created_at",
)


def customers_file_write(path: Path, *, rows: int, renamed: bool = False) -> None:
    """A customers file of `rows` rows; `renamed` gives every customer another name."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(FILE_COLUMNS)
        for i in range(rows):
            first = FIRST_NAMES[i % len(FIRST_NAMES)]
            last = LAST_NAMES[(i // len(FIRST_NAMES)) % len(LAST_NAMES)]
            writer.writerow(
                (
                    f"client.{i}@example.com",
                    f"{first} {last}{' Jr' if renamed else ''}",
                    f"+33 6 {i:08d}",
                    f"C-{i}",
                    str(18 + i % 60),
                    f"{20000 + (i * 37) % 90000}.50",
                    ("Lyon", "Paris", "Nantes", "Lille")[i % 4],
                    "France",
                    ("vip; newsletter", "newsletter", "", "wholesale")[i % 4],
                    ("yes", "no")[i % 2],
                    f"2024-{1 + i % 12:02d}-{1 + i % 28:02d} 10:00:00",
                )
            )


def step_run(step: str, file: str) -> dict:
    """One step in this process: the import's time, rows/s, peak memory, longest write."""
    writes: list[float] = []
    original = customers_module.import_write

    def timed_write(**kwargs):
        started = time.perf_counter()
        try:
            return original(**kwargs)
        finally:
            writes.append(time.perf_counter() - started)

    customers_module.import_write = timed_write
    started = time.perf_counter()
    report = customers_import(source=file, dry_run=step == "preview")
    seconds = time.perf_counter() - started
    if not report.ok:
        raise RuntimeError(f"the bench file was refused: {report.errors[:3]}")
    return {
        "step": step,
        "rows": report.rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(report.rows / seconds),
        "peak_mb": round(peak_mb(), 1),
        "longest_write_s": round(max(writes, default=0.0), 2),
        "created": report.created,
        "updated": report.updated,
    }


def _child(step: str, file: Path) -> dict:
    return child_step("bench_customer_import", step, str(file), prefix=RESULT_PREFIX)


def bench_customer_import_run(*, rows: int, workdir: Path, log) -> list[str]:
    database_schema_ready()
    _wipe()
    first, renamed = workdir / "customers.csv", workdir / "customers_renamed.csv"
    customers_file_write(first, rows=rows)
    customers_file_write(renamed, rows=rows, renamed=True)
    results = []
    for step, file in (("preview", first), ("create", first), ("update", renamed)):
        log(f"{step}: {file.name} ...")
        results.append(_child(step, file))
    stored = Customer.objects.count()
    _wipe()
    lines = [f"Customers import, {rows:,} rows, {stored:,} customers stored:"]
    for r in results:
        lines.append(
            f"  {r['step']:<8} {r['seconds']:>7.2f} s  {r['rows_per_s']:>8,} rows/s  "
            f"peak {r['peak_mb']:>7.1f} MB  longest write transaction {r['longest_write_s']:.2f} s"
        )
    return lines
