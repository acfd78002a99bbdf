"""PostgreSQL's binary COPY format, shared by segmentation's bulk writes (labels, stored
features, predictions): a signature, flags and header extension, the rows, then a field
count of -1. Rows are built by numpy, so a million of them take milliseconds."""

from collections.abc import Iterable
from datetime import UTC, date, datetime

HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
TRAILER = (-1).to_bytes(2, "big", signed=True)
# Dates are days, timestamps microseconds, since this moment.
EPOCH_DATE = date(2000, 1, 1)
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def copy_binary(cursor, sql: str, chunks: Iterable[bytes]) -> None:
    """Run ``COPY … FROM STDIN WITH (FORMAT binary)`` on a Django cursor, writing the
    header, each chunk of encoded rows and the trailer."""
    with cursor.cursor.copy(sql) as copy:
        copy.write(HEADER)
        for chunk in chunks:
            copy.write(chunk)
        copy.write(TRAILER)
