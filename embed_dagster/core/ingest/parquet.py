"""Parquet files: one candidate row per row, with column types checked."""

from __future__ import annotations

import duckdb
import pyarrow.parquet as pq

from .common import (
    _INT_TYPES,
    _TS_TYPES,
    REQUIRED_FIELDS,
    _File,
    _first_line,
    _ident,
    _reject_file,
    _sql_str,
    file_order,
)


# --------------------------------------------------------------------------------------- Parquet
def _read_parquet(con: duckdb.DuckDBPyConnection, f: _File, warnings: list[str]) -> None:
    try:
        schema = con.sql(
            "DESCRIBE SELECT * FROM read_parquet(?, hive_partitioning=false)", params=[str(f.path)]
        ).fetchall()
    except duckdb.Error as exc:
        _reject_file(con, f, "unreadable_file", f"cannot read Parquet file: {_first_line(exc)}")
        return
    repeated = _required_in_two_cases(f)
    if repeated:
        reason = f"the file repeats a required column in different case ({repeated})"
        _reject_rows(con, f, "duplicate_field", reason, pq.ParquetFile(f.path).metadata.num_rows)
        return
    types = {name: typ for name, typ, *_ in schema}
    alias = {name: f"c{i}" for i, name in enumerate(types)}  # file column names never become SQL
    bad_cols = _load_parquet(con, f, alias)
    if bad_cols is None:
        return
    by_lower = {n.lower(): n for n in types}
    for col in sorted(set(bad_cols) - {by_lower.get(r) for r in REQUIRED_FIELDS}):
        warnings.append(f"{f.source_file}: column {col!r} holds invalid UTF-8; left out of extra")
    readable = [n for n in types if n not in bad_cols]

    def column(name: str, ok_types: set[str], expected: str) -> tuple[str, str]:
        col = by_lower.get(name)
        if col is None:
            present = ", ".join(types)[:200]
            return "NULL", _sql_str(f"Parquet file has no {name!r} column (columns present: {present})")
        if col in bad_cols:
            return "NULL", _sql_str(f"Parquet column {col!r} holds invalid UTF-8")
        if types[col] not in ok_types:
            return "NULL", _sql_str(f"{name} column has type {types[col]}, expected {expected}")
        return alias[col], "NULL"

    cid, cid_problem = column("comment_id", {"VARCHAR"} | _INT_TYPES, "a string")
    text, text_problem = column("text", {"VARCHAR"}, "a string")
    ts, ts_problem = column("created_at", {"VARCHAR"} | _TS_TYPES, "an ISO-8601 string or a timestamp")
    native_ts = ts_problem == "NULL" and types[by_lower["created_at"]] != "VARCHAR"
    extras = [n for n in readable if n.lower() not in REQUIRED_FIELDS]
    con.execute(
        f"""INSERT INTO cand BY NAME
        SELECT ? AS file_idx, rowid + 1 AS source_row, {_json_struct(readable, alias)} AS raw,
            CAST({cid} AS VARCHAR) AS comment_id, {cid_problem} AS cid_problem,
            {text} AS text, {text_problem} AS text_problem,
            {"NULL" if native_ts else f"CAST({ts} AS VARCHAR)"} AS created_at_str,
            {f"CAST({ts} AS TIMESTAMPTZ)" if native_ts else "NULL"} AS created_at_ts,
            {ts_problem} AS ts_problem, {_json_struct(extras, alias)} AS extra
        FROM pq_{f.idx}""",
        [f.idx],
    )


def _required_in_two_cases(f: _File) -> str | None:
    """``text, Text`` when the file has both, as JSON and CSV refuse it; None otherwise.

    From the file's own schema (pyarrow): DuckDB's names are case-insensitive and it renames the
    second to ``Text_1``, so the row was accepted with one of the two read as the text at random
    and the other stored in ``extra`` (stop-24 adversarial pass).
    """
    try:
        names = pq.read_schema(f.path).names
    except Exception:  # noqa: BLE001 - unreadable: DuckDB's reading reports it
        return None
    clashes = [[n for n in names if n.lower() == field] for field in REQUIRED_FIELDS]
    found = [", ".join(c) for c in clashes if len(c) > 1]
    return "; ".join(found) or None


def _reject_rows(con: duckdb.DuckDBPyConnection, f: _File, code: str, reason: str, n_rows: int) -> None:
    """Each of the file's ``n_rows`` rows rejected with one reason, numbered as read rows are."""
    con.execute(
        """INSERT INTO cand BY NAME SELECT ? AS file_idx, r AS source_row, '' AS raw,
               ? AS pcode, ? AS preason FROM range(1, ? + 1) t(r)""",
        [f.idx, code, reason, n_rows],
    )


def _json_struct(names: list[str], alias: dict[str, str]) -> str:
    if not names:
        return "'{}'"
    return "to_json(struct_pack(" + ", ".join(f"{_ident(n)} := {alias[n]}" for n in names) + "))"


def _load_parquet(con: duckdb.DuckDBPyConnection, f: _File, alias: dict[str, str]) -> set[str] | None:
    """Materialize the file as ``pq_<idx>`` with columns c0, c1, ...; return columns left out.

    Row numbers come from that table's rowid (``file_order``: insertion order is file order); the reader's
    ``file_row_number`` option would clash with a column of that name. DuckDB refuses a whole scan
    when one string value is not UTF-8, so on failure each column is tried alone and the bad ones
    are left out. Returns None (after rejecting the rows) when the file cannot be read even so.
    """
    src = "read_parquet(?, hive_partitioning=false)"

    def load(names: list[str]) -> None:
        cols = ", ".join(f"{_ident(n)} AS {alias[n]}" for n in names) or "NULL AS _none"
        with file_order(con):
            con.execute(f"CREATE OR REPLACE TEMP TABLE pq_{f.idx} AS SELECT {cols} FROM {src}", [str(f.path)])

    try:
        load(list(alias))
        return set()
    except duckdb.Error as exc:
        error = _first_line(exc)
    bad = set()
    for name in alias:
        try:
            load([name])
        except duckdb.Error:
            bad.add(name)
    try:
        load([n for n in alias if n not in bad])
        return bad
    except duckdb.Error:
        pass
    try:
        n_rows = con.sql(
            "SELECT sum(num_rows) FROM parquet_file_metadata(?)", params=[str(f.path)]
        ).fetchall()[0][0]
    except duckdb.Error:
        n_rows = None
    if not n_rows:
        _reject_file(con, f, "unreadable_file", f"cannot read Parquet file: {error}")
        return None
    reason = f"cannot read the rows of this Parquet file ({error}); all {n_rows} rows are rejected"
    _reject_rows(con, f, "unreadable_file", reason, n_rows)
    return None
