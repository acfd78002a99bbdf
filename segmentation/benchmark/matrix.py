"""The feature matrix and fit parameters of a recluster, for the bare scikit-learn floor."""

import numpy as np
from django.utils import timezone

from segmentation import clustering, features, selectors
from segmentation.benchmark.floors import FitParams
from segmentation.engine import EngineConfig


def fit_params(run: dict) -> FitParams:
    """The k range, seed and sample size the run used (its params, else the engine's config)."""
    config = EngineConfig()
    params = run.get("params") or {}
    k_min, k_max = params.get("k_range") or (config.k_min, config.k_max)
    k_values = tuple(range(int(k_min), int(k_max) + 1))
    return FitParams(
        k_values=k_values,
        chosen_k=int(run.get("k") or k_values[0]),
        seed=int(params.get("seed", config.seed)),
        sample_size=int(params.get("sample_size", config.sample_size)),
        sample_n_init=clustering.SAMPLE_N_INIT,
        working_memory=clustering.WORKING_MEMORY_MB,
    )


def feature_matrix(run: dict) -> tuple[np.ndarray, FitParams]:
    """The scaled matrix the engine clusters (the project's own selector and preprocessing)
    and the fit parameters of `run`."""
    raw = selectors.customer_features(reference_time=timezone.now()).frame
    x = features.model_features(raw[selectors.FEATURE_COLUMNS]).model
    return np.ascontiguousarray(x, dtype=float), fit_params(run)
