"""A throwaway PostgreSQL server for tests, started the way the instance-storage profile test does:
the image's initdb/pg_ctl as the `postgres` system user, on a free loopback port."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from embed_dagster_tests.support.dagster_procs import free_port

PG_BIN = Path(os.environ.get("EMBED_DAGSTER_PG_BIN", "/usr/lib/postgresql/15/bin"))


def missing() -> str | None:
    """Why a server cannot be started here, or None."""
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_ctl").exists():
        return f"PostgreSQL server binaries not found in {PG_BIN} (set EMBED_DAGSTER_PG_BIN)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no `postgres` system user to run the PostgreSQL server as"
    if os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name != "postgres":
        return "needs root (to run PostgreSQL as the postgres user) or to run as postgres"
    if os.geteuid() == 0 and not shutil.which("runuser"):
        return "runuser not found (util-linux)"
    return None


def _as_postgres(*cmd: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)


@contextmanager
def postgres_server(user: str, database: str) -> Iterator[dict]:
    """Yields host, port, user and database of a fresh server with trust authentication."""
    root = Path(tempfile.mkdtemp(prefix="embed-dagster-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    owner = pwd.getpwnam("postgres")
    for path in (root, sockets):
        os.chown(path, owner.pw_uid, owner.pw_gid)
    port = free_port()
    run = dict(check=True, capture_output=True, text=True, timeout=120)
    started = False
    try:
        subprocess.run(
            _as_postgres(
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                user,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ),
            **run,
        )
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_postgres(
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(root / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ),
            **run,
        )
        started = True
        subprocess.run(
            _as_postgres(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, database),
            **run,
        )
        yield {"host": "127.0.0.1", "port": port, "user": user, "dbname": database}
    finally:
        if started:
            subprocess.run(
                _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)
