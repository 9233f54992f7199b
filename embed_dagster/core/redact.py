"""Credential-free URLs and strings for logs, metadata, error messages and stored rows."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

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


# ------------------------------------------------------------------------------------ secrets
# Configured secrets (API keys, Redis passwords) of this process. Whatever comes back from a server
# (error bodies, exception texts) may echo them - a 401 that repeats the Authorization header is
# common - so every such string goes through ``scrub`` before it is logged, raised or stored.
_SECRETS: set[str] = set()
_MIN_SECRET_CHARS = 4  # shorter values would mangle ordinary words; they are not real secrets
_SCHEME_RE = re.compile(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=\-]{6,})")
_ASSIGN_RE = re.compile(r"(?i)\b(token|api[_-]?key|password|passwd|pwd|secret)\b(\s*[:=]\s*)([^\s,;\"'}]+)")
_KEY_SHAPE_RE = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")


# The same rules as (pattern, replacement) for vectorized scrubbers (RE2 in Arrow: the same syntax).
PATTERN_RULES = (
    (_SCHEME_RE.pattern, r"\1\2***"),
    (_ASSIGN_RE.pattern, r"\1\2***"),
    (_KEY_SHAPE_RE.pattern, "***"),
)


def register_secret(value: str | None) -> None:
    """Remember a configured secret so ``scrub`` removes it from any string, in any module."""
    if value and isinstance(value, str) and len(value) >= _MIN_SECRET_CHARS and value != "EMPTY":
        _SECRETS.add(value)
        encoded = quote(value, safe="")
        if encoded != value:
            _SECRETS.add(encoded)  # as it appears in a URL


def scrub(text: object, extra: Iterable[str | None] = ()) -> str:
    """``text`` with every registered (and ``extra``) secret, bearer token and ``sk-...`` key as ``***``.

    The one scrubber for strings from servers, files and exceptions; idempotent, never raises.
    """
    out = str(text)
    for secret in all_secrets(extra):
        out = out.replace(secret, "***")
    for pattern in (_SCHEME_RE, _ASSIGN_RE):
        out = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}***", out)
    return _KEY_SHAPE_RE.sub("***", out)


SECRET_ENV_VARS = ("SGLANG_API_KEY", "REDIS_PASSWORD", "REDIS_URL")


def env_secrets(names: Iterable[str] = SECRET_ENV_VARS) -> list[str]:
    """The secrets this deployment passes through the environment (a URL contributes its password).

    For code that handles file or server text without holding the resources that own the secrets
    (ingest's quarantine rows): scrub with these too.
    """
    import os

    out = []
    for name in names:
        value = os.environ.get(name)
        if not value:
            continue
        if "://" in value:
            try:
                parts = urlsplit(value)
                value = parts.password or (parts.username if "@" in parts.netloc else None)
            except ValueError:
                value = None
        if value and len(value) >= _MIN_SECRET_CHARS:
            out.append(value)
    return out


def all_secrets(extra: Iterable[str | None] = ()) -> list[str]:
    """Registered secrets plus ``extra``, longest first (so a secret containing another goes first)."""
    found = {*_SECRETS, *(e for e in extra if e and len(e) >= _MIN_SECRET_CHARS)}
    return sorted(found, key=len, reverse=True)
