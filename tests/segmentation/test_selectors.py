"""The feature selector against hand-computed values, on SQLite and PostgreSQL alike."""

import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm.models import Customer, Purchase
from segmentation import selectors
from segmentation.features import MOMENT_COLUMNS
from segmentation.models import Membership, moment_us
from segmentation.services import label_write
from tests.factories import (
    CustomerFactory,
    FeedbackFactory,
    PurchaseFactory,
    SegmentFactory,
)

REF = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def days_before(days: float) -> datetime:
    return REF - timedelta(days=days)


@pytest.fixture
def shop(db):
    """A small shop: each customer tests one corner of the feature query."""
    regular = CustomerFactory(name="Regular", birth_date=date(1990, 6, 1), annual_income=52000)
    PurchaseFactory(customer=regular, amount=Decimal("100.00"), purchased_at=days_before(30))
    PurchaseFactory(customer=regular, amount=Decimal("50.50"), purchased_at=days_before(10.5))
    PurchaseFactory(customer=regular, amount=Decimal("20.00"), purchased_at=days_before(2))
    # A refund after the last sale: subtracted from the total, not a purchase, not recency.
    PurchaseFactory(
        customer=regular,
        kind=Purchase.Kind.REFUND,
        amount=Decimal("20.00"),
        purchased_at=days_before(1),
    )
    FeedbackFactory(customer=regular, rating=4, nps=10)
    FeedbackFactory(customer=regular, rating=5, nps=6)
    FeedbackFactory(customer=regular, rating=None, nps=9)

    once = CustomerFactory(name="Once", age=41, birth_date=None)
    PurchaseFactory(customer=once, amount=Decimal("75.25"), purchased_at=days_before(100))
    FeedbackFactory(customer=once, rating=2, nps=None)

    no_feedback = CustomerFactory(name="Quiet", birth_date=None, age=None)
    PurchaseFactory(customer=no_feedback, amount=Decimal("10.00"), purchased_at=days_before(5))
    # A refund before the first sale (an earlier order deleted since): not the tenure start.
    PurchaseFactory(
        customer=no_feedback,
        kind=Purchase.Kind.REFUND,
        amount=Decimal("3.00"),
        purchased_at=days_before(50),
    )
    PurchaseFactory(customer=no_feedback, amount=Decimal("12.00"), purchased_at=days_before(20))

    prospect = CustomerFactory(name="Prospect")
    refund_only = CustomerFactory(name="Refund only")
    PurchaseFactory(
        customer=refund_only,
        kind=Purchase.Kind.REFUND,
        amount=Decimal("9.00"),
        purchased_at=days_before(3),
    )
    opted_out = CustomerFactory(name="Opted out", profiling_opt_out=True)
    PurchaseFactory(customer=opted_out, amount=Decimal("60.00"), purchased_at=days_before(4))
    archived = CustomerFactory(name="Archived", is_archived=True)
    PurchaseFactory(customer=archived, amount=Decimal("60.00"), purchased_at=days_before(4))
    return {
        "regular": regular,
        "once": once,
        "quiet": no_feedback,
        "prospect": prospect,
        "refund_only": refund_only,
        "opted_out": opted_out,
        "archived": archived,
    }


def test_features_equal_hand_computed_values(shop):
    frame = selectors.customer_features(reference_time=REF).frame
    ids = frame["customer_id"].tolist()
    assert ids == sorted([shop["regular"].pk, shop["once"].pk, shop["quiet"].pk])
    rows = frame.set_index("customer_id")

    regular = rows.loc[shop["regular"].pk]
    assert regular["frequency"] == 3
    assert regular["monetary_total"] == pytest.approx(150.50)
    assert regular["recency_days"] == pytest.approx(2)
    assert regular["tenure_days"] == pytest.approx(30)
    assert regular["rating_mean"] == pytest.approx(4.5)
    assert regular["rating_count"] == 2
    assert regular["nps_mean"] == pytest.approx(25 / 3)
    assert regular["nps_count"] == 3
    assert regular["nps_promoters"] == 2
    assert regular["nps_detractors"] == 1
    assert regular["age"] == pytest.approx((date(2026, 6, 1) - date(1990, 6, 1)).days / 365.25)
    assert regular["income"] == pytest.approx(52000)

    once = rows.loc[shop["once"].pk]
    assert once["frequency"] == 1
    assert once["monetary_total"] == pytest.approx(75.25)
    assert once["recency_days"] == pytest.approx(100)
    assert once["tenure_days"] == pytest.approx(100)
    assert once["rating_mean"] == pytest.approx(2)
    assert once["rating_count"] == 1
    assert math.isnan(once["nps_mean"])
    assert once["nps_count"] == 0
    assert once["age"] == pytest.approx(41)
    assert math.isnan(once["income"])

    quiet = rows.loc[shop["quiet"].pk]
    assert quiet["frequency"] == 2
    assert quiet["monetary_total"] == pytest.approx(19.00)
    assert quiet["recency_days"] == pytest.approx(5)
    assert quiet["tenure_days"] == pytest.approx(20)
    assert math.isnan(quiet["rating_mean"])
    assert quiet["rating_count"] == 0
    assert math.isnan(quiet["nps_mean"])
    assert quiet["nps_count"] == 0
    assert math.isnan(quiet["age"])
    assert math.isnan(quiet["income"])


def test_todays_features_read_the_kept_figures_and_agree_with_adding_up_purchases(shop):
    with CaptureQueriesContext(connection) as queries:
        kept = selectors.customer_features(reference_time=REF).frame
    assert not any("crm_purchase" in q["sql"] for q in queries.captured_queries)
    # A run as of a day after every purchase adds them up instead: the same figures.
    added_up = selectors.customer_features(reference_time=REF, as_of=date(2027, 1, 1)).frame
    assert kept.columns.tolist() == added_up.columns.tolist()
    assert kept["customer_id"].tolist() == added_up["customer_id"].tolist()
    for column in kept.columns:
        np.testing.assert_allclose(kept[column], added_up[column], rtol=1e-12, err_msg=column)


def test_the_first_and_last_sale_come_to_the_second_and_alike_on_both_reads(shop):
    """The stored figures compare them exactly from run to run: whole seconds, the same
    whether the figures kept on the customer are read or the purchases added up as of a day,
    and at another reference time; a sale a microsecond short of a whole second rounds up."""
    late = days_before(1).replace(microsecond=999_999)
    PurchaseFactory(customer=shop["once"], purchased_at=late)

    def to_second(moment) -> int:
        return round(moment_us(moment) / 1_000_000) * 1_000_000

    frames = (
        selectors.customer_features(reference_time=REF).frame,
        selectors.customer_features(reference_time=REF, as_of=date(2027, 1, 1)).frame,
        selectors.customer_features(reference_time=REF + timedelta(days=3, microseconds=7)).frame,
    )
    for frame in frames:
        rows = frame.set_index("customer_id")
        moments = {
            name: (
                rows.loc[customer.pk, "first_purchase_us"],
                rows.loc[customer.pk, "last_purchase_us"],
            )
            for name, customer in shop.items()
            if customer.pk in rows.index
        }
        assert moments == {
            # A refund after the last sale or before the first is neither.
            "regular": (to_second(days_before(30)), to_second(days_before(2))),
            "once": (to_second(days_before(100)), to_second(late)),
            "quiet": (to_second(days_before(20)), to_second(days_before(5))),
        }


def test_feature_frame_has_the_engine_columns_and_types(shop):
    from segmentation.features import RAW_COLUMNS

    frame = selectors.customer_features(reference_time=REF).frame
    assert list(frame.columns[: len(RAW_COLUMNS)]) == RAW_COLUMNS
    assert str(frame["customer_id"].dtype) == "int64"
    assert str(frame["frequency"].dtype) == "int64"
    assert str(frame["recency_days"].dtype) == "float64"


def test_feature_query_times_the_query_and_the_transfer(shop):
    features = selectors.customer_features(reference_time=REF)
    assert set(features.timings) == {"feature_query", "transfer"}
    assert all(seconds >= 0 for seconds in features.timings.values())


def test_features_of_an_empty_shop_are_an_empty_frame_with_the_columns(db):
    frame = selectors.customer_features(reference_time=REF).frame
    assert frame.empty
    assert list(frame.columns) == [
        *selectors.FEATURE_COLUMNS,
        *selectors.EXTRA_COLUMNS,
        selectors.CHANGED_COLUMN,
        *MOMENT_COLUMNS,
    ]


def test_features_say_when_each_customers_purchases_last_changed(shop):
    """To the microsecond on PostgreSQL, to the millisecond on SQLite (its date functions
    keep no finer); never changed reads as NaN."""
    changed = datetime(2026, 5, 30, 8, 15, 42, 123456, tzinfo=UTC)
    Customer.objects.filter(name="Regular").update(purchases_changed_at=changed)
    Customer.objects.filter(name="Once").update(purchases_changed_at=None)
    frame = selectors.customer_features(reference_time=REF).frame
    names = dict(Customer.objects.values_list("pk", "name"))
    read = {
        names[i]: v
        for i, v in zip(frame["customer_id"], frame[selectors.CHANGED_COLUMN], strict=True)
    }
    tolerance = 0 if connection.vendor == "postgresql" else 1_000
    assert abs(read["Regular"] - moment_us(changed)) <= tolerance
    assert math.isnan(read["Once"])


def test_customer_counts_count_active_opted_out_and_pinned(shop):
    segment = SegmentFactory()
    Membership.objects.create(customer=shop["once"], segment=segment, pinned=True)
    Membership.objects.create(customer=shop["archived"], segment=segment, pinned=True)
    Membership.objects.create(customer=shop["regular"], segment=segment, pinned=False)

    pins = selectors.pinned_segments()
    counts = selectors.customer_counts(pinned=len(pins))

    assert pins == {shop["once"].pk: segment.pk}  # neither the archived nor the unpinned
    assert counts == selectors.CustomerCounts(total=6, opted_out=1, pinned=1)


def _copy_binary(rows: list[tuple], columns: list[str], *, null_at: int | None = None) -> bytes:
    """PostgreSQL's binary COPY output for rows of 8-byte fields (a NULL where asked)."""
    out = bytearray(b"PGCOPY\n\xff\r\n\x00" + bytes(8))
    for values in rows:
        out += len(columns).to_bytes(2, "big")
        for i, (name, value) in enumerate(zip(columns, values, strict=True)):
            if i == null_at:
                out += (-1).to_bytes(4, "big", signed=True)
                continue
            kind = ">i8" if name in selectors._INT_COLUMNS else ">f8"
            out += (8).to_bytes(4, "big") + np.array([value], dtype=kind).tobytes()
    return bytes(out + (-1).to_bytes(2, "big", signed=True))


def test_binary_copy_rows_decode_to_the_features_and_a_null_is_refused():
    columns = ["customer_id", "frequency", "monetary_total", "rating_mean"]
    rows = [(7, 2, 120.5, math.nan), (9, 1, 40.0, 4.5)]
    frame = selectors._binary_rows_frame(bytearray(_copy_binary(rows, columns)), columns)
    assert frame["customer_id"].tolist() == [7, 9]
    assert frame["monetary_total"].tolist() == [120.5, 40.0]
    assert math.isnan(frame["rating_mean"][0]) and frame["rating_mean"][1] == 4.5
    assert frame["customer_id"].dtype == np.int64

    empty = selectors._binary_rows_frame(bytearray(_copy_binary([], columns)), columns)
    assert empty.empty and list(empty.columns) == columns

    with pytest.raises(ValueError, match="unexpected size"):
        selectors._binary_rows_frame(bytearray(_copy_binary(rows, columns, null_at=2)), columns)


@pytest.mark.django_db
def test_segment_movers_are_the_customers_a_run_moved_between_two_segments():
    from segmentation.models import SegmentMembershipChange
    from tests.factories import CustomerFactory, SegmentationRunFactory, SegmentFactory

    run, earlier = SegmentationRunFactory(), SegmentationRunFactory()
    loyal, at_risk = SegmentFactory(), SegmentFactory()
    moved = [CustomerFactory(segment=at_risk) for _ in range(3)]
    for customer in moved:
        SegmentMembershipChange.objects.create(
            customer=customer, run=run, from_segment=loyal, to_segment=at_risk
        )
    SegmentMembershipChange.objects.create(  # another run
        customer=CustomerFactory(), run=earlier, from_segment=loyal, to_segment=at_risk
    )
    SegmentMembershipChange.objects.create(  # the other way
        customer=CustomerFactory(), run=run, from_segment=at_risk, to_segment=loyal
    )
    newcomer = CustomerFactory(segment=at_risk)
    SegmentMembershipChange.objects.create(customer=newcomer, run=run, to_segment=at_risk)

    movers = selectors.segment_movers(
        run=run, from_segment_id=loyal.pk, to_segment_id=at_risk.pk, limit=10
    )
    first_placed = selectors.segment_movers(
        run=run, from_segment_id=None, to_segment_id=at_risk.pk, limit=10
    )

    assert {c.customer for c in movers} == set(moved)
    assert (
        len(
            selectors.segment_movers(
                run=run, from_segment_id=loyal.pk, to_segment_id=at_risk.pk, limit=2
            )
        )
        == 2
    )
    assert [c.customer for c in first_placed] == [newcomer]


@pytest.mark.django_db
def test_segment_arrivals_leave_out_first_placements_moves_within_and_those_who_left_again():
    from segmentation.models import SegmentMembershipChange
    from tests.factories import CustomerFactory, SegmentationRunFactory, SegmentFactory

    run = SegmentationRunFactory()
    loyal, at_risk, sleeping = SegmentFactory(), SegmentFactory(), SegmentFactory()
    rich = CustomerFactory(segment=at_risk, total_spent=Decimal("900"))
    poor = CustomerFactory(segment=at_risk, total_spent=Decimal("90"))
    first = CustomerFactory(segment=at_risk)
    within = CustomerFactory(segment=sleeping)
    gone = CustomerFactory(segment=loyal)  # moved in, then pinned back elsewhere
    archived = CustomerFactory(segment=at_risk, is_archived=True)
    for customer, origin, target in [
        (rich, loyal, at_risk),
        (poor, loyal, at_risk),
        (first, None, at_risk),
        (within, at_risk, sleeping),
        (gone, loyal, at_risk),
        (archived, loyal, at_risk),
    ]:
        SegmentMembershipChange.objects.create(
            customer=customer, run=run, from_segment=origin, to_segment=target
        )

    arrivals = selectors.segment_arrivals(run=run, segment_ids=[at_risk.pk, sleeping.pk])

    assert [c.customer for c in arrivals] == [rich, poor]


def test_staging_reads_every_customer_in_id_order_with_their_unpinned_membership(db):
    segment = SegmentFactory()
    placed = CustomerFactory()
    Membership.objects.create(customer=placed, segment=segment, reason="Buys often.")
    opted_out = CustomerFactory(profiling_opt_out=True)
    Membership.objects.create(customer=opted_out, segment=None, reason="No run says this now.")
    pinned = CustomerFactory()
    Membership.objects.create(customer=pinned, segment=segment, reason="Pinned.", pinned=True)
    archived = CustomerFactory(is_archived=True)  # never placed: no membership row
    label_write._temp_tables_create()
    label_write._rows_insert(label_write.REASONS_TABLE, ("id", "reason"), [(0, "Buys often.")])

    read = selectors.customer_flags_and_memberships(reasons_table=label_write.REASONS_TABLE)

    rows = {
        int(customer_id): tuple(int(read[column][i]) for column in list(read)[1:])
        for i, customer_id in enumerate(read["id"])
    }
    assert read["id"].tolist() == sorted(rows)
    assert list(read)[1:] == [
        "is_archived",
        "profiling_opt_out",
        "has_membership",
        "segment_id",
        "reason_id",
    ]
    assert rows == {
        placed.pk: (0, 0, 1, segment.pk, 0),
        opted_out.pk: (0, 1, 1, -1, -1000),  # no segment; a reason not among the run's
        pinned.pk: (0, 0, 0, -1, -1000),  # a pinned membership reads as none
        archived.pk: (1, 0, 0, -1, -1000),
    }


def test_staging_finds_the_archived_and_opted_out_without_reading_every_customer(db):
    CustomerFactory.create_batch(3)
    CustomerFactory(is_archived=True)
    flagged = selectors.NOT_PROFILED_SQL.format(customer=Customer._meta.db_table)

    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            # Four rows make any plan cheap: whether the statement can use the index at all.
            cur.execute("SET LOCAL enable_seqscan = off")
            cur.execute(f"EXPLAIN {flagged}")
        else:
            cur.execute(f"EXPLAIN QUERY PLAN {flagged}")
        plan = str(cur.fetchall())

    # Their own index (a partial one: only they have an entry), not the customers' table.
    assert "customer_not_profiled_idx" in plan, plan


def test_customer_ids_are_every_customer_in_id_order(db):
    customers = [CustomerFactory() for _ in range(3)]

    assert selectors.customer_ids().tolist() == sorted(c.pk for c in customers)
    assert selectors.customer_ids().dtype == np.int64


def test_staging_read_lays_memberships_out_by_customer_whatever_order_a_plan_returns():
    shuffled = {
        "customer_id": np.array([3, 9, 1]),  # 9: a customer deleted since the ids were read
        "segment_id": np.array([30, 90, 10]),
        "reason_id": np.array([0, 1, 2]),
    }
    flagged = {"id": np.array([4, 2]), "is_archived": np.array([1, 0]),
               "profiling_opt_out": np.array([0, 1])}  # fmt: skip

    read = selectors._memberships_by_customer(np.array([1, 2, 3, 4]), flagged, shuffled)

    assert read["id"].tolist() == [1, 2, 3, 4]
    assert read["has_membership"].tolist() == [1, 0, 1, 0]
    assert read["segment_id"].tolist() == [10, -1, 30, -1]
    assert read["reason_id"].tolist() == [2, -1000, 0, -1000]
    assert read["is_archived"].tolist() == [0, 0, 0, 1]
    assert read["profiling_opt_out"].tolist() == [0, 1, 0, 0]


def test_staging_numbers_each_current_reason_by_the_hash_of_the_run_sentence_it_is():
    sentences = {"id": np.array([0, 1, 2, 3]), "reason_hash": np.array([70, -5, 12, 12])}

    numbers = selectors._reason_numbers(np.array([-5, 70, 99, 12, 70]), sentences)

    # 99: a reason the run does not write any more; 12: two of the run's own sentences
    # share the hash, so neither is trusted and the customer is written again.
    assert numbers.tolist() == [1, 0, -1000, -1000, 0]
    none = {"id": np.array([], dtype=np.int64), "reason_hash": np.array([], dtype=np.int64)}
    assert selectors._reason_numbers(np.array([7]), none).tolist() == [-1000]


sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's own read")


@sqlite_only
@pytest.mark.django_db
def test_sqlite_integer_reads_keep_every_row_and_value_exactly():
    rows = "SELECT 1, -1000, 9007199254740993 UNION ALL SELECT 2, 0, -9223372036854775807"

    matrix = selectors.sqlite_int_rows(rows, 3)

    assert matrix.tolist() == [[1, -1000, 9007199254740993], [2, 0, -9223372036854775807]]
    assert selectors.sqlite_int_rows("SELECT 1, 2 WHERE 0", 2).shape == (0, 2)


@sqlite_only
@pytest.mark.django_db
def test_a_sqlite_integer_read_that_meets_a_null_is_an_error_not_a_missing_row():
    with pytest.raises(ValueError, match="NULL"):
        selectors.sqlite_int_rows("SELECT 1, 2 UNION ALL SELECT 3, NULL", 2)
