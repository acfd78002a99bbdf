"""Segmentation runs end to end on the real engine: labels, identities, history, pins, failures."""

import threading
import time
from datetime import timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from crm.models import Customer, Purchase
from crm.services import business_settings_update, customer_stats_refresh
from segmentation import explain, selectors, services
from segmentation.models import (
    CustomerPrediction,
    Membership,
    Segment,
    SegmentationRun,
    SegmentMembershipChange,
    SegmentSnapshot,
    SegmentTransition,
)
from segmentation.services import label_write, plan, runs
from tests.factories import CustomerFactory, PurchaseFactory, SegmentFactory
from tests.segmentation.shops import labels, shop_build

Status = SegmentationRun.Status


def run_now(**kwargs) -> SegmentationRun:
    run = SegmentationRun.objects.create(trigger=SegmentationRun.Trigger.COMMAND)
    return services.segmentation_run_execute(run=run, **kwargs)


def segmentation_state() -> tuple:
    """Everything a run may change, to compare before and after."""
    segments = list(
        Segment.objects.order_by("pk").values_list("pk", "name", "is_active", "size", "revenue")
    )
    return (
        labels(),
        segments,
        SegmentMembershipChange.objects.count(),
        SegmentSnapshot.objects.count(),
        SegmentTransition.objects.count(),
    )


def staged_ids(monkeypatch) -> list[int]:
    """The customers the label staging copies from now on (filled as runs stage them)."""
    staged: list[int] = []
    copy = label_write._labels_copy

    def staged_too(ids, labels, reason_ids):
        staged.extend(ids.tolist())
        return copy(ids, labels, reason_ids)

    monkeypatch.setattr(label_write, "_labels_copy", staged_too)
    return staged


@pytest.fixture
def shop(db):
    return shop_build()


def test_run_puts_every_customer_in_a_named_segment_with_a_reason(shop):
    run = run_now()

    assert run.status == Status.SUCCEEDED, run.error
    assert run.method == SegmentationRun.Method.KMEANS
    assert run.k >= 2
    assert run.confidence_note
    assert (run.n_customers, run.n_clustered, run.n_prospects, run.n_opted_out) == (63, 60, 2, 1)
    assert run.active_slot is None
    assert {"feature_query", "transfer", "label_write", "history_write", "fit"} <= set(run.timings)
    current = labels()
    champions = {current[pk][0] for pk in shop.groups["champions"]}
    assert len(champions) == 1
    champion_segment = Segment.objects.get(pk=champions.pop())
    assert champion_segment.kind == Segment.Kind.CLUSTER
    assert champion_segment.name != "Lost"
    assert all(current[pk][1] for pk in shop.buyers)
    prospects = Segment.objects.get(kind=Segment.Kind.PROSPECTS, is_active=True)
    assert {current[pk][0] for pk in shop.prospects} == {prospects.pk}
    opted = Segment.objects.get(kind=Segment.Kind.OPTED_OUT, is_active=True)
    assert {current[pk] for pk in shop.opted_out} == {(opted.pk, "Opted out of profiling.")}


def test_run_precomputes_segment_figures_and_snapshots(shop):
    run = run_now()

    active = list(Segment.objects.active())
    assert sum(s.size for s in active) == 63
    assert sum(s.share_customers for s in active) == pytest.approx(1)
    assert sum(s.share_revenue for s in active) == pytest.approx(1)
    assert sum(s.revenue for s in active) == sum(
        Purchase.objects.filter(customer_id__in=shop.buyers).values_list("amount", flat=True)
    )
    assert len({s.color for s in active}) == len(active)
    snapshots = {s.segment_id: s for s in SegmentSnapshot.objects.filter(run=run)}
    assert set(snapshots) == {s.pk for s in active}
    champion = Customer.objects.get(pk=shop.groups["champions"][0]).membership.segment
    assert snapshots[champion.pk].avg_rating == pytest.approx(5)
    assert snapshots[champion.pk].nps == pytest.approx(100)
    assert snapshots[champion.pk].size == 20


def test_first_run_records_history_for_every_customer_it_places(shop):
    run = run_now()

    assert run.n_moved == 63
    assert SegmentMembershipChange.objects.filter(run=run).count() == 63
    assert sum(run.transitions.values_list("count", flat=True)) == 63
    assert not run.transitions.exclude(from_segment=None).exists()


def test_rerun_on_unchanged_data_keeps_assignments_ids_and_renamed_names(shop):
    run_now()
    champion = Customer.objects.get(pk=shop.groups["champions"][0]).membership.segment
    services.segment_update(segment=champion, name="My favourites", description="Treat well.")
    before = labels()
    history = SegmentMembershipChange.objects.count()

    rerun = run_now()

    assert rerun.status == Status.SUCCEEDED, rerun.error
    assert labels() == before
    assert rerun.n_moved == 0
    assert SegmentMembershipChange.objects.count() == history
    assert not rerun.transitions.exists()
    champion.refresh_from_db()
    assert champion.is_active
    assert (champion.name, champion.description) == ("My favourites", "Treat well.")
    assert champion.auto_name != "My favourites"
    assert not Segment.objects.filter(is_active=False).exists()


def test_history_rows_are_written_for_movers_only(shop):
    run_now()
    lost = Customer.objects.get(pk=shop.groups["lost"][0])
    old_segment = lost.membership.segment_id
    now = timezone.now()
    Purchase.objects.bulk_create(
        Purchase(customer=lost, amount=Decimal("190"), purchased_at=now - timedelta(days=2 + 9 * i))
        for i in range(12)
    )
    customer_stats_refresh(customer_ids=[lost.pk])

    rerun = run_now()

    changes = SegmentMembershipChange.objects.filter(run=rerun)
    assert rerun.n_moved == changes.count() >= 1
    assert changes.filter(customer=lost, from_segment_id=old_segment).exists()
    assert all(c.from_segment_id != c.to_segment_id for c in changes)
    moved_total = sum(rerun.transitions.values_list("count", flat=True))
    assert moved_total == rerun.n_moved


def test_pinned_customers_keep_their_segment_through_runs(shop):
    run_now()
    lost = Customer.objects.get(pk=shop.groups["lost"][0])
    champion_segment = Customer.objects.get(pk=shop.groups["champions"][0]).membership.segment
    services.segment_pin(customer=lost, segment=champion_segment)

    rerun = run_now()

    lost.refresh_from_db()
    assert lost.membership.pinned
    assert lost.membership.segment_id == champion_segment.pk
    assert lost.membership.reason.startswith("Pinned to")
    assert rerun.n_pinned == 1
    assert not SegmentMembershipChange.objects.filter(run=rerun, customer=lost).exists()
    champion_segment.refresh_from_db()
    assert champion_segment.size == 21


def test_pin_and_unpin_are_recorded_in_the_history(shop):
    run_now()
    customer = Customer.objects.get(pk=shop.groups["casual"][0])
    target = Customer.objects.get(pk=shop.groups["champions"][0]).membership.segment

    services.segment_pin(customer=customer, segment=target)
    services.segment_unpin(customer=customer)

    pin, unpin = SegmentMembershipChange.objects.filter(customer=customer, run=None).order_by("id")
    assert pin.to_segment == target
    assert unpin.reason.startswith("Unpinned")
    customer.refresh_from_db()
    assert not customer.membership.pinned
    rerun = run_now()
    customer.refresh_from_db()
    assert customer.membership.segment_id != target.pk
    assert SegmentMembershipChange.objects.filter(run=rerun, customer=customer).exists()


def test_pinning_a_customer_without_a_segment_asks_for_one(db):
    with pytest.raises(ValidationError, match="choose one"):
        services.segment_pin(customer=CustomerFactory())


def test_segment_update_marks_the_name_custom_and_refuses_duplicates(db):
    first = SegmentFactory(name="Champions")
    second = SegmentFactory(name="Loyal")
    services.segment_update(segment=second, name="VIP", description="")
    assert second.name_is_custom
    with pytest.raises(ValidationError, match="already called"):
        services.segment_update(segment=second, name="Champions", description="")
    services.segment_update(segment=second, name="Loyal", description="")
    assert not second.name_is_custom
    assert first.name == "Champions"


@pytest.mark.parametrize("buyers", [0, 1, 4])
def test_too_few_customers_are_rejected_and_previous_labels_stay(db, buyers):
    previous = SegmentFactory(name="Earlier segment")
    customers = [CustomerFactory(segment=previous, segment_reason="earlier") for _ in range(buyers)]
    for customer in customers:
        PurchaseFactory(customer=customer)
    bystander = CustomerFactory(segment=previous, segment_reason="earlier")
    before = segmentation_state()

    run = run_now()

    assert run.status == Status.REJECTED
    assert run.error
    assert run.active_slot is None
    # The run still says whom it saw.
    assert (run.n_customers, run.n_clustered, run.n_prospects) == (buyers + 1, buyers, 1)
    assert segmentation_state() == before
    bystander.refresh_from_db()
    assert bystander.membership.segment == previous


def test_identical_customers_give_a_clear_outcome_and_keep_previous_labels(db):
    previous = SegmentFactory(name="Earlier segment")
    at = timezone.now() - timedelta(days=5)
    customers = Customer.objects.bulk_create(Customer(name=f"twin {i}") for i in range(60))
    Membership.objects.bulk_create(
        Membership(customer=c, segment=previous, reason="earlier") for c in customers
    )
    Purchase.objects.bulk_create(
        Purchase(customer=c, amount=Decimal("20"), purchased_at=at) for c in customers
    )
    customer_stats_refresh()
    before = segmentation_state()

    run = run_now()

    assert run.status == Status.REJECTED
    assert "cluster" in run.error.lower() or "identical" in run.error.lower(), run.error
    assert segmentation_state() == before


def test_failure_in_the_middle_of_writing_leaves_the_previous_segmentation_intact(
    shop, monkeypatch
):
    run_now()
    Purchase.objects.bulk_create(
        Purchase(customer_id=pk, amount=Decimal("300"), purchased_at=timezone.now())
        for pk in shop.groups["lost"]
    )
    customer_stats_refresh(customer_ids=shop.groups["lost"])
    before = segmentation_state()
    real_switch = label_write.labels_switch

    def switch_then_crash():
        assert real_switch() > 0  # labels were rewritten in the database...
        raise RuntimeError("disk full")  # ...and then the write fails

    monkeypatch.setattr(label_write, "labels_switch", switch_then_crash)

    run = run_now()

    assert run.status == Status.FAILED
    assert "disk full" in run.error
    assert run.active_slot is None
    assert segmentation_state() == before


def test_a_finished_run_executed_again_does_nothing(shop):
    run = run_now()
    before = segmentation_state()

    again = services.segmentation_run_execute(run=run)

    assert again.status == Status.SUCCEEDED
    assert segmentation_state() == before


def test_vanished_segments_are_retired_not_deleted(shop):
    run_now()
    ghost = SegmentFactory(
        name="Ghost", centroid={"recency_days": 99.0, "frequency": 99.0}, size=0, is_active=True
    )

    run_now()

    ghost.refresh_from_db()
    assert not ghost.is_active
    assert ghost.retired_at is not None


def test_request_creates_a_pending_run_and_enqueues_it_after_commit(
    db, django_capture_on_commit_callbacks, monkeypatch
):
    sent = []
    monkeypatch.setattr(
        "segmentation.tasks.segmentation_run_execute.delay",
        lambda run_id: sent.append(run_id) or type("R", (), {"id": "task-1"})(),
    )
    with django_capture_on_commit_callbacks(execute=True):
        run = services.segmentation_run_request(trigger=SegmentationRun.Trigger.MANUAL)

    assert run.status == Status.PENDING
    assert sent == [run.pk]
    run.refresh_from_db()
    assert run.task_id == "task-1"


def test_request_while_a_run_is_in_progress_is_recorded_as_skipped(db, monkeypatch):
    monkeypatch.setattr("segmentation.services.runs._run_enqueue", lambda run_id: None)
    first = services.segmentation_run_request(trigger=SegmentationRun.Trigger.MANUAL)

    second = services.segmentation_run_request(trigger=SegmentationRun.Trigger.SCHEDULE)

    assert second.status == Status.SKIPPED
    assert f"#{first.pk}" in second.error
    assert SegmentationRun.objects.filter(status=Status.PENDING).count() == 1


def test_a_run_created_elsewhere_is_skipped_while_another_holds_the_slot(db, monkeypatch):
    monkeypatch.setattr("segmentation.services.runs._run_enqueue", lambda run_id: None)
    holder = services.segmentation_run_request(trigger=SegmentationRun.Trigger.MANUAL)

    run = run_now()

    assert run.status == Status.SKIPPED
    assert f"#{holder.pk}" in run.error


def test_a_run_whose_worker_died_is_recovered_by_the_next_trigger(db, monkeypatch):
    monkeypatch.setattr("segmentation.services.runs._run_enqueue", lambda run_id: None)
    dead = services.segmentation_run_request(trigger=SegmentationRun.Trigger.MANUAL)
    SegmentationRun.objects.filter(pk=dead.pk).update(
        status=Status.RUNNING, heartbeat_at=timezone.now() - timedelta(hours=2)
    )

    fresh = services.segmentation_run_request(trigger=SegmentationRun.Trigger.MANUAL)

    dead.refresh_from_db()
    assert dead.status == Status.FAILED
    assert "No sign of life" in dead.error
    assert fresh.status == Status.PENDING


def test_an_unreachable_broker_fails_the_run_and_frees_the_slot(
    db, django_capture_on_commit_callbacks, monkeypatch
):
    def broken(run_id):
        raise ConnectionError("broker down")

    monkeypatch.setattr("segmentation.tasks.segmentation_run_execute.delay", broken)
    with django_capture_on_commit_callbacks(execute=True):
        run = services.segmentation_run_request(trigger=SegmentationRun.Trigger.MANUAL)

    run.refresh_from_db()
    assert run.status == Status.FAILED
    assert "broker down" in run.error
    assert run.active_slot is None


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_triggers_give_one_run_and_one_skipped(monkeypatch):
    monkeypatch.setattr("segmentation.services.runs._run_enqueue", lambda run_id: None)
    barrier = threading.Barrier(2)
    statuses = []

    def trigger():
        try:
            barrier.wait(timeout=10)
            run = services.segmentation_run_request(trigger=SegmentationRun.Trigger.MANUAL)
            statuses.append(run.status)
        finally:
            connection.close()

    threads = [threading.Thread(target=trigger) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(statuses) == [Status.PENDING, Status.SKIPPED]
    assert SegmentationRun.objects.count() == 2


def test_a_run_redelivered_after_its_worker_died_starts_over_once(shop):
    run = SegmentationRun.objects.create(
        status=Status.RUNNING, active_slot=1, started_at=timezone.now()
    )

    run = services.segmentation_run_execute(run=run)

    assert run.status == Status.SUCCEEDED, run.error
    assert run.worker_losses == 1


def test_a_run_whose_worker_keeps_dying_is_given_up(shop):
    run = SegmentationRun.objects.create(status=Status.RUNNING, active_slot=1, worker_losses=1)
    before = segmentation_state()

    run = services.segmentation_run_execute(run=run)

    assert run.status == Status.FAILED
    assert "Gave up" in run.error
    assert run.active_slot is None
    assert segmentation_state() == before


def test_a_rerun_writes_exactly_what_changed_since_the_last_run(shop):
    """A rerun stages only customers whose label differs; every kind of change still lands."""
    run_now()
    sizes_before = dict(Segment.objects.active().values_list("pk", "size"))
    changed_reason = Membership.objects.exclude(segment=None).filter(pinned=False).first()
    Membership.objects.filter(pk=changed_reason.pk).update(reason="An outdated reason.")
    archived = Customer.objects.get(pk=shop.groups["lost"][0])
    Customer.objects.filter(pk=archived.pk).update(is_archived=True)
    newcomer = CustomerFactory()  # no purchase yet: a prospect

    rerun = run_now()

    assert rerun.status == Status.SUCCEEDED, rerun.error
    now_labels = labels()
    assert now_labels[changed_reason.customer_id][1] != "An outdated reason."
    assert now_labels[changed_reason.customer_id][0] == changed_reason.segment_id
    assert now_labels[archived.pk] == (None, "")
    prospects = Segment.objects.get(kind=Segment.Kind.PROSPECTS, is_active=True)
    assert now_labels[newcomer.pk][0] == prospects.pk
    moved = set(
        SegmentMembershipChange.objects.filter(run=rerun).values_list("customer_id", flat=True)
    )
    assert {archived.pk, newcomer.pk} <= moved
    assert changed_reason.customer_id not in moved  # same segment: not a move
    # Sizes count everyone, staged or not.
    assert Segment.objects.get(pk=prospects.pk).size == sizes_before[prospects.pk] + 1
    assert (
        sum(Segment.objects.active().values_list("size", flat=True))
        == Customer.objects.filter(is_archived=False).count()
    )
    # The run counts the customers from its staging read as the counting query does: the
    # archived one left out, the newcomer in.
    counted = selectors.customer_counts(pinned=0)
    assert (rerun.n_customers, rerun.n_opted_out) == (counted.total, counted.opted_out)
    assert rerun.n_customers == Customer.objects.filter(is_archived=False).count()


def test_staging_leaves_pinned_customers_out_and_archived_ones_never_placed_unwritten(
    shop, monkeypatch
):
    run_now()
    pinned = Customer.objects.get(pk=shop.groups["casual"][0])
    target = Customer.objects.get(pk=shop.groups["champions"][0]).membership.segment
    services.segment_pin(customer=pinned, segment=target)
    never_placed = CustomerFactory(is_archived=True)
    newcomer = CustomerFactory()  # no membership row yet: staged as a prospect
    staged = staged_ids(monkeypatch)

    rerun = run_now()

    assert rerun.status == Status.SUCCEEDED, rerun.error
    assert newcomer.pk in staged
    assert pinned.pk not in staged
    assert never_placed.pk not in staged
    assert not Membership.objects.filter(customer=never_placed).exists()
    assert not SegmentMembershipChange.objects.filter(customer=never_placed).exists()
    pinned.refresh_from_db()
    assert (pinned.membership.segment_id, pinned.membership.pinned) == (target.pk, True)


def test_label_write_stand_ins_never_collide():
    """Special labels, segment stand-ins and the no-reason number are told apart: a staged
    label is "unchanged" only when its real segment and reason are."""
    labels = {int(label) for label in plan.Label}
    slots = {int(slot) for slot in plan.SegmentSlot}
    assert len(labels) == len(plan.Label) and max(labels) < 0
    assert len(slots) == len(plan.SegmentSlot) and max(slots) < 1  # real ids are > 0
    assert plan.NO_REASON < 0  # real reason numbers start at 0


def test_a_run_silent_for_a_few_minutes_is_recovered_not_after_the_time_limit(db, monkeypatch):
    monkeypatch.setattr("segmentation.services.runs._run_enqueue", lambda run_id: None)
    dead = services.segmentation_run_request(trigger=SegmentationRun.Trigger.MANUAL)
    SegmentationRun.objects.filter(pk=dead.pk).update(
        status=Status.RUNNING, heartbeat_at=timezone.now() - timedelta(minutes=6)
    )

    fresh = services.segmentation_run_request(trigger=SegmentationRun.Trigger.MANUAL)

    dead.refresh_from_db()
    assert dead.status == Status.FAILED
    assert fresh.status == Status.PENDING


@pytest.mark.django_db(transaction=True)
def test_a_long_phase_keeps_the_heartbeat_going(shop, monkeypatch, settings):
    settings.RUN_HEARTBEAT_SECONDS = 0.2
    beats = []
    real_compute = runs._plan_compute

    def slow_compute(run, reporter, timings):
        started = SegmentationRun.objects.get(pk=run.pk).heartbeat_at
        time.sleep(1.0)  # a long engine phase: no progress step for a while
        beats.append(SegmentationRun.objects.get(pk=run.pk).heartbeat_at > started)
        return real_compute(run, reporter, timings)

    monkeypatch.setattr(runs, "_plan_compute", slow_compute)

    run = run_now()

    assert run.status == Status.SUCCEEDED
    assert beats == [True]


@pytest.mark.django_db(transaction=True)
def test_a_database_restart_during_a_run_fails_it_and_frees_the_slot(shop, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("a server restart is a PostgreSQL event; SQLite has no server")

    def restart_under_the_run(run, reporter, timings):
        # What a restart does to the run's session: the server ends it.
        connection.ensure_connection()
        pid = connection.connection.info.backend_pid
        other = connection.copy()
        with other.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", [pid])
        other.close()
        with connection.cursor() as cur:
            cur.execute("SELECT 1")  # the next statement finds the connection gone

    monkeypatch.setattr(runs, "_plan_compute", restart_under_the_run)
    run = SegmentationRun.objects.create(trigger=SegmentationRun.Trigger.COMMAND)

    run = services.segmentation_run_execute(run=run)

    assert run.status == Status.FAILED
    assert run.active_slot is None
    assert (
        services.segmentation_run_request(
            trigger=SegmentationRun.Trigger.COMMAND, enqueue=False
        ).status
        == Status.PENDING
    )


def test_a_rerun_words_its_reasons_with_the_last_runs_splits_where_they_still_fit(
    shop, monkeypatch
):
    """A nightly run whose rules barely move keeps yesterday's wording, so it rewrites only
    the customers whose segment or reason really changes."""
    first = run_now()
    recorded = first.params["tree_thresholds"]
    assert recorded and all(isinstance(v, list) for v in recorded.values())
    handed = []
    original = explain.surrogate_explanation

    def spy(*args, **kwargs):
        handed.append(kwargs.get("previous_thresholds"))
        return original(*args, **kwargs)

    monkeypatch.setattr(explain, "surrogate_explanation", spy)
    rerun = run_now()

    assert rerun.status == Status.SUCCEEDED, rerun.error
    assert handed == [recorded]


def table_indexes(model) -> dict[str, tuple]:
    """The table's indexes by name: their columns and whether they are unique."""
    with connection.cursor() as cur:
        found = connection.introspection.get_constraints(cur, model._meta.db_table)
    return {
        name: (tuple(info["columns"]), info["unique"])
        for name, info in found.items()
        if info["index"]
    }


def test_a_first_run_into_empty_tables_leaves_every_index_and_places_everyone(shop):
    tables = (Membership, SegmentMembershipChange, CustomerPrediction)
    indexes_before = {m: table_indexes(m) for m in tables}
    assert not Membership.objects.exists()

    run = run_now()

    assert run.status == Status.SUCCEEDED, run.error
    assert {m: table_indexes(m) for m in indexes_before} == indexes_before
    assert all(segment_id is not None for segment_id, _ in labels().values())
    assert SegmentMembershipChange.objects.filter(run=run).count() == Customer.objects.count()


def test_a_first_run_that_fails_mid_write_leaves_no_row_and_every_index(shop, monkeypatch):
    indexes_before = {m: table_indexes(m) for m in (Membership, SegmentMembershipChange)}
    real_switch = label_write.labels_switch

    def switch_then_crash():
        assert real_switch() > 0
        raise RuntimeError("disk full")

    monkeypatch.setattr(label_write, "labels_switch", switch_then_crash)

    run = run_now()

    assert run.status == Status.FAILED
    assert not Membership.objects.exists()
    assert not SegmentMembershipChange.objects.exists()
    assert {m: table_indexes(m) for m in indexes_before} == indexes_before


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner statistics")
def test_a_run_samples_the_segment_history_again_and_no_other_table(shop):
    with CaptureQueriesContext(connection) as queries:
        run = run_now()

    assert run.status == Status.SUCCEEDED, run.error
    analyzed = [q["sql"] for q in queries if q["sql"].startswith("ANALYZE")]
    history = connection.ops.quote_name(SegmentMembershipChange._meta.db_table)
    # The staging temp table is sampled as it is loaded; of the run's tables, the history.
    assert [sql for sql in analyzed if label_write.LABELS_TABLE not in sql] == [
        f"ANALYZE {history}"
    ]


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's query plans")
def test_a_nights_few_changed_labels_are_switched_without_walking_every_membership(db):
    Membership.objects.bulk_create([Membership(customer_id=pk) for pk in range(1, 201)])
    label_write._temp_tables_create()
    label_write._rows_insert(label_write.REASONS_TABLE, ("id", "reason"), [(0, "Loyal.")])
    label_write._labels_copy(*(np.array(v) for v in ([5, 50, 150], [0, 0, 0], [0, 0, 0])))
    label_write._label_map_load({0: None})
    with CaptureQueriesContext(connection) as queries:
        label_write.labels_switch()
    update = next(q["sql"] for q in queries if q["sql"].startswith("UPDATE"))

    with connection.cursor() as cur:
        cur.execute(f"EXPLAIN QUERY PLAN {update}")
        plan = [row[-1] for row in cur.fetchall()]

    membership = Membership._meta.db_table
    assert not [step for step in plan if step.startswith(f"SCAN {membership}")], plan
    assert any(step.startswith(f"SEARCH {membership}") for step in plan), plan


def test_a_run_words_amounts_in_the_businesss_currency(db):
    business_settings_update(name="Shop", currency="CHF", time_zone="Europe/Zurich")

    assert runs._engine_config().currency == "CHF"


def test_reasons_longer_than_the_column_are_cut_and_not_rewritten_by_the_next_run(
    shop, monkeypatch
):
    engine = runs._engine()
    real = engine.segment_customers
    width = Membership._meta.get_field("reason").max_length

    def long_reasons(*args, **kwargs):
        result = real(*args, **kwargs)
        # Two sentences per segment that differ only past the column's width.
        codes, table = pd.factorize(
            np.asarray(
                [
                    f"{text} {'x' * width} {'one' if i % 2 else 'two'}"
                    for i, text in enumerate(result.reasons)
                ],
                dtype=object,
            )
        )
        result.reason_codes, result.reason_table = codes, np.asarray(table, dtype=object)
        return result

    monkeypatch.setattr(engine, "segment_customers", long_reasons)
    first = run_now()
    assert first.status == Status.SUCCEEDED, first.error
    buyers = Membership.objects.filter(customer__in=shop.buyers)
    stored = dict(buyers.values_list("customer_id", "reason"))
    assert {len(reason) for reason in stored.values()} == {width}
    assert all(reason.endswith("x") for reason in stored.values())
    staged = staged_ids(monkeypatch)

    second = run_now()

    assert second.status == Status.SUCCEEDED, second.error
    assert not set(staged) & set(stored)
    assert dict(buyers.values_list("customer_id", "reason")) == stored


def test_the_label_write_looks_staged_labels_up_by_key_and_leaves_the_session_as_it_was(
    shop, monkeypatch
):
    if connection.vendor != "postgresql":
        pytest.skip("page costs are PostgreSQL's planner settings")

    def page_cost() -> str:
        with connection.cursor() as cur:
            cur.execute("SELECT current_setting('random_page_cost')")
            return cur.fetchone()[0]

    default = page_cost()
    seen = []
    switch = label_write.labels_switch

    def switch_noting_the_cost():
        seen.append(page_cost())
        return switch()

    monkeypatch.setattr(label_write, "labels_switch", switch_noting_the_cost)

    run = run_now()

    assert run.status == Status.SUCCEEDED, run.error
    # An SSD-like cost while the labels are written: a few thousand staged labels of a
    # million are found through the memberships' primary key, not by hashing the table.
    assert seen == ["1.1"] != [default]
    # The test's own transaction encloses the run: the setting is back for what follows.
    assert page_cost() == default
