"""Segmentation writes, by sub-domain: the run lifecycle (runs), the one-transaction label
write (label_write) and one customer's membership or one segment (memberships)."""

from segmentation.services.common import SegmentationCheckFailed
from segmentation.services.memberships import segment_pin, segment_unpin, segment_update
from segmentation.services.runs import (
    run_process_prepare,
    segmentation_run_execute,
    segmentation_run_request,
    segmentation_runs_recover_stale,
)
from segmentation.services.segment_records import SPECIAL_SEGMENTS

__all__ = [
    "SPECIAL_SEGMENTS",
    "SegmentationCheckFailed",
    "run_process_prepare",
    "segment_pin",
    "segment_unpin",
    "segment_update",
    "segmentation_run_execute",
    "segmentation_run_request",
    "segmentation_runs_recover_stale",
]
