"""Resources build the core objects from their own fields and the one Settings object."""

from __future__ import annotations

import dagster as dg
import pytest

from embed_dagster.core.clustering.recipe import ClusterConfig
from embed_dagster.defs.resources import ClusteringResource, build_resources
from embed_dagster.settings import load_settings


def test_clustering_resource_builds_the_core_config_from_its_fields():
    assert ClusteringResource().config() == ClusterConfig()
    cfg = ClusteringResource(min_cluster_size=7, reduction="none", sample_size=500).config()
    assert (cfg.min_cluster_size, cfg.reduction, cfg.sample_size) == (7, "none", 500)
    assert ClusteringResource(reassign_noise=False).config().outlier_threshold is None


def test_resources_come_from_settings_and_bind_secrets_as_envvars(monkeypatch):
    monkeypatch.setenv("EMBED_DAGSTER_DIMENSIONS", "256")
    monkeypatch.setenv("SGLANG_API_KEY", "sk-not-a-real-key")
    monkeypatch.setenv("REDIS_URL", "redis://user:pw@127.0.0.1:1/0")
    monkeypatch.setenv("EMBED_DAGSTER_LANDING", "elsewhere/landing")
    resources = build_resources(load_settings())
    assert resources["embedding"].dimensions == 256
    assert resources["landing"].root == "elsewhere/landing"
    # the secret values are not in the resource's config, only a reference to the variable
    config = resources["embedding"]._get_non_default_public_field_values()
    assert isinstance(config["api_key"], dg.EnvVar) and config["api_key"].env_var_name == "SGLANG_API_KEY"
    cache = resources["vector_cache"]._get_non_default_public_field_values()
    assert isinstance(cache["redis_url"], dg.EnvVar)
    assert "sk-not-a-real-key" not in repr(load_settings())


def test_a_catalog_connection_string_is_bound_as_an_envvar(monkeypatch):
    """A password inside EMBED_DAGSTER_LAKE_CATALOG was bound as a plain value: Dagster stored it in
    the job snapshot and the UI showed it in the resource config (stop 25)."""
    monkeypatch.setenv("EMBED_DAGSTER_LAKE_CATALOG", "postgres:postgresql://lake:Pw-SECRET@127.0.0.1/lake")
    warehouse = build_resources(load_settings())["warehouse"]
    config = warehouse._get_non_default_public_field_values()
    assert isinstance(config["catalog"], dg.EnvVar)
    assert config["catalog"].env_var_name == "EMBED_DAGSTER_LAKE_CATALOG"
    assert "Pw-SECRET" not in repr(config)
    assert build_resources(load_settings(), bind_secrets=False)["warehouse"].catalog.endswith("/lake")
    monkeypatch.delenv("EMBED_DAGSTER_LAKE_CATALOG")
    assert build_resources(load_settings())["warehouse"].catalog is None  # the embedded default


def test_the_clustering_resource_offers_no_topic_setting_that_nothing_reads():
    """Its topic_threshold (0.8, "centroid cosine needed to continue a topic") was read by nothing:
    topics take EMBED_DAGSTER_TOPIC_MATCH (0.72). A knob that does nothing misleads (stop 24)."""
    from embed_dagster.defs.resources import ClusteringResource

    assert not [f for f in ClusteringResource.model_fields if f.startswith("topic")]


def test_the_cut_length_is_part_of_the_model_key_and_the_default_keeps_old_keys():
    """max_chars changes what a long text is embedded as, yet two settings shared one key, so the
    cache served vectors of texts cut at the old length (stop-24 adversarial pass)."""
    from embed_dagster.core.model_key import ModelKey
    from embed_dagster.defs.resources import EmbeddingResource

    default, longer = EmbeddingResource(), EmbeddingResource(max_chars=8000)
    assert default.model_key().id != longer.model_key().id
    # keys made before the field existed (no max_chars) are the default's: caches stay valid
    key = default.model_key()
    assert key.id == ModelKey(key.model, key.dimensions, key.instruction, key.normalization_version).id


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EMBED_DAGSTER_LAKE_RETENTION_DAYS", "-5"),  # was taken, and expired every snapshot
        ("EMBED_DAGSTER_LAKE_RETENTION_DAYS", "inf"),
        ("EMBED_DAGSTER_LAKE_DELETE_AFTER_DAYS", "nan"),
        ("EMBED_DAGSTER_LANDING_QUIET_S", "inf"),
        ("EMBED_DAGSTER_LAKE_COMMIT_TIMEOUT_S", "inf"),
        ("EMBED_DAGSTER_TIMEZONE", "Mars/Olympus"),  # failed later, without naming the variable
    ],
)
def test_settings_refuse_values_that_would_do_harm_and_name_the_variable(monkeypatch, variable, value):
    from pydantic import ValidationError

    from embed_dagster.settings import load_settings

    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=variable):
        load_settings()


def test_an_empty_maintenance_cron_means_the_default(monkeypatch):
    """The module read the variable itself: empty, the schedule failed to build at import."""
    import importlib

    import embed_dagster.defs.maintenance as maintenance

    monkeypatch.setenv("EMBED_DAGSTER_MAINTENANCE_CRON", "")
    try:
        assert importlib.reload(maintenance).lake_maintenance_schedule.cron_schedule == "30 3 * * 0"
    finally:
        monkeypatch.delenv("EMBED_DAGSTER_MAINTENANCE_CRON")
        importlib.reload(maintenance)
