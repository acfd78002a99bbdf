"""What the run lifecycle and the label write share: their exceptions and JSON cleaning."""

import json

import numpy as np


class SegmentationCheckFailed(Exception):
    """The computed segmentation fails a sanity check; nothing is written."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class RunAlreadyFinished(Exception):
    """Another attempt of the same run finished it meanwhile (a redelivered task)."""


def jsonable(value):
    """Plain JSON types from numpy scalars/arrays and nested containers."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, set | tuple | range):
        return list(obj)
    return str(obj)
