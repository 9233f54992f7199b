"""The landing sensor and the versions that make "incremental" mean something, on a real instance.

The instance is a real one on disk (``dg.instance_for_test``: SQLite event log in a temp folder);
the days are materialized through it with the in-process encoder, and the sensor is evaluated the
way the daemon evaluates it, reading that instance's materializations.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import date

import dagster as dg
import pytest

from embed_dagster.defs.automation import FINGERPRINT_TAG, SEQUENCE_TAG, landing_sensor
from embed_dagster.defs.landing import LANDING_ASSET, landing_comments
from embed_dagster.defs.resources import LandingResource
from embed_dagster.defs.versions import code_versions
from embed_dagster.dev.sample_data import generate_landing
from embed_dagster.settings import Settings
from embed_dagster_tests.support.defs import ASSETS
from embed_dagster_tests.support.lake import query_arrow
from embed_dagster_tests.support.pipeline import materialize, own_materialization, pipeline_resources

D1, D2, D3 = date(2025, 1, 1), date(2025, 1, 2), date(2025, 1, 3)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture(autouse=True)
def no_quiet_period(monkeypatch):
    monkeypatch.setenv("EMBED_DAGSTER_LANDING_QUIET_S", "0")


def _tick(landing, cursor: str | None, instance: dg.DagsterInstance) -> dg.SensorResult:
    from embed_dagster.definitions import defs

    context = dg.build_sensor_context(
        cursor=cursor,
        instance=instance,
        definitions=defs,
        resources={"landing": LandingResource(root=str(landing))},
    )
    return landing_sensor(context)


def _days(result: dg.SensorResult) -> list[str]:
    return [r.partition_key for r in result.run_requests or []]


def _observed(result: dg.SensorResult) -> list[str]:
    return [e.partition for e in result.asset_events or []]


def test_landing_sensor_requests_each_new_day_once_in_date_order(tmp_path, instance):
    landing = tmp_path / "landing"
    first = _tick(landing, None, instance)
    assert first.run_requests is None or first.run_requests == []  # no landing folder yet: skip

    generate_landing(landing, D2, 1, per_day=20, seed=3)
    generate_landing(landing, D1, 1, per_day=20, seed=3)
    # Folders that must not trigger a run: empty, only hidden or uploading files, not a real date,
    # and a day after the last partition.
    comments = landing / "comments"
    (comments / "date=2025-01-05").mkdir()
    (comments / "date=2025-01-06").mkdir()
    (comments / "date=2025-01-06" / ".part-0001.jsonl").write_text("{}\n")
    (comments / "date=2025-01-06" / "sample.jsonl.tmp").write_text("{}\n")
    (comments / "date=2025-02-30").mkdir()
    (comments / "date=2025-02-30" / "x.jsonl").write_text("{}\n")
    (comments / "date=2999-01-01").mkdir()
    (comments / "date=2999-01-01" / "x.jsonl").write_text("{}\n")

    second = _tick(landing, None, instance)
    assert _days(second) == ["2025-01-01", "2025-01-02"]  # oldest first
    for request in second.run_requests:
        version = request.tags[FINGERPRINT_TAG]
        assert request.run_key == f"landing-{request.partition_key}-{version[:16]}-new" and len(version) == 32
        assert request.tags[SEQUENCE_TAG] == "landing"
    # the landing folder's data versions, recorded as observations of the source asset
    assert _observed(second) == ["2025-01-01", "2025-01-02"]
    assert {e.tags["dagster/data_version"] for e in second.asset_events} == {
        r.tags[FINGERPRINT_TAG] for r in second.run_requests
    }

    third = _tick(landing, second.cursor, instance)
    assert _days(third) == [] and _observed(third) == []
    assert "no new or changed landing days" in third.skip_reason.skip_message

    generate_landing(landing, D3, 1, per_day=20, seed=3)
    os.rename(
        comments / "date=2025-01-06" / "sample.jsonl.tmp", comments / "date=2025-01-06" / "sample.jsonl"
    )
    fourth = _tick(landing, third.cursor, instance)
    assert _days(fourth) == ["2025-01-03", "2025-01-06"]
    assert _days(_tick(landing, fourth.cursor, instance)) == []


def test_a_day_still_being_written_waits_for_quiet(tmp_path, instance, monkeypatch):
    landing = tmp_path / "landing"
    generate_landing(landing, D1, 1, per_day=20, seed=3)
    monkeypatch.setenv("EMBED_DAGSTER_LANDING_QUIET_S", "3600")
    waiting = _tick(landing, None, instance)
    assert (
        _days(waiting) == []
        and "still being written" in waiting.skip_reason.skip_message
        and "2025-01-01" in waiting.skip_reason.skip_message
    )
    old = time.time() - 7200  # the upload ended two hours ago
    for f in (landing / "comments" / "date=2025-01-01").rglob("*"):
        os.utime(f, (old, old))
    assert _days(_tick(landing, waiting.cursor, instance)) == ["2025-01-01"]


def test_a_day_after_one_still_being_written_waits_for_it(tmp_path, instance, monkeypatch):
    """Run before its previous day, a day's topics continue the wrong state (stop-24 adversarial pass)."""
    landing = tmp_path / "landing"
    generate_landing(landing, D1, 2, per_day=20, seed=3)
    old = time.time() - 7200
    for f in (landing / "comments" / "date=2025-01-02").rglob("*"):
        os.utime(f, (old, old))  # D2 settled long ago; D1 is still being written
    monkeypatch.setenv("EMBED_DAGSTER_LANDING_QUIET_S", "3600")
    waiting = _tick(landing, None, instance)
    assert _days(waiting) == [] and _observed(waiting) == []
    assert "waiting for the earlier day 2025-01-01: 2025-01-02" in waiting.skip_reason.skip_message
    for f in (landing / "comments" / "date=2025-01-01").rglob("*"):
        os.utime(f, (old, old))
    assert _days(_tick(landing, waiting.cursor, instance)) == ["2025-01-01", "2025-01-02"]


@pytest.mark.slow
def test_switching_on_reruns_nothing_and_a_late_file_reruns_its_day_then_later_topics(tmp_path, instance):
    """Issue 14: days already processed are never re-run, also with an empty cursor (automation
    switched on for the first time); a late file makes that day run again, and then the topics of
    the days after it (which continue it), so they equal a run in date order (stop 24)."""
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    generate_landing(landing, D1, 3, per_day=300, seed=5)
    resources = pipeline_resources(lake, landing)
    for day in (D1, D2, D3):
        assert materialize(resources, day, instance=instance).success

    # The side tables are in the lineage with a materialization per day, written by their producer.
    event = instance.get_latest_materialization_event(dg.AssetKey("comment_texts")).asset_materialization
    day3 = query_arrow(lake, "SELECT count(*) AS n FROM comment_texts WHERE partition_date = '2025-01-03'")
    assert event.partition == "2025-01-03"
    assert event.metadata["dagster/partition_row_count"].value == day3.column("n")[0].as_py() > 0

    switched_on = _tick(landing, None, instance)
    assert _days(switched_on) == []  # every day's files are what its run read
    assert sorted(_observed(switched_on)) == ["2025-01-01", "2025-01-02", "2025-01-03"]

    late = landing / "comments" / "date=2025-01-02" / "late-upload.jsonl"
    theme = [
        f"the parcel locker code {i % 7} never arrives by sms, cannot open the locker" for i in range(40)
    ]
    theme += [f"locker pickup code sms missing again {i}" for i in range(40)]  # a new theme, late
    late.write_text(
        '{"comment_id": "late-1", "created_at": "2025-01-02T23:59:00Z", "text": "arrived a day late"}\n'
        + "".join(
            json.dumps({"comment_id": f"late-{i + 2}", "created_at": "2025-01-02T23:59:00Z", "text": t})
            + "\n"
            for i, t in enumerate(theme)
        )
    )
    after_late = _tick(landing, switched_on.cursor, instance)
    [day_run] = after_late.run_requests
    assert day_run.partition_key == "2025-01-02" and _observed(after_late) == ["2025-01-02"]
    # the next tick does not ask again (the run key would repeat; the daemon skips it anyway)
    assert _days(_tick(landing, after_late.cursor, instance)) == []

    # a run that stopped before topics (here: only raw_comments ran): the chain is as it was
    assert materialize(resources, D2, instance=instance, selection=["raw_comments"]).success
    assert _tick(landing, after_late.cursor, instance).run_requests in (None, [])

    rerun = materialize(resources, D2, instance=instance)  # the day's run the sensor asked for
    assert (
        own_materialization(rerun, "topics").metadata["later_days_to_rebuild"].value
        == "2025-01-03...2025-01-03"
    )
    # D2's topics are now newer than D3's, which continue them: the next tick rebuilds D3's
    [rechain] = _tick(landing, after_late.cursor, instance).run_requests
    assert rechain.asset_selection == [dg.AssetKey("topics")] and rechain.tags[SEQUENCE_TAG] == "landing"
    assert (
        rechain.tags["dagster/asset_partition_range_start"],
        rechain.tags["dagster/asset_partition_range_end"],
    ) == ("2025-01-03", "2025-01-03")
    assert materialize(resources, "2025-01-03...2025-01-03", instance=instance, selection=["topics"]).success
    assert _tick(landing, after_late.cursor, instance).run_requests in (None, [])  # in order again
    rows = query_arrow(lake, "SELECT comment_id FROM raw_comments WHERE comment_id = 'late-1'")
    assert rows.num_rows == 1
    # the topics equal those of the same files run in date order from scratch
    scratch = tmp_path / "scratch-lake"
    assert materialize(pipeline_resources(scratch, landing), "2025-01-01...2025-01-03").success
    table = "SELECT partition_date, cluster_id, topic_id, status, label FROM topics ORDER BY ALL"
    assert query_arrow(lake, table).to_pylist() == query_arrow(scratch, table).to_pylist()
    # a fresh cursor again (sensor reset): nothing left to do
    assert _days(_tick(landing, None, instance)) == []

    # the late file was a mistake: removed, the day's files are as they were. That fingerprint's
    # first key was used, and Dagster skips a used key: the key names the run that read it last
    late.unlink()
    [back] = _tick(landing, None, instance).run_requests
    assert back.partition_key == "2025-01-02" and back.run_key.endswith(rerun.run_id[:8])


def test_observing_the_landing_source_gives_one_version_per_landed_day(tmp_path):
    landing = tmp_path / "landing"
    generate_landing(landing, D1, 2, per_day=20, seed=3)
    result = dg.materialize(
        [landing_comments],
        resources={"landing": LandingResource(root=str(landing))},
        selection=[LANDING_ASSET],
    )
    observations = [
        e.event_specific_data.asset_observation
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    ]
    versions = {o.partition: o.tags["dagster/data_version"] for o in observations}
    assert sorted(versions) == ["2025-01-01", "2025-01-02"] and len(set(versions.values())) == 2


def test_code_versions_follow_what_decides_the_output():
    base = code_versions(Settings())
    wider = code_versions(Settings(EMBED_DAGSTER_DIMENSIONS=256))
    changed = sorted(k for k in base if base[k] != wider[k])
    assert changed == ["cached_embeddings", "clusters", "fresh_embeddings", "topics"]
    instructed = code_versions(Settings(EMBED_DAGSTER_INSTRUCTION="Cluster these comments by topic"))
    assert instructed["fresh_embeddings"] != base["fresh_embeddings"]
    assert code_versions(Settings()) == base  # stable across loads


@pytest.mark.slow
def test_changing_the_dimension_marks_every_partition_stale_and_reembeds_each_text_once(tmp_path, instance):
    """Issue 14: a new model key makes every partition's embeddings and what follows stale; the
    backfill that follows sends each distinct text once (vectors are stored per model key)."""
    # Dagster's own helper for the resolver the UI uses (there is no public name for it in 1.13).
    from dagster._core.definitions.data_version import StaleStatus
    from dagster._utils.test.data_versions import get_stale_status_resolver

    landing, lake = tmp_path / "landing", tmp_path / "lake"
    generate_landing(landing, D1, 2, per_day=40, seed=5)
    days = ["2025-01-01", "2025-01-02"]
    for day in days:  # texts both days share: the backfill must embed them once, not once per day
        (landing / "comments" / f"date={day}" / "shared.jsonl").write_text(
            "".join(
                f'{{"comment_id": "shared-{day}-{k}", "created_at": "{day}T12:00:00Z", '
                f'"text": "the same remark on both days, number {k}"}}\n'
                for k in range(5)
            )
        )
    for day in days:
        assert materialize(pipeline_resources(lake, landing), day, instance=instance).success

    new_versions = code_versions(Settings(EMBED_DAGSTER_DIMENSIONS=256))

    def reversion(spec: dg.AssetSpec) -> dg.AssetSpec:
        name = spec.key.to_user_string()
        return spec.replace_attributes(code_version=new_versions.get(name, spec.code_version))

    assets = [a.map_asset_specs(reversion) for a in ASSETS]
    new_resources = pipeline_resources(lake, landing, dimensions=256)
    resolver = get_stale_status_resolver(instance, assets)
    for day in days:
        for name in ("raw_comments", "deduplicated_texts"):
            assert resolver.get_status(dg.AssetKey(name), day) == StaleStatus.FRESH, (name, day)
        for name in ("cached_embeddings", "fresh_embeddings", "clusters", "topics"):
            assert resolver.get_status(dg.AssetKey(name), day) == StaleStatus.STALE, (name, day)

    sent = []
    for day in days:
        result = dg.materialize(assets, partition_key=day, resources=new_resources, instance=instance)
        assert result.success
        meta = own_materialization(result, "fresh_embeddings").metadata
        sent.append(meta["texts_sent"].value)
    distinct = (
        query_arrow(
            lake,
            "SELECT count(DISTINCT text_hash) AS n FROM deduplicated_texts "
            "WHERE partition_date IN ('2025-01-01', '2025-01-02')",
        )
        .column("n")[0]
        .as_py()
    )
    assert (
        sum(sent) == distinct
        and sent[1]
        < query_arrow(
            lake, "SELECT count(*) AS n FROM deduplicated_texts WHERE partition_date = '2025-01-02'"
        )
        .column("n")[0]
        .as_py()
    )  # day two's shared texts came from day one's new vectors
    after = get_stale_status_resolver(instance, assets)
    assert all(after.get_status(dg.AssetKey("topics"), d) == StaleStatus.FRESH for d in days)


def test_d10_malformed_day_folders_are_reported_not_skipped_silently(tmp_path, instance):
    """Issue 15, D10: date=2025-02-30, date=2025-1-5 and Date=... hold rows no run ever reads."""
    landing = tmp_path / "landing"
    comments = landing / "comments"
    for name in ("date=2025-02-30", "date=2025-1-5", "Date=2025-01-05"):
        (comments / name).mkdir(parents=True)
        (comments / name / "x.jsonl").write_text("{}\n")
    first = _tick(landing, None, instance)
    assert _days(first) == []
    for name in ("date=2025-02-30", "date=2025-1-5", "Date=2025-01-05"):
        assert name in first.skip_reason.skip_message

    generate_landing(landing, D1, 1, per_day=20, seed=3)
    second = _tick(landing, None, instance)
    [req] = second.run_requests
    note = req.tags["embed_dagster/malformed_landing_folders"]
    assert "date=2025-1-5" in note and "Date=2025-01-05" in note  # shown on the run that follows


def test_repo_dagster_yaml_runs_landing_days_one_at_a_time(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(os.path.join(os.path.dirname(__file__), "..", "..", "dagster.yaml"), home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as inst:
        queue = inst.get_concurrency_config().run_queue_config
        dequeue_s = inst.run_coordinator.dequeue_interval_seconds
    assert {"key": SEQUENCE_TAG, "limit": 1} in queue.tag_concurrency_limits
    # the run_coordinator block (for the 1 s dequeue interval) must not replace the limits under
    # `concurrency`: Dagster merges the two, and the merged config is what the queue daemon reads
    assert queue.max_concurrent_runs == 4
    assert dequeue_s == 1


def test_a_day_not_ended_yet_waits_without_a_warning_and_an_early_day_is_named(tmp_path, instance):
    """Today's folder used to be called "outside the partitions" with advice to rename it, on every
    tick of the day; a folder before the start date is the one that needs the user."""
    landing = tmp_path / "landing"
    today = date.today()  # in UTC, the default timezone: not a partition before the day ends
    generate_landing(landing, today, 1, per_day=20, seed=3)
    first = _tick(landing, None, instance)
    assert _days(first) == []
    assert f"taken once the day ends: {today.isoformat()}" in first.skip_reason.skip_message
    assert "no run reads" not in first.skip_reason.skip_message

    early = date(2024, 12, 31)  # the day before the partitions start (EMBED_DAGSTER_START_DATE)
    generate_landing(landing, early, 1, per_day=20, seed=3)
    generate_landing(landing, D2, 1, per_day=20, seed=3)
    [req] = _tick(landing, None, instance).run_requests
    note = req.tags["embed_dagster/malformed_landing_folders"]
    assert f"date={early.isoformat()} (before EMBED_DAGSTER_START_DATE)" in note
    assert today.isoformat() not in note


def test_a_stale_topic_chain_is_found_from_the_storage_ids():
    from embed_dagster.defs.automation import stale_topic_chain

    assert stale_topic_chain({}) is None
    assert stale_topic_chain({"2025-01-01": 5, "2025-01-02": 9, "2025-01-04": 12}) is None  # in date order
    # 01-02 rebuilt after 01-03 and 01-04: those two continue its old topics
    assert stale_topic_chain({"2025-01-01": 5, "2025-01-02": 30, "2025-01-03": 9, "2025-01-04": 12}) == (
        "2025-01-03",
        "2025-01-04",
        30,
    )
    # the earliest rebuilt day decides where the rebuild starts
    latest = {"2025-01-01": 40, "2025-01-02": 30, "2025-01-03": 9, "2025-01-04": 50}
    assert stale_topic_chain(latest) == ("2025-01-02", "2025-01-04", 40)


def _processed(instance: dg.DagsterInstance, day: str, fingerprint: str) -> None:
    """What a raw_comments run records for a day it read (the sensor reads it back)."""
    instance.report_runless_asset_event(
        dg.AssetMaterialization("raw_comments", partition=day, metadata={"landing_fingerprint": fingerprint})
    )


def test_a_day_whose_files_were_all_removed_is_rerun_and_a_gone_folder_is_said_once(
    tmp_path, instance, monkeypatch
):
    """Stop 25: a processed day whose files were all removed (a withdrawn upload) kept its rows, since
    only days with files were fingerprinted. An empty folder now re-runs the day; a folder that is gone
    (cleaned up after processing) is not taken as "empty the day", and is warned about once."""
    landing = tmp_path / "landing"
    generate_landing(landing, D1, 2, per_day=20, seed=3)
    first = _tick(landing, None, instance)
    for request in first.run_requests:
        _processed(instance, request.partition_key, request.tags[FINGERPRINT_TAG])
    assert _days(_tick(landing, first.cursor, instance)) == []

    folder = landing / "comments" / "date=2025-01-01"
    for f in folder.iterdir():
        f.unlink()  # withdrawn: the folder stays, empty
    shutil.rmtree(landing / "comments" / "date=2025-01-02")  # cleaned up after processing
    # a day being uploaded again (old files removed, the new one not complete) is not withdrawn
    (folder / "comments.jsonl.part").write_text("{}\n")
    assert _days(_tick(landing, first.cursor, instance)) == []
    (folder / "comments.jsonl.part").unlink()
    monkeypatch.setenv("EMBED_DAGSTER_LANDING_QUIET_S", "3600")  # nor is a folder emptied just now
    assert _days(_tick(landing, first.cursor, instance)) == []
    monkeypatch.setenv("EMBED_DAGSTER_LANDING_QUIET_S", "0")
    second = _tick(landing, first.cursor, instance)
    [request] = second.run_requests
    assert request.partition_key == "2025-01-01" and request.tags[FINGERPRINT_TAG] == ""
    assert [e.tags["dagster/data_version"] for e in second.asset_events] == ["empty"]
    assert json.loads(second.cursor)["observed"]["2025-01-02"] == "gone"
    _processed(instance, "2025-01-01", "")
    third = _tick(landing, second.cursor, instance)
    assert _days(third) == [] and _observed(third) == []
    # with no cursor (the sensor reset), the processed empty day is not run again either
    assert _days(_tick(landing, None, instance)) == []


def test_days_a_backfill_or_a_run_is_writing_are_left_for_a_later_tick(tmp_path, instance):
    """Stop 25: with an asset backfill of the same days in progress (README: backfill history from the
    UI, then switch the sensor on), the first tick requested every day again."""
    import time as _time

    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill

    from embed_dagster.definitions import defs

    landing = tmp_path / "landing"
    generate_landing(landing, D1, 3, per_day=20, seed=3)
    graph = defs.resolve_asset_graph()
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id="history",
        asset_graph=graph,
        partition_names=["2025-01-01", "2025-01-02", "2025-01-03"],
        asset_selection=[k for k in graph.materializable_asset_keys if graph.get(k).partitions_def],
        backfill_timestamp=_time.time(),
        tags={},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=None,
        description=None,
        run_config=None,
    )
    instance.add_backfill(backfill)
    waiting = _tick(landing, None, instance)
    assert _days(waiting) == [] and _observed(waiting) == []
    assert "from 2025-01-01 on, waiting for backfill history" in waiting.skip_reason.skip_message
    # the backfill wrote two days, then ended; the third is the sensor's
    from embed_dagster.core.ingest import fingerprint_day

    for day in ("2025-01-01", "2025-01-02"):
        _processed(instance, day, fingerprint_day(landing, day).version)
    instance.update_backfill(backfill.with_status(BulkActionStatus.COMPLETED_SUCCESS))
    assert _days(_tick(landing, waiting.cursor, instance)) == ["2025-01-03"]

    # a run of one day in progress (from the UI) holds that day and the days after it
    generate_landing(landing, date(2025, 1, 4), 2, per_day=20, seed=9)
    instance.add_run(
        dg.DagsterRun(
            job_name="embed_comments_job",
            run_id="abcdef1234",
            status=dg.DagsterRunStatus.STARTED,
            tags={"dagster/partition": "2025-01-05"},
        )
    )
    held = _tick(landing, None, instance)
    assert _days(held) == ["2025-01-03", "2025-01-04"] and "2025-01-05" not in _observed(held)


def test_a_file_stamped_in_the_future_does_not_hold_its_day(tmp_path, instance, monkeypatch):
    """Stop 25: a modification time a year ahead (clock skew, tar) held the day and every later day
    as "still being written" for a year."""
    landing = tmp_path / "landing"
    generate_landing(landing, D1, 2, per_day=20, seed=3)
    ahead = time.time() + 365 * 86400
    for f in (landing / "comments" / "date=2025-01-01").rglob("*"):
        os.utime(f, (ahead, ahead))
    old = time.time() - 7200
    for f in (landing / "comments" / "date=2025-01-02").rglob("*"):
        os.utime(f, (old, old))
    monkeypatch.setenv("EMBED_DAGSTER_LANDING_QUIET_S", "3600")
    assert _days(_tick(landing, None, instance)) == ["2025-01-01", "2025-01-02"]
    # a file of that day written just now still holds it: the stamp ahead does not hide it
    (landing / "comments" / "date=2025-01-01" / "second.jsonl").write_text('{"comment_id": "x", ')
    waiting = _tick(landing, None, instance)
    assert _days(waiting) == [] and "still being written" in waiting.skip_reason.skip_message


def test_folders_before_the_start_are_named_when_no_partition_exists_yet(tmp_path, instance, monkeypatch):
    """Stop 25: with EMBED_DAGSTER_START_DATE = today there is no partition yet, and a folder of last
    week was called "taken once the day ends" instead of "before EMBED_DAGSTER_START_DATE"."""
    from embed_dagster.defs import automation

    today = date.today()
    monkeypatch.setattr(automation, "start_date", lambda: today.isoformat())
    monkeypatch.setattr(automation, "valid_days", lambda: set())
    landing = tmp_path / "landing"
    generate_landing(landing, date.fromordinal(today.toordinal() - 7), 1, per_day=20, seed=3)
    generate_landing(landing, today, 1, per_day=20, seed=3)
    reason = _tick(landing, None, instance).skip_reason.skip_message
    last_week = date.fromordinal(today.toordinal() - 7).isoformat()
    assert f"date={last_week} (before EMBED_DAGSTER_START_DATE)" in reason
    assert f"taken once the day ends: {today.isoformat()};" in reason


def test_days_processed_before_fingerprints_existed_are_taken_over_not_rerun(tmp_path, instance):
    """Stop 25: materializations without landing_fingerprint (a deployment from before it, or history
    from `make migrate`) made the first tick re-run every day. They are taken over as they are now;
    a later change runs as usual."""
    landing = tmp_path / "landing"
    generate_landing(landing, D1, 2, per_day=20, seed=3)
    for day in ("2025-01-01", "2025-01-02"):
        instance.report_runless_asset_event(dg.AssetMaterialization("raw_comments", partition=day))
    first = _tick(landing, None, instance)
    assert _days(first) == [] and _observed(first) == ["2025-01-01", "2025-01-02"]
    assert _days(_tick(landing, first.cursor, instance)) == []
    generate_landing(landing, D2, 1, per_day=25, seed=4)  # a late change to a taken-over day
    assert _days(_tick(landing, first.cursor, instance)) == ["2025-01-02"]
