"""Machine description, the printed tables and summary lines, and the JSON file."""

import json
import os
import platform
import sqlite3
import statistics
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import django
import numpy
import pandas
import psutil
import sklearn
from django.conf import settings
from django.db import connection

from segmentation.benchmark.recluster import PHASES


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def database_version() -> str:
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SHOW server_version")
            return f"PostgreSQL {cur.fetchone()[0]}"
    return f"SQLite {sqlite3.sqlite_version}"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info() -> dict:
    memory = psutil.virtual_memory()
    return {
        "cpu": _cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "memory_gb": round(memory.total / 2**30, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python": platform.python_version(),
        "database": database_version(),
        "sqlite_library": sqlite3.sqlite_version,
        "django": django.get_version(),
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "scikit_learn": sklearn.__version__,
        "commit": _git_commit(),
    }


def results_write(results: dict, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    vendor = results["database"]["vendor"]
    path = directory / f"{stamp}-{vendor}-{results['dataset']['customers']}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path


def phase_table(run: dict) -> list[str]:
    """The phases of one recluster with seconds and share of the end-to-end time."""
    total = run["seconds"] or 1e-9
    lines = [f"{'phase':<20}{'seconds':>10}{'share':>8}"]
    for phase in PHASES:
        seconds = run["timings"].get(phase)
        if seconds is None:
            lines.append(f"{phase:<20}{'-':>10}{'':>8}")
            continue
        lines.append(f"{phase:<20}{seconds:>10.3f}{seconds / total:>8.1%}")
    other = total - run["phases_total"]
    lines.append(f"{'(outside phases)':<20}{other:>10.3f}{other / total:>8.1%}")
    lines.append(f"{'end to end':<20}{total:>10.3f}{1:>8.0%}")
    lines.append(
        f"peak RSS {run['peak_rss_mb']:.0f} MB (after imports {run['rss_after_imports_mb']:.0f} MB)"
    )
    return lines


def _fmt_s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.3f} s"


def summary_lines(results: dict) -> list[str]:
    """One line per figure."""
    lines = []
    size = results["dataset"]
    label = f"{size['customers']:,} customers / {size.get('purchases', 0):,} purchases"
    lines.append(f"dataset: {label} on {results['database']['version']}")
    for case in ("cold", "warm", "daily", "cold_cache"):
        rec = results["recluster"].get(case)
        if not rec or not rec.get("runs"):
            continue
        lines.append(
            f"recluster {case}: median {_fmt_s(rec['median_seconds'])} of "
            f"{len(rec['runs'])} runs, peak RSS {rec['peak_rss_mb']:.0f} MB"
        )
        paired = [r["honest_floor"]["seconds"] for r in rec["runs"] if r.get("honest_floor")]
        if paired:
            lines.append(
                f"honest floor timed next to each {case} run: median "
                f"{_fmt_s(statistics.median(paired))} (ratio {case}_over_honest_floor below)"
            )
            previous = [
                r["honest_floor"]["previous"]["seconds"]
                for r in rec["runs"]
                if r.get("honest_floor")
            ]
            lines.append(
                f"  its previous count (no stability fits; predictions on transactions, no "
                f"read, no index; no scaling, attributes, feedback or read of the current "
                f"labels): median {_fmt_s(statistics.median(previous))}"
            )
    floors = results.get("floors", {})
    for name in (
        "aggregate",
        "aggregate_best_plan",
        "changed_aggregate",
        "stored_figures",
        "feature_inputs",
        "attributes",
        "current_labels",
        "scaling",
        "sklearn",
        "predictions_cold",
        "predictions_warm",
        "predictions_daily",
        "predictions_previous",
        "label_load_cold",
        "label_write_cold",
        "label_write_warm",
        "label_write_daily",
        "pull",
    ):
        if name in floors:
            lines.append(f"floor {name}: {_fmt_s(floors[name]['seconds'])}")
            parts = floors[name].get("parts")
            if parts:
                lines.append("  " + ", ".join(f"{k} {_fmt_s(v)}" for k, v in parts.items()))
    if "sklearn" in floors:
        lines.append(
            f"  of the fits: stability on halves {_fmt_s(floors['sklearn'].get('stability'))}; "
            f"without it {_fmt_s(floors['sklearn'].get('seconds_without_stability'))}"
        )
    for case in ("cold", "warm", "daily"):
        if f"honest_{case}" in floors:
            lines.append(
                f"honest floor, {case} run, timed after every run: "
                f"{_fmt_s(floors[f'honest_{case}'])} (previous count "
                f"{_fmt_s(floors.get(f'honest_{case}_previous'))})"
            )
    if "naive" in results:
        naive = results["naive"]
        lines.append(
            f"naive pipeline: {_fmt_s(naive['seconds'])} on {naive['customers']:,} customers, "
            f"scaled to {naive['scaled_to']:,}: {_fmt_s(naive['scaled_seconds'])}"
        )
    for name, ratio in results.get("ratios", {}).items():
        target = ratio.get("target")
        verdict = "" if target is None else (" ok" if ratio["met"] else " MISSED")
        lines.append(f"ratio {name}: {ratio['value']:.2f} (target {target}){verdict}")
    for scale, pages in results.get("pages", {}).items():
        for page, figures in pages.items():
            lines.append(
                f"page {page} at {scale}: median {_fmt_s(figures.get('median'))}, "
                f"p95 {_fmt_s(figures.get('p95'))} (n={figures.get('n')})"
            )
    for page, figures in results.get("page_queries", {}).items():
        slowest = figures["slowest"][0] if figures["slowest"] else None
        lines.append(
            f"page {page} queries: {figures['queries']} taking {_fmt_s(figures['query_seconds'])}"
            + (f"; slowest {_fmt_s(slowest['seconds'])}: {slowest['sql'][:120]}" if slowest else "")
        )
    return lines
