"""JSON Lines, NDJSON and ``.json`` files: one candidate row per line (or array element)."""

from __future__ import annotations

import duckdb

from .common import BOM, READ_BLOCK, _File, _load_lines

_JSON_TYPE_WORDS = {
    "BIGINT": "an integer",
    "UBIGINT": "an integer",
    "DOUBLE": "a number",
    "BOOLEAN": "a boolean",
    "ARRAY": "an array",
    "OBJECT": "an object",
    "VARCHAR": "a string",
}


def _read_json(con: duckdb.DuckDBPyConnection, f: _File) -> None:
    """JSON Lines are parsed in blocks of whole lines, so memory does not grow with the file.

    A ``.json`` file is read whole once to see whether it is one JSON document (array or object);
    large inputs belong in ``.jsonl``. A UTF-8 byte-order mark at the start is dropped, as it is for
    CSV and ``.json``, so the first row is not lost.
    """
    if f.fmt == "json":
        data = f.path.read_bytes()
        if _load_json_document(con, data):
            _insert_json_rows(con, f, "element")
            return
        del data
    first = 1
    rest = b""
    with f.path.open("rb") as fh:
        block = fh.read(READ_BLOCK)
        if block.startswith(BOM):
            block = block[len(BOM) :]
        while block or rest:
            chunk = rest + block
            block = fh.read(READ_BLOCK)
            if block:
                cut = chunk.rfind(b"\n")
                if cut < 0:  # one line longer than a block: keep reading
                    rest = chunk
                    continue
                chunk, rest = chunk[:cut], chunk[cut + 1 :]
            else:
                rest = b""
            _load_lines(con, chunk, "json_lines", first)
            first += chunk.count(b"\n") + 1
            del chunk
            con.execute(
                "CREATE OR REPLACE TEMP TABLE json_src AS "
                "SELECT n, line, bad_utf8 FROM json_lines WHERE NOT blank"
            )
            _insert_json_rows(con, f, "line")


def _load_json_document(con: duckdb.DuckDBPyConnection, data: bytes) -> bool:
    """A ``.json`` file that is one valid JSON document: its elements (or the object) become rows."""
    try:
        doc = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return False
    kind = con.sql("SELECT CASE WHEN json_valid(?) THEN json_type(?) END", params=[doc, doc]).fetchall()[0][0]
    if kind == "ARRAY":
        con.execute(
            """CREATE OR REPLACE TEMP TABLE json_src AS
               SELECT generate_subscripts(l, 1) AS n, unnest(l) AS line, false AS bad_utf8
               FROM (SELECT json_extract(?, '$[*]')::VARCHAR[] AS l)""",
            [doc],
        )
        return True
    if kind is not None:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE json_src AS SELECT 1::BIGINT AS n, ? AS line, false AS bad_utf8",
            [doc.strip()],
        )
        return True
    return False


def _json_type_word(expr: str) -> str:
    cases = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in _JSON_TYPE_WORDS.items())
    return f"(CASE {expr} {cases} ELSE lower({expr}) END)"


def _path(key_expr: str) -> str:
    """A JSONPath for one key held in a SQL expression (quoted, so dots or spaces are fine)."""
    return (
        f"CASE WHEN {key_expr} IS NULL THEN NULL ELSE "
        f"'$.\"' || replace(replace({key_expr}, '\\', '\\\\'), '\"', '\\\"') || '\"' END"
    )


def _insert_json_rows(con: duckdb.DuckDBPyConnection, f: _File, noun: str) -> None:
    # Reads json_src(n, line, bad_utf8). The CASE guards keep json_* functions away from invalid JSON
    # (they raise on it).
    invalid_hint = """CASE
        WHEN regexp_matches(line, '[\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\r\\t]')
            THEN 'it contains a raw control character (tab, CR, ...); JSON strings must escape them'
        WHEN regexp_matches(line, '\\\\u[dD][89a-fA-F][0-9a-fA-F]{2}')
            THEN 'it contains a \\uD800-\\uDFFF escape that is not a valid surrogate pair'
        WHEN NOT starts_with(ltrim(line), '{') THEN 'it does not start with {'
        ELSE 'malformed or truncated JSON' END"""
    con.execute(
        f"""INSERT INTO cand BY NAME
        WITH p AS (
            SELECT n, line, CASE WHEN bad_utf8 THEN 'invalid_utf8'
                                 WHEN NOT json_valid(line) THEN 'invalid_json'
                                 WHEN json_type(line) <> 'OBJECT' THEN 'not_object' END AS pcode
            FROM json_src),
        k AS (
            SELECT *, CASE WHEN pcode IS NULL THEN json_keys(line) END AS keys FROM p),
        kk AS (
            -- keys match the required names case-insensitively, as CSV and Parquet columns do
            SELECT *,
                list_filter(keys, x -> lower(x) = 'comment_id') AS cid_keys,
                list_filter(keys, x -> lower(x) = 'text') AS text_keys,
                list_filter(keys, x -> lower(x) = 'created_at') AS ts_keys
            FROM k),
        kp AS (
            SELECT *,
                {_path("cid_keys[1]")} AS cid_path, {_path("text_keys[1]")} AS text_path,
                {_path("ts_keys[1]")} AS ts_path,
                CASE WHEN len(cid_keys) > 1 OR len(text_keys) > 1 OR len(ts_keys) > 1
                     THEN 'the object repeats a required field in different case ('
                          || array_to_string(list_concat(
                                 CASE WHEN len(cid_keys) > 1 THEN cid_keys ELSE [] END,
                                 CASE WHEN len(text_keys) > 1 THEN text_keys ELSE [] END,
                                 CASE WHEN len(ts_keys) > 1 THEN ts_keys ELSE [] END), ', ')
                          || ')' END AS dup_keys
            FROM kk),
        t AS (
            SELECT *,
                CASE WHEN pcode IS NULL AND len(cid_keys) <= 1 THEN json_type(line, cid_path) END AS cid_t,
                CASE WHEN pcode IS NULL AND dup_keys IS NULL THEN json_type(line, text_path) END AS text_t,
                CASE WHEN pcode IS NULL AND dup_keys IS NULL THEN json_type(line, ts_path) END AS ts_t
            FROM kp)
        SELECT ? AS file_idx, n AS source_row, line AS raw,
            CASE WHEN pcode IS NULL AND dup_keys IS NOT NULL THEN 'duplicate_field' ELSE pcode END AS pcode,
            CASE pcode
                WHEN 'invalid_utf8' THEN '{noun} is not valid UTF-8'
                WHEN 'invalid_json' THEN '{noun} is not valid JSON: ' || {invalid_hint}
                WHEN 'not_object' THEN '{noun} is not a JSON object (found '
                                       || {_json_type_word("json_type(line)")} || ')'
                ELSE dup_keys
            END AS preason,
            CASE WHEN cid_t IN ('VARCHAR', 'BIGINT', 'UBIGINT') THEN json_extract_string(line, cid_path)
            END AS comment_id,
            CASE WHEN cid_t NOT IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'NULL')
                 THEN 'comment_id is ' || {_json_type_word("cid_t")} || ', expected a string'
            END AS cid_problem,
            CASE WHEN text_t = 'VARCHAR' THEN json_extract_string(line, text_path) END AS text,
            CASE WHEN text_t NOT IN ('VARCHAR', 'NULL')
                 THEN 'text is ' || {_json_type_word("text_t")} || ', not a string' END AS text_problem,
            CASE WHEN ts_t = 'VARCHAR' THEN json_extract_string(line, ts_path) END AS created_at_str,
            CASE WHEN ts_t NOT IN ('VARCHAR', 'NULL')
                 THEN 'created_at is ' || {_json_type_word("ts_t")} || ', expected an ISO-8601 string'
            END AS ts_problem,
            CASE WHEN pcode IS NULL AND dup_keys IS NULL
                 THEN json_merge_patch(line, json_object(
                     coalesce(cid_keys[1], 'comment_id'), NULL, coalesce(text_keys[1], 'text'), NULL,
                     coalesce(ts_keys[1], 'created_at'), NULL))
            END AS extra,
            CASE WHEN pcode IS NULL THEN array_to_string(keys, ', ') END AS fields
        FROM t""",
        [f.idx],
    )
