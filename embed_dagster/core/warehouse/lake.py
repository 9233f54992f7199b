"""The warehouse as a DuckLake lakehouse: a catalog database plus Parquet files, read and written
through DuckDB's ``ducklake`` extension.

Why DuckLake and not one DuckDB file: a DuckDB file admits one writing process, so parallel runs,
notebooks and the DuckDB shell queued behind each other (and failed after a timeout). A lake
allows many readers and writers at once with snapshot isolation; every commit is a snapshot that
can be read back later (time travel).

This module is the only place that holds SQL about the warehouse tables. Assets, checks, the demo
report, the CLI and the tests call named methods of :class:`Warehouse`.

Where the extensions come from: by default the signed binaries shipped in the
``duckdb-ext-ducklake/-sqlite/-postgres`` wheels (found through the installed ``duckdb_ext``
package), so nothing is downloaded at run time. ``extensions="repository"`` uses DuckDB's normal
``INSTALL`` from the official repository instead, for machines that reach it. Either way DuckDB
verifies the signatures on ``LOAD``; unsigned extensions are never allowed.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import functools
import importlib.util
import logging
import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from embed_dagster.core.model_key import DEFAULT_MAX_CHARS, ModelKey
from embed_dagster.core.warehouse.schema import TABLES, VIEWS, ddl, survivor_cte
from embed_dagster.core.warehouse.vector_store import arrow_to_matrix, matrix_to_arrow

LAKE = "lake"  # the name the lake is attached under; analysts' queries see it as the default database
# A file no snapshot lists is deleted only past this age: a running job's uncommitted file is younger.
ORPHAN_MIN_AGE = timedelta(hours=1)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# Errors worth retrying: DuckLake commit conflicts (another writer changed the same files or the
# schema) and a busy catalog database. Anything else is a real error and is raised at once.
_RETRYABLE = (
    "conflict",
    "database is locked",
    "could not serialize",
    "deadlock detected",
    "failed to commit",
    "catalog write-write",
)
# embedding_store rows of one model key (first parameter) for the texts of one day (second parameter)
_KEY_AND_DAY_TEXTS = (
    "model_key = ? AND text_hash IN (SELECT text_hash FROM deduplicated_texts WHERE partition_date = ?)"
)
_ENSURED: set[tuple[str, str]] = set()  # (catalog, data_path) whose schema this process has ensured
_ENSURE_LOCK = threading.Lock()
_SHARED: dict[tuple, Warehouse] = {}
_SHARED_LOCK = threading.Lock()


class WarehouseError(RuntimeError):
    """A warehouse problem a user can act on (bad configuration, a conflict that did not clear)."""


# Kept under its old name: callers and tests catch StorageError.
StorageError = WarehouseError


def validate_identifier(name: str) -> str:
    """Table and column names come from code or configuration; they are checked, never quoted blindly."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(f"invalid SQL identifier {name!r}: use letters, digits and _ only")
    return name


def bundled_extension_directory() -> Path:
    """The ``extensions`` folder of the installed duckdb-ext-* wheels (DuckDB appends version/platform)."""
    spec = importlib.util.find_spec("duckdb_ext")
    if spec is None or not spec.submodule_search_locations:
        raise WarehouseError(
            "the duckdb-ext-ducklake/-sqlite/-postgres wheels are not installed; install the package's "
            "dependencies, or set EMBED_DAGSTER_DUCKDB_EXTENSIONS=repository where the official "
            "extension repository is reachable"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "extensions"
        if candidate.is_dir():
            return candidate
    raise WarehouseError("the duckdb_ext package has no extensions folder")


@dataclass(frozen=True)
class LakeConfig:
    """Where the lake lives. Written once (by the resource or the CLI) and handed to :class:`Warehouse`.

    ``catalog`` is DuckLake's metadata database after the ``ducklake:`` prefix:
    ``sqlite:<file>`` (the embedded default, no server), ``postgres:<libpq string>`` (production,
    many machines) or ``duckdb:<file>`` (single process only). ``data_path`` is the folder (or
    ``s3://`` prefix) holding the Parquet files.
    """

    catalog: str
    data_path: str
    extensions: str = "bundled"  # bundled | repository
    commit_timeout_s: float = 300.0
    # One write transaction at a time for a SQLite catalog (see _catalog_writer_lock). Off only in
    # tests that exercise the optimistic-conflict retries a PostgreSQL catalog relies on.
    writer_lock: bool = True
    # Appended to a postgres catalog's connection string; never logged or put in an error message.
    catalog_password: str | None = field(default=None, repr=False)

    @classmethod
    def embedded(cls, root: str | os.PathLike, **kwargs) -> LakeConfig:
        """The default: ``<root>/catalog.sqlite`` plus ``<root>/files/``, no server."""
        root = Path(root)
        return cls(catalog=f"sqlite:{root / 'catalog.sqlite'}", data_path=f"{root / 'files'}/", **kwargs)

    @classmethod
    def from_settings(cls, settings) -> LakeConfig:
        """The lake of :class:`embed_dagster.settings.Settings` (the environment, read once)."""
        base = cls.embedded(settings.lake)
        return cls(
            catalog=settings.lake_catalog or base.catalog,
            data_path=settings.lake_data_path or base.data_path,
            extensions=settings.duckdb_extensions,
            commit_timeout_s=settings.lake_commit_timeout_s,
            catalog_password=(settings.lake_password.get_secret_value() if settings.lake_password else None),
        )

    @classmethod
    def from_env(cls) -> LakeConfig:
        """The CLI's and the demo's reading of the environment (see docs/warehouse.md)."""
        from embed_dagster.settings import load_settings

        return cls.from_settings(load_settings())

    @property
    def kind(self) -> str:
        return self.catalog.split(":", 1)[0]

    def label(self) -> str:
        """What logs and metadata may show: no password, whatever the connection string held."""
        return scrub(f"ducklake:{self.catalog} (data {self.data_path})", self)


# a quoted value ('a b\'c', libpq's rule) or an unquoted one
_PASSWORD_IN_DSN = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S+)", re.IGNORECASE)


@functools.cache
def _normalized_views() -> dict[str, str]:
    """Each view's SQL as DuckDB stores it (normalized), from a scratch in-memory database with the
    same tables: comparable with what ``duckdb_views()`` reports for the lake's views."""
    con = duckdb.connect()
    try:
        for name in TABLES:
            con.execute(ddl(name))
        for name, sql in VIEWS.items():
            con.execute(f"CREATE VIEW {name} AS {sql}")
        return dict(con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall())
    finally:
        con.close()


def conninfo_value(value: str) -> str:
    """``value`` quoted for a libpq connection string: a password with a space, a quote or a
    backslash was cut at the space (and the rest quoted in libpq's error) or sent changed."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# the URI form of a libpq connection string: postgresql://user:password@host/db
_PASSWORD_IN_URI = re.compile(r"(://[^/@\s:]*:)([^@\s]+)(@)")


def scrub(text: str, config: LakeConfig) -> str:
    """Remove the catalog password from any string before it is logged, raised or stored."""
    if config.catalog_password:
        text = text.replace(config.catalog_password, "***")
    text = _PASSWORD_IN_URI.sub(r"\1***\3", text)
    return _PASSWORD_IN_DSN.sub(r"\1***", text)


def _use_wal(catalog_file: Path) -> None:
    """Put the SQLite catalog in WAL mode (a persistent property of the file).

    In SQLite's default rollback-journal mode a reader's open transaction blocks every writer's
    commit, and a DuckLake transaction keeps its catalog read open from its first read to its
    commit: one long analyst query or one slow partition write would stall all other writers with
    "database is locked". In WAL mode readers never block the writer; writers still commit one at
    a time, which is short. WAL needs all processes on one machine, as the embedded profile is.
    """
    with contextlib.closing(sqlite3.connect(catalog_file, timeout=30)) as con:
        if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            con.execute("PRAGMA journal_mode=WAL")


@contextmanager
def _catalog_writer_lock(
    config: LakeConfig, log: logging.Logger | logging.LoggerAdapter, what: str
) -> Iterator[None]:
    """Hold the embedded lake's writer lock: one write transaction at a time per SQLite catalog.

    Why: a SQLite catalog commits one writer at a time anyway, so this costs only the Parquet
    writing inside a transaction (well under a second for a day). What it buys was measured: with
    optimistic concurrency, three processes attaching a new catalog at once failed with "database
    is locked" while DuckLake created its tables, and a conflicting same-day commit under load made
    the ducklake 1.4.4 extension abort the whole process (SIGABRT in
    ``DuckLakeTransaction::Rollback``). Behind this lock writers never conflict, so that path is
    never taken. ``flock`` is released by the kernel when a process dies, so a killed run never
    blocks the next one. PostgreSQL catalogs (many machines) keep optimistic concurrency and the
    retries in :meth:`Warehouse._transaction`.
    """
    if config.kind != "sqlite" or not config.writer_lock:
        yield
        return
    catalog_file = Path(config.catalog.split(":", 1)[1])
    catalog_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(catalog_file.with_name(catalog_file.name + ".writer.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        started, told = time.monotonic(), False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if waited >= config.commit_timeout_s:
                    raise WarehouseError(
                        f"{what}: another process held the lake's writer lock for {waited:.0f}s "
                        f"(limit commit_timeout_s={config.commit_timeout_s:g}s)"
                    ) from None
                if not told and waited >= 5.0:
                    told = True
                    log.info(f"{what}: waiting for another process's commit to the lake")
                time.sleep(0.01 + 0.04 * random.random())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _is_retryable(exc: Exception) -> bool:
    message = str(exc).lower()
    return any(marker in message for marker in _RETRYABLE)


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class _RootConnection:
    """A Warehouse's one DuckDB connection (opened on first use), shared by its clones."""

    __slots__ = ("con", "lock")

    def __init__(self) -> None:
        self.con: duckdb.DuckDBPyConnection | None = None
        self.lock = threading.Lock()


class Warehouse:
    """All SQL of the project, against one attached lake.

    One DuckDB instance per Warehouse, opened lazily; each call runs on its own cursor, so the
    object can be shared by threads. The schema is ensured once per process and lake, not per
    call. :meth:`shared` returns one Warehouse per configuration and process, which is what keeps a
    run to a handful of connections.
    """

    def __init__(
        self,
        config: LakeConfig,
        *,
        read_only: bool = False,
        log: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> None:
        if config.extensions not in ("bundled", "repository"):
            raise WarehouseError(f"extensions must be 'bundled' or 'repository', not {config.extensions!r}")
        if config.kind not in ("sqlite", "postgres", "duckdb"):
            raise WarehouseError(f"unsupported catalog {config.kind!r}: use sqlite:, postgres: or duckdb:")
        self.config = config
        self.read_only = read_only
        self.log = log or logging.getLogger(__name__)
        self._root_con = _RootConnection()  # shared with the with_log() clones: one connection
        self._bound: duckdb.DuckDBPyConnection | None = None  # set inside a write transaction
        self.commit_retries = 0  # conflicts retried by this object, for metadata and tests

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def embedded(
        cls, root: str | os.PathLike, *, commit_timeout_s: float = 300.0, writer_lock: bool = True, **kwargs
    ) -> Warehouse:
        config = LakeConfig.embedded(root, commit_timeout_s=commit_timeout_s, writer_lock=writer_lock)
        return cls(config, **kwargs)

    @classmethod
    def shared(cls, config: LakeConfig, *, read_only: bool = False) -> Warehouse:
        """One Warehouse per configuration in this process (the resource hands this out)."""
        key = (config, read_only)
        with _SHARED_LOCK:
            wh = _SHARED.get(key)
            if wh is None:
                wh = _SHARED[key] = cls(config, read_only=read_only)
            return wh

    def with_log(self, log: logging.Logger | logging.LoggerAdapter) -> Warehouse:
        """The same connection, reporting its waits to ``log`` (a step's context.log).

        The clone shares the connection holder, not a snapshot of it: every step of a run gets a
        clone, and a clone that opened its own connection made every step ATTACH the lake again.
        """
        clone = copy.copy(self)
        clone.log = log
        return clone

    def _connect(self) -> duckdb.DuckDBPyConnection:
        cfg = self.config
        settings: dict[str, object] = {
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
        if cfg.extensions == "bundled":
            settings["extension_directory"] = str(bundled_extension_directory())
        lock = (
            contextlib.nullcontext()
            if self.read_only
            else _catalog_writer_lock(cfg, self.log, "opening the lake")  # ATTACH may create the catalog
        )
        with lock:
            return self._attach(duckdb.connect(config=settings))

    def _attach(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        cfg = self.config
        try:
            needed = ["ducklake", {"sqlite": "sqlite", "postgres": "postgres"}.get(cfg.kind)]
            if "://" in cfg.data_path:
                # an object-store data path (s3://, gs://, https://) reads and writes through httpfs;
                # with autoloading off it was never loaded, so no documented setting could open an
                # s3 lake (stop-25 adversarial pass)
                needed.append("httpfs")
            for ext in filter(None, needed):
                if cfg.extensions == "repository":
                    con.execute(f"INSTALL {ext}")
                con.execute(f"LOAD {ext}")
            if cfg.kind == "sqlite":
                catalog_file = Path(cfg.catalog.split(":", 1)[1])
                if not self.read_only:
                    catalog_file.parent.mkdir(parents=True, exist_ok=True)
                    _use_wal(catalog_file)
                elif not catalog_file.exists():
                    raise WarehouseError(f"no lake catalog at {catalog_file}: nothing has been written yet")
            if "://" not in cfg.data_path and not self.read_only:
                Path(cfg.data_path).mkdir(parents=True, exist_ok=True)
            target = f"ducklake:{cfg.catalog}"
            if cfg.kind == "postgres" and cfg.catalog_password:
                target += f" password={conninfo_value(cfg.catalog_password)}"
            options = [f"DATA_PATH {_sql_string(cfg.data_path)}"]
            if self.read_only:
                options.append("READ_ONLY")
            con.execute(f"ATTACH {_sql_string(target)} AS {LAKE} ({', '.join(options)})")
            con.execute(f"USE {LAKE}")
        except duckdb.Error as exc:
            con.close()
            raise WarehouseError(f"could not open the lake {cfg.label()}: {scrub(str(exc), cfg)}") from None
        except BaseException:
            con.close()
            raise
        return con

    def _root(self) -> duckdb.DuckDBPyConnection:
        root = self._root_con
        if root.con is None:
            with root.lock:
                if root.con is None:
                    root.con = self._connect()
        return root.con

    def close(self) -> None:
        root = self._root_con
        with root.lock:
            if root.con is not None:
                root.con.close()
                root.con = None
        with _SHARED_LOCK:
            for key, wh in list(_SHARED.items()):
                if wh is self:
                    del _SHARED[key]

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._bound is not None:  # inside replace_partition: read what the transaction sees
            yield self._bound
            return
        self.ensure_schema()
        cur = self._root().cursor()
        try:
            cur.execute(f"USE {LAKE}")
            yield cur
        finally:
            cur.close()

    @contextmanager
    def session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on the lake for a person's own SQL (``embed-dagster sql`` / ``make sql``).

        Open the Warehouse with ``read_only=True`` for that: the lake is attached READ_ONLY, so a
        query can neither change data nor hold anything a run waits for.
        """
        with self._cursor() as cur:
            yield cur

    def _arrow(self, sql: str, params: Sequence | Mapping | None = None) -> pa.Table:
        """One read. A busy catalog ("database is locked" while SQLite checkpoints its WAL) is
        retried briefly, like a commit conflict: reads are idempotent, and a step must not fail on it."""
        if self._bound is not None:
            with self._cursor() as cur:
                return cur.execute(sql, params or None).fetch_arrow_table()
        started, delay = time.monotonic(), 0.05
        while True:
            try:
                with self._cursor() as cur:
                    return cur.execute(sql, params or None).fetch_arrow_table()
            except duckdb.Error as exc:
                waited = time.monotonic() - started
                if not _is_retryable(exc) or waited >= self.config.commit_timeout_s:
                    raise
                self.log.warning(
                    f"read waiting for the lake catalog ({str(exc).splitlines()[0][:200]}); "
                    f"retrying (waited {waited:.1f}s of {self.config.commit_timeout_s:g}s)"
                )
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)

    def _one(self, sql: str, params: Sequence | Mapping | None = None) -> dict:
        return self._arrow(sql, params).to_pylist()[0]

    # -- schema and retries ---------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create missing tables, columns and views, once per process and lake (DuckLake has no
        PRIMARY KEY).

        A lake written by an earlier version gets the columns added since (``ALTER TABLE ... ADD
        COLUMN``, a catalog-only change in DuckLake: old Parquet files read the new column as NULL).
        Columns the schema no longer declares (``cached_embeddings.tier``, ``fresh_embeddings.resumed``)
        are left in place: dropping them would break a process of the previous version still writing
        them, and nothing reads them; new rows leave them NULL.
        """
        key = (self.config.catalog, self.config.data_path)
        if key in _ENSURED or self.read_only:
            return
        with _ENSURE_LOCK:
            if key in _ENSURED:
                return

            def create(cur: duckdb.DuckDBPyConnection) -> None:
                # No bound parameters here: the first parameterized query makes DuckDB import pandas.
                where = f"WHERE database_name = {_sql_string(LAKE)}"
                existing = {
                    r[0] for r in cur.execute(f"SELECT table_name FROM duckdb_tables() {where}").fetchall()
                }
                views = dict(cur.execute(f"SELECT view_name, sql FROM duckdb_views() {where}").fetchall())
                columns: dict[str, set[str]] = {}
                for table, column in cur.execute(
                    f"SELECT table_name, column_name FROM duckdb_columns() {where}"
                ).fetchall():
                    columns.setdefault(table, set()).add(column)
                for name, table in TABLES.items():
                    if name not in existing:
                        cur.execute(ddl(name))
                        continue
                    for col in table.columns:
                        if col.name not in columns.get(name, set()):
                            cur.execute(f"ALTER TABLE {name} ADD COLUMN {col.name} {col.type}")
                wanted = _normalized_views()
                for name, sql in VIEWS.items():
                    if name not in views:
                        cur.execute(f"CREATE VIEW IF NOT EXISTS {name} AS {sql}")
                    elif views[name] != wanted[name]:  # a lake made with an older definition
                        cur.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")

            self._transaction(create, what="creating the warehouse schema", ensure=False)
            _ENSURED.add(key)

    def _transaction(
        self,
        body: Callable[[duckdb.DuckDBPyConnection], object],
        *,
        what: str,
        message: str | None = None,
        ensure: bool = True,
    ) -> tuple[object, int | None]:
        """Run ``body`` in one transaction, retrying commit conflicts with backoff and jitter.

        DuckLake already retries commits that do not conflict (ducklake_max_retry_count). What
        reaches here is a real conflict, such as two runs rewriting the same day. The whole
        transaction is re-run on a fresh snapshot, so the later run replaces the earlier one's rows
        and the day ends with one copy. The wait is bounded by ``commit_timeout_s`` and logged.
        Returns the body's result and the snapshot id of the commit (None when nothing changed).
        """
        if self.read_only:
            raise WarehouseError(f"{what}: this warehouse session is read-only")
        if ensure:
            self.ensure_schema()
        limit = self.config.commit_timeout_s
        started = time.monotonic()
        delay = 0.05
        attempt = 0
        root = self._root()  # before the writer lock: opening takes that lock itself
        while True:
            attempt += 1
            with _catalog_writer_lock(self.config, self.log, what):
                outcome = self._attempt(root, body, message)
            if not isinstance(outcome, duckdb.Error):
                return outcome
            exc = outcome
            waited = time.monotonic() - started
            text = scrub(str(exc), self.config).splitlines()[0][:300]
            if not _is_retryable(exc):
                raise exc
            if waited >= limit:
                raise WarehouseError(
                    f"{what}: gave up after {attempt} attempts in {waited:.1f}s (limit "
                    f"commit_timeout_s={limit:g}s); last conflict: {text}. Another run is probably "
                    "writing the same partition; it will finish, then re-run this one."
                ) from None
            pause = min(delay * (0.5 + random.random()), max(0.0, limit - waited))
            self.commit_retries += 1
            self.log.warning(
                f"{what}: commit conflict ({text}); retrying in {pause:.2f}s "
                f"(attempt {attempt}, waited {waited:.1f}s of {limit:g}s)"
            )
            time.sleep(pause)
            delay = min(delay * 2, 5.0)

    def _attempt(
        self,
        root: duckdb.DuckDBPyConnection,
        body: Callable[[duckdb.DuckDBPyConnection], object],
        message: str | None,
    ) -> tuple[object, int | None] | duckdb.Error:
        """One try of a write transaction: its result and snapshot, or the DuckDB error it hit."""
        cur = root.cursor()
        try:
            cur.execute(f"USE {LAKE}")
            cur.execute("BEGIN TRANSACTION")
            try:
                if message:
                    cur.execute(f"CALL {LAKE}.set_commit_message(?, ?)", ["embed-dagster", message[:500]])
                result = body(cur)
                cur.execute("COMMIT")
            except BaseException:
                try:
                    cur.execute("ROLLBACK")
                except duckdb.Error:
                    pass  # the failed COMMIT already ended the transaction
                raise
            snapshot = cur.execute(f"FROM {LAKE}.last_committed_snapshot()").fetchone()
            return result, (snapshot[0] if snapshot else None)
        except duckdb.Error as exc:
            return exc
        finally:
            cur.close()

    # -- writes ---------------------------------------------------------------------------------

    def replace_partition(
        self,
        day: date,
        writes: Mapping[
            str, pa.Table | tuple[Mapping[str, object], pa.Table | Callable[[Warehouse], pa.Table]]
        ],
        *,
        message: str | None = None,
    ) -> int | None:
        """Replace one day's rows in several tables in one transaction, so one snapshot.

        ``writes`` maps a table to its rows, or to ``(extra key columns, rows)`` to replace only the
        rows matching those columns too (quarantine rows of one source asset). Rows may be a
        function of a Warehouse bound to the transaction: it reads what this transaction sees, so a
        retried write recomputes them from the winner's data. Returns the snapshot id.
        """
        validated = {}
        for table, spec in writes.items():
            if validate_identifier(table) not in TABLES:
                raise ValueError(f"unknown table {table}")
            extra, rows = spec if isinstance(spec, tuple) else ({}, spec)
            validated[table] = ({"partition_date": day, **extra}, rows)

        def body(cur: duckdb.DuckDBPyConnection) -> None:
            bound = copy.copy(self)
            bound._bound = cur
            for table, (key, rows) in validated.items():
                if callable(rows):
                    rows = rows(bound)
                _replace_rows(cur, table, key, rows)

        tables = ", ".join(validated)
        _, snapshot = self._transaction(
            body, what=f"writing {tables} for {day}", message=message or f"{tables} {day}"
        )
        return snapshot

    # -- reads for the assets -------------------------------------------------------------------

    def raw_rows(self, day: date) -> pa.Table:
        """The day's comments in landing order (what deduplication reads)."""
        return self._arrow(
            "SELECT comment_id, text, source_file, source_row FROM raw_comments "
            "WHERE partition_date = ? ORDER BY source_file, source_row",
            [day],
        )

    def partition_hashes(self, day: date) -> list[str]:
        rows = self._arrow(
            "SELECT text_hash FROM deduplicated_texts WHERE partition_date = ? ORDER BY text_hash", [day]
        )
        return rows.column("text_hash").to_pylist()

    def texts_to_embed(self, day: date, model_key_id: str) -> pa.Table:
        """The day's distinct texts (hash, text) to embed for this key: all but those cached_embeddings
        listed whose vector is stored.

        cached_embeddings can list a text before its vector exists: in a range run it lists a text
        that an earlier day of the range embeds first (``pending_from_earlier_days``). Should that
        day's server have refused it, this day sends it again (and quarantines its comments too).
        """
        return self._arrow(
            """SELECT d.text_hash, d.text FROM deduplicated_texts d
               WHERE d.partition_date = ? AND d.text_hash NOT IN (
                   SELECT c.text_hash FROM cached_embeddings c
                   WHERE c.partition_date = ? AND c.model_key = ? AND c.text_hash IN (
                       SELECT text_hash FROM embedding_store WHERE model_key = ?))
               ORDER BY d.text_hash""",
            [day, day, model_key_id, model_key_id],
        )

    def pending_from_earlier_days(self, day: date, model_key_id: str, since: date) -> list[str]:
        """Texts of ``day`` with no stored vector that a day in ``[since, day)`` also holds.

        A range run looks every day up before it embeds any: these are the texts the earlier day's
        embedding will store first, so they are *cached* on ``day``, exactly as when the days run one
        by one (fresh on the first day that stored them)."""
        rows = self._arrow(
            """SELECT d.text_hash FROM deduplicated_texts d
               WHERE d.partition_date = ?
                 AND d.text_hash IN (SELECT text_hash FROM deduplicated_texts
                                     WHERE partition_date >= ? AND partition_date < ?)
                 AND d.text_hash NOT IN (SELECT text_hash FROM embedding_store WHERE model_key = ?)
               ORDER BY d.text_hash""",
            [day, since, day, model_key_id],
        )
        return rows.column("text_hash").to_pylist()

    def cached_hashes(self, day: date, model_key_id: str) -> set[str]:
        rows = self._arrow(
            "SELECT text_hash FROM cached_embeddings WHERE partition_date = ? AND model_key = ?",
            [day, model_key_id],
        )
        return set(rows.column("text_hash").to_pylist())

    def embedding_split(self, day: date, model_key_id: str) -> tuple[pa.Table, pa.Table]:
        """The day's rows of cached_embeddings and fresh_embeddings, derived from the vector store.

        Why from the store and not from what a run found or sent: the split must be a function of the
        inputs, so that re-running a day rewrites the same rows. A stored text of the day is *fresh*
        when this day first stored it (its first row's ``first_partition_date`` is the day) and this
        lake embedded it (``truncated`` known); otherwise *cached*: another day stored it first, it
        was copied from Redis, or it predates the origin column (NULL, read as earlier than any day).
        Texts not stored are in neither (to be embedded, or refused by the server and quarantined).
        Both tables sorted by text_hash.
        """
        stored = _first_stored(_KEY_AND_DAY_TEXTS)
        table = self._arrow(
            f"""SELECT s.text_hash, s.model_key,
                       coalesce(s.first_partition_date = ? AND s.truncated IS NOT NULL, false) AS own,
                       coalesce(s.truncated, false) AS truncated
                FROM {stored} s
                ORDER BY s.text_hash""",
            [day, model_key_id, day],
        )
        own = table.column("own").to_pylist()
        keep = pa.array([not o for o in own], pa.bool_())
        cached = table.filter(keep).select(["text_hash", "model_key"])
        fresh = table.filter(pa.array(own, pa.bool_())).select(["text_hash", "model_key", "truncated"])
        return cached, fresh

    def rejected_comments(self, day: date, rejected: Mapping[str, str]) -> pa.Table:
        """Every comment of the day whose text the server refused, with the refusal as the reason."""
        if not rejected:
            return pa.table(
                {
                    "comment_id": pa.array([], pa.string()),
                    "source_file": pa.array([], pa.string()),
                    "source_row": pa.array([], pa.int64()),
                    "raw": pa.array([], pa.string()),
                    "reason": pa.array([], pa.string()),
                }
            )
        reasons = pa.table(
            {
                "text_hash": pa.array(list(rejected), pa.string()),
                "reason": pa.array(
                    [f"the embedder rejected the text: {m}" for m in rejected.values()], pa.string()
                ),
            }
        )
        with self._cursor() as cur:
            _register(cur, "reasons", reasons)
            return cur.execute(
                """SELECT m.comment_id, r.source_file, r.source_row, left(r.text, 2000) AS raw, x.reason
                   FROM comment_texts m JOIN reasons x USING (text_hash)
                   JOIN raw_comments r ON r.partition_date = m.partition_date AND r.comment_id = m.comment_id
                   WHERE m.partition_date = ? ORDER BY r.source_file, r.source_row""",
                [day],
            ).fetch_arrow_table()

    def vectors_for_day(self, day: date, model_key_id: str, dim: int) -> tuple[pa.Table, np.ndarray]:
        """The day's distinct texts that have a vector (hash, text, comment_count) and those vectors.

        One join; a (model_key, text_hash) stored twice by two racing runs counts once, with the
        vector of its first row (see :func:`_first_stored`).
        """
        stored = _first_stored(_KEY_AND_DAY_TEXTS)
        table = self._arrow(
            f"""SELECT d.text_hash, d.text, d.comment_count, s.vector FROM deduplicated_texts d
               JOIN {stored} s
                 ON s.text_hash = d.text_hash
               WHERE d.partition_date = ? ORDER BY d.text_hash""",
            [model_key_id, day, day],
        )
        return table.drop(["vector"]), arrow_to_matrix(table.column("vector"), dim)

    def expected_vector_count(self, day: date) -> int:
        """Distinct texts of the day that should have a vector: all but those the server rejected."""
        return self._one(
            """SELECT count(*) AS n FROM deduplicated_texts d WHERE d.partition_date = ?
               AND d.text_hash NOT IN (SELECT m.text_hash FROM quarantine q JOIN comment_texts m
                   ON m.partition_date = q.partition_date AND m.comment_id = q.comment_id
                   WHERE q.partition_date = ? AND q.source_asset = 'fresh_embeddings')""",
            [day, day],
        )["n"]

    def comment_assignments(self, day: date, by_hash: pa.Table) -> pa.Table:
        """Each comment of the day with its text's cluster.

        ``by_hash`` holds text_hash, cluster_id, probability, map_x and map_y per distinct text."""
        with self._cursor() as cur:
            _register(cur, "labels", by_hash)
            return cur.execute(
                """SELECT m.comment_id, m.text_hash, l.cluster_id, l.probability, l.map_x, l.map_y
                   FROM comment_texts m JOIN labels l USING (text_hash)
                   WHERE m.partition_date = ? ORDER BY m.comment_id""",
                [day],
            ).fetch_arrow_table()

    def cluster_summaries(self, day: date) -> pa.Table:
        return self._arrow(
            "SELECT * FROM cluster_summaries WHERE partition_date = ? ORDER BY cluster_id", [day]
        )

    def topic_state_rows(self, day: date, window_days: int) -> tuple[list[dict], list[dict], list[dict]]:
        """What the topic layer knows before ``day``: each topic's latest row, every merge, and the
        sizes of the last ``window_days`` days (for surge scores)."""
        latest = self._arrow(
            """SELECT * FROM topics WHERE partition_date < ? AND topic_id IS NOT NULL
               QUALIFY row_number() OVER (PARTITION BY topic_id ORDER BY partition_date DESC, cluster_id) = 1
               ORDER BY topic_id""",
            [day],
        ).to_pylist()
        absorbed = self._arrow(
            """SELECT topic_id, absorbed FROM topics
               WHERE partition_date < ? AND absorbed IS NOT NULL AND len(absorbed) > 0
               ORDER BY partition_date, topic_id""",
            [day],
        ).to_pylist()
        recent = self._arrow(
            """SELECT partition_date, topic_id, size FROM topics
               WHERE partition_date < ? AND partition_date > ?""",
            [day, day - timedelta(days=window_days)],
        ).to_pylist()
        return latest, absorbed, recent

    def cluster_map_points(self, day: date) -> tuple[np.ndarray, np.ndarray] | None:
        """The day's distinct texts' map positions and cluster ids, as the clusters step stored them
        (for the topic map); None when the day was clustered before positions were stored."""
        table = self._arrow(
            """SELECT text_hash, min(cluster_id) AS cluster_id, any_value(map_x) AS x, any_value(map_y) AS y
               FROM clusters WHERE partition_date = ? GROUP BY text_hash ORDER BY text_hash""",
            [day],
        )
        if table.column("x").null_count or table.column("y").null_count:
            return None

        def column(name: str) -> np.ndarray:
            return table.column(name).to_numpy(zero_copy_only=False)

        xy = np.column_stack([column("x"), column("y")]).astype(np.float32).reshape(-1, 2)
        return xy, column("cluster_id").astype(np.int64)

    def clustered_text_vectors(self, day: date, model_key_id: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """The day's distinct texts' vectors and cluster ids (for the topic map of a day clustered
        before map positions were stored)."""
        stored = _first_stored(
            "model_key = ? AND text_hash IN (SELECT text_hash FROM clusters WHERE partition_date = ?)"
        )
        table = self._arrow(
            f"""SELECT c.text_hash, min(c.cluster_id) AS cluster_id, any_value(s.vector) AS vector
               FROM clusters c
               JOIN {stored} s
                 ON s.text_hash = c.text_hash
               WHERE c.partition_date = ? GROUP BY c.text_hash ORDER BY c.text_hash""",
            [model_key_id, day, day],
        )
        labels = np.asarray(table.column("cluster_id").to_pylist(), dtype=np.int64)
        return arrow_to_matrix(table.column("vector"), dim), labels

    def topic_trend_rows(self, start: date, end: date) -> list[dict]:
        """Each topic's daily size between two days, with its new/surging marks and its label."""
        # a topic merged into another by ``end`` is drawn as part of the one it lives on in
        return self._arrow(
            survivor_cte("(SELECT * FROM topics WHERE partition_date <= $end)")
            + """
               SELECT t.partition_date, coalesce(v.keep, t.topic_id) AS topic_id, sum(t.size) AS size,
                      bool_or(t.is_new) AS is_new, bool_or(t.surging) AS surging,
                      arg_max(t.label, t.size) AS label
               FROM topics t LEFT JOIN survivor v ON v.gone = t.topic_id
               WHERE t.partition_date BETWEEN $start AND $end AND t.topic_id IS NOT NULL
               GROUP BY 1, 2 ORDER BY 1, 2""",
            {"start": start, "end": end},
        ).to_pylist()

    def topic_days_after(self, day: date) -> list[date]:
        """Days after ``day`` that have topics rows: they continue ``day``'s topics."""
        rows = self._arrow(
            "SELECT DISTINCT partition_date FROM topics WHERE partition_date > ? ORDER BY partition_date",
            [day],
        )
        return rows.column("partition_date").to_pylist()

    def topic_alerts(self, day: date) -> list[dict]:
        """The day's surging and large new topics, one row per topic."""
        return self._arrow(
            """SELECT topic_id, any_value(label) AS label, any_value(topic_size) AS comments,
                      any_value(share) AS share, any_value(surge_z) AS surge_z,
                      bool_or(surging) AS surging, bool_or(large_new) AS large_new
               FROM topics WHERE partition_date = ? AND topic_id IS NOT NULL AND (surging OR large_new)
               GROUP BY topic_id ORDER BY comments DESC, topic_id""",
            [day],
        ).to_pylist()

    def row_counts(self, table: str, day: date | None = None) -> tuple[int, int]:
        """(rows of the partition, rows of the whole table) in one query; partition is 0 without a day."""
        if validate_identifier(table) not in TABLES:
            raise ValueError(f"unknown table {table}")
        if "partition_date" not in {c.name for c in TABLES[table].columns}:
            n = self._one(f"SELECT count(*) AS n FROM {table}")["n"]
            return 0, n
        row = self._one(
            f"SELECT count(*) FILTER (WHERE partition_date = ?) AS p, count(*) AS n FROM {table}", [day]
        )
        return row["p"], row["n"]

    def count_rows(self, table: str, day: date | None = None) -> int:
        part, total = self.row_counts(table, day)
        return total if day is None else part

    def partition_counts(self, table: str) -> dict[date, int]:
        """Rows per partition_date of a table (the ledger the migration and tests compare)."""
        validate_identifier(table)
        rows = self._arrow(f"SELECT partition_date AS d, count(*) AS n FROM {table} GROUP BY 1").to_pylist()
        return {r["d"]: r["n"] for r in rows}

    # -- reads for the checks -------------------------------------------------------------------

    def conservation_counts(self, day: date) -> dict:
        """The conservation ledger: rows read, clustered, quarantined, and counts of doubles."""
        return self._one(
            """SELECT
                 (SELECT count(*) FROM raw_comments WHERE partition_date = $d)
               + (SELECT count(*) FROM quarantine WHERE partition_date = $d AND source_asset = 'raw_comments')
                   AS rows_read,
                 (SELECT count(*) FROM clusters WHERE partition_date = $d) AS clustered,
                 (SELECT count(DISTINCT comment_id) FROM clusters WHERE partition_date = $d)
                   AS clustered_distinct,
                 (SELECT count(*) FROM quarantine WHERE partition_date = $d) AS quarantined,
                 (SELECT count(*) FROM clusters c JOIN quarantine q
                    ON q.partition_date = c.partition_date AND q.comment_id = c.comment_id
                    AND q.source_asset <> 'raw_comments'
                  WHERE c.partition_date = $d) AS in_both,
                 -- by identity, not only by count: a clustered id that was never read, and a read
                 -- id that is neither clustered nor quarantined (a swap passes every count)
                 (SELECT count(*) FROM clusters c WHERE c.partition_date = $d AND NOT EXISTS (
                    SELECT 1 FROM raw_comments r WHERE r.partition_date = $d AND r.comment_id = c.comment_id))
                   AS phantom,
                 (SELECT count(*) FROM raw_comments r WHERE r.partition_date = $d
                    AND NOT EXISTS (SELECT 1 FROM clusters c
                                    WHERE c.partition_date = $d AND c.comment_id = r.comment_id)
                    AND NOT EXISTS (SELECT 1 FROM quarantine q
                                    WHERE q.partition_date = $d AND q.comment_id = r.comment_id
                                      AND q.source_asset <> 'raw_comments')) AS unplaced""",
            {"d": day},
        )

    def coverage_counts(self, day: date, model_key_id: str) -> dict:
        """Per distinct text of the day: found once, missing, listed twice, or not in the store."""
        return self._one(
            """WITH sources AS (
                   SELECT text_hash FROM cached_embeddings WHERE partition_date = $d AND model_key = $k
                   UNION ALL
                   SELECT text_hash FROM fresh_embeddings WHERE partition_date = $d AND model_key = $k),
               rejected AS (
                   SELECT DISTINCT m.text_hash FROM quarantine q JOIN comment_texts m
                     ON m.partition_date = q.partition_date AND m.comment_id = q.comment_id
                   WHERE q.partition_date = $d AND q.source_asset = 'fresh_embeddings'),
               per_text AS (
                   SELECT d.text_hash, (SELECT count(*) FROM sources s WHERE s.text_hash = d.text_hash) AS n,
                          d.text_hash IN (SELECT text_hash FROM rejected) AS was_rejected,
                          d.text_hash IN (SELECT text_hash FROM embedding_store WHERE model_key = $k)
                            AS stored
                   FROM deduplicated_texts d WHERE d.partition_date = $d)
               SELECT count(*) AS distinct_texts,
                      count(*) FILTER (WHERE n = 0 AND NOT was_rejected) AS missing,
                      count(*) FILTER (WHERE n > 1) AS duplicated,
                      count(*) FILTER (WHERE n = 1 AND NOT stored) AS not_in_store,
                      count(*) FILTER (WHERE was_rejected) AS rejected
               FROM per_text""",
            {"d": day, "k": model_key_id},
        )

    def day_vectors_with_dims(self, day: date, model_key_id: str) -> pa.Table:
        """(dim, vector) of every stored vector of the day's texts, for the sanity check."""
        stored = _first_stored(_KEY_AND_DAY_TEXTS)
        return self._arrow(
            f"""SELECT s.dim, s.vector FROM {stored} s
               JOIN deduplicated_texts d ON d.text_hash = s.text_hash AND d.partition_date = ?""",
            [model_key_id, day, day],
        )

    def clustering_counts(self, day: date) -> dict:
        return self._one(
            """SELECT count(*) AS comments, count(*) FILTER (WHERE cluster_id = -1) AS noise,
                      count(DISTINCT cluster_id) FILTER (WHERE cluster_id >= 0) AS clusters
               FROM clusters WHERE partition_date = ?""",
            [day],
        )

    # -- reads for the demo report --------------------------------------------------------------

    def partition_figures(self, day: date) -> dict:
        return self._one(
            """SELECT
                 (SELECT count(*) FROM raw_comments WHERE partition_date = $d)
               + (SELECT count(*) FROM quarantine WHERE partition_date = $d AND source_asset = 'raw_comments')
                   AS rows_read,
                 (SELECT count(*) FROM raw_comments WHERE partition_date = $d) AS comments,
                 (SELECT count(*) FROM deduplicated_texts WHERE partition_date = $d) AS distinct_texts,
                 (SELECT count(*) FROM cached_embeddings WHERE partition_date = $d) AS cached_embeddings,
                 (SELECT count(*) FROM fresh_embeddings WHERE partition_date = $d) AS fresh_embeddings,
                 (SELECT count(*) FROM fresh_embeddings WHERE partition_date = $d AND truncated)
                   AS fresh_truncated,
                 (SELECT count(*) FROM quarantine WHERE partition_date = $d) AS quarantined,
                 (SELECT count(*) FROM clusters WHERE partition_date = $d) AS clustered,
                 (SELECT count(DISTINCT cluster_id) FROM clusters
                   WHERE partition_date = $d AND cluster_id >= 0) AS clusters,
                 (SELECT count(*) FROM clusters WHERE partition_date = $d AND cluster_id = -1) AS noise,
                 (SELECT count(DISTINCT topic_id) FROM topics WHERE partition_date = $d AND is_new)
                   AS new_topics""",
            {"d": day},
        )

    def top_clusters(self, day: date, limit: int = 5) -> list[dict]:
        return self._arrow(
            """SELECT s.cluster_id, s.size, s.label, s.representatives, t.topic_id
               FROM cluster_summaries s LEFT JOIN topics t
                 ON t.partition_date = s.partition_date AND t.cluster_id = s.cluster_id
               WHERE s.partition_date = ? ORDER BY s.size DESC, s.cluster_id LIMIT ?""",
            [day, limit],
        ).to_pylist()

    def quarantine_reasons(self, day: date) -> list[dict]:
        return self._arrow(
            """SELECT source_asset,
                      coalesce(source_file, '') || ':' || coalesce(CAST(source_row AS VARCHAR), '?')
                        AS location,
                      reason
               FROM quarantine WHERE partition_date = ? ORDER BY source_asset, source_file, source_row""",
            [day],
        ).to_pylist()

    # -- the vector store -----------------------------------------------------------------------

    def register_model_key(self, key: ModelKey) -> None:
        """Record a model key once (anti-join insert: DuckLake has no primary keys)."""
        if self._one("SELECT count(*) AS n FROM model_keys WHERE model_key = ?", [key.id])["n"]:
            return

        def body(cur: duckdb.DuckDBPyConnection) -> None:
            cur.execute(
                """INSERT INTO model_keys
                       (model_key, model, dimensions, instruction, normalization_version, max_chars)
                   SELECT ?, ?, ?, ?, ?, ?
                   WHERE NOT EXISTS (SELECT 1 FROM model_keys WHERE model_key = ?)""",
                [
                    key.id,
                    key.model,
                    key.dimensions,
                    key.instruction,
                    key.normalization_version,
                    None if key.max_chars == DEFAULT_MAX_CHARS else key.max_chars,
                    key.id,
                ],
            )

        self._transaction(body, what=f"registering model key {key.id}", message=f"model key {key.id}")

    def lookup(self, model_key_id: str, hashes: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """One join against the requested hashes; returns the found ones (sorted) and their vectors."""
        wanted = pa.table({"text_hash": pa.array(list(dict.fromkeys(hashes)), pa.string())})
        with self._cursor() as cur:
            _register(cur, "wanted", wanted)
            result = cur.execute(
                f"""SELECT s.text_hash, s.dim, s.vector
                    FROM {_first_stored("model_key = ? AND text_hash IN (SELECT text_hash FROM wanted)")} s
                    ORDER BY s.text_hash""",
                [model_key_id],
            ).fetch_arrow_table()
        if result.num_rows == 0:
            return [], np.zeros((0, 0), dtype=np.float32)
        dims = set(result.column("dim").to_pylist())
        if len(dims) != 1:
            raise ValueError(f"model key {model_key_id} has vectors of several dimensions: {sorted(dims)}")
        return result.column("text_hash").to_pylist(), arrow_to_matrix(result.column("vector"), dims.pop())

    def existing(self, model_key_id: str, hashes: Sequence[str]) -> set[str]:
        """Which of ``hashes`` are stored, without moving the vectors."""
        wanted = pa.table({"text_hash": pa.array(list(hashes), pa.string())})
        with self._cursor() as cur:
            _register(cur, "wanted", wanted)
            rows = cur.execute(
                """SELECT DISTINCT s.text_hash FROM embedding_store s SEMI JOIN wanted w
                   ON w.text_hash = s.text_hash WHERE s.model_key = ?""",
                [model_key_id],
            ).fetchall()
        return {r[0] for r in rows}

    def save(
        self,
        model_key_id: str,
        hashes: Sequence[str],
        matrix: np.ndarray,
        *,
        partition_date: date | None,
        truncated: Sequence[bool] | None = None,
    ) -> int:
        """Insert the vectors not stored yet, in one transaction; returns how many rows were new.

        ``partition_date`` is the day whose run saves them: it becomes the row's origin
        (``first_partition_date``), which decides whether a day lists the text as fresh or cached
        (:meth:`embedding_split`). A text already stored keeps its origin. ``truncated`` is one
        flag per vector when this lake embedded them; ``None`` (vectors copied from Redis, or from
        another lake) stores NULL, which marks them as not embedded here.

        An anti-join insert instead of a primary key. Two runs saving the same text at the same
        moment may both insert it (inserts never conflict in DuckLake); every read takes the row
        with the smallest origin (:func:`_first_stored`), so the repeat is harmless, and maintenance
        can drop it.
        """
        if len(hashes) == 0:
            return 0
        if len(hashes) != len(matrix):
            raise ValueError("hashes and vectors differ in length")
        if truncated is not None and len(truncated) != len(hashes):
            raise ValueError("hashes and truncated flags differ in length")
        rows = pa.table(
            {
                "text_hash": pa.array(list(hashes), pa.string()),
                "vector": matrix_to_arrow(matrix),
                "truncated": pa.array(
                    [None] * len(hashes) if truncated is None else [bool(t) for t in truncated], pa.bool_()
                ),
            }
        )
        dim = int(matrix.shape[1])

        def body(cur: duckdb.DuckDBPyConnection) -> int:
            _register(cur, "new_vectors", rows)
            return cur.execute(
                """INSERT INTO embedding_store
                       (model_key, text_hash, dim, vector, created_at, first_partition_date, truncated)
                   SELECT DISTINCT ON (n.text_hash) ?, n.text_hash, ?, n.vector::FLOAT[], now(), ?::DATE,
                          n.truncated
                   FROM new_vectors n ANTI JOIN (SELECT text_hash FROM embedding_store WHERE model_key = ?) s
                     ON s.text_hash = n.text_hash""",
                [model_key_id, dim, partition_date, model_key_id],
            ).fetchone()[0]

        inserted, _ = self._transaction(
            body, what=f"saving {len(hashes)} vectors", message=f"vectors {model_key_id}"
        )
        return int(inserted)

    def forget(self, model_key_id: str, hashes: Sequence[str]) -> int:
        """Delete these texts' stored vectors (ones found invalid on read), so they count as not
        embedded and the next save stores good ones: ``save`` never overwrites a stored row."""
        if not hashes:
            return 0
        gone = pa.table({"text_hash": pa.array(list(dict.fromkeys(hashes)), pa.string())})

        def body(cur: duckdb.DuckDBPyConnection) -> int:
            _register(cur, "gone", gone)
            return cur.execute(
                "DELETE FROM embedding_store WHERE model_key = ? "
                "AND text_hash IN (SELECT text_hash FROM gone)",
                [model_key_id],
            ).fetchone()[0]

        deleted, _ = self._transaction(
            body, what=f"forgetting {len(gone)} invalid vectors", message=f"forget {model_key_id}"
        )
        return int(deleted)

    # -- snapshots, maintenance, analysts -------------------------------------------------------

    def current_snapshot(self) -> int:
        with self._cursor() as cur:
            return cur.execute(f"FROM {LAKE}.current_snapshot()").fetchone()[0]

    def snapshots(self, limit: int = 50) -> pa.Table:
        return self._arrow(
            f"""SELECT snapshot_id, snapshot_time, changes, author, commit_message
                FROM {LAKE}.snapshots() ORDER BY snapshot_id DESC LIMIT ?""",
            [limit],
        )

    def file_stats(self) -> dict:
        """How many Parquet files (data + delete files) the lake holds and their total size."""
        row = self._one(
            """SELECT coalesce(sum(file_count + delete_file_count), 0)::BIGINT AS files,
                      coalesce(sum(file_size_bytes + delete_file_size_bytes), 0)::BIGINT AS bytes
               FROM ducklake_table_info(?)""",
            [LAKE],
        )
        return {"files": int(row["files"]), "bytes": int(row["bytes"])}

    def maintain(self, *, expire_older_than: timedelta, delete_files_older_than: timedelta) -> dict:
        """Merge small files, expire old snapshots and delete the files nothing refers to any more.

        Retention is a time window: snapshots younger than ``expire_older_than`` stay readable with
        ``AT (VERSION => n)``. Files are removed only once scheduled for longer than
        ``delete_files_older_than``, so a long read that still scans them is not cut off.

        Orphans, files no snapshot ever listed, are deleted too once older than the same grace (at
        least ``ORPHAN_MIN_AGE``): a write killed before its COMMIT (SIGKILL, the OOM killer) leaves
        its Parquet files behind, and ``cleanup_old_files`` only sees files the catalog scheduled
        (a 1.15 MB file per killed write stayed for good: stop-25 adversarial pass). The grace keeps
        a file that a running job has written but not yet committed.

        Each call is a write transaction of its own, through the writer lock and the conflict
        retries: run beside a writer on a SQLite catalog they failed with "database is locked" and
        pushed the writer into commit conflicts (the same pass).
        """
        before = self.file_stats()
        snapshots_before = self._one(f"SELECT count(*) AS n FROM {LAKE}.snapshots()")["n"]
        now = datetime.now(UTC)

        steps = [
            ("merging small files", "CALL ducklake_merge_adjacent_files(?)", [LAKE]),
            (
                "expiring snapshots",
                "CALL ducklake_expire_snapshots(?, older_than => ?)",
                [LAKE, now - expire_older_than],
            ),
            (
                "deleting expired files",
                "CALL ducklake_cleanup_old_files(?, older_than => ?)",
                [LAKE, now - delete_files_older_than],
            ),
            (
                "deleting orphaned files",
                "CALL ducklake_delete_orphaned_files(?, older_than => ?)",
                [LAKE, now - max(delete_files_older_than, ORPHAN_MIN_AGE)],
            ),
        ]
        done = {}
        for what, sql, args in steps:
            done[what], _ = self._transaction(
                lambda cur, sql=sql, args=args: cur.execute(sql, args).fetchall(),
                what=what,
                message=f"maintenance: {what}",
            )
        after = self.file_stats()
        return {
            "files_before": before["files"],
            "files_after": after["files"],
            "bytes_before": before["bytes"],
            "bytes_after": after["bytes"],
            "snapshots_before": snapshots_before,
            "snapshots_expired": len(done["expiring snapshots"]),
            "files_deleted": len(done["deleting expired files"]),
            "orphaned_files_deleted": len(done["deleting orphaned files"]),
        }

    def sql(self, query: str, params: Sequence | Mapping | None = None) -> pa.Table:
        """An analyst's query, as Arrow. Meant for read-only sessions (the CLI opens one)."""
        with self._cursor() as cur:
            return cur.execute(query, params or None).fetch_arrow_table()

    def migrate_from_duckdb(self, old_path: str | os.PathLike) -> dict[str, dict]:
        """Copy a single-file DuckDB warehouse into this lake and verify the copy.

        The old file is attached READ_ONLY, so it is never modified. Each table is copied in one
        transaction that first deletes the partitions it brings (a re-run replaces them, it does
        not duplicate them). Returns per table the old and new row counts per partition; raises
        if any differ.
        """
        old = Path(old_path)
        if not old.is_file():
            raise WarehouseError(f"no DuckDB file at {old}")
        root = self._root()
        self.ensure_schema()
        root.execute(f"ATTACH {_sql_string(str(old))} AS old_wh (READ_ONLY)")
        try:
            present = {
                r[0]
                for r in root.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE database_name = 'old_wh'"
                ).fetchall()
            }
            report: dict[str, dict] = {}
            for name, table in TABLES.items():
                if name not in present:
                    continue
                # An old file may lack columns added since (embedding_store's origin and truncated
                # flag): those stay NULL, which every reader takes as "saved before the column".
                old_cols = {
                    r[0]
                    for r in root.execute(
                        "SELECT column_name FROM duckdb_columns() WHERE database_name = 'old_wh' "
                        f"AND table_name = {_sql_string(name)}"
                    ).fetchall()
                }
                cols = ", ".join(c.name for c in table.columns if c.name in old_cols)
                partitioned = "partition_date" in {c.name for c in table.columns}

                def body(cur, name=name, cols=cols, partitioned=partitioned, table=table):
                    if partitioned:
                        cur.execute(
                            f"DELETE FROM {name} WHERE partition_date IN "
                            f"(SELECT DISTINCT partition_date FROM old_wh.main.{name})"
                        )
                        cur.execute(f"INSERT INTO {name} ({cols}) SELECT {cols} FROM old_wh.main.{name}")
                    else:  # embedding_store, model_keys: add what the lake lacks
                        keys = ", ".join(table.primary_key)
                        cur.execute(
                            f"INSERT INTO {name} ({cols}) SELECT {cols} FROM old_wh.main.{name} o "
                            f"ANTI JOIN (SELECT {keys} FROM {name}) l USING ({keys})"
                        )

                self._transaction(body, what=f"migrating {name}", message=f"migrate {name} from {old.name}")
                report[name] = self._compare_counts(root, name, partitioned)
        finally:
            root.execute("DETACH old_wh")
        bad = {t: r for t, r in report.items() if r["old"] != r["new"]}
        if bad:
            raise WarehouseError(f"row counts differ after migration: {bad}")
        return report

    def _compare_counts(self, root: duckdb.DuckDBPyConnection, name: str, partitioned: bool) -> dict:
        cur = root.cursor()
        try:
            cur.execute(f"USE {LAKE}")
            if partitioned:
                sql = "SELECT partition_date::VARCHAR AS d, count(*) AS n FROM {} GROUP BY 1"
                old = dict(cur.execute(sql.format(f"old_wh.main.{name}")).fetchall())
                new = dict(cur.execute(sql.format(name)).fetchall())
                new = {d: n for d, n in new.items() if d in old}
            else:
                # Keyed tables are merged, not replaced: every old key must now be in the lake.
                keys = ", ".join(TABLES[name].primary_key)
                distinct_old = f"SELECT DISTINCT {keys} FROM old_wh.main.{name}"
                n_old = cur.execute(f"SELECT count(*) FROM ({distinct_old})").fetchone()[0]
                n_found = cur.execute(
                    f"SELECT count(*) FROM ({distinct_old}) o SEMI JOIN {name} l USING ({keys})"
                ).fetchone()[0]
                old, new = {"all": n_old}, {"all": n_found}
            return {"old": old, "new": new}
        finally:
            cur.close()


def _first_stored(where: str) -> str:
    """A subquery of embedding_store rows matching ``where``, one per (model_key, text_hash).

    Two runs that saved the same text at once may both have inserted it; every reader takes the
    same row, the one with the smallest origin (NULL, saved before origins were kept, counts as
    earliest), then the oldest, so reads and the fresh/cached split never depend on scan order.
    """
    return f"""(SELECT * FROM embedding_store WHERE {where}
                QUALIFY row_number() OVER (
                    PARTITION BY model_key, text_hash
                    ORDER BY first_partition_date NULLS FIRST, created_at, truncated NULLS FIRST) = 1)"""


def _register(cur: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
    """Make an Arrow table visible to the next query on this cursor (replacing an earlier one)."""
    cur.register(name, table)


def _column_type(table: str, column: str) -> str:
    for col in TABLES[table].columns:
        if col.name == column:
            return col.type
    raise ValueError(f"table {table} has no column {column}")


def _replace_rows(
    cur: duckdb.DuckDBPyConnection, table: str, key: Mapping[str, object], rows: pa.Table
) -> None:
    """Delete the rows matching ``key``, insert ``rows`` with ``key``'s values (caller's transaction)."""
    names = [validate_identifier(c) for c in key]
    where = " AND ".join(f"{c} = ?" for c in names)
    cur.execute(f"DELETE FROM {table} WHERE {where}", list(key.values()))
    if rows is None or rows.num_rows == 0:
        return
    select_constants = "".join(f"?::{_column_type(table, c)} AS {c}, " for c in names)
    cur.register("partition_rows", rows)
    try:
        cur.execute(
            f"INSERT INTO {table} BY NAME SELECT {select_constants}* FROM partition_rows",
            list(key.values()),
        )
    finally:
        cur.unregister("partition_rows")
