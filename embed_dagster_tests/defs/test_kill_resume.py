"""SIGKILL, the fault nothing can catch: mid-embedding and mid-DuckDB-write.

A run is a process of its own here (``faults_run``), killed with SIGKILL while it embeds (the
embedding server is the test's FaultServer, so the test sees every request) or while a child
process replaces a big partition. Afterwards the DuckDB file must open, a partition holds the old
rows or the new ones (never a mix), and a re-run finishes without re-embedding what was saved.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import date

import dagster as dg
import pytest

from embed_dagster.core.warehouse.lake import Warehouse
from embed_dagster.defs.checks import CHECKS
from embed_dagster.defs.embeddings.assets import fresh_embeddings
from embed_dagster_tests.support.defs import ASSETS
from embed_dagster_tests.support.fault_server import Fault, FaultServer
from embed_dagster_tests.support.faults_helpers import (
    DIM,
    REPO,
    account,
    assert_checks_pass,
    asset_metadata,
    make_resources,
    model_key_id,
    query,
    read_only_scalar,
    run_config,
    scalar,
    spawn,
    step_failures,
    wait_for_saved_vectors,
    write_day,
    wrong_vectors,
)
from embed_dagster_tests.support.faults_writer import big_partition

pytestmark = pytest.mark.faults

DAY = date(2025, 5, 1)


def test_sigkill_mid_embedding_then_resume_sends_only_the_rest(tmp_path, fault_figures):
    landing, db = tmp_path / "landing", tmp_path / "lake"
    rows = write_day(landing, DAY, 220, distinct=200)
    with FaultServer() as srv:
        srv.latency_s = 0.1
        # 40 texts/s: the first checkpoint (after about 2 s) holds well under the 200 texts
        proc = spawn(
            run_config(
                db, landing, srv.base_url, [DAY.isoformat()], batch_size=4, max_concurrency=1, timeout_s=60.0
            ),
            tmp_path / "run.log",
        )
        try:
            # a checkpoint lands about every 2 s; wait for the first, then freeze the server so the
            # run is certainly still embedding when it dies
            assert wait_for_saved_vectors(proc, db), (tmp_path / "run.log").read_text()[-3000:]
            srv.fail_next(Fault.stall(30.0), times=10_000)
            time.sleep(0.3)
            assert proc.poll() is None, "the run finished before it could be killed"
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        fault_figures.add("faults_injected")
        assert proc.returncode == -signal.SIGKILL

        # the file opens (read-only first: no repair needed to read it) and holds what was saved
        saved = read_only_scalar(db, "SELECT count(*) FROM embedding_store", timeout_s=10)
        assert saved is not None and 0 < saved < 200
        saved_texts = set(
            query(db, "SELECT d.text FROM deduplicated_texts d JOIN embedding_store s USING (text_hash)")
            .column("text")
            .to_pylist()
        )
        assert len(saved_texts) == saved

        # re-execute from the failed step, as the UI's "re-execute from failure" does
        srv.reset()
        resources = make_resources(db, landing, srv.base_url, batch_size=8, max_concurrency=2)
        result = dg.materialize(
            [*ASSETS, *CHECKS],
            partition_key=DAY.isoformat(),
            resources=resources,
            selection=dg.AssetSelection.assets(fresh_embeddings).downstream(),
            raise_on_error=False,
        )
        assert result.success, step_failures(result)
        assert_checks_pass(result)
        sent_again = [t for r in srv.embedding_requests for t in r.inputs]
    meta = asset_metadata(result, "fresh_embeddings")
    reembedded = len(set(sent_again) & saved_texts)
    fault_figures.add("vectors_reembedded_after_resume", reembedded)
    assert reembedded == 0
    assert len(sent_again) == len(set(sent_again)) == 200 - saved
    assert meta["resumed_from_checkpoint"] == saved and meta["texts_sent"] == 200 - saved
    # the killed run's vectors were stored by this day: they are fresh rows like the ones sent now
    assert scalar(db, "SELECT count(*) AS n FROM fresh_embeddings")["n"] == 200
    assert scalar(db, "SELECT count(*) AS n FROM cached_embeddings")["n"] == 0
    account(fault_figures, db, DAY, rows)
    assert wrong_vectors(db, DAY, model_key_id(resources), DIM) == 0
    fault_figures.add("partitions_recovered")


def _partition_state(db) -> tuple[int, set[str]]:
    rows = query(
        db,
        "SELECT split_part(comment_id, '-', 1) AS tag, count(*) AS n FROM raw_comments "
        "WHERE partition_date = DATE '2025-05-02' GROUP BY 1",
    ).to_pylist()
    return sum(r["n"] for r in rows), {r["tag"] for r in rows}


def test_sigkill_mid_partition_write_leaves_old_or_new_rows_never_a_mix(tmp_path, fault_figures):
    db = tmp_path / "lake"
    n_old, n_new = 80_000, 90_000
    wh = Warehouse.embedded(db)
    wh.replace_partition(date(2025, 5, 2), {"raw_comments": big_partition("old", n_old)})
    wh.replace_partition(date(2025, 5, 3), {"raw_comments": big_partition("other", 10)})
    started = time.monotonic()
    wh.replace_partition(date(2025, 5, 2), {"raw_comments": big_partition("old", n_old)})
    write_s = time.monotonic() - started
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # kills spread over the write (timed here, checkpoint included), jittered: the early ones land
    # before the commit, the late ones between the commit and the WAL checkpoint (WAL replay path)
    rng = random.Random(20250502)
    delays = [f * write_s * rng.uniform(0.8, 1.2) for f in (0.02, 0.1, 0.3, 0.8)]
    rng.shuffle(delays)
    expected_tag, expected_n = "old", n_old
    outcomes = []
    for attempt, delay in enumerate(delays):
        tag = f"new{attempt}"
        child = subprocess.Popen(
            [sys.executable, "-m", "embed_dagster_tests.support.faults_writer", str(db), tag, str(n_new)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert child.stdout.readline().strip() == "writing"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read()
        child.wait()
        fault_figures.add("faults_injected")
        committed = "done" in rest
        total, tags = _partition_state(db)
        assert len(tags) == 1, f"a mix of {tags} after a kill"
        (seen,) = tags
        if seen == tag:
            expected_tag, expected_n = tag, n_new  # committed before the kill landed
        assert (seen, total) == (expected_tag, expected_n)
        assert committed <= (seen == tag)  # a finished write is never lost
        outcomes.append("new" if seen == tag else "old")
    assert "old" in outcomes, f"no kill landed mid-write ({outcomes}); the write took {write_s:.2f} s"
    assert (
        scalar(db, "SELECT count(*) AS n FROM raw_comments WHERE partition_date = DATE '2025-05-03'")["n"]
        == 10
    )
    final = subprocess.run(
        [sys.executable, "-m", "embed_dagster_tests.support.faults_writer", str(db), "final", "1000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert final.returncode == 0 and "done" in final.stdout, final.stdout + final.stderr
    assert _partition_state(db) == (1000, {"final"})
    fault_figures.add("partitions_recovered")
