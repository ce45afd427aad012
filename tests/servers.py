"""Real servers on loopback for tests: redis-server, Chroma, a socket that never answers."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float) -> bool:
    """Wait until something listens on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.05)
    return False


class RedisServer:
    """A throwaway redis-server process with no persistence."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make test installs it)")
        self.port = port or free_port()  # a port: the same server back after a stop
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        if not wait_for_port(self.port, 10):
            self.stop()
            raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class ChromaServer:
    """A throwaway `chroma run` server (the one a clinic points CHROMA_URL at)."""

    def __init__(self, workdir: Path, binary: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                str(binary),
                "run",
                "--path",
                str(workdir / "chroma-server"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        if not wait_for_port(self.port, 30):
            self.stop()
            raise RuntimeError("chroma run did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """Listen on a port, accept connections and never answer (an LLM server that hangs)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


class PostgresServer:
    """A throwaway PostgreSQL cluster from Debian's `postgresql` package on a free loopback
    port, durability off (a test database is never kept), one fresh database per test.

    PostgreSQL refuses to run as root: as root the cluster belongs to the `postgres` account
    the package creates, in a folder of its own outside pytest's private temporary folder.
    """

    def __init__(self) -> None:
        import glob
        import os
        import tempfile

        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise RuntimeError("PostgreSQL is not installed (make test installs it)")
        bindir = Path(found[-1]).parent
        self.folder = Path(tempfile.mkdtemp(prefix="carebot-pg-"))
        as_owner: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
            as_owner = ["runuser", "-u", "postgres", "--"]
        data = self.folder / "data"
        subprocess.run(
            [
                *as_owner,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "carebot",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                *as_owner,
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-k",
                str(self.folder),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        if not wait_for_port(self.port, 30):
            self.stop()
            raise RuntimeError("postgres did not start")
        self._made = 0

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://carebot@127.0.0.1:{self.port}/{database}"

    def fresh_database(self) -> str:
        """Create an empty database; return its SQLAlchemy URL."""
        import psycopg

        self._made += 1
        name = f"test_{self._made}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=carebot dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.url(name)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        shutil.rmtree(self.folder, ignore_errors=True)
