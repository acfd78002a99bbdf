"""Actionable rules on top of clustering: the business's rhythm, and the splits that keep new
customers and quiet big spenders out of groups they do not belong to. Pure (numpy)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# The business's rhythm (median days between a repeat customer's purchases) is rounded to
# one of these, so that words and rules built on it do not drift from one day to the next.
RHYTHM_BUCKETS = (7, 14, 30, 60, 90, 180, 365)
RHYTHM_DEFAULT = 90  # a shop with no repeat customer yet


def usual_gaps(recency_days: np.ndarray, tenure_days: np.ndarray, frequency: np.ndarray):
    """Each customer's mean days between purchases; NaN for one-time buyers."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(
            frequency >= 2, (tenure_days - recency_days) / np.maximum(frequency - 1, 1), np.nan
        )


def business_rhythm(gaps: np.ndarray, frequency: np.ndarray | None = None) -> int:
    """Median usual gap of the established customers (three purchases or more, else every
    repeat customer), as the nearest RHYTHM_BUCKETS (log scale).

    Two purchases a few days apart say little about a rhythm: in a shop where most customers
    are new, counting them set the rhythm to a week while regulars bought monthly."""
    known = gaps[np.isfinite(gaps)]
    if frequency is not None:
        established = gaps[np.isfinite(gaps) & (frequency >= 3)]
        known = established if len(established) else known
    if not len(known):
        return RHYTHM_DEFAULT
    median = max(float(np.median(known)), 1.0)
    return min(RHYTHM_BUCKETS, key=lambda b: abs(math.log(b / median)))


@dataclass
class Refinement:
    labels: np.ndarray
    k: int
    hints: dict[int, str]  # label -> "new" | "lapsing": what the split-off group is
    notes: list[str]


def _nearest_label(
    x: np.ndarray, labels: np.ndarray, rows: np.ndarray, allowed: list[int]
) -> np.ndarray:
    centres = np.stack([x[labels == c].mean(axis=0) for c in allowed])
    d = ((x[rows, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    return np.asarray(allowed, dtype=np.int64)[np.argmin(d, axis=1)]


def actionable_splits(
    x: np.ndarray,
    labels: np.ndarray,
    *,
    recency_days: np.ndarray,
    tenure_days: np.ndarray,
    frequency: np.ndarray,
    monetary_total: np.ndarray,
    new_days: float,
    silent_days: float,
    lapse_factor: float,
    lapse_spend_quantile: float,
    min_size: int,
) -> Refinement:
    """Two rules an owner acts on, applied after clustering, whatever k was chosen:

    * a top spender (at or above the ``lapse_spend_quantile`` of total spend) silent for
      more than ``lapse_factor`` times their own usual gap never stays in a cluster whose
      typical customer is active (bought within the business's rhythm): they leave it for a
      "lapsing" group (won back, not rewarded as a champion);
    * customers whose first purchase is within ``new_days`` never share a group with
      customers silent for more than ``silent_days``: where a group holds both, its new
      customers leave it for a "new" group (welcomed, not written off).

    A split-off group below ``min_size`` joins the nearest cluster that keeps the rule;
    the rule wins over the size floor when no such cluster exists.
    """
    labels = labels.copy()
    k = int(labels.max()) + 1 if len(labels) else 0
    hints: dict[int, str] = {}
    notes: list[str] = []
    # Lapsing top spenders first: one of them may be new, and the new-customer rule then
    # takes them on to the new group.
    gaps = usual_gaps(recency_days, tenure_days, frequency)
    rhythm = business_rhythm(gaps, frequency)
    active = [
        c
        for c in range(k)
        if (labels == c).any() and np.median(recency_days[labels == c]) <= rhythm
    ]
    top = monetary_total >= np.quantile(monetary_total, lapse_spend_quantile)
    with np.errstate(invalid="ignore"):
        lapsing = top & (recency_days > lapse_factor * gaps) & np.isin(labels, active)
    if lapsing.any():
        rows = np.flatnonzero(lapsing)
        rest = [c for c in range(k) if c not in active and (labels == c).any()]
        if len(rows) >= min_size or not rest:
            labels[rows] = k
            hints[k] = "lapsing"
            k += 1
            notes.append(
                f"{len(rows)} top spenders silent for over {lapse_factor:g} of their usual gaps "
                "split from active groups"
            )
        else:
            labels[rows] = _nearest_label(x, labels, rows, rest)
    new = tenure_days <= new_days
    silent = recency_days > silent_days
    mixed = [c for c in range(k) if (new & (labels == c)).any() and (silent & (labels == c)).any()]
    moving = new & np.isin(labels, mixed)
    if moving.any():
        clean = [
            c
            for c in range(k)
            if (labels[~moving] == c).any() and not (silent & (labels == c)).any()
        ]
        rows = np.flatnonzero(moving)
        # A lapsing top spender who is also new must not go back to an active group of
        # repeat buyers (the kind named as the best customers); a group of one- or
        # two-time buyers, such as the new customers, is fine.
        calm = [c for c in clean if c not in active or np.median(frequency[labels == c]) <= 2]
        if len(rows) >= min_size or not clean or (lapsing[rows].any() and not calm):
            labels[rows] = k
            hints[k] = "new"
            k += 1
            notes.append(f"{len(rows)} new customers split from groups with long-silent ones")
        else:
            labels[rows] = _nearest_label(x, labels, rows, clean)
            flagged = rows[lapsing[rows]]
            if len(flagged):
                labels[flagged] = _nearest_label(x, labels, flagged, calm)
    # Renumber 0..k-1 in case a cluster was emptied.
    present = np.flatnonzero(np.bincount(labels, minlength=k))
    remap = np.full(k, -1, dtype=np.int64)
    remap[present] = np.arange(len(present))
    return Refinement(
        labels=remap[labels],
        k=len(present),
        hints={int(remap[c]): h for c, h in hints.items() if remap[c] >= 0},
        notes=notes,
    )
