"""Synthetic raw frames (the engine's input) for the pure segmentation tests."""

import numpy as np
import pandas as pd

from segmentation.features import RAW_COLUMNS

# name: (recency range, frequency range, average order range, extra tenure range)
PLANTED = {
    "champions": ((1, 15), (12, 20), (90, 140), (300, 600)),
    "lapsed": ((420, 700), (1, 1), (15, 30), (0, 0)),
    "new": ((1, 15), (1, 1), (30, 50), (0, 0)),
    "at_risk": ((200, 300), (3, 6), (40, 60), (300, 600)),
}


def planted_frame(per_group: int = 150, *, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Customers from four well separated behaviours; returns the frame and group numbers."""
    rng = np.random.default_rng(seed)
    parts, truth = [], []
    for g, (rec, freq, aov, extra) in enumerate(PLANTED.values()):
        n = per_group
        recency = rng.uniform(*rec, n)
        frequency = rng.integers(freq[0], freq[1] + 1, n)
        monetary = frequency * rng.uniform(*aov, n)
        tenure = recency + rng.uniform(*extra, n)
        parts.append(
            pd.DataFrame(
                {
                    "frequency": frequency,
                    "monetary_total": monetary,
                    "recency_days": recency,
                    "tenure_days": tenure,
                }
            )
        )
        truth.append(np.full(n, g))
    frame = pd.concat(parts, ignore_index=True)
    n = len(frame)
    rated = rng.random(n) < 0.3
    frame["rating_mean"] = np.where(rated, rng.integers(3, 6, n).astype(float), np.nan)
    frame["rating_count"] = rated.astype(int)
    frame["nps_mean"] = np.nan
    frame["nps_count"] = 0
    frame["age"] = np.where(rng.random(n) < 0.5, rng.integers(20, 70, n).astype(float), np.nan)
    frame["income"] = np.nan
    frame.insert(0, "customer_id", np.arange(1, n + 1, dtype=np.int64) * 7)
    return frame[RAW_COLUMNS], np.concatenate(truth)


def random_frame(n: int, *, seed: int = 0) -> pd.DataFrame:
    """Skewed, realistic-looking customers: most buy once, a few buy often."""
    rng = np.random.default_rng(seed)
    frequency = 1 + np.where(rng.random(n) < 0.5, 0, np.floor(rng.pareto(1.3, n) * 3)).astype(int)
    frequency = np.minimum(frequency, 500)
    aov = np.exp(rng.normal(3.6, 0.6, n))
    tenure = rng.uniform(1, 730, n)
    recency = tenure * np.where(frequency == 1, 1.0, rng.random(n))
    rated = rng.random(n) < 0.15
    npsd = rng.random(n) < 0.1
    return pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1, dtype=np.int64),
            "frequency": frequency,
            "monetary_total": frequency * aov,
            "recency_days": recency,
            "tenure_days": tenure,
            "rating_mean": np.where(rated, rng.uniform(1, 5, n).round(1), np.nan),
            "rating_count": rated.astype(int),
            "nps_mean": np.where(npsd, rng.integers(0, 11, n).astype(float), np.nan),
            "nps_count": npsd.astype(int),
            "age": np.where(rng.random(n) < 0.4, rng.normal(42, 13, n).clip(18, 90), np.nan),
            "income": np.where(rng.random(n) < 0.3, np.exp(rng.normal(10.6, 0.5, n)), np.nan),
        }
    )
