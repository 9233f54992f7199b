"""A small SGLang-compatible embedding server, so the pipeline runs with no GPU and no SGLang install.

It speaks the subset of SGLang's OpenAI-compatible API that the embedding client uses, with SGLang's
behaviour where it matters to a client:

* ``POST /v1/embeddings``: ``input`` (string or list of strings), ``dimensions`` (honoured the way
  SGLang does when launched with ``--json-model-override-args '{"is_matryoshka": true}'``: truncate,
  then L2-renormalize; more than the native 512 is a 400), ``encoding_format`` ``float`` or ``base64``
  (little-endian float32), ``usage`` token counts.
* Errors use SGLang's flat shape ``{"object": "error", "message", "type", "param", "code"}``; empty or
  whitespace-only input is rejected with SGLang's own messages.
* ``GET /v1/models`` (SGLang's ``ModelList``) and ``GET /health``.

Dynamic batching stands in for SGLang's scheduler: concurrent requests are merged into one encoder
call of at most ``--max-batch`` texts, waiting at most ``--max-wait-ms`` for company. Without it, a
client that sends many requests at once would pay one forward pass per request.

``--latency-fixed-ms F --latency-per-token-ms T`` replaces the model by a latency model of a GPU
server (no real model; deterministic pseudo-vectors from a hash of the text; each merged forward
pass sleeps ``F + T * tokens``). Benchmarks use it to measure how close a client gets to a server's
capacity when the server, not this machine's CPU, is the bottleneck.

The model (``USEEncoder``) and the truncation are those of the pipeline's in-process embedder
(``embed_dagster.core.embedding.local``), so this server and the embedded default give the same vectors.

It binds 127.0.0.1 unless told otherwise: it has no authentication.
"""

from __future__ import annotations

import argparse
import base64
import collections
import functools
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import numpy as np

from embed_dagster.core.embedding.local import (  # noqa: F401 - re-exported for the stand-in's users
    MODEL_NAME,
    NATIVE_DIM,
    USEEncoder,
    shared_encoder,
    truncate_renormalize,
)

MAX_BODY_BYTES = 64 * 1024 * 1024
# Inputs per request: the answer costs ~10 KB of JSON per text, so the body cap alone let a 0.5 MB
# request of 100,000 one-letter strings take 4 GB (stop-24 adversarial pass). Clients send ≤ 256.
MAX_INPUTS = 4096
IDLE_TIMEOUT_S = 60.0  # a connection silent this long (idle keep-alive, half-sent request) is closed

log = logging.getLogger("embed_dagster.dev.local_server")


class BadRequest(Exception):
    """A request the client must fix; answered with a 400 in SGLang's error shape."""

    def __init__(self, message: str, status: int = 400, err_type: str = "BadRequestError"):
        super().__init__(message)
        self.message, self.status, self.err_type = message, status, err_type


def error_body(message: str, status: int = 400, err_type: str = "BadRequestError") -> dict:
    """SGLang's ErrorResponse (flat; the newest SGLang wraps the same fields in {"error": ...})."""
    return {"object": "error", "message": message, "type": err_type, "param": None, "code": status}


# ---------------------------------------------------------------- encoders


def _estimate_tokens(text: str) -> int:
    # ~4 bytes per token: ~4 Latin characters or ~1.3 CJK characters, close to BPE tokenizers.
    return len(text.encode("utf-8")) // 4 + 2


@functools.lru_cache(maxsize=16384)
def pseudo_vector(text: str, dim: int = NATIVE_DIM) -> np.ndarray:
    """Deterministic unit vector for a text, so latency-model runs are reproducible and checkable.

    Cached (read-only) because a stand-in GPU must not spend the CPU that the client under test needs.
    """
    seed = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    v /= np.linalg.norm(v)
    v.setflags(write=False)
    return v


class LatencyModelEncoder:
    """Stands in for a GPU: each merged forward pass costs fixed + per-token time, and no CPU."""

    name = MODEL_NAME

    def __init__(self, fixed_ms: float, per_token_ms: float):
        self.fixed_s, self.per_token_s = fixed_ms / 1000.0, per_token_ms / 1000.0
        self.passes = 0

    def encode(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        started = time.monotonic()
        tokens = [_estimate_tokens(t) for t in texts]
        out = np.stack([pseudo_vector(t) for t in texts])
        self.passes += 1
        remaining = self.fixed_s + self.per_token_s * sum(tokens) - (time.monotonic() - started)
        if remaining > 0:
            time.sleep(remaining)
        return out, tokens


# ---------------------------------------------------------------- dynamic batching


@dataclass
class _Job:
    texts: list[str]
    done: threading.Event = field(default_factory=threading.Event)
    vectors: np.ndarray | None = None
    tokens: list[int] | None = None
    error: BaseException | None = None


class DynamicBatcher:
    """Merges concurrent requests into one encoder call, like SGLang's scheduler batches prefills.

    One worker thread owns the encoder (one "GPU"). It takes the oldest job, then keeps adding queued
    jobs until the pass holds ``max_batch`` texts or ``max_wait_s`` has passed since it started
    gathering. A request larger than ``max_batch`` is split into several jobs, so a pass never exceeds
    ``max_batch`` and small requests are not stuck behind one huge one.
    """

    def __init__(self, encoder, max_batch: int = 256, max_wait_s: float = 0.005):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.encoder, self.max_batch, self.max_wait_s = encoder, max_batch, max_wait_s
        self._queue: collections.deque[_Job] = collections.deque()
        self._cond = threading.Condition()
        self._stopped = False
        self.passes = 0
        self.pass_sizes: collections.Counter[int] = collections.Counter()
        self._thread = threading.Thread(target=self._run, name="embed-batcher", daemon=True)
        self._thread.start()

    def submit(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """Embeds texts (merged with whatever else is queued); returns (vectors, prompt tokens)."""
        jobs = [_Job(texts[i : i + self.max_batch]) for i in range(0, len(texts), self.max_batch)]
        with self._cond:
            self._queue.extend(jobs)
            self._cond.notify()
        for job in jobs:
            job.done.wait()
            if job.error is not None:
                raise job.error
        tokens = sum(sum(job.tokens) for job in jobs)
        if len(jobs) == 1:
            return jobs[0].vectors, tokens
        return np.concatenate([job.vectors for job in jobs]), tokens

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _gather(self) -> list[_Job] | None:
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return None
            batch = [self._queue.popleft()]
            size = len(batch[0].texts)
            deadline = time.monotonic() + self.max_wait_s
            while size < self.max_batch:
                if not self._queue:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                    continue
                if size + len(self._queue[0].texts) > self.max_batch:
                    break
                job = self._queue.popleft()
                batch.append(job)
                size += len(job.texts)
            return batch

    def _encode(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        """One forward pass, counted."""
        vectors, tokens = self.encoder.encode(texts)
        self.passes += 1
        self.pass_sizes[len(texts)] += 1
        return vectors, tokens

    def _encode_alone(self, job: _Job) -> None:
        try:
            job.vectors, job.tokens = self._encode(job.texts)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting request thread
            job.error = exc
        job.done.set()

    def _run(self) -> None:
        while (batch := self._gather()) is not None:
            texts = [t for job in batch for t in job.texts]
            try:
                vectors, tokens = self._encode(texts)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting request threads
                if len(batch) == 1:
                    batch[0].error = exc
                    batch[0].done.set()
                    continue
                # several requests merged: run each alone, so one bad input fails its own request
                # only (it failed every request merged with it; SGLang fails the bad one)
                for job in batch:
                    self._encode_alone(job)
                continue
            start = 0
            for job in batch:
                job.vectors = vectors[start : start + len(job.texts)]
                job.tokens = tokens[start : start + len(job.texts)]
                start += len(job.texts)
                job.done.set()


# ---------------------------------------------------------------- request handling


def validate_request(body: object) -> tuple[list[str], int | None, str]:
    """Returns (texts, dimensions, encoding_format) or raises BadRequest with SGLang's messages."""
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object")
    inp = body.get("input")
    if not inp:
        raise BadRequest("Input cannot be empty")
    if isinstance(inp, str):
        if not inp.strip():
            raise BadRequest("Input cannot be empty or whitespace only")
        texts = [inp]
    elif isinstance(inp, list):
        if not all(isinstance(t, str) for t in inp):
            raise BadRequest(
                "All items in input list must be strings (token-id input is not supported "
                "by this local server)"
            )
        if len(inp) > MAX_INPUTS:
            raise BadRequest(f"Input list has {len(inp)} items; at most {MAX_INPUTS} per request", 413)
        for i, t in enumerate(inp):
            if not t.strip():
                raise BadRequest(f"Input at index {i} cannot be empty or whitespace only")
        texts = inp
    else:
        raise BadRequest("Input must be a string or a list of strings")
    for i, t in enumerate(texts):  # a lone surrogate ("\ud800" in JSON) is no text the model can read
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(f"Input at index {i} is not valid Unicode text (a lone surrogate)") from None

    dims = body.get("dimensions")
    if dims is not None:
        if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
            raise BadRequest(f"dimensions must be a positive integer, got {dims!r}")
        if dims > NATIVE_DIM:
            raise BadRequest(
                f"Requested dimensions {dims} exceeds the model's hidden size {NATIVE_DIM}; "
                f"use at most {NATIVE_DIM}"
            )
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise BadRequest(f"encoding_format must be 'float' or 'base64', got {fmt!r}")
    return texts, dims, fmt


def build_response(vectors: np.ndarray, fmt: str, model: str, prompt_tokens: int) -> dict:
    if fmt == "base64":
        le = vectors.astype("<f4", copy=False)
        items = [base64.b64encode(row.tobytes()).decode("ascii") for row in le]
    else:
        items = vectors.tolist()
    return {
        "object": "list",
        "model": model,
        "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(items)],
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


class EmbeddingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections as they do with SGLang
    server_version = "embed-dagster-local/1"
    # socket timeout: a thread per connection, so silent ones must not hold theirs for ever
    timeout = IDLE_TIMEOUT_S
    server: EmbeddingHTTPServer

    def log_message(self, format, *args):
        if self.server.verbose:
            log.info("%s %s", self.address_string(), format % args)

    def _send_json(self, status: int, payload: dict | None) -> None:
        data = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/health":
            self._send_json(200, None)
        elif path == "/v1/models":
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": self.server.model_name,
                            "object": "model",
                            "created": self.server.started,
                            "owned_by": "sglang",
                            "root": self.server.model_name,
                            "max_model_len": None,
                        }
                    ],
                },
            )
        else:
            self._send_json(404, error_body(f"Not found: {path}", 404, "NotFoundError"))

    def do_POST(self):
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0:  # rfile.read(-1) would read until the client closes, past the cap
                self.close_connection = True
                raise BadRequest("Content-Length must be a non-negative integer")
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                raise BadRequest(f"Request body over {MAX_BODY_BYTES} bytes; send smaller batches", 413)
            raw = self.rfile.read(length)
            if path != "/v1/embeddings":
                raise BadRequest(f"Not found: {path}", 404, "NotFoundError")
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise BadRequest("Request body is not valid JSON") from None
            texts, dims, fmt = validate_request(body)
            vectors, tokens = self.server.batcher.submit(texts)
            payload = build_response(truncate_renormalize(vectors, dims), fmt, self.server.model_name, tokens)
        except BadRequest as exc:
            self._send_json(exc.status, error_body(exc.message, exc.status, exc.err_type))
            return
        except Exception as exc:  # answer 500 in SGLang's shape, keep serving
            log.exception("embedding request failed")
            self._send_json(500, error_body(f"Internal server error: {exc}", 500, "InternalServerError"))
            return
        self._send_json(200, payload)


class EmbeddingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the benchmark opens many connections at once

    def __init__(self, address, batcher: DynamicBatcher, model_name: str = MODEL_NAME, verbose=False):
        super().__init__(address, EmbeddingHandler)
        self.batcher, self.model_name, self.verbose = batcher, model_name, verbose
        self.started = int(time.time())


# ---------------------------------------------------------------- command line


def make_server(
    host: str = "127.0.0.1",
    port: int = 0,
    max_batch: int = 256,
    max_wait_ms: float = 5.0,
    latency_fixed_ms: float | None = None,
    latency_per_token_ms: float | None = None,
    verbose: bool = False,
) -> EmbeddingHTTPServer:
    if latency_fixed_ms is not None or latency_per_token_ms is not None:
        encoder = LatencyModelEncoder(latency_fixed_ms or 0.0, latency_per_token_ms or 0.0)
    else:
        encoder = shared_encoder()[0]  # the in-process embedder's model: one implementation, one load
    batcher = DynamicBatcher(encoder, max_batch=max_batch, max_wait_s=max_wait_ms / 1000.0)
    return EmbeddingHTTPServer((host, port), batcher, verbose=verbose)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m embed_dagster.dev.local_server", description=__doc__.split("\n")[0]
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; no authentication)")
    p.add_argument("--port", type=int, default=30000, help="0 picks a free port (see --ready-file)")
    p.add_argument("--max-batch", type=int, default=256, help="most texts merged into one forward pass")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a pass waits to fill up")
    p.add_argument("--latency-fixed-ms", type=float, default=None, help="latency-model mode: cost per pass")
    p.add_argument("--latency-per-token-ms", type=float, default=None, help="latency-model mode: per token")
    p.add_argument("--ready-file", default=None, help="write the bound port here once serving")
    p.add_argument("--verbose", action="store_true", help="log every request")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.max_batch < 1 or args.max_wait_ms < 0:
        p.error("--max-batch must be >= 1 and --max-wait-ms >= 0")
    try:
        server = make_server(
            args.host,
            args.port,
            args.max_batch,
            args.max_wait_ms,
            args.latency_fixed_ms,
            args.latency_per_token_ms,
            args.verbose,
        )
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    mode = "latency model" if isinstance(server.batcher.encoder, LatencyModelEncoder) else MODEL_NAME
    log.info(
        "serving %s on http://%s:%d/v1 (max batch %d, max wait %.1f ms)",
        mode,
        host,
        port,
        args.max_batch,
        args.max_wait_ms,
    )
    if args.ready_file:
        tmp = Path(args.ready_file + ".tmp")
        tmp.write_text(str(port))
        tmp.replace(args.ready_file)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.batcher.stop()
        server.server_close()
    return 0


# ---------------------------------------------------------------- subprocess helper


class LocalServerProcess:
    """Runs the server in a subprocess on a free loopback port, for tests, benchmarks and the demo.

    The server picks its own port (``--port 0``) and reports it through a ready file, so there is no
    race between choosing a free port and binding it.
    """

    def __init__(
        self, extra_args: list[str] | None = None, host: str = "127.0.0.1", startup_timeout_s: float = 60.0
    ):
        self.extra_args = list(extra_args or [])
        self.host, self.startup_timeout_s = host, startup_timeout_s
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("local embedding server is not running")
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> LocalServerProcess:
        self._tmp = tempfile.TemporaryDirectory(prefix="embed-local-server-")
        ready = Path(self._tmp.name) / "port"
        log_path = Path(self._tmp.name) / "server.log"
        env = dict(os.environ)
        repo_root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (repo_root, env.get("PYTHONPATH")) if p)
        cmd = [
            sys.executable,
            "-m",
            "embed_dagster.dev.local_server",
            "--host",
            self.host,
            "--port",
            "0",
            "--ready-file",
            str(ready),
            *self.extra_args,
        ]
        with open(log_path, "wb") as log_file:
            self.proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(
                    f"local embedding server exited with code {self.proc.returncode} "
                    f"before it was ready; its output:\n{tail}"
                )
            if self.port is None and ready.exists():
                self.port = int(ready.read_text())
            if self.port is not None and self._answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"local embedding server did not answer GET /v1/models within "
            f"{self.startup_timeout_s:.0f} s; see {' '.join(cmd)}"
        )

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for tests that need a port nobody listens on)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
