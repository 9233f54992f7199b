"""A real HTTP embedding server that misbehaves on cue, for tests of clients' failure paths.

Tests talk to it over real sockets, the way the client talks to SGLang, instead of mocking the
client's internals; so a test proves the behaviour a user would see.

Usage::

    with FaultServer() as srv:                       # free 127.0.0.1 port, SGLang-shaped answers
        srv.fail_next(Fault.http(500), times=2)      # the next two embedding requests get a 500
        srv.fail_next(Fault.rate_limited(0.05))      # then one 429 with Retry-After: 0.05
        srv.poison_texts.add("bad")                  # any request containing "bad" gets a 400
        srv.reject_base64 = True                     # 400 for encoding_format=base64
        srv.ignore_dimensions = True                 # full native_dim vectors, like no is_matryoshka
        srv.down(); srv.up()                         # stop listening (connection refused) / resume
        client_base_url = srv.base_url               # 'http://127.0.0.1:PORT/v1'
        srv.requests                                 # list[RecordedRequest], in arrival order
        srv.max_in_flight                            # most embedding requests served at once

Scripted faults (``fail_next``) are consumed one per ``POST /v1/embeddings`` in arrival order; when
none is queued the server answers correctly. A correct answer embeds text ``t`` at ``d`` dimensions
as ``expected_vector(t, d)`` (a hash-seeded unit vector, truncated then renormalized the way SGLang
does with is_matryoshka), so a test can check that every row landed under the right key.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import numpy as np

from embed_dagster.dev.local_server import error_body, pseudo_vector

NATIVE_DIM = 1024


def expected_vector(text: str, dim: int, native_dim: int = NATIVE_DIM) -> np.ndarray:
    """What a correct answer holds for ``text`` at ``dim`` dimensions."""
    v = pseudo_vector(text, native_dim)[:dim]
    return (v / np.linalg.norm(v)).astype(np.float32)


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour; build with the class methods."""

    kind: str
    status: int = 500
    message: str = "injected fault"
    retry_after: str | None = None
    seconds: float = 0.0
    dim: int | None = None
    model: str | None = None

    @classmethod
    def http(cls, status: int, message: str = "injected fault", retry_after: float | None = None) -> Fault:
        """Answer with this HTTP status and an SGLang-shaped error body."""
        return cls(
            "http",
            status=status,
            message=message,
            retry_after=None if retry_after is None else f"{retry_after:g}",
        )

    @classmethod
    def rate_limited(cls, retry_after: float = 0.05) -> Fault:
        return cls.http(429, "Too many requests", retry_after=retry_after)

    @classmethod
    def stall(cls, seconds: float) -> Fault:
        """Say nothing for ``seconds`` (past the client's timeout), then answer correctly."""
        return cls("stall", seconds=seconds)

    @classmethod
    def trickle(cls, seconds_per_byte: float = 1.0) -> Fault:
        """Send the headers at once, then the (correct) body one byte every ``seconds_per_byte``.

        Each byte restarts an HTTP read timeout, so only a wall-clock limit stops this.
        """
        return cls("trickle", seconds=seconds_per_byte)

    @classmethod
    def echo_auth(cls, status: int = 401, pad: int = 0) -> Fault:
        """An error whose message echoes the request's Authorization header (the API key); with
        ``pad``, the bare key after ``pad`` characters of other text (to put it across a cut)."""
        return cls("echo_auth", status=status, message="x" * pad)

    @classmethod
    def disconnect(cls) -> Fault:
        """Close the connection without answering."""
        return cls("disconnect")

    @classmethod
    def wrong_dimension(cls, dim: int) -> Fault:
        """Vectors of ``dim`` dimensions whatever was asked."""
        return cls("wrong_dimension", dim=dim)

    @classmethod
    def nan(cls) -> Fault:
        return cls("nan")

    @classmethod
    def too_few(cls) -> Fault:
        """One vector fewer than inputs."""
        return cls("too_few")

    @classmethod
    def shuffled(cls) -> Fault:
        """Correct vectors with correct indices, listed in reverse order (legal: clients must use index)."""
        return cls("shuffled")

    @classmethod
    def duplicate_index(cls) -> Fault:
        """Every item claims index 0 (needs two or more inputs)."""
        return cls("duplicate_index")

    @classmethod
    def unnormalized(cls) -> Fault:
        """Vectors scaled by 3 (norm 3 instead of 1)."""
        return cls("unnormalized")

    @classmethod
    def invalid_json(cls) -> Fault:
        return cls("invalid_json")

    @classmethod
    def deeply_nested_json(cls) -> Fault:
        """A 200 whose body nests past Python's recursion limit (json.loads raises RecursionError)."""
        return cls("deeply_nested_json")

    @classmethod
    def wrong_model(cls, model: str = "some-other-model") -> Fault:
        """Correct vectors, but the response names another model (a server swapped behind the URL)."""
        return cls("wrong_model", model=model)


def _lower(headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: dict | None
    answered: str = "ok"  # "ok", a fault kind, "poison", "no_base64" or "error"
    status: int = 200

    @property
    def inputs(self) -> list[str]:
        inp = (self.body or {}).get("input")
        return [inp] if isinstance(inp, str) else list(inp or [])


@dataclass
class _State:
    faults: deque = field(default_factory=deque)
    requests: list = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format, *args):
        pass

    def _send(self, status: int, payload, headers: dict | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        owner = self.server.owner
        owner._record(RecordedRequest("GET", self.path, _lower(self.headers), None))
        if self.path.rstrip("/") == "/v1/models":
            self._send(
                200,
                {
                    "object": "list",
                    "data": [
                        {"id": owner.model, "object": "model", "owned_by": "sglang", "root": owner.model}
                    ],
                },
            )
        elif self.path.rstrip("/") == "/health":
            self._send(200, b"")
        else:
            self._send(404, error_body("Not found", 404, "NotFoundError"))

    def do_POST(self):
        owner = self.server.owner
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        rec = RecordedRequest("POST", self.path, _lower(self.headers), body)
        owner._record(rec)
        with owner._lock:
            owner._state.in_flight += 1
            owner._state.max_in_flight = max(owner._state.max_in_flight, owner._state.in_flight)
        try:
            self._embed(owner, rec)
        finally:
            with owner._lock:
                owner._state.in_flight -= 1

    def _embed(self, owner: FaultServer, rec: RecordedRequest) -> None:
        if owner.latency_s:
            owner._stop.wait(owner.latency_s)
        body = rec.body
        if not isinstance(body, dict) or not rec.inputs:
            rec.answered, rec.status = "error", 400
            self._send(400, error_body("Input cannot be empty"))
            return
        texts = rec.inputs
        with owner._lock:
            fault = owner._state.faults.popleft() if owner._state.faults else None
        if fault is not None:
            rec.answered = fault.kind
        if fault is not None and fault.kind == "http":
            rec.status = fault.status
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            self._send(
                fault.status,
                error_body(
                    fault.message, fault.status, "RateLimitError" if fault.status == 429 else "ServerError"
                ),
                headers,
            )
            return
        if fault is not None and fault.kind == "echo_auth":
            rec.status = fault.status
            auth = rec.headers.get("authorization", "")
            message = (
                f"{fault.message}{auth.removeprefix('Bearer ')}"
                if fault.message
                else f"bad key {auth} (header: Authorization: {auth})"
            )
            self._send(fault.status, error_body(message, fault.status))
            return
        if fault is not None and fault.kind == "disconnect":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fault is not None and fault.kind == "stall":
            owner._stop.wait(fault.seconds)
        poison = [t for t in texts if t in owner.poison_texts]
        if poison:
            rec.answered, rec.status = "poison", 400
            self._send(400, error_body(f"Input {poison[0]!r} is not allowed"))
            return
        fmt = body.get("encoding_format") or "float"
        if fmt == "base64" and owner.reject_base64:
            rec.answered, rec.status = "no_base64", 400
            self._send(400, error_body("encoding_format must be 'float', got 'base64'"))
            return
        dim = owner.native_dim if owner.ignore_dimensions else int(body.get("dimensions") or owner.native_dim)
        if fault is not None and fault.kind == "wrong_dimension":
            dim = fault.dim
        vectors = np.stack(
            [
                expected_vector(t, dim, owner.native_dim)
                if dim <= owner.native_dim
                else pseudo_vector(t, dim)
                for t in texts
            ]
        )
        if fault is not None and fault.kind == "nan":
            vectors[0, 0] = np.nan
        if fault is not None and fault.kind == "unnormalized":
            vectors *= 3.0
        if fmt == "base64":
            encoded = [base64.b64encode(v.astype("<f4").tobytes()).decode() for v in vectors]
        else:
            # nan cannot go into strict JSON; Python's json writes NaN, as a sloppy server would
            encoded = [v.tolist() for v in vectors]
        data = [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(encoded)]
        if fault is not None and fault.kind == "too_few":
            data = data[:-1]
        if fault is not None and fault.kind == "shuffled":
            data = data[::-1]
        if fault is not None and fault.kind == "duplicate_index":
            for item in data:
                item["index"] = 0
        payload = {
            "object": "list",
            "model": body.get("model"),
            "data": data,
            "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)},
        }
        if fault is not None and fault.kind == "wrong_model":
            payload["model"] = fault.model
        if fault is not None and fault.kind == "invalid_json":
            self._send(200, b'{"object": "list", "data": [')
            return
        if fault is not None and fault.kind == "deeply_nested_json":
            self._send(200, b"[" * 100_000 + b"]" * 100_000)
            return
        if fault is not None and fault.kind == "trickle":
            self._trickle(owner, json.dumps(payload).encode(), fault.seconds)
            return
        self._send(200, payload)

    def _trickle(self, owner: FaultServer, data: bytes, seconds_per_byte: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.flush()
        for i in range(len(data)):
            if owner._stop.wait(seconds_per_byte):
                return
            try:
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
            except OSError:  # the client gave up: what a wall-clock limit should do
                return


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # clients that time out leave broken pipes behind; that is the point of the test


class FaultServer:
    """See the module docstring. Thread-safe; one instance per test (or per module plus ``reset()``)."""

    def __init__(self, native_dim: int = NATIVE_DIM, model: str = "fault-model", host: str = "127.0.0.1"):
        self.native_dim, self.model, self.host = native_dim, model, host
        self.poison_texts: set[str] = set()
        self.reject_base64 = False
        self.ignore_dimensions = False
        self.latency_s = 0.0
        self.port: int | None = None
        self._lock = threading.Lock()
        self._state = _State()
        self._stop = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> Self:
        self._stop.clear()
        self._httpd = _HTTPServer((self.host, self.port or 0), _Handler)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes stalled handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def down(self) -> None:
        """Stop listening: new connections are refused until ``up()``; the port is kept for it."""
        self.stop()

    def up(self) -> None:
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- scripting
    def fail_next(self, fault: Fault, times: int = 1) -> None:
        with self._lock:
            self._state.faults.extend([fault] * times)

    def reset(self) -> None:
        """Forget faults, modes and recorded requests."""
        with self._lock:
            self._state = _State()
        self.poison_texts.clear()
        self.reject_base64 = self.ignore_dimensions = False
        self.latency_s = 0.0

    # -- inspection
    def _record(self, rec: RecordedRequest) -> None:
        with self._lock:
            self._state.requests.append(rec)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._state.requests)

    @property
    def embedding_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path.rstrip("/").endswith("/embeddings")]

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._state.max_in_flight

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return len(self._state.faults)


def wait_until(predicate, timeout_s: float = 5.0) -> bool:
    """Poll ``predicate`` (for tests that wait on server-side effects without sleeping blindly)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
