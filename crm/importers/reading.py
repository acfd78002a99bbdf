"""Open a CSV file (gzip or not, any line ending, BOM or not) and read its rows by our columns."""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO

from crm.bounds import NUL_MESSAGE
from crm.csv_guard import csv_unguard
from crm.importers.report import FatalImportError, ImportReport, Progress

PROGRESS_EVERY = 5000

# Bytes that were not UTF-8 (kept as surrogates) and NUL bytes, which no text may hold.
BAD_BYTES = re.compile("[\udc80-\udcff\x00]")


def open_text(source: str | Path | BinaryIO) -> io.TextIOWrapper:
    """A text stream over a CSV file, gzip or not. BOM and any line ending are accepted.

    Bytes that are not UTF-8 are kept as surrogates so each row can say where they are.
    """
    binary = open(source, "rb") if isinstance(source, str | Path) else source  # noqa: SIM115
    head = binary.read(2)
    binary.seek(0)
    if head == b"\x1f\x8b":
        binary = gzip.GzipFile(fileobj=binary)
    return io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")


def encoding_problem(value: str) -> str | None:
    """Why the text holds bytes that were not UTF-8, or None when it is clean."""
    match = BAD_BYTES.search(value)
    if not match:
        return None
    if match.group() == "\x00":
        return NUL_MESSAGE
    byte = ord(match.group()) - 0xDC00
    return (
        f"byte 0x{byte:02X} is not valid UTF-8 (the file looks like Latin-1/Windows-1252, "
        "as spreadsheet programs save 'CSV' by default); re-save the file as "
        "'CSV UTF-8' and import it again"
    )


@dataclass
class Row:
    number: int
    values: dict[str, str]
    # (column, message) found before the importer's own checks (a preset's reading of it)
    problems: tuple[tuple[str, str], ...] = ()


def rows_read(
    text: io.TextIOWrapper,
    *,
    known: tuple[str, ...],
    mapping: dict[str, str],
    report: ImportReport,
    progress: Progress | None,
) -> tuple[set[str], Iterator[Row]]:
    """Read the header, then yield each row as {our column: stripped value}."""
    reader = csv.reader(text)
    header = _header(reader)
    columns = _column_positions(header, known=known, mapping=mapping)
    used = set(columns.values())
    # A misspelt column is otherwise silently left out: the report names every one.
    report.ignored_columns = [
        name.strip() for i, name in enumerate(header) if i not in used and name.strip()
    ]
    return set(columns), _rows(reader, columns=columns, report=report, progress=progress)


def _header(reader) -> list[str]:
    try:
        header = next(reader)
    except StopIteration:
        raise FatalImportError(1, None, "the file is empty") from None
    except UnicodeDecodeError as exc:  # gzip data that is not text at all
        raise FatalImportError(1, None, f"the file is not a CSV text file ({exc.reason})") from None
    except (OSError, EOFError) as exc:
        raise FatalImportError(1, None, f"the file cannot be read ({exc})") from None
    for name in header:
        if problem := encoding_problem(name):
            raise FatalImportError(1, None, problem)
    return header


def _column_positions(
    header: list[str], *, known: tuple[str, ...], mapping: dict[str, str]
) -> dict[str, int]:
    """{our column: its index in the file}, for the columns the file has."""
    positions = {name.strip().lower(): i for i, name in enumerate(header)}
    unknown = set(mapping) - set(known)
    if unknown:
        raise FatalImportError(
            0, None, f"unknown column(s) in the mapping: {', '.join(sorted(unknown))}"
        )
    columns: dict[str, int] = {}
    for ours in known:
        theirs = mapping.get(ours, ours).strip().lower()
        if theirs in positions:
            columns[ours] = positions[theirs]
        elif ours in mapping:
            raise FatalImportError(
                1,
                mapping[ours],
                f"missing column (mapped to '{ours}'); the header has: "
                + ", ".join(h.strip() for h in header),
            )
    return columns


def _rows(
    reader, *, columns: dict[str, int], report: ImportReport, progress: Progress | None
) -> Iterator[Row]:
    count = 0
    names = tuple(columns)
    indexes = tuple(columns.values())
    width = max(indexes, default=-1) + 1
    # itemgetter picks the cells in C; with one index it gives the cell, not a tuple.
    picked = (
        itemgetter(*indexes) if len(indexes) > 1 else (lambda raw: tuple(raw[i] for i in indexes))
    )
    strip = str.strip
    try:
        for raw in reader:
            count += 1
            if progress and count % PROGRESS_EVERY == 0:
                progress(PROGRESS_EVERY)
            if not "".join(raw).strip():
                continue
            report.rows += 1
            if len(raw) < width:
                raw += [""] * (width - len(raw))
            cells = list(map(strip, picked(raw)))
            # The export's formula guard comes off here, for every importer alike.
            if "'" in "".join(cells):
                cells = [csv_unguard(cell) for cell in cells]
            yield Row(reader.line_num, dict(zip(names, cells, strict=True)))
    except csv.Error as exc:
        raise FatalImportError(reader.line_num, None, f"the CSV is malformed ({exc})") from None
    except (OSError, EOFError) as exc:
        raise FatalImportError(reader.line_num, None, f"the file cannot be read ({exc})") from None
    if progress:
        progress(count % PROGRESS_EVERY)
    if not report.rows:
        raise FatalImportError(2, None, "the file has no data rows, only a header")
