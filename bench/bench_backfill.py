"""Issue 13's backfill figures: (a) a range backfill through the daemon; (b) one 30,000-comment day run
alone; (c) 1,000,000 comments ingested.

Run ``python -m bench.bench_backfill`` (``make bench-backfill``); it appends its tables to
docs/benchmarks.md. Nothing here is a timed test: the figures are ratios and shares measured in one
run, next to the machine's load (``uptime``) at the start and end of each run, because the machines
this runs on are shared.

(a) generates N days of demo traffic (400 comments a day) and times them three ways: sequentially in one
plain Python process (``materialize`` of the lineage, day after day, the bundled in-process encoder);
as one asset backfill of all N days launched through ``dagster dev``'s GraphQL endpoint the way the
UI's "Materialize all" does, from launch until the backfill and all its runs have finished, for this
tree; and the same backfill for a git worktree of the design before issue 13 (``--backfill-before``,
default ``fca2218``), with the same Python environment and landing files. Written to its own section
(``backfill-range``) so a run of (a) alone leaves (b) and (c) in place.

(b) runs ``dagster asset materialize --select '*' --partition D`` (the repo's dagster.yaml), exactly
as a user would: for this tree in a ``DAGSTER_HOME`` nothing has used (so the command also creates the
instance's storages, as a deployment's first run does), and in an existing one (as every later run
finds it); and for a git worktree of the design before the in-process embedder (``--before``; by
default the parent of the commit that added ``core/embedding/local.py``), with the same Python
environment and the same landing files. The step breakdown comes from the run's event log
(STEP_START → STEP_SUCCESS); "outside the work" is the CLI's wall time minus the ``fresh_embeddings``
and ``clusters`` steps. The same command on ``bench/_noop_twin.py`` (the same graph, steps that do
nothing), with a new and with the existing instance, gives Dagster's floor for it.

(c) generates one JSON Lines file of 1,000,000 comments and times ``read_landing_partition`` plus
``deduplicate`` in a fresh process, with that process's peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._doc import machine_description, write_section

REPO = Path(__file__).resolve().parents[1]
DAY = dt.date(2025, 1, 1)
WORK_STEPS = ("fresh_embeddings", "clusters")


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def load_avg() -> str:
    return uptime().split("load average:")[-1].strip()


def before_commit(ref: str | None) -> str:
    """The design to compare with: ``ref``, or the parent of the commit that added the local embedder."""
    if ref is None:
        added = subprocess.run(
            ["git", "log", "--diff-filter=A", "--format=%H", "--", "embed_dagster/core/embedding/local.py"],
            cwd=REPO, capture_output=True, text=True, check=True,
        ).stdout.split()
        ref = f"{added[-1]}^" if added else "main"
    return subprocess.run(["git", "rev-parse", "--verify", ref], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()


def clean_env(root: Path, landing: Path, home: Path | None = None) -> dict:
    """The environment of one (b) run: its own lake under ``root``; its own new DAGSTER_HOME, or
    ``home`` (an instance earlier runs already created, as in a deployment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SGLANG_", "REDIS_", "EMBED_DAGSTER_"))}
    env.pop("PYTHONPATH", None)
    home = home or root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    # _DB for the design before the lake, _LAKE for this one: each reads only its own
    env.update(DAGSTER_HOME=str(home), EMBED_DAGSTER_DB=str(root / "warehouse.duckdb"),
               EMBED_DAGSTER_LAKE=str(root / "lake"),
               EMBED_DAGSTER_LANDING=str(landing), EMBED_DAGSTER_START_DATE=DAY.isoformat())
    return env


def step_breakdown(home: Path) -> dict:
    """Per-step seconds and the fresh_embeddings metadata, from the newest run in this instance."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(home)
    with dg.DagsterInstance.get() as instance:
        run = instance.get_runs(limit=1)[0]
        run_events = {dg.DagsterEventType[k].value: k for k in ("RUN_START", "RUN_SUCCESS", "RUN_FAILURE")}
        starts, steps, embed_meta, run_times = {}, {}, {}, {}
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is None:
                continue
            kind = event.event_type_value
            if kind in run_events:  # Dagster keeps the legacy values: RUN_START is "PIPELINE_START"
                run_times[run_events[kind]] = entry.timestamp
            if kind == "STEP_START":
                starts[event.step_key] = entry.timestamp
            elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in starts:
                steps[event.step_key] = entry.timestamp - starts[event.step_key]
            elif kind == "ASSET_MATERIALIZATION" and event.step_key == "fresh_embeddings":
                meta = event.event_specific_data.materialization.metadata
                embed_meta = {k: v.value for k, v in meta.items()}
        return {"status": run.status.value, "steps": steps, "embed": embed_meta,
                "run_start": run_times.get("RUN_START"),
                "run_end": run_times.get("RUN_SUCCESS", run_times.get("RUN_FAILURE"))}


def run_day(tree: Path, root: Path, landing: Path, label: str,
            module: str = "embed_dagster.definitions", home: Path | None = None) -> dict:
    env = clean_env(root, landing, home)
    env["PYTHONPATH"] = str(tree)  # this tree's embed_dagster, whatever the venv has installed
    cmd = [str(Path(sys.executable).with_name("dagster")), "asset", "materialize", "--select", "*",
           "-m", module, "--partition", DAY.isoformat()]
    print(f"[{label}] {' '.join(cmd[1:])}  (load {load_avg()})", flush=True)
    load_before = load_avg()
    launched = time.time()
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - started
    load_after = load_avg()
    if proc.returncode != 0:
        raise SystemExit(f"[{label}] failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    figures = step_breakdown(Path(env["DAGSTER_HOME"]))
    work = sum(figures["steps"].get(s, 0.0) for s in WORK_STEPS)
    embed_s = float(figures["embed"].get("seconds", 0.0))
    if figures["run_start"] and figures["run_end"]:
        # the process's own start-up (Python, Dagster, the definitions, the instance) and exit, apart
        # from the run itself (RUN_START → RUN_SUCCESS in the event log)
        figures["startup"] = figures["run_start"] - launched
        figures["run_s"] = figures["run_end"] - figures["run_start"]
    figures.update(label=label, wall=wall, work=work, outside=wall - work, load_before=load_before,
                   load_after=load_after, embed_seconds=embed_s,
                   outside_strict=wall - embed_s - figures["steps"].get("clusters", 0.0))
    print(f"[{label}] wall {wall:.1f} s, fresh_embeddings+clusters {work:.1f} s, outside "
          f"{100 * (wall - work) / wall:.0f}%  (load {load_after})", flush=True)
    return figures


@contextlib.contextmanager
def before_tree(tmp: Path, commit: str):
    """A detached git worktree of ``commit`` under ``tmp``, removed afterwards."""
    tree = tmp / "before"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=REPO, check=True,
                   capture_output=True)
    try:
        yield tree
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True)


def bench_day(comments: int, before: str | None, keep: bool) -> tuple[str, list[dict]]:
    from embed_dagster.dev.sample_data import generate_landing

    tmp = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    landing = tmp / "landing"
    generate_landing(landing, DAY, 1, per_day=comments, seed=13)
    results = []
    home = tmp / "instance"  # one instance for the runs after the first, as a deployment has
    try:
        results.append(run_day(REPO, tmp / "now", landing, NOW_LABEL))
        # Dagster's floor for this graph: the same command on a twin whose steps do nothing
        results.append(run_day(REPO, tmp / "floor", landing, FLOOR_LABEL, module="bench._noop_twin",
                               home=home))
        # A team's daily run: the instance exists (the floor's run created it), the day is new
        results.append(run_day(REPO, tmp / "now-existing", landing, NOW_EXISTING_LABEL, home=home))
        results.append(run_day(REPO, tmp / "floor-existing", landing, FLOOR_EXISTING_LABEL,
                               module="bench._noop_twin", home=home))
        if before != "none":
            commit = before_commit(before)
            with before_tree(tmp, commit) as tree:
                results.append(run_day(tree, tmp / "then", landing, f"before ({commit[:10]})"))
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return render_day(comments, results), results


NOW_LABEL = "in-process (this tree), new instance"
NOW_EXISTING_LABEL = "in-process (this tree), existing instance"
FLOOR_LABEL = "floor: the same graph, steps that do nothing (`bench/_noop_twin.py`), new instance"
FLOOR_EXISTING_LABEL = "floor, existing instance"


def render_day(comments: int, results: list[dict]) -> str:
    now = results[0]
    by_label = {r["label"]: r for r in results}
    distinct = now["embed"].get("texts_needed", "?")
    lines = [
        f"### (b) One day of {comments:,} comments, run alone",
        "",
        f"`dagster asset materialize --select '*' -m embed_dagster.definitions --partition {DAY}` "
        f"(the repo's dagster.yaml), {distinct} distinct texts to embed, no cache, each run with a lake "
        "of its own. *New instance*: a DAGSTER_HOME nothing has used, so the command also creates the "
        "instance's SQLite storages (a deployment's first run); *existing instance*: one DAGSTER_HOME "
        "that the floor's first run created, as every later run of a deployment finds it. "
        "*Outside the work* = wall time minus the `fresh_embeddings` and `clusters` steps (the issue's "
        "measure); *strict* also counts what `fresh_embeddings` spent outside embedding (its metadata "
        "`seconds`) as outside. *Start-up*: the command's launch to the run's RUN_START event "
        "(Python, Dagster and the definitions loading, the instance); *run*: RUN_START → RUN_SUCCESS, "
        "and the share of it outside the two steps.",
        "",
        "| design | wall s | start-up s | run s (outside the work) | fresh_embeddings s (embedding s) "
        "| clusters s | other steps s | outside the work | strict | load before → after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        steps = r["steps"]
        other = sum(v for k, v in steps.items() if k not in WORK_STEPS)
        run_s = r.get("run_s")
        in_run = f"{run_s:.1f} ({100 * (run_s - r['work']) / run_s:.0f}%)" if run_s else "–"
        startup = f"{r['startup']:.1f}" if r.get("startup") is not None else "–"
        lines.append(
            f"| {r['label']} | {r['wall']:.1f} | {startup} | {in_run} "
            f"| {steps.get('fresh_embeddings', 0):.1f} "
            f"({r['embed_seconds']:.1f}) | {steps.get('clusters', 0):.1f} | {other:.1f} "
            f"| {r['outside']:.1f} s = {100 * r['outside'] / r['wall']:.0f}% "
            f"| {100 * r['outside_strict'] / r['wall']:.0f}% | {r['load_before']} → {r['load_after']} |"
        )
    lines += ["", "Step breakdown (seconds, STEP_START → STEP_SUCCESS):", "",
              "| step | " + " | ".join(r["label"] for r in results) + " |",
              "|---|" + "---|" * len(results)]
    keys = sorted({k for r in results for k in r["steps"]}, key=lambda k: -now["steps"].get(k, 0))
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(f"{r['steps'].get(key, 0):.2f}" for r in results) + " |")
    for tree_label, floor_label in ((NOW_LABEL, FLOOR_LABEL), (NOW_EXISTING_LABEL, FLOOR_EXISTING_LABEL)):
        tree, floor = by_label.get(tree_label), by_label.get(floor_label)
        if tree is None or floor is None:
            continue
        work = tree["work"]
        budget = 0.15 / 0.85 * work  # outside ≤ 15% of (work + outside)
        lines += ["", f"Floor, {tree_label.split(', ')[-1]}: the same command on a twin of the code location "
                  f"(same assets, checks, partitions, dependencies and executor; every step does nothing) "
                  f"takes **{floor['wall']:.1f} s** ({floor.get('startup', 0):.1f} s to RUN_START, "
                  f"{floor.get('run_s', 0):.1f} s of run, the rest exit), "
                  f"{100 * floor['wall'] / tree['wall']:.0f}% of this tree's wall time. With "
                  f"{work:.1f} s of embedding and clustering, ≤15% outside leaves {budget:.1f} s for "
                  f"everything else: the floor alone is {floor['wall']:.1f} s, and this tree's other steps "
                  f"and its work between and around them add {tree['outside'] - floor['wall']:.1f} s."]
    others = [r for r in results[1:] if r["label"] not in
              (FLOOR_LABEL, FLOOR_EXISTING_LABEL, NOW_EXISTING_LABEL)]
    if others:
        then = others[0]
        lines += ["", f"Wall time, before / now: **{then['wall'] / now['wall']:.2f}×**; time outside the "
                  f"work, before / now: {then['outside'] / max(now['outside'], 1e-9):.1f}×."]
    return "\n".join(lines)


# ---------------------------------------------------------------- (a) an N-day backfill through the daemon

RANGE_PER_DAY = 400
RANGE_SEED = 7
RANGE_BEFORE = "fca2218"  # the design before issue 13's single-run topics backfill

_SEQUENTIAL_CHILD = r"""
import json, sys, time
t0 = time.monotonic()
import datetime as dt
import embed_dagster
from embed_dagster_tests.support.pipeline import materialize, pipeline_resources
lake, landing, start, days = sys.argv[1], sys.argv[2], dt.date.fromisoformat(sys.argv[3]), int(sys.argv[4])
resources = pipeline_resources(lake, landing)  # no base_url: the bundled encoder, in this process
t1 = time.monotonic()
per_day, ok = [], []
for i in range(days):
    s = time.monotonic()
    ok.append(materialize(resources, start + dt.timedelta(days=i), raise_on_error=False).success)
    per_day.append(time.monotonic() - s)
print(json.dumps({"import_s": t1 - t0, "loop_s": time.monotonic() - t1, "per_day": per_day, "ok": ok,
                  "package": embed_dagster.__file__}))
"""


def range_start(days: int) -> dt.date:
    """The first of ``days`` days that all end before yesterday (so every one is a partition already)."""
    return dt.date.today() - dt.timedelta(days=days + 1)


def range_env(root: Path, landing: Path, start: dt.date) -> dict:
    from embed_dagster_tests.support.dagster_procs import clean_env as procs_env

    return procs_env(EMBED_DAGSTER_LAKE=str(root / "lake"), EMBED_DAGSTER_LANDING=str(landing),
                     EMBED_DAGSTER_START_DATE=start.isoformat())


def run_sequential(root: Path, landing: Path, start: dt.date, days: int) -> dict:
    env = range_env(root, landing, start)
    env["PYTHONPATH"] = str(REPO)
    print(f"[sequential] {days} days in one process  (load {load_avg()})", flush=True)
    load_before = load_avg()
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _SEQUENTIAL_CHILD, str(root / "lake"), str(landing),
                           start.isoformat(), str(days)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=7200)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"[sequential] failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r.update(wall=wall, days=days, load_before=load_before, load_after=load_avg())
    print(f"[sequential] {wall:.1f} s ({r['loop_s']:.1f} s materializing, first day "
          f"{r['per_day'][0]:.1f} s), {sum(r['ok'])}/{days} days succeeded, from {r['package']}  "
          f"(load {r['load_after']})", flush=True)
    return r


def package_path(tree: Path, env: dict) -> str:
    """Where ``tree``'s processes import embed_dagster from (the check that the right design runs)."""
    proc = subprocess.run([sys.executable, "-c", "import embed_dagster; print(embed_dagster.__file__)"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=300, check=True)
    return proc.stdout.strip()


def run_range(tree: Path, root: Path, landing: Path, start: dt.date, days: int, label: str,
              launch_delay: float = 0.0) -> dict:
    """One asset backfill through ``dagster dev``, launched ``launch_delay`` s after it answers.

    Why a delay: ``dagster dev``'s backfill daemon runs its first loop as it starts, then one every
    30 s, so a launch right away waits a whole loop for its first run, the worst case; a user of a
    daemon that has been up for a while launches at any point of the loop (15 s on average)."""
    from embed_dagster_tests.support import dagster_procs as procs

    env = range_env(root, landing, start)
    env["PYTHONPATH"] = str(tree)  # this tree's embed_dagster, whatever the venv has installed
    package = package_path(tree, env)
    if not package.startswith(str(tree)):
        raise SystemExit(f"[{label}] embed_dagster loads from {package}, not from {tree}")
    dev = procs.DagsterDev(root / "dagster_home", env, cwd=tree, workspace=tree / "workspace.yaml",
                           instance_yaml=tree / "dagster.yaml")
    print(f"[{label}] dagster dev from {package}  (load {load_avg()})", flush=True)
    dev.start()
    try:
        gql = dev.gql
        repo = procs.repository_selector(gql)
        nodes = gql("{ assetNodes { assetKey { path } groupName isMaterializable } }")["assetNodes"]
        keys = sorted(n["assetKey"]["path"][0] for n in nodes
                      if n["groupName"] == "comment_topics" and n["isMaterializable"])
        partitions = [(start + dt.timedelta(days=i)).isoformat() for i in range(days)]
        params = procs.asset_backfill_params(keys, partitions, f"{days}-day backfill (bench)")
        run_config = procs.in_process_run_config(gql, repo)
        if run_config:
            params["runConfigData"] = json.dumps(run_config)
        time.sleep(launch_delay)
        load_before = load_avg()
        launched_at = time.time()
        started = time.monotonic()
        backfill_id = procs.launch_backfill(gql, params)
        backfill = procs.wait_for_backfills(gql, [backfill_id], timeout_s=7200)[backfill_id]
        wall = time.monotonic() - started
        load_after = load_avg()
        runs = [procs.run_details(gql, r["runId"]) for r in backfill["runs"]]
    finally:
        killed = dev.stop()
    ends = [r["endTime"] for r in runs if r.get("endTime")]
    begins = [r["startTime"] for r in runs if r.get("startTime")]
    run_seconds = [r["endTime"] - r["startTime"] for r in runs if r.get("endTime") and r.get("startTime")]
    statuses = [r["status"] for r in runs]
    run_lines = []
    for r in sorted(runs, key=lambda r: r.get("startTime") or 0):
        tags = {t["key"]: t["value"] for t in r.get("tags") or []}
        first, last = (tags.get(f"dagster/asset_partition_range_{k}") for k in ("start", "end"))
        days_of = f"{first}…{last}" if first else tags.get("dagster/partition", "–")
        assets = sorted(a["path"][-1] for a in r.get("assetSelection") or [])
        begin, end = (r.get(k) - launched_at if r.get(k) else 0.0 for k in ("startTime", "endTime"))
        run_lines.append(f"{', '.join(assets)} for {days_of}: {begin:.1f} → {end:.1f} s")
    result = dict(label=label, wall=wall, days=days, keys=keys, runs=len(runs), statuses=statuses,
                  ok=backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS")
                  and all(s == "SUCCESS" for s in statuses),
                  backfill_status=backfill["status"],
                  last_run_end=(max(ends) - launched_at) if ends else None,
                  first_run_start=(min(begins) - launched_at) if begins else None,
                  run_seconds=sum(run_seconds), load_before=load_before, load_after=load_after,
                  run_config=bool(run_config), killed=len(killed), package=package,
                  launch_delay=launch_delay, run_lines=run_lines)
    print(f"[{label}] {wall:.1f} s launch → done, {len(runs)} runs ({', '.join(sorted(set(statuses)))}), "
          f"backfill {backfill['status']}, first run started after {result['first_run_start'] or 0:.1f} s, "
          f"last run ended after {result['last_run_end'] or 0:.1f} s, runs' own time "
          f"{sum(run_seconds):.1f} s, "
          f"{len(killed)} processes killed at teardown  (load {load_after})", flush=True)
    for line in run_lines:
        print(f"[{label}]   run: {line}", flush=True)
    return result


def bench_range(days: int, before_ref: str, before_days: int | None, keep: bool,
                delays: list[float] = (0.0,)) -> tuple[str, dict]:
    from embed_dagster.dev.sample_data import generate_landing

    start = range_start(days)
    tmp = Path(tempfile.mkdtemp(prefix="bench-range-"))
    landing = tmp / "landing"
    generate_landing(landing, start, days, per_day=RANGE_PER_DAY, seed=RANGE_SEED)
    load_start = uptime()
    out: dict = {"days": days, "start": start}
    try:
        out["sequential"] = run_sequential(tmp / "sequential", landing, start, days)
        out["now"] = [
            run_range(REPO, tmp / f"now-{i}", landing, start, days,
                      "daemon, this tree" + (f", launched {d:g} s after `dagster dev` answered" if d else ""),
                      launch_delay=d)
            for i, d in enumerate(delays)
        ]
        if before_ref != "none":
            commit = before_commit(before_ref)
            with before_tree(tmp, commit) as tree:
                n = min(before_days or days, days)
                label = f"daemon, before ({commit[:7]})"
                out["before"] = run_range(tree, tmp / "then", landing, start, n, label)
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    out["load_start"], out["load_end"] = load_start, uptime()
    return render_range(out), out


def render_range(out: dict) -> str:
    days, seq, now, then = out["days"], out["sequential"], out["now"], out.get("before")
    lines = [
        f"### (a) A {days}-day backfill of demo traffic through the daemon",
        "",
        f"{days} days of `generate_landing(per_day={RANGE_PER_DAY}, seed={RANGE_SEED})` "
        f"({out['start']} to {out['start'] + dt.timedelta(days=days - 1)}). *Sequential*: one plain Python "
        "process (`python -c`, imports and model load included) materializing the lineage day after day "
        "with the bundled in-process encoder. *Daemon*: `dagster dev` with a fresh DAGSTER_HOME (the "
        "tree's dagster.yaml), one asset backfill of all days for the materializable assets of group "
        "`comment_topics` launched over GraphQL as the UI's \"Materialize all\" does, timed from launch "
        "until the backfill and all its runs have finished (polled every 2 s). *Before*: the same for a "
        "git worktree of the design before issue 13, same venv and landing files.",
        "",
        "| measure | days | wall s | s / day | first run started s | last run ended s | runs "
        "| runs' own s | all succeeded | load before → after |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| sequential, one process | {days} | {seq['wall']:.1f} | {seq['wall'] / days:.1f} | — | — | — "
        f"| — | {'yes' if all(seq['ok']) else 'no'} | {seq['load_before']} → {seq['load_after']} |",
    ]
    for r in (*now, then):
        if r:
            lines.append(
                f"| {r['label']} | {r['days']} | {r['wall']:.1f} | {r['wall'] / r['days']:.1f} "
                f"| {r['first_run_start'] or 0:.1f} | {r['last_run_end'] or 0:.1f} | {r['runs']} "
                f"| {r['run_seconds']:.1f} | {'yes' if r['ok'] else 'no: ' + ', '.join(r['statuses'])} "
                f"| {r['load_before']} → {r['load_after']} |")
    lines.append("")
    for r in now:
        lines.append(f"Runs of *{r['label']}* (seconds after the launch): "
                     + "; ".join(r.get("run_lines") or []) + ".")
    lines.append("")
    for r in now:
        ratio = r["wall"] / seq["wall"]
        when = (f"launched {r['launch_delay']:g} s after `dagster dev` answered" if r["launch_delay"]
                else "launched as soon as `dagster dev` answered")
        lines.append(
            f"Daemon / sequential (this tree, {when}): **{ratio:.2f}×** (target ≤1.5× → "
            f"{'met' if ratio <= 1.5 else 'not met'}); to the last run's end: "
            f"{(r['last_run_end'] or 0) / seq['wall']:.2f}×.")
    now = now[0]
    lines += [
        f"Sequential: {seq['import_s']:.1f} s imports, then {seq['loop_s']:.1f} s materializing "
        f"(first day {seq['per_day'][0]:.1f} s with the model load, the others "
        f"{(sum(seq['per_day'][1:]) / max(days - 1, 1)):.1f} s each on average).",
    ]
    if then:
        speed = (then["wall"] / then["days"]) / (now["wall"] / now["days"])
        same = " (same days)" if then["days"] == days else (
            f" — per day: the before design ran only {then['days']} of the {days} days, so this compares "
            "seconds per day")
        lines.append(f"Before / this tree: **{speed:.1f}×**{same} (target ≥5× → "
                     f"{'met' if speed >= 5 else 'not met'}).")
    lines.append(
        "*First run started* / *last run ended*: seconds after the launch (the runs' own start and end "
        "times); *wall* also counts the backfill daemon noticing that the last run ended. *Runs' own s*: "
        "the runs' durations summed (they overlap: up to 4 run at once).")
    lines += ["", f"Load at start: `{out['load_start']}`; at end: `{out['load_end']}`."]
    return "\n".join(lines)


# ---------------------------------------------------------------- (c) ingest + dedup of 1M comments

_INGEST_CHILD = r"""
import json, sys, time
from embed_dagster.core.dedup import deduplicate
from embed_dagster_tests.support.ingest_memory import peak_rss_kib  # own peak, not the parent's
from embed_dagster.core.ingest import read_landing_partition
import datetime as dt
root, day = sys.argv[1], dt.date.fromisoformat(sys.argv[2])
t0 = time.monotonic()
result = read_landing_partition(root, day)
t1 = time.monotonic()
ingest_rss = peak_rss_kib() / 1024
v = result.valid
d = deduplicate(v.column("comment_id"), v.column("text"), v.column("source_file"), v.column("source_row"))
t2 = time.monotonic()
print(json.dumps({"ingest_s": t1 - t0, "dedup_s": t2 - t1, "valid": v.num_rows,
                  "rejected": result.rejected.num_rows, "distinct": d.texts.num_rows,
                  "peak_rss_mb": peak_rss_kib() / 1024,
                  "ingest_rss_mb": ingest_rss, "valid_mb": v.nbytes / 2**20}))
"""


def write_million(path: Path, n: int) -> int:
    """One JSON Lines file of n comments drawn like the demo's (repeats and variants of a topic pool)."""
    from embed_dagster.dev import sample_data

    rows = sample_data._rows_for_day(DAY, n + sample_data.KNOWN_BAD_ROWS_PER_DAY, 17, sample_data._pool(17))
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            row = {k: v for k, v in row.items() if k != "ts"}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path.stat().st_size


def bench_ingest(n: int) -> str:
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        folder = tmp / "comments" / f"date={DAY}"
        folder.mkdir(parents=True)
        size = write_million(folder / "comments.jsonl", n)
        load_before = load_avg()
        proc = subprocess.run([sys.executable, "-c", _INGEST_CHILD, str(tmp), DAY.isoformat()], cwd=REPO,
                              capture_output=True, text=True, timeout=3600)
        load_after = load_avg()
        if proc.returncode != 0:
            raise SystemExit(f"ingest child failed:\n{proc.stderr[-3000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = r["ingest_s"] + r["dedup_s"]
    print(f"[ingest] {n:,} rows, {size / 1e6:.0f} MB: {total:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB",
          flush=True)
    return "\n".join([
        f"### (c) {n:,} comments in one day: ingest + dedup",
        "",
        "`read_landing_partition` then `deduplicate` on one generated JSON Lines file, in a fresh process "
        "(the code on this branch; peak RSS is that process's own high-water mark, `VmHWM`).",
        "",
        "| rows | file MB | ingest s | dedup s | total s | distinct texts | peak RSS MB | RSS / file "
        "| load before → after |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {r['valid']:,} valid + {r['rejected']} quarantined | {size / 1e6:.0f} | {r['ingest_s']:.1f} "
        f"| {r['dedup_s']:.1f} | {total:.1f} | {r['distinct']:,} | {r['peak_rss_mb']:.0f} "
        f"| {r['peak_rss_mb'] * 1024 * 1024 / size:.1f}× | {load_before} → {load_after} |",
        "",
        f"Targets (issue 13 and the reliability issue): ≤30 s → {'met' if total <= 30 else 'not met'}; "
        f"peak RSS ≤2× the file → {'met' if r['peak_rss_mb'] * 1024 * 1024 <= 2 * size else 'not met'}. "
        f"Peak RSS when ingest returned (before dedup): {r['ingest_rss_mb']:.0f} MB, of which the valid "
        f"rows as Arrow are {r['valid_mb']:.0f} MB.",
    ])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--comments", type=int, default=30_000, help="comments in the (b) day")
    p.add_argument("--before", default=None, help="git ref of the design to compare with; 'none' to skip")
    p.add_argument("--ingest-rows", type=int, default=1_000_000, help="rows for (c); 0 to skip")
    p.add_argument("--skip-day", action="store_true", help="skip (b)")
    p.add_argument("--backfill-days", type=int, default=30, help="days in the (a) backfill; 0 to skip")
    p.add_argument("--backfill-before", default=RANGE_BEFORE,
                   help="git ref of the design (a) compares with; 'none' to skip")
    p.add_argument("--backfill-before-days", type=int, default=None,
                   help="fewer days for the before design (its figure is then compared per day)")
    p.add_argument("--launch-delays", default="0,15",
                   help="(a): one daemon backfill of this tree per value, launched that many seconds after "
                        "`dagster dev` answers (0: right after the daemon's first loop, the longest wait; "
                        "15: the average wait of a daemon that has been up a while)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folders")
    p.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = p.parse_args(argv)

    if args.backfill_days:
        delays = [float(v) for v in args.launch_delays.split(",") if v.strip()]
        markdown = render_header_range(args) + "\n\n" + bench_range(
            args.backfill_days, args.backfill_before, args.backfill_before_days, args.keep, delays)[0]
        print(markdown)
        if not args.no_doc:
            print(f"written to {write_section('backfill-range', markdown)}")
    if args.skip_day and not args.ingest_rows:
        return 0  # nothing for the (b)/(c) section: leave its figures in place
    sections = [f"## Backfill (issue 13)\n\nMachine: {machine_description()}. Load at start: `{uptime()}`."]
    if not args.skip_day:
        sections.append(bench_day(args.comments, args.before, args.keep)[0])
    if args.ingest_rows:
        sections.append(bench_ingest(args.ingest_rows))
    sections.append(f"Load at end: `{uptime()}`.")
    markdown = "\n\n".join(sections)
    print(markdown)
    if not args.no_doc:
        print(f"written to {write_section('backfill', markdown)}")
    return 0


def render_header_range(args: argparse.Namespace) -> str:
    return (f"## Backfill (issue 13): a range through the daemon\n\nMachine: {machine_description()}. "
            f"Command: `python -m bench.bench_backfill --backfill-days {args.backfill_days} "
            f"--backfill-before {args.backfill_before}"
            + (f" --backfill-before-days {args.backfill_before_days}" if args.backfill_before_days else "")
            + f" --launch-delays {args.launch_delays} --skip-day --ingest-rows 0`.")


if __name__ == "__main__":
    sys.exit(main())
