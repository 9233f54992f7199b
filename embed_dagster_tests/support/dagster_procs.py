"""Dagster run the way a user runs it, and talked to the way the UI talks to it.

`dagster dev` starts a webserver, a daemon and a code server, and every run it launches starts a
worker process (plus one process per step with the multiprocess executor). Killing only the parent
leaves children behind that hold the SQLite instance and the DuckDB file open, so:

* the whole tree runs in its own session and process group (``start_new_session=True``), and
  teardown signals the group;
* every process carries a marker environment variable, so teardown can prove that nothing it
  started survived (and kill, by pid, anything that left the group).

The GraphQL client is plain ``urllib``: the same HTTP endpoint the UI uses, no extra dependency.

PYTEST_DONT_REWRITE: test modules import this plugin before pytest registers it; it asserts nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from embed_dagster.dev.local_server import MODEL_NAME
from embed_dagster.dev.sample_data import generate_landing
from embed_dagster_tests.support.net import free_port

REPO = Path(__file__).resolve().parents[2]
MARKER_VAR = "EMBED_DAGSTER_TEST_PROCS"
FINISHED_BACKFILL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
FINISHED_RUN = {"SUCCESS", "FAILURE", "CANCELED"}


def dagster_bin(name: str = "dagster") -> str:
    """The venv's console script, so a test never picks up another Dagster from PATH."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"`{name}` is not installed next to {sys.executable}")
    return found


def pids_with_marker(value: str) -> list[int]:
    """Processes whose environment carries MARKER_VAR=value (descendants inherit it)."""
    needle = f"{MARKER_VAR}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # exited meanwhile, or a kernel thread
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return sorted(found)


def cmdline(pid: int) -> str:
    """A process's command line, arguments joined by spaces; raises OSError once it has exited."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


class GraphQLError(RuntimeError):
    pass


class GraphQL:
    """POST {query, variables} to /graphql, as the UI does; GraphQL errors raise."""

    def __init__(self, base_url: str):
        self.url = base_url.rstrip("/") + "/graphql"

    def __call__(self, query: str, variables: dict | None = None, timeout_s: float = 120) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            payload = json.load(resp)
        if payload.get("errors"):
            raise GraphQLError(json.dumps(payload["errors"], indent=1)[:4000])
        return payload["data"]


def _default_sigint() -> None:
    """In the child, before exec: SIGINT back to its default disposition.

    A process started in the background by a script (``cmd &`` without job control, as CI runners
    and nohup'd shells do) inherits SIGINT *ignored*, and `dagster dev` maps SIGTERM to whatever
    SIGINT does (``setup_interrupt_handlers``), so it then ignores SIGTERM too: teardown waited
    its whole grace period and SIGKILLed it, and a test-ui teardown once failed on the leftover.
    With the default restored, Python installs its KeyboardInterrupt handler and SIGTERM shuts
    `dagster dev` and its children down in about 2 s, wherever the tests were started from.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """This process ignoring SIGINT for a moment, as a background job does: what a child started
    meanwhile inherits. A no-op outside the main thread (signals can only be set there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class DagsterDev:
    """`dagster dev` on a free loopback port with its own DAGSTER_HOME; a context manager."""

    def __init__(
        self,
        home: Path,
        env: dict[str, str],
        *,
        cwd: Path,
        workspace: Path = REPO / "workspace.yaml",
        instance_yaml: Path = REPO / "dagster.yaml",
        startup_timeout_s: float = 240,
    ):
        self.home, self.cwd, self.workspace = Path(home), Path(cwd), workspace
        self.instance_yaml, self.startup_timeout_s = instance_yaml, startup_timeout_s
        self.marker = uuid.uuid4().hex
        self.env = {**env, "DAGSTER_HOME": str(self.home), MARKER_VAR: self.marker}
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.log_path = self.home / "dagster-dev.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def gql(self) -> GraphQL:
        return GraphQL(self.base_url)

    def start(self) -> DagsterDev:
        self.home.mkdir(parents=True, exist_ok=True)
        self.cwd.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.instance_yaml, self.home / "dagster.yaml")
        self.port = free_port()
        cmd = [dagster_bin(), "dev", "-w", str(self.workspace), "-h", "127.0.0.1", "-p", str(self.port)]
        # Started as a background job would be (SIGINT ignored, inherited): what _default_sigint
        # undoes, so every test of `dagster dev` also checks that SIGTERM stops it.
        with open(self.log_path, "wb") as log, sigint_ignored():
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_default_sigint,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _wait_ready(self) -> None:
        """Webserver answers, the code location is loaded, and the daemons we need beat."""
        deadline = time.monotonic() + self.startup_timeout_s
        stage = "webserver /server_info"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if stage == "webserver /server_info":
                    with urllib.request.urlopen(self.base_url + "/server_info", timeout=5) as resp:
                        if resp.status == 200:
                            stage = "code location"
                if stage == "code location" and self._location_loaded():
                    stage = "daemon"
                if stage == "daemon" and self._daemons_healthy():
                    return
            except (urllib.error.URLError, OSError, GraphQLError):
                pass
            time.sleep(0.5)
        raise RuntimeError(
            f"dagster dev not ready after {self.startup_timeout_s:.0f}s (waiting for "
            f"{stage}):\n{self.log_tail()}"
        )

    def _location_loaded(self) -> bool:
        data = self.gql(
            """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
                 locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
        )
        entries = data["workspaceOrError"]["locationEntries"]
        for e in entries:
            if e["locationOrLoadError"] and e["locationOrLoadError"]["__typename"] == "PythonError":
                raise RuntimeError(
                    f"code location {e['name']} failed to load: {e['locationOrLoadError']['message']}"
                )
        return bool(entries) and all(
            e["loadStatus"] == "LOADED" and e["locationOrLoadError"] for e in entries
        )

    def _daemons_healthy(self, needed: Iterable[str] = ("BACKFILL", "QUEUED_RUN_COORDINATOR")) -> bool:
        data = self.gql("{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }")
        statuses = data["instance"]["daemonHealth"]["allDaemonStatuses"]
        healthy = {d["daemonType"] for d in statuses if d["healthy"]}
        return set(needed) <= healthy

    def leftovers(self) -> list[int]:
        return pids_with_marker(self.marker)

    def run_worker_pid(self, run_id: str) -> int | None:
        """The process executing a run: the parent of the `tail -F` that follows its compute logs."""
        for pid in self.leftovers():
            try:
                cmd = cmdline(pid)
                parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if cmd.startswith("tail ") and f"/{run_id}/" in cmd:
                return parent
        return None

    def stop(self, grace_s: float = 30) -> list[int]:
        """SIGTERM the process group, wait, SIGKILL stragglers by pid; returns what had to be killed."""
        killed: list[int] = []
        if self.proc is None:
            return killed
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            self.proc.poll()
            if not self.leftovers():
                break
            time.sleep(0.2)
        for pid in self.leftovers():
            try:
                cmd = cmdline(pid)
            except OSError:
                cmd = "?"
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                # shown with a failing test: which process outlived SIGTERM by grace_s
                print(f"dagster dev stop: SIGKILL {pid} after {grace_s:g} s: {cmd[:300]}", file=sys.stderr)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        # SIGKILL is delivered asynchronously: a killed process can still show its environment for a
        # moment, so wait until the killed ones are gone (a process that is not is a real leftover)
        deadline = time.monotonic() + 10
        while killed and set(killed) & set(self.leftovers()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return killed

    def __enter__(self) -> DagsterDev:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ------------------------------------------------------------------ GraphQL helpers


def repository_selector(gql: GraphQL) -> dict:
    data = gql("{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }")
    nodes = data["repositoriesOrError"]["nodes"]
    assert len(nodes) == 1, nodes
    return {"repositoryName": nodes[0]["name"], "repositoryLocationName": nodes[0]["location"]["name"]}


LAUNCH_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
    ... on PythonError { message stack }
  }
}"""


def launch_backfill(gql: GraphQL, params: dict) -> str:
    result = gql(LAUNCH_BACKFILL, {"backfillParams": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise GraphQLError(f"backfill not launched: {json.dumps(result)[:3000]}")
    return result["backfillId"]


def asset_backfill_params(asset_keys: Iterable[str], partitions: Iterable[str], title: str) -> dict:
    """What the asset graph's "Materialize" → partitions dialog sends (a pure asset backfill)."""
    return {
        "assetSelection": [{"path": [k]} for k in asset_keys],
        "partitionNames": list(partitions),
        "fromFailure": False,
        "title": title,
        "tags": [{"key": "dagster/from_ui", "value": "true"}],
    }


def lineage_keys(gql: GraphQL) -> list[str]:
    """The assets "Materialize all" on the lineage's group selects: only what can be materialized
    (the landing folder is observed; the side tables and views are written by their producers),
    not the unpartitioned lake_maintenance asset of its own group."""
    nodes = gql("{ assetNodes { assetKey { path } groupName isMaterializable } }")["assetNodes"]
    lineage = [n for n in nodes if n["groupName"] == "comment_topics" and n["isMaterializable"]]
    return sorted(n["assetKey"]["path"][0] for n in lineage)


def job_backfill_params(
    repo: dict, job: str, asset_keys: Iterable[str], partitions: Iterable[str], title: str
) -> dict:
    """What the same dialog sends when opened from a (non-hidden) asset job's page."""
    return {
        **asset_backfill_params(asset_keys, partitions, title),
        "selector": {"partitionSetName": f"{job}_partition_set", "repositorySelector": repo},
    }


BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      id status isAssetBackfill numPartitions partitionNames
      error { message stack }
      runs { runId status tags { key value } }
    }
    ... on PythonError { message }
  }
}"""


def backfill_status(gql: GraphQL, backfill_id: str) -> dict:
    result = gql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
    if result["__typename"] != "PartitionBackfill":
        raise GraphQLError(json.dumps(result)[:3000])
    return result


def wait_for_backfills(gql: GraphQL, ids: Iterable[str], timeout_s: float) -> dict[str, dict]:
    """Poll until every backfill and every run it launched has finished."""
    ids = list(ids)
    deadline = time.monotonic() + timeout_s
    last: dict[str, dict] = {}
    while time.monotonic() < deadline:
        last = {i: backfill_status(gql, i) for i in ids}
        if all(
            b["status"] in FINISHED_BACKFILL and all(r["status"] in FINISHED_RUN for r in b["runs"])
            for b in last.values()
        ):
            return last
        time.sleep(2)
    summary = {i: (b["status"], [r["status"] for r in b["runs"]]) for i, b in last.items()}
    raise TimeoutError(f"backfills not finished after {timeout_s:.0f}s: {summary}")


RUN_DETAILS = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      runId status startTime endTime jobName
      tags { key value }
      assetSelection { path }
      stepStats { stepKey status startTime endTime }
    }
  }
}"""


def run_details(gql: GraphQL, run_id: str) -> dict:
    result = gql(RUN_DETAILS, {"runId": run_id})["runOrError"]
    if result["__typename"] != "Run":
        raise GraphQLError(json.dumps(result)[:2000])
    return result


RUN_FAILURES = """
query Logs($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor, limit: 1000) {
    __typename
    ... on EventConnection { cursor hasMore events {
      __typename ... on MessageEvent { message level }
      ... on ExecutionStepFailureEvent { error { message cause { message } } }
    } }
  }
}"""


def run_messages(gql: GraphQL, run_id: str) -> list[dict]:
    """Every event message of a run (the run's log page), to look for what failed and why."""
    messages, cursor = [], None
    while True:
        page = gql(RUN_FAILURES, {"runId": run_id, "cursor": cursor})["logsForRun"]
        if page["__typename"] != "EventConnection":
            raise GraphQLError(json.dumps(page)[:2000])
        messages += [e for e in page["events"] if "message" in e]
        cursor = page["cursor"]
        if not page["hasMore"]:
            return messages


def failure_report(gql: GraphQL, backfill: dict) -> str:
    """Why a backfill did not succeed, for an assertion message: the backfill's own error, and the
    ERROR and WARNING messages of each run that did not succeed (a CI log shows nothing else)."""
    lines = [f"backfill {backfill['id']}: {backfill['status']}"]
    if backfill.get("error"):
        lines.append(f"  error: {backfill['error']['message'][:2000]}")
    for run in backfill["runs"]:
        if run["status"] == "SUCCESS":
            continue
        lines.append(f"  run {run['runId']}: {run['status']}")
        for event in run_messages(gql, run["runId"]):
            if event.get("level") in ("ERROR", "CRITICAL", "WARNING"):
                lines.append(f"    {event['level']}: {event['message'][:1500]}")
            error = event.get("error") or {}
            for part in (error, error.get("cause") or {}):
                if part.get("message"):
                    lines.append(f"      {part['message'][:3000]}")
    return "\n".join(lines)


METADATA_FIELDS = """
  __typename label
  ... on IntMetadataEntry { intValue }
  ... on FloatMetadataEntry { floatValue }
  ... on TextMetadataEntry { text }
  ... on MarkdownMetadataEntry { mdStr }
  ... on JsonMetadataEntry { jsonString }
  ... on PathMetadataEntry { path }
  ... on BoolMetadataEntry { boolValue }
  ... on TableSchemaMetadataEntry { schema { columns { name type } } }
"""


def metadata_dict(entries: list[dict]) -> dict:
    """GraphQL metadata entries → {label: python value}."""
    out = {}
    for e in entries:
        kind = e["__typename"]
        if kind == "IntMetadataEntry":
            out[e["label"]] = e["intValue"]
        elif kind == "FloatMetadataEntry":
            out[e["label"]] = e["floatValue"]
        elif kind == "TextMetadataEntry":
            out[e["label"]] = e["text"]
        elif kind == "MarkdownMetadataEntry":
            out[e["label"]] = e["mdStr"]
        elif kind == "JsonMetadataEntry":
            out[e["label"]] = json.loads(e["jsonString"])
        elif kind == "PathMetadataEntry":
            out[e["label"]] = e["path"]
        elif kind == "BoolMetadataEntry":
            out[e["label"]] = e["boolValue"]
        elif kind == "TableSchemaMetadataEntry":
            out[e["label"]] = [(c["name"], c["type"]) for c in e["schema"]["columns"]]
        else:
            out[e["label"]] = kind
    return out


IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


def in_process_run_config(gql: GraphQL, repo: dict, job: str = "__ASSET_JOB") -> dict | None:
    """Run config choosing the in-process executor, if the job's executor takes that choice.

    With Dagster's default executor every step is a fresh Python process that imports the code
    location again (several seconds on 2 cores); one process per run is much faster for this
    lineage, whose steps run one after the other anyway. When the code location already defaults
    to the in-process executor, no run config is needed (and this one would be invalid).
    """
    selector = {"pipelineName": job, **repo}
    data = gql(
        """query Valid($p: PipelineSelector!, $c: RunConfigData) {
             isPipelineConfigValid(pipeline: $p, mode: "default", runConfigData: $c) { __typename } }""",
        {"p": selector, "c": IN_PROCESS},
    )
    valid = data["isPipelineConfigValid"]["__typename"] == "PipelineConfigValidationValid"
    return IN_PROCESS if valid else None


# ------------------------------------------------------------------ pytest fixtures
# This module is a pytest plugin (test modules name it in `pytest_plugins`), so the server and
# the backfills below are started once per session and shared by test_backfill and test_webserver.

FIRST_DAY = date(2025, 1, 1)
BACKFILL_DAYS = [FIRST_DAY + timedelta(days=i) for i in range(7)]  # the asset graph's backfill
# Days per backfill run in the ops server (EMBED_DAGSTER_DAYS_PER_RUN): 7 days make runs of 3, 3 and 1,
# so the chunked policy (multi_run) is what the daemon runs here; the default (one run for the whole
# range) is what `dagster asset materialize --partition-range` runs (test_cli).
DAYS_PER_RUN = 3
JOB_DAYS = [FIRST_DAY + timedelta(days=i) for i in range(7, 9)]  # the job page's backfill
# 150 rows a day (about 110 distinct texts): with 60-100 rows the default recipe finds no cluster
# at all on some days (all noise), and clusters/topics would be compared empty.
PER_DAY = 150
SECRET = "sk-embed-dagster-test-" + uuid.uuid4().hex  # must never show up in metadata or logs
BACKFILL_TIMEOUT_S = float(os.environ.get("EMBED_DAGSTER_BACKFILL_TIMEOUT_S", 1200))


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without the project's settings, plus ``overrides``."""
    prefixes = ("SGLANG_", "REDIS_", "EMBED_DAGSTER_", "DAGSTER_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(overrides)
    return env


@pytest.fixture(scope="session")
def ops_server(tmp_path_factory, local_server):
    """`dagster dev` with the repo's dagster.yaml, a temp warehouse and landing folder, and runs
    pointed at the session's one bundled embedding server (no model load per run)."""
    root = tmp_path_factory.mktemp("ops")
    landing = root / "landing"
    generate_landing(landing, FIRST_DAY, len(BACKFILL_DAYS) + len(JOB_DAYS), per_day=PER_DAY, seed=17)
    env = clean_env(
        SGLANG_BASE_URL=local_server.base_url,
        SGLANG_MODEL=MODEL_NAME,
        SGLANG_API_KEY=SECRET,
        EMBED_DAGSTER_LAKE=str(root / "lake"),
        EMBED_DAGSTER_LANDING=str(landing),
        EMBED_DAGSTER_DAYS_PER_RUN=str(DAYS_PER_RUN),
    )
    dev = DagsterDev(root / "dagster_home", env, cwd=root / "cwd")
    dev.start()
    try:
        yield SimpleNamespace(
            dev=dev,
            gql=dev.gql,
            root=root,
            landing=landing,
            db=env["EMBED_DAGSTER_LAKE"],
            repo=repository_selector(dev.gql),
        )
    finally:
        dev.stop()
        leftovers = dev.leftovers()
        assert not leftovers, f"processes survived dagster dev's teardown: {leftovers}"


def sequential_reference(landing: Path, db: Path, base_url: str, days: list[date]) -> dict[date, bool]:
    """The same days materialized one after the other, in this process, into another warehouse."""

    from embed_dagster_tests.support.pipeline import materialize, pipeline_resources

    resources = pipeline_resources(db, landing, base_url=base_url, model=MODEL_NAME)
    return {day: materialize(resources, day).success for day in days}


@pytest.fixture(scope="session")
def ops_backfills(ops_server, local_server):
    """Both UI backfill paths launched at once, then waited for; meanwhile the sequential reference.

    * days 1–7: the asset graph's "Materialize" → partitions dialog, a pure asset backfill (it
      respects `topics`' dependency on its previous day). Runs use the in-process executor when the
      job offers the choice (see in_process_run_config).
    * days 8–9: the same dialog opened from the job page: a job backfill (one run per partition).
    """
    gql = ops_server.gql
    # The lineage's assets (group comment_topics), as "Materialize all" on that group does: not the
    # unpartitioned lake_maintenance asset, which has its own job and schedule.
    keys = lineage_keys(gql)
    started = time.monotonic()
    asset_params = asset_backfill_params(keys, [d.isoformat() for d in BACKFILL_DAYS], "7-day backfill")
    run_config = in_process_run_config(gql, ops_server.repo)
    if run_config:
        asset_params["runConfigData"] = json.dumps(run_config)
    asset_id = launch_backfill(gql, asset_params)
    job_params = job_backfill_params(
        ops_server.repo,
        "embed_comments_job",
        keys,
        [d.isoformat() for d in JOB_DAYS],
        "2-day backfill from the job page",
    )
    job_run_config = in_process_run_config(gql, ops_server.repo, "embed_comments_job")
    if job_run_config:
        job_params["runConfigData"] = json.dumps(job_run_config)
    job_id = launch_backfill(gql, job_params)
    reference_db = ops_server.root / "sequential-lake"
    reference = sequential_reference(ops_server.landing, reference_db, local_server.base_url, BACKFILL_DAYS)
    finished = wait_for_backfills(gql, [asset_id, job_id], BACKFILL_TIMEOUT_S)
    return SimpleNamespace(
        asset=finished[asset_id],
        job=finished[job_id],
        seconds=time.monotonic() - started,
        reference_db=str(reference_db),
        reference_ok=reference,
        keys=keys,
        run_config=run_config,
    )
