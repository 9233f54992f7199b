"""Secrets stay secret, servers stay on loopback, and text never becomes SQL.

The API key and the Redis password go in the way production passes them (``dagster.EnvVar``), a
run succeeds and another fails (server down, wrong Redis password); then everything Dagster kept
(event log, run record, job snapshot, metadata), everything printed or logged, every failure text
and the warehouse file are searched for the secrets.
"""

from __future__ import annotations

import inspect
import io
import json
import logging
import re
import secrets
import socket
from contextlib import redirect_stderr, redirect_stdout
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from embed_dagster.core.warehouse.lake import Warehouse, validate_identifier
from embed_dagster.defs.resources import (
    ClusteringResource,
    EmbeddingResource,
    LandingResource,
    VectorCacheResource,
    WarehouseResource,
)
from embed_dagster.dev.local_server import LocalServerProcess, make_server
from embed_dagster_tests.support.fault_server import FaultServer
from embed_dagster_tests.support.faults_helpers import (
    FAULT_MODEL,
    REPO,
    account,
    assert_checks_pass,
    materialize,
    query,
    step_failures,
)
from embed_dagster_tests.support.redis_server import RedisServer, RedisServerUnavailable, find_redis_server

pytestmark = pytest.mark.faults

DAY = date(2025, 8, 1)
API_KEY = "sk-test-SECRET-" + secrets.token_hex(8)
REDIS_PASSWORD = "redis-SECRET-" + secrets.token_hex(8)
WRONG_PASSWORD = "wrong-SECRET-" + secrets.token_hex(8)
HOSTILE = [
    "'); DROP TABLE raw_comments; --",
    "$(rm -rf /)",
    "`reboot` && echo pwned",
    "Robert'); DROP TABLE students;-- ",
    "' OR '1'='1",
    "%s %d {0} ${HOME} $1 ? :name",
    "\\'; SELECT * FROM embedding_store; --",
    "<script>alert(1)</script>",
    '"; DELETE FROM quarantine WHERE ""="',
]


def _write_landing(landing: Path) -> int:
    folder = landing / "comments" / f"date={DAY.isoformat()}"
    folder.mkdir(parents=True)
    rows = [
        {"comment_id": f"h{i}", "created_at": "2025-08-01T12:00:00Z", "text": t}
        for i, t in enumerate(HOSTILE)
    ]
    rows.append({"comment_id": "x'); DROP TABLE clusters; --", "created_at": "2025-08-01", "text": "evil id"})
    rows += [
        {"comment_id": f"n{i}", "created_at": "2025-08-01", "text": f"ordinary comment {i}"}
        for i in range(20)
    ]
    (folder / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return len(rows)


def _resources(db: Path, landing: Path, base_url: str) -> dict:
    return {
        "warehouse": WarehouseResource(root=str(db)),
        "landing": LandingResource(root=str(landing)),
        "embedding": EmbeddingResource(
            base_url=base_url,
            model=FAULT_MODEL,
            dimensions=64,
            api_key=dg.EnvVar("FAULTS_SGLANG_API_KEY"),
            max_retries=1,
            batch_size=8,
        ),
        "vector_cache": VectorCacheResource(
            redis_url=dg.EnvVar("FAULTS_REDIS_URL"), redis_password=dg.EnvVar("FAULTS_REDIS_PASSWORD")
        ),
        "clustering": ClusteringResource(),
    }


def _everything_dagster_kept(instance: dg.DagsterInstance, result) -> str:
    from dagster._serdes import serialize_value

    run = instance.get_run_by_id(result.run_id)
    parts = [serialize_value(run), serialize_value(instance.get_job_snapshot(run.job_snapshot_id))]
    parts += [serialize_value(e) for e in instance.all_logs(result.run_id)]
    for e in result.all_events:
        parts.append(serialize_value(e))
        if e.is_step_failure:
            parts.append(e.step_failure_data.error.to_string() if e.step_failure_data.error else "")
    return "\n".join(parts)


class _Recorder(logging.Handler):
    """Every log record of the runs, formatted with its traceback if it has one."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def secret_runs(tmp_path_factory):
    """A failing run (server down, wrong Redis password) and a succeeding one; what each left behind."""
    try:
        redis = RedisServer(password=REDIS_PASSWORD, binary=find_redis_server()).start()
    except RedisServerUnavailable as exc:
        pytest.skip(str(exc))
    tmp = tmp_path_factory.mktemp("security")
    landing, db = tmp / "landing", tmp / "lake"
    rows = _write_landing(landing)
    instance = dg.DagsterInstance.ephemeral()
    recorder, root = _Recorder(), logging.getLogger()
    old_level = root.level
    root.addHandler(recorder)
    root.setLevel(logging.DEBUG)
    out, err = io.StringIO(), io.StringIO()
    try:
        with (
            pytest.MonkeyPatch.context() as env,
            FaultServer() as srv,
            redirect_stdout(out),
            redirect_stderr(err),
        ):
            env.setenv("FAULTS_SGLANG_API_KEY", API_KEY)
            env.setenv("FAULTS_REDIS_URL", redis.url_without_password)
            env.setenv("FAULTS_REDIS_PASSWORD", WRONG_PASSWORD)
            srv.down()
            failed = materialize(_resources(db, landing, srv.base_url), DAY, instance=instance)
            srv.up()
            env.setenv("FAULTS_REDIS_URL", redis.url)  # the password inside the URL this time
            env.setenv("FAULTS_REDIS_PASSWORD", "")
            ok = materialize(_resources(db, landing, srv.base_url), DAY, instance=instance)
            auth = {r.headers.get("authorization") for r in srv.embedding_requests}
    finally:
        root.removeHandler(recorder)
        root.setLevel(old_level)
        redis.close()
    kept = _everything_dagster_kept(instance, failed) + _everything_dagster_kept(instance, ok)
    yield {
        "failed": failed,
        "ok": ok,
        "db": db,
        "rows": rows,
        "auth": auth,
        "kept": kept,
        "printed": out.getvalue() + err.getvalue() + "\n".join(recorder.lines),
    }


def test_the_secrets_were_really_used(secret_runs):
    assert secret_runs["auth"] == {f"Bearer {API_KEY}"}
    assert secret_runs["ok"].success
    assert_checks_pass(secret_runs["ok"])
    failures = step_failures(secret_runs["failed"])
    assert "cannot reach the embedding server" in failures["fresh_embeddings"]
    assert "Redis cache at redis://127.0.0.1" in secret_runs["printed"]  # the wrong password was tried
    # the search below reaches the places a leak would be: the job snapshot holds the resources'
    # config (the EnvVar names, not their values) and the metadata holds the redacted Redis URL
    assert "FAULTS_SGLANG_API_KEY" in secret_runs["kept"]
    assert "redis://:***@127.0.0.1" in secret_runs["kept"]


@pytest.mark.parametrize(
    "secret",
    [API_KEY, REDIS_PASSWORD, WRONG_PASSWORD],
    ids=["api-key", "redis-password", "wrong-redis-password"],
)
def test_no_secret_in_event_log_logs_metadata_failures_or_warehouse(secret_runs, secret):
    assert secret not in secret_runs["kept"]
    assert secret not in secret_runs["printed"]
    lake_files = [p for p in Path(secret_runs["db"]).rglob("*") if p.is_file()]
    assert lake_files  # the catalog and the Parquet files
    assert not [p for p in lake_files if secret.encode() in p.read_bytes()]


def test_hostile_texts_come_back_byte_identical(secret_runs, fault_figures):
    db = secret_runs["db"]
    texts = query(db, "SELECT comment_id, text FROM raw_comments WHERE partition_date = ?", [DAY]).to_pylist()
    by_id = {r["comment_id"]: r["text"] for r in texts}
    assert [by_id[f"h{i}"] for i in range(len(HOSTILE))] == HOSTILE
    assert by_id["x'); DROP TABLE clusters; --"] == "evil id"
    fault_figures.add("bad_input_cases", len(HOSTILE) + 1)
    account(fault_figures, db, DAY, secret_runs["rows"])  # every table still there, every row accounted
    clustered = query(db, "SELECT count(*) AS n FROM clusters WHERE comment_id LIKE 'h%'").column("n")
    assert clustered[0].as_py() == len(HOSTILE)


@pytest.mark.parametrize(
    "name",
    ["raw_comments; DROP TABLE raw_comments", "a b", "1abc", "", "x" * 64, "naïve", "quarantine--", None],
)
def test_identifiers_are_validated(tmp_path, name):
    with pytest.raises(ValueError, match="invalid SQL identifier"):
        validate_identifier(name)
    wh = Warehouse.embedded(tmp_path / "lake")
    with pytest.raises(ValueError):
        wh.count_rows(name)
    assert wh.count_rows("raw_comments") == 0  # the table survived
    wh.close()


def test_unknown_tables_and_columns_are_refused(tmp_path):
    import pyarrow as pa

    wh = Warehouse.embedded(tmp_path / "lake")
    with pytest.raises(ValueError, match="unknown table"):
        wh.replace_partition(DAY, {"pg_catalog_tables": pa.table({"x": [1]})})
    with pytest.raises(ValueError, match="invalid SQL identifier"):
        wh.replace_partition(
            DAY, {"raw_comments": ({"partition_date = partition_date OR 1": DAY}, pa.table({"x": [1]}))}
        )
    assert wh.count_rows("raw_comments") == 0
    wh.close()


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port``, from /proc/net/tcp{,6}."""
    found = set()
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":  # 0A = LISTEN
                found.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]) if len(addr) == 8 else addr)
    return found


def test_servers_listen_on_loopback_only(local_server, redis_server):
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs Linux /proc/net/tcp to see listening addresses")
    assert _listening_addresses(local_server.port) == {"127.0.0.1"}
    assert _listening_addresses(redis_server.port) == {"127.0.0.1"}
    with FaultServer() as srv:
        assert _listening_addresses(srv.port) == {"127.0.0.1"}


def test_defaults_bind_loopback():
    assert inspect.signature(LocalServerProcess).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(make_server).parameters["host"].default == "127.0.0.1"
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^UI_HOST \?= 127\.0\.0\.1$", makefile, re.M)
    ui_recipe = makefile.split("\nui:", 1)[1].split("\n\n", 1)[0]
    assert "-h $(UI_HOST)" in ui_recipe
    shipped = [*REPO.glob("embed_dagster/**/*.py"), REPO / "Makefile", *REPO.glob("*.yaml")]
    assert not [p.name for p in shipped if "0.0.0.0" in p.read_text()]


# A command or setting that listens on every interface: what users copy from the docs.
_ALL_INTERFACES = re.compile(
    r"(?:-h|--host|--bind|--listen|--ip|host:|bind:|HOST=|HOST \?=)\s*=?\s*[\"']?"
    r"(?:0\.0\.0\.0|::|\[::\]|\*)[\"'\s:]",
    re.I,
)


def _docs_and_config() -> list[Path]:
    """Markdown (README, docs/, deploy/), YAML, Makefiles and code the project ships."""
    skip = {".venv", "node_modules", ".git", ".dagster_home", "data"}
    files = []
    for pattern in ("**/*.md", "**/*.yaml", "**/*.yml", "**/Makefile", "**/*.py", "**/*.toml", "**/*.sh"):
        files += [p for p in REPO.glob(pattern) if not skip & set(p.relative_to(REPO).parts)]
    return [p for p in files if p.resolve() != Path(__file__).resolve()]  # this file shows bad examples


def test_docs_and_config_never_bind_all_interfaces():
    """Issue 15, D12: deploy/README.md told users to start the code server with -h 0.0.0.0."""
    files = _docs_and_config()
    assert any(p.suffix == ".md" for p in files) and any(p.name == "README.md" for p in files)
    hits = [
        f"{p.relative_to(REPO)}:{n}: {line.strip()}"
        for p in files
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
        if _ALL_INTERFACES.search(line + " ")
    ]
    assert hits == []


def test_all_interfaces_pattern_catches_the_usual_spellings():
    for line in (
        "dagster code-server start -h 0.0.0.0 -p 4000",
        "uvicorn app --host=0.0.0.0",
        "redis-server --bind 0.0.0.0",
        "  host: '0.0.0.0'",
        "UI_HOST ?= 0.0.0.0",
        "--host ::",
    ):
        assert _ALL_INTERFACES.search(line + " "), line
    for line in ("-h 127.0.0.1", '-h "$CODE_SERVER_BIND"', "never bind 0.0.0.0 in production"):
        assert not _ALL_INTERFACES.search(line + " "), line
