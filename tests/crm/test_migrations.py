"""The CHECKs on decimal digits (crm 0016) migrate over rows SQLite stored before them."""

import pytest
from django.db import IntegrityError, connection
from django.db.migrations.executor import MigrationExecutor

BEFORE_CHECKS = [("crm", "0012_offers_moved_to_offers_app")]

POISONED = (
    "INSERT INTO crm_purchase (customer_id, kind, amount, currency, purchased_at, product,"
    " category, channel, external_source, external_order_id, created_at) VALUES"
    " (%s, 'sale', 123456789012345, 'EUR', '2024-01-01 00:00:00', '', '', '', '', '',"
    " '2024-01-01 00:00:00')"
)


def _migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


@pytest.mark.slow
@pytest.mark.skipif(connection.vendor != "sqlite", reason="PostgreSQL never stored such a row")
@pytest.mark.django_db(transaction=True)
def test_a_row_stored_before_the_checks_is_kept_and_new_ones_are_refused():
    leaves = MigrationExecutor(connection).loader.graph.leaf_nodes()
    _migrate(BEFORE_CHECKS)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO crm_customer (name, email, phone, external_source, external_id, notes,"
            " marketing_consent, profiling_opt_out, is_archived, created_at, updated_at,"
            " purchase_count, total_spent, city, country) VALUES ('Ann', '', '', '', '', '',"
            " 0, 0, 0, '2024-01-01', '2024-01-01', 0, 0, '', '')"
        )
        customer_id = cursor.lastrowid
        cursor.execute(POISONED, [customer_id])

    _migrate(leaves)

    with connection.cursor() as cursor:
        cursor.execute("SELECT amount FROM crm_purchase")
        assert [row[0] for row in cursor.fetchall()] == [123456789012345]
        with pytest.raises(IntegrityError):
            cursor.execute(POISONED, [customer_id])
        # The rebuilt table kept its triggers (crm 0003): no purchase dated years ahead.
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        assert {"purchase_not_in_future_INSERT", "purchase_not_in_future_UPDATE"} <= {
            row[0] for row in cursor.fetchall()
        }
