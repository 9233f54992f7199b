"""Redis hot tier for embedding vectors, shared by every worker.

Redis here is an accelerator, never a source of truth: every failure (unreachable, killed mid-run,
full under ``noeviction``, a garbage value) turns into a miss or a skipped write, is counted in
``stats`` and warned about once, and the caller carries on with the durable store. Nothing in this
module raises because of Redis; only caller bugs (bad shapes, bad namespace) raise ``ValueError``.

Layout, versioned so a future change cannot misread old data:
  key   ``embed:v1:{namespace}:{text_hash}``  (namespace = the model key id, so vectors of one
        model key can never be served for another; hashes may not contain ':' to keep keys unambiguous)
  value 8-byte header ``b"EV" | value version (u8) | dtype code (u8) | dim (u32 LE)`` + little-endian
        float32 or float16 vector bytes. The header makes the dimension checkable on read and lets
        a float16 cache read values written by a float32 one (and vice versa).
"""

from __future__ import annotations

import logging
import re
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from embed_dagster.core.redact import redact_url, register_secret, url_password

KEY_SCHEME_VERSION = 1
KEY_PREFIX = f"embed:v{KEY_SCHEME_VERSION}:"
VALUE_MAGIC = b"EV"
VALUE_VERSION = 1
DTYPE_FLOAT32 = 1
DTYPE_FLOAT16 = 2
_HEADER = struct.Struct("<2sBBI")
HEADER_SIZE = _HEADER.size  # 8
_DTYPES = {DTYPE_FLOAT32: np.dtype("<f4"), DTYPE_FLOAT16: np.dtype("<f2")}

_NAMESPACE_RE = re.compile(r"[A-Za-z0-9._:=+/\-]{1,200}")
_SCHEMES = ("redis", "rediss", "unix")

ProgressCallback = Callable[[str, int, int], None]


NORM_TOLERANCE = 1e-3  # the embedding client's default norm_tolerance: vectors are stored unit length


def valid_vectors(matrix: np.ndarray, tolerance: float = NORM_TOLERANCE) -> np.ndarray:
    """Per row: finite and of unit norm, the checks every server answer passes before it is stored.

    Why also on reads: a value with a valid header and length can still hold zeros or 1e30 (a
    bit flip, a bug, another writer); counted as a hit, it would be copied into the durable store
    and served for good. A failing row is a miss, so it is fetched again and overwritten.
    The dimension is checked by the header and length already.
    """
    if matrix.size == 0:
        return np.ones(len(matrix), dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        norms = np.linalg.norm(matrix.astype(np.float64), axis=1)
    return np.isfinite(matrix).all(axis=1) & (np.abs(norms - 1.0) <= tolerance)


def encode_header(dtype_code: int, dimensions: int) -> bytes:
    return _HEADER.pack(VALUE_MAGIC, VALUE_VERSION, dtype_code, dimensions)


def redis_key(namespace: str, text_hash: str) -> str:
    return f"{KEY_PREFIX}{namespace}:{text_hash}"


@dataclass
class CacheStats:
    """Counters for one cache object; ``hits + misses`` equals the number of hashes asked for."""

    hits: int = 0
    misses: int = 0  # includes corrupt values and hashes not asked because Redis was unavailable
    corrupt: int = 0
    skipped: int = 0  # lookups not sent because Redis was unavailable
    keys_written: int = 0
    rejected_writes: int = 0  # writes refused (OOM, non-finite vector) or not sent after a failure
    bytes_read: int = 0
    bytes_written: int = 0
    lookup_s: float = 0.0
    write_s: float = 0.0
    degraded: bool = False
    errors: int = 0  # failed round trips + commands Redis rejected

    def as_metadata(self) -> dict[str, int | float | bool]:
        out = asdict(self)
        out["lookup_s"] = round(self.lookup_s, 4)
        out["write_s"] = round(self.write_s, 4)
        return out


class RedisVectorCache:
    """Bulk get/set of embedding vectors in one namespace, degrading to a no-op on any Redis failure."""

    def __init__(
        self,
        url: str,
        namespace: str,
        dimensions: int,
        *,
        ttl_s: int = 0,
        float16: bool = False,
        chunk_size: int = 1000,
        password: str | None = None,
        username: str | None = None,
        log: logging.Logger | logging.LoggerAdapter | None = None,
        socket_timeout_s: float = 2.0,
        progress: ProgressCallback | None = None,
    ) -> None:
        if not isinstance(url, str):
            raise ValueError(f"Redis URL must be a string, got {type(url).__name__}")
        if not isinstance(namespace, str) or not _NAMESPACE_RE.fullmatch(namespace):
            raise ValueError(
                f"invalid cache namespace {namespace!r}: use 1-200 characters from A-Z a-z 0-9 . _ : = + / -"
            )
        if not isinstance(dimensions, int) or dimensions <= 0:
            raise ValueError(f"dimensions must be a positive integer, got {dimensions!r}")
        if not isinstance(ttl_s, int) or ttl_s < 0:
            raise ValueError(f"ttl_s must be an integer >= 0 (0 = no expiry), got {ttl_s!r}")
        if not isinstance(chunk_size, int) or chunk_size <= 0:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        self.url = redact_url(url)  # only the redacted form is ever kept
        self.namespace = namespace
        self.dimensions = dimensions
        self.ttl_s = ttl_s
        self.float16 = bool(float16)
        self.chunk_size = chunk_size
        self.log = log or logging.getLogger(__name__)
        self.stats = CacheStats()
        self._progress = progress
        self._prefix = f"{KEY_PREFIX}{namespace}:"
        self._write_code = DTYPE_FLOAT16 if self.float16 else DTYPE_FLOAT32
        # float16 rounding moves a 512-d unit vector's norm by ~1e-4; 1e-2 still refuses 0, 5.0, 1e30
        self._tolerance = 1e-2 if self.float16 else NORM_TOLERANCE
        self._write_header = np.frombuffer(encode_header(self._write_code, dimensions), dtype=np.uint8)
        self._read_formats = {
            encode_header(code, dimensions): (dtype, HEADER_SIZE + dtype.itemsize * dimensions)
            for code, dtype in _DTYPES.items()
        }
        self._warned: set[str] = set()
        self._secrets = [x for x in (url_password(url), password) if x]  # scrubbed from emitted text
        # redis-py is imported here, not at module level: it is ~0.4 s of every process's start-up
        # (each Dagster run, each CLI call), and a deployment without REDIS_URL never needs it.
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.connection import ConnectionPool, parse_url
        from redis.exceptions import RedisError
        from redis.retry import Retry

        self._client: redis.Redis | None = None
        self._available = False

        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme not in _SCHEMES:
            raise ValueError(f"Redis URL {self.url!r} must start with redis://, rediss:// or unix://")
        try:
            options = parse_url(url)
        except ValueError:
            # not redis-py's text: it quotes pieces of the URL, and a password with an unencoded
            # '#' or '/' reaches it cut in pieces that no scrubber recognizes
            raise ValueError(
                f"invalid Redis URL {self.url!r}: it cannot be parsed; percent-encode any of "
                "# ? / @ : in the password (or pass it as REDIS_PASSWORD)"
            ) from None
        if password is not None:  # explicit arguments win over the URL (redis-py does the opposite)
            options["password"] = password
        if username is not None:
            options["username"] = username
        if options.get("password"):
            self._secrets.append(options["password"])
        elif options.get("username"):  # a lone userinfo (redis://secret@host) is often a password
            self._secrets.append(options["username"])
        # ... and the process's one scrubber learns the password too: an embedding server's error
        # text that echoes it (a shared proxy) must lose it as well (the README says it does)
        for secret in (url_password(url), password, options.get("password")):
            register_secret(secret)
        options.setdefault("socket_timeout", socket_timeout_s)  # ?socket_timeout= in the URL wins
        options.setdefault("socket_connect_timeout", socket_timeout_s)
        # One quick retry rides out a dropped idle connection; more would only delay the fallback.
        options["retry"] = Retry(ExponentialBackoff(cap=0.2, base=0.05), 1)
        self._client = redis.Redis(connection_pool=ConnectionPool(**options))
        try:
            self._client.ping()
            self._available = True
        except (RedisError, OSError) as exc:
            self._degrade(exc, "connect")
        except TypeError as exc:  # an unknown ?option= in the URL reaches the connection constructor
            raise ValueError(f"invalid Redis URL {self.url!r}: {self._scrub(str(exc))}") from None

    # -- state -----------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return self._available

    def close(self) -> None:
        from redis.exceptions import RedisError

        if self._client is not None:
            try:
                self._client.close()
            except (RedisError, OSError):
                pass

    def __enter__(self) -> RedisVectorCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"RedisVectorCache(url={self.url!r}, namespace={self.namespace!r}, available={self._available})"
        )

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            self.log.warning(message)

    def _degrade(self, exc: BaseException, during: str) -> None:
        """Stop using Redis for the rest of this object's life: one warning, then silence."""
        self._available = False
        self.stats.degraded = True
        self.stats.errors += 1
        reason = self._scrub(f"{type(exc).__name__}: {exc}")
        self._warn_once(
            "unavailable",
            f"Redis cache at {self.url} unavailable during {during} ({reason}); "
            "continuing with the durable store only",
        )

    def _keys(self, hashes: Sequence[str]) -> list[str]:
        prefix = self._prefix
        keys = []
        for h in hashes:
            if not isinstance(h, str) or not h or ":" in h:
                raise ValueError(f"invalid text hash {h!r}: must be a non-empty string without ':'")
            keys.append(prefix + h)
        return keys

    def _empty(self) -> np.ndarray:
        return np.empty((0, self.dimensions), dtype=np.float32)

    # -- reads -----------------------------------------------------------------------------
    def _decode_chunk(
        self, hashes: Sequence[str], values: Sequence[bytes | None]
    ) -> tuple[list[str], np.ndarray]:
        """Validate header and length of each value; decode all valid ones with one copy per dtype."""
        groups: dict[bytes, tuple[list[int], list[bytes]]] = {}
        found: list[str] = []
        corrupt = 0
        nbytes = 0
        formats = self._read_formats
        for h, value in zip(hashes, values, strict=True):
            if value is None:
                continue
            nbytes += len(value)
            header = value[:HEADER_SIZE]
            fmt = formats.get(header)
            if fmt is None or len(value) != fmt[1]:
                corrupt += 1
                continue
            slot = groups.setdefault(header, ([], []))
            slot[0].append(len(found))
            slot[1].append(value)
            found.append(h)
        out = np.empty((len(found), self.dimensions), dtype=np.float32)
        for header, (positions, blobs) in groups.items():
            dtype, length = formats[header]
            raw = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), length)
            out[positions] = raw[:, HEADER_SIZE:].view(dtype)
        ok = valid_vectors(out, self._tolerance)
        if not ok.all():  # right shape, garbage payload (zeros, 5.0, 1e30, NaN): as bad as a wrong header
            corrupt += int((~ok).sum())
            found = [h for h, good in zip(found, ok, strict=True) if good]
            out = out[ok]
        self.stats.bytes_read += nbytes
        if corrupt:
            self.stats.corrupt += corrupt
            self._warn_once(
                "corrupt", f"Redis cache at {self.url}: ignoring malformed cached vectors (counted as misses)"
            )
        return found, out

    def get_many(self, hashes: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """Look up vectors for ``hashes``: one MGET round trip per chunk, never one per key.

        Returns the found hashes in input order and a float32 matrix of shape (found, dimensions).
        On failure mid-way the chunks already read are still returned.
        """
        from redis.exceptions import RedisError

        hashes = list(hashes)
        total = len(hashes)
        keys = self._keys(hashes)
        if not total:
            return [], self._empty()
        if not self._available:
            self.stats.skipped += total
            self.stats.misses += total
            return [], self._empty()
        started = time.perf_counter()
        found: list[str] = []
        parts: list[np.ndarray] = []
        done = 0
        try:
            for start in range(0, total, self.chunk_size):
                stop = min(start + self.chunk_size, total)
                values = self._client.mget(keys[start:stop])
                chunk_found, matrix = self._decode_chunk(hashes[start:stop], values)
                found += chunk_found
                parts.append(matrix)
                done = stop
                if self._progress is not None:
                    self._progress("get", done, total)
        except (RedisError, OSError) as exc:
            self._degrade(exc, "lookup")
            self.stats.skipped += total - done
        finally:
            self.stats.lookup_s += time.perf_counter() - started
        self.stats.hits += len(found)
        self.stats.misses += total - len(found)
        if not parts:
            return [], self._empty()
        return found, (parts[0] if len(parts) == 1 else np.concatenate(parts))

    # -- writes ----------------------------------------------------------------------------
    def _encode_chunk(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Header + little-endian payload for each row in one buffer; also which rows are valid."""
        dtype = _DTYPES[self._write_code]
        payload = np.ascontiguousarray(matrix, dtype=dtype)
        finite = valid_vectors(payload, self._tolerance)
        rows = payload.shape[0]
        buf = np.empty((rows, HEADER_SIZE + payload.shape[1] * dtype.itemsize), dtype=np.uint8)
        buf[:, :HEADER_SIZE] = self._write_header
        buf[:, HEADER_SIZE:] = payload.view(np.uint8).reshape(rows, -1)
        return buf, finite

    def set_many(self, hashes: Sequence[str], matrix: np.ndarray) -> int:
        """Store vectors: one pipelined round trip of ``SET key value [EX ttl]`` per chunk.

        Memory stays bounded by one encoded chunk. Returns the number of keys Redis accepted.
        Rows that are not finite or not unit length are not written (they would only come back as
        corrupt).
        """
        from redis.exceptions import OutOfMemoryError, RedisError

        hashes = list(hashes)
        matrix = np.asarray(matrix)
        if matrix.ndim != 2 or matrix.shape != (len(hashes), self.dimensions):
            raise ValueError(
                f"set_many needs a ({len(hashes)}, {self.dimensions}) matrix, got shape {matrix.shape}"
            )
        keys = self._keys(hashes)
        total = len(keys)
        if not total:
            return 0
        if not self._available:
            self.stats.rejected_writes += total
            return 0
        ex = self.ttl_s or None
        written = 0
        done = 0
        started = time.perf_counter()
        try:
            for start in range(0, total, self.chunk_size):
                stop = min(start + self.chunk_size, total)
                buf, finite = self._encode_chunk(matrix[start:stop])
                pipe = self._client.pipeline(transaction=False)
                sent = 0
                for i, key in enumerate(keys[start:stop]):
                    if finite[i]:
                        pipe.set(key, buf[i].tobytes(), ex=ex)
                        sent += 1
                results = pipe.execute(raise_on_error=False) if sent else []
                failures = [r for r in results if isinstance(r, Exception)]
                ok = sent - len(failures)
                written += ok
                self.stats.bytes_written += ok * buf.shape[1]
                self.stats.rejected_writes += (stop - start) - ok
                done = stop
                if failures:
                    self.stats.errors += len(failures)
                    self._warn_write_failures(failures)
                    if len(failures) == sent and all(isinstance(r, OutOfMemoryError) for r in failures):
                        break  # Redis is full: the rest of this call would be refused too
                if self._progress is not None:
                    self._progress("set", done, total)
        except (RedisError, OSError) as exc:
            self._degrade(exc, "write")
        finally:
            self.stats.write_s += time.perf_counter() - started
        self.stats.rejected_writes += total - done
        self.stats.keys_written += written
        return written

    def _warn_write_failures(self, failures: list[Exception]) -> None:
        from redis.exceptions import OutOfMemoryError

        if any(isinstance(f, OutOfMemoryError) for f in failures):
            self._warn_once(
                "oom",
                f"Redis cache at {self.url} is full (maxmemory reached, writes refused); "
                "vectors are still saved in the durable store",
            )
        else:
            reason = self._scrub(f"{type(failures[0]).__name__}: {failures[0]}")
            self._warn_once("write", f"Redis cache at {self.url} refused writes ({reason})")
