"""Django's SQLite backend, creating the database file's folder on first connection.

The default database lives under VAR_DIR, which a fresh checkout does not have yet; settings
must not create folders when imported, so the code that writes the file makes its folder.
It also reads decimals wider than their column instead of failing (see DatabaseOperations).
"""

import decimal
from pathlib import Path

from django.db.backends.sqlite3 import base, operations


class DatabaseOperations(operations.DatabaseOperations):
    """SQLite stores any decimal: a row written before the CHECK constraints on the digits
    (crm.bounds) can hold more digits than its field, and Django's converter then raises
    InvalidOperation on every page that lists it. Such a value is read as it is, so the row
    can be seen and deleted in the admin."""

    def get_decimalfield_converter(self, expression):
        convert = super().get_decimalfield_converter(expression)
        create_decimal = decimal.Context(prec=15).create_decimal_from_float

        def converter(value, expression, connection):
            try:
                return convert(value, expression, connection)
            except decimal.InvalidOperation:
                return create_decimal(value)

        return converter


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations

    def get_new_connection(self, conn_params):
        name = str(conn_params["database"])
        if name != ":memory:" and not name.startswith("file:"):
            Path(name).parent.mkdir(parents=True, exist_ok=True)
        return super().get_new_connection(conn_params)
