"""Read one day of landing files into validated rows plus a quarantine of rejected rows.

Why this exists: the landing zone is written by other systems and is never clean. The pipeline must
keep going on bad input, keep every bad row visible with a readable reason, and never silently lose
a row. So the contract is *conservation*: ``stats["rows_read"] == stats["valid"] + stats["rejected"]``
for every call, and each input row ends up in exactly one of ``valid`` / ``rejected``.

Everything is parsed by DuckDB (in-memory connection, nothing written anywhere); Python only loops
over files. No Dagster here: the asset layer calls :func:`read_landing_partition` and writes the
two Arrow tables to the warehouse itself.

Layout: ``<landing_root>/comments/date=YYYY-MM-DD/*.{jsonl,ndjson,json,csv,parquet}``.

Policies (README-ready):

* **What a row is.** JSONL/NDJSON: one non-blank line (``source_row`` = physical line number,
  1-based; LF or CRLF; a lone CR is not a line break; empty or whitespace-only lines are not rows).
  ``.json``: if the whole file is one JSON array, each element is a row (``source_row`` = element
  index, 1-based); one JSON object is one row; anything else is read as JSON Lines.
  CSV: one record after the header (``source_row`` = DuckDB's record number: the header is 1, each
  line is one more, blank lines included, but a quoted value spanning several lines counts once -
  so it is the line number unless an earlier value spans lines). Parquet: one row (``source_row`` =
  row number in the file, 1-based).
* **Required fields** ``comment_id``, ``created_at``, ``text``; every other field is kept, as a JSON
  object, in ``extra`` (``'{}'`` if none). CSV/Parquet column names match the required names
  case-insensitively.
* **comment_id**: strings are trimmed; missing/empty -> rejected. An integer (JSON integer, Parquet
  integer column) is *accepted* in its decimal string form (``12`` and ``"12"`` are the same id).
  Fractions, booleans, arrays, objects -> rejected. Longer than 256 characters or containing control
  characters -> rejected.
* **text**: must be a string. Null/absent, empty, only whitespace/invisible characters (``\\s``,
  Unicode separators, control and format characters such as zero-width spaces), a non-string
  (number, boolean, ...) or longer than ``max_text_chars`` characters (Unicode code points) ->
  rejected. Other control / zero-width characters, RTL text, emoji and mixed scripts are kept as they
  are (normalization happens later, in ``textnorm``).
* **created_at**: an ISO-8601 date or date-time string (``2025-01-31``, ``2025-01-31T12:00:00``,
  optional fraction, optional ``Z`` / ``+08:00``) or a native Parquet timestamp/date. No offset means
  UTC. Anything else (``yesterday``, epoch numbers, ``infinity``, time-zone names) -> rejected. The
  date need not match the folder: the folder decides the partition and the value is kept as is.
* **Duplicates**: a comment_id seen again within the day (across files too) keeps the first row in
  (file name, source_row) order; later ones are rejected naming the first. Only otherwise-valid rows
  take part, so a broken first copy does not shadow a good later one. The same comment_id on two
  different days is kept on both: partitions are independent and a day's files are its truth.
* **Broken input never crashes the read.** Invalid UTF-8 quarantines just the lines/records that
  contain it ("not valid UTF-8"; raw shows bad bytes as ``?``). Lone surrogate escapes
  (``"\\ud800"``), raw control characters and truncated lines are "not valid JSON". A JSON value
  that is not an object is rejected.
* **CSV**: RFC 4180 dialect (comma, ``"`` quotes, ``""`` escapes), header required. Records with
  too many or too few fields, invalid UTF-8 or a bad quote are rejected one by one and the rest of the
  file loads. An *unclosed* quote makes the record run on to the next quote character (that is what
  CSV means): the lines it swallows are part of that one rejected record - counted once, visible in
  its ``raw`` text and its reason says how many lines it spans - so rows_read counts CSV records.
  Lone CR and mixed CRLF/LF line ends are treated as line breaks. A header that lacks a required
  column (or is missing, so line 1 is data) rejects every non-blank line of the file, line 1
  included. If DuckDB cannot parse the file at all, every non-blank line is rejected with its error.
* **Parquet**: wrong column types reject every row with a reason naming the column and type
  (``text column has type BIGINT``); a missing required column rejects every row; an unreadable
  file gives one rejected row per row if the row count is readable, else one row for the file
  (``source_row`` null). Invalid UTF-8 in a required string column rejects every row; in an extra
  column, that column is left out of ``extra`` and a warning is added to ``stats["warnings"]``.
* **Files**: names starting with ``.`` or ``_`` (temporary / marker files such as ``_SUCCESS``) and
  sub-folders are ignored and listed in ``stats["ignored"]``. Any other file with an unknown
  extension (compressed files included) becomes one rejected row with ``source_row`` null. A missing
  or empty day folder gives empty tables.
* ``raw`` is the input line/record/row as text, cut to 2000 characters.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from .common import (
    FORMATS,
    REJECTED_SCHEMA,
    REQUIRED_FIELDS,
    VALID_SCHEMA,
    _create_tables,
    _reject_unsupported,
)
from .csv_format import _read_csv
from .files import _as_date, _list_files, partition_dir
from .jsonl import _read_json
from .parquet import _read_parquet
from .validate import _BLANK_TEXT_RE, _REJECTED_SQL, _VALID_SQL, _check, _stats

__all__ = [
    "FORMATS",
    "REJECTED_SCHEMA",
    "REQUIRED_FIELDS",
    "VALID_SCHEMA",
    "_BLANK_TEXT_RE",
    "IngestResult",
    "partition_dir",
    "read_landing_partition",
]

@dataclass(frozen=True)
class IngestResult:
    """The day's rows split in two, plus JSON-serializable ``stats`` for asset metadata.

    stats keys: partition_date, files, rows_read, valid, rejected, duplicates,
    per_format ({fmt: {files, rows_read, valid, rejected}}, fmt in jsonl/json/csv/parquet/other),
    rejected_by_code ({code: n}; codes such as invalid_json, empty_text, duplicate_comment_id),
    ignored (file names skipped), warnings (list of str).
    """

    valid: pa.Table
    rejected: pa.Table
    stats: dict = field(default_factory=dict)



def read_landing_partition(
    landing_root: Path | str, partition_date: dt.date | str, max_text_chars: int = 20000
) -> IngestResult:
    """Parse every file of one day; see the module docstring for the policies."""
    day = _as_date(partition_date)
    if isinstance(max_text_chars, bool) or not isinstance(max_text_chars, int) or max_text_chars < 1:
        raise ValueError(f"max_text_chars must be a positive integer, got {max_text_chars!r}")
    root = Path(landing_root)
    files, ignored = _list_files(root, partition_dir(root, day))
    warnings: list[str] = []
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        _create_tables(con)
        with tempfile.TemporaryDirectory(prefix="embed_dagster_ingest_") as tmp:
            for f in files:
                con.execute(
                    "INSERT INTO files VALUES (?, ?, ?, ?)", [f.idx, f.source_file, f.name, f.fmt or "other"]
                )
                if f.fmt in ("jsonl", "json"):
                    _read_json(con, f)
                elif f.fmt == "csv":
                    _read_csv(con, f, Path(tmp))
                elif f.fmt == "parquet":
                    _read_parquet(con, f, warnings)
                else:
                    _reject_unsupported(con, f)
        _check(con, max_text_chars)
        valid = con.sql(_VALID_SQL).to_arrow_table().cast(VALID_SCHEMA)
        rejected = con.sql(_REJECTED_SQL).to_arrow_table().cast(REJECTED_SCHEMA)
        stats = _stats(con, day, files, ignored, warnings)
    finally:
        con.close()
    return IngestResult(valid=valid, rejected=rejected, stats=stats)

