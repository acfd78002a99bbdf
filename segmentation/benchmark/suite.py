"""The whole benchmark: data, reclusters, floors, the naive pipeline, pages, ratios."""

import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dj_database_url
import numpy as np
from django.conf import settings
from django.db import connection

from segmentation.benchmark import daily, floors, matrix, naive, pages, prediction_floors
from segmentation.benchmark.generate import DatasetSpec, database_schema_ready, dataset_ensure
from segmentation.benchmark.pages import REQUESTS
from segmentation.benchmark.recluster import (
    RESULT_PREFIX,
    bench_command,
    bench_env,
    database_url,
    recluster_in_child,
    recluster_once,
    recluster_result,
    recluster_start,
    segmentation_reset,
)
from segmentation.benchmark.report import database_version, machine_info
from segmentation.models import SegmentationRun

TARGET_FLOORS = 1.5  # the previous floors' target, kept for comparison
TARGET_DAILY = 1.5  # the nightly run over its honest floor
TARGET_COLD = 2.0  # a first run over its honest floor
TARGET_PEAK_GB = 1.5
TARGET_NAIVE = 20
TARGET_PAGES = 2.0
SMALL_CUSTOMERS = 1000


@dataclass(frozen=True)
class BenchOptions:
    spec: DatasetSpec
    reuse: bool = False
    runs: int = 3
    naive_subset: int = 2000
    pages: bool = True
    naive: bool = True
    requests: int = REQUESTS
    small_database_url: str | None = None
    small_customers: int = SMALL_CUSTOMERS
    daily: bool = True
    cold_cache: bool = False  # drops the OS page cache and restarts a local PostgreSQL


def small_database_url() -> str:
    """A sibling database for the 1k-customer page timings, created if missing."""
    name = connection.settings_dict["NAME"]
    if connection.vendor == "postgresql":
        name = f"{name}_1k"
        with connection.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cur.fetchone() is None:
                cur.execute(f"CREATE DATABASE {connection.ops.quote_name(name)}")
        return database_url(name)
    path = Path(name)
    return database_url(str(path.with_name(f"{path.stem}_1k{path.suffix or '.sqlite3'}")))


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _runs_summary(runs: list[dict]) -> dict:
    ok = [r for r in runs if r["status"] == "succeeded"]
    phases = {}
    for r in ok:
        for phase, seconds in r["timings"].items():
            phases.setdefault(phase, []).append(seconds)
    return {
        "runs": runs,
        "median_seconds": _median([r["seconds"] for r in ok]),
        "median_timings": {p: statistics.median(v) for p, v in phases.items()},
        "peak_rss_mb": max((r["peak_rss_mb"] for r in runs), default=0.0),
        "failed": [r for r in runs if r["status"] != "succeeded"],
    }


def _ratio(value: float | None, target: float, *, at_most: bool) -> dict | None:
    if value is None:
        return None
    met = value <= target if at_most else value >= target
    return {"value": value, "target": f"{'<=' if at_most else '>='} {target}", "met": met}


def pages_during_recluster(urls: dict[str, list[str]], *, requests: int, log) -> dict:
    """Page latency while reclusters run in a child process (up to three back to back)."""
    samples: dict[str, list[float]] = {page: [] for page in urls}
    runs = []
    client = pages.staff_client()
    for _ in range(3):
        last = SegmentationRun.objects.order_by("-id").values_list("id", flat=True).first() or 0
        process = recluster_start()
        # Start timing once the run is really under way, not while the child imports.
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            if SegmentationRun.objects.filter(id__gt=last, status="running").exists():
                break
            time.sleep(0.05)
        got = pages.pages_measure_while(
            urls, lambda p=process: p.poll() is None, requests=requests, client=client
        )
        for page, values in got.items():
            samples[page].extend(values)
        runs.append(recluster_result(process))
        if min(len(v) for v in samples.values()) >= requests:
            break
        log(f"  {min(len(v) for v in samples.values())} requests per page so far; another run")
    return {
        "pages": {page: pages.latency_summary(values) for page, values in samples.items()},
        "reclusters": [{k: r[k] for k in ("seconds", "status", "n_moved")} for r in runs],
    }


def pages_small(options: BenchOptions, *, log) -> dict:
    """The page timings on a sibling database holding options.small_customers customers."""
    url = options.small_database_url or small_database_url()
    spec = options.spec
    args = [
        "--pages-only",
        "--customers",
        str(options.small_customers),
        "--purchases-per-customer",
        str(spec.purchases_per_customer),
        "--seed",
        str(spec.seed),
        "--requests",
        str(options.requests),
        "--reuse",
    ]
    name = dj_database_url.parse(url)["NAME"]
    log(f"pages at {options.small_customers:,} customers (database {name})")
    process = subprocess.Popen(
        bench_command(*args),
        env=bench_env(DATABASE_URL=url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return recluster_result(process)


def pages_only(options: BenchOptions, *, log) -> dict:
    """Ensure the dataset and a finished run, then time the pages (for the small database)."""
    database_schema_ready()
    dataset_ensure(options.spec, reuse=options.reuse, log=log)
    if not SegmentationRun.objects.filter(status="succeeded").exists():
        recluster_once()
    return pages.pages_measure(pages.page_urls(), requests=options.requests)


def paired_floor(
    case: str,
    run: dict,
    x: np.ndarray,
    *,
    label_write: dict | None = None,
    changed_ids: list[int] | None = None,
) -> dict | None:
    """The honest floor of `case` timed right after `run`, and the run over it. ``x`` is
    the engine's scaled feature matrix (the fits' floor clusters it); ``label_write`` the
    label_write_floor of the run's labels (warm and daily runs).

    The shared machine's speed drifts by a third within one bench run; a floor timed next
    to its run sees the machine as the run did, so their ratio moves with the code, not
    with the load. ``previous``: the floor as counted before it took in the stability fits
    and the predictions' purchase days, read, scores and index (timed in the same minutes,
    for comparison; nor did it count the scaling, the attributes and feedback read, or the
    read of the current labels). None when the run failed.
    """
    if run["status"] != "succeeded":
        return None
    parts, previous = {}, {}
    fits = floors.sklearn_floor(x, matrix.fit_params(run))
    parts["sklearn"], previous["sklearn"] = fits["seconds"], fits["seconds_without_stability"]
    # Every run scales its features before the fits.
    parts["scaling"] = floors.scaling_floor(x)["seconds"]
    if case == "cold":
        aggregate = floors.aggregate_floor_best_plan(repeat=1)["seconds"]
        previous["aggregate_best_plan"] = aggregate
        parts["label_load"] = previous["label_load"] = floors.label_load_floor()["seconds"]
        predictions = prediction_floors.predictions_floor_honest(
            case="cold", aggregate_seconds=aggregate
        )
        # One pass over the purchases gives the features' figures and the purchase days;
        # the attributes and the feedback are read besides.
        parts["purchases_read"] = predictions["parts"]["read"]
        parts["attributes"] = daily.attributes_floor()["seconds"]
    else:
        # The kept figures with the attributes in one read, and the feedback (previously
        # the figures alone).
        parts["feature_inputs"] = daily.feature_inputs_floor()["seconds"]
        previous["stored_figures"] = daily.stored_figures_floor()["seconds"]
        parts["label_write"] = previous["label_write"] = label_write["seconds"]
        # Which labels change is known only from the current ones.
        parts["labels_read"] = floors.current_labels_floor()["seconds"]
        if case == "daily":
            changed = daily.changed_aggregate_floor(changed_ids)["seconds"]
            parts["changed_aggregate"] = previous["changed_aggregate"] = changed
        predictions = prediction_floors.predictions_floor_honest(case=case, changed_ids=changed_ids)
        parts["purchase_days_kept"] = predictions["parts"]["read"]
    parts["predictions"] = predictions["seconds"] - predictions["parts"]["read"]
    previous["predictions"] = floors.predictions_floor()["seconds"]
    seconds, previous_seconds = sum(parts.values()), sum(previous.values())
    return {
        "seconds": seconds,
        "parts": parts,
        "ratio": run["seconds"] / seconds,
        "predictions": predictions,
        "previous": {
            "seconds": previous_seconds,
            "parts": previous,
            "ratio": run["seconds"] / previous_seconds,
        },
    }


def daily_case(options: BenchOptions, results: dict, x: np.ndarray, *, log) -> None:
    """One day of new purchases, then the nightly run; `runs` days. Then, when asked, one
    more day run with the caches emptied first. The added purchases are removed after."""
    spec = options.spec
    n = daily.daily_customers(spec.customers)
    log(f"recluster, daily ({n:,} customers bought since the last run), {options.runs} run(s)")
    runs, changed = [], []
    try:
        for day in range(options.runs):
            ids = daily.daily_purchases_add(total_customers=spec.customers, day=day, seed=spec.seed)
            before = floors.labels_read()
            runs.append(recluster_in_child())
            changed = ids
            label_write = floors.label_write_floor(before=before, after=floors.labels_read())
            results["floors"]["label_write_daily"] = label_write
            runs[-1]["honest_floor"] = paired_floor(
                "daily", runs[-1], x, label_write=label_write, changed_ids=ids
            )
            log(f"  run {day + 1}: {_run_line(runs[-1])}, {runs[-1]['n_moved']} moved")
        results["recluster"]["daily"] = {**_runs_summary(runs), "changed_customers": changed}
        if options.cold_cache:
            daily.daily_purchases_add(
                total_customers=spec.customers, day=options.runs, seed=spec.seed
            )
            dropped = daily.caches_drop()
            log(f"recluster, daily with cold caches ({dropped})")
            if dropped["dropped"]:
                run = recluster_in_child()
                results["recluster"]["cold_cache"] = {**_runs_summary([run]), **dropped}
                log(f"  {run['seconds']:.2f} s")
            else:
                results["recluster"]["cold_cache"] = {"runs": [], **dropped}
    finally:
        daily.daily_purchases_remove()


def _run_line(run: dict) -> str:
    line = f"{run['seconds']:.2f} s ({run['status']})"
    floor = run.get("honest_floor")
    if floor:
        line += f", honest floor next to it {floor['seconds']:.2f} s, ratio {floor['ratio']:.2f}"
    return line


def _paired_ratio(results: dict, case: str, *, previous: bool = False) -> float | None:
    """The median over the case's runs of each run over the floor timed next to it (or
    over the previous count of that floor)."""
    ratios = [
        (r["honest_floor"]["previous"] if previous else r["honest_floor"])["ratio"]
        for r in results["recluster"].get(case, {}).get("runs", [])
        if r.get("honest_floor")
    ]
    return _median(ratios)


def _honest_floors(f: dict, case: str) -> tuple[float, float]:
    """The honest floor of `case` from the floors timed after every run, and its previous
    count (no stability fits; predictions on transactions, one horizon, no read, no index;
    no scaling, attributes, feedback or read of the current labels)."""
    fits, fits_previous = f["sklearn"]["seconds"], f["sklearn"]["seconds_without_stability"]
    fits += f["scaling"]["seconds"]
    predictions_previous = f["predictions_previous"]["seconds"]
    if case == "cold":
        # A first run must read every purchase, the attributes and the feedback, fit, score
        # and keep every customer's predictions and purchase days, and persist every label.
        rest = f["label_load_cold"]["seconds"]
        return (
            f["predictions_cold"]["seconds"] + fits + f["attributes"]["seconds"] + rest,
            f["aggregate_best_plan"]["seconds"] + fits_previous + predictions_previous + rest,
        )
    # Later runs: the kept figures stand in for the aggregate and the purchase days; which
    # labels change is read from the current ones.
    rest = f[f"label_write_{case}"]["seconds"]
    if case == "daily":
        rest += f["changed_aggregate"]["seconds"]
    return (
        f[f"predictions_{case}"]["seconds"]
        + fits
        + f["feature_inputs"]["seconds"]
        + f["current_labels"]["seconds"]
        + rest,
        fits_previous + predictions_previous + f["stored_figures"]["seconds"] + rest,
    )


def _ratios_against_floors(results: dict, cases: tuple[str, ...]) -> None:
    """The runs over their honest floors (each timed next to its run; for comparison, also
    the floors timed once after every run and the floors' previous count), and over the
    first floors of all (aggregate, fits and label update)."""
    f = results["floors"]
    for case in cases:
        honest, previous = _honest_floors(f, case)
        f[f"honest_{case}"], f[f"honest_{case}_previous"] = honest, previous
        median = results["recluster"][case]["median_seconds"]
        target = TARGET_COLD if case == "cold" else TARGET_DAILY
        results["ratios"][f"{case}_over_honest_floor"] = _ratio(
            _paired_ratio(results, case), target, at_most=True
        )
        results["ratios"][f"{case}_over_honest_floor_timed_after"] = _ratio(
            median / honest if median else None, target, at_most=True
        )
        results["ratios"][f"{case}_over_honest_floor_previous"] = _ratio(
            _paired_ratio(results, case, previous=True), target, at_most=True
        )
        if case in ("cold", "warm"):
            f[f"sum_{case}"] = (
                f["aggregate"]["seconds"]
                + f["sklearn"]["seconds_without_stability"]
                + f[f"label_write_{case}"]["seconds"]
            )
            results["ratios"][f"end_to_end_over_floors_{case}_previous"] = _ratio(
                median / f[f"sum_{case}"] if median else None, TARGET_FLOORS, at_most=True
            )


def bench_run(options: BenchOptions, *, log: Callable[[str], None] = print) -> dict:
    """Run the whole benchmark on the configured (bench-owned) database; the results dict."""
    settings.DEBUG = False  # no query log: measure what production runs
    database_schema_ready()
    spec = options.spec
    log(f"dataset: {spec.customers:,} customers x {spec.purchases_per_customer} purchases")
    started = time.perf_counter()
    marker, reused = dataset_ensure(spec, reuse=options.reuse, log=log)
    log(f"  {'reused' if reused else 'generated'} in {time.perf_counter() - started:.1f} s")
    results: dict = {
        "machine": machine_info(),
        "database": {"vendor": connection.vendor, "version": database_version()},
        "dataset": {**marker, "reused": reused},
        "recluster": {},
        "floors": {},
        "ratios": {},
        "pages": {},
    }

    # The floors are timed after a warm-up read; so is the product's first run, which
    # would otherwise pay alone for bringing the purchases into memory after the data was
    # generated (the cold-cache case, --cold-cache, measures that on purpose).
    floors.purchases_warm_up()
    log(f"recluster, cold (no previous segments), {options.runs} run(s)")
    cold, x = [], None
    for i in range(options.runs):
        segmentation_reset()
        before_cold = floors.labels_read()
        cold.append(recluster_in_child())
        if x is None and cold[-1]["status"] == "succeeded":
            # The scaled features the fits' floor clusters: the same data for every case.
            x = matrix.feature_matrix(cold[-1])[0]
        if x is not None:
            cold[-1]["honest_floor"] = paired_floor("cold", cold[-1], x)
        log(f"  run {i + 1}: {_run_line(cold[-1])}")
    after_cold = floors.labels_read()
    results["recluster"]["cold"] = _runs_summary(cold)
    last = cold[-1]
    if last["status"] != "succeeded":
        raise RuntimeError(f"the recluster did not succeed: {last['status']} {last['error']}")

    log(f"recluster, warm (rerun on unchanged data), {options.runs} run(s)")
    warm = []
    for i in range(options.runs):
        before_warm = floors.labels_read()
        warm.append(recluster_in_child())
        after_warm = floors.labels_read()
        warm[-1]["honest_floor"] = paired_floor(
            "warm",
            warm[-1],
            x,
            label_write=floors.label_write_floor(before=before_warm, after=after_warm),
        )
        log(f"  run {i + 1}: {_run_line(warm[-1])}, {warm[-1]['n_moved']} moved")
    results["recluster"]["warm"] = _runs_summary(warm)

    if options.daily:
        daily_case(options, results, x, log=log)

    log("floors")
    results["floors"]["aggregate"] = floors.aggregate_floor()
    results["floors"]["aggregate_best_plan"] = floors.aggregate_floor_best_plan()
    results["floors"]["pull"] = floors.pull_floor()
    fit_params = matrix.fit_params(last)
    results["floors"]["sklearn"] = {
        **floors.sklearn_floor(x, fit_params),
        "rows": len(x),
        "columns": int(x.shape[1]),
        "params": fit_params.__dict__,
    }
    results["floors"]["predictions_previous"] = floors.predictions_floor()
    results["floors"]["predictions_cold"] = prediction_floors.predictions_floor_honest(
        case="cold", aggregate_seconds=results["floors"]["aggregate_best_plan"]["seconds"]
    )
    results["floors"]["predictions_warm"] = prediction_floors.predictions_floor_honest(case="warm")
    results["floors"]["label_write_cold"] = floors.label_write_floor(
        before=before_cold, after=after_cold
    )
    results["floors"]["label_load_cold"] = floors.label_load_floor()
    results["floors"]["label_write_warm"] = floors.label_write_floor(
        before=before_warm, after=after_warm
    )
    results["floors"]["stored_figures"] = daily.stored_figures_floor()
    results["floors"]["feature_inputs"] = daily.feature_inputs_floor()
    results["floors"]["attributes"] = daily.attributes_floor()
    results["floors"]["current_labels"] = floors.current_labels_floor()
    results["floors"]["scaling"] = floors.scaling_floor(x)
    cases = ("cold", "warm")
    if options.daily and "daily" in results["recluster"]:
        changed = results["recluster"]["daily"]["changed_customers"]
        results["floors"]["changed_aggregate"] = daily.changed_aggregate_floor(changed)
        results["floors"]["predictions_daily"] = prediction_floors.predictions_floor_honest(
            case="daily", changed_ids=changed
        )
        cases += ("daily",)
    _ratios_against_floors(results, cases)
    peak_mb = max(
        results["recluster"][case]["peak_rss_mb"]
        for case in ("cold", "warm", "daily")
        if case in results["recluster"]
    )
    results["ratios"]["peak_memory_gb"] = _ratio(peak_mb / 1024, TARGET_PEAK_GB, at_most=True)

    if options.naive:
        log(f"naive pipeline on {options.naive_subset:,} customers")
        results["naive"] = naive.naive_pipeline(
            subset=options.naive_subset, k_values=fit_params.k_values, seed=fit_params.seed
        )
        median = results["recluster"]["cold"]["median_seconds"]
        results["ratios"]["naive_over_end_to_end"] = _ratio(
            results["naive"]["scaled_seconds"] / median if median else None,
            TARGET_NAIVE,
            at_most=False,
        )

    if options.pages:
        log("pages")
        urls = pages.page_urls()
        big = pages.pages_measure(urls, requests=options.requests)
        results["pages"][f"{spec.customers}"] = big
        results["page_queries"] = pages.pages_queries(urls)
        log("pages while a recluster runs")
        during = pages_during_recluster(urls, requests=options.requests, log=log)
        results["pages"]["during_recluster"] = during["pages"]
        results["recluster"]["during_pages"] = during["reclusters"]
        small = pages_small(options, log=log)
        results["pages"][f"{options.small_customers}"] = small
        for page, figures in big.items():
            if page in small and small[page]["median"]:
                results["ratios"][
                    f"page_{page}_{spec.customers}_over_{options.small_customers}"
                ] = _ratio(figures["median"] / small[page]["median"], TARGET_PAGES, at_most=True)
            busy = during["pages"].get(page, {})
            if busy.get("median"):
                results["ratios"][f"page_{page}_during_recluster_over_idle"] = _ratio(
                    busy["median"] / figures["median"], TARGET_PAGES, at_most=True
                )
    results["ratios"] = {k: v for k, v in results["ratios"].items() if v is not None}
    return results


__all__ = ["RESULT_PREFIX", "BenchOptions", "bench_run", "pages_only"]
