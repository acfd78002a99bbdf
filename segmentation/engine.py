"""Customer segmentation engine: raw per-customer aggregates in, named explained segments out.

Pure (numpy, pandas, scikit-learn; no Django). The database side builds the raw frame and
writes the result; everything in between happens here, in this order: features ->
clustering -> names and profiles -> surrogate rules and reasons -> matching to the previous
run's segments.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from segmentation import clustering, explain, features, matching, naming, refine
from segmentation.features import RAW_COLUMNS, EngineRejected
from segmentation.matching import PreviousSegment
from segmentation.wording import distinctness_words, run_words

__all__ = [
    "RAW_COLUMNS",
    "EngineConfig",
    "EngineRejected",
    "EngineResult",
    "PreviousSegment",
    "SegmentResult",
    "distinctness_words",
    "run_words",
    "segment_customers",
]

METHODS = ("auto", "rfm", "kmeans", "minibatch", "agglomerative")
ENGINE_THREADS = 1


@dataclass(frozen=True)
class EngineConfig:
    k_min: int = 2
    k_max: int = 8
    seed: int = 42
    method: str = "auto"  # "auto" | "rfm" | "kmeans" | "minibatch" | "agglomerative"
    # Below 50 customers K-Means has too few points per cluster for k up to 8 (about 6 each)
    # to say anything stable, and silhouette on so few points swings with one customer;
    # quintile scores still mean something (10 customers per quintile at 50).
    small_threshold: int = 50
    sample_size: int = 10_000  # silhouette / k-selection sample
    # Fewer than 10 customers cannot fill five R/F/M quintiles with two customers each.
    min_customers: int = 10
    # Centroid distance above which a cluster is a new segment (see matching).
    match_threshold: float = matching.MATCH_THRESHOLD
    # "standard" (mean, standard deviation) or "robust" (median, IQR): see features.
    scaling: str = "standard"
    # Actionable splits after clustering (refine.actionable_splits) and their rules.
    refine: bool = True
    new_days: float = 30
    silent_days: float = 180
    lapse_factor: float = 3.0
    lapse_spend_quantile: float = 0.9
    # A run whose newest purchase is older than this many days carries a warning.
    stale_days: int = 90
    # The business's currency, written after every amount in the reasons and profiles.
    currency: str = ""


@dataclass
class SegmentResult:
    label: int
    segment_id: int | None
    name: str
    description: str
    profile: str
    profile_values: dict[str, float]
    rules: list[str]
    centroid: dict[str, float]
    size: int
    behaviour: str = ""


@dataclass
class EngineResult:
    customer_ids: np.ndarray
    labels: np.ndarray
    # Each customer's reason as a position in reason_table (a few dozen to a few hundred
    # sentences): a million customers share them, so they are numbered, not copied.
    reason_codes: np.ndarray
    reason_table: np.ndarray
    segments: list[SegmentResult]
    retired_segment_ids: list[int]
    method: str
    k: int
    silhouette: float | None
    davies_bouldin: float | None
    calinski_harabasz: float | None
    fidelity: float | None
    confidence: str
    confidence_note: str
    missing: dict[str, dict]
    params: dict = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    # Every candidate segmentation tried, with its scores; the chosen one is marked.
    candidates: list[dict] = field(default_factory=list)
    # Plain sentences for the owner about the data itself (e.g. how old the newest sale is).
    warnings: list[str] = field(default_factory=list)
    # The cleaned figures the customers were segmented on (features.plain_features), rows
    # sorted by customer id: the stored figures take them instead of cleaning again.
    plain: pd.DataFrame | None = None

    @property
    def reasons(self) -> np.ndarray:
        """Each customer's reason (an object array of sentences)."""
        return self.reason_table[self.reason_codes]


def _check_config(config: EngineConfig) -> None:
    if config.method not in METHODS:
        raise ValueError(f"unknown method {config.method!r}; choose one of {METHODS}")
    if config.k_min < 2 or config.k_max < config.k_min:
        raise ValueError(f"invalid k range {config.k_min}..{config.k_max}")
    if config.sample_size < 100:
        raise ValueError("sample_size must be at least 100")
    if config.scaling not in features.SCALINGS:
        raise ValueError(f"unknown scaling {config.scaling!r}; choose one of {features.SCALINGS}")


def confidence_of(
    n: int, silhouette: float | None, method: str, *, stale_days: int | None = None
) -> tuple[str, str]:
    """high: >= 500 customers and silhouette >= 0.5; medium: >= 50 and >= 0.25; else low.
    Stale data (``stale_days``: the newest purchase's age, when over the threshold) lowers
    the level to low whatever the figures. The note is for the owner (run_words)."""
    sil = silhouette if silhouette is not None else 0.0
    if n >= 500 and sil >= 0.5:
        level = "high"
    elif n >= 50 and sil >= 0.25:
        level = "medium"
    else:
        level = "low"
    if stale_days is not None:
        level = "low"
    note = " ".join(
        run_words(
            n_customers=n,
            silhouette=silhouette,
            confidence=level,
            scoring=method == "rfm",
            stale_days=stale_days,
        )
    )
    return level, note


def _rfm_reasons(
    plain: pd.DataFrame, labels: np.ndarray, names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Exact reasons for RFM scoring: the scores that place each customer in their group,
    as (sentences, each customer's position among them)."""
    r, _f, _m, fm = clustering.rfm_scores(
        plain["recency_days"].to_numpy(),
        plain["frequency"].to_numpy(),
        plain["monetary_total"].to_numpy(),
    )
    k = len(names)
    table = np.empty(6 * 6 * k, dtype=object)
    for rs in range(1, 6):
        for fs in range(1, 6):
            for label in range(k):
                table[(rs * 6 + fs) * k + label] = (
                    f"Because their recency score is {rs} of 5 and their "
                    f"frequency-and-spend score {fs} of 5."
                )
    return table, ((r * 6 + fm) * k + labels).astype(np.int64)


def segment_customers(
    raw: pd.DataFrame,
    *,
    previous: list[PreviousSegment],
    config: EngineConfig = EngineConfig(),
    progress: Callable[[str, int], None] | None = None,
    previous_thresholds: dict[str, list[float]] | None = None,
) -> EngineResult:
    """Segment the customers of ``raw`` (RAW_COLUMNS, one row per buying customer).

    Raises EngineRejected when the data fails a sanity check (too few customers, a single
    cluster, values that cannot be cleaned) and ValueError for a malformed frame or config.
    Same input in any row order gives the same result. ``previous_thresholds`` (the last
    run's params["tree_thresholds"]) keep the reasons' wording where the rules barely move.
    """
    _check_config(config)
    # One thread: on a 2-core machine shared with the web server and the database, OpenMP
    # and BLAS threads mostly wait on each other (measured 1-10x slower under load), and
    # the other core stays free for the pages.
    with threadpool_limits(limits=ENGINE_THREADS):
        return _segment_customers(
            raw,
            previous=previous,
            config=config,
            progress=progress,
            previous_thresholds=previous_thresholds,
        )


def _segment_customers(
    raw: pd.DataFrame,
    *,
    previous: list[PreviousSegment],
    config: EngineConfig,
    progress: Callable[[str, int], None] | None,
    previous_thresholds: dict[str, list[float]] | None = None,
) -> EngineResult:
    report = progress or (lambda phase, percent: None)
    timings: dict[str, float] = {}
    tick = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        timings[name] = round(now - tick, 4)
        tick = now

    report("preprocessing", 0)
    feats = features.model_features(raw, scaling=config.scaling)
    n = len(feats.customer_ids)
    if n < config.min_customers:
        raise EngineRejected(
            f"{n} customers with purchases; at least {config.min_customers} are needed"
        )
    if feats.spread.max() == 0:
        raise EngineRejected(
            f"all {n} customers have identical purchase figures; there is nothing to tell apart"
        )
    x = feats.model
    lap("preprocessing")

    method = config.method
    notes: list[str] = []
    if method == "auto":
        # K-Means at every size above the small threshold, never MiniBatch: its final
        # fit stops wherever its random batches leave it, so a customer on the edge of two
        # segments went back and forth from one night to the next. At 1,000,000 customers
        # and 1,000 buyers a day it moved 5,100-9,300 customers a night, up to 2,800 of
        # them back where they were two nights before; the exact (Lloyd) fit moved
        # 3,400-3,600, 3-12 of them back, for about 0.4 s more a run.
        method = "rfm" if n < config.small_threshold else "kmeans"
    if method == "agglomerative" and n > clustering.AGGLOMERATIVE_MAX:
        notes.append(
            f"agglomerative is limited to {clustering.AGGLOMERATIVE_MAX:,} customers; "
            "K-Means used instead"
        )
        method = "kmeans"

    report("k_selection", 10)
    sample = clustering.stable_sample(feats.customer_ids, config.sample_size, config.seed)
    plain = feats.plain
    split_rules = {
        "new_days": config.new_days,
        "silent_days": config.silent_days,
        "lapse_factor": config.lapse_factor,
        "lapse_spend_quantile": config.lapse_spend_quantile,
    }

    def split_count(rows: np.ndarray, sample_labels: np.ndarray) -> int:
        return refine.actionable_splits(
            x[rows],
            sample_labels,
            recency_days=plain["recency_days"].to_numpy()[rows],
            tenure_days=plain["tenure_days"].to_numpy()[rows],
            frequency=plain["frequency"].to_numpy()[rows],
            monetary_total=plain["monetary_total"].to_numpy()[rows],
            min_size=clustering.min_segment_size(len(rows)),
            **split_rules,
        ).k

    if method in ("kmeans", "minibatch"):
        choice = clustering.kmeans_k_choice(
            x,
            customer_ids=feats.customer_ids,
            k_min=config.k_min,
            k_max=config.k_max,
            seed=config.seed,
            sample_size=config.sample_size,
            previous_k=len(previous) or None,
            segments_of=split_count if config.refine else None,
        )
        lap("k_selection")
        report("fit", 45)
        result = clustering.kmeans_fit(x, choice, seed=config.seed, minibatch=method == "minibatch")
    elif method == "agglomerative":
        timings["k_selection"] = 0.0
        report("fit", 45)
        result = clustering.agglomerative_clustering(x, k_min=config.k_min, k_max=config.k_max)
    else:
        timings["k_selection"] = 0.0
        report("fit", 45)
        result = clustering.rfm_clustering(
            feats.plain["recency_days"].to_numpy(),
            feats.plain["frequency"].to_numpy(),
            feats.plain["monetary_total"].to_numpy(),
        )
    notes += result.notes
    labels, k, hints = result.labels, result.k, {}
    if config.refine and result.group_names is None:
        refined = refine.actionable_splits(
            x,
            result.labels,
            recency_days=plain["recency_days"].to_numpy(),
            tenure_days=plain["tenure_days"].to_numpy(),
            frequency=plain["frequency"].to_numpy(),
            monetary_total=plain["monetary_total"].to_numpy(),
            min_size=clustering.min_segment_size(n),
            **split_rules,
        )
        labels, k, hints = refined.labels, refined.k, refined.hints
        notes += refined.notes
    if k < 2:
        raise EngineRejected(
            f"a single cluster: the {n} customers do not split into distinguishable groups"
        )

    # Deterministic numbering: RFM groups in their fixed order, clusters by centroid.
    centroids = matching.cluster_centroids(feats.stable, labels, k)
    if result.group_names is None:
        order = matching.centroid_order(centroids, features.STABLE_COLUMNS)
        rank = np.empty(k, dtype=np.int64)
        rank[order] = np.arange(k)
        labels = rank[labels]
        hints = {int(rank[c]): h for c, h in hints.items()}
        centroids = centroids[order]
    # The smallest hashes among the sample's are the smallest of all: hashing the sample's
    # ids alone gives the same subset as hashing every customer's again.
    quality_rows = sample[
        clustering.stable_sample(feats.customer_ids[sample], clustering.QUALITY_SAMPLE, config.seed)
    ]
    silhouette, db, ch = clustering.quality_scores(x, labels, quality_rows)
    sizes = np.bincount(labels, minlength=k)
    lap("fit")

    report("naming_explanation", 70)
    frequency = feats.plain["frequency"].to_numpy()
    rhythm = refine.business_rhythm(
        refine.usual_gaps(
            feats.plain["recency_days"].to_numpy(), feats.plain["tenure_days"].to_numpy(), frequency
        ),
        frequency,
    )
    profiles = naming.segment_profiles(
        feats.plain,
        labels,
        k,
        kept=feats.kept,
        group_names=result.group_names,
        hints=hints,
        rhythm=rhythm,
        currency=config.currency,
    )
    names = [p.name for p in profiles]
    exact = _rfm_reasons(feats.plain, labels, names) if method == "rfm" else None
    explanation = explain.surrogate_explanation(
        feats.plain,
        labels,
        customer_ids=feats.customer_ids,
        kept=feats.kept,
        names=names,
        summaries=[explain.short_summary(p.profile_values) for p in profiles],
        seed=config.seed,
        exact_reasons=exact,
        previous_thresholds=previous_thresholds,
        currency=config.currency,
    )
    lap("naming_explanation")

    report("matching", 90)
    matched = matching.matched_segments(
        centroids, features.STABLE_COLUMNS, previous, threshold=config.match_threshold
    )
    segments = [
        SegmentResult(
            label=p.label,
            segment_id=matched.segment_ids[p.label],
            name=p.name,
            description=p.description,
            profile=p.profile,
            profile_values=p.profile_values,
            rules=explanation.rules[p.label],
            centroid=matching.centroid_dict(centroids[p.label], features.STABLE_COLUMNS),
            size=int(sizes[p.label]),
            behaviour=p.behaviour,
        )
        for p in profiles
    ]
    # Back to the caller's row order.
    out_labels = np.empty(n, dtype=np.int64)
    out_reasons = np.empty(n, dtype=np.int64)
    out_ids = np.empty(n, dtype=np.int64)
    out_labels[feats.order] = labels
    out_reasons[feats.order] = explanation.reason_codes
    out_ids[feats.order] = feats.customer_ids
    lap("matching")

    newest = float(feats.plain["recency_days"].min())
    stale = round(newest) if newest > config.stale_days else None
    warnings = []
    if stale is not None:
        warnings.append(
            f"The newest purchase is {stale:,} days old \u2014 segment as of that date? "
            "Measured from today, every customer looks lapsed."
        )
    level, note = confidence_of(n, silhouette, method, stale_days=stale)
    params = {
        "requested_method": config.method,
        "k_range": [config.k_min, config.k_max],
        "seed": config.seed,
        "sample_size": len(sample),
        "quality_sample_size": len(quality_rows),
        "small_threshold": config.small_threshold,
        "min_customers": config.min_customers,
        "min_segment_size": clustering.min_segment_size(n),
        "match_threshold": config.match_threshold,
        "silhouette_by_k": {str(kk): s for kk, s in result.silhouette_by_k.items()},
        "scaling": config.scaling,
        "refine": config.refine,
        "rhythm_days": rhythm,
        "split_rules": split_rules,
        "stale_days": config.stale_days,
        "sizes": {str(label): int(s) for label, s in enumerate(sizes)},
        "model_columns": feats.model_columns,
        "z_clip": features.Z_CLIP,
        "tree_columns": explanation.columns,
        "tree_thresholds": explanation.thresholds,
        "tree_sample": min(n, explain.TREE_SAMPLE),
        "tree_max_depth": explain.MAX_DEPTH,
        "match_distances": {
            str(label): d for label, d in enumerate(matched.distances) if d is not None
        },
        "cleaned": feats.cleaning,
        "notes": notes,
    }
    report("done", 100)
    return EngineResult(
        customer_ids=out_ids,
        labels=out_labels,
        reason_codes=out_reasons,
        reason_table=explanation.reason_table,
        segments=segments,
        retired_segment_ids=matched.retired_segment_ids,
        method=method if method != "minibatch" else result.method,
        k=k,
        silhouette=silhouette,
        davies_bouldin=db,
        calinski_harabasz=ch,
        fidelity=explanation.fidelity,
        confidence=level,
        confidence_note=note,
        missing=feats.missing,
        params=params,
        timings=timings,
        candidates=result.candidates,
        warnings=warnings,
        plain=feats.plain,
    )
