"""Credential-free URLs for logs, metadata and error messages."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_SECRET_QUERY_KEYS = ("pass", "auth", "token", "secret", "key")


def redact_url(url: str) -> str:
    """Replace a URL's password (or a lone userinfo, often a password) and secret query values by ``***``.

    Every log line and metadata value that mentions a server URL goes through here, so a
    credential in SGLANG_BASE_URL or REDIS_URL never reaches Dagster's event log.
    """
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        userinfo = f"{userinfo.split(':', 1)[0]}:***" if ":" in userinfo else "***"
        netloc = f"{userinfo}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        pairs = [(k, "***" if any(s in k.lower() for s in _SECRET_QUERY_KEYS) else v) for k, v in pairs]
        query = urlencode(pairs, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
