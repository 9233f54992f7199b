"""Row counts taken from the landing files by a second, deliberately simple reader.

Why: conservation ("every landed row ends in exactly one place") used to compare the pipeline with
itself, so when DuckDB read a file named ``*.csv`` as a glob and produced phantom rows, the check
still passed. These counts use plain Python on the file's bytes (no DuckDB, no path expansion) and
follow the same documented row rules (module docstring of ``embed_dagster.core.ingest``):

* JSON Lines: non-blank physical lines (LF split, a UTF-8 BOM dropped);
* ``.json``: array elements, 1 for any other JSON document, else counted as JSON Lines;
* CSV: records after the header (RFC 4180: a quoted field may span lines; blank lines are not
  records); when the header lacks a required column, non-blank physical lines;
* Parquet: the row count in the footer (pyarrow), 1 when unreadable;
* any other or refused entry, and a UTF-16 text file: 1 (the one file-level quarantine row).

Streaming, so counting never needs more than a block of the file in memory (``.json`` excepted).
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import pyarrow.parquet as pq

from .common import BOM, READ_BLOCK, REQUIRED_FIELDS, read_head, text_encoding_problem

_BLANK = b" \t\r\n\f"
csv.field_size_limit(sys.maxsize)  # a record spanning the rest of a file is still one record


def count_rows(path: Path | None, fmt: str | None) -> int:
    if path is None or fmt not in ("jsonl", "json", "csv", "parquet"):
        return 1
    if fmt == "parquet":
        try:
            return pq.ParquetFile(path).metadata.num_rows  # 0 for an empty part file, as read
        except Exception:  # noqa: BLE001 - any failure to read the footer: the file is one row
            return 1
    if text_encoding_problem(read_head(path)):
        return 1
    if fmt == "json":
        n = _json_document_rows(path)
        if n is not None:
            return n
    if fmt == "csv":
        return _csv_records(path)
    return _nonblank_lines(path)


def _blocks(path: Path):
    with path.open("rb") as fh:
        first = True
        while block := fh.read(READ_BLOCK):
            if first and block.startswith(BOM):
                block = block[len(BOM) :]
            first = False
            yield block


def _nonblank_lines(path: Path, cr_ends_lines: bool = False) -> int:
    """``cr_ends_lines``: CSV's rule (its reader turns a lone CR into a line end); JSON Lines split
    on LF only. A CRLF cut between two blocks yields one blank line more, and blank lines count 0."""
    n, rest = 0, b""
    for block in _blocks(path):
        if cr_ends_lines:
            block = block.replace(b"\r", b"\n")
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        n += sum(1 for line in lines if line.strip(_BLANK))
    return n + (1 if rest.strip(_BLANK) else 0)


def _json_document_rows(path: Path) -> int | None:
    try:
        doc = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return len(doc) if isinstance(doc, list) else 1


def _csv_records(path: Path) -> int:
    with path.open("rb") as fh:  # the header ends at LF, CRLF or a lone CR (the reader's rule)
        first = re.split(rb"\r\n|\r|\n", fh.read(READ_BLOCK), maxsplit=1)[0]
    header = first.decode("utf-8", errors="replace").lstrip("\ufeff")
    names = [n.strip().lower() for n in next(csv.reader([header]), [])]
    if any(r not in names for r in REQUIRED_FIELDS) or len(set(names)) != len(names):
        return _nonblank_lines(path, cr_ends_lines=True)
    # Python's csv module (C, streaming) has DuckDB's RFC 4180 reading: a quote opens a quoted
    # value only at the start of a field, a quoted value may span lines, blank lines are no records.
    n = 0
    with path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh, strict=False)
        try:
            for rec in reader:
                n += bool(rec)
        except csv.Error:  # unexpected end of data inside an unclosed quote: that record counts once
            n += 1
    return max(n - 1, 0)  # the header is not a row
