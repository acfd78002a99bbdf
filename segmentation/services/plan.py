"""What a run hands from its computation to its write: the plan, and the stand-in numbers
used while labels are compared (named, so that none can be mistaken for another)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from segmentation import selectors

if TYPE_CHECKING:  # the engine loads scikit-learn; this module only describes its result
    from segmentation.engine import EngineConfig, EngineResult


class Label(IntEnum):
    """Labels of the customers the engine does not see (the engine's own labels are >= 0)."""

    PROSPECT = -1
    OPTED_OUT = -2
    ARCHIVED = -3  # archived customers leave every segment


class SegmentSlot(IntEnum):
    """Stand-ins for a segment id where a label's segment is compared (real ids are > 0).

    Each differs from every real id and from the others, so a comparison can never call two
    different situations "unchanged".
    """

    NONE = -1  # no segment at all: an archived customer
    NOT_YET_CREATED = -2  # a cluster this run creates: differs from every current segment
    NO_MEMBERSHIP = -3  # the customer has no membership row yet


# The reason number of a customer with no membership row (real numbers are >= 0).
NO_REASON = -1


@dataclass
class RunPlan:
    """Everything a run computed, ready to be written in one transaction."""

    raw: pd.DataFrame
    result: EngineResult
    pins: dict[int, int | None]
    config: EngineConfig


@dataclass(frozen=True)
class StagedLabels:
    """What staging learnt and the write needs: how many customers got each special label,
    the segment each unstaged label was expected to keep (checked before writing), every
    customer labelled (the only ones whose history or membership it may write), and the
    customers counted from the same read, whose ids (sorted) it keeps as ``seen``."""

    other_counts: dict[Label, int]
    counts: selectors.CustomerCounts
    expected_segments: dict[int, int]
    labelled: np.ndarray
    seen: np.ndarray
