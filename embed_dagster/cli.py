"""``embed-dagster``: the analyst's and operator's door to the lake, outside Dagster.

* ``embed-dagster sql "<query>"`` runs one query in a read-only session and prints CSV. Readers
  attach the lake READ_ONLY and read a committed snapshot, so they never block a run and a run
  never blocks them (the single DuckDB file could do neither).
* ``embed-dagster shell`` (``make sql``) is the same session, interactive.
* ``embed-dagster migrate --from OLD.duckdb`` copies a single-file warehouse into the lake and
  verifies row counts per table and partition; the old file is opened read-only.

The lake is found the way the Dagster resources find it (``EMBED_DAGSTER_LAKE`` and friends, see
docs/warehouse.md); ``--lake`` / ``--catalog`` / ``--data-path`` override.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import replace

import duckdb

from embed_dagster.core.warehouse.lake import LAKE, LakeConfig, Warehouse, WarehouseError, scrub


def _config(args: argparse.Namespace) -> LakeConfig:
    config = LakeConfig.from_env()
    if args.lake:
        embedded = LakeConfig.embedded(args.lake)
        config = replace(config, catalog=embedded.catalog, data_path=embedded.data_path)
    if args.catalog:
        config = replace(config, catalog=args.catalog)
    if args.data_path:
        config = replace(config, data_path=args.data_path)
    return config


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, list | dict | tuple):
        return json.dumps(value, default=str, ensure_ascii=False)
    return value


# What an analyst session may run: queries. Everything else (COPY into the data folder, ATTACH of the
# catalog file read-write, SET, INSTALL/LOAD, CREATE MACRO, PREPARE/EXECUTE) could change the lake or
# reopen what the session locks (stop-25 adversarial pass: COPY over a Parquet file and a second
# ATTACH of catalog.sqlite emptied raw_comments). EXPLAIN is allowed for the query it explains.
_ALLOWED_STATEMENTS = {"SELECT", "EXPLAIN"}
_EXPLAIN = re.compile(r"(?is)^\s*EXPLAIN(\s+ANALYZE)?\s+")

# Functions a query may not call, matched on the parsed statement (so quoting or case does not hide
# them). DuckLake's own functions are allowed only where they read (the snapshot list, table
# info and changes): its file-maintenance calls act on the data folder even through a read-only
# attach (ducklake_delete_orphaned_files deleted a Parquet file a running job had written but not
# yet committed: stop-24 pass; lake.merge_adjacent_files() wrote merged copies, and checkpoint('lake')
# deleted files: stop-25 review); lake_maintenance runs them safely. query()/query_table() run SQL
# built at run time, which no check can read beforehand; the sqlite/postgres/mysql extensions'
# functions reach the catalog database itself (sqlite_query, postgres_execute).
_LAKE_READS = frozenset(
    {
        "snapshots",
        "current_snapshot",
        "last_committed_snapshot",
        "table_info",
        "table_changes",
        "table_insertions",
        "table_deletions",
        "list_files",
        "options",
        "settings",
    }
)
_REFUSED_FUNCTIONS = re.compile(
    r"(?i)^(query|query_table|checkpoint|force_checkpoint|(sqlite|postgres|mysql)_\w+)$"
)


def _refused(call: dict) -> bool:
    name = str(call.get("function_name", "")).lower()
    if _REFUSED_FUNCTIONS.match(name):
        return True
    if name.startswith("ducklake_"):
        return name.removeprefix("ducklake_") not in _LAKE_READS
    qualified = {str(call.get("catalog") or "").lower(), str(call.get("schema") or "").lower()}
    return LAKE in qualified and name not in _LAKE_READS


def _function_calls(node: object, found: list[dict]) -> list[dict]:
    if isinstance(node, dict):
        if isinstance(node.get("function_name"), str):
            found.append(node)
        for value in node.values():
            _function_calls(value, found)
    elif isinstance(node, list):
        for value in node:
            _function_calls(value, found)
    return found


def _check_statements(cur: duckdb.DuckDBPyConnection, text: str) -> None:
    """Refuse anything but queries, and queries that call a refused function."""
    for statement in cur.extract_statements(text):
        kind = statement.type.name
        if kind not in _ALLOWED_STATEMENTS:
            raise ValueError(f"only queries run in an analyst session (SELECT, EXPLAIN); this is {kind}")
        query = statement.query
        if kind == "EXPLAIN":
            query = _EXPLAIN.sub("", query, count=1)
            inner = cur.extract_statements(query)
            if len(inner) != 1 or inner[0].type.name != "SELECT":
                raise ValueError("EXPLAIN runs in an analyst session for a SELECT only")
        tree = json.loads(cur.execute("SELECT json_serialize_sql(?)", [query]).fetchone()[0])
        if tree.get("error"):
            raise ValueError(f"the query could not be checked: {tree.get('error_message')}")
        refused = sorted({c["function_name"] for c in _function_calls(tree, []) if _refused(c)})
        if refused:
            raise ValueError(
                f"{', '.join(refused)} cannot be called from an analyst session: DuckLake maintenance "
                "runs in the lake_maintenance asset, and SQL built at run time or sent to the catalog "
                "database is not checked"
            )


def _analyst_only(cur: duckdb.DuckDBPyConnection, config: LakeConfig, statement: str) -> None:
    """Lock the session to the lake: queries only, no file outside the data path is read
    (read_csv('/etc/...')), settings cannot be changed back, and DuckLake's maintenance calls are
    refused. A guard rail for a query tool, not a sandbox: the OS user's rights still apply."""
    _check_statements(cur, statement)
    if cur.execute("SELECT current_setting('lock_configuration')").fetchone()[0]:
        return  # the shell's connection, locked by its first statement
    if "://" not in config.data_path:  # a local lake: only its data folder is reachable
        cur.execute("SET allowed_directories = [?]", [config.data_path])
        cur.execute("SET enable_external_access = false")
        cur.execute("SET lock_configuration = true")


def _masker(config: LakeConfig):
    """What hides the catalog password in printed results, or None when the lake has none.

    ``duckdb_databases()`` lists each attached database with its connection string, and the
    postgres catalog's carries the password, quoted for libpq (stop-25 adversarial pass). Cells that
    look like a connection string are scrubbed; in other cells only the password itself is
    replaced."""
    if not (config.catalog_password or scrub(config.catalog, config) != config.catalog):
        return None

    def mask(text: str) -> str:
        if "password" in text.lower() or "://" in text:  # a connection string (its quoting varies)
            return scrub(text, config)
        return text.replace(config.catalog_password, "***") if config.catalog_password else text

    return mask


def run_sql(config: LakeConfig, query: str, out=None) -> int:
    """Print the query's result as CSV (header + rows), streamed in batches."""
    out = out or sys.stdout
    mask = _masker(config)
    with Warehouse(config, read_only=True) as wh:
        with wh.session() as cur:
            _analyst_only(cur, config, query)
            cur.execute(query)
            writer = csv.writer(out, lineterminator="\n")
            if cur.description:
                writer.writerow([d[0] for d in cur.description])
                while rows := cur.fetchmany(10_000):
                    cells = ([_cell(v) for v in row] for row in rows)
                    if mask is not None:
                        cells = ([mask(v) if isinstance(v, str) else v for v in r] for r in cells)
                    writer.writerows(cells)
    return 0


def run_shell(config: LakeConfig) -> int:
    """A small read-only REPL: statements end with ';', results print as DuckDB's boxed tables."""
    try:
        import readline  # noqa: F401  (line editing and history where available)
    except ImportError:
        pass
    mask = _masker(config)
    with Warehouse(config, read_only=True) as wh:
        print(f"read-only session on {config.label()}")
        print(
            "tables: raw_comments, deduplicated_texts, clusters, topics, ...; views: comment_topics, "
            "topic_registry. End statements with ';'. Ctrl-D quits."
        )
        buffer: list[str] = []
        while True:
            try:
                line = input("lake> " if not buffer else "  ... ")
            except EOFError:
                print()
                return 0
            except KeyboardInterrupt:
                print()
                buffer = []
                continue
            buffer.append(line)
            statement = "\n".join(buffer).strip()
            if not statement.endswith(";"):
                continue
            buffer = []
            try:
                with wh.session() as cur:
                    _analyst_only(cur, config, statement)
                    relation = cur.sql(statement.rstrip(";"))
                    if relation is not None:
                        if mask is None:
                            relation.show(max_rows=40)
                        else:
                            print(mask(str(relation.limit(40))))
            except Exception as exc:  # noqa: BLE001 - a bad query must not end the session
                print(f"error: {scrub(str(exc), config)}", file=sys.stderr)


def run_migrate(config: LakeConfig, old: str) -> int:
    with Warehouse(config) as wh:
        report = wh.migrate_from_duckdb(old)
    for table, counts in report.items():
        total = sum(counts["new"].values())
        print(f"{table:<20} {total:>10} rows in {len(counts['new'])} partition(s): counts match")
    print(f"migrated {old} into {config.label()}; the old file was opened read-only and is unchanged")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="embed-dagster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake", help="embedded lake folder (default: $EMBED_DAGSTER_LAKE or data/lake)")
    parser.add_argument("--catalog", help="DuckLake catalog, e.g. 'postgres:dbname=lake host=db'")
    parser.add_argument("--data-path", help="Parquet data path of the lake")
    sub = parser.add_subparsers(dest="command", required=True)
    p_sql = sub.add_parser("sql", help="run one read-only query and print CSV")
    p_sql.add_argument("query")
    sub.add_parser("shell", help="interactive read-only session")
    p_mig = sub.add_parser("migrate", help="copy a single-file DuckDB warehouse into the lake")
    p_mig.add_argument("--from", dest="old", required=True, help="the old .duckdb file (left untouched)")
    args = parser.parse_args(argv)
    try:
        config = _config(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "sql":
            try:
                return run_sql(config, args.query)
            except BrokenPipeError:  # `... sql "..." | head`: the reader has what it wanted
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 0
        if args.command == "shell":
            return run_shell(config)
        return run_migrate(config, args.old)
    except (WarehouseError, Exception) as exc:  # noqa: BLE001 - every failure becomes a message + exit 1
        message = scrub(str(exc), config).strip()
        print(f"error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
