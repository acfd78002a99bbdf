"""What a one-person business acts on this morning: short lists read from indexed columns."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Exists, F, Func, OuterRef, Q
from django.utils import timezone

from crm.models import FEEDBACK_UNHAPPY, Activity, Customer, Feedback, FollowUp
from crm.money import money_about_text, money_text
from crm.selectors import business_get
from offers.models import Offer, OfferResponse
from offers.selectors import Acceptance, acceptance_by_segment_offer
from offers.services import offer_holds_out
from pages.predictions import slipping_away
from segmentation.models import Segment, SegmentationRun
from segmentation.selectors import customer_membership, segment_arrivals

DEFAULT_LIMIT = 10

# Unanswered unhappy feedback: matches the partial index feedback_unhappy_open_idx.
UNHAPPY_UNANSWERED = Q(answered_at__isnull=True) & FEEDBACK_UNHAPPY


class Kind:
    """Which Today list an item belongs to."""

    OVERDUE = "overdue"
    UNHAPPY = "unhappy"
    WELCOME = "welcome"
    AT_RISK = "at_risk"
    SLIPPING = "slipping"
    FOLLOW_UP = "follow_up"


class Action:
    """The suggested action of an item."""

    CONTACT = "contact"  # get in touch (with the suggested offer, when there is one)
    ANSWER_FEEDBACK = "answer_feedback"  # answer, then crm.services.feedback_mark_answered
    PRESENT_OFFER = "present_offer"  # offer_response_record(outcome="presented")
    FOLLOW_UP = "follow_up"  # get back to them, then followup_mark_done (or snooze)


@dataclass(frozen=True)
class TodayItem:
    """One thing to act on: the customer, why, and the suggested action.

    Link to the customer with ``customer.pk``; for ``Action.ANSWER_FEEDBACK`` the action is
    on ``feedback`` (``crm.services.feedback_mark_answered``), for ``Action.PRESENT_OFFER``
    on ``offer`` (``offer_response_record``); ``Action.CONTACT`` may carry an ``offer`` to mention.
    """

    kind: str
    customer: Customer
    headline: str
    action: str
    action_label: str
    feedback: Feedback | None = None
    offer: Offer | None = None
    from_segment: Segment | None = None
    follow_up: FollowUp | None = None
    numbers: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Today:
    """The four Today lists (``today_overview``)."""

    overdue: list[TodayItem]
    unhappy: list[TodayItem]
    welcome: list[TodayItem]
    at_risk: list[TodayItem]
    slipping: list[TodayItem] = field(default_factory=list)
    follow_ups: list[TodayItem] = field(default_factory=list)

    @property
    def count(self) -> int:
        lists = (
            self.follow_ups,
            self.overdue,
            self.unhappy,
            self.welcome,
            self.at_risk,
            self.slipping,
        )
        return sum(len(items) for items in lists)


def today_overview(*, now: datetime | None = None, limit: int = DEFAULT_LIMIT) -> Today:
    """The four Today lists, each at most ``limit`` items (about a dozen bounded queries)."""
    now = now or timezone.now()
    return Today(
        follow_ups=followups_due(now=now, limit=limit),
        overdue=customers_overdue(now=now, limit=limit),
        unhappy=feedback_unhappy_unanswered(limit=limit),
        welcome=customers_due_welcome(now=now, limit=limit),
        at_risk=customers_newly_at_risk(now=now, limit=limit),
        slipping=customers_slipping_away(limit=limit),
    )


def followups_due(*, now: datetime | None = None, limit: int = DEFAULT_LIMIT) -> list[TodayItem]:
    """Open follow-ups due today or earlier, the longest waiting first (archived customers
    left out). Reads the partial index of open follow-ups."""
    today = timezone.localdate(now or timezone.now())
    rows = (
        FollowUp.objects.due_on(today)
        .filter(customer__is_archived=False)
        .select_related("customer", "customer__membership__segment")
        .order_by("due_on", "id")[:limit]
    )
    items = []
    for follow_up in rows:
        late = (today - follow_up.due_on).days
        when = "today" if late == 0 else f"{_days(late)} ago"
        items.append(
            TodayItem(
                kind=Kind.FOLLOW_UP,
                customer=follow_up.customer,
                headline=f"Follow-up due {when}"
                + (f": {follow_up.note}" if follow_up.note else "."),
                action=Action.FOLLOW_UP,
                action_label="Get back to them",
                follow_up=follow_up,
                numbers={"due_on": follow_up.due_on, "days_late": late},
            )
        )
    return items


def _handled_since(moment) -> Exists:
    """An activity with the customer (OuterRef "pk") at or after ``moment``: they were
    handled, and leave the list."""
    return Exists(Activity.objects.filter(customer_id=OuterRef("pk"), happened_at__gte=moment))


class _FilterOnly(Func):
    """A column, to be checked row by row rather than searched. SQLite would plan a range on
    the column's own index and then sort a third of all customers by total spent (1.2 s at
    a million); behind a unary plus (the same value) it walks the spending index instead.
    PostgreSQL weighs the LIMIT itself: the column as is."""

    arity = 1
    template = "%(expressions)s"

    def as_sqlite(self, compiler, connection, **extra_context):
        return self.as_sql(compiler, connection, template="+%(expressions)s", **extra_context)


def customers_overdue(
    *,
    now: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    max_days_since: int = 365,
) -> list[TodayItem]:
    """Customers late by their own buying rhythm, most valuable (total spent) first.

    Rhythm = mean days between purchases = (last - first purchase) / (purchases - 1), for
    customers with at least OVERDUE_MIN_PURCHASES purchases. Overdue once the days since the
    last purchase exceed OVERDUE_FACTOR x the rhythm (at least a day): the stored
    Customer.overdue_from has passed. Customers silent for more than ``max_days_since``
    days are lost rather than overdue and left out; so are customers handled (an activity)
    since they became overdue.
    """
    now = now or timezone.now()
    customers = list(
        Customer.objects.active()
        # Walks customer_overdue_value_idx (customers with a rhythm, by total spent) from the
        # top, checking each one's stored moments, until `limit` are found: no sort.
        .alias(
            overdue_at=_FilterOnly(F("overdue_from")),
            last_bought_at=_FilterOnly(F("last_purchase_at")),
        )
        .filter(
            overdue_from__isnull=False,  # the partial index's own condition
            overdue_at__lte=now,
            last_bought_at__lte=now,
            last_bought_at__gte=now - timedelta(days=max_days_since),
        )
        .exclude(_handled_since(OuterRef("overdue_from")))
        .select_related("membership__segment")
        .order_by("-total_spent", "-id")[:limit]
    )
    offers = _suggested_offers(customers, now=now)
    items = []
    for c in customers:
        rhythm = (c.last_purchase_at - c.first_purchase_at).total_seconds() / 86400
        rhythm /= c.purchase_count - 1
        days_since = (now - c.last_purchase_at).total_seconds() / 86400
        items.append(
            TodayItem(
                kind=Kind.OVERDUE,
                customer=c,
                headline=(
                    f"Usually buys every {_days(rhythm)}, last bought {_days(days_since)} ago."
                ),
                action=Action.CONTACT,
                action_label=_contact_label(offers.get(c.pk)),
                offer=offers.get(c.pk),
                numbers={
                    "rhythm_days": round(rhythm, 1),
                    "days_since": round(days_since, 1),
                    "purchase_count": c.purchase_count,
                    "total_spent": c.total_spent,
                },
            )
        )
    return items


def feedback_unhappy_unanswered(*, limit: int = DEFAULT_LIMIT) -> list[TodayItem]:
    """Unanswered feedback with a rating of 2 or less or an NPS of 6 or less, newest first.

    One item per feedback; archived customers are left out. Reads the partial index
    feedback_unhappy_open_idx, so the cost does not grow with happy or answered rows.
    """
    rows = (
        Feedback.objects.filter(UNHAPPY_UNANSWERED, customer__is_archived=False)
        .select_related("customer", "customer__membership__segment")
        .order_by("-created_at", "-id")[:limit]
    )
    items = []
    for fb in rows:
        scores = []
        if fb.rating is not None:
            scores.append(f"rated {fb.rating}/5")
        if fb.nps is not None:
            scores.append(f"would recommend {fb.nps}/10")
        when = timezone.localdate(fb.created_at)
        items.append(
            TodayItem(
                kind=Kind.UNHAPPY,
                customer=fb.customer,
                headline=f"{' and '.join(scores).capitalize()} on {when:%d %b %Y}, not answered.",
                action=Action.ANSWER_FEEDBACK,
                action_label="Answer, then mark as answered",
                feedback=fb,
                numbers={"rating": fb.rating, "nps": fb.nps, "created_at": fb.created_at},
            )
        )
    return items


def customers_due_welcome(
    *, now: datetime | None = None, limit: int = DEFAULT_LIMIT, days: int = 30
) -> list[TodayItem]:
    """Customers whose first purchase is within ``days`` days and who were offered nothing.

    Oldest first purchase first (their welcome is the most overdue). Reads the
    first-purchase index; "offered nothing" means no offer row at all, held out included.
    """
    now = now or timezone.now()
    customers = list(
        Customer.objects.active()
        .filter(first_purchase_at__gte=now - timedelta(days=days), first_purchase_at__lte=now)
        .exclude(Exists(OfferResponse.objects.filter(customer_id=OuterRef("pk"))))
        # Welcomed already: an activity since their first purchase.
        .exclude(_handled_since(OuterRef("first_purchase_at")))
        .select_related("membership__segment")
        .order_by("first_purchase_at", "id")[:limit]
    )
    offers = _suggested_offers(customers, now=now)
    items = []
    for c in customers:
        offer = offers.get(c.pk)
        days_ago = (now - c.first_purchase_at).total_seconds() / 86400
        items.append(
            TodayItem(
                kind=Kind.WELCOME,
                customer=c,
                headline=f"First purchase {_days(days_ago)} ago; no offer made yet.",
                action=Action.PRESENT_OFFER if offer else Action.CONTACT,
                action_label=f"Present “{offer}”" if offer else "Send a welcome message",
                offer=offer,
                numbers={"days_since_first": round(days_ago, 1), "total_spent": c.total_spent},
            )
        )
    return items


def customers_newly_at_risk(
    *, now: datetime | None = None, limit: int = DEFAULT_LIMIT, min_total_spent=None
) -> list[TodayItem]:
    """Customers the latest successful run moved into an at-risk segment, biggest spenders first.

    At-risk segments: ``Segment.objects.at_risk()``, by the behaviour each run sets (at risk,
    can't lose them, about to sleep, unhappy high-value), whatever the owner named them.
    Only customers still in that segment and coming from another segment that was not at
    risk (a first assignment is not a move); ``min_total_spent`` sets a floor. Reads the
    run's changes through the (run, to_segment) index, so the cost follows how many
    customers the run moved into those segments (measured: 0.35 s for 40,000 movers,
    SQLite, 1M customers), not the number of customers.
    """
    now = now or timezone.now()
    run = SegmentationRun.objects.latest_succeeded()
    if run is None:
        return []
    risky_ids = list(Segment.objects.at_risk().values_list("pk", flat=True))
    if not risky_ids:
        return []
    changes = segment_arrivals(run=run, segment_ids=risky_ids).exclude(
        # Handled: an activity since the run moved them.
        Exists(
            Activity.objects.filter(
                customer_id=OuterRef("customer_id"), happened_at__gte=OuterRef("changed_at")
            )
        )
    )
    if min_total_spent is not None:
        changes = changes.filter(customer__total_spent__gte=min_total_spent)
    changes = list(changes[:limit])
    offers = _suggested_offers([ch.customer for ch in changes], now=now)
    currency = business_get().currency
    items = []
    for ch in changes:
        c = ch.customer
        offer = offers.get(c.pk)
        origin = f"from “{ch.from_segment}” " if ch.from_segment else ""
        items.append(
            TodayItem(
                kind=Kind.AT_RISK,
                customer=c,
                headline=(
                    f"Moved {origin}to “{c.membership.segment}” "
                    f"on {timezone.localdate(ch.changed_at):%d %b}"
                    f" after spending {money_text(c.total_spent, currency)} in all."
                ),
                action=Action.CONTACT,
                action_label=_contact_label(offer),
                offer=offer,
                from_segment=ch.from_segment,
                numbers={"total_spent": c.total_spent, "run_id": run.pk},
            )
        )
    return items


def _suggested_offers(customers: list[Customer], *, now: datetime) -> dict[int, Offer]:
    """Per customer, the open offer meant for their segment with the best observed acceptance.

    The posterior mean (1 + accepted) / (2 + presented) in the segment, deterministic so the
    list does not reshuffle; offers the customer already has a row for or is held out of are
    skipped. Three queries whatever the number of customers.
    """
    segment_ids = {_segment_id(c) for c in customers} - {None}
    if not segment_ids:
        return {}
    # One row per (open offer, target segment), the target None for an offer meant for every
    # segment (OfferQuerySet.targeting): one query, whatever the number of customers.
    rows = list(
        Offer.objects.open_on(timezone.localdate(now))
        .targeting(segment_ids)
        .annotate(target_id=F("segments"))
        .order_by("pk")
    )
    if not rows:
        return {}
    offer_ids = {o.pk for o in rows}
    stats = acceptance_by_segment_offer(segment_ids=segment_ids, offer_ids=offer_ids)
    taken = set(
        OfferResponse.objects.filter(
            customer_id__in=[c.pk for c in customers], offer_id__in=offer_ids
        ).values_list("customer_id", "offer_id")
    )
    for_all = [o for o in rows if o.target_id is None]
    by_segment: dict[int, list[Offer]] = {segment_id: list(for_all) for segment_id in segment_ids}
    for o in rows:
        if o.target_id in by_segment:
            by_segment[o.target_id].append(o)
    best = {}
    for c in customers:
        candidates = [
            o
            for o in by_segment.get(_segment_id(c), [])
            if (c.pk, o.pk) not in taken and not offer_holds_out(offer=o, customer_id=c.pk)
        ]
        if candidates:

            def mean(o: Offer, segment_id: int | None = _segment_id(c)) -> tuple[float, int]:
                seen = stats.get((segment_id, o.pk), Acceptance())
                return ((1 + seen.accepted) / (2 + seen.presented), -o.pk)

            best[c.pk] = max(candidates, key=mean)
    return best


def _segment_id(customer: Customer) -> int | None:
    membership = customer_membership(customer=customer)
    return membership.segment_id if membership else None


def _contact_label(offer: Offer | None) -> str:
    return f"Get in touch and mention “{offer}”" if offer else "Get in touch"


def _days(days: float) -> str:
    n = round(days)
    return "1 day" if n == 1 else f"{n} days"


def customers_slipping_away(*, limit: int = DEFAULT_LIMIT) -> list[TodayItem]:
    """Customers whose next year is worth the most and who are most likely drifting away,
    by value at risk (the predictions of the last run); none before predictions exist."""
    currency = business_get().currency
    items = []
    for prediction in slipping_away(limit=limit):
        # Never "100 %": the model cannot be sure of that.
        gone = min(99, round(100 * (1 - prediction.p_alive)))
        # value_12m is already weighed by the chance they are still a customer.
        if_still = prediction.value_12m / max(prediction.p_alive, 1e-9)
        items.append(
            TodayItem(
                kind=Kind.SLIPPING,
                customer=prediction.customer,
                headline=(
                    f"Worth about {money_about_text(if_still, currency)} over the next year if "
                    "still a "
                    f"customer, and a {gone}% chance they have already gone."
                ),
                action=Action.CONTACT,
                action_label="Get in touch",
                numbers={"p_alive": prediction.p_alive, "value_at_risk": prediction.value_at_risk},
            )
        )
    return items
