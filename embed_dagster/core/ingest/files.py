"""Finding a day's landing files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from .common import FORMATS, _File


def partition_dir(landing_root: Path | str, partition_date: dt.date | str) -> Path:
    return Path(landing_root) / "comments" / f"date={_as_date(partition_date).isoformat()}"



def _as_date(value: dt.date | str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"partition_date must be a date or 'YYYY-MM-DD', got {value!r}")


def _list_files(root: Path, day_dir: Path) -> tuple[list[_File], list[str]]:
    if not day_dir.is_dir():
        return [], []
    files, ignored = [], []
    for path in sorted(day_dir.iterdir(), key=lambda p: p.name):
        if path.name.startswith((".", "_")) or not path.is_file():
            ignored.append(path.name)
            continue
        rel = path.relative_to(root).as_posix()
        files.append(_File(len(files), path, rel, path.name, FORMATS.get(path.suffix.lower())))
    return files, ignored

