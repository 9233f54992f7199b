"""Conventions every asset of the lineage shares: one partitioning, one backfill policy, one group,
one owner."""

from embed_dagster.lib.partitions import backfill_policy, daily_partitions

OWNERS = ["team:comment-insights"]
GROUP = "comment_topics"
EMBEDDING_POOL = "embedding_server"

COMMON = dict(
    partitions_def=daily_partitions, backfill_policy=backfill_policy(), group_name=GROUP, owners=OWNERS
)
