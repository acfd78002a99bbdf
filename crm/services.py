"""Writes with rules or side effects for customers, purchases and feedback.

Every write here also invalidates the staff pages' cached figures (crm.cache.pages_cache_changed),
so no caller (page, admin action, import, command, task) has to remember to."""

import zoneinfo
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Lower
from django.utils import timezone

from crm.cache import pages_cache_changed
from crm.currencies import is_currency_code
from crm.models import (
    OVERDUE_FACTOR,
    OVERDUE_MIN_PURCHASES,
    Activity,
    BusinessSettings,
    Customer,
    Feedback,
    FollowUp,
    Purchase,
    Tag,
)
from crm.search import SEARCHED_FIELDS
from crm.selectors import BUSINESS_CACHE_KEY, business_get
from crm.signals import CUSTOMERS_ALL, customer_stats_refreshed

_ID_BATCH = 500
# Ids per statement of the statistics refresh (SQLite allows 32,766 parameters; PostgreSQL
# takes them as one array).
_STATS_BATCH = 10_000


def customer_stats_refresh(*, customer_ids: Iterable[int] | None = None) -> int:
    """Recompute purchase_count, total_spent, first/last_purchase_at from purchases, and
    stamp purchases_changed_at with the current time.

    Call after every write that adds, changes or removes purchases. Sales count; refunds
    are subtracted from total_spent but are not purchases. With no ids, refreshes everyone.
    Returns the number of customers updated. Side effect: sends
    crm.signals.customer_stats_refreshed per batch of ids (or once with CUSTOMERS_ALL), so
    apps above crm can follow (segmentation copies the figures to its memberships); the
    pages' cached figures invalidated.
    """
    if customer_ids is None:
        updated = _customer_stats_refresh_all()
        customer_overdue_from_refresh()
        customer_stats_refreshed.send(sender=Customer, customer_ids=CUSTOMERS_ALL)
        pages_cache_changed()
        return updated
    ids = sorted(set(customer_ids))
    updated = 0
    # Each batch writes overdue_from in the same UPDATE: one new version of each row, not
    # two (every version pays a dozen indexes, trigram search included).
    for start in range(0, len(ids), _STATS_BATCH):
        updated += _customer_stats_refresh_batch(ids[start : start + _STATS_BATCH])
    for start in range(0, len(ids), _ID_BATCH):
        customer_stats_refreshed.send(sender=Customer, customer_ids=ids[start : start + _ID_BATCH])
    pages_cache_changed()
    return updated


# One GROUP BY over purchases joined into one UPDATE: on PostgreSQL at 100k customers this
# takes seconds where the per-customer correlated subqueries took over half a minute.
# UPDATE ... FROM is standard on PostgreSQL and SQLite (3.33+).
_STATS_REFRESH_ALL_SQL = """
UPDATE crm_customer
SET purchases_changed_at = %(changed_at)s, purchase_count = s.n, total_spent = s.total,
    first_purchase_at = s.first_at, last_purchase_at = s.last_at
FROM (
    SELECT cu.id AS cid, COALESCE(a.n, 0) AS n, COALESCE(a.total, 0) AS total,
           a.first_at, a.last_at
    FROM crm_customer cu
    LEFT JOIN (
        SELECT customer_id,
               SUM(CASE WHEN kind = %(sale)s THEN 1 ELSE 0 END) AS n,
               SUM(CASE WHEN kind = %(sale)s THEN amount ELSE -amount END) AS total,
               MIN(CASE WHEN kind = %(sale)s THEN purchased_at END) AS first_at,
               MAX(CASE WHEN kind = %(sale)s THEN purchased_at END) AS last_at
        FROM crm_purchase
        GROUP BY customer_id
    ) a ON a.customer_id = cu.id
) s
WHERE crm_customer.id = s.cid
"""


# The same UPDATE for a batch of ids: one grouped read of their purchases instead of four
# correlated subqueries per customer (an import touching 100k customers: seconds, not minutes).
_STATS_REFRESH_BATCH_SQL = _STATS_REFRESH_ALL_SQL.replace(
    "ON a.customer_id = cu.id", "ON a.customer_id = cu.id {customer_ids}"
).replace("GROUP BY customer_id", "{purchase_ids} GROUP BY customer_id")


def _customer_stats_refresh_batch(ids: list[int]) -> int:
    # The moment comes first: it is set first, before the ids in the FROM.
    changed_at = _changed_at()
    if connection.vendor == "postgresql":  # one array parameter, however many ids
        wanted, params = "= ANY(%s)", [changed_at, ids, ids]
    else:
        wanted, params = f"IN ({', '.join(['%s'] * len(ids))})", [changed_at, *ids, *ids]
    overdue = _overdue_from_sql(
        connection.vendor, count="s.n", first="s.first_at", last="s.last_at"
    )
    sql = _STATS_REFRESH_BATCH_SQL.format(
        customer_ids=f"WHERE cu.id {wanted}", purchase_ids=f"WHERE customer_id {wanted}"
    ).replace(
        "last_purchase_at = s.last_at", f"last_purchase_at = s.last_at, overdue_from = {overdue}"
    )
    # Named and positional parameters cannot mix: the kind and the overdue rule's constants
    # go in as literals of our own.
    sql = (
        sql.replace("%(changed_at)s", "%s")
        .replace("%(sale)s", "'" + Purchase.Kind.SALE.value + "'")
        .replace("%(factor)s", repr(float(OVERDUE_FACTOR)))
        .replace("%(min_purchases)s", str(int(OVERDUE_MIN_PURCHASES)))
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _customer_stats_refresh_all() -> int:
    params = {"sale": Purchase.Kind.SALE.value, "changed_at": _changed_at()}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_STATS_REFRESH_ALL_SQL, params)
        return cursor.rowcount


def _changed_at():
    """Now, as the database stores a moment: Customer.purchases_changed_at is written in the
    statistics' own UPDATE (one more column, not one more version of every row)."""
    return connection.ops.adapt_datetimefield_value(timezone.now())


# last + factor x (last - first) / gaps, only with a rhythm; one UPDATE per call. Datetimes
# are timestamptz on PostgreSQL, ISO text on SQLite (written back in Django's format).
_OVERDUE_FROM_SQL = {
    "postgresql": (
        "last_purchase_at + (last_purchase_at - first_purchase_at)"
        " * (%(factor)s::float8 / (purchase_count - 1))"
    ),
    "sqlite": (
        "strftime('%%Y-%%m-%%d %%H:%%M:%%f', julianday(last_purchase_at)"
        " + %(factor)s * (julianday(last_purchase_at) - julianday(first_purchase_at))"
        " / (purchase_count - 1))"
    ),
}
_HAS_RHYTHM_SQL = {
    "postgresql": (
        "last_purchase_at - first_purchase_at >= (purchase_count - 1) * interval '1 day'"
    ),
    "sqlite": ("julianday(last_purchase_at) - julianday(first_purchase_at) >= purchase_count - 1"),
}


def _overdue_from_sql(vendor: str, *, count: str, first: str, last: str) -> str:
    """The overdue_from rule as a CASE over the given purchase count, first and last
    purchase (columns or expressions), with %(min_purchases)s and %(factor)s parameters."""
    named = {"purchase_count": count, "first_purchase_at": first, "last_purchase_at": last}
    rhythm, due = _HAS_RHYTHM_SQL[vendor], _OVERDUE_FROM_SQL[vendor]
    for column, value in named.items():
        rhythm, due = rhythm.replace(column, value), due.replace(column, value)
    return f"CASE WHEN {count} >= %(min_purchases)s AND {rhythm} THEN {due} ELSE NULL END"


def customer_overdue_from_refresh(*, customer_ids: Iterable[int] | None = None) -> None:
    """Recompute Customer.overdue_from from the purchase statistics (set-based).

    customer_stats_refresh does this after every refresh (for a list of ids, in its own
    UPDATE); call it directly only after writing the statistics columns some other way.
    """
    overdue = _overdue_from_sql(
        connection.vendor,
        count="purchase_count",
        first="first_purchase_at",
        last="last_purchase_at",
    )
    sql = f"UPDATE crm_customer SET overdue_from = {overdue}"
    params: dict = {"factor": OVERDUE_FACTOR, "min_purchases": OVERDUE_MIN_PURCHASES}
    # No transaction of its own: one statement per 500 ids, inside the caller's write.
    with connection.cursor() as cursor:
        if customer_ids is None:
            cursor.execute(sql, params)
            return
        ids = list(customer_ids)
        for start in range(0, len(ids), _ID_BATCH):
            batch = ids[start : start + _ID_BATCH]
            marks = ", ".join(f"%(id{i})s" for i in range(len(batch)))
            batch_params = params | {f"id{i}": pk for i, pk in enumerate(batch)}
            cursor.execute(f"{sql} WHERE id IN ({marks})", batch_params)


# Fields staff may set on a customer; the purchase statistics are derived.
CUSTOMER_EDITABLE_FIELDS = frozenset(
    {
        "name",
        "email",
        "phone",
        "external_source",
        "external_id",
        "birth_date",
        "age",
        "annual_income",
        "city",
        "country",
        "notes",
        "marketing_consent",
        "profiling_opt_out",
        "is_archived",
    }
)


def customers_search_text_refresh(*, customer_ids: Iterable[int] | None = None) -> int:
    """Recompute Customer.search_text (for writers that insert raw rows). Returns the count.

    Side effect: updates search_text of the customers given (everyone with no ids), in batches.
    """
    rows = Customer.objects.order_by("pk").only("name", "email", "phone", "search_text")
    if customer_ids is not None:
        rows = rows.filter(pk__in=list(customer_ids))
    changed: list[Customer] = []
    count = 0
    for customer in rows.iterator(chunk_size=_ID_BATCH * 4):
        before = customer.search_text
        customer.search_text_set()
        if customer.search_text != before:
            changed.append(customer)
            count += 1
        if len(changed) >= _ID_BATCH:
            Customer.objects.bulk_update(changed, ["search_text"])
            changed.clear()
    if changed:
        Customer.objects.bulk_update(changed, ["search_text"])
    return count


def _customer_check_email(*, email: str, exclude_pk: int | None = None) -> None:
    if not email:
        return
    clash = Customer.objects.alias(email_lower=Lower("email")).filter(email_lower=email.lower())
    if exclude_pk is not None:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise ValidationError({"email": f"Another customer already has the e-mail {email}."})


@transaction.atomic
def customer_create(*, tag_names: Iterable[str] = (), **fields) -> Customer:
    """Create a customer (validated like the admin form) and tag it.

    Side effects: inserts the customer, creates missing tags and links them.
    Raises ValidationError naming the field when a value is invalid.
    """
    unknown = set(fields) - CUSTOMER_EDITABLE_FIELDS
    if unknown:
        raise ValidationError(f"Unknown customer field(s): {', '.join(sorted(unknown))}.")
    customer = Customer(**fields)
    customer.search_text_set()
    _customer_check_email(email=customer.email)
    customer.full_clean()
    customer.save()
    if tag_names:
        customers_tag(customers=[customer], tag_names=tag_names)
    pages_cache_changed()
    return customer


@transaction.atomic
def customer_update(*, customer: Customer, **fields) -> Customer:
    """Change some of a customer's fields.

    Side effects: updates the customer row (only the fields given, plus updated_at).
    Raises ValidationError naming the field when a value is invalid.
    """
    unknown = set(fields) - CUSTOMER_EDITABLE_FIELDS
    if unknown:
        raise ValidationError(f"Unknown customer field(s): {', '.join(sorted(unknown))}.")
    for name, value in fields.items():
        setattr(customer, name, value)
    changed = [*fields, "updated_at"]
    if SEARCHED_FIELDS & set(fields):
        customer.search_text_set()
        changed.append("search_text")
    _customer_check_email(email=customer.email, exclude_pk=customer.pk)
    customer.full_clean()
    customer.save(update_fields=changed)
    pages_cache_changed()
    return customer


def purchase_check(*, purchase: Purchase) -> None:
    """The rules of a purchase beyond its fields' own (bulk writers call this per row).

    Raises ValidationError naming the field: a negative amount, a date in the future.
    """
    if purchase.amount is not None and purchase.amount < 0:
        raise ValidationError(
            {"amount": "The amount cannot be negative; record a refund with a positive amount."}
        )
    if purchase.purchased_at and purchase.purchased_at > timezone.now() + timedelta(days=1):
        raise ValidationError({"purchased_at": "A purchase cannot be dated in the future."})


@transaction.atomic
def purchase_record(
    *,
    customer: Customer,
    amount: Decimal,
    purchased_at: datetime | None = None,
    kind: str = Purchase.Kind.SALE,
    currency: str = "",
    product: str = "",
    category: str = "",
    channel: str = "",
    external_source: str = "",
    external_order_id: str = "",
) -> Purchase:
    """Record a sale (or a refund, kind="refund", amount positive).

    Side effects: inserts the purchase and refreshes the customer's purchase statistics
    (purchase_count, total_spent, first/last_purchase_at).
    """
    purchase = Purchase(
        customer=customer,
        amount=Decimal(amount),
        purchased_at=purchased_at or timezone.now(),
        kind=kind,
        product=product,
        category=category,
        channel=channel,
        external_source=external_source,
        external_order_id=external_order_id,
    )
    # Without a currency of its own, a sale is in the business's (the Settings page).
    purchase.currency = currency or business_get().currency
    purchase_check(purchase=purchase)
    purchase.full_clean()
    purchase.save()
    customer_stats_refresh(customer_ids=[customer.pk])
    customer.refresh_from_db(
        fields=["purchase_count", "total_spent", "first_purchase_at", "last_purchase_at"]
    )
    pages_cache_changed()
    return purchase


# Longest feedback comment accepted, whoever writes it (staff pages, the public link).
FEEDBACK_COMMENT_MAX = 2000


@transaction.atomic
def feedback_submit(
    *,
    customer: Customer,
    rating: int | None = None,
    nps: int | None = None,
    comment: str = "",
    source: str = Feedback.Source.STAFF,
    purchase: Purchase | None = None,
) -> Feedback:
    """Record a customer's rating (1-5) and/or NPS score (0-10) with an optional comment.

    Side effects: inserts one Feedback row. Raises ValidationError when no score is given,
    a score is out of range, the comment is longer than FEEDBACK_COMMENT_MAX, or the
    purchase belongs to another customer.
    """
    errors = {}
    if rating is None and nps is None:
        errors["rating"] = "Give a rating (1-5) or an NPS score (0-10)."
    if rating is not None and not (isinstance(rating, int) and 1 <= rating <= 5):
        errors["rating"] = f"The rating must be a whole number from 1 to 5 (got {rating!r})."
    if nps is not None and not (isinstance(nps, int) and 0 <= nps <= 10):
        errors["nps"] = f"The NPS score must be a whole number from 0 to 10 (got {nps!r})."
    comment = comment.strip()
    if len(comment) > FEEDBACK_COMMENT_MAX:
        errors["comment"] = f"Please keep the comment under {FEEDBACK_COMMENT_MAX} characters."
    if purchase is not None and purchase.customer_id != customer.pk:
        errors["purchase"] = "This purchase belongs to another customer."
    if source not in Feedback.Source.values:
        errors["source"] = f"Unknown feedback source {source!r}."
    if errors:
        raise ValidationError(errors)
    feedback = Feedback.objects.create(
        customer=customer,
        rating=rating,
        nps=nps,
        comment=comment,
        source=source,
        purchase=purchase,
    )
    pages_cache_changed()
    return feedback


@transaction.atomic
def feedback_mark_answered(*, feedback: Feedback, when: datetime | None = None) -> Feedback:
    """Mark feedback as answered by the owner (it leaves the Today list).

    Idempotent: already answered feedback keeps its first answer time. Side effect: sets
    Feedback.answered_at. Raises ValidationError for a time in the future.
    """
    now = timezone.now()
    when = when or now
    if when > now + timedelta(minutes=5):
        raise ValidationError("Feedback cannot be answered in the future.")
    Feedback.objects.filter(pk=feedback.pk, answered_at__isnull=True).update(answered_at=when)
    feedback.refresh_from_db(fields=["answered_at"])
    pages_cache_changed()
    return feedback


@transaction.atomic
def customers_tag(*, customers: Iterable[Customer | int], tag_names: Iterable[str]) -> int:
    """Add tags to customers (a queryset, instances or ids); missing tags are created.

    Side effects: creates Tag rows and tag links (existing links are kept). Returns the
    number of customers given. Works on a whole queryset in batches, never row by row.
    """
    names = sorted({name.strip() for name in tag_names if name and name.strip()})
    if not names:
        raise ValidationError({"tag_names": "Give at least one tag name."})
    limit = Tag._meta.get_field("name").max_length
    too_long = [n for n in names if len(n) > limit]
    if too_long:
        raise ValidationError({"tag_names": f"Tag names are at most {limit} characters."})
    Tag.objects.bulk_create([Tag(name=n) for n in names], ignore_conflicts=True)
    tag_ids = list(Tag.objects.filter(name__in=names).values_list("pk", flat=True))
    if hasattr(customers, "values_list"):
        ids: Iterable[int] = (
            customers.order_by().values_list("pk", flat=True).iterator(chunk_size=_ID_BATCH * 4)
        )
    else:
        ids = (c if isinstance(c, int) else c.pk for c in customers)
    through = Customer.tags.through
    count = 0
    batch: list[int] = []

    def flush() -> None:
        through.objects.bulk_create(
            [through(customer_id=c, tag_id=t) for c in batch for t in tag_ids],
            ignore_conflicts=True,
        )
        batch.clear()

    for customer_id in ids:
        batch.append(customer_id)
        count += 1
        if len(batch) >= _ID_BATCH:
            flush()
    if batch:
        flush()
    pages_cache_changed()
    return count


# Longest activity summary accepted.
ACTIVITY_SUMMARY_MAX = 2000


@transaction.atomic
def activity_log(
    *,
    customer: Customer,
    kind: str,
    summary: str = "",
    happened_at: datetime | None = None,
    user=None,
) -> Activity:
    """Record a call, an e-mail or a note with a customer (who, when, what).

    Side effects: inserts one Activity; the customer leaves Today's lists they were on
    (an activity since they became overdue, at risk or new counts as handled). Raises
    ValidationError for an unknown kind, a time in the future or a summary too long.
    """
    now = timezone.now()
    errors = {}
    if kind not in Activity.Kind.values:
        errors["kind"] = f"Unknown activity {kind!r}: a call, an e-mail or a note."
    if happened_at is not None and happened_at > now + timedelta(minutes=5):
        errors["happened_at"] = "An activity cannot be dated in the future."
    summary = summary.strip()
    if len(summary) > ACTIVITY_SUMMARY_MAX:
        errors["summary"] = f"Please keep it under {ACTIVITY_SUMMARY_MAX} characters."
    if errors:
        raise ValidationError(errors)
    activity = Activity.objects.create(
        customer=customer,
        kind=kind,
        summary=summary,
        happened_at=happened_at or now,
        created_by=user if getattr(user, "pk", None) else None,
    )
    pages_cache_changed()
    return activity


@transaction.atomic
def followup_create(*, customer: Customer, due_on: date, note: str = "", user=None) -> FollowUp:
    """Set a day to get back to a customer. Side effect: inserts one open FollowUp.

    Raises ValidationError for a day in the past or a note too long.
    """
    if due_on < timezone.localdate():
        raise ValidationError({"due_on": "A follow-up cannot be due in the past."})
    follow_up = FollowUp(
        customer=customer,
        due_on=due_on,
        note=note.strip(),
        created_by=user if getattr(user, "pk", None) else None,
    )
    follow_up.full_clean()
    follow_up.save()
    pages_cache_changed()
    return follow_up


@transaction.atomic
def followup_mark_done(*, follow_up: FollowUp) -> FollowUp:
    """Close a follow-up. Idempotent: one already done keeps its first time.

    Side effect: sets FollowUp.done_at (it leaves Today).
    """
    FollowUp.objects.filter(pk=follow_up.pk, done_at__isnull=True).update(done_at=timezone.now())
    follow_up.refresh_from_db(fields=["done_at"])
    pages_cache_changed()
    return follow_up


@transaction.atomic
def followup_snooze(*, follow_up: FollowUp, days: int) -> FollowUp:
    """Move an open follow-up to ``days`` days from today (1-90).

    Side effect: sets due_on and counts the snooze. Raises ValidationError for a follow-up
    already done or a number of days out of range.
    """
    if not 1 <= days <= 90:
        raise ValidationError({"days": "Snooze for 1 to 90 days."})
    if follow_up.done_at is not None:
        raise ValidationError("This follow-up is already done.")
    follow_up.due_on = timezone.localdate() + timedelta(days=days)
    follow_up.snoozed = F("snoozed") + 1
    follow_up.save(update_fields=["due_on", "snoozed"])
    follow_up.refresh_from_db(fields=["snoozed"])
    pages_cache_changed()
    return follow_up


BUSINESS_NAME_MAX = BusinessSettings._meta.get_field("name").max_length


def _business_forget() -> None:
    cache.delete(BUSINESS_CACHE_KEY)


@transaction.atomic
def business_settings_update(*, name: str, currency: str, time_zone: str) -> BusinessSettings:
    """Save the business's name, currency (an ISO 4217 code) and time zone (an IANA name).

    Raises ValidationError naming each wrong field, and writes nothing then. Side effects:
    the single BusinessSettings row created or updated; the cached copy read by
    crm.selectors.business_get forgotten now and again on commit, and the pages' cached
    figures with it (their amounts carry the currency).
    """
    name = " ".join(name.split())
    currency = currency.strip().upper()
    time_zone = time_zone.strip()
    errors = {}
    if not name:
        errors["name"] = "Give the business a name: customers see it on their pages and e-mails."
    elif len(name) > BUSINESS_NAME_MAX:
        errors["name"] = f"Please keep the name under {BUSINESS_NAME_MAX} characters."
    if not is_currency_code(currency):
        errors["currency"] = (
            f"{currency or 'An empty code'} is not a currency code: use the three letters of "
            "ISO 4217, such as EUR, USD or GBP."
        )
    if time_zone not in zoneinfo.available_timezones():
        errors["time_zone"] = (
            f"{time_zone or 'An empty name'} is not a known time zone: choose one from the "
            "list, such as Europe/Paris."
        )
    if errors:
        raise ValidationError(errors)
    row, _ = BusinessSettings.objects.update_or_create(
        pk=BusinessSettings.SINGLE_ID,
        defaults={"name": name, "currency": currency, "time_zone": time_zone},
    )
    _business_forget()
    transaction.on_commit(_business_forget)
    pages_cache_changed()
    return row
