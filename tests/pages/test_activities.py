"""Activities and follow-ups: logged from the customer page and Today; Today leaves out
customers already handled and shows due follow-ups first."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from crm.models import Activity, FollowUp
from crm.services import (
    activity_log,
    customer_stats_refresh,
    followup_create,
    followup_mark_done,
    followup_snooze,
)
from pages.today import (
    customers_due_welcome,
    customers_newly_at_risk,
    customers_overdue,
    followups_due,
    today_overview,
)
from segmentation.models import Segment, SegmentMembershipChange
from tests.factories import (
    CustomerFactory,
    PurchaseFactory,
    SegmentationRunFactory,
    SegmentFactory,
)

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def _buyer(days_ago: list[int], **fields):
    customer = CustomerFactory(**fields)
    for d in days_ago:
        PurchaseFactory(customer=customer, purchased_at=NOW - timedelta(days=d), amount=Decimal(50))
    customer_stats_refresh(customer_ids=[customer.pk])
    customer.refresh_from_db()
    return customer


def test_activity_log_records_who_when_and_what(alice):
    customer = CustomerFactory()
    activity = activity_log(
        customer=customer, kind="call", summary=" Asked about spring ", user=alice
    )
    assert (activity.kind, activity.summary, activity.created_by) == (
        "call",
        "Asked about spring",
        alice,
    )
    assert abs((activity.happened_at - timezone.now()).total_seconds()) < 5

    with pytest.raises(ValidationError):
        activity_log(customer=customer, kind="fax")
    with pytest.raises(ValidationError):
        activity_log(customer=customer, kind="note", happened_at=NOW + timedelta(days=1))


def test_follow_ups_are_created_done_once_and_snoozed():
    customer = CustomerFactory()
    today = timezone.localdate()
    with pytest.raises(ValidationError):
        followup_create(customer=customer, due_on=today - timedelta(days=1))
    follow_up = followup_create(customer=customer, due_on=today, note="Send the quote")

    snoozed = followup_snooze(follow_up=follow_up, days=3)
    assert (snoozed.due_on, snoozed.snoozed) == (today + timedelta(days=3), 1)
    with pytest.raises(ValidationError):
        followup_snooze(follow_up=follow_up, days=0)

    done = followup_mark_done(follow_up=follow_up)
    first_done = done.done_at
    assert first_done is not None
    assert followup_mark_done(follow_up=follow_up).done_at == first_done
    with pytest.raises(ValidationError):
        followup_snooze(follow_up=follow_up, days=3)


def test_an_overdue_customer_handled_since_they_became_overdue_leaves_today():
    handled = _buyer([120, 100, 80, 60, 40])  # every 20 days: overdue since 10 days ago
    noted_before = _buyer([121, 101, 81, 61, 41])
    waiting = _buyer([122, 102, 82, 62, 42])
    activity_log(customer=handled, kind="call", happened_at=NOW - timedelta(days=2))
    # A note written before they became overdue does not count as handling it.
    activity_log(customer=noted_before, kind="note", happened_at=NOW - timedelta(days=30))

    overdue = [i.customer for i in customers_overdue(now=NOW)]

    assert handled not in overdue
    assert noted_before in overdue and waiting in overdue


def test_a_new_customer_welcomed_by_an_activity_leaves_the_welcome_list():
    welcomed = _buyer([5])
    waiting = _buyer([6])
    activity_log(customer=welcomed, kind="email", summary="Welcome!")

    assert [i.customer for i in customers_due_welcome(now=NOW)] == [waiting]


def test_a_customer_contacted_since_moving_to_at_risk_leaves_the_list():
    loyal = SegmentFactory(name="Loyal", behaviour=Segment.Behaviour.LOYAL)
    at_risk = SegmentFactory(name="At risk", behaviour=Segment.Behaviour.AT_RISK)
    run = SegmentationRunFactory()
    contacted = CustomerFactory(total_spent=Decimal(900), segment=at_risk)
    waiting = CustomerFactory(total_spent=Decimal(500), segment=at_risk)
    for customer in (contacted, waiting):
        SegmentMembershipChange.objects.create(
            customer=customer,
            run=run,
            from_segment=loyal,
            to_segment=at_risk,
            changed_at=NOW - timedelta(days=3),
        )
    activity_log(customer=contacted, kind="call", happened_at=NOW - timedelta(days=1))
    activity_log(customer=waiting, kind="call", happened_at=NOW - timedelta(days=5))  # before

    assert [i.customer for i in customers_newly_at_risk(now=NOW)] == [waiting]


def test_due_follow_ups_come_first_on_today_oldest_first(staff_client):
    today = timezone.localdate()
    ann, bob, cy = (
        CustomerFactory(name="Ann"),
        CustomerFactory(name="Bob"),
        CustomerFactory(name="Cy"),
    )
    followup_create(customer=ann, due_on=today, note="Call back")
    late = followup_create(customer=bob, due_on=today)
    FollowUp.objects.filter(pk=late.pk).update(due_on=today - timedelta(days=2))
    followup_create(customer=cy, due_on=today + timedelta(days=1))  # not due yet

    assert [i.customer for i in followups_due(now=NOW)] == [bob, ann]
    assert today_overview(now=NOW).follow_ups[0].customer == bob

    html = staff_client.get(reverse("pages:today")).content.decode()
    assert html.index('id="today-follow_up"') < html.index('id="today-overdue"')
    assert "Call back" in html


def test_got_in_touch_on_today_logs_an_activity_and_returns_to_today(staff_client, alice):
    customer = _buyer([5])
    response = staff_client.post(
        reverse("pages:customer_activity_log", args=[customer.pk]),
        {"kind": "call", "summary": "Get in touch", "next": reverse("pages:today")},
    )
    assert response.status_code == 302 and response["Location"] == reverse("pages:today")
    activity = Activity.objects.get(customer=customer)
    assert (activity.kind, activity.created_by) == ("call", alice)
    page = staff_client.get(reverse("pages:today")).content.decode()
    assert f'data-customer="{customer.pk}"' not in page


def test_follow_up_set_done_and_snoozed_from_the_customer_page(staff_client):
    customer = CustomerFactory()
    due = timezone.localdate() + timedelta(days=2)
    staff_client.post(
        reverse("pages:customer_followup_create", args=[customer.pk]),
        {"due_on": due.isoformat(), "note": "Quote"},
    )
    follow_up = FollowUp.objects.get(customer=customer)
    assert (follow_up.due_on, follow_up.note) == (due, "Quote")
    assert "Quote" in staff_client.get(customer.get_absolute_url()).content.decode()

    staff_client.post(
        reverse("pages:followup_snooze", args=[customer.pk, follow_up.pk]), {"days": "7"}
    )
    follow_up.refresh_from_db()
    assert follow_up.due_on == timezone.localdate() + timedelta(days=7)

    staff_client.post(reverse("pages:followup_done", args=[customer.pk, follow_up.pk]))
    follow_up.refresh_from_db()
    assert follow_up.done_at is not None


def test_the_customer_page_shows_one_timeline_newest_first(staff_client):
    customer = CustomerFactory()
    PurchaseFactory(customer=customer, product="Old candle", purchased_at=NOW - timedelta(days=9))
    activity_log(
        customer=customer,
        kind="note",
        summary="Likes lavender",
        happened_at=NOW - timedelta(days=1),
    )
    loyal, at_risk = SegmentFactory(name="Loyal"), SegmentFactory(name="At risk")
    SegmentMembershipChange.objects.create(
        customer=customer,
        run=SegmentationRunFactory(),
        from_segment=loyal,
        to_segment=at_risk,
        changed_at=NOW - timedelta(days=4),
    )

    response = staff_client.get(customer.get_absolute_url())

    kinds = [e.kind for e in response.context["timeline"]]
    assert kinds == ["note", "segment", "sale"]
    html = response.content.decode()
    timeline = html[html.index('id="timeline"') :]
    assert (
        timeline.index("Likes lavender")
        < timeline.index("Loyal → At risk")
        < timeline.index("Old candle")
    )
