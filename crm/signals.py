"""Signals crm sends so that apps above it can follow its writes without crm importing them."""

from django.dispatch import Signal

# Every customer was refreshed (instead of a list of ids).
CUSTOMERS_ALL = "all"

# Sent by crm.services.customer_stats_refresh after purchase_count, total_spent,
# first_purchase_at and last_purchase_at were recomputed, inside the same transaction if the
# caller has one. Argument: customer_ids, a list of ids (one batch) or CUSTOMERS_ALL.
customer_stats_refreshed = Signal()
