"""Conventions every asset of the lineage shares: one partitioning, one group, one owner."""

from embed_dagster.lib.partitions import daily_partitions

OWNERS = ["team:comment-insights"]
GROUP = "comment_topics"
EMBEDDING_POOL = "embedding_server"

COMMON = dict(partitions_def=daily_partitions, group_name=GROUP, owners=OWNERS)
