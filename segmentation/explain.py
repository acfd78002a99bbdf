"""Surrogate decision tree -> plain-unit rules per segment and one reason per customer. Pure.

A shallow tree (depth <= 3) is fitted to the segment labels on the unscaled features, so its
splits read in the owner's units ("last purchase ≤ 30 days ago and total spend > 480").
Unknown ratings, NPS answers, ages and incomes stay NaN: the tree sends them down one side
of a split, and the rule says so ("average rating ≤ 2.5 or no rating").

Reasons are built per (leaf, segment) pair, at most 8 x k strings, then handed out to
customers with one array lookup, so a million reasons cost milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier

from crm.money import NBSP
from segmentation.clustering import stable_sample
from segmentation.naming import ago_words, number

MAX_DEPTH = 3
DASH = "\u2013"  # en dash for ranges such as "bought 3-5 times"
# The tree is fitted on at most this many customers (a seeded, id-hashed sample); fidelity
# is still measured on everyone.
TREE_SAMPLE = 50_000
# Trees tried, each without the previous one's root column (see _best_tree).
TREE_CANDIDATES = 3
# Leaves smaller than this share of the fit sample are not worth a rule.
MIN_LEAF_SHARE = 0.002

TREE_COLUMNS = (
    "recency_days",
    "frequency",
    "monetary_total",
    "avg_order_value",
    "tenure_days",
    "rating_mean",
    "nps_mean",
    "age",
    "income",
)
OPTIONAL = ("rating_mean", "nps_mean", "age", "income")
UNKNOWN_WORD = {
    "rating_mean": "no rating",
    "nps_mean": "no NPS answer",
    "age": "age unknown",
    "income": "income unknown",
}

KNOWN_WORD = {
    "rating_mean": "has rated",
    "nps_mean": "has answered NPS",
    "age": "age known",
    "income": "income known",
}


@dataclass
class Explanation:
    fidelity: float
    rules: dict[int, list[str]]  # label -> rules (each one path of the tree, in plain units)
    reason_codes: np.ndarray  # per customer, the position of their reason in reason_table
    reason_table: np.ndarray  # object array of the sentences
    columns: list[str]  # features the tree could split on
    # column -> the tree's split values on it (after snapping), for the next run to keep
    thresholds: dict[str, list[float]] = field(default_factory=dict)

    @property
    def reasons(self) -> np.ndarray:
        """Each customer's sentence (an object array)."""
        return self.reason_table[self.reason_codes]


# Split thresholds are moved to the nearest of these round values before any rule or
# reason is written: a tree refitted a day later, when every recency has grown by one day,
# then says "≤ 30 days ago" again rather than "≤ 31 days ago", and a customer whose
# situation is unchanged keeps the same reason (the rules stay exact: customers are placed
# by the moved thresholds).
DAY_STEPS = (7, 14, 30, 60, 90, 180, 270, 365, 540, 730)
MONEY_STEPS = (1.0, 2.0, 2.5, 5.0)
# Agreement with the segments (share of the tree sample) that round thresholds may cost.
SNAP_FIDELITY_COST = 0.01


def stable_threshold(column: str, value: float) -> float:
    """A round value near a split threshold, in the column's own units (see DAY_STEPS)."""
    if not np.isfinite(value):
        return value
    if column in ("recency_days", "tenure_days"):
        if value > DAY_STEPS[-1]:
            return float(round(value / 365) * 365)
        return float(min(DAY_STEPS, key=lambda step: abs(step - value)))
    if column in ("monetary_total", "avg_order_value", "income"):
        if value <= 0:
            return 0.0
        scale = 10.0 ** math.floor(math.log10(value))
        options = [m * scale for m in MONEY_STEPS] + [10 * scale]
        return float(min(options, key=lambda option: abs(math.log(option / value))))
    if column in ("rating_mean", "nps_mean"):
        return float(round(value * 2) / 2)
    if column == "age":
        return float(round(value / 5) * 5)
    return value  # frequency: splits fall between whole purchases already


def finer_threshold(column: str, value: float) -> float:
    """A round value closer to a split than stable_threshold's, for when that one would cost
    too much agreement: whole weeks (tens of days from 60 on) for days, two significant
    figures (to the half) for
    money; still the same text when the tree's split moves by a little the next day."""
    if not np.isfinite(value) or value <= 0:
        return value
    if column in ("recency_days", "tenure_days"):
        if value < 60:
            return float(max(7, round(value / 7) * 7))
        return float(round(value / 10) * 10)
    if column in ("monetary_total", "avg_order_value", "income"):
        scale = 10.0 ** (math.floor(math.log10(value)) - 1)
        return float(round(value / scale * 2) / 2 * scale)
    return stable_threshold(column, value)


# How far the previous run's split on a column may be from today's to be kept instead of
# today's own round value: a tenth of the value, and at least the column's smallest step
# that reads differently: a week for days; one purchase for the number of purchases, whose
# splits fall between whole purchases (a tenth of 5.5 never reached the 6.5 of the day
# before, and the sentence of every customer on that side of the split changed: 622,000 of
# a million in one nightly run).
PREVIOUS_REACH = 0.1
PREVIOUS_REACH_AT_LEAST = {"recency_days": 7.0, "tenure_days": 7.0, "frequency": 1.0}


def _previous_nearby(column: str, value: float, previous: list[float]) -> list[float]:
    """The previous run's splits on ``column`` close to ``value``, nearest first."""
    if not np.isfinite(value):
        return []
    reach = max(abs(value) * PREVIOUS_REACH, PREVIOUS_REACH_AT_LEAST.get(column, 0.0))
    near = [float(p) for p in previous if np.isfinite(p) and abs(p - value) <= reach]
    return sorted(near, key=lambda p: abs(p - value))


def _thresholds_snap(
    tree: DecisionTreeClassifier,
    columns: list[str],
    xs: np.ndarray,
    ys: np.ndarray,
    previous: dict[str, list[float]] | None = None,
) -> None:
    """Move each split to the previous run's split on that column if one is near (the
    reasons of customers whose situation is unchanged then read the same, and a nightly
    run rewrites only the labels that really change), else to its round value
    (stable_threshold), else to a finer round value (finer_threshold), whichever first costs
    no more than SNAP_FIDELITY_COST of the sample's agreement with the segments; root first.
    A split that none fits keeps its value."""
    t = tree.tree_
    previous = previous or {}
    floor = float(np.mean(tree.predict(xs) == ys)) - SNAP_FIDELITY_COST
    for node in range(t.node_count):
        if t.children_left[node] == t.children_right[node]:
            continue
        before = float(t.threshold[node])
        column = columns[t.feature[node]]
        candidates = (
            *_previous_nearby(column, before, previous.get(column, [])),
            stable_threshold(column, before),
            finer_threshold(column, before),
        )
        for rounded in candidates:
            t.threshold[node] = rounded
            if float(np.mean(tree.predict(xs) == ys)) >= floor:
                break
        else:
            t.threshold[node] = before


def _days(t: float) -> str:
    return f"{t:.0f} days ago"


# The features that are amounts of money: their bounds are written with the currency.
MONEY_COLUMNS = frozenset({"monetary_total", "avg_order_value", "income"})


def condition_text(
    column: str, lo: float | None, hi: float | None, unknown_ok: bool, currency: str = ""
) -> str:
    """One feature's bounds lo < x ≤ hi in plain words; amounts of money followed by
    ``currency`` (when given): "average order > 145 EUR", "total spend 90 to 400 EUR"."""
    if column == "frequency":
        a = math.floor(lo) + 1 if lo is not None else None
        b = math.floor(hi) if hi is not None else None
        if a is not None and b is not None:
            text = f"bought {a}{DASH}{b} times" if a < b else f"bought {a} times"
        elif b is not None:
            text = "bought once" if b <= 1 else f"bought at most {b} times"
        else:
            text = f"bought {a} times or more"
    else:
        label, fmt = {
            "recency_days": ("last purchase", _days),
            "tenure_days": ("first purchase", _days),
            "monetary_total": ("total spend", number),
            "avg_order_value": ("average order", number),
            "rating_mean": ("average rating", number),
            "nps_mean": ("NPS answer", number),
            "age": ("aged", number),
            "income": ("income", number),
        }[column]
        unit = f"{NBSP}{currency}" if currency and column in MONEY_COLUMNS else ""
        if lo is not None and hi is not None:
            if fmt is _days:
                text = f"{label} {lo:.0f}{DASH}{hi:.0f} days ago"
            else:
                text = f"{label} {fmt(lo)}{DASH}{fmt(hi)}{unit}"
        elif hi is not None:
            text = f"{label} ≤ {fmt(hi)}{unit}"
        else:
            text = f"{label} > {fmt(lo)}{unit}"
    if unknown_ok:
        text += f" or {UNKNOWN_WORD[column]}"
    return text


def _uniform_class(tree: DecisionTreeClassifier) -> dict[int, int]:
    """node -> the majority class shared by every leaf below it, or -1 when they differ."""
    t = tree.tree_
    out: dict[int, int] = {}

    def visit(node: int) -> int:
        left, right = t.children_left[node], t.children_right[node]
        if left == right:
            out[node] = int(np.argmax(t.value[node, 0, :]))
        else:
            a, b = visit(left), visit(right)
            out[node] = a if a == b and a >= 0 else -1
        return out[node]

    visit(0)
    return out


def _leaves_under(tree: DecisionTreeClassifier, node: int) -> list[int]:
    t = tree.tree_
    left, right = t.children_left[node], t.children_right[node]
    if left == right:
        return [node]
    return _leaves_under(tree, left) + _leaves_under(tree, right)


def _leaf_paths(
    tree: DecisionTreeClassifier, columns: list[str], has_nan: set[str], currency: str = ""
) -> dict:
    """leaf node id -> rule text (conditions merged per feature, in tree order).

    A subtree whose leaves all predict the same segment reads as one rule: its split
    changes nothing, so it is left out of the text."""
    t = tree.tree_
    uniform = _uniform_class(tree)
    missing_left = getattr(t, "missing_go_to_left", None)
    out: dict[int, str] = {}
    stack: list[tuple[int, list[tuple[str, str, float, bool]]]] = [(0, [])]
    while stack:
        node, path = stack.pop()
        left, right = t.children_left[node], t.children_right[node]
        if left == right or uniform[node] >= 0:
            text = _merged(path, has_nan, currency)
            for leaf in _leaves_under(tree, node):
                out[leaf] = text
            continue
        col = columns[t.feature[node]]
        thr = float(t.threshold[node])
        nan_left = bool(missing_left[node]) if missing_left is not None else False
        if not np.isfinite(thr):
            # A split of known values (left) from unknown ones (right).
            stack.append((right, [*path, (col, "unknown", thr, True)]))
            stack.append((left, [*path, (col, "known", thr, False)]))
            continue
        stack.append((right, [*path, (col, ">", thr, not nan_left)]))
        stack.append((left, [*path, (col, "<=", thr, nan_left)]))
    return out


def _merged(path: list[tuple[str, str, float, bool]], has_nan: set[str], currency: str) -> str:
    if not path:
        return "every customer"
    bounds: dict[str, list] = {}
    for col, op, thr, nan_here in path:
        lo, hi, unknown_ok, state = bounds.get(col, [None, None, True, None])
        if op in ("known", "unknown"):
            state = op
        elif op == "<=":
            hi = thr if hi is None else min(hi, thr)
        else:
            lo = thr if lo is None else max(lo, thr)
        bounds[col] = [lo, hi, unknown_ok and nan_here and col in has_nan, state]
    parts = []
    for col, (lo, hi, unknown_ok, state) in bounds.items():
        if state == "unknown":
            parts.append(UNKNOWN_WORD[col])
        elif lo is None and hi is None:
            parts.append(KNOWN_WORD[col])
        else:
            parts.append(condition_text(col, lo, hi, unknown_ok and state is None, currency))
    return " and ".join(parts)


def _fit(x: np.ndarray, y: np.ndarray, seed: int, **kwargs) -> DecisionTreeClassifier:
    return DecisionTreeClassifier(
        max_depth=MAX_DEPTH,
        min_samples_leaf=max(1, round(MIN_LEAF_SHARE * len(x))),
        random_state=seed,
        **kwargs,
    ).fit(x, y)


def _best_tree(
    xs: np.ndarray, ys: np.ndarray, seed: int
) -> tuple[DecisionTreeClassifier, list[int]]:
    """The most faithful of a few shallow trees, and the columns it was given.

    A greedy tree can open with a proxy (days since the first purchase equals days since
    the last one for every one-time buyer) and then lack the depth to recover; refitting
    without the previous root's column, up to TREE_CANDIDATES times, finds the better tree.
    Ties keep the earlier tree, so the choice is deterministic."""
    used = list(range(xs.shape[1]))
    best: tuple[float, DecisionTreeClassifier, list[int]] | None = None
    for _ in range(TREE_CANDIDATES):
        tree = _fit(xs[:, used], ys, seed)
        score = float(np.mean(tree.predict(xs[:, used]) == ys))
        if best is None or score > best[0]:
            best = (score, tree, used)
        if score == 1.0 or tree.tree_.node_count == 1 or len(used) == 1:
            break
        root = used[tree.tree_.feature[0]]
        used = [j for j in used if j != root]
    return best[1], best[2]


def surrogate_explanation(
    plain: pd.DataFrame,
    labels: np.ndarray,
    *,
    customer_ids: np.ndarray,
    kept: list[str],
    names: list[str],
    summaries: list[str],
    seed: int,
    exact_reasons: tuple[np.ndarray, np.ndarray] | None = None,
    previous_thresholds: dict[str, list[float]] | None = None,
    currency: str = "",
) -> Explanation:
    """Fit the tree, write each segment's rules and each customer's reason.

    ``names[label]`` and ``summaries[label]`` (a short profile) phrase the reasons, amounts
    followed by ``currency`` when given.
    ``exact_reasons``, when given (RFM scoring, whose rules are exact: its sentences and each
    customer's position among them), replaces the tree-based reasons.
    ``previous_thresholds`` (the last run's Explanation.thresholds) are kept where today's
    splits fall near them.
    """
    k = len(names)
    columns = [c for c in TREE_COLUMNS if c not in OPTIONAL or c in kept]
    x = plain[columns].to_numpy(dtype=np.float32)
    sample = stable_sample(customer_ids, TREE_SAMPLE, seed)
    tree, used = _best_tree(x[sample], labels[sample], seed)
    columns = [columns[j] for j in used]
    _thresholds_snap(tree, columns, x[sample][:, used], labels[sample], previous_thresholds)
    x = x[:, used]
    xs, ys = x[sample], labels[sample]
    has_nan = {c for j, c in enumerate(columns) if np.isnan(xs[:, j]).any()}
    classes = tree.classes_
    leaf_of = tree.apply(x)
    predicted = classes[np.argmax(tree.tree_.value[leaf_of, 0, :], axis=1)]
    fidelity = float(np.mean(predicted == labels)) if len(labels) else 0.0

    paths = _leaf_paths(tree, columns, has_nan, currency)
    leaves = sorted(paths)
    majority = {leaf: int(classes[np.argmax(tree.tree_.value[leaf, 0, :])]) for leaf in leaves}
    rules: dict[int, list[str]] = {label: [] for label in range(k)}
    for leaf in leaves:
        if paths[leaf] not in rules[majority[leaf]]:
            rules[majority[leaf]].append(paths[leaf])

    # Reason table: one sentence per (leaf, label) pair.
    leaf_index = np.full(tree.tree_.node_count, -1, dtype=np.int64)
    leaf_index[leaves] = np.arange(len(leaves))
    table = np.empty(len(leaves) * k, dtype=object)
    for i, leaf in enumerate(leaves):
        rule, usual = paths[leaf], majority[leaf]
        for label in range(k):
            if label == usual:
                table[i * k + label] = f"Because {rule}."
            else:
                table[i * k + label] = (
                    f"Closest overall to this segment's typical customer "
                    f"({summaries[label]}), although {rule} is more usual in another segment."
                )
    codes = leaf_index[leaf_of] * k + labels

    # A segment no leaf speaks for gets its own one-against-the-rest tree.
    for label in range(k):
        if rules[label]:
            continue
        ovr = _fit(xs, (ys == label).astype(np.int64), seed, class_weight="balanced")
        if len(ovr.classes_) < 2:
            continue
        ovr_paths = _leaf_paths(ovr, columns, has_nan, currency)
        positive = [
            leaf for leaf in sorted(ovr_paths) if np.argmax(ovr.tree_.value[leaf, 0, :]) == 1
        ]
        rules[label] = list(dict.fromkeys(ovr_paths[leaf] for leaf in positive))
        members = np.flatnonzero(labels == label)
        if len(members) and positive:
            member_leaf = ovr.apply(x[members])
            sentences = np.empty(ovr.tree_.node_count, dtype=object)
            for leaf in positive:
                sentences[leaf] = f"Because {ovr_paths[leaf]}."
            good = np.isin(member_leaf, positive)
            codes[members[good]] = len(table) + member_leaf[good]
            table = np.concatenate([table, sentences])

    if exact_reasons is not None:
        table, codes = exact_reasons
    return Explanation(
        fidelity=fidelity,
        rules=rules,
        reason_codes=codes.astype(np.int64),
        reason_table=table,
        columns=columns,
        thresholds=_tree_thresholds(tree, columns),
    )


def _tree_thresholds(tree: DecisionTreeClassifier, columns: list[str]) -> dict[str, list[float]]:
    t = tree.tree_
    out: dict[str, list[float]] = {}
    for node in range(t.node_count):
        value = float(t.threshold[node])
        if t.children_left[node] != t.children_right[node] and np.isfinite(value):
            out.setdefault(columns[t.feature[node]], []).append(value)
    return {column: sorted(set(values)) for column, values in out.items()}


def short_summary(values: dict[str, float]) -> str:
    """'bought 9 times, last within the last month' from a segment's median values."""
    f = values.get("frequency", 0.0)
    freq = "once" if f == 1 else ("twice" if f == 2 else f"{number(round(f))} times")
    return f"bought {freq}, the last time {ago_words(values.get('recency_days', 0.0))}"
