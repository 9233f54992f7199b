"""Finding a day's landing files, confined to the landing root, and what the sensor sees.

Why one module: the reader and the landing sensor must agree on what landed. Anything that is in a
day folder either becomes rows, becomes one quarantine row with a reason (refused entries), or is a
marker/temporary file listed in ``ignored`` (names starting with ``.`` or ``_``, or an upload still in
progress: ``*.tmp``, ``*.part``, ``*.partial``, ``*.crdownload``, ``*.filepart``, ``*.uploading``,
``*~``). Nothing vanishes:

* sub-folders (Spark-style ``batch.parquet/`` directories) are read recursively;
* every entry is resolved; a symbolic link whose target lies outside the landing root is refused
  with a reason naming the link, and its target is never opened (a link to ``/proc/self/environ``
  would otherwise put the process environment, secrets included, into ``quarantine.raw``);
* anything that is not a regular file or a folder (FIFO, socket, device) is refused: reading a
  FIFO would block the run forever;
* folder loops through links are read once;
* a name that is not valid UTF-8 is refused (one quarantine row, the name shown with its bytes
  escaped), the folder's other files are read as usual.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import FORMATS

DATE_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
_GLOB_CHARS = re.compile(r"[*?\[\]{}]")
# Names uploaders give a file until it is complete (then they rename it): never read, never fingerprinted.
UPLOADING_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".filepart", ".uploading", "~")


def is_uploading(name: str) -> bool:
    return name.lower().endswith(UPLOADING_SUFFIXES)


@dataclass(frozen=True)
class Entry:
    """One landing entry: ``rel`` is relative to the day folder; ``real`` the resolved file."""

    rel: str
    real: Path | None
    refused: str | None = None


@dataclass
class Listing:
    entries: list[Entry] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


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


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def list_day(landing_root: Path | str, day_dir: Path) -> Listing:
    """Every entry under ``day_dir`` (recursively), sorted by relative path; see the module doc."""
    out = Listing()
    root = Path(os.path.realpath(landing_root))
    if not day_dir.is_dir():
        return out
    real_day = Path(os.path.realpath(day_dir))
    if not _inside(real_day, root):
        out.entries.append(Entry(".", None, "the day folder is a link to a place outside the landing root"))
        return out
    seen: set[Path] = {real_day}

    def walk(folder: Path, prefix: str) -> None:
        try:
            children = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            reason = f"folder cannot be listed: {exc.strerror}"
            out.entries.append(Entry(prefix.rstrip("/") or ".", None, reason))
            return
        for child in children:
            rel = prefix + printable_name(child.name)
            if rel != prefix + child.name:  # the OS gave bytes that are not UTF-8
                out.entries.append(Entry(rel, None, _NOT_UTF8))
                continue
            if child.name.startswith((".", "_")):
                out.ignored.append(rel)
                continue
            if is_uploading(child.name):
                out.ignored.append(rel + " (upload in progress)")
                continue
            link = child.is_symlink()
            real = Path(os.path.realpath(child.path))
            if not _inside(real, root):
                what = "symbolic link" if link else "entry"
                out.entries.append(
                    Entry(rel, None, f"{what} points outside the landing root; not followed, not read")
                )
                continue
            try:
                mode = os.stat(real).st_mode
            except OSError as exc:
                out.entries.append(Entry(rel, None, f"cannot be opened: {exc.strerror or exc}"))
                continue
            if stat.S_ISDIR(mode):
                if real in seen:
                    out.ignored.append(rel + "/ (link to a folder already read)")
                    continue
                seen.add(real)
                walk(real, rel + "/")
            elif stat.S_ISREG(mode):
                out.entries.append(Entry(rel, real))
            else:
                out.entries.append(Entry(rel, None, "not a regular file (FIFO, socket or device); not read"))

    walk(real_day, "")
    out.entries.sort(key=lambda e: e.rel)
    return out


_NOT_UTF8 = "name is not valid UTF-8 (shown with its bytes escaped); not read, rename it"


def printable_name(name: str) -> str:
    """``name`` as a string that encodes: bytes that are not UTF-8 (which Python hands over as
    surrogate escapes) become ``\\xNN``. Why: such a name crashed every place that encodes it (the
    fingerprint, DuckDB parameters, run tags), and with it the sensor for all days."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", errors="backslashreplace")


def file_format(rel: str) -> str | None:
    return FORMATS.get(Path(rel).suffix.lower())


def has_landed(entries: Listing) -> bool:
    """A day counts as landed when it holds anything that will become rows or quarantine rows."""
    return bool(entries.entries)


def scan_landing(landing_root: Path | str) -> tuple[list[str], list[str]]:
    """(days with landed entries, malformed folder names) under ``<root>/comments``.

    The sensor uses this, with the same listing as the reader, so a file the reader would see in a
    sub-folder also makes the sensor request the day. Folders whose name looks like a day folder but
    is not a valid one (``date=2025-02-30``, ``date=2025-1-5``, ``Date=2025-01-05``) are returned
    as malformed, so they can be reported instead of skipped without a word; so is any other visible
    entry directly under ``comments/`` (a file there belongs to no day).
    """
    base = Path(landing_root) / "comments"
    if not base.is_dir():
        return [], []
    days, malformed = [], []
    for child in sorted(base.iterdir(), key=lambda p: p.name):
        match = DATE_DIR.match(child.name)
        ok = False
        if match and child.is_dir():
            try:
                dt.date.fromisoformat(match.group(1))
                ok = True
            except ValueError:
                ok = False
        if ok:
            if has_landed(list_day(landing_root, child)):
                days.append(match.group(1))
        elif not child.name.startswith((".", "_")):
            malformed.append(printable_name(child.name))
    return days, malformed


FUTURE_TOLERANCE_S = 300.0  # clocks of the uploader and of this machine may differ by this much


@dataclass(frozen=True)
class DayFingerprint:
    """What decides whether a day must be re-read: its data version.

    Built from each entry's relative name, size and modification time (nanoseconds), plus the reason
    of each refused entry, never from the contents. Why not content hashes: the sensor fingerprints
    every day folder each minute, and hashing a 126 MB day every tick costs seconds of CPU, where
    ``stat`` costs microseconds. Any rewrite, append or added file changes size or mtime; the only
    false alarm is a ``touch`` without a change, whose re-run replaces the day with the same rows.
    """

    version: str  # 32 hex characters; "" for a day with nothing landed
    files: int
    bytes: int
    newest_mtime: float  # seconds since the epoch, of files not stamped in the future; 0.0 when none
    future_files: int = 0  # files stamped more than FUTURE_TOLERANCE_S ahead when fingerprinted

    def settled(self, quiet_s: float, now: float | None = None) -> bool:
        """True when no file changed for ``quiet_s`` seconds: a file still growing is not taken.

        Files stamped in the future (clock skew, ``tar``, ``rsync -t``) say nothing about an upload
        in progress and are left out of ``newest_mtime``: waiting for their stamp to pass held the
        day, and every later day, for as long as it was ahead (a year, in the stop-25 adversarial
        pass), while letting them decide alone took a day whose other file was still being written
        (stop-25 review)."""
        return ((now if now is not None else time.time()) - self.newest_mtime) >= quiet_s

    def in_future(self) -> bool:
        return self.future_files > 0


def fingerprint_day(landing_root: Path | str, day: dt.date | str) -> DayFingerprint:
    """The day's :class:`DayFingerprint`, over exactly the entries the reader would read or refuse."""
    listing = list_day(landing_root, partition_dir(landing_root, day))
    digest = hashlib.blake2b(digest_size=16)
    files = size = future = 0
    newest = 0.0
    ahead = time.time() + FUTURE_TOLERANCE_S
    for entry in listing.entries:
        if entry.real is None:
            digest.update(f"{entry.rel}\0refused\0{entry.refused}\n".encode())
            continue
        try:
            st = os.stat(entry.real)
        except OSError as exc:  # vanished between listing and stat: part of what changed
            digest.update(f"{entry.rel}\0gone\0{exc.errno}\n".encode())
            continue
        files += 1
        size += st.st_size
        if st.st_mtime > ahead:
            future += 1
        else:
            newest = max(newest, st.st_mtime)
        digest.update(f"{entry.rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    version = digest.hexdigest() if listing.entries else ""
    return DayFingerprint(version, files, size, newest, future)


def folder_is_empty_and_quiet(folder: Path, quiet_s: float, now: float | None = None) -> bool:
    """A day folder with nothing in it at all (no upload in progress, no hidden file either) whose
    own modification time, which changes when an entry is added or removed, is ``quiet_s`` old."""
    try:
        with os.scandir(folder) as entries:
            if next(entries, None) is not None:
                return False
        changed = os.stat(folder).st_mtime
    except OSError:
        return False
    return ((now if now is not None else time.time()) - changed) >= quiet_s


def check_alias_folder(folder: Path) -> None:
    """The private folder that holds the plain-named links must itself be glob-free."""
    if _GLOB_CHARS.search(str(folder)):
        raise RuntimeError(f"temporary folder {folder} contains a glob character; set TMPDIR to a plain path")
