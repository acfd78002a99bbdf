"""Recluster customers now: enqueue a run, or with --sync run it in this process."""

import json
from datetime import date

from django.core.management.base import BaseCommand, CommandError

from segmentation import selectors, services
from segmentation.models import SegmentationRun

PREDICTION_KEYS = (
    "model",
    "time_unit",
    "r",
    "alpha",
    "a",
    "b",
    "log_likelihood",
    "gg_p",
    "gg_q",
    "gg_gamma",
    "customers",
    "status",
    "reason",
)


class Command(BaseCommand):
    help = "Recompute customer segments now (queued for a worker, or in-process with --sync)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--sync", action="store_true", help="Run here and now, and print a summary."
        )
        parser.add_argument(
            "--as-of",
            type=date.fromisoformat,
            default=None,
            metavar="YYYY-MM-DD",
            help="Segment and predict as of this day: only purchases and feedback up to and "
            "including it count.",
        )
        parser.add_argument(
            "--json", action="store_true", help="With --sync, print the run's summary as JSON."
        )

    def handle(self, *args, sync: bool = False, **options):
        as_json = options.get("json", False)
        if as_json and not sync:
            raise CommandError("--json needs --sync: a queued run has no summary yet.")
        # --sync runs here: no worker or broker is needed, so nothing is enqueued.
        run = services.segmentation_run_request(
            trigger=SegmentationRun.Trigger.COMMAND, enqueue=not sync, as_of=options.get("as_of")
        )
        if run.status == SegmentationRun.Status.SKIPPED:
            raise CommandError(run.error)
        if not sync:
            run.refresh_from_db()
            if run.status == SegmentationRun.Status.FAILED:
                raise CommandError(run.error)
            self.stdout.write(f"Run #{run.pk} queued; a worker will pick it up.")
            return
        run = services.segmentation_run_execute(
            run=run, progress=None if as_json else self._progress
        )
        if as_json:
            self.stdout.write(json.dumps(self._summary_data(run), indent=2))
        else:
            self.stdout.write("")
            self._summary(run)
        if run.status != SegmentationRun.Status.SUCCEEDED:
            raise CommandError(f"Run #{run.pk} {run.get_status_display().lower()}: {run.error}")

    def _progress(self, phase: str, percent: int) -> None:
        self.stdout.write(f"\r{percent:3d}% {phase:<40}", ending="")
        self.stdout.flush()

    def _summary(self, run: SegmentationRun) -> None:
        out = self.stdout.write
        out(f"Run #{run.pk}: {run.get_status_display()}")
        if run.status != SegmentationRun.Status.SUCCEEDED:
            return
        out(
            f"  {run.get_method_display()}, k={run.k}, confidence {run.confidence_note or '-'}, "
            f"{run.duration_seconds or 0:.1f} s"
        )
        out(
            f"  customers {run.n_customers}: clustered {run.n_clustered}, prospects "
            f"{run.n_prospects}, opted out {run.n_opted_out}, pinned {run.n_pinned}, "
            f"moved {run.n_moved}"
        )
        for warning in run.warnings:
            out(f"  Warning: {warning}")
        for segment in run.snapshots.select_related("segment").order_by("-size"):
            out(f"  {segment.size:>9}  {segment.segment.name}")
        for transition in selectors.segment_transitions(run=run)[:10]:
            out(f"  {transition}")
        timings = ", ".join(f"{k} {v:.2f}s" for k, v in run.timings.items())
        out(f"  timings: {timings}")

    def _summary_data(self, run: SegmentationRun) -> dict:
        segments = [
            {
                "name": s.segment.name,
                # What the segment's customers do (champions, at_risk, ...); special
                # segments (prospects, opted out) have their kind instead.
                "kind": s.segment.behaviour or s.segment.kind,
                "size": s.size,
            }
            for s in run.snapshots.select_related("segment").order_by("-size", "segment_id")
        ]
        warnings = list(run.warnings)
        if run.confidence == SegmentationRun.Confidence.LOW:
            warnings.append(f"Segments of low confidence: {run.confidence_note}")
        if run.predictions.get("reason"):
            warnings.append(f"Predictions not refreshed: {run.predictions['reason']}")
        if run.status != SegmentationRun.Status.SUCCEEDED:
            warnings.append(run.error)
        return {
            "run": run.pk,
            "status": run.status,
            "as_of": run.as_of.isoformat() if run.as_of else None,
            "method": run.method,
            "k": run.k,
            "candidates": run.candidates,
            "segments": segments,
            "warnings": warnings,
            "predictions": {k: run.predictions.get(k) for k in PREDICTION_KEYS},
        }
