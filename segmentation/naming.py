"""Cluster profiles -> unique human names, plain-language profiles and advice. Pure.

A segment is named from where its typical customer (the segment median) sits among all
customers: percentile scores 1..5 for recency, frequency and spend place it on the same
R x FM grid that RFM scoring uses, and a few stronger patterns ("Unhappy high-value",
"Big spenders", "New customers") take precedence when they hold. Two segments that want the
same name are told apart by the dimension on which they differ most ("Loyal" and
"Loyal, lower spend"); the larger segment keeps the plain name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# crm.metrics is pure (no Django): the one home of the NPS thresholds.
from crm.metrics import NPS_DETRACTOR_MAX
from crm.money import NBSP

# Rows: recency score 5 (bought most recently) .. 1; columns: combined frequency/monetary
# score 1..5. Every cell is named, so every customer gets exactly one group.
RFM_GRID = {
    5: ("New", "Potential loyalists", "Potential loyalists", "Champions", "Champions"),
    4: ("Promising", "Potential loyalists", "Potential loyalists", "Loyal", "Champions"),
    3: ("About to sleep", "About to sleep", "Need attention", "Loyal", "Loyal"),
    2: ("Hibernating", "Hibernating", "At risk", "At risk", "Can't lose them"),
    1: ("Lost", "Lost", "At risk", "Can't lose them", "Can't lose them"),
}


DESCRIPTIONS = {
    "Champions": (
        "Bought recently, buy often and spend the most.",
        "Reward them, ask for reviews and referrals, and offer early access to new products.",
    ),
    "Loyal": (
        "Buy regularly and spend well.",
        "Keep them close with loyalty perks, a personal thank-you and the occasional upsell.",
    ),
    "Potential loyalists": (
        "Recent customers who already bought more than once or spent a fair amount.",
        "Invite them to a loyalty programme or subscription and suggest related products.",
    ),
    "New": (
        "Made their first purchase recently.",
        "Welcome them, help them get value from it and suggest a natural second purchase.",
    ),
    "New customers": (
        "Started buying from you only recently.",
        "Welcome them, help them get value from it and suggest a natural second purchase.",
    ),
    "Promising": (
        "Bought fairly recently but not much yet.",
        "Send useful content and a small incentive for a second purchase.",
    ),
    "Need attention": (
        "Middling on recency, frequency and spend, and starting to slip.",
        "Reach out with a limited-time offer or a personal recommendation before they drift.",
    ),
    "About to sleep": (
        "Bought rarely and not for a while.",
        "Share popular products or a gentle discount to reconnect before they lapse.",
    ),
    "At risk": (
        "Used to buy often and spend well, but not for a long time.",
        "Send a personal win-back message with a meaningful offer and ask what changed.",
    ),
    "Can't lose them": (
        "Were among your best customers but have not come back for a long time.",
        "Write or call personally, win them back with your best offer and learn why they left.",
    ),
    "Hibernating": (
        "Bought little, rarely and long ago.",
        "Include them in low-cost general campaigns; do not spend much effort on them.",
    ),
    "Lost": (
        "The lowest recency, frequency and spend.",
        "Try one low-cost revival campaign; otherwise let them go.",
    ),
    "Big spenders": (
        "Spend a lot per order but do not buy often.",
        "Offer premium products and bundles, and remind them when it is time to reorder.",
    ),
    "Unhappy high-value": (
        "Spend a lot but rate you poorly.",
        "Contact them personally to put right what went wrong before they leave.",
    ),
}

# What each name means, stored on the segment so that pages never match on a name the owner
# may change (see Segment.Behaviour).
BEHAVIOUR_OF = {
    "Champions": "champions",
    "Loyal": "loyal",
    "Potential loyalists": "potential_loyalists",
    "New": "new",
    "New customers": "new",
    "Promising": "promising",
    "Need attention": "need_attention",
    "About to sleep": "about_to_sleep",
    "At risk": "at_risk",
    "Can't lose them": "cant_lose",
    "Hibernating": "hibernating",
    "Lost": "lost",
    "Big spenders": "big_spenders",
    "Unhappy high-value": "unhappy_high_value",
}
# Recency scores against the business's rhythm (the median days between a repeat customer's
# purchases): 5 within one rhythm, 4 within 1.5, 3 within two, 2 within four, else 1.
RHYTHM_MULTIPLES = (1, 1.5, 2, 4)

# Words that tell two segments apart: (dimension, word when higher, word when lower).
CONTRASTS = (
    ("monetary_total", "higher spend", "lower spend"),
    ("frequency", "more frequent", "less frequent"),
    ("recency", "more recent", "longer lapsed"),
    ("avg_order_value", "bigger baskets", "smaller baskets"),
    ("tenure_days", "longer-standing", "newer"),
    ("satisfaction", "happier", "less happy"),
)
# Share of a segment that must have given feedback before its satisfaction names it.
SATISFACTION_MIN_SHARE = 0.2
# How far (on a 0..1 satisfaction scale) below all customers "unhappy" must be.
UNHAPPY_MARGIN = 0.1


@dataclass
class SegmentProfile:
    label: int
    name: str
    base_name: str
    description: str
    profile: str
    profile_values: dict[str, float]
    size: int
    scores: dict[str, float]  # percentile (0..1) of the segment median among all customers
    behaviour: str = ""  # a Segment.Behaviour value (BEHAVIOUR_OF the base name)


def _score(pct: float) -> int:
    return int(min(5, 1 + np.floor(5 * pct)))


def _position(values: np.ndarray, value: float, *, higher_is_better: bool = True) -> float:
    """Where value sits among all customers, 0 (worst) .. 1 (best), with RFM scoring's tie
    rules: the middle of its tie, except that the worst value is 0 and the best is 1.

    Two counting passes instead of a sort: k segments x 5 columns stay linear."""
    below = int(np.count_nonzero(values < value))
    above = int(np.count_nonzero(values > value))
    n = len(values)
    if below == 0:
        pos = 0.0
    elif above == 0:
        pos = 1.0
    else:
        pos = (below + (n - above)) / 2 / n
    return pos if higher_is_better else 1.0 - pos


def number(x: float) -> str:
    """A plain-language number: 12, 4.6, 480, 12,500."""
    x = float(x)
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}".rstrip("0").rstrip(".")
    return f"{x:.2f}".rstrip("0").rstrip(".")


def times(x: float) -> str:
    if x == 1:
        return "once"
    if x == 2:
        return "twice"
    return f"{number(x)} times"


def days_ago(x: float) -> str:
    if x < 0.5:
        return "today"
    if round(x) == 1:
        return "1 day ago"
    return f"{x:.0f} days ago"


def _groups(labels: np.ndarray, k: int) -> list[np.ndarray]:
    order = np.argsort(labels, kind="stable")
    bounds = np.cumsum(np.bincount(labels, minlength=k))[:-1]
    return np.split(order, bounds)


def _nanmedian(values: np.ndarray) -> float:
    known = values[np.isfinite(values)]
    return float(np.median(known)) if len(known) else float("nan")


def segment_profiles(
    plain: pd.DataFrame,
    labels: np.ndarray,
    k: int,
    *,
    kept: list[str],
    group_names: list[str] | None = None,
    hints: dict[int, str] | None = None,
    rhythm: float | None = None,
    currency: str = "",
) -> list[SegmentProfile]:
    """One profile per label 0..k-1 with a unique name (RFM group names when given).
    Amounts in the profile text are followed by ``currency`` when given.

    ``hints`` name groups split off by rule (refine.actionable_splits): "new" or
    "lapsing". With ``rhythm`` (days), recency is scored against the business's own rhythm
    instead of against the other customers, so that "recent" means recent."""
    hints = hints or {}
    cols = {c: plain[c].to_numpy() for c in plain.columns}
    overall_spend = float(np.median(cols["monetary_total"])) if len(labels) else 0.0
    overall_frequency = float(np.median(cols["frequency"])) if len(labels) else 0.0
    overall_satisfaction = _satisfaction(
        {c: _nanmedian(cols[c]) if c in kept else float("nan") for c in ("rating_mean", "nps_mean")}
    )
    members = _groups(labels, k)
    drafts = []
    for label, idx in enumerate(members):
        med = {
            c: float(np.median(cols[c][idx]))
            for c in ("recency_days", "frequency", "monetary_total", "avg_order_value")
        }
        med["tenure_days"] = float(np.median(cols["tenure_days"][idx]))
        for c in ("rating_mean", "nps_mean", "age", "income"):
            med[c] = _nanmedian(cols[c][idx]) if c in kept else float("nan")
        rated = np.isfinite(cols["rating_mean"][idx]) | np.isfinite(cols["nps_mean"][idx])
        rated_share = float(rated.mean()) if len(idx) else 0.0
        pct = {
            "recency": _position(cols["recency_days"], med["recency_days"], higher_is_better=False),
            "frequency": _position(cols["frequency"], med["frequency"]),
            "monetary_total": _position(cols["monetary_total"], med["monetary_total"]),
            "avg_order_value": _position(cols["avg_order_value"], med["avg_order_value"]),
            "tenure_days": _position(cols["tenure_days"], med["tenure_days"]),
            "satisfaction": _satisfaction(med),
        }
        spend_ratio = med["monetary_total"] / overall_spend if overall_spend > 0 else float("nan")
        if group_names is not None:
            candidates = [group_names[label]]
        elif hints.get(label) == "new":
            candidates = ["New customers"]
        elif hints.get(label) == "lapsing":
            candidates = ["Can't lose them" if _score(pct["monetary_total"]) >= 4 else "At risk"]
        else:
            candidates = _name_candidates(
                pct, med, rated_share, overall_satisfaction, rhythm=rhythm
            )
        values = {key: round(v, 2) for key, v in med.items() if np.isfinite(v)}
        if np.isfinite(spend_ratio):
            values["spend_vs_median"] = round(spend_ratio, 2)
        values["feedback_share"] = round(rated_share, 2)
        drafts.append(
            {
                "label": label,
                "size": len(idx),
                "candidates": candidates,
                "pct": pct,
                "values": values,
                "profile": _profile_text(med, spend_ratio, currency),
                "what": profile_sentence(
                    recency_days=med["recency_days"],
                    frequency=med["frequency"],
                    overall_frequency=overall_frequency,
                    spend_ratio=spend_ratio,
                    rhythm=rhythm,
                ),
            }
        )
    names, bases = _unique_names(drafts)
    out = []
    for d in drafts:
        base = bases[d["label"]]
        # What they do comes from their numbers; only the advice comes with the name.
        _, todo = DESCRIPTIONS.get(base, ("", ""))
        what = d["what"]
        out.append(
            SegmentProfile(
                label=d["label"],
                name=names[d["label"]],
                base_name=base,
                description=f"{what} {todo}".strip(),
                profile=d["profile"],
                profile_values=d["values"],
                size=d["size"],
                scores={key: round(v, 4) for key, v in d["pct"].items() if np.isfinite(v)},
                behaviour=BEHAVIOUR_OF.get(base, ""),
            )
        )
    return out


def _satisfaction(med: dict[str, float]) -> float:
    """0..1 where known: the rating on 1-5 and NPS on 0-10, averaged."""
    parts = []
    if np.isfinite(med["rating_mean"]):
        parts.append((med["rating_mean"] - 1) / 4)
    if np.isfinite(med["nps_mean"]):
        parts.append(med["nps_mean"] / 10)
    return float(np.mean(parts)) if parts else float("nan")


def rhythm_recency_score(recency_days: float, rhythm: float) -> int:
    """5 within one business rhythm, 4 within 1.5, 3 within two, 2 within four, else 1."""
    for score, multiple in zip((5, 4, 3, 2), RHYTHM_MULTIPLES, strict=True):
        if recency_days <= multiple * rhythm:
            return score
    return 1


def _name_candidates(
    pct: dict[str, float],
    med: dict[str, float],
    rated_share: float,
    overall_satisfaction: float,
    *,
    rhythm: float | None = None,
) -> list[str]:
    r = (
        rhythm_recency_score(med["recency_days"], rhythm)
        if rhythm is not None
        else _score(pct["recency"])
    )
    f, m = _score(pct["frequency"]), _score(pct["monetary_total"])
    base = RFM_GRID[r][(f + m + 1) // 2 - 1]
    names = []
    unhappy = (np.isfinite(med["rating_mean"]) and med["rating_mean"] <= 2.5) or (
        np.isfinite(med["nps_mean"]) and med["nps_mean"] <= NPS_DETRACTOR_MAX
    )
    # Unhappy in absolute terms (rating <= 2.5 or NPS detractor) and less happy than the
    # typical customer, so that a business whose every customer rates 2 gets no such name.
    unhappy = (
        unhappy
        and np.isfinite(pct["satisfaction"])
        and (pct["satisfaction"] <= overall_satisfaction - UNHAPPY_MARGIN)
    )
    if m >= 4 and rated_share >= SATISFACTION_MIN_SHARE and unhappy:
        names.append("Unhappy high-value")
    if _score(pct["avg_order_value"]) == 5 and f <= 3 and r >= 3 and base != "Champions":
        names.append("Big spenders")
    # New against the business's rhythm when it is known (a shop where most customers are
    # new would otherwise never call its newest ones new), else against the other customers.
    is_new = med["tenure_days"] <= rhythm if rhythm is not None else _score(pct["tenure_days"]) == 1
    if is_new and r >= 4 and med["frequency"] <= 2:
        names.append("New customers")
    names.append(base)
    return names


def _unique_names(drafts: list[dict]) -> tuple[dict[int, str], dict[int, str]]:
    """First choices go to the largest segment wanting them; the others get a contrast word
    against that segment, then a number if still taken. Fully deterministic."""
    order = sorted(drafts, key=lambda d: (-d["size"], d["label"]))
    taken: dict[str, dict] = {}
    names: dict[int, str] = {}
    bases: dict[int, str] = {}
    waiting = []
    for d in order:
        name = next((c for c in d["candidates"] if c not in taken), None)
        if name is None:
            waiting.append(d)
            continue
        taken[name] = d
        names[d["label"]] = bases[d["label"]] = name
    for d in waiting:
        base = d["candidates"][-1]
        keeper = taken[base]
        diffs = []
        for i, (dim, higher, lower) in enumerate(CONTRASTS):
            a, b = d["pct"][dim], keeper["pct"][dim]
            if np.isfinite(a) and np.isfinite(b) and a != b:
                # Biggest difference first; on a tie, the order of CONTRASTS.
                diffs.append((-round(abs(a - b), 6), i, higher if a > b else lower))
        options = [f"{base}, {word}" for _, _, word in sorted(diffs)]
        options += [f"{base} {i}" for i in range(2, len(drafts) + 2)]
        name = next(o for o in options if o not in taken)
        taken[name] = d
        names[d["label"]] = name
        bases[d["label"]] = base
    return names, bases


# Words for how long ago, by upper bound in days: a reason keeps its words while the
# segment's typical customer ages by a day.
AGO_WORDS = (
    (7, "within the last week"),
    (30, "within the last month"),
    (90, "one to three months ago"),
    (180, "three to six months ago"),
    (365, "six to twelve months ago"),
    (730, "one to two years ago"),
)


def ago_words(days: float) -> str:
    """'within the last month', 'three to six months ago', ...: a stable bucket."""
    for bound, words in AGO_WORDS:
        if days <= bound:
            return words
    return "over two years ago"


def profile_sentence(
    *,
    recency_days: float,
    frequency: float,
    overall_frequency: float,
    spend_ratio: float,
    rhythm: float | None,
) -> str:
    """What a segment's typical customer does, in words that the numbers bear out: recency
    against the business's rhythm (median days between a regular's purchases), purchases
    against the typical customer's, spend against the median customer's."""
    parts = []
    if rhythm:
        ratio = recency_days / rhythm
        if ratio <= 1:
            parts.append(f"Bought recently (within the usual {rhythm:.0f} days between purchases)")
        elif ratio <= 2:
            parts.append(
                f"Last bought more than the usual {rhythm:.0f} days between purchases ago, "
                "but within twice that"
            )
        else:
            parts.append(
                f"Have not bought for {ratio:.0f} times the usual {rhythm:.0f} days between "
                "purchases"
            )
    else:
        parts.append(f"Last bought {ago_words(recency_days)}")
    often = f"bought {times(round(frequency))}"
    if frequency > overall_frequency:
        often += ", more often than the typical customer"
    elif frequency < overall_frequency:
        often += ", less often than the typical customer"
    parts.append(often)
    if np.isfinite(spend_ratio):
        if spend_ratio >= 1.05:
            parts.append(f"spend more than the median customer ({spend_ratio:.1f}\u00d7)")
        elif spend_ratio <= 0.95:
            parts.append(f"spend less than the median customer ({spend_ratio:.1f}\u00d7)")
        else:
            parts.append("spend about as much as the median customer")
    return "; ".join(parts) + "."


def _profile_text(med: dict[str, float], spend_ratio: float, currency: str = "") -> str:
    parts = [f"bought {times(med['frequency'])}, last {days_ago(med['recency_days'])}"]
    if np.isfinite(spend_ratio):
        parts.append(f"spends {spend_ratio:.1f}\u00d7 the median")
    extra = []
    if np.isfinite(med["rating_mean"]):
        extra.append(f"average rating {med['rating_mean']:.1f}")
    if np.isfinite(med["nps_mean"]):
        extra.append(f"NPS answer {number(med['nps_mean'])}")
    if np.isfinite(med["age"]):
        extra.append(f"typically aged {med['age']:.0f}")
    if np.isfinite(med["income"]):
        unit = f"{NBSP}{currency}" if currency else ""
        extra.append(f"income around {number(med['income'])}{unit}")
    text = "; ".join(parts)
    if extra:
        text += "; " + ", ".join(extra)
    return text
