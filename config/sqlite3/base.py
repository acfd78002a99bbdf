"""Django's SQLite backend, creating the database file's folder on first connection.

The default database lives under VAR_DIR, which a fresh checkout does not have yet; settings
must not create folders when imported, so the code that writes the file makes its folder.
"""

from pathlib import Path

from django.db.backends.sqlite3 import base


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        name = str(conn_params["database"])
        if name != ":memory:" and not name.startswith("file:"):
            Path(name).parent.mkdir(parents=True, exist_ok=True)
        return super().get_new_connection(conn_params)
