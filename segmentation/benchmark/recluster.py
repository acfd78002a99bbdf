"""Timed reclusters through the real service, each in its own process (like a worker)."""

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import psutil
from django.apps import apps
from django.conf import settings
from django.db import connection, transaction

from segmentation.models import SegmentationRun
from segmentation.services import run_process_prepare, segmentation_run_execute

PHASES = (
    "feature_query",
    "transfer",
    "preprocessing",
    "k_selection",
    "fit",
    "naming_explanation",
    "matching",
    "label_write",
    "history_write",
    "feature_write",
    "predictions",
)
RESULT_PREFIX = "BENCH-RESULT "


def segmentation_reset() -> None:
    """Forget every run, segment and label, as before the first run (bench databases only)."""
    models = list(apps.get_app_config("segmentation").get_models())
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            tables = ", ".join(m._meta.db_table for m in models)
            cur.execute(f"TRUNCATE {tables} CASCADE")
        else:
            with transaction.atomic():
                cur.execute("PRAGMA defer_foreign_keys=ON")
                for model in models:
                    cur.execute(f"DELETE FROM {model._meta.db_table}")


def tables_vacuum(*models) -> None:
    """VACUUM (ANALYZE) the tables of ``models`` on PostgreSQL, as autovacuum would after the
    bench's own bulk changes: a rolled-back floor that updated every membership leaves a
    million dead rows, which the next run's reads would wade through (1.4 million buffer
    hits for the staging read's million rows) where a server with autovacuum on has
    cleared them. Nothing to do on SQLite: a rollback leaves no dead rows there."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cur:
        for model in models:
            cur.execute(f"VACUUM (ANALYZE) {connection.ops.quote_name(model._meta.db_table)}")


def _peak_rss_kb() -> int:
    """This process's own peak memory. Linux's ru_maxrss is inherited across fork and exec,
    so a child started by the bench would report its parent's peak; VmHWM starts afresh."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def recluster_once() -> dict:
    """Run one recluster in this process through the service; its figures as a dict."""
    # Prepared as a worker prepares its process when it starts (segmentation.tasks), before
    # the run's clock starts.
    run_process_prepare()

    process = psutil.Process()
    rss_before = process.memory_info().rss
    run = SegmentationRun.objects.create(trigger=SegmentationRun.Trigger.COMMAND)
    started = time.perf_counter()
    segmentation_run_execute(run=run)
    wall = time.perf_counter() - started
    run.refresh_from_db()
    peak_kb = _peak_rss_kb()
    timings = {k: float(v) for k, v in (run.timings or {}).items() if isinstance(v, int | float)}
    return {
        "run_id": run.pk,
        "status": run.status,
        "error": run.error,
        "seconds": wall,
        "timings": timings,
        "phases_total": sum(timings.get(p, 0.0) for p in PHASES),
        "method": run.method,
        "k": run.k,
        "params": run.params,
        "n_customers": run.n_customers,
        "n_clustered": run.n_clustered,
        "n_moved": run.n_moved,
        "silhouette": run.silhouette,
        "confidence": run.confidence,
        "rss_after_imports_mb": rss_before / 2**20,
        "peak_rss_mb": peak_kb / 1024,
    }


def bench_command(*args: str) -> list[str]:
    return [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "bench", *args]


def database_url(name: str | None = None) -> str:
    """A DATABASE_URL for this connection's database (or another one on the same server)."""
    db = connection.settings_dict
    name = name or str(db["NAME"])
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(name).resolve()}"
    if connection.vendor != "postgresql":
        raise RuntimeError(f"the bench supports PostgreSQL and SQLite, not {connection.vendor}")
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or "localhost"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{quote(name, safe='')}"


def bench_env(**overrides: str) -> dict[str, str]:
    """Environment for a child process: the same database as this one unless overridden
    (never whatever the shell's DATABASE_URL or VAR_DIR would pick), no DEBUG query log."""
    env = dict(os.environ)
    env["DEBUG"] = "0"
    env["DATABASE_URL"] = database_url()
    env.update(overrides)
    return env


def recluster_start(env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `manage.py bench --recluster-once` in a child process."""
    return subprocess.Popen(
        bench_command("--recluster-once"),
        env=env or bench_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def recluster_result(process: subprocess.Popen) -> dict:
    out, err = process.communicate()
    for line in out.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    raise RuntimeError(f"the recluster process failed (exit {process.returncode}):\n{err[-3000:]}")


def recluster_in_child(env: dict[str, str] | None = None) -> dict:
    return recluster_result(recluster_start(env))
