"""The design, checked: the core imports no Dagster, and the code location loads and validates."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "embed_dagster" / "core"
# What the core may not import: Dagster itself, and the layers above it (which import Dagster).
FORBIDDEN = (
    "dagster",
    "dagster_",
    "embed_dagster.defs",
    "embed_dagster.lib",
    "embed_dagster.dev",
    "embed_dagster.definitions",
)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level:
            # relative imports stay inside core only if they do not climb out of it
            depth = len(path.relative_to(CORE).parts) - 1
            if node.level > depth:
                found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


def test_core_imports_no_dagster():
    modules = sorted(CORE.rglob("*.py"))
    assert len(modules) > 10, "the core package moved: update this test"
    bad = [
        f"{m.relative_to(REPO)}:{line} imports {name}"
        for m in modules
        for line, name in _imports(m)
        if name.startswith(".") or name == "dagster" or name.startswith(FORBIDDEN)
    ]
    assert not bad, "the core must not import Dagster or the shell:\n" + "\n".join(bad)


def test_definitions_load_and_validate():
    import dagster as dg

    from embed_dagster.definitions import defs

    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {
        "raw_comments",
        "deduplicated_texts",
        "cached_embeddings",
        "fresh_embeddings",
        "clusters",
        "topics",
    } <= keys
    assert graph.asset_check_keys, "the partitioned checks did not load"
    assert {"warehouse", "landing", "embedding", "vector_cache", "clustering"} <= set(defs.resources)


def test_every_warehouse_table_and_view_is_in_the_lineage_with_its_producers():
    """Issue 14: the graph shows where each table's rows come from, with its column schema."""
    import dagster as dg

    from embed_dagster.core.warehouse.schema import TABLES, VIEWS
    from embed_dagster.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    missing = (set(TABLES) - {"model_keys"} | set(VIEWS)) - keys
    assert not missing, f"tables without an asset in the lineage: {sorted(missing)}"

    def parents(name: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(name)).parent_keys}

    assert parents("quarantine") == {"raw_comments", "deduplicated_texts", "fresh_embeddings"}
    assert parents("comment_texts") == {"deduplicated_texts"}
    assert parents("cluster_summaries") == {"clusters"}
    assert parents("raw_comments") == {"landing_comments"}
    assert graph.get(dg.AssetKey("landing_comments")).is_observable
    for name in ("quarantine", "comment_texts", "cluster_summaries", "embedding_store"):
        node = graph.get(dg.AssetKey(name))
        schema = node.metadata["dagster/column_schema"]
        assert [c.name for c in schema.columns] == [c.name for c in TABLES[name].columns]
        assert node.description


@pytest.mark.integration
def test_dg_check_defs():
    """`dg check defs`, as CI runs it, from the project root declared in pyproject's [tool.dg]."""
    dg_bin = Path(sys.executable).with_name("dg")
    result = subprocess.run(
        [str(dg_bin), "check", "defs"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
