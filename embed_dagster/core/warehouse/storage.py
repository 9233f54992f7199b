"""DuckDB access for the warehouse file.

DuckDB lets one process at a time open a file for writing; others get ``Could not set lock on
file``. Parallel backfill runs are separate processes, so every access here is a short-lived
connection opened with a retry on exactly that error, and no caller holds one across an HTTP call
or a clustering fit. Partition writes are delete-then-insert inside one transaction, so a
re-materialization replaces a partition atomically and a killed run leaves the old rows intact.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from embed_dagster.core.warehouse.schema import TABLES, VIEWS, ddl

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_LOCK_MARKERS = ("could not set lock", "conflicting lock", "database is locked")


class StorageError(RuntimeError):
    """A warehouse problem a user can act on (bad path, lock held too long)."""


def validate_identifier(name: str) -> str:
    """Table and column names come from code or configuration; they are checked, never quoted blindly."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(f"invalid SQL identifier {name!r}: use letters, digits and _ only")
    return name


def _is_lock_error(exc: Exception) -> bool:
    message = str(exc).lower()
    return any(marker in message for marker in _LOCK_MARKERS)


@contextmanager
def connect(
    path: str | Path, *, read_only: bool = False, retry_s: float = 300.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse, waiting (with jittered backoff) while another process holds the lock.

    The wait is bounded so a stuck writer turns into a clear error instead of a hung run.
    """
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + retry_s
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            if not _is_lock_error(exc) or time.monotonic() >= deadline:
                if _is_lock_error(exc):
                    raise StorageError(
                        f"the DuckDB file {path} stayed locked by another process for {retry_s:.0f}s; "
                        "is a run or a notebook holding it open?"
                    ) from None
                raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)
    try:
        yield con
    finally:
        con.close()


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    for name in TABLES:
        con.execute(ddl(name))
    for name, sql in VIEWS.items():
        con.execute(f"CREATE VIEW IF NOT EXISTS {name} AS {sql}")


def _insert(
    con: duckdb.DuckDBPyConnection, table: str, rows: pa.Table, constants: Mapping[str, object]
) -> None:
    if rows.num_rows == 0:
        return
    names = [validate_identifier(c) for c in constants]
    select_constants = "".join(f"?::{_column_type(table, c)} AS {c}, " for c in names)
    con.register("_embed_dagster_rows", rows)
    try:
        con.execute(
            f"INSERT INTO {table} BY NAME SELECT {select_constants}* FROM _embed_dagster_rows",
            list(constants.values()),
        )
    finally:
        con.unregister("_embed_dagster_rows")


def _column_type(table: str, column: str) -> str:
    for col in TABLES[table].columns:
        if col.name == column:
            return col.type
    raise ValueError(f"table {table} has no column {column}")


def replace_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    key: Mapping[str, object],
    rows: pa.Table,
) -> None:
    """Delete the rows matching ``key`` (e.g. one partition_date) and insert ``rows`` with ``key``'s values.

    Must run inside the caller's transaction (see :func:`write_partition`).
    """
    validate_identifier(table)
    if table not in TABLES:
        raise ValueError(f"unknown table {table}")
    where = " AND ".join(f"{validate_identifier(c)} = ?" for c in key)
    con.execute(f"DELETE FROM {table} WHERE {where}", list(key.values()))
    _insert(con, table, rows, key)


def write_partition(
    path: str | Path,
    partition_date: date,
    writes: Mapping[str, tuple[Mapping, pa.Table | Callable[[duckdb.DuckDBPyConnection], pa.Table]]],
) -> None:
    """Replace one partition's rows in several tables atomically.

    ``writes`` maps a table name to (extra key columns, rows); the key always includes
    ``partition_date``. Either every table is replaced or none is. Rows may also be a function of
    the open connection, called inside the transaction: for rows that must agree with what another
    run committed last (the file lock keeps every other process out until the commit).
    """
    with connect(path) as con:
        ensure_schema(con)
        con.execute("BEGIN TRANSACTION")
        try:
            for table, (extra_key, rows) in writes.items():
                if callable(rows):
                    rows = rows(con)
                replace_rows(con, table, {"partition_date": partition_date, **extra_key}, rows)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def query_arrow(path: str | Path, sql: str, params: list | None = None) -> pa.Table:
    """Run one read query in a short connection and hand back Arrow (no lock held afterwards)."""
    with connect(path) as con:
        ensure_schema(con)
        return con.sql(sql, params=params or None).to_arrow_table()


def count_rows(path: str | Path, table: str, partition_date: date | None = None) -> int:
    validate_identifier(table)
    with connect(path) as con:
        ensure_schema(con)
        if partition_date is None:
            return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        return con.execute(
            f"SELECT count(*) FROM {table} WHERE partition_date = ?", [partition_date]
        ).fetchone()[0]
