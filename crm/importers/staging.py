"""Temporary tables an import streams its rows into, so memory stays flat however long the file.

PostgreSQL gets COPY, SQLite one executemany per block. The tables are TEMPORARY: private to
this connection, never in a backup, and writing them takes no lock on the real tables (on
SQLite they live in a separate file, so staff can keep writing while a file is read).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from django.db import connection

BLOCK_ROWS = 10_000
STAGING_WORK_MEM = "64MB"  # PostgreSQL, per sort or hash
SQLITE_CACHE_KB = 64 * 1024  # per schema: the real tables', the staging tables'


def _types() -> dict[str, str]:
    if connection.vendor == "postgresql":
        return {
            "int": "integer",
            "big": "bigint",
            "text": "text",
            "moment": "timestamptz",
            "date": "date",
            "decimal": "numeric",
            "bool": "boolean",
        }
    # The affinities Django's own SQLite columns have, so that staged and stored values compare.
    return {
        "int": "integer",
        "big": "integer",
        "text": "text",
        "moment": "text",
        "date": "text",
        "decimal": "numeric",
        "bool": "integer",
    }


@contextmanager
def staging_tables(tables: dict[str, str]) -> Iterator[None]:
    """Create the temporary tables ({name: column definitions, with {int}, {big}, {text},
    {moment}, {date}, {decimal} and {bool} for the vendor's types}) and drop them afterwards,
    whatever happens."""
    types = _types()
    with connection.cursor() as cur:
        for name, columns in tables.items():
            cur.execute(f"DROP TABLE IF EXISTS {name}")
            cur.execute(f"CREATE TEMPORARY TABLE {name} ({columns.format(**types)})")
        cached = _sqlite_cache_grow(cur)
        if connection.vendor == "postgresql":
            # Grouping a million staged lines sorts and hashes on disk with the default
            # 4 MB; this connection only, until the tables are dropped.
            cur.execute(f"SET work_mem = '{STAGING_WORK_MEM}'")
    try:
        yield
    finally:
        with connection.cursor() as cur:
            for name in tables:
                cur.execute(f"DROP TABLE IF EXISTS {name}")
            for schema, pages in cached.items():
                cur.execute(f"PRAGMA {schema}.cache_size = {int(pages)}")
            if connection.vendor == "postgresql":
                cur.execute("RESET work_mem")


def _sqlite_cache_grow(cur) -> dict[str, int]:
    """SQLite: a larger page cache for this connection while the import runs; returns the
    sizes to restore. With the default 2 MB, a million-line import re-reads the pages of
    the purchase table's indexes (and of the staging tables) over and over."""
    if connection.vendor != "sqlite":
        return {}
    previous = {}
    for schema in ("main", "temp"):
        cur.execute(f"PRAGMA {schema}.cache_size")
        previous[schema] = cur.fetchone()[0]
        cur.execute(f"PRAGMA {schema}.cache_size = -{SQLITE_CACHE_KB}")
    return previous


class StagingWriter:
    """Buffers rows and writes them to a staging table a block at a time."""

    def __init__(self, table: str, columns: Sequence[str], *, nullable: Sequence[str] = ()):
        self.table = table
        self.columns = columns
        self.nullable = nullable  # the only columns that may hold None
        self.rows: list[tuple] = []

    def add(self, row: tuple) -> None:
        self.rows.append(row)
        if len(self.rows) >= BLOCK_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        names = ", ".join(self.columns)
        if connection.vendor == "postgresql":
            # CSV written by the csv module (C) is the cheapest COPY input from Python. An
            # empty cell is NULL in CSV: every column but the nullable ones is forced not to.
            buffer = io.StringIO()
            csv.writer(buffer).writerows(self.rows)
            forced = ", ".join(c for c in self.columns if c not in self.nullable)
            sql = (
                f"COPY {self.table} ({names}) FROM STDIN "
                f"WITH (FORMAT csv, FORCE_NOT_NULL ({forced}))"
            )
            with connection.cursor() as cur, cur.cursor.copy(sql) as copy:
                copy.write(buffer.getvalue())
        else:
            marks = ", ".join("?" * len(self.columns))
            sql = f"INSERT INTO {self.table} ({names}) VALUES ({marks})"
            connection.ensure_connection()
            raw = connection.connection
            if connection.in_atomic_block:
                raw.executemany(sql, self.rows)
            else:
                # One transaction per block (autocommit would commit row by row). DEFERRED,
                # unlike the project's IMMEDIATE default: it writes only the temporary
                # database, so it takes no lock on the real tables.
                raw.execute("BEGIN DEFERRED")
                try:
                    raw.executemany(sql, self.rows)
                except BaseException:
                    raw.execute("ROLLBACK")
                    raise
                raw.execute("COMMIT")
        self.rows = []


def staging_update(sql: str, rows: list[tuple]) -> None:
    """Run one statement (%s placeholders) for each row, on a staging table only: in one
    transaction that takes no lock on the real tables (see StagingWriter.flush)."""
    if connection.vendor == "postgresql" or connection.in_atomic_block:
        with connection.cursor() as cur:
            cur.executemany(sql, rows)
        return
    connection.ensure_connection()
    raw = connection.connection
    raw.execute("BEGIN DEFERRED")
    try:
        raw.executemany(sql.replace("%s", "?"), rows)
    except BaseException:
        raw.execute("ROLLBACK")
        raise
    raw.execute("COMMIT")


def moment_adapter() -> Callable[[datetime], object]:
    """How this database is given an aware datetime. SQLite: Django's UTC text, so that
    staged and stored moments compare as equal text; PostgreSQL: the datetime itself."""
    if connection.vendor == "sqlite":
        return lambda moment: str(moment.astimezone(UTC).replace(tzinfo=None))
    return lambda moment: moment


def query_rows(sql: str, params=()) -> Iterator[tuple]:
    """Every row of a query, read in blocks."""
    with connection.cursor() as cur:
        cur.execute(sql, params)
        while block := cur.fetchmany(BLOCK_ROWS):
            yield from block


def query_execute(sql: str, params=()) -> int:
    """Run one statement; the rows it changed."""
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.rowcount


def query_scalar(sql: str, params=()):
    """The first column of a query's first row."""
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()[0]


def staging_analyze(table: str) -> None:
    """PostgreSQL never analyzes temporary tables by itself: without statistics it plans
    the importers' joins as nested loops over a million rows."""
    if connection.vendor == "postgresql":
        query_execute(f"ANALYZE {table}")
