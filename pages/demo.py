"""Demo data: customers of distinct behaviours, two years of purchases, feedback, tags, offers."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np
from django.core.exceptions import ValidationError
from django.core.management.color import no_style
from django.db import connection, models, transaction
from django.utils import timezone

from crm.models import Customer, Feedback, Purchase, Tag
from crm.search import customer_search_text
from crm.services import customer_stats_refresh
from offers.models import Offer
from segmentation.models import SegmentationRun
from segmentation.services import segmentation_run_request

BATCH_SIZE = 5_000
# The first start's "Load demo data": enough customers for distinct segments, loaded within
# a few seconds of a web request.
DEMO_CUSTOMERS = 1_000
HISTORY_DAYS = 730

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Behaviour:
    """How one kind of customer buys and what they say about it."""

    name: str
    share: float
    # Purchases happen between `start` and `end` days ago, each drawn from these ranges.
    start_days: tuple[int, int]
    end_days: tuple[int, int]
    orders_per_year: float
    amount_median: float
    amount_sigma: float
    feedback_probability: float
    rating_weights: tuple[float, float, float, float, float]  # for ratings 1..5
    income_median: float
    tags: tuple[tuple[str, float], ...] = ()


BEHAVIOURS: tuple[Behaviour, ...] = (
    Behaviour(
        "regular high spender", 0.08, (400, 730), (0, 20), 14, 180, 0.45, 0.55,
        (0.01, 0.02, 0.07, 0.30, 0.60), 85_000, (("vip", 0.7), ("newsletter", 0.5)),
    ),
    Behaviour(
        "regular", 0.17, (300, 730), (0, 40), 7, 60, 0.5, 0.4,
        (0.02, 0.04, 0.14, 0.45, 0.35), 52_000, (("newsletter", 0.4),),
    ),
    Behaviour(
        "occasional buyer", 0.22, (200, 730), (0, 150), 2, 45, 0.6, 0.2,
        (0.04, 0.08, 0.25, 0.40, 0.23), 45_000, (("newsletter", 0.2),),
    ),
    Behaviour(
        "lapsed", 0.15, (450, 730), (200, 420), 5, 55, 0.55, 0.25,
        (0.08, 0.12, 0.30, 0.32, 0.18), 47_000, (("win-back", 0.3),),
    ),
    Behaviour(
        "new customer", 0.10, (5, 60), (0, 5), 6, 50, 0.6, 0.3,
        (0.02, 0.05, 0.18, 0.40, 0.35), 40_000, (("newsletter", 0.3),),
    ),
    Behaviour(
        "one-off buyer", 0.13, (0, 730), (0, 0), 0, 35, 0.7, 0.15,
        (0.06, 0.10, 0.34, 0.30, 0.20), 42_000,
    ),
    Behaviour(
        "unhappy", 0.07, (250, 730), (30, 200), 4, 50, 0.6, 0.9,
        (0.45, 0.35, 0.15, 0.04, 0.01), 46_000, (("complaint", 0.6),),
    ),
    Behaviour(
        "prospect", 0.08, (0, 730), (0, 0), 0, 0, 0, 0,
        (0.2, 0.2, 0.2, 0.2, 0.2), 44_000, (("lead", 0.8), ("newsletter", 0.3)),
    ),
)  # fmt: skip

FIRST_NAMES = (
    "Anna", "Ben", "Chloe", "David", "Emma", "Felix", "Grace", "Hugo", "Isla", "Jack",
    "Katie", "Liam", "Maya", "Noah", "Olivia", "Paul", "Quinn", "Rosa", "Sam", "Tara",
    "Umar", "Vera", "Will", "Xena", "Yusuf", "Zoe", "Amir", "Bea", "Carlos", "Dana",
    "Elena", "Farah", "Gabriel", "Hana", "Ivan", "Julia", "Kofi", "Lena", "Marco", "Nina",
    "Omar", "Priya", "Rafael", "Sofia", "Tom", "Ugo", "Valeria", "Wei", "Yara", "Zain",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel",
    "Wright", "Green", "Walker", "Hall", "Clarke", "Khan", "Lewis", "Young", "King", "Baker",
    "Hill", "Moore", "Wood", "Martin", "Jackson", "Thompson", "White", "Harris", "Lee",
    "Garcia", "Muller", "Rossi", "Dubois", "Nowak", "Silva", "Kowalski", "Novak", "Jensen",
    "Berg", "Costa", "Fischer", "Moreau", "Romano", "Sato", "Chen", "Okafor", "Mensah",
)  # fmt: skip
PLACES = (
    ("London", "United Kingdom"), ("Manchester", "United Kingdom"), ("Bristol", "United Kingdom"),
    ("Leeds", "United Kingdom"), ("Edinburgh", "United Kingdom"), ("Dublin", "Ireland"),
    ("Paris", "France"), ("Lyon", "France"), ("Berlin", "Germany"), ("Hamburg", "Germany"),
    ("Amsterdam", "Netherlands"), ("Brussels", "Belgium"), ("Madrid", "Spain"),
    ("Lisbon", "Portugal"), ("Milan", "Italy"), ("Vienna", "Austria"), ("Zurich", "Switzerland"),
    ("Copenhagen", "Denmark"), ("Stockholm", "Sweden"), ("Warsaw", "Poland"),
)  # fmt: skip
PRODUCTS = (
    ("Consultation (1 h)", "Services"), ("Coaching package", "Services"),
    ("Workshop seat", "Events"), ("Online course", "Digital"), ("E-book", "Digital"),
    ("Gift card", "Gifts"), ("Handmade mug", "Goods"), ("Notebook set", "Goods"),
    ("Tea sampler", "Goods"), ("Annual membership", "Subscriptions"),
    ("Monthly box", "Subscriptions"), ("Repair service", "Services"),
)  # fmt: skip
CHANNELS = ("online", "in_person", "phone", "marketplace")
CHANNEL_WEIGHTS = (0.55, 0.25, 0.08, 0.12)
COMMENTS = {
    1: ("Very disappointed, the order arrived late and damaged.", "Nobody answered my emails.",
        "Not worth the money.", "I asked for a refund and am still waiting."),
    2: ("Below my expectations.", "The quality was not what the description said.",
        "Slow delivery and poor communication.", ""),
    3: ("OK, nothing special.", "Fine, but a bit expensive.", "Delivery took longer than said.",
        ""),
    4: ("Good service, I would buy again.", "Friendly and quick.", "Nice quality.", ""),
    5: ("Excellent as always!", "Wonderful experience, I recommend it to my friends.",
        "Best in town.", "Thank you for the personal touch.", ""),
}  # fmt: skip
NOTES = (
    "Prefers to be contacted by phone.",
    "Met at the spring market.",
    "Ask about the corporate order in autumn.",
    "Allergic to nuts (for gift boxes).",
    "Referred by a friend.",
)
OFFERS = (
    ("Welcome back: 15% off", "For customers we have not seen for a while.", "email", 15, None),
    ("VIP early access", "First pick of the new collection for our best customers.", "email",
     None, None),
    ("Sorry for the trouble", "A voucher and a personal call for unhappy customers.", "phone",
     20, None),
    ("Free follow-up session", "A free session after the second purchase.", "in_person", None,
     25),
)  # fmt: skip


@dataclass(frozen=True)
class DemoSummary:
    customers: int
    purchases: int
    feedback: int
    tags: int
    offers: int


def demo_seed(
    *, customers: int, seed: int, today: date | None = None, progress: Progress | None = None
) -> DemoSummary:
    """Insert `customers` demo customers with purchases, feedback and tags, plus a few offers.

    One transaction; bulk inserts in batches of BATCH_SIZE; refreshes the customers' purchase
    statistics. The same seed and `today` (default: today, UTC) give the same data; dates are
    relative to `today`, and no purchase is later than its start nor in the future.
    """
    if customers < 0:
        raise ValueError("The number of customers cannot be negative.")
    say = progress or (lambda message: None)
    rng = np.random.default_rng(seed)
    today_utc = timezone.now().astimezone(UTC).date()
    if today is None or today > today_utc:
        today = today_utc
    start_of_today = datetime.combine(today, datetime.min.time())  # naive UTC
    with transaction.atomic():
        had_customers = Customer.objects.exists()
        first_customer_id = _next_id(Customer)
        first_purchase_id = _next_id(Purchase)
        people = _customers(rng, customers, first_customer_id, start_of_today)
        say(f"{customers} customers")
        _insert(Customer, people.columns, progress=say)
        purchases = _purchases(rng, people, first_purchase_id, start_of_today)
        say(f"{purchases.count} purchases")
        _insert(Purchase, purchases.columns, progress=say)
        feedback = _feedback(rng, people, purchases, start_of_today)
        say(f"{len(feedback['customer_id'])} feedback entries")
        _insert(Feedback, feedback)
        tag_rows = _tags(rng, people)
        _insert(Customer.tags.through, tag_rows)
        offers = _offers()
        _sequences_reset([Customer, Purchase])
        if connection.vendor == "postgresql":
            # Fresh planner statistics, or the statistics refresh below picks a slow plan.
            with connection.cursor() as cursor:
                for model in (Customer, Purchase, Feedback):
                    cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
        say("refreshing purchase statistics")
        # One statement for everyone is faster than batches of ids when the table was empty.
        customer_stats_refresh(customer_ids=people.ids.tolist() if had_customers else None)
    return DemoSummary(
        customers=customers,
        purchases=purchases.count,
        feedback=len(feedback["customer_id"]),
        tags=len(tag_rows["customer_id"]),
        offers=offers,
    )


def demo_start(
    *, customers: int | None = None, seed: int = 1
) -> tuple[DemoSummary, SegmentationRun]:
    """Fill an empty database with demo data and request the first segmentation run.

    Refused with a ValidationError when any customer exists: demo people never mix with
    real ones. Side effects: demo_seed's rows, one SegmentationRun enqueued after commit.
    """
    with transaction.atomic():
        if Customer.objects.exists():
            raise ValidationError(
                "Demo data is only loaded into an empty database, and there are customers "
                "already. Remove them first if you want to try the demo."
            )
        summary = demo_seed(customers=customers or DEMO_CUSTOMERS, seed=seed)
        run = segmentation_run_request(trigger=SegmentationRun.Trigger.MANUAL)
    return summary, run


@dataclass
class _People:
    ids: np.ndarray
    behaviour: np.ndarray  # index into BEHAVIOURS
    start_days: np.ndarray  # purchases happen between start and end days ago
    end_days: np.ndarray
    consent: np.ndarray
    columns: dict[str, Sequence]


@dataclass
class _Purchases:
    count: int
    customer_index: np.ndarray  # index into the people arrays, grouped by customer
    per_customer: np.ndarray
    ids: np.ndarray
    days_ago: np.ndarray
    columns: dict[str, Sequence]


def _customers(rng: np.random.Generator, n: int, first_id: int, today: datetime) -> _People:
    shares = np.array([b.share for b in BEHAVIOURS])
    behaviour = rng.choice(len(BEHAVIOURS), size=n, p=shares / shares.sum())
    start = np.empty(n)
    end = np.empty(n)
    for index, b in enumerate(BEHAVIOURS):
        mask = behaviour == index
        start[mask] = rng.uniform(*b.start_days, size=mask.sum())
        end[mask] = rng.uniform(*b.end_days, size=mask.sum())
    end = np.minimum(end, start)
    ids = np.arange(first_id, first_id + n)

    first = rng.integers(len(FIRST_NAMES), size=n)
    last = rng.integers(len(LAST_NAMES), size=n)
    names = [f"{FIRST_NAMES[f]} {LAST_NAMES[la]}" for f, la in zip(first, last, strict=True)]
    has_email = rng.random(n) < 0.92
    emails = [
        f"{FIRST_NAMES[f].lower()}.{LAST_NAMES[la].lower()}.{i}@example.com" if has else ""
        for f, la, i, has in zip(first, last, ids, has_email, strict=True)
    ]
    has_phone = rng.random(n) < 0.6
    phone_numbers = rng.integers(100_000, 999_999, size=n)
    phones = [
        f"+44 7700 {p}" if has else "" for p, has in zip(phone_numbers, has_phone, strict=True)
    ]
    place = rng.integers(len(PLACES), size=n)

    # Ages for about two thirds: a birth date for most of them, only an age for the rest.
    age = np.clip(rng.normal(42, 13, size=n), 18, 88).astype(int)
    age_kind = rng.random(n)
    birth_dates = [
        _adapt_date(date(today.year - a, 1, 1) + timedelta(days=int(d))) if k < 0.5 else None
        for a, k, d in zip(age, age_kind, rng.integers(0, 365, size=n), strict=True)
    ]
    ages = [int(a) if 0.5 <= k < 0.65 else None for a, k in zip(age, age_kind, strict=True)]
    income_median = np.array([b.income_median for b in BEHAVIOURS])[behaviour]
    income = np.round(income_median * rng.lognormal(0, 0.35, size=n), -2)
    has_income = rng.random(n) < 0.45
    incomes = [Decimal(int(x)) if has else None for x, has in zip(income, has_income, strict=True)]

    consent = rng.random(n) < 0.7
    opt_out = rng.random(n) < 0.02
    created_days = start + rng.uniform(0, 30, size=n)
    created = _datetimes(today, created_days)
    note_pick = rng.integers(len(NOTES), size=n)
    has_note = rng.random(n) < 0.05
    notes = [NOTES[k] if has else "" for k, has in zip(note_pick, has_note, strict=True)]

    columns = {
        "id": ids.tolist(),
        "name": names,
        "email": emails,
        "phone": phones,
        "birth_date": birth_dates,
        "age": ages,
        "annual_income": incomes,
        "city": [PLACES[p][0] for p in place],
        "country": [PLACES[p][1] for p in place],
        "notes": notes,
        "marketing_consent": consent.tolist(),
        "profiling_opt_out": opt_out.tolist(),
        "created_at": created,
        "updated_at": created,
        "search_text": [
            customer_search_text(name=n, email=e, phone=p)
            for n, e, p in zip(names, emails, phones, strict=True)
        ],
    }
    return _People(ids, behaviour, start, end, consent, columns)


def _purchases(
    rng: np.random.Generator, people: _People, first_id: int, today: datetime
) -> _Purchases:
    n = len(people.ids)
    orders_per_year = np.array([b.orders_per_year for b in BEHAVIOURS])[people.behaviour]
    span_years = (people.start_days - people.end_days) / 365
    count = np.maximum(1, rng.poisson(orders_per_year * span_years + 0.5))
    names = np.array([b.name for b in BEHAVIOURS])[people.behaviour]
    count[names == "one-off buyer"] = 1
    count[names == "prospect"] = 0
    customer_index = np.repeat(np.arange(n), count)
    total = int(count.sum())

    position = rng.random(total)
    # Unhappy customers bought more at first and less as they grew unhappy.
    unhappy = names[customer_index] == "unhappy"
    position[unhappy] = position[unhappy] ** 0.5
    start = people.start_days[customer_index]
    end = people.end_days[customer_index]
    days_ago = end + position * (start - end)
    # Nothing today or later: the latest purchase is yesterday, at some time of day.
    days_ago = np.maximum(days_ago, rng.uniform(0.01, 1, size=total))

    medians = np.array([max(b.amount_median, 1) for b in BEHAVIOURS])[people.behaviour]
    sigmas = np.array([b.amount_sigma for b in BEHAVIOURS])[people.behaviour]
    cents = np.maximum(
        100,
        np.round(medians[customer_index] * 100 * rng.lognormal(0, sigmas[customer_index], total)),
    ).astype(np.int64)
    refund = rng.random(total) < np.where(unhappy, 0.08, 0.01)
    product = rng.integers(len(PRODUCTS), size=total)
    channel = rng.choice(len(CHANNELS), size=total, p=CHANNEL_WEIGHTS)
    ids = np.arange(first_id, first_id + total)
    when = _datetimes(today, days_ago)
    columns = {
        "id": ids.tolist(),
        "customer_id": people.ids[customer_index].tolist(),
        "kind": ["refund" if r else "sale" for r in refund],
        "amount": [Decimal(int(c)).scaleb(-2) for c in cents],
        "purchased_at": when,
        "product": [PRODUCTS[p][0] for p in product],
        "category": [PRODUCTS[p][1] for p in product],
        "channel": [CHANNELS[c] for c in channel],
        "created_at": when,
    }
    return _Purchases(total, customer_index, count, ids, days_ago, columns)


def _feedback(
    rng: np.random.Generator, people: _People, purchases: _Purchases, today: datetime
) -> dict[str, list]:
    probability = np.array([b.feedback_probability for b in BEHAVIOURS])[people.behaviour]
    gives = (purchases.per_customer > 0) & (rng.random(len(people.ids)) < probability)
    entries = np.where(gives, 1 + rng.binomial(2, 0.3, size=len(people.ids)), 0)
    who = np.repeat(np.arange(len(people.ids)), entries)
    total = len(who)

    # Each entry is about one of the customer's purchases, a few days after it.
    offsets = np.concatenate(([0], np.cumsum(purchases.per_customer)[:-1]))
    pick = offsets[who] + (rng.random(total) * purchases.per_customer[who]).astype(np.int64)
    days_ago = np.maximum(purchases.days_ago[pick] - rng.uniform(0, 7, size=total), 0.001)

    rating = np.empty(total, dtype=np.int64)
    for index, b in enumerate(BEHAVIOURS):
        mask = people.behaviour[who] == index
        rating[mask] = rng.choice(np.arange(1, 6), size=mask.sum(), p=b.rating_weights)
    nps = np.clip(np.round(rating * 2.2 - 1.5 + rng.normal(0, 1.2, size=total)), 0, 10)
    kind = rng.random(total)  # both scores, only a rating, or only an NPS
    comment_pick = rng.integers(0, 100, size=total)
    from_link = rng.random(total) < 0.4
    answered = (rating <= 2) & (rng.random(total) < 0.5)
    created = _datetimes(today, days_ago)
    answered_at = _datetimes(today, np.maximum(days_ago - 1, 0.0005))
    return {
        "customer_id": people.ids[who].tolist(),
        "purchase_id": purchases.ids[pick].tolist(),
        "rating": [int(r) if k < 0.85 else None for r, k in zip(rating, kind, strict=True)],
        "nps": [int(s) if k > 0.25 else None for s, k in zip(nps, kind, strict=True)],
        "comment": [
            COMMENTS[r][c % len(COMMENTS[r])] for r, c in zip(rating, comment_pick, strict=True)
        ],
        "source": ["link" if link else "staff" for link in from_link],
        "created_at": created,
        "answered_at": [a if ok else None for a, ok in zip(answered_at, answered, strict=True)],
    }


def _tags(rng: np.random.Generator, people: _People) -> dict[str, list]:
    customer_ids: list[int] = []
    tag_ids: list[int] = []
    names = {name for b in BEHAVIOURS for name, _ in b.tags} | {"referral", "wholesale"}
    tags = {name: Tag.objects.get_or_create(name=name)[0].pk for name in sorted(names)}
    for index, b in enumerate(BEHAVIOURS):
        mask = people.behaviour == index
        for name, share in (*b.tags, ("referral", 0.08), ("wholesale", 0.02)):
            chosen = mask & (rng.random(len(people.ids)) < share)
            if name == "newsletter":
                chosen &= people.consent
            customer_ids.extend(people.ids[chosen].tolist())
            tag_ids.extend([tags[name]] * int(chosen.sum()))
    return {"customer_id": customer_ids, "tag_id": tag_ids}


def _offers() -> int:
    created = 0
    for title, description, channel, discount, cost in OFFERS:
        _, was_created = Offer.objects.get_or_create(
            title=title,
            defaults={
                "description": description,
                "channel": channel,
                "discount_percent": Decimal(discount) if discount is not None else None,
                "fixed_cost": Decimal(cost) if cost is not None else None,
            },
        )
        created += was_created
    return created


def _datetimes(today: datetime, days_ago: np.ndarray) -> list:
    """Naive UTC datetimes `days_ago` before `today`, ready for the database driver."""
    base = np.datetime64(today.replace(tzinfo=None), "us")
    stamps = base - (days_ago * 86_400_000_000).astype("timedelta64[us]")
    adapt = connection.ops.adapt_datetimefield_value
    return [adapt(value) for value in stamps.astype(object)]


def _adapt_date(value: date):
    return connection.ops.adapt_datefield_value(value)


def _next_id(model: type[models.Model]) -> int:
    return (model.objects.aggregate(top=models.Max("pk"))["top"] or 0) + 1


def _sequences_reset(models_: list[type[models.Model]]) -> None:
    """Explicit ids were inserted: move PostgreSQL's sequences past them (no-op on SQLite)."""
    statements = connection.ops.sequence_reset_sql(no_style(), models_)
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def _insert(
    model: type[models.Model],
    columns: dict[str, Sequence],
    *,
    progress: Progress | None = None,
) -> None:
    """INSERT rows in batches (COPY on PostgreSQL); columns not given get the field's default.

    Values must already be in the driver's form (see _datetimes); defaults are prepared by
    the field. Faster than bulk_create at hundreds of thousands of rows because no model
    instances are built.
    """
    rows = len(next(iter(columns.values())))
    if rows == 0:
        return
    now = timezone.now().astimezone(UTC).replace(tzinfo=None)
    names, values = [], []
    for field in model._meta.local_concrete_fields:
        if field.attname in columns:
            data = columns[field.attname]
        elif field.primary_key:
            continue
        elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            data = [connection.ops.adapt_datetimefield_value(now)] * rows
        else:
            data = [field.get_db_prep_save(field.get_default(), connection)] * rows
        names.append(connection.ops.quote_name(field.column))
        values.append(data)
    sql = "INSERT INTO {} ({}) VALUES ({})".format(
        connection.ops.quote_name(model._meta.db_table),
        ", ".join(names),
        ", ".join(["%s"] * len(names)),
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # COPY is several times faster than INSERT batches on PostgreSQL.
            table = connection.ops.quote_name(model._meta.db_table)
            with cursor.cursor.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as copy:
                for row in zip(*values, strict=True):
                    copy.write_row(row)
            return
        for start in range(0, rows, BATCH_SIZE):
            batch = list(zip(*(v[start : start + BATCH_SIZE] for v in values), strict=True))
            cursor.executemany(sql, batch)
            if progress and rows > BATCH_SIZE * 10 and start % (BATCH_SIZE * 20) == 0:
                progress(f"  {model._meta.verbose_name_plural}: {start:,} / {rows:,}")
