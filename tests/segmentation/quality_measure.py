"""Re-measure the segmentation choice: python -m tests.segmentation.quality_measure

Prints, per candidate configuration, the adjusted Rand index on planted behaviour groups
(skewed and equal sizes), how the demo data's behaviours are told apart, and the UCI
export's segments as of its last day. No database.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from segmentation.engine import EngineConfig, segment_customers
from tests.segmentation.realdata import BEHAVIOURS, demo_raw, planted_mix, shop_sizes, uci_raw

CANDIDATES = {
    "log1p + IQR scaling, today's k rule": EngineConfig(scaling="robust", refine=False),
    "log1p + standard scaling, today's k rule, no splits": EngineConfig(refine=False),
    "the same + actionable splits (default)": EngineConfig(),
}
MIXES = {
    "60/20/10/6/4 % of 2,000": shop_sizes(2_000),
    "1,400/300/160/100/40": dict(zip(BEHAVIOURS, (1_400, 300, 160, 100, 40), strict=True)),
    "400 each": dict.fromkeys(BEHAVIOURS, 400),
}


def main() -> None:
    demo, behaviour, names = demo_raw(3_000, seed=1)
    uci = uci_raw()
    for title, config in CANDIDATES.items():
        print(f"## {title}")
        for mix, sizes in MIXES.items():
            scores = []
            for seed in (0, 1, 2):
                frame, truth = planted_mix(sizes, seed=seed)
                result = segment_customers(frame, previous=[], config=config)
                scores.append(f"k={result.k} ARI {adjusted_rand_score(truth, result.labels):.2f}")
            print(f"  {mix}: {', '.join(scores)}")
        result = segment_customers(demo, previous=[], config=config)
        table = pd.crosstab(np.asarray(names)[behaviour], result.labels)
        homes = table.idxmax(axis=1)
        print(
            f"  demo: {result.k} segments; behaviours with a segment of their own: "
            f"{int((homes.map(homes.value_counts()) == 1).sum())} of {len(homes)}"
        )
        result = segment_customers(uci, previous=[], config=config)
        frame = uci.assign(label=result.labels)
        mixed = sum(
            ((frame.label == c) & (frame.tenure_days <= 30)).any()
            and ((frame.label == c) & (frame.recency_days > 180)).any()
            for c in range(result.k)
        )
        print(f"  UCI: {result.k} segments, {mixed} holding new and 180-day-silent customers")
        for s in sorted(result.segments, key=lambda s: -s.size):
            print(f"    {s.name} ({s.behaviour}): {s.size:,} ({s.size / len(uci):.0%}) {s.profile}")


if __name__ == "__main__":
    import os

    import django

    # The demo generator lives beside the Django models it writes.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    main()
