"""The numbers behind a segment: stored per customer by every run, exported, put in words."""

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from segmentation import feature_store, selectors, services
from segmentation.features import RAW_COLUMNS
from segmentation.models import CustomerFeatures, Segment, SegmentationRun
from tests.factories import CustomerFactory, SegmentationRunFactory
from tests.segmentation.shops import shop_build

AS_OF = datetime(2011, 12, 10, tzinfo=UTC)


def raw(ids: list[int]) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "frequency": [1, 4, 10][:n],
            "monetary_total": [30.0, 400.0, -5.0][:n],  # refunds beyond sales count as 0
            "recency_days": [12.5, 40.0, 3.0][:n],
            "tenure_days": [12.5, 190.0, 300.0][:n],
            "rating_mean": [np.nan, 5.0, 2.0][:n],
            "rating_count": [0, 1, 2][:n],
            "nps_mean": [np.nan, np.nan, 4.0][:n],
            "nps_count": [0, 0, 1][:n],
            "age": [np.nan] * n,
            "income": [np.nan] * n,
        }
    )[RAW_COLUMNS]


@pytest.mark.django_db
def test_a_run_stores_every_customers_figures_as_the_engine_cleaned_them():
    ann, bob, cat = (CustomerFactory().pk for _ in range(3))
    run = SegmentationRunFactory(reference_time=AS_OF)

    written = feature_store.customer_features_store(run=run, frame=raw([ann, bob, cat]))

    assert written == 3
    rows = {r.customer_id: r for r in CustomerFeatures.objects.all()}
    assert rows[ann].as_of == AS_OF and rows[ann].run_id == run.pk
    assert rows[ann].recency_days == 12.5 and rows[ann].frequency == 1
    assert rows[ann].satisfaction is None and rows[ann].usual_gap_days is None
    assert rows[bob].avg_order_value == 100.0
    assert rows[bob].satisfaction == 1.0
    assert rows[bob].usual_gap_days == pytest.approx(50.0)
    assert rows[cat].monetary_total == 0.0
    assert rows[cat].satisfaction == pytest.approx((0.25 + 0.4) / 2)


@pytest.mark.django_db
def test_the_next_run_replaces_the_figures_and_drops_customers_it_did_not_segment():
    ann, bob = CustomerFactory().pk, CustomerFactory().pk
    first = SegmentationRunFactory(reference_time=AS_OF)
    feature_store.customer_features_store(run=first, frame=raw([ann, bob]))
    second = SegmentationRunFactory(reference_time=datetime(2011, 12, 11, tzinfo=UTC))

    feature_store.customer_features_store(run=second, frame=raw([bob]))

    assert list(CustomerFeatures.objects.values_list("customer_id", "run_id")) == [(bob, second.pk)]


@pytest.mark.django_db
def test_the_export_columns_come_from_one_query(django_assert_num_queries):
    ann, bob = CustomerFactory().pk, CustomerFactory().pk
    feature_store.customer_features_store(
        run=SegmentationRunFactory(reference_time=AS_OF), frame=raw([ann])
    )
    provider = feature_store.FeatureExportColumns()

    with django_assert_num_queries(1):
        values = provider.values([ann, bob])

    assert set(values) == {ann}
    assert tuple(values[ann]) == provider.columns
    assert values[ann]["as_of"] == AS_OF and values[ann]["frequency"] == 1


@pytest.mark.django_db
def test_the_customer_page_reads_one_customers_figures():
    ann = CustomerFactory().pk
    feature_store.customer_features_store(
        run=SegmentationRunFactory(reference_time=AS_OF), frame=raw([ann])
    )

    assert feature_store.customer_features_get(customer_id=ann).frequency == 1
    assert feature_store.customer_features_get(customer_id=ann + 1) is None


def test_why_this_segment_reads_the_customers_numbers_against_the_shops_rhythm():
    words = feature_store.segment_reason_words(
        figures={
            "recency_days": 90.0,
            "frequency": 4,
            "monetary_total": 400.0,
            "tenure_days": 190.0,
            "usual_gap_days": 33.3,
            "satisfaction": 0.75,
        },
        typical={"frequency": 6.0, "monetary_total": 1997.09},
        rhythm_days=60,
    )

    assert words == [
        "Last bought 90 days ago, 1.5\u00d7 the shop's usual 60-day rhythm; "
        "they usually buy every 33.3 days.",
        "Bought 4 times, 400 in total (typical in this segment: 6 times, 1,997).",
        "First bought 190 days ago.",
        "Satisfaction 75 of 100 from their ratings and answers.",
    ]


@pytest.mark.django_db
def test_a_real_runs_feature_frame_is_stored_for_every_segmented_customer():
    shop = shop_build()
    run = SegmentationRun.objects.create(trigger=SegmentationRun.Trigger.COMMAND)
    run = services.segmentation_run_execute(run=run)
    frame = selectors.customer_features(reference_time=run.reference_time).frame

    feature_store.customer_features_store(run=run, frame=frame)

    stored = dict(CustomerFeatures.objects.values_list("customer_id", "frequency"))
    assert set(stored) == set(shop.buyers)
    assert {stored[pk] for pk in shop.groups["champions"]} == {12}
    assert behaviours_of_run() <= {b.value for b in Segment.Behaviour}


def behaviours_of_run() -> set[str]:
    found = set(Segment.objects.active().exclude(behaviour="").values_list("behaviour", flat=True))
    assert found, "the run stores a behaviour on its segments"
    return found
