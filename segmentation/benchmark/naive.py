"""The pipeline a newcomer would write: ORM objects -> pandas -> KMeans -> save() per customer.

Run on the first `subset` customers and scaled linearly to the whole table. Its writes happen
inside one transaction that is rolled back (which flatters it: autocommitted saves are slower).
"""

import time

import numpy as np
import pandas as pd
from django.db import transaction
from django.utils import timezone
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from crm.models import Customer, Feedback, Purchase
from segmentation.models import Membership, Segment


def naive_pipeline(*, subset: int, k_values: tuple[int, ...], seed: int) -> dict:
    """Seconds of the naive pipeline on `subset` customers and that time scaled to everyone."""
    total = Customer.objects.profiled().with_purchases().count()
    cutoff = (
        Customer.objects.profiled()
        .with_purchases()
        .order_by("id")
        .values_list("id", flat=True)[subset - 1 : subset]
        .first()
    )
    if cutoff is None:
        cutoff = Customer.objects.order_by("-id").values_list("id", flat=True).first() or 0
    segment_ids = list(Segment.objects.values_list("id", flat=True)[: max(k_values)])
    now = timezone.now()
    started = time.perf_counter()
    with transaction.atomic():
        customers = list(
            Customer.objects.profiled().with_purchases().filter(id__lte=cutoff).order_by("id")
        )
        purchases = list(Purchase.objects.filter(customer__in=customers))
        feedback = list(Feedback.objects.filter(customer__in=customers))
        frame = pd.DataFrame(
            [
                {
                    "customer_id": p.customer_id,
                    "amount": float(p.amount) * (1 if p.kind == Purchase.Kind.SALE else -1),
                    "days_ago": (now - p.purchased_at).total_seconds() / 86400,
                }
                for p in purchases
            ]
        )
        ratings = pd.DataFrame(
            [{"customer_id": f.customer_id, "rating": f.rating} for f in feedback],
            columns=["customer_id", "rating"],
        )
        features = frame.groupby("customer_id").agg(
            frequency=("amount", "size"),
            monetary=("amount", "sum"),
            recency=("days_ago", "min"),
            tenure=("days_ago", "max"),
        )
        features["rating"] = ratings.groupby("customer_id")["rating"].mean()
        features["rating"] = features["rating"].fillna(features["rating"].mean()).fillna(0)
        x = StandardScaler().fit_transform(features.to_numpy())
        best = None
        for k in k_values:
            if k >= len(x):
                break
            model = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(x)
            score = silhouette_score(x, model.labels_) if len(set(model.labels_)) > 1 else -1
            if best is None or score > best[0]:
                best = (score, model.labels_)
        labels = dict(zip(features.index, best[1] if best else np.zeros(len(x), int), strict=True))
        for customer in customers:
            label = int(labels.get(customer.id, 0))
            segment_id = segment_ids[label] if label < len(segment_ids) else None
            Membership(customer_id=customer.id, segment_id=segment_id).save()
        transaction.set_rollback(True)
    seconds = time.perf_counter() - started
    n = len(customers)
    return {
        "seconds": seconds,
        "customers": n,
        "scaled_to": total,
        "scaled_seconds": seconds * total / n if n else 0.0,
    }
