"""Inside the run's write transaction: the Segment rows (created, updated, retired) and each
segment's precomputed size, revenue, shares and snapshot."""

from __future__ import annotations

import numpy as np
import pandas as pd
from django.utils import timezone

from crm.metrics import nps_value
from segmentation.models import Segment, SegmentationRun, SegmentSnapshot
from segmentation.palette import OPTED_OUT_COLOR, PROSPECTS_COLOR, SEGMENT_COLORS
from segmentation.services.common import jsonable
from segmentation.services.plan import Label, RunPlan, StagedLabels

SPECIAL_SEGMENTS = {
    Segment.Kind.PROSPECTS: {
        "name": "Prospects / no purchase yet",
        "description": "Customers who have not bought anything yet. Welcome them and make the "
        "first purchase easy.",
        "reason": "No purchase yet.",
        "color": PROSPECTS_COLOR,
    },
    Segment.Kind.OPTED_OUT: {
        "name": "Opted out of profiling",
        "description": "Customers who asked not to be profiled. They are never clustered.",
        "reason": "Opted out of profiling.",
        "color": OPTED_OUT_COLOR,
    },
}


def _unique_name(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate = f"{name} ({n})"
        n += 1
    taken.add(candidate)
    return candidate


def segments_apply(run: SegmentationRun, plan: RunPlan) -> dict[int, int | None]:
    """Create, update and retire Segment rows; return engine label -> segment id."""
    result = plan.result
    now = timezone.now()
    active = {s.pk: s for s in Segment.objects.select_for_update().filter(is_active=True)}
    specials: dict[str, Segment] = {}
    for seg in active.values():
        if seg.kind != Segment.Kind.CLUSTER and seg.kind not in specials:
            specials[seg.kind] = seg
    matched_ids = {
        sr.segment_id
        for sr in result.segments
        if sr.segment_id in active and active[sr.segment_id].kind == Segment.Kind.CLUSTER
    }
    retired = [
        s for s in active.values() if s.kind == Segment.Kind.CLUSTER and s.pk not in matched_ids
    ]
    for seg in retired:
        seg.is_active, seg.retired_at, seg.last_run = False, now, run
        seg.save(update_fields=["is_active", "retired_at", "last_run"])
    # Names: the owner's custom names and the special segments' names are taken first; a
    # proposed name that collides gets a number.
    taken = {s.name for s in specials.values()}
    taken |= {active[i].name for i in matched_ids if active[i].name_is_custom}
    for kind, spec in SPECIAL_SEGMENTS.items():
        if kind not in specials:
            specials[kind] = Segment.objects.create(
                kind=kind,
                name=_unique_name(spec["name"], taken),
                auto_name=spec["name"],
                description=spec["description"],
                auto_description=spec["description"],
                color=spec["color"],
                created_by_run=run,
                last_run=run,
            )
    # Park renamed matched segments on a placeholder first: two of them may swap names.
    for sid in matched_ids:
        seg = active[sid]
        if not seg.name_is_custom:
            Segment.objects.filter(pk=sid).update(name=f"~{sid}~")
    used_colors = {s.color for s in active.values() if s.pk in matched_ids and s.color}
    free_colors = [c for c in SEGMENT_COLORS if c not in used_colors]
    label_map: dict[int, int | None] = {}
    for sr in sorted(result.segments, key=lambda s: (-s.size, s.label)):
        seg = active[sr.segment_id] if sr.segment_id in matched_ids else None
        if seg is None:
            seg = Segment(kind=Segment.Kind.CLUSTER, created_by_run=run, created_at=now)
        if not seg.name_is_custom:
            seg.name = _unique_name(sr.name, taken)
        seg.auto_name = sr.name[:100]
        seg.behaviour = sr.behaviour
        seg.auto_description = sr.description
        if not seg.description_is_custom:
            seg.description = sr.description
        seg.profile = sr.profile
        seg.profile_values = jsonable(sr.profile_values)
        seg.rules = jsonable(list(sr.rules))
        seg.rules_text = "\n".join(sr.rules)
        seg.fidelity = result.fidelity
        seg.centroid = jsonable(sr.centroid)
        seg.last_run = run
        if not seg.color:
            fallback = SEGMENT_COLORS[sr.label % len(SEGMENT_COLORS)]
            seg.color = free_colors.pop(0) if free_colors else fallback
        seg.save()
        label_map[int(sr.label)] = seg.pk
    label_map[int(Label.PROSPECT)] = specials[Segment.Kind.PROSPECTS].pk
    label_map[int(Label.OPTED_OUT)] = specials[Segment.Kind.OPTED_OUT].pk
    label_map[int(Label.ARCHIVED)] = None
    return label_map


def segment_figures_write(
    run: SegmentationRun, plan: RunPlan, staged: StagedLabels, label_map: dict[int, int | None]
) -> None:
    """Precompute each segment's size, revenue and shares, and snapshot them for this run."""
    raw, result, pins = plan.raw, plan.result, plan.pins
    seg_of = pd.Series(np.asarray(result.labels, dtype=np.int64)).map(label_map)
    seg_of.index = raw.index
    ids = raw["customer_id"]
    if pins:
        pinned = ids.isin(pins.keys())
        seg_of[pinned] = ids[pinned].map(pins)
    frame = pd.DataFrame(
        {
            "segment_id": seg_of,
            "revenue": raw["monetary_total"],
            "rating_sum": raw["rating_mean"].fillna(0) * raw["rating_count"],
            "rating_count": raw["rating_count"],
            "promoters": raw["nps_promoters"],
            "detractors": raw["nps_detractors"],
            "nps_count": raw["nps_count"],
        }
    ).dropna(subset=["segment_id"])
    per = frame.groupby("segment_id").agg(
        size=("revenue", "size"),
        revenue=("revenue", "sum"),
        rating_sum=("rating_sum", "sum"),
        rating_count=("rating_count", "sum"),
        promoters=("promoters", "sum"),
        detractors=("detractors", "sum"),
        nps_count=("nps_count", "sum"),
    )
    sizes = {int(k): int(v) for k, v in per["size"].items()}
    # Customers outside the frame: prospects, opted out (pinned ones stay where they are).
    pinned_inside = set(ids[ids.isin(pins.keys())].tolist()) if pins else set()
    pinned_outside = {
        cid: sid for cid, sid in pins.items() if sid is not None and cid not in pinned_inside
    }
    for label, count in staged.other_counts.items():
        sid = label_map[int(label)]
        sizes[sid] = sizes.get(sid, 0) + count
    for sid in pinned_outside.values():
        sizes[sid] = sizes.get(sid, 0) + 1
    total_customers = max(1, staged.counts.total)
    total_revenue = float(per["revenue"].clip(lower=0).sum()) or 1.0
    snapshots = []
    segments = list(Segment.objects.filter(is_active=True) | Segment.objects.filter(pk__in=sizes))
    for seg in segments:
        size = sizes.get(seg.pk, 0)
        row = per.loc[seg.pk] if seg.pk in per.index else None
        revenue = float(row["revenue"]) if row is not None else 0.0
        seg.size = size
        seg.share_customers = size / total_customers
        seg.revenue = round(revenue, 2)
        seg.share_revenue = max(revenue, 0.0) / total_revenue
        if seg.is_active:
            rating = nps = None
            if row is not None and row["rating_count"] > 0:
                rating = float(row["rating_sum"] / row["rating_count"])
            if row is not None and row["nps_count"] > 0:
                nps = nps_value(
                    promoters=int(row["promoters"]),
                    detractors=int(row["detractors"]),
                    answers=int(row["nps_count"]),
                )
            snapshots.append(
                SegmentSnapshot(
                    run=run,
                    segment=seg,
                    size=size,
                    revenue=seg.revenue,
                    avg_rating=rating,
                    nps=nps,
                    profile_values=seg.profile_values,
                )
            )
    Segment.objects.bulk_update(
        segments, ["size", "share_customers", "revenue", "share_revenue"], batch_size=500
    )
    # Retired segments nobody is pinned to are empty now.
    Segment.objects.filter(is_active=False, size__gt=0).exclude(pk__in=sizes).update(
        size=0, share_customers=0, revenue=0, share_revenue=0
    )
    SegmentSnapshot.objects.bulk_create(snapshots)
