"""Sample generator: deterministic, realistic enough, and its bad rows are exactly what the reader rejects."""

from __future__ import annotations

import datetime as dt
import json
import re
import unicodedata

import pytest

from embed_dagster.core.ingest import read_landing_partition
from embed_dagster.dev.sample_data import BAD_ROWS, FILE_NAMES, KNOWN_BAD_ROWS_PER_DAY, generate_landing, main

START = dt.date(2025, 1, 1)
DAYS = [START + dt.timedelta(days=i) for i in range(3)]


def files_of(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def norm(text):
    return " ".join(unicodedata.normalize("NFKC", text).split()).casefold()


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    root = tmp_path_factory.mktemp("landing")
    stats = generate_landing(root, START, days=3, per_day=400, seed=7)
    reads = {day: read_landing_partition(root, day) for day in DAYS}
    return root, stats, reads


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path):
    generate_landing(tmp_path / "a", START, days=2, per_day=60, seed=3)
    generate_landing(tmp_path / "b", START, days=2, per_day=60, seed=3)
    generate_landing(tmp_path / "c", START, days=2, per_day=60, seed=4)
    a, b, c = (files_of(tmp_path / x) for x in "abc")
    assert len(a) == 6 and a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def test_rerun_replaces_sample_files_and_leaves_others(tmp_path):
    generate_landing(tmp_path / "fresh", START, days=1, per_day=50, seed=7)
    root = tmp_path / "reused"
    folder = root / "comments" / f"date={START}"
    folder.mkdir(parents=True)
    (folder / "sample-0.jsonl").write_text("stale")
    (folder / "sample-9.csv").write_text("stale, from an older layout")
    (folder / "partner.jsonl").write_text("{}\n")
    generate_landing(root, START, days=1, per_day=50, seed=7)
    assert sorted(p.name for p in folder.iterdir()) == sorted([*FILE_NAMES, "partner.jsonl"])
    fresh = files_of(tmp_path / "fresh" / "comments")
    assert all((root / "comments" / k).read_bytes() == v for k, v in fresh.items())


def test_reader_conserves_rows_and_rejects_exactly_the_known_bad_rows(landing):
    _, stats, reads = landing
    for day in DAYS:
        res, s = reads[day], stats[day]
        assert s["rows_written"] == res.stats["rows_read"] == 400
        assert s["bad_rows_written"] == KNOWN_BAD_ROWS_PER_DAY == res.rejected.num_rows
        assert res.valid.num_rows == s["valid_rows"] == 400 - KNOWN_BAD_ROWS_PER_DAY
        assert {f: n["rows_read"] for f, n in res.stats["per_format"].items()} == dict(
            zip(["jsonl", "csv", "parquet"], s["files"].values(), strict=True)
        )
        rejected = res.rejected.to_pylist()
        for kind, (file_name, reason) in BAD_ROWS.items():
            hits = [
                r for r in rejected if r["source_file"].endswith(file_name) and r["reason"].startswith(reason)
            ]
            assert len(hits) == 1, (day, kind, rejected)


def test_every_format_carries_rows_and_extra_fields(landing):
    _, _, reads = landing
    valid = reads[START].valid.to_pylist()
    assert {r["source_file"].rsplit("/", 1)[-1] for r in valid} == set(FILE_NAMES)
    keys = set().union(*(json.loads(r["extra"]) for r in valid))
    assert {"user_id", "platform", "rating"} <= keys
    assert any(r["extra"] == "{}" for r in valid)


def test_language_mix_and_duplicate_share(landing):
    _, _, reads = landing
    for day in DAYS:
        texts = reads[day].valid.column("text").to_pylist()
        chinese = sum(bool(re.search("[\u4e00-\u9fff]", t)) for t in texts) / len(texts)
        assert 0.45 <= chinese <= 0.8
        normalized = [norm(t) for t in texts]
        duplicate_share = 1 - len(set(normalized)) / len(texts)
        assert 0.25 <= duplicate_share <= 0.45
        assert len(set(texts)) > len(set(normalized))  # some repeats differ only in case/whitespace
        assert any(not re.search("[\u4e00-\u9fff]", t) and re.search("[A-Za-z]{4}", t) for t in texts)
        assert any(
            re.search("[\u4e00-\u9fff]", t) and re.search("[A-Za-z]{4}", t) for t in texts
        )  # code-switching


def test_texts_repeat_across_days_but_days_are_not_copies(landing):
    _, _, reads = landing
    day_sets = [{norm(t) for t in reads[day].valid.column("text").to_pylist()} for day in DAYS]
    assert all(len(s) >= 200 for s in day_sets)
    assert 10 <= len(day_sets[0] & day_sets[1]) <= 0.5 * len(day_sets[0])
    assert len(set().union(*day_sets)) >= 600


def test_cli_writes_days_and_reports_bad_arguments_without_traceback(tmp_path, capsys):
    assert main(["--landing", str(tmp_path), "--start", "2025-02-01", "--days", "2", "--per-day", "20"]) == 0
    out = capsys.readouterr().out
    assert "2025-02-01: 20 rows (5 bad)" in out and "2025-02-02" in out
    assert (tmp_path / "comments" / "date=2025-02-02" / "sample-2.parquet").is_file()
    for bad in (["--start", "tomorrow"], ["--per-day", "5"], ["--days", "0"]):
        with pytest.raises(SystemExit) as exc:
            main(["--landing", str(tmp_path), *bad])
        assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--start must be a date" in err and "per_day must be more than 5" in err and "Traceback" not in err
