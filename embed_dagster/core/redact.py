"""Credential-free URLs and strings for logs, metadata, error messages and stored rows."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote

_SECRET_QUERY_KEYS = ("pass", "auth", "token", "secret", "key")


_URL_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_SECRET_QUERY_RE = re.compile(r"(?i)([?&;][^=&#;]*(?:" + "|".join(_SECRET_QUERY_KEYS) + r")[^=&#;]*=)[^&#;]*")


def redact_url(url: str) -> str:
    """Replace a URL's password (or a lone userinfo, often a password) and secret query values by ``***``.

    Every log line and metadata value that mentions a server URL goes through here, so a
    credential in SGLANG_BASE_URL or REDIS_URL never reaches Dagster's event log.

    Why not ``urlsplit``: it trusts the URL to be well formed, and the URLs that reach error
    messages often are not. A password with an unencoded ``#``, ``?`` or ``/`` (``redis://:a#b@h``),
    or a URL without its scheme (``user:pw@host``), put the password into the path or fragment,
    which were printed as they were. Here everything before the last ``@`` (after an optional
    ``scheme://``) is the userinfo, whatever it holds: at worst a label shows ``***`` too much.
    """
    text = str(url)
    scheme = _URL_SCHEME_RE.match(text)
    head = scheme.group(0) if scheme else ""
    rest = text[len(head) :]
    if "@" in rest:
        userinfo, host = rest.rsplit("@", 1)
        user = userinfo.split(":", 1)[0] if ":" in userinfo else None
        rest = f"{user}:***@{host}" if user is not None and "/" not in user else f"***@{host}"
    return head + _SECRET_QUERY_RE.sub(r"\1***", rest)


def url_password(url: str) -> str | None:
    """The password of a URL as written (percent-encoded form), by ``redact_url``'s rule: what
    follows the first ``:`` of everything before the last ``@``. Lenient for the same reason."""
    text = str(url)
    scheme = _URL_SCHEME_RE.match(text)
    rest = text[scheme.end() :] if scheme else text
    if "@" not in rest:
        return None
    userinfo = rest.rsplit("@", 1)[0]
    return userinfo.split(":", 1)[1] or None if ":" in userinfo else None


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
            # the password only: a lone userinfo in a Redis URL is a user name ("default"), and
            # scrubbing an ordinary word out of every stored quarantine row loses data
            value = url_password(value)
        if value and len(value) >= _MIN_SECRET_CHARS:
            out.append(value)
    return out


def all_secrets(extra: Iterable[str | None] = ()) -> list[str]:
    """Registered secrets plus ``extra``, longest first (so a secret containing another goes first)."""
    found = {*_SECRETS, *(e for e in extra if e and len(e) >= _MIN_SECRET_CHARS)}
    return sorted(found, key=len, reverse=True)
