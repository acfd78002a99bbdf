"""Writes to one customer's membership or one segment: pins and the owner's names.

Each write also invalidates the staff pages' cached figures (crm.cache.pages_cache_changed)."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F

from crm.cache import pages_cache_changed
from crm.models import Customer
from segmentation import selectors
from segmentation.models import Membership, Segment, SegmentMembershipChange

REASON_MAX = Membership._meta.get_field("reason").max_length


def segment_pin(*, customer: Customer, segment: Segment | None = None) -> Customer:
    """Pin a customer to a segment (their current one by default); runs then leave them be.

    Side effects: the customer's membership (segment, reason, pin); a history row when the
    segment changes; both segments' precomputed sizes.
    """
    if segment is None:
        current = selectors.customer_membership(customer=customer)
        segment = current.segment if current else None
    if segment is None:
        raise ValidationError(f"{customer} has no segment yet: choose one to pin them to.")
    if not segment.is_active:
        raise ValidationError(f"{segment} is retired: pin the customer to an active segment.")
    with transaction.atomic():
        membership = _membership_locked(customer)
        previous = membership.segment_id
        membership.segment = segment
        membership.pinned = True
        membership.reason = f"Pinned to {segment.name} by the owner."[:REASON_MAX]
        membership.save()
        if previous != segment.pk:
            SegmentMembershipChange.objects.create(
                customer_id=customer.pk,
                from_segment_id=previous,
                to_segment=segment,
                reason=membership.reason,
            )
            Segment.objects.filter(pk=segment.pk).update(size=F("size") + 1)
            if previous:
                Segment.objects.filter(pk=previous, size__gt=0).update(size=F("size") - 1)
        pages_cache_changed()
    return _customer_fresh(customer)


def segment_unpin(*, customer: Customer) -> Customer:
    """Let the next run place the customer again. Side effects: the pin, a history row."""
    with transaction.atomic():
        membership = _membership_locked(customer)
        if not membership.pinned:
            return _customer_fresh(customer)
        membership.pinned = False
        membership.reason = "Unpinned by the owner; the next run places them."
        membership.save(update_fields=["pinned", "reason"])
        SegmentMembershipChange.objects.create(
            customer_id=customer.pk,
            from_segment_id=membership.segment_id,
            to_segment_id=membership.segment_id,
            reason=membership.reason,
        )
        pages_cache_changed()
    return _customer_fresh(customer)


def _membership_locked(customer: Customer) -> Membership:
    """The customer's membership row, locked (created, empty, for a customer never placed)."""
    # Lock the customer row first: two first pins of the same customer then queue up here
    # instead of both inserting a membership.
    list(Customer.objects.select_for_update().filter(pk=customer.pk).values_list("pk"))
    membership = Membership.objects.select_for_update().filter(customer_id=customer.pk).first()
    if membership is None:
        figures = Customer.objects.values("total_spent", "last_purchase_at").get(pk=customer.pk)
        membership = Membership(customer_id=customer.pk, **figures)
    return membership


def _customer_fresh(customer: Customer) -> Customer:
    return Customer.objects.select_related("membership__segment").get(pk=customer.pk)


def segment_update(*, segment: Segment, name: str, description: str) -> Segment:
    """The owner's name and description for a segment; later runs keep what the owner set.

    Setting the name back to the proposed one (auto_name) hands it back to the runs.
    """
    name = name.strip()
    if not name:
        raise ValidationError("A segment needs a name.")
    clash = Segment.objects.active().filter(name=name).exclude(pk=segment.pk)
    if segment.is_active and clash.exists():
        raise ValidationError(f"Another active segment is already called {name!r}.")
    segment.name = name
    segment.name_is_custom = name != segment.auto_name
    segment.description = description
    segment.description_is_custom = description != segment.auto_description
    segment.save(update_fields=["name", "name_is_custom", "description", "description_is_custom"])
    pages_cache_changed()
    return segment
