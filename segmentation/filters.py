"""The filters of a segment's member list (the page and its CSV export share them)."""

from crm.filters import CustomerFilter
from crm.models import Customer
from segmentation.models import Segment

TABLE_COLUMNS = (
    "pk",
    "name",
    "email",
    "external_source",
    "external_id",
    "city",
    "purchase_count",
    "total_spent",
    "last_purchase_at",
)


def segment_members_filter(data, *, segment: Segment, columns=TABLE_COLUMNS) -> CustomerFilter:
    """The segment's members through the page's filters (columns None: every column)."""
    members = Customer.objects.filter(membership__segment=segment)
    if columns:
        members = members.only(*columns)
    return CustomerFilter(data, queryset=members)
