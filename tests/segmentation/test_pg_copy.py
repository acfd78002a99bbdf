import pytest
from django.db import connection, transaction
from psycopg import errors

from segmentation.pg_copy import copy_out
from segmentation.selectors import _binary_rows_frame

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's COPY"),
]


def rows_of(buffer: bytearray) -> list[int]:
    """The bigint column of a binary COPY, decoded as the feature read decodes its rows."""
    return _binary_rows_frame(buffer, ["n"], int_columns={"n"})["n"].tolist()


def test_every_row_of_a_long_copy_arrives_in_order():
    with connection.cursor() as cur:
        buffer = copy_out(cur, "SELECT CAST(n AS BIGINT) FROM generate_series(1, 200000) n")
        with cur.cursor.copy(
            "COPY (SELECT CAST(n AS BIGINT) FROM generate_series(1, 200000) n) "
            "TO STDOUT WITH (FORMAT binary)"
        ) as copy:
            by_psycopg = b"".join(bytes(chunk) for chunk in copy)

    assert bytes(buffer) == by_psycopg
    assert rows_of(buffer) == list(range(1, 200001))


def test_no_rows_is_the_header_and_trailer():
    with connection.cursor() as cur:
        assert len(rows_of(copy_out(cur, "SELECT CAST(1 AS BIGINT) WHERE false"))) == 0


def test_an_error_halfway_is_raised_and_the_connection_goes_on():
    with pytest.raises(errors.DivisionByZero), transaction.atomic(), connection.cursor() as cur:
        copy_out(cur, "SELECT CAST(1 / (n - 150000) AS BIGINT) FROM generate_series(1, 200000) n")

    with connection.cursor() as cur:
        cur.execute("SELECT 41 + 1")
        assert cur.fetchone() == (42,)
