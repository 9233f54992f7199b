"""The Dagster UI in headless Chromium, against `dagster dev` holding one materialized day.

Run with `make test-ui` (Debian's Chromium plus the `playwright` package; no browser download).
"""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import pytest

from embed_dagster.dev.local_server import MODEL_NAME
from embed_dagster.dev.sample_data import generate_landing
from embed_dagster_tests.support.dagster_procs import REPO, DagsterDev, clean_env

pytestmark = pytest.mark.ui

ASSETS = ["raw_comments", "deduplicated_texts", "cached_embeddings", "fresh_embeddings", "clusters", "topics"]
DAY = date(2025, 1, 1)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 90_000  # first page loads compile the UI's GraphQL queries; slow on 2 busy cores


def _chromium() -> str | None:
    for candidate in (
        os.environ.get("EMBED_DAGSTER_CHROMIUM"),
        shutil.which("chromium"),
        "/usr/lib/chromium/chromium",
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[ui]' (make test-ui does it)")
    executable = _chromium()
    if executable is None:
        pytest.skip("no Chromium found: apt-get install chromium, or set EMBED_DAGSTER_CHROMIUM")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory, local_server):
    """One day materialized into the instance (in this process), then `dagster dev` to show it."""
    import dagster as dg

    from embed_dagster_tests.support.pipeline import materialize, pipeline_resources

    root = tmp_path_factory.mktemp("ui")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    generate_landing(root / "landing", DAY, 1, per_day=150, seed=17)  # a day with several clusters
    resources = pipeline_resources(
        root / "lake", root / "landing", base_url=local_server.base_url, model=MODEL_NAME
    )
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = materialize(resources, DAY, instance=instance)
    assert result.success
    env = clean_env(
        EMBED_DAGSTER_LAKE=str(root / "lake"),
        EMBED_DAGSTER_LANDING=str(root / "landing"),
        SGLANG_BASE_URL=local_server.base_url,
        SGLANG_MODEL=MODEL_NAME,
    )
    from embed_dagster_tests.support.lake import query_arrow

    labels = (
        query_arrow(
            str(root / "lake"),
            "SELECT label FROM cluster_summaries WHERE partition_date = ? AND cluster_id >= 0 "
            "ORDER BY size DESC",
            [DAY],
        )
        .column("label")
        .to_pylist()
    )
    assert labels, "the UI test needs a day with at least one cluster"
    with DagsterDev(home, env, cwd=root / "cwd") as dev:
        yield dev, root, labels[0]
    assert dev.leftovers() == []


def _open(page, url: str) -> None:
    page.goto(url, timeout=TIMEOUT_MS)
    # A first visit may show Dagster's "Join the community" dialog over the page.
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=5000)
        skip.click()
    except Exception:  # noqa: BLE001 - no dialog this time
        pass


def test_asset_graph_shows_the_lineage_and_clusters_metadata(ui_server, browser):
    from playwright.sync_api import expect

    dev, root, top_label = ui_server
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)

    _open(page, f"{dev.base_url}/locations/embed_dagster/asset-groups/comment_topics/lineage")
    for name in ASSETS:
        expect(page.get_by_text(name, exact=True).first).to_be_visible()
    expect(page.get_by_role("button", name="Materialize all")).to_be_visible()
    page.screenshot(path=str(root / "ui-asset-graph.png"))

    _open(page, f"{dev.base_url}/assets/clusters?view=events")
    expect(page.get_by_text(f"Partition {DAY.isoformat()} materialized in run")).to_be_visible()
    for label in ("noise_share", "top_clusters", "dagster/row_count", "dagster/partition_row_count"):
        expect(page.get_by_text(label, exact=True).first).to_be_visible()
    # top_clusters (Markdown) sits behind a "show" control in the events table; its label is enough
    # here, and its content is checked through GraphQL in test_webserver.py.
    page.screenshot(path=str(root / "ui-clusters-events.png"))

    _open(page, f"{dev.base_url}/assets/clusters?view=checks")
    for check in ("conservation", "clustering_health"):
        expect(page.get_by_text(check, exact=True).first).to_be_visible()
    print(f"\nscreenshots in {root}")
    page.close()
