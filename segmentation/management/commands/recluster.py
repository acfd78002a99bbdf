"""Recluster customers now: enqueue a run, or with --sync run it in this process."""

from django.core.management.base import BaseCommand, CommandError

from segmentation import selectors, services
from segmentation.models import SegmentationRun


class Command(BaseCommand):
    help = "Recompute customer segments now (queued for a worker, or in-process with --sync)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--sync", action="store_true", help="Run here and now, and print a summary."
        )

    def handle(self, *args, sync: bool = False, **options):
        # --sync runs here: no worker or broker is needed, so nothing is enqueued.
        run = services.segmentation_run_request(
            trigger=SegmentationRun.Trigger.COMMAND, enqueue=not sync
        )
        if run.status == SegmentationRun.Status.SKIPPED:
            raise CommandError(run.error)
        if not sync:
            run.refresh_from_db()
            if run.status == SegmentationRun.Status.FAILED:
                raise CommandError(run.error)
            self.stdout.write(f"Run #{run.pk} queued; a worker will pick it up.")
            return
        run = services.segmentation_run_execute(run=run, progress=self._progress)
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
        for segment in run.snapshots.select_related("segment").order_by("-size"):
            out(f"  {segment.size:>9}  {segment.segment.name}")
        for transition in selectors.segment_transitions(run=run)[:10]:
            out(f"  {transition}")
        timings = ", ".join(f"{k} {v:.2f}s" for k, v in run.timings.items())
        out(f"  timings: {timings}")
