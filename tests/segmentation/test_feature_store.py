"""The numbers behind a segment: stored per customer by every run, exported, put in words."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from crm.models import Customer
from segmentation import feature_store, features, selectors, services
from segmentation.features import MOMENT_COLUMNS, RAW_COLUMNS
from segmentation.models import CustomerFeatures, Segment, SegmentationRun, moment_us
from segmentation.services import label_write
from tests.factories import CustomerFactory, PurchaseFactory, SegmentationRunFactory
from tests.segmentation.shops import shop_build

AS_OF = datetime(2011, 12, 10, tzinfo=UTC)
DAY = timedelta(days=1)
# Ann bought once, Bob four times, Cat ten times: their last and first sale.
LAST = [AS_OF - 12.5 * DAY, AS_OF - 40 * DAY, AS_OF - 3 * DAY]
FIRST = [AS_OF - 12.5 * DAY, AS_OF - 190 * DAY, AS_OF - 300 * DAY]


def raw(ids: list[int], *, reference: datetime = AS_OF) -> pd.DataFrame:
    """The feature query's frame for these customers as of ``reference``: Ann's, Bob's and
    Cat's figures in turn."""

    def turn(values: list) -> list:
        return [values[i % 3] for i in range(len(ids))]

    return pd.DataFrame(
        {
            "customer_id": ids,
            "frequency": turn([1, 4, 10]),
            "monetary_total": turn([30.0, 400.0, -5.0]),  # refunds beyond sales count as 0
            "recency_days": [(reference - at) / DAY for at in turn(LAST)],
            "tenure_days": [(reference - at) / DAY for at in turn(FIRST)],
            "rating_mean": turn([np.nan, 5.0, 2.0]),
            "rating_count": turn([0, 1, 2]),
            "nps_mean": turn([np.nan, np.nan, 4.0]),
            "nps_count": turn([0, 0, 1]),
            "age": [np.nan] * len(ids),
            "income": [np.nan] * len(ids),
            "first_purchase_us": [moment_us(at) for at in turn(FIRST)],
            "last_purchase_us": [moment_us(at) for at in turn(LAST)],
        }
    )[RAW_COLUMNS + MOMENT_COLUMNS]


def run_at(reference: datetime) -> SegmentationRun:
    """A succeeded run as of ``reference``, finished after those before it."""
    return SegmentationRunFactory(reference_time=reference, finished_at=timezone.now())


def stored() -> dict[int, CustomerFeatures]:
    return {row.customer_id: row for row in CustomerFeatures.objects.with_as_of().order_by("pk")}


def stored_values() -> list[tuple]:
    return list(CustomerFeatures.objects.order_by("pk").values_list())


def emptied(queries: CaptureQueriesContext) -> bool:
    """Whether the statements emptied the table, to write it whole."""
    return any(
        q["sql"].startswith(("TRUNCATE", "DELETE FROM")) and "WHERE" not in q["sql"]
        for q in queries
    )


@pytest.mark.django_db
def test_a_run_stores_every_customers_figures_as_the_engine_cleaned_them():
    ann, bob, cat = (CustomerFactory().pk for _ in range(3))
    run = run_at(AS_OF)

    written = feature_store.customer_features_store(run=run, frame=raw([ann, bob, cat]))

    assert written == 3
    rows = stored()
    assert rows[ann].as_of == AS_OF and rows[ann].last_purchase_at == LAST[0]
    assert rows[ann].recency_days == 12.5 and rows[ann].tenure_days == 12.5
    assert rows[ann].frequency == 1
    assert rows[ann].satisfaction is None and rows[ann].usual_gap_days is None
    assert rows[bob].recency_days == 40.0 and rows[bob].tenure_days == 190.0
    assert rows[bob].avg_order_value == 100.0
    assert rows[bob].satisfaction == 1.0
    assert rows[bob].usual_gap_days == 50.0
    assert rows[cat].monetary_total == 0.0
    assert rows[cat].satisfaction == pytest.approx((0.25 + 0.4) / 2)


@pytest.mark.django_db
def test_the_next_run_replaces_the_figures_and_drops_customers_it_did_not_segment():
    ann, bob = CustomerFactory().pk, CustomerFactory().pk
    feature_store.customer_features_store(run=run_at(AS_OF), frame=raw([ann, bob]))
    second = run_at(AS_OF + DAY)

    feature_store.customer_features_store(run=second, frame=raw([bob], reference=AS_OF + DAY))

    assert list(CustomerFeatures.objects.values_list("customer_id", flat=True)) == [bob]


@pytest.mark.django_db
def test_a_rerun_on_unchanged_purchases_writes_no_row_and_counts_the_days_to_its_own_time():
    ann, bob, cat = (CustomerFactory().pk for _ in range(3))
    feature_store.customer_features_store(run=run_at(AS_OF), frame=raw([ann, bob, cat]))
    before = stored_values()
    later = AS_OF + 3 * DAY
    run = run_at(later)

    with CaptureQueriesContext(connection) as queries:
        written = feature_store.customer_features_store(
            run=run, frame=raw([ann, bob, cat], reference=later)
        )

    assert written == 0
    statements = " ".join(q["sql"] for q in queries).upper()
    assert "INSERT" not in statements and "DELETE" not in statements
    assert stored_values() == before
    # Read as of the new run: three more days since every sale.
    rows = stored()
    assert rows[ann].as_of == later
    assert (rows[ann].recency_days, rows[bob].tenure_days) == (15.5, 193.0)


@pytest.mark.django_db
def test_only_the_customers_whose_figures_changed_are_written_again():
    ids = [CustomerFactory().pk for _ in range(10)]
    ann, bob, cat = ids[:3]
    feature_store.customer_features_store(run=run_at(AS_OF), frame=raw(ids))
    later = AS_OF + DAY
    frame = raw(ids, reference=later)
    # Bob bought again since: one more purchase, today.
    frame.loc[1, ["frequency", "monetary_total", "recency_days"]] = [5, 450.0, 0.0]
    frame.loc[1, "last_purchase_us"] = moment_us(later)

    with CaptureQueriesContext(connection) as queries:
        written = feature_store.customer_features_store(run=run_at(later), frame=frame)

    assert written == 1
    assert not emptied(queries)
    rows = stored()
    assert (rows[bob].frequency, rows[bob].monetary_total, rows[bob].recency_days) == (5, 450, 0)
    assert rows[bob].usual_gap_days == 191 / 4
    assert rows[ann].recency_days == 13.5 and rows[cat].frequency == 10


def test_a_figures_key_changes_with_any_figure_and_only_with_them():
    table = pd.DataFrame(
        {
            "customer_id": [1, 2, 3],
            "last_purchase_us": [10**15, 10**15, 10**15],
            "first_purchase_us": [9 * 10**14] * 3,
            "frequency": [4, 4, 4],
            "monetary_total": [400.0, 400.0, 0.0],
            "avg_order_value": [100.0, 100.0, 0.0],
            "satisfaction": [np.nan, np.nan, 0.5],
            "usual_gap_days": [50.0, 50.0, np.nan],
        }
    )
    keys = feature_store.figures_keys(table)
    # Equal figures, equal keys, whatever the customer; none is 0 (the key of no key).
    assert keys[0] == keys[1] != keys[2] and 0 not in keys
    # -0.0 compares as 0.0, and any NaN as any other.
    other_nan = np.array([0x7FF8000000000001], dtype=np.uint64).view(np.float64)[0]
    signed = table.assign(monetary_total=[400.0, 400.0, -0.0], usual_gap_days=other_nan)
    assert feature_store.figures_keys(signed)[2] == keys[2]
    for name, value in [
        ("last_purchase_us", 10**15 - 1_000_000),
        ("first_purchase_us", 9 * 10**14 + 1_000_000),
        ("frequency", 5),
        ("monetary_total", 400.01),
        ("avg_order_value", 100.5),
        ("satisfaction", 0.0),
        ("usual_gap_days", np.nan),
    ]:
        changed = table.copy()
        changed.loc[0, name] = value
        assert feature_store.figures_keys(changed)[0] != keys[0], name


@pytest.mark.django_db
def test_rows_stored_without_a_key_are_written_again_by_the_next_run():
    ids = [CustomerFactory().pk for _ in range(10)]
    feature_store.customer_features_store(run=run_at(AS_OF), frame=raw(ids))
    # As the rows of a run before the keys were kept.
    CustomerFeatures.objects.filter(customer_id__in=ids[:2]).update(figures_key=None)

    written = feature_store.customer_features_store(
        run=run_at(AS_OF + DAY), frame=raw(ids, reference=AS_OF + DAY)
    )

    assert written == 2
    assert not CustomerFeatures.objects.filter(figures_key=None).exists()
    assert (
        feature_store.customer_features_store(
            run=run_at(AS_OF + 2 * DAY), frame=raw(ids, reference=AS_OF + 2 * DAY)
        )
        == 0
    )


@pytest.mark.django_db
def test_a_run_writes_the_whole_table_again_when_most_figures_changed():
    ids = [CustomerFactory().pk for _ in range(3)]
    feature_store.customer_features_store(run=run_at(AS_OF), frame=raw(ids))
    frame = raw(ids, reference=AS_OF + DAY)
    frame["monetary_total"] += 10
    run = run_at(AS_OF + DAY)

    with CaptureQueriesContext(connection) as queries:
        written = feature_store.customer_features_store(run=run, frame=frame)

    assert written == 3
    assert emptied(queries)
    assert [row.monetary_total for row in stored().values()] == [40.0, 410.0, 5.0]


@pytest.mark.django_db
def test_a_sale_after_the_runs_reference_time_counts_as_at_that_time():
    """A run as of a past day counts from the start of that day, its sales included: the
    engine counts them as 0 days old, and so do the stored figures."""
    ann, bob = CustomerFactory().pk, CustomerFactory().pk
    frame = raw([ann, bob])
    later = moment_us(AS_OF + DAY / 2)
    frame.loc[0, ["last_purchase_us", "first_purchase_us"]] = later
    frame.loc[1, "last_purchase_us"] = later

    feature_store.customer_features_store(run=run_at(AS_OF), frame=frame)

    rows = stored()
    assert (rows[ann].recency_days, rows[ann].tenure_days) == (0.0, 0.0)
    assert (rows[bob].recency_days, rows[bob].tenure_days) == (0.0, 190.0)
    assert rows[bob].usual_gap_days == 190 / 3


@pytest.mark.django_db
def test_the_export_columns_come_from_one_query_with_the_days_as_of_the_last_run(
    django_assert_num_queries,
):
    ann, bob = CustomerFactory().pk, CustomerFactory().pk
    feature_store.customer_features_store(run=run_at(AS_OF), frame=raw([ann]))
    later = AS_OF + 2 * DAY
    feature_store.customer_features_store(run=run_at(later), frame=raw([ann], reference=later))
    provider = feature_store.FeatureExportColumns()

    with django_assert_num_queries(1):
        values = provider.values([ann, bob])

    assert set(values) == {ann}
    assert tuple(values[ann]) == provider.columns
    assert values[ann]["as_of"] == later and values[ann]["frequency"] == 1
    assert values[ann]["recency_days"] == 14.5 and values[ann]["tenure_days"] == 14.5


@pytest.mark.django_db
def test_the_customer_page_reads_one_customers_figures():
    ann = CustomerFactory().pk
    feature_store.customer_features_store(run=run_at(AS_OF), frame=raw([ann]))

    assert feature_store.customer_features_get(customer_id=ann).frequency == 1
    assert feature_store.customer_features_get(customer_id=ann + 1) is None
    figures = feature_store.customer_figures(feature_store.customer_features_get(customer_id=ann))
    assert figures["as_of"] == AS_OF and figures["recency_days"] == 12.5


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
        currency="EUR",
    )

    assert words == [
        "Last bought 90 days ago, 1.5\u00d7 the shop's usual 60-day rhythm; "
        "they usually buy every 33.3 days.",
        "Bought 4 times, 400\u00a0EUR in total (typical in this segment: 6 times, 1,997\u00a0EUR).",
        "First bought 190 days ago.",
        "Satisfaction 75 of 100 from their ratings and answers.",
    ]


def test_the_last_and_first_sale_are_said_in_the_businesss_calendar_days():
    rome = ZoneInfo("Europe/Rome")
    # Counted at 02:00: the last sale the day before yesterday at 16:00 (1.42 days earlier),
    # the first a year and two days before at 23:30 (366.1 days earlier).
    as_of = datetime(2026, 12, 4, 2, 0, tzinfo=rome)
    last = datetime(2026, 12, 2, 16, 0, tzinfo=rome)
    first = datetime(2025, 12, 2, 23, 30, tzinfo=rome)
    with timezone.override(rome):
        words = feature_store.segment_reason_words(
            figures={"recency_days": (as_of - last) / DAY, "tenure_days": (as_of - first) / DAY},
            typical={},
            rhythm_days=None,
            currency="EUR",
            as_of=as_of,
            last_sale=last,
            first_sale=first,
        )

    assert words == ["Last bought 2 days ago.", "First bought 367 days ago."]


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


def run_now() -> SegmentationRun:
    run = SegmentationRun.objects.create(trigger=SegmentationRun.Trigger.COMMAND)
    run = services.segmentation_run_execute(run=run)
    assert run.status == SegmentationRun.Status.SUCCEEDED, run.error
    return run


def rows_written(monkeypatch) -> list[int]:
    """The rows each following run's store writes, in order."""
    written: list[int] = []
    store = label_write.customer_features_store

    def counted(**kwargs) -> int:
        written.append(store(**kwargs))
        return written[-1]

    monkeypatch.setattr(label_write, "customer_features_store", counted)
    return written


@pytest.mark.django_db
def test_a_second_run_on_unchanged_purchases_writes_no_stored_figures(monkeypatch):
    shop = shop_build()
    written = rows_written(monkeypatch)

    first = run_now()
    before = stored_values()
    second = run_now()

    assert written == [len(shop.buyers), 0]
    assert stored_values() == before
    champion = stored()[shop.groups["champions"][0]]
    assert champion.as_of == second.reference_time > first.reference_time
    assert champion.recency_days == pytest.approx(3, abs=0.01)


@pytest.mark.django_db
def test_a_customer_who_bought_since_is_written_again_and_those_who_left_lose_their_row(
    monkeypatch,
):
    shop = shop_build()
    run_now()
    buyer, deleted, archived, opted_out = shop.groups["casual"][:4]
    frequency = stored()[buyer].frequency
    PurchaseFactory(customer=Customer.objects.get(pk=buyer), purchased_at=timezone.now() - DAY)
    Customer.objects.get(pk=deleted).delete()
    Customer.objects.filter(pk=archived).update(is_archived=True)
    Customer.objects.filter(pk=opted_out).update(profiling_opt_out=True)
    written = rows_written(monkeypatch)

    run_now()

    assert written == [1]
    rows = stored()
    assert not {deleted, archived, opted_out} & set(rows)
    assert set(rows) == set(shop.buyers) - {deleted, archived, opted_out}
    assert rows[buyer].frequency == frequency + 1
    assert rows[buyer].recency_days == pytest.approx(1, abs=0.01)


@pytest.mark.django_db
def test_a_run_as_of_an_earlier_day_stores_that_days_figures():
    customer = CustomerFactory()
    today = timezone.localdate()
    for days in (30, 10, 2):
        PurchaseFactory(customer=customer, purchased_at=timezone.now() - days * DAY)
    frame_now = selectors.customer_features(reference_time=timezone.now()).frame
    feature_store.customer_features_store(run=run_at(timezone.now()), frame=frame_now)
    as_of = today - timedelta(days=5)
    reference = selectors.day_start(as_of)
    frame = selectors.customer_features(reference_time=reference, as_of=as_of).frame

    written = feature_store.customer_features_store(run=run_at(reference), frame=frame)

    assert written == 1
    row = stored()[customer.pk]
    assert row.frequency == 2 and row.as_of == reference
    assert row.recency_days == pytest.approx(
        (reference - (timezone.now() - 10 * DAY)) / DAY, abs=0.01
    )
    assert row.tenure_days == pytest.approx(
        (reference - (timezone.now() - 30 * DAY)) / DAY, abs=0.01
    )


@pytest.mark.django_db
def test_the_customer_page_says_the_last_purchase_as_of_the_run(client, alice):
    shop = shop_build()
    run = run_now()
    champion = shop.groups["champions"][0]  # last bought 3 days before the run
    page = reverse("pages:customer_detail", args=[champion])

    # Ten days later, with no run since.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(timezone, "now", lambda: run.reference_time + 10 * DAY)
        client.force_login(alice)
        text = client.get(page).content.decode()

    assert "Last bought 3 days ago" in text
    assert "Last bought 13 days ago" not in text


@pytest.mark.django_db
def test_a_run_stores_the_figures_its_engine_cleaned_without_cleaning_them_again():
    ids = [CustomerFactory().pk for _ in range(6)]
    frame = raw(ids).iloc[::-1].reset_index(drop=True)  # rows in any order, as the engine takes
    plain = features.model_features(frame[RAW_COLUMNS]).plain
    feature_store.customer_features_store(run=run_at(AS_OF), frame=frame, plain=plain)
    from_engine = stored_values()
    CustomerFeatures.objects.all().delete()
    feature_store.customer_features_store(run=run_at(AS_OF), frame=frame)
    assert [row[1:] for row in stored_values()] == [row[1:] for row in from_engine]
    with pytest.raises(ValueError, match="not those of the raw frame"):
        features.stored_features(frame, reference_us=moment_us(AS_OF), plain=plain[:3])
