"""Pytest fixtures for a real redis-server (registered through ``pytest_plugins``).

Function scope on purpose: tests kill, fill and flush their server, so sharing one would make
test order matter. Starting one costs well under 0.1 s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from embed_dagster_tests.support.redis_server import RedisServer, RedisServerUnavailable, find_redis_server


def _binary_or_skip() -> str:
    try:
        return find_redis_server()
    except RedisServerUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def redis_server_factory() -> Iterator[Callable[..., RedisServer]]:
    """Start extra servers with options, e.g. ``factory(password="s3cret", maxmemory="2mb")``."""
    binary = _binary_or_skip()
    servers: list[RedisServer] = []

    def make(**kwargs: object) -> RedisServer:
        kwargs.setdefault("binary", binary)
        server = RedisServer(**kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def redis_server(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    """A fresh, empty, password-less redis-server on a free 127.0.0.1 port."""
    return redis_server_factory()
