"""Backups of the whole database, and proof that one restores.

SQLite is copied with its online backup API (consistent while the stack runs, unlike a file
copy); PostgreSQL with pg_dump in its custom format. A check restores a backup into a scratch
database (a temporary file; a temporary PostgreSQL database) and compares the row count of
every table with the live database.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.utils import timezone

SUFFIX = {"sqlite": ".sqlite3", "postgresql": ".dump"}
_NAME = re.compile(r"^db-\d{8}-\d{6}(-\d+)?\.(sqlite3|dump)$")


class BackupError(Exception):
    """A backup or a restore could not be made; the message says why, in words."""


@dataclass
class RestoreCheck:
    """A backup restored into a scratch database, its row counts beside the live ones."""

    backup: Path
    restored: dict[str, int] = field(default_factory=dict)
    live: dict[str, int] = field(default_factory=dict)

    @property
    def differences(self) -> dict[str, tuple[int | None, int | None]]:
        """table -> (rows in the backup, rows live), for the tables that differ."""
        tables = sorted(set(self.restored) | set(self.live))
        return {
            t: (self.restored.get(t), self.live.get(t))
            for t in tables
            if self.restored.get(t) != self.live.get(t)
        }

    @property
    def matches(self) -> bool:
        return bool(self.restored) and not self.differences

    def verdict(self) -> str:
        rows = sum(self.restored.values())
        if self.matches:
            return (
                f"OK: {self.backup.name} restores: {len(self.restored)} tables, "
                f"{rows:,} rows, the same row counts as the live database."
            )
        lines = [
            f"DIFFERENT: {self.backup.name} restores ({len(self.restored)} tables, {rows:,} "
            f"rows), but {len(self.differences)} tables differ from the live database "
            "(expected if data changed since the backup):"
        ]
        for table, (restored, live) in self.differences.items():
            lines.append(f"  {table}: {_count(restored)} in the backup, {_count(live)} live")
        return "\n".join(lines)


def _count(value: int | None) -> str:
    return "no table" if value is None else f"{value:,} rows"


def backup_dir() -> Path:
    path = Path(settings.BACKUP_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_backup() -> Path:
    """Write a backup of the default database into BACKUP_DIR, then keep only the newest
    BACKUP_KEEP. Returns the new file. Raises BackupError with the reason."""
    vendor = connection.vendor
    if vendor not in SUFFIX:
        raise BackupError(f"Backups of a {vendor} database are not supported.")
    folder = backup_dir()
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    target = folder / f"db-{stamp}{SUFFIX[vendor]}"
    if target.exists():  # two backups in one second
        target = folder / f"db-{stamp}-{uuid.uuid4().int % 10_000}{SUFFIX[vendor]}"
    partial = target.with_name(target.name + ".partial")
    try:
        if vendor == "sqlite":
            _sqlite_backup(partial)
        else:
            _pg_dump(partial)
        partial.replace(target)  # a backup file is whole or absent
    finally:
        partial.unlink(missing_ok=True)
    backups_prune(keep=settings.BACKUP_KEEP)
    return target


def backups_list() -> list[Path]:
    """The backups in BACKUP_DIR, newest first."""
    folder = Path(settings.BACKUP_DIR)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_file() and _NAME.match(p.name)]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name), reverse=True)


def backups_prune(*, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups; returns those deleted."""
    old = backups_list()[max(1, keep) :]
    for path in old:
        path.unlink(missing_ok=True)
    return old


def _sqlite_backup(target: Path) -> None:
    connection.ensure_connection()
    destination = sqlite3.connect(target)
    try:
        with destination:
            connection.connection.backup(destination)
    finally:
        destination.close()


def _pg_settings() -> tuple[dict[str, str], list[str]]:
    """The environment and connection options pg_dump and pg_restore need."""
    db = settings.DATABASES["default"]
    env = {**os.environ}
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = str(db["PASSWORD"])
    args = []
    for option, key in (("--host", "HOST"), ("--port", "PORT"), ("--username", "USER")):
        if db.get(key):
            args += [option, str(db[key])]
    return env, args


def _pg_run(argv: list[str], env: dict[str, str]) -> None:
    try:
        subprocess.run(argv, env=env, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise BackupError(f"{argv[0]} is not installed (PostgreSQL's client tools).") from None
    except subprocess.CalledProcessError as exc:
        raise BackupError(f"{argv[0]} failed: {exc.stderr.strip() or exc.returncode}") from None


def _pg_dump(target: Path) -> None:
    env, args = _pg_settings()
    name = settings.DATABASES["default"]["NAME"]
    _pg_run(["pg_dump", "--format=custom", "--file", str(target), *args, name], env)


# --- restore check ---------------------------------------------------------------------------


def backup_restore_check(path: Path) -> RestoreCheck:
    """Restore a backup into a scratch database, count every table's rows there and live.

    The scratch database is removed afterwards; the live one is only read. Raises
    BackupError when the file is missing or does not restore.
    """
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"There is no backup file {path}.")
    check = RestoreCheck(backup=path)
    if connection.vendor == "sqlite":
        check.restored = _sqlite_restored_counts(path)
    elif connection.vendor == "postgresql":
        check.restored = _pg_restored_counts(path)
    else:
        raise BackupError(f"Backups of a {connection.vendor} database are not supported.")
    check.live = _live_counts()
    return check


def _tables_sql(vendor: str) -> str:
    if vendor == "sqlite":
        # Virtual tables (the customer search index) and their shadow tables are derived
        # from other tables, rebuilt by migrate: not counted.
        return (
            "SELECT name FROM sqlite_master AS t WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' AND NOT EXISTS (SELECT 1 FROM sqlite_master AS v "
            "WHERE v.type = 'table' AND v.sql LIKE 'CREATE VIRTUAL TABLE%' "
            "AND (t.name = v.name OR substr(t.name, 1, length(v.name) + 1) = v.name || '_')) "
            "ORDER BY name"
        )
    return "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"


def _counts(cursor, vendor: str, quote) -> dict[str, int]:
    cursor.execute(_tables_sql(vendor))
    tables = [row[0] for row in cursor.fetchall()]
    counts = {}
    for table in tables:
        cursor.execute(f"SELECT COUNT(*) FROM {quote(table)}")
        counts[table] = cursor.fetchone()[0]
    return counts


def _live_counts() -> dict[str, int]:
    with connection.cursor() as cur:
        return _counts(cur, connection.vendor, connection.ops.quote_name)


def _sqlite_quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sqlite_restored_counts(path: Path) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder) / "restore-check.sqlite3"
        try:
            source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            destination = sqlite3.connect(scratch)
            try:
                source.backup(destination)
                (verdict,) = destination.execute("PRAGMA integrity_check").fetchone()
                if verdict != "ok":
                    raise BackupError(f"{path.name} is damaged: {verdict}")
                return _counts(destination.cursor(), "sqlite", _sqlite_quote)
            finally:
                source.close()
                destination.close()
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"{path.name} is not a readable SQLite backup ({exc}).") from None


@contextmanager
def _pg_scratch_database():
    """A temporary, empty PostgreSQL database on the live server; dropped on the way out."""
    name = f"restore_check_{uuid.uuid4().hex[:12]}"
    with connection.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        with connection.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")


def _pg_restored_counts(path: Path) -> dict[str, int]:
    import psycopg  # the PostgreSQL driver, only needed (and installed) with PostgreSQL

    env, args = _pg_settings()
    with _pg_scratch_database() as name:
        _pg_run(
            ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
             *args, "--dbname", name, str(path)],
            env,
        )  # fmt: skip
        params = {**connection.get_connection_params(), "dbname": name}
        params.pop("cursor_factory", None)
        params.pop("context", None)
        with psycopg.connect(**params) as scratch, scratch.cursor() as cur:
            return _counts(cur, "postgresql", connection.ops.quote_name)
