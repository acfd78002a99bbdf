"""The SQLite index behind customer search: an FTS5 trigram table kept by triggers.

PostgreSQL answers ``search_text LIKE '%…%'`` from a trigram GIN index (a migration); SQLite
has no such index, so it keeps a copy of every customer's search_text in an FTS5 table with
the trigram tokenizer, whose rowid is the customer's id. A quoted FTS5 phrase of three or more
characters is a substring match answered from that index.

Triggers keep the copy in step with every writer: the ORM, the importers' set-based upserts,
raw SQL. They are installed after every ``migrate`` (post_migrate), not by a migration,
because Django rebuilds a SQLite table whenever a later migration alters it, and a rebuilt
table has lost its triggers; whenever one is missing the copy is rebuilt from the table.
"""

from django.db import connections, transaction
from django.db.models import CharField, Func

SEARCH_TABLE = "crm_customer_search"
# A trigram index answers needles of at least this many characters; shorter ones scan.
INDEXED_NEEDLE_MIN_CHARS = 3
# Above this many matches a search reads the list in its own order instead of every match.
DENSE_MATCHES = 5_000
# A phone number is first looked up by its last digits, from an index on search_text's tail.
PHONE_TAIL_DIGITS = 7


class SearchTextTail(Func):
    """The last PHONE_TAIL_DIGITS characters of search_text: the phone's last digits
    whenever it has that many (the phone comes last, after a "|", so a tail made only of
    digits is always the phone's). Indexed (customer_phone_tail_idx): a trigram index is of
    little use for a number, whose trigrams ("000", "200") most numbers share. Literal SQL,
    the same in the index and the query, so that SQLite matches the indexed expression."""

    arity = 1
    output_field = CharField()

    def as_sql(self, compiler, connection, **extra_context):
        if connection.vendor == "postgresql":
            template = f"right(%(expressions)s, {PHONE_TAIL_DIGITS})"
        else:
            template = f"substr(%(expressions)s, -{PHONE_TAIL_DIGITS})"
        return super().as_sql(compiler, connection, template=template, **extra_context)


_TRIGGERS = {
    # INSERT OR REPLACE rather than a plain INSERT / UPDATE: a row that is somehow missing
    # from the copy is put back by the next write of that customer instead of staying lost.
    "crm_customer_search_ai": f"""
        CREATE TRIGGER crm_customer_search_ai AFTER INSERT ON crm_customer BEGIN
            INSERT OR REPLACE INTO {SEARCH_TABLE}(rowid, search_text)
            VALUES (new.id, new.search_text);
        END""",
    # Only statements that set search_text, and only rows where it changed: the nightly
    # statistics refresh rewrites every customer and must not touch the index.
    "crm_customer_search_au": f"""
        CREATE TRIGGER crm_customer_search_au AFTER UPDATE OF search_text ON crm_customer
        WHEN old.search_text IS NOT new.search_text BEGIN
            INSERT OR REPLACE INTO {SEARCH_TABLE}(rowid, search_text)
            VALUES (new.id, new.search_text);
        END""",
    "crm_customer_search_ad": f"""
        CREATE TRIGGER crm_customer_search_ad AFTER DELETE ON crm_customer BEGIN
            DELETE FROM {SEARCH_TABLE} WHERE rowid = old.id;
        END""",
}


def search_index_ensure(*, using: str = "default") -> bool:
    """Install the SQLite search table and its triggers where any is missing, and then fill
    the table from crm_customer. Returns True when it had to (re)build. A no-op on
    PostgreSQL and when everything is in place."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        return False
    with transaction.atomic(using=using), connection.cursor() as cursor:
        tables = {name for (name,) in cursor.execute(_names_sql("table")).fetchall()}
        if "crm_customer" not in tables:
            return False  # migrated backwards past the customer table
        triggers = {name for (name,) in cursor.execute(_names_sql("trigger")).fetchall()}
        if SEARCH_TABLE in tables and set(_TRIGGERS) <= triggers:
            return False
        cursor.execute(f"DROP TABLE IF EXISTS {SEARCH_TABLE}")
        cursor.execute(
            f"CREATE VIRTUAL TABLE {SEARCH_TABLE} USING fts5(search_text, tokenize='trigram')"
        )
        for name, sql in _TRIGGERS.items():
            cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
            cursor.execute(sql)
        cursor.execute(
            f"INSERT INTO {SEARCH_TABLE}(rowid, search_text) "
            "SELECT id, search_text FROM crm_customer"
        )
    return True


def search_index_many_match(match: tuple[str, list[str]], *, using: str = "default") -> bool:
    """Whether the index query ``match`` (from search_index_match_sql) finds more than
    DENSE_MATCHES customers, counting no further. Then a list is better served by walking
    its own order and checking each row: a page of matches turns up within a few thousand
    rows, where fetching and sorting every match costs more and more (a surname shared by
    20,000 of a million customers: 62 ms against 2 ms)."""
    sql, params = match
    with connections[using].cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM ({sql} LIMIT {DENSE_MATCHES + 1})", params)
        return cursor.fetchone()[0] > DENSE_MATCHES


def search_index_match_sql(needle: str) -> tuple[str, list[str]] | None:
    """SQL selecting the ids of customers whose search_text contains ``needle`` from the
    SQLite index, with its parameters; None when the index cannot answer (too short)."""
    if len(needle) < INDEXED_NEEDLE_MIN_CHARS:
        return None
    # One FTS5 phrase: the needle's trigrams in a row, i.e. the needle as a substring.
    phrase = '"' + needle.replace('"', '""') + '"'
    return f"SELECT rowid FROM {SEARCH_TABLE} WHERE {SEARCH_TABLE} MATCH %s", [phrase]


def _names_sql(kind: str) -> str:
    return f"SELECT name FROM sqlite_master WHERE type = '{kind}'"
