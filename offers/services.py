"""Offers: presenting them with a control group, recording answers, ranking them per customer."""

import hashlib
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, QuerySet, Sum
from django.utils import timezone
from scipy.special import betaincinv

from crm.cache import pages_cache_changed
from crm.models import Customer
from crm.money import money_text
from crm.selectors import business_get
from offers.messages import MessageTemplateError, template_fields
from offers.models import TREATED_OUTCOMES, Offer, OfferResponse
from offers.selectors import Acceptance, acceptance_by_segment_offer
from segmentation.selectors import customer_membership

_BATCH = 2000
_HASH_SPACE = 2**64

# Shown on the customer page next to the ranked offers.
RANKING_METHOD = (
    "Offers are ranked by what they are likely to bring: how often customers of this segment "
    "have accepted each one so far (an offer with few answers yet still gets its turn now and "
    "then) times what an acceptance is worth (the segment's typical order value minus the "
    "offer's cost)."
)

# --- Holdout ---------------------------------------------------------------------------------


# What staff may set on an offer (the form shows these, in this order, plus the segments).
OFFER_EDITABLE_FIELDS = (
    "title",
    "description",
    "channel",
    "starts_on",
    "ends_on",
    "discount_percent",
    "fixed_cost",
    "holdout_share",
    "attribution_days",
    "is_active",
    "email_subject",
    "email_body",
)


@transaction.atomic
def offer_save(*, offer: Offer | None = None, segments: Iterable = (), **fields) -> Offer:
    """Create an offer (or update ``offer``) and set the segments it targets.

    Side effects: one Offer row written, its target segments replaced, the pages' cached
    figures invalidated. Raises
    ValidationError for unknown fields, values the model refuses (e.g. a window that
    ends before it starts) or an e-mail text with a placeholder that is not a merge field.
    """
    unknown = set(fields) - set(OFFER_EDITABLE_FIELDS)
    if unknown:
        raise ValidationError(f"Offers have no editable field {', '.join(sorted(unknown))}.")
    offer = offer or Offer()
    for name, value in fields.items():
        setattr(offer, name, value)
    errors = {}
    for name in ("email_subject", "email_body"):
        try:
            template_fields(getattr(offer, name))
        except MessageTemplateError as error:
            errors[name] = str(error)
    if errors:
        raise ValidationError(errors)
    offer.full_clean()
    offer.save()
    offer.segments.set(segments)
    pages_cache_changed()
    return offer


def holdout_draw(offer_id: int, customer_id: int) -> float:
    """A number in [0, 1) fixed for ever by (offer, customer): the holdout lottery ticket.

    A hash rather than a random generator, so the control group does not depend on the order
    customers are read in, on how many times the offer is presented, or on the machine.
    """
    digest = hashlib.sha256(f"offer-holdout:{offer_id}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _HASH_SPACE


def offer_holds_out(*, offer: Offer, customer_id: int) -> bool:
    """Whether this customer belongs to the offer's control group (never to be presented)."""
    return holdout_draw(offer.pk, customer_id) < float(offer.holdout_share)


# --- Presenting and recording ----------------------------------------------------------------


@dataclass(frozen=True)
class Presentation:
    """What offer_present did."""

    presented: int
    held_out: int
    already: int  # eligible customers who already had a row for this offer (left untouched)

    @property
    def total(self) -> int:
        return self.presented + self.held_out


def offer_present(
    *,
    offer: Offer,
    segment=None,
    customers: Iterable[Customer] | QuerySet | None = None,
    now: datetime | None = None,
) -> Presentation:
    """Present an offer to eligible customers, holding out a control group.

    Eligible: not archived, no row yet for this offer, and in ``segment`` (or, with neither
    ``segment`` nor ``customers`` given, in any of the offer's target segments). ``customers``
    narrows the set further. A share ``offer.holdout_share`` of them, chosen by
    ``holdout_draw`` (reproducible), gets an OfferResponse with outcome HOLDOUT and is never
    presented; the others get outcome PRESENTED. The customer's current segment is recorded.
    Side effects: bulk-inserts OfferResponse rows, in one transaction, and invalidates the
    pages' cached figures when it inserted any. Raises ValidationError
    when the offer is not open today or the segment is not one of its targets.
    """
    now = now or timezone.now()
    today = timezone.localdate(now)
    if not offer.is_open_on(today):
        raise ValidationError(
            f"“{offer}” cannot be presented on {today:%Y-%m-%d}: it is inactive or outside "
            "its dates."
        )
    target_ids = set(offer.segments.values_list("pk", flat=True))
    eligible = Customer.objects.active().exclude(
        Exists(OfferResponse.objects.filter(offer=offer, customer_id=OuterRef("pk")))
    )
    if segment is not None:
        if not Offer.objects.filter(pk=offer.pk).targeting([segment.pk]).exists():
            raise ValidationError(f"“{offer}” does not target the segment “{segment}”.")
        eligible = eligible.filter(membership__segment=segment)
    elif customers is None:
        if not target_ids:
            raise ValidationError(f"“{offer}” has no target segment: choose the customers.")
        eligible = eligible.filter(membership__segment_id__in=target_ids)
    parts = [eligible]
    if isinstance(customers, QuerySet):
        parts = [eligible.filter(pk__in=customers.values("pk"))]
    elif customers is not None:
        chosen = sorted({c.pk if isinstance(c, Customer) else int(c) for c in customers})
        # In slices, so a long list stays under the databases' limits on query parameters.
        parts = [
            eligible.filter(pk__in=chosen[i : i + _BATCH]) for i in range(0, len(chosen), _BATCH)
        ]

    share = float(offer.holdout_share)
    counts = {"presented": 0, "held_out": 0, "already": 0}
    with transaction.atomic():
        # Read every eligible id first (16 bytes a customer), then insert: one pass over the
        # segment instead of a NOT EXISTS query per page that rescans what is left.
        ids, segment_ids = array("q"), array("q")
        for part in parts:
            for customer_id, segment_id in (
                part.order_by("pk")
                .values_list("pk", "membership__segment_id")
                .iterator(chunk_size=10_000)
            ):
                ids.append(customer_id)
                segment_ids.append(-1 if segment_id is None else segment_id)
        for start in range(0, len(ids), _BATCH):
            _insert(
                offer=offer,
                presented_at=now,
                rows=[
                    (
                        customer_id,
                        None if segment_id == -1 else segment_id,
                        OfferResponse.Outcome.HOLDOUT
                        if holdout_draw(offer.pk, customer_id) < share
                        else OfferResponse.Outcome.PRESENTED,
                    )
                    for customer_id, segment_id in zip(
                        ids[start : start + _BATCH],
                        segment_ids[start : start + _BATCH],
                        strict=True,
                    )
                ],
                counts=counts,
            )
        if counts["presented"] or counts["held_out"]:
            pages_cache_changed()
    return Presentation(**counts)


def _insert(
    *,
    offer: Offer,
    presented_at: datetime,
    rows: list[tuple[int, int | None, str]],
    counts: dict[str, int],
) -> None:
    """Insert (customer, segment, outcome) rows, skipping any a concurrent call wrote.

    Multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING (SQLite and PostgreSQL) rather than
    bulk_create, whose per-object work in Python was most of the time at 200,000 rows
    (and rather than executemany, a round trip per row on PostgreSQL).
    """
    meta, qn = OfferResponse._meta, connection.ops.quote_name
    columns = ", ".join(
        qn(meta.get_field(name).column)
        for name in ("offer", "customer", "segment", "outcome", "presented_at")
    )
    when = connection.ops.adapt_datetimefield_value(presented_at)
    per_statement = (connection.features.max_query_params or 10_000) // 5
    inserted: set[int] = set()
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            cursor.execute(
                f"INSERT INTO {qn(meta.db_table)} ({columns}) VALUES "
                + ", ".join(["(%s, %s, %s, %s, %s)"] * len(chunk))
                + f" ON CONFLICT DO NOTHING RETURNING {qn(meta.get_field('customer').column)}",
                [
                    value
                    for customer_id, segment_id, outcome in chunk
                    for value in (offer.pk, customer_id, segment_id, str(outcome), when)
                ],
            )
            inserted.update(customer_id for (customer_id,) in cursor.fetchall())
    held = sum(
        outcome == OfferResponse.Outcome.HOLDOUT
        for customer_id, _, outcome in rows
        if customer_id in inserted
    )
    counts["held_out"] += held
    counts["presented"] += len(inserted) - held
    counts["already"] += len(rows) - len(inserted)


def offer_response_record(
    *, offer: Offer, customer: Customer, outcome: str, when: datetime | None = None
) -> OfferResponse:
    """Record that an offer was presented to, accepted or declined by a customer.

    Idempotent: recording the same outcome again changes nothing; recording another outcome
    corrects the previous one (``responded_at`` is the time of the answer, cleared when the
    outcome goes back to "presented"). A first record creates the row with the customer's
    current segment; it needs the offer to be open and the customer not archived. A customer
    in the offer's control group (held out) cannot be presented, accept or decline: that
    raises ValidationError, as does an unknown outcome. Side effects: one OfferResponse row
    created or updated, the pages' cached figures invalidated.
    """
    if outcome not in TREATED_OUTCOMES:
        choices = ", ".join(str(o) for o in TREATED_OUTCOMES)
        raise ValidationError(f"Unknown outcome “{outcome}”: choose one of {choices}.")
    when = when or timezone.now()
    answered = outcome != OfferResponse.Outcome.PRESENTED
    with transaction.atomic():
        response = (
            OfferResponse.objects.select_for_update().filter(offer=offer, customer=customer).first()
        )
        if response is None:
            if offer_holds_out(offer=offer, customer_id=customer.pk):
                raise ValidationError(_held_out_message(offer, customer))
            if customer.is_archived:
                raise ValidationError(f"{customer} is archived: offers are no longer made.")
            if not offer.is_open_on(timezone.localdate(when)):
                raise ValidationError(
                    f"“{offer}” is inactive or outside its dates: it cannot be presented now."
                )
            membership = customer_membership(customer=customer)
            response = OfferResponse.objects.create(
                offer=offer,
                customer=customer,
                segment_id=membership.segment_id if membership else None,
                outcome=outcome,
                presented_at=when,
                responded_at=when if answered else None,
            )
            pages_cache_changed()
            return response
        if response.outcome == OfferResponse.Outcome.HOLDOUT:
            raise ValidationError(_held_out_message(offer, customer))
        if response.outcome == outcome:
            return response
        response.outcome = outcome
        response.responded_at = when if answered else None
        response.save(update_fields=["outcome", "responded_at"])
        pages_cache_changed()
        return response


def _held_out_message(offer: Offer, customer: Customer) -> str:
    return (
        f"{customer} is in the control group of “{offer}”: held-out customers are never "
        "presented the offer, so the lift can be measured against them."
    )


# --- Ranking ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RankedOffer:
    """One offer for one customer, with the numbers behind its rank."""

    offer: Offer
    rank: int
    score: float  # sampled acceptance rate x value per acceptance: what the rank uses
    expected_value: float  # posterior mean acceptance x value per acceptance
    sampled_rate: float
    acceptance_mean: float
    acceptance_low: float  # 90% credible interval of the acceptance rate
    acceptance_high: float
    accepted: int  # in the customer's segment
    presented: int  # treated customers of the segment (presented, accepted or declined)
    order_value: float  # the segment's typical order value (segment_order_value)
    cost_per_acceptance: float
    value_per_acceptance: float
    explanation: str


def segment_order_value(*, segment) -> float:
    """What a typical order of the segment is worth.

    The median average order value of its members as recorded by the last segmentation run
    (``profile_values["avg_order_value"]``, no query); when the run did not record it, total
    spent / purchases over the current members (one aggregate query).
    """
    recorded = (segment.profile_values or {}).get("avg_order_value")
    if isinstance(recorded, int | float) and recorded > 0:
        return float(recorded)
    totals = Customer.objects.filter(
        membership__segment_id=segment.pk, purchase_count__gt=0
    ).aggregate(spent=Sum("total_spent"), orders=Sum("purchase_count"))
    if not totals["orders"]:
        return 0.0
    return max(float(totals["spent"] or 0) / totals["orders"], 0.0)


def offer_cost_per_acceptance(*, offer: Offer, order_value: float) -> float:
    """What one acceptance costs: the discount on an average order plus the fixed cost."""
    discount = float(offer.discount_percent or 0) / 100
    return discount * order_value + float(offer.fixed_cost or 0)


def daily_rng(*, customer_id: int, on: date) -> np.random.Generator:
    """The generator behind a customer's ranking on one day (stable within the day)."""
    seed = int.from_bytes(
        hashlib.sha256(f"offer-rank:{customer_id}:{on.isoformat()}".encode()).digest()[:8], "big"
    )
    return np.random.default_rng(seed)


def offers_ranked_for_customer(
    *, customer: Customer, now: datetime | None = None, rng: np.random.Generator | None = None
) -> list[RankedOffer]:
    """Open offers meant for the customer's segment (``OfferQuerySet.targeting``: those that
    target it or no segment), best first (Thompson sampling).

    Leaves out offers the customer already has a row for (presented, answered or held out)
    and offers whose control group the customer belongs to. Each offer's acceptance rate in
    the customer's segment has the posterior Beta(1 + accepted, 1 + not accepted), where a
    presentation with no answer counts as not accepted; one rate is drawn from it and
    multiplied by the value of an acceptance (``segment_order_value`` minus the offer's cost
    per acceptance). Without ``rng`` the draw is seeded by customer and day, so
    the page is stable within a day. Two to four queries (the segment when not loaded, its
    order value when the last run did not record it); none when the customer has no segment.
    """
    membership = customer_membership(customer=customer)
    if membership is None or membership.segment_id is None:
        return []
    segment_id = membership.segment_id
    now = now or timezone.now()
    today = timezone.localdate(now)
    offers = [
        offer
        for offer in Offer.objects.open_on(today)
        .targeting([segment_id])
        .exclude(Exists(OfferResponse.objects.filter(offer_id=OuterRef("pk"), customer=customer)))
        .order_by("pk")
        if not offer_holds_out(offer=offer, customer_id=customer.pk)
    ]
    if not offers:
        return []
    stats = acceptance_by_segment_offer(segment_ids=[segment_id], offer_ids=[o.pk for o in offers])
    order_value = segment_order_value(segment=membership.segment)
    evidence = [
        OfferEvidence(
            offer=offer,
            accepted=stats.get((segment_id, offer.pk), Acceptance()).accepted,
            presented=stats.get((segment_id, offer.pk), Acceptance()).presented,
            order_value=order_value,
            cost_per_acceptance=offer_cost_per_acceptance(offer=offer, order_value=order_value),
        )
        for offer in offers
    ]
    return offers_ranked(evidence, rng=rng or daily_rng(customer_id=customer.pk, on=today))


@dataclass(frozen=True)
class OfferEvidence:
    """What is known about one offer in one segment, for ranking."""

    offer: Offer
    accepted: int
    presented: int  # presented, accepted or declined
    order_value: float
    cost_per_acceptance: float


def offers_ranked(evidence: list[OfferEvidence], *, rng: np.random.Generator) -> list[RankedOffer]:
    """Thompson sampling over offers: rank by a draw of Beta(1 + accepted, 1 + not accepted)
    times the value of an acceptance. No database access."""
    scored = []
    for e in evidence:
        a, b = 1 + e.accepted, 1 + e.presented - e.accepted
        sampled = float(rng.beta(a, b))
        value = e.order_value - e.cost_per_acceptance
        mean = a / (a + b)
        scored.append(
            {
                "offer": e.offer,
                "score": sampled * value,
                "expected_value": mean * value,
                "sampled_rate": sampled,
                "acceptance_mean": mean,
                "acceptance_low": float(betaincinv(a, b, 0.05)),
                "acceptance_high": float(betaincinv(a, b, 0.95)),
                "accepted": e.accepted,
                "presented": e.presented,
                "order_value": e.order_value,
                "cost_per_acceptance": e.cost_per_acceptance,
                "value_per_acceptance": value,
            }
        )
    scored.sort(key=lambda s: (-s["score"], s["offer"].pk))
    return [RankedOffer(rank=i, explanation=_explanation(s), **s) for i, s in enumerate(scored, 1)]


def _explanation(s: dict) -> str:
    if s["presented"] == 0:
        evidence = "not yet presented in this segment, so it is still being tried out"
    else:
        evidence = (
            f"accepted by {s['accepted']} of {s['presented']} customers of this segment "
            f"(likely {s['acceptance_low']:.0%} to {s['acceptance_high']:.0%})"
        )
    currency = business_get().currency
    return (
        f"{evidence.capitalize()}; an acceptance is worth about "
        f"{money_text(s['value_per_acceptance'], currency)} "
        f"(order {money_text(s['order_value'], currency)} "
        f"minus cost {money_text(s['cost_per_acceptance'], currency)})."
    )
