"""The partitioned job and the landing sensor: a day runs when its files are new or changed.

There is no daily schedule any more: it ran the previous day at a fixed time, and the sensor ran
the same day again when its folder appeared. The sensor alone decides now, keyed on each day's
landing fingerprint (see ``defs/landing.py``):

* a day runs when its fingerprint differs from the one its last ``raw_comments`` run recorded
  (new day, late file, rewritten file); an unchanged day never runs again, also when the sensor is
  first switched on with an empty cursor;
* the run key is ``landing-<day>-<fingerprint>-<run that read the day last>``, so a given version
  of a day runs once, and again if the files go back to it after another version ran;
* a day whose newest file changed less than ``EMBED_DAGSTER_LANDING_QUIET_S`` seconds ago is left
  for a later tick (an upload still growing; a stamp in the future does not count), and upload
  names (*.tmp, *.part, ...) are not read;
* a processed day whose folder is left empty runs again (which empties it); one whose folder is
  gone keeps its rows (``_withdrawn_days``);
* days a backfill or another run is writing, and the days after them, wait (``_busy``);
* the daily cutoff is the partitions' own: a day exists as a partition once it has ended in
  ``EMBED_DAGSTER_TIMEZONE``;
* runs carry the tag ``embed_dagster/landing_sequence``, limited to one at a time in dagster.yaml,
  and are requested in date order, so ``topics`` (which continues the previous day's topics)
  sees days in order, as a backfill from the asset graph does; a day waits while an earlier day
  is still being written;
* when a day's topics were rebuilt after a later day's (a late file, a re-run from the UI), one more
  run rebuilds ``topics`` for the later days in date order (``_rechain_request``).
"""

import json

import dagster as dg
from dagster._core.events import DagsterEventType  # noqa: PLC2701 - no public path
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus  # noqa: PLC2701

from embed_dagster.core.ingest import fingerprint_day, scan_landing
from embed_dagster.core.ingest.files import folder_is_empty_and_quiet, partition_dir
from embed_dagster.defs.landing import LANDING_ASSET, valid_days
from embed_dagster.defs.resources import LandingResource
from embed_dagster.lib.partitions import daily_partitions, start_date
from embed_dagster.settings import load_settings

embed_comments_job = dg.define_asset_job(
    "embed_comments_job",
    # The landing folder is observed (by the sensor), not materialized: it is not part of a run.
    selection=dg.AssetSelection.groups("comment_topics") - dg.AssetSelection.assets(LANDING_ASSET),
    partitions_def=daily_partitions,
    description="Materialize the whole lineage, with its checks, for one day.",
)


MALFORMED_TAG = "embed_dagster/malformed_landing_folders"


def _malformed_text(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
    return f"{len(names)} entr{'y' if len(names) == 1 else 'ies'} under comments/ that no run reads: {shown}"


SEQUENCE_TAG = "embed_dagster/landing_sequence"
FINGERPRINT_TAG = "embed_dagster/landing_fingerprint"
RAW = dg.AssetKey("raw_comments")


def processed_fingerprints(
    instance: dg.DagsterInstance, days: list[str]
) -> dict[str, tuple[str | None, str]]:
    """Day → (the landing fingerprint its latest ``raw_comments`` materialization read, that run's id).

    The fingerprint is None when that materialization recorded none: a run of a version before the
    fingerprint existed, or history brought in by ``make migrate``."""
    out: dict[str, tuple[str, str]] = {}
    for start in range(0, len(days), 200):
        chunk = days[start : start + 200]
        cursor = None
        while True:
            page = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=RAW, asset_partitions=chunk), limit=500, cursor=cursor
            )
            for record in page.records:  # newest first: keep the first seen per day
                event = record.asset_materialization
                if event is None or event.partition in out:
                    continue
                value = event.metadata.get("landing_fingerprint")
                out[event.partition] = (value.value if value is not None else None, record.run_id)
            if not page.has_more or len(out) == len(chunk):
                break
            cursor = page.cursor
    return out


TOPICS = dg.AssetKey("topics")
RECHAIN_TAG = "embed_dagster/topics_rechain"
_IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def stale_topic_chain(latest: dict[str, int]) -> tuple[str, str, int] | None:
    """(first day to rebuild, last day, storage id of the day before) when some day's topics were
    materialized after a later day's, whose topics continue them; None when the chain is in order.

    ``latest`` maps each day with topics to the storage id of its latest ``topics`` materialization.
    A run walks its days in date order, so in a consistent history the ids grow with the date.
    """
    days = sorted(latest)
    later_min = float("inf")
    stale_from = None
    for i in range(len(days) - 1, -1, -1):  # from the newest day back: is any later day older?
        if latest[days[i]] > later_min:
            stale_from = i
        later_min = min(later_min, latest[days[i]])
    if stale_from is None:
        return None
    return days[stale_from + 1], days[-1], latest[days[stale_from]]


def _rechain_request(instance: dg.DagsterInstance, tags: dict[str, str]) -> dg.RunRequest | None:
    """A ``topics`` run over the days whose topics continue a day rebuilt after them.

    Why: each day's topics continue the previous day's. When a day runs again (a late file, a
    re-run from the UI), the topics of every later day were built on its old topics: they kept
    ids the day may no longer have and differed from a run in date order, with nothing in Dagster
    marking them stale (stop-24 adversarial pass). So once the day's topics are written (not
    before: a failed run leaves the chain as it was, and the request comes after the re-execution
    that succeeds), one range run of ``topics`` alone (no embedding, no clustering, about half a
    second a day) rebuilds the later days in date order. Not while any run or backfill is in
    progress: it may be the one writing those days, and the next tick looks again.
    """
    storage = instance.event_log_storage
    latest = dict(storage.get_latest_storage_id_by_partition(TOPICS, DagsterEventType.ASSET_MATERIALIZATION))
    stale = stale_topic_chain(latest)
    if stale is None:
        return None
    if instance.get_run_records(dg.RunsFilter(statuses=_IN_PROGRESS), limit=1):
        return None
    if instance.get_backfills(filters=BulkActionsFilter(statuses=[BulkActionStatus.REQUESTED]), limit=1):
        return None
    first, last, after = stale
    return dg.RunRequest(
        run_key=f"rechain-{first}-{last}-{after}",
        asset_selection=[TOPICS],
        tags=tags
        | {
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
            RECHAIN_TAG: f"{first}...{last} continue topics rebuilt after them",
        },
    )


GONE = "gone"  # cursor value of a processed day whose folder disappeared (said once)
EMPTY_VERSION = "empty"  # the data version of a day folder with nothing to read


def _withdrawn_days(
    instance, root, observed: dict[str, str], landed: set[str], valid, quiet_s: float
) -> tuple[list, list]:
    """(processed days whose folder is now empty, processed days whose folder is gone, newly).

    A day with rows whose files were all removed (a withdrawn upload) kept its rows: only days with
    files were fingerprinted, so nothing ever differed (stop-25 adversarial pass). An empty day folder
    now fingerprints as empty and re-runs the day, which empties it. A folder that is gone is not
    taken as "empty the day": landing folders are often cleaned up after processing, and that must
    not wipe the lake's history; it is said once instead.
    """
    seen = {d for d, version in observed.items() if version and version != GONE}
    processed = set(instance.get_materialized_partitions(RAW))
    candidates = sorted(d for d in (seen | processed) - landed if d in valid)
    folders = {d: partition_dir(root, d) for d in candidates}
    # Emptied means nothing in the folder at all, quiet for quiet_s: a processed day being uploaded
    # again (old files removed, the new one still a .part) was run at once as withdrawn, emptied in
    # every table, then run again (stop-25 review).
    emptied = [d for d in candidates if folder_is_empty_and_quiet(folders[d], quiet_s)]
    gone = [d for d in candidates if d in seen and not folders[d].is_dir()]
    return emptied, gone


def _busy(instance: dg.DagsterInstance, days: list[str]) -> tuple[str | None, str]:
    """(the first of ``days`` that a backfill or a run in progress may be writing, what it is)."""
    backfills = instance.get_backfills(filters=BulkActionsFilter(statuses=[BulkActionStatus.REQUESTED]))
    if backfills:
        return days[0], f"backfill {backfills[0].backfill_id}"
    first: tuple[str, str] | None = None
    for record in instance.get_run_records(dg.RunsFilter(statuses=_IN_PROGRESS)):
        tags = record.dagster_run.tags
        start = tags.get("dagster/partition") or tags.get("dagster/asset_partition_range_start")
        end = tags.get("dagster/partition") or tags.get("dagster/asset_partition_range_end")
        if not start or not end:
            continue
        hit = next((d for d in days if start <= d <= end), None)
        if hit is not None and (first is None or hit < first[0]):
            first = (hit, f"run {record.dagster_run.run_id[:8]}")
    return first if first is not None else (None, "")


@dg.sensor(
    job=embed_comments_job,
    minimum_interval_seconds=60,
    description="Runs a day when its landing files are new or changed since its last run (a late file, "
    "a rewrite), never a day whose files are unchanged. Keyed on the day's landing fingerprint, so each "
    "version of a day runs once; days run one at a time in date order.",
)
def landing_sensor(context: dg.SensorEvaluationContext, landing: LandingResource) -> dg.SensorResult:
    root = landing.path()
    quiet_s = load_settings().landing_quiet_s
    try:
        seen = json.loads(context.cursor) if context.cursor else {}
    except ValueError:
        seen = {}
    observed: dict[str, str] = seen.get("observed", {}) if isinstance(seen, dict) else {}
    valid = valid_days()
    days, malformed = scan_landing(root)
    first_day = start_date()
    # A day not ended yet (today, in EMBED_DAGSTER_TIMEZONE) has no partition until it ends: it is
    # taken then, so it is not a problem to warn about on every tick of the day.
    early = sorted(d for d in days if d not in valid and d < first_day)
    not_ended = sorted(d for d in days if d not in valid and d >= first_day)
    # Folders that are not date=YYYY-MM-DD with a real date (date=2025-02-30, date=2025-1-5,
    # Date=...) would otherwise be skipped without a word and their rows never processed; so would
    # days before the first partition.
    problems = malformed + [f"date={d} (before EMBED_DAGSTER_START_DATE)" for d in early]
    note = _malformed_text(problems) if problems else ""
    if note:
        advice = [
            ("rename folders to date=YYYY-MM-DD" if malformed else ""),
            ("set EMBED_DAGSTER_START_DATE to the first day to process" if early else ""),
        ]
        context.log.warning(f"landing sensor: {note}; {'; '.join(a for a in advice if a)}")
    prints = {d: fingerprint_day(root, d) for d in days if d in valid}
    emptied, gone = _withdrawn_days(context.instance, root, observed, set(days), valid, quiet_s)
    prints.update({d: fingerprint_day(root, d) for d in emptied})
    if gone:
        context.log.warning(
            f"landing sensor: the folders of {len(gone)} processed day(s) are gone ({', '.join(gone[:10])}); "
            "their rows stay in the lake. To empty a day, leave its date= folder empty (the next tick "
            "re-runs it) or re-run it from the UI"
        )
        observed.update({d: GONE for d in gone})
    # said once per version of a day, not on every tick while the stamp is ahead
    ahead = sorted(d for d, fp in prints.items() if fp.in_future() and observed.get(d) != fp.version)
    if ahead:
        context.log.warning(
            f"landing sensor: files of {', '.join(ahead[:10])} are stamped in the future (clock skew?); "
            "the quiet period is judged on the day's other files"
        )
    settling = sorted(d for d, fp in prints.items() if not fp.settled(quiet_s))
    # Days after one still being written wait for it (not observed either, so a later tick takes
    # them): topics continue the previous day, so a day must not run before an earlier one.
    held = sorted(d for d in prints if settling and d > settling[0] and d not in settling)
    ready = {d: fp for d, fp in prints.items() if d not in settling and d not in held}
    changed = sorted(d for d, fp in ready.items() if observed.get(d) != fp.version)
    done = processed_fingerprints(context.instance, changed) if changed else {}
    # A day processed before runs recorded their fingerprint is taken over as it is now, not re-run:
    # an upgraded deployment (or a migrated history) re-ran every day when the sensor was first
    # switched on (stop-25 adversarial pass). A file changed after that takeover runs as usual.
    adopted = [d for d in changed if d in done and done[d][0] is None and d not in observed]
    if adopted:
        context.log.info(
            f"landing sensor: {len(adopted)} day(s) processed before fingerprints were recorded are taken "
            f"as they are now, not re-run ({', '.join(adopted[:10])}); re-run one from the UI if its files "
            "changed since"
        )
    todo = [d for d in changed if d not in adopted and done.get(d, ("", ""))[0] != ready[d].version]
    # A day that a backfill or another run is writing is left for a later tick (not observed), and so
    # is every later day: requested now, it ran twice, and out of date order (stop-25 pass).
    busy_from, busy_why = _busy(context.instance, todo) if todo else (None, "")
    if busy_from is not None:
        waiting = [d for d in changed if d >= busy_from]
        todo = [d for d in todo if d < busy_from]
        ready = {d: fp for d, fp in ready.items() if d not in waiting}
        changed = [d for d in changed if d not in waiting]
    events = [
        dg.AssetObservation(
            asset_key=LANDING_ASSET,
            partition=d,
            tags={"dagster/data_version": ready[d].version or EMPTY_VERSION},
            metadata={"files": ready[d].files, "bytes": ready[d].bytes},
        )
        for d in changed
    ]
    tags = {SEQUENCE_TAG: "landing"} | ({MALFORMED_TAG: note[:1000]} if note else {})
    requests = [
        dg.RunRequest(
            # the run that read the day last is in the key: files put back as they were (a wrong
            # file removed) have an old fingerprint, whose key was used, and Dagster skips a used
            # key, so the day kept the wrong file's rows (stop-24 adversarial pass)
            run_key=f"landing-{d}-{ready[d].version[:16]}-{done.get(d, ('', 'new'))[1][:8]}",
            partition_key=d,
            tags=tags | {FINGERPRINT_TAG: ready[d].version},
        )
        for d in todo  # date order: the queue runs them one at a time, oldest first
    ]
    # days first; the topics after a rebuilt day on a tick with no day to run (see _rechain_request)
    rechain = None if requests else _rechain_request(context.instance, {SEQUENCE_TAG: "landing"})
    if rechain is not None:
        requests.append(rechain)
    observed.update({d: fp.version for d, fp in ready.items()})
    cursor = json.dumps({"observed": dict(sorted(observed.items()))})
    if not requests:
        reason = f"no new or changed landing days under {root / 'comments'}"
        if settling:
            reason += f"; still being written (waiting {quiet_s:g}s of quiet): {', '.join(settling[:10])}"
        if held:
            reason += f"; waiting for the earlier day {settling[0]}: {', '.join(held[:10])}"
        if not_ended:
            reason += f"; taken once the day ends: {', '.join(not_ended[:10])}"
        if busy_from is not None:
            reason += f"; from {busy_from} on, waiting for {busy_why}"
        if note:
            reason += f"; {note}"
        return dg.SensorResult(skip_reason=reason, asset_events=events, cursor=cursor)
    return dg.SensorResult(run_requests=requests, asset_events=events, cursor=cursor)
