"""CSV files (RFC 4180, header required): one candidate row per record."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import duckdb
import pyarrow as pa

from .common import REQUIRED_FIELDS, _File, _reject_all_lines, _sql_str, file_order

# ------------------------------------------------------------------------------------------- CSV
# RFC 4180, fixed: DuckDB's sniffer guesses "no quoting" for a whole file after one stray quote.
# hive_partitioning off: the day folder's name ("date=...") must not turn into a column.
_CSV_DIALECT = "hive_partitioning=false, delim=',', quote='\"', escape='\"', auto_detect=false"
_CSV_ERRORS = {  # DuckDB error_type -> (priority, code, readable text)
    "INVALID ENCODING": (0, "invalid_utf8", "record is not valid UTF-8"),
    "UNQUOTED VALUE": (
        1,
        "csv_error",
        'unclosed or stray quote ("); an unclosed quote swallows the '
        "following lines into this record, so they are rejected with it",
    ),
    "LINE SIZE OVER MAXIMUM": (2, "csv_error", "record longer than DuckDB's 2,000,000-byte line limit"),
    "TOO MANY COLUMNS": (3, "csv_error", "record has more fields than the header"),
    "MISSING COLUMNS": (4, "csv_error", "record has fewer fields than the header"),
}


def _read_csv(con: duckdb.DuckDBPyConnection, f: _File, tmp: Path) -> None:
    data = f.path.read_bytes()
    path = f.path
    if b"\r" in data:  # DuckDB's strict CSV parser fails whole files on mixed or lone-CR line ends
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        path = tmp / f"{f.idx}.csv"
        path.write_bytes(data)
    header_line = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").lstrip("\ufeff")
    if not data.strip():
        return
    names = next(csv.reader([header_line]), [])
    names = [n.strip() or f"column{i + 1}" for i, n in enumerate(names)]
    lower = [n.lower() for n in names]
    missing = [r for r in REQUIRED_FIELDS if r not in lower]
    dupes = sorted({n for n in lower if lower.count(n) > 1})
    if missing or dupes:
        problem = (
            f"lacks required column(s) {', '.join(missing)}"
            if missing
            else f"repeats column name(s) {', '.join(dupes)}"
        )
        reason = (
            f"CSV header (line 1: {header_line[:120]!r}) {problem}; a usable header naming "
            f"{', '.join(REQUIRED_FIELDS)} is required, so every line of this file is rejected"
        )
        _reject_all_lines(con, f, data, "csv_bad_header", reason)
        return
    # DuckDB gets positional names c0, c1, ...: header text never becomes an SQL identifier.
    cols = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(names))) + "}"
    opts = (
        f"{_CSV_DIALECT}, columns={cols}, "
        f"store_rejects=true, rejects_table='rej_{f.idx}', rejects_scan='rejscan_{f.idx}'"
    )
    try:
        with file_order(con):  # rowid is the record's place among the valid ones (recno below)
            con.execute(
                f"CREATE TEMP TABLE csv_{f.idx} AS SELECT * FROM read_csv(?, header=true, {opts})",
                [str(path)],
            )
    except duckdb.Error as exc:
        msg = str(exc).strip().splitlines()[0][:300]
        _reject_all_lines(
            con,
            f,
            data,
            "csv_error",
            f"CSV file could not be parsed (DuckDB: {msg}); every line of this file is rejected",
        )
        return
    prio = " ".join(f"WHEN '{k}' THEN {v[0]}" for k, v in _CSV_ERRORS.items())
    code = " ".join(f"WHEN '{k}' THEN '{v[1]}'" for k, v in _CSV_ERRORS.items())
    text = " ".join(f"WHEN '{k}' THEN {_sql_str(v[2])}" for k, v in _CSV_ERRORS.items())
    con.execute(
        f"""CREATE TEMP TABLE rj_{f.idx} AS
        SELECT line, arg_min(error_type, p) AS error_type, arg_min(error_message, p) AS msg,
               arg_min(ltrim(csv_line, chr(10)), p) AS raw
        FROM (SELECT *, CASE error_type {prio} ELSE 9 END AS p FROM rej_{f.idx}) GROUP BY line"""
    )
    blanks = _csv_blank_records(con, f, path, data)
    n_valid = con.sql(f"SELECT count(*) FROM csv_{f.idx}").fetchall()[0][0]
    n_rej = con.sql(f"SELECT count(*) FROM rj_{f.idx}").fetchall()[0][0]
    last = 1 + n_valid + n_rej + len(blanks)
    con.register("_csv_blanks", pa.table({"rec": pa.array(sorted(blanks), pa.int64())}))
    try:
        con.execute(
            f"""CREATE TEMP TABLE recno_{f.idx} AS
            SELECT rec, row_number() OVER (ORDER BY rec) - 1 AS k FROM range(2, {last + 1}) t(rec)
            WHERE rec NOT IN (SELECT line FROM rj_{f.idx}) AND rec NOT IN (SELECT rec FROM _csv_blanks)"""
        )
    finally:
        con.unregister("_csv_blanks")
    con.execute(
        f"""INSERT INTO cand BY NAME
        SELECT ? AS file_idx, line AS source_row, raw,
            CASE error_type {code} ELSE 'csv_error' END AS pcode,
            'CSV record is malformed: ' || CASE error_type {text} ELSE error_type || ': ' || msg END
                || CASE WHEN error_type = 'UNQUOTED VALUE' AND contains(rtrim(raw, chr(10)), chr(10))
                        THEN ' (this record spans '
                             || CASE WHEN length(raw) >= 10000 THEN 'at least ' ELSE '' END
                             || (length(rtrim(raw, chr(10)))
                                 - length(replace(rtrim(raw, chr(10)), chr(10), '')) + 1)
                             || ' lines)'
                        ELSE '' END
                || CASE WHEN error_type IN ('TOO MANY COLUMNS', 'MISSING COLUMNS')
                        THEN ' (' || msg || ')' ELSE '' END AS preason
        FROM rj_{f.idx}""",
        [f.idx],
    )
    pos = {n: f"c{i}" for i, n in enumerate(lower)}
    extras = [(n, f"c{i}") for i, n in enumerate(names) if n.lower() not in REQUIRED_FIELDS]
    extra_sql = (
        ("json_object(" + ", ".join(f"{_sql_str(n)}, {c}" for n, c in extras) + ")") if extras else "'{}'"
    )
    quoted = [
        f"""CASE WHEN c{i} IS NULL THEN ''
                  WHEN regexp_matches(c{i}, '[",\\n\\r]') THEN '"' || replace(c{i}, '"', '""') || '"'
                  ELSE c{i} END"""
        for i in range(len(names))
    ]
    con.execute(
        f"""INSERT INTO cand BY NAME
        SELECT ? AS file_idx, r.rec AS source_row, concat_ws(',', {", ".join(quoted)}) AS raw,
            coalesce({pos["comment_id"]}, '') AS comment_id, coalesce({pos["text"]}, '') AS text,
            coalesce({pos["created_at"]}, '') AS created_at_str, {extra_sql} AS extra
        FROM (SELECT *, rowid AS k FROM csv_{f.idx}) c JOIN recno_{f.idx} r USING (k)""",
        [f.idx],
    )


def _csv_blank_records(con: duckdb.DuckDBPyConnection, f: _File, path: Path, data: bytes) -> set[int]:
    """Record numbers of empty lines, which DuckDB counts in its record numbers but skips silently.

    Needed so valid rows get the same numbering as rejected ones. A one-column read of the same file
    with the same dialect returns blank records as NULL rows and rejects every multi-field record
    with its number, so the record numbers that are not rejected and hold NULL are the blanks.
    """
    if not re.search(rb"\n\n.", data, flags=re.DOTALL):
        return set()
    opts = (
        f"{_CSV_DIALECT}, columns={{'c': 'VARCHAR'}}, "
        f"store_rejects=true, rejects_table='rej1_{f.idx}', rejects_scan='rejscan1_{f.idx}'"
    )
    try:
        with file_order(con):
            con.execute(
                f"CREATE TEMP TABLE one_{f.idx} AS SELECT c FROM read_csv(?, header=false, {opts})",
                [str(path)],
            )
    except duckdb.Error:
        return set()
    rows = con.sql(
        f"""WITH rj AS (SELECT DISTINCT line FROM rej1_{f.idx}),
                 total AS (SELECT (SELECT count(*) FROM one_{f.idx}) + (SELECT count(*) FROM rj) AS n),
                 nums AS (SELECT rec, row_number() OVER (ORDER BY rec) - 1 AS k
                          FROM range(1, (SELECT n FROM total) + 1) t(rec)
                          WHERE rec NOT IN (SELECT line FROM rj))
            SELECT rec FROM (SELECT c, rowid AS k FROM one_{f.idx}) o JOIN nums USING (k) WHERE c IS NULL"""
    ).fetchall()
    rejected = {r[0] for r in con.sql(f"SELECT line FROM rj_{f.idx}").fetchall()}
    return {r[0] for r in rows} - rejected
