"""Value checks shared by every format, the within-day duplicate rule, and the stats."""

from __future__ import annotations

import datetime as dt

import duckdb

from .common import MAX_COMMENT_ID_CHARS, RAW_MAX_CHARS, _File

# ISO-8601 shapes we accept; DuckDB's cast alone would also take 'infinity', 'epoch' and zone names.
# Offsets are bounded to what exists (-12:00 .. +14:00, written as at most +-14:59), so ``+25:00``
# is refused instead of silently shifting the time by a day.
_ISO_RE = r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?\s*([Zz]|[+-](0\d|1[0-4])(:?[0-5]\d)?)?"
# Accepted instants: [1970-01-01, 2100-01-01) UTC. Year 0 or 9999 are placeholders or overflow,
# not comment times. Fixed bounds, not "now", so a re-run of an old day gives the same rows.
# The shapes _ISO_RE accepts that DuckDB's cast does not, rewritten to ones it does (they were
# quarantined as "not an ISO-8601 timestamp"): a lower-case z, a space before the zone, and a
# zone after hours and minutes without seconds (12:00Z).
_ISO_FOR_DUCKDB = r"""regexp_replace(regexp_replace(regexp_replace(trim(created_at_str),
        '\s+([Zz]|[+-]\d)', '\1'), '([T ]\d{2}:\d{2})([Zz]|[+-]\d)', '\1:00\2'), 'z$', 'Z')"""
CREATED_AT_MIN = "1970-01-01 00:00:00+00"
CREATED_AT_MAX = "2100-01-01 00:00:00+00"
# Blank: whitespace, separators, controls, format characters, and the letters and marks that render
# as nothing (Hangul fillers U+115F/U+1160/U+3164/U+FFA0, the combining grapheme joiner U+034F,
# Khmer inherent vowels, Mongolian and Unicode variation selectors, tag characters, the blank
# Braille pattern U+2800): comments made of them look empty and were embedded and clustered into
# a real topic (42 of one topic's 52 comments in the stop-25 adversarial pass).
_BLANK_TEXT_RE = (
    r"[\s\p{Z}\p{Cc}\p{Cf}\x{034F}\x{115F}\x{1160}\x{17B4}\x{17B5}\x{180B}-\x{180F}"
    r"\x{2800}\x{3164}\x{FE00}-\x{FE0F}\x{FFA0}\x{E0000}-\x{E0FFF}]*"
)

# Names the fields a row did have, so "text is missing" on {"Body": ...} explains itself.
_PRESENT = "coalesce(' (fields present: ' || nullif(left(fields, 200), '') || ')', '')"


def _check(con: duckdb.DuckDBPyConnection, max_text_chars: int) -> None:
    """Value checks shared by all formats, then the within-day duplicate check on what survived."""
    con.execute(
        f"""CREATE TEMP TABLE checked AS
        WITH c AS (
            SELECT cand.*, files.file_name, files.source_file, trim(comment_id) AS cid,
                coalesce(created_at_ts, CASE WHEN regexp_full_match(trim(created_at_str), '{_ISO_RE}')
                                             THEN try_cast({_ISO_FOR_DUCKDB} AS TIMESTAMPTZ) END) AS ts
            FROM cand JOIN files USING (file_idx)),
        v AS (
            SELECT *, CASE
                WHEN pcode IS NOT NULL THEN {{'code': pcode, 'reason': preason}}
                WHEN cid_problem IS NOT NULL THEN {{'code': 'bad_comment_id', 'reason': cid_problem}}
                WHEN cid IS NULL OR cid = '' THEN {{'code': 'missing_comment_id',
                    'reason': 'comment_id is missing or empty' || {_PRESENT}}}
                WHEN length(cid) > {MAX_COMMENT_ID_CHARS} THEN {{'code': 'bad_comment_id',
                    'reason': 'comment_id longer than {MAX_COMMENT_ID_CHARS} characters ('
                              || length(cid) || ')'}}
                WHEN regexp_matches(cid, '\\p{{Cc}}') THEN {{'code': 'bad_comment_id',
                    'reason': 'comment_id contains control characters'}}
                WHEN text_problem IS NOT NULL THEN {{'code': 'bad_text', 'reason': text_problem}}
                WHEN text IS NULL THEN {{'code': 'missing_text',
                    'reason': 'text is missing (null or absent)' || {_PRESENT}}}
                WHEN text = '' THEN {{'code': 'empty_text', 'reason': 'text is empty'}}
                WHEN regexp_full_match(text, '{_BLANK_TEXT_RE}') THEN {{'code': 'empty_text',
                    'reason': 'text is empty: only whitespace or invisible characters'}}
                WHEN length(text) > {max_text_chars} THEN {{'code': 'text_too_long',
                    'reason': 'text longer than {max_text_chars} characters (' || length(text) || ')'}}
                WHEN ts_problem IS NOT NULL THEN {{'code': 'bad_created_at', 'reason': ts_problem}}
                WHEN created_at_ts IS NULL AND trim(coalesce(created_at_str, '')) = ''
                    THEN {{'code': 'missing_created_at',
                           'reason': 'created_at is missing or empty' || {_PRESENT}}}
                WHEN ts IS NULL OR NOT isfinite(ts) THEN {{'code': 'bad_created_at',
                    'reason': 'created_at ''' || left(coalesce(created_at_str, ts::VARCHAR), 80)
                              || ''' is not an ISO-8601 timestamp (e.g. 2025-01-31T12:00:00Z)'}}
                WHEN ts < TIMESTAMPTZ '{CREATED_AT_MIN}' OR ts >= TIMESTAMPTZ '{CREATED_AT_MAX}'
                    THEN {{'code': 'bad_created_at',
                    'reason': 'created_at ''' || left(coalesce(created_at_str, ts::VARCHAR), 80)
                              || ''' is outside the accepted range 1970-01-01 .. 2099-12-31'}}
            END AS verdict
            FROM c),
        d AS (
            SELECT *,
                CASE WHEN verdict IS NULL THEN row_number() OVER w END AS copy_no,
                CASE WHEN verdict IS NULL
                     THEN first_value(file_name || ':' || source_row) OVER w END AS first_at
            FROM v
            WINDOW w AS (PARTITION BY verdict IS NULL, cid ORDER BY file_idx, source_row))
        SELECT *, CASE WHEN verdict IS NOT NULL THEN verdict.code
                       WHEN copy_no > 1 THEN 'duplicate_comment_id' END AS code,
                  CASE WHEN verdict IS NOT NULL THEN verdict.reason
                       WHEN copy_no > 1 THEN 'duplicate comment_id ''' || left(cid, 80)
                            || ''' within the day (first at ' || first_at || ')' END AS reason
        FROM d"""
    )


_VALID_SQL = """
    SELECT cid AS comment_id, ts AS created_at, text, source_file, source_row, coalesce(extra, '{}') AS extra
    FROM checked WHERE code IS NULL ORDER BY file_idx, source_row"""

# ``raw`` comes with a margin past what is kept, and its full length: the scrubber (ingest's
# ``_scrub_rejected``) cuts it to RAW_MAX_CHARS only after replacing secrets, so a secret that
# straddles the cut is replaced whole instead of stored in part.
RAW_SCRUB_MARGIN = 256
_REJECTED_SQL = f"""
    SELECT source_file, source_row, nullif(cid, '') AS comment_id,
        left(coalesce(raw, ''), {RAW_MAX_CHARS + RAW_SCRUB_MARGIN}) AS raw,
        length(coalesce(raw, '')) AS raw_chars,
        reason
    FROM checked WHERE code IS NOT NULL ORDER BY file_idx, source_row NULLS FIRST"""


def _stats(
    con: duckdb.DuckDBPyConnection, day: dt.date, files: list[_File], ignored: list[str], warnings: list[str]
) -> dict:
    per_format: dict[str, dict[str, int]] = {}
    for f in files:
        fmt = per_format.setdefault(f.fmt or "other", {"files": 0, "rows_read": 0, "valid": 0, "rejected": 0})
        fmt["files"] += 1
    rows = con.sql(
        """SELECT fmt, count(*), count(*) FILTER (WHERE code IS NULL) FROM checked JOIN files USING (file_idx)
           GROUP BY fmt"""
    ).fetchall()
    for fmt, n, ok in rows:
        per_format[fmt].update(rows_read=n, valid=ok, rejected=n - ok)
    codes = dict(
        con.sql(
            "SELECT code, count(*) FROM checked WHERE code IS NOT NULL GROUP BY code ORDER BY code"
        ).fetchall()
    )
    total = sum(v["rows_read"] for v in per_format.values())
    valid = sum(v["valid"] for v in per_format.values())
    return {
        "partition_date": day.isoformat(),
        "files": len(files),
        "rows_read": total,
        "valid": valid,
        "rejected": total - valid,
        "duplicates": codes.get("duplicate_comment_id", 0),
        "per_format": per_format,
        "rejected_by_code": codes,
        "ignored": ignored,
        "warnings": warnings,
    }
