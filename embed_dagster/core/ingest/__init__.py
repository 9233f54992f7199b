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
import errno
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from embed_dagster.core.redact import PATTERN_RULES, all_secrets, scrub

from .common import (
    FORMATS,
    RAW_MAX_CHARS,
    REJECTED_SCHEMA,
    REQUIRED_FIELDS,
    VALID_SCHEMA,
    _create_tables,
    _File,
    _first_line,
    _reject_file,
    _reject_unsupported,
    read_head,
    text_encoding_problem,
)
from .counts import count_rows
from .csv_format import _read_csv
from .files import (
    DayFingerprint,
    Entry,
    _as_date,
    check_alias_folder,
    file_format,
    fingerprint_day,
    list_day,
    partition_dir,
    scan_landing,
)
from .jsonl import _read_json
from .parquet import _read_parquet
from .validate import _BLANK_TEXT_RE, _REJECTED_SQL, _VALID_SQL, _check, _stats

__all__ = [
    "FORMATS",
    "REJECTED_SCHEMA",
    "REQUIRED_FIELDS",
    "VALID_SCHEMA",
    "_BLANK_TEXT_RE",
    "DayFingerprint",
    "IngestResult",
    "fingerprint_day",
    "partition_dir",
    "scan_landing",
    "read_landing_partition",
]

DUCKDB_MEMORY_MB = 192  # the fixed part of ingest's memory budget; DuckDB spills to disk beyond it


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
    landing_root: Path | str,
    partition_date: dt.date | str,
    max_text_chars: int = 20000,
    memory_limit_mb: int = DUCKDB_MEMORY_MB,
    secrets: Iterable[str] = (),
) -> IngestResult:
    """Parse every file of one day; see the module docstring for the policies.

    Memory: JSON Lines are parsed in blocks, and DuckDB works in a database file in a private temp
    folder with ``memory_limit_mb``, spilling beyond it, so peak memory is about the result tables
    (roughly the size of the valid text) plus a fixed budget, not a multiple of the file.

    ``secrets`` (plus those registered with ``redact.register_secret``) are replaced by ``***`` in
    the rejected rows' ``raw`` and ``reason``: quarantine is stored and previewed in metadata.
    """
    day = _as_date(partition_date)
    if isinstance(max_text_chars, bool) or not isinstance(max_text_chars, int) or max_text_chars < 1:
        raise ValueError(f"max_text_chars must be a positive integer, got {max_text_chars!r}")
    root = Path(landing_root)
    listing = list_day(root, partition_dir(root, day))
    warnings: list[str] = []
    with tempfile.TemporaryDirectory(prefix="embed_dagster_ingest_") as tmp_name:
        tmp = Path(tmp_name)
        check_alias_folder(tmp)
        (tmp / "links").mkdir()
        con = duckdb.connect(str(tmp / "ingest.duckdb"))
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute(f"SET memory_limit = '{int(memory_limit_mb)}MB'")
            con.execute("SET temp_directory = ?", [str(tmp / "spill")])
            con.execute("SET preserve_insertion_order = false")
            _create_tables(con)
            files, landing_rows = [], {}
            for idx, entry in enumerate(listing.entries):
                with _opened(root, entry) as (entry, opened):
                    f = _alias(idx, root, partition_dir(root, day), entry, opened, tmp / "links")
                    # a file name is file content too: stored in every row's source_file, scrubbed
                    f = replace(f, source_file=scrub(f.source_file, secrets))
                    files.append(f)
                    landing_rows[f.source_file] = count_rows(
                        None if f.refused else f.path, None if f.refused else f.fmt
                    )
                    con.execute(
                        "INSERT INTO files VALUES (?, ?, ?, ?)",
                        [f.idx, f.source_file, f.name, f.fmt or "other"],
                    )
                    _with_more_memory_if_needed(
                        con,
                        int(memory_limit_mb),
                        lambda f=f: _read_one(con, f, tmp, warnings),
                        lambda f=f: _drop_file_scratch(con, f),
                        f.source_file,
                        warnings,
                    )
            _with_more_memory_if_needed(
                con,
                int(memory_limit_mb),
                lambda: _check(con, max_text_chars),
                lambda: con.execute("DROP TABLE IF EXISTS checked"),
                "checking the day's rows",
                warnings,
            )
            valid = _fetch(con, _VALID_SQL, VALID_SCHEMA)
            rejected = _scrub_rejected(_fetch(con, _REJECTED_SQL, _REJECTED_FETCH_SCHEMA), secrets)
            ignored = [scrub(name, secrets) for name in listing.ignored]  # file names, shown in metadata
            stats = _stats(con, day, files, ignored, [scrub(w, secrets) for w in warnings])
        finally:
            con.close()
    stats["landing_rows"] = sum(landing_rows.values())
    by_file = _rows_by_file(valid, rejected)
    stats["landing_rows_mismatch"] = {
        sf: {"in_file": n, "read": by_file.get(sf, 0)}
        for sf, n in landing_rows.items()
        if by_file.get(sf, 0) != n
    }
    return IngestResult(valid=valid, rejected=rejected, stats=stats)


_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_PROC_FD = Path("/proc/self/fd")


@contextmanager
def _opened(root: Path, entry: Entry) -> Iterator[tuple[Entry, Path | None]]:
    """The entry's file held open while it is read, and the path that reaches that open file.

    Why: ``list_day`` checked the path, but a path is checked at one moment and opened at another;
    an uploader (or attacker) who swaps the file for a link to ``/etc/...`` or for a FIFO in between
    would have the reader follow it. Opening once (no link followed, no blocking), checking what was
    opened (a regular file, still inside the root per the kernel's own path of the open file), and
    reading through ``/proc/self/fd/N`` makes every read see that very file. An entry that changed
    like that becomes a refused entry. Without ``/proc`` (not Linux) the checked path is used.
    """
    if entry.real is None or not _PROC_FD.is_dir():
        yield entry, entry.real
        return
    try:
        fd = os.open(entry.real, _OPEN_FLAGS)
    except OSError as exc:
        why = (
            "changed while the day was read: now a symbolic link; not followed, not read"
            if exc.errno == errno.ELOOP
            else f"cannot be opened: {exc.strerror or exc}"
        )
        yield Entry(entry.rel, None, why), None
        return
    real_root = Path(os.path.realpath(root))
    try:
        held = Path(os.readlink(_PROC_FD / str(fd)))
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            yield (
                Entry(entry.rel, None, "changed while the day was read: no longer a regular file; not read"),
                None,
            )
        elif not (held == real_root or real_root in held.parents):
            yield (
                Entry(
                    entry.rel, None, "changed while the day was read: now outside the landing root; not read"
                ),
                None,
            )
        else:
            yield entry, _PROC_FD / str(fd)
    finally:
        os.close(fd)


def _alias(idx: int, root: Path, day_dir: Path, entry: Entry, opened: Path | None, links: Path) -> _File:
    """A _File whose ``path`` is a plain-named link to ``opened``, the file held open (see ``_File``)."""
    source_file = (
        (day_dir / entry.rel).relative_to(root).as_posix()
        if entry.rel != "."
        else (day_dir.relative_to(root).as_posix())
    )
    fmt = file_format(entry.rel)
    if entry.real is None:
        return _File(idx, links / f"refused{idx}", source_file, entry.rel, fmt, entry.refused)
    alias = links / f"f{idx}{Path(entry.rel).suffix.lower() if fmt else ''}"
    alias.symlink_to(opened)
    return _File(idx, alias, source_file, entry.rel, fmt)


OOM_RETRY_FACTOR = 8  # one more try with this many times the budget


def _with_more_memory_if_needed(
    con: duckdb.DuckDBPyConnection, memory_limit_mb: int, attempt, start_over, what: str, warnings: list[str]
) -> None:
    """``attempt()``, tried once more with a larger budget if DuckDB runs out of memory.

    Why: the budget is sized for ordinary rows; one value of several MB (a runaway log line, a
    Parquet cell holding a document) needs tens of times its size in DuckDB's JSON and string
    functions, and a 4 MB JSON line failed the whole day at 192 MB where it should simply be
    quarantined as too long. ``start_over()`` drops what the failed try wrote, so nothing is read
    twice; what still does not fit fails the step with a message naming ``what``.
    """
    try:
        attempt()
        return
    except duckdb.OutOfMemoryException:
        pass
    start_over()
    larger = memory_limit_mb * OOM_RETRY_FACTOR
    warnings.append(f"{what}: ran out of DuckDB's {memory_limit_mb} MB budget; done again with {larger} MB")
    con.execute(f"SET memory_limit = '{larger}MB'")
    try:
        attempt()
    except duckdb.OutOfMemoryException as exc:
        raise MemoryError(
            f"{what} needs more than {larger} MB (does it hold a single value of tens of MB?): "
            f"{_first_line(exc)}"
        ) from None
    finally:
        con.execute(f"SET memory_limit = '{memory_limit_mb}MB'")


def _drop_file_scratch(con: duckdb.DuckDBPyConnection, f: _File) -> None:
    """Undo a partly read file: its candidate rows and its scratch tables (``csv_<idx>``, ...)."""
    con.execute("DELETE FROM cand WHERE file_idx = ?", [f.idx])
    scratch = con.sql(
        "SELECT table_name FROM duckdb_tables() WHERE temporary AND regexp_matches(table_name, ?)",
        params=[f"^[a-z0-9]+_{f.idx}$"],
    ).fetchall()
    for (name,) in scratch:
        con.execute(f'DROP TABLE IF EXISTS "{name}"')


def _read_one(con: duckdb.DuckDBPyConnection, f: _File, tmp: Path, warnings: list[str]) -> None:
    if f.refused is not None:
        _reject_file(con, f, "refused_entry", f"{f.name}: {f.refused}", raw="")
        return
    if f.fmt in ("jsonl", "json", "csv"):
        head = read_head(f.path)
        problem = text_encoding_problem(head)
        if problem:
            raw = head[:RAW_MAX_CHARS].decode("utf-16", errors="replace").replace("\x00", "")
            _reject_file(con, f, "wrong_encoding", problem, raw=raw)
            return
    if f.fmt in ("jsonl", "json"):
        _read_json(con, f)
    elif f.fmt == "csv":
        _read_csv(con, f, tmp)
    elif f.fmt == "parquet":
        _read_parquet(con, f, warnings)
    else:
        _reject_unsupported(con, f)


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, schema: pa.Schema) -> pa.Table:
    """The result as Arrow, streamed in record batches and cast batch by batch.

    Fetching a whole result at once holds DuckDB's copy, Arrow's copy and the cast's copy together
    (measured: 3x the valid text); batch by batch only the final table stays.
    """
    reader = con.execute(sql).fetch_record_batch(64 * 1024)
    return pa.Table.from_batches((b.cast(schema) for b in reader), schema=schema)


# _REJECTED_SQL's columns: REJECTED_SCHEMA plus raw's full length, for the cut after scrubbing
_REJECTED_FETCH_SCHEMA = REJECTED_SCHEMA.insert(4, pa.field("raw_chars", pa.int64(), nullable=False))


def scrub_strings(col: pa.ChunkedArray, secrets: Iterable[str] = ()) -> pa.ChunkedArray:
    """``redact.scrub`` for a whole column at once: configured secrets, then the key patterns."""
    for secret in all_secrets(secrets):
        col = pc.replace_substring(col, secret, "***")
    for pattern, replacement in PATTERN_RULES:
        col = pc.replace_substring_regex(col, pattern, replacement)
    return col


def _scrub_rejected(fetched: pa.Table, secrets: Iterable[str]) -> pa.Table:
    """Quarantine rows as stored: every string column that holds file content (the raw row, the id,
    the file name, the reason quoting them) scrubbed, then ``raw`` cut to RAW_MAX_CHARS. Scrubbing
    first matters: a secret across the cut used to be stored in part."""
    cols = {
        name: scrub_strings(fetched.column(name), secrets)
        for name in ("source_file", "comment_id", "raw", "reason")
    }
    chars = fetched.column("raw_chars")
    cut = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(cols["raw"], 0, RAW_MAX_CHARS),
        " ... [",
        pc.cast(chars, pa.string()),
        " characters in total]",
        "",
    )
    cols["raw"] = pc.if_else(pc.greater(chars, RAW_MAX_CHARS), cut, cols["raw"])
    cols["source_row"] = fetched.column("source_row")
    return pa.table({name: cols[name] for name in REJECTED_SCHEMA.names}).cast(REJECTED_SCHEMA)


def _rows_by_file(valid: pa.Table, rejected: pa.Table) -> dict[str, int]:
    out: dict[str, int] = {}
    for table in (valid, rejected):
        for sf in table.column("source_file").to_pylist():
            out[sf] = out.get(sf, 0) + 1
    return out
