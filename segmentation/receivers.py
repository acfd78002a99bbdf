"""Receivers of crm's signals: segmentation keeps its copies of customer figures in step."""

from django.db import connection

from crm.models import Customer
from crm.signals import CUSTOMERS_ALL
from segmentation.models import Membership


def membership_figures_sync(sender, *, customer_ids, **kwargs) -> None:
    """Copy total_spent and last_purchase_at to the customers' segment memberships, which
    carry them for the segment page's sorted member lists (see segmentation.Membership).

    One UPDATE ... FROM over the changed rows only; ``customer_ids`` is a batch of ids or
    crm.signals.CUSTOMERS_ALL.
    """
    table = Membership._meta.db_table
    differs = "IS DISTINCT FROM" if connection.vendor == "postgresql" else "IS NOT"
    sql = (
        f"UPDATE {table} SET total_spent = c.total_spent, last_purchase_at = c.last_purchase_at "
        f"FROM {Customer._meta.db_table} c WHERE c.id = {table}.customer_id "
        f"AND ({table}.total_spent <> c.total_spent "
        f"OR {table}.last_purchase_at {differs} c.last_purchase_at)"
    )
    params: list[int] = []
    if customer_ids != CUSTOMERS_ALL:
        if not customer_ids:
            return
        sql += f" AND c.id IN ({', '.join(['%s'] * len(customer_ids))})"
        params = list(customer_ids)
    with connection.cursor() as cur:
        cur.execute(sql, params)
