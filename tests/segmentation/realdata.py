"""Raw frames (the engine's input) from the UCI export, the demo generator and planted mixes.

Pure pandas/numpy: no database. Used by the quality tests and by the measurement script
(``python -m tests.segmentation.quality_measure``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from segmentation.features import RAW_COLUMNS

UCI_FULL = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "online_retail_uci.csv.gz"
)
# The export's last day is 2011-12-09: segmented as of the next midnight.
UCI_AS_OF = datetime(2011, 12, 10)

# name: (recency range, frequency range, average order range, extra tenure range)
BEHAVIOURS = {
    "new": ((1, 25), (1, 2), (20, 60), (0, 5)),
    "lost": ((400, 700), (1, 2), (15, 40), (0, 60)),
    "at_risk": ((150, 300), (4, 8), (60, 120), (200, 500)),
    "regulars": ((1, 30), (6, 12), (30, 60), (300, 600)),
    "champions": ((1, 15), (15, 30), (120, 250), (400, 700)),
}
SHOP_SHARES = {"new": 0.60, "lost": 0.20, "at_risk": 0.10, "regulars": 0.06, "champions": 0.04}


def _optional_columns(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    n = len(frame)
    rated = rng.random(n) < 0.2
    frame["rating_mean"] = np.where(rated, rng.integers(3, 6, n).astype(float), np.nan)
    frame["rating_count"] = rated.astype(int)
    frame["nps_mean"] = np.nan
    frame["nps_count"] = 0
    frame["age"] = np.nan
    frame["income"] = np.nan
    return frame


def planted_mix(sizes: dict[str, int], *, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Customers of the BEHAVIOURS named in ``sizes``; returns the frame and group numbers."""
    rng = np.random.default_rng(seed)
    parts, truth = [], []
    for g, name in enumerate(sizes):
        (rec, freq, aov, extra), n = BEHAVIOURS[name], sizes[name]
        recency = rng.uniform(*rec, n)
        frequency = rng.integers(freq[0], freq[1] + 1, n)
        extra_days = np.where(frequency > 1, rng.uniform(*extra, n), 0.0)
        parts.append(
            pd.DataFrame(
                {
                    "frequency": frequency,
                    "monetary_total": frequency * rng.uniform(*aov, n),
                    "recency_days": recency,
                    "tenure_days": recency + extra_days,
                }
            )
        )
        truth.append(np.full(n, g))
    frame = _optional_columns(pd.concat(parts, ignore_index=True), rng)
    frame.insert(0, "customer_id", np.arange(1, len(frame) + 1, dtype=np.int64) * 3)
    return frame[RAW_COLUMNS], np.concatenate(truth)


def shop_sizes(total: int, shares: dict[str, float] = SHOP_SHARES) -> dict[str, int]:
    return {name: max(1, round(total * share)) for name, share in shares.items()}


def uci_raw(path: Path = UCI_FULL, *, as_of: datetime = UCI_AS_OF) -> pd.DataFrame:
    """One row per identified customer with at least one order, as the feature query gives.

    One invoice is one order worth sum(Quantity x UnitPrice); cancellations (invoice numbers
    starting with "C") count against the customer's total but are not orders.
    """
    lines = pd.read_csv(
        path,
        usecols=["InvoiceNo", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"],
        dtype={"InvoiceNo": str, "CustomerID": "float64"},
        encoding="latin-1",
    )
    lines = lines[lines["CustomerID"].notna()]
    lines["value"] = lines["Quantity"] * lines["UnitPrice"]
    lines["when"] = pd.to_datetime(lines["InvoiceDate"], format="mixed")
    invoices = lines.groupby(["CustomerID", "InvoiceNo"], as_index=False).agg(
        value=("value", "sum"), when=("when", "min")
    )
    cancelled = invoices["InvoiceNo"].str.startswith("C")
    orders = invoices[~cancelled]
    per = orders.groupby("CustomerID").agg(
        frequency=("InvoiceNo", "count"), first=("when", "min"), last=("when", "max")
    )
    totals = invoices.groupby("CustomerID")["value"].sum()
    per["monetary_total"] = totals.reindex(per.index)
    day = np.timedelta64(1, "D")
    raw = pd.DataFrame(
        {
            "customer_id": per.index.to_numpy(dtype=np.int64),
            "frequency": per["frequency"].to_numpy(),
            "monetary_total": per["monetary_total"].to_numpy(),
            "recency_days": ((as_of - per["last"]) / day).to_numpy(),
            "tenure_days": ((as_of - per["first"]) / day).to_numpy(),
        }
    )
    return _optional_columns(raw, np.random.default_rng(0)).assign(
        rating_mean=np.nan, rating_count=0
    )[RAW_COLUMNS]


def demo_raw(n: int, *, seed: int) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """The demo generator's customers who bought, with their behaviour names."""
    from pages import demo

    rng = np.random.default_rng(seed)
    today = datetime(2026, 1, 1)
    people = demo._customers(rng, n, 1, today)
    purchases = demo._purchases(rng, people, 1, today)
    feedback = demo._feedback(rng, people, purchases, today)
    amounts = np.array([float(a) for a in purchases.columns["amount"]])
    refund = np.array([k == "refund" for k in purchases.columns["kind"]])
    rows = pd.DataFrame(
        {
            "customer": purchases.customer_index,
            "amount": np.where(refund, -amounts, amounts),
            "sale": ~refund,
            "days_ago": purchases.days_ago,
        }
    )
    sales = rows[rows["sale"]]
    per = sales.groupby("customer").agg(
        frequency=("amount", "size"),
        recency_days=("days_ago", "min"),
        tenure_days=("days_ago", "max"),
    )
    per["monetary_total"] = rows.groupby("customer")["amount"].sum().reindex(per.index)
    fb = (
        pd.DataFrame(
            {
                "customer": np.searchsorted(people.ids, feedback["customer_id"]),
                "rating": pd.array(feedback["rating"], dtype="Float64"),
                "nps": pd.array(feedback["nps"], dtype="Float64"),
            }
        )
        .groupby("customer")
        .agg(
            rating_mean=("rating", "mean"),
            rating_count=("rating", "count"),
            nps_mean=("nps", "mean"),
            nps_count=("nps", "count"),
        )
    )
    per = per.join(fb)
    idx = per.index.to_numpy()
    raw = pd.DataFrame(
        {
            "customer_id": people.ids[idx].astype(np.int64),
            "frequency": per["frequency"].to_numpy(),
            "monetary_total": per["monetary_total"].to_numpy(),
            "recency_days": per["recency_days"].to_numpy(),
            "tenure_days": per["tenure_days"].to_numpy(),
            "rating_mean": per["rating_mean"].to_numpy(dtype=float, na_value=np.nan),
            "rating_count": per["rating_count"].fillna(0).to_numpy(),
            "nps_mean": per["nps_mean"].to_numpy(dtype=float, na_value=np.nan),
            "nps_count": per["nps_count"].fillna(0).to_numpy(),
            "age": np.nan,
            "income": np.nan,
        }
    )
    names = [b.name for b in demo.BEHAVIOURS]
    return raw[RAW_COLUMNS], people.behaviour[idx], names
