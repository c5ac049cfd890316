"""A real OpenAI-compatible engine on loopback: ``transformers serve`` over a saved model, offline.

:func:`serve_transformers` starts it as a subprocess on a free 127.0.0.1 port, waits until it answers
``/health`` and stops it on exit. The examples, the tests and ``benchmarks/bench_server.py`` use it to put
a real engine among a router's candidates (``transformers serve`` ships with transformers; extra
``transformers[serving]``). Its ``/v1/models`` answers 500 offline, and requests must name the model by its
directory, which is why the context yields both.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

__all__ = ["answers", "free_port", "serve_transformers", "stop_process"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process may take it before it is bound)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(url: str) -> bool:
    """Whether a GET of ``url`` gets any HTTP answer within a second."""
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def serve_transformers(directory: str | Path | None = None, *, timeout_s: float = 120.0) -> Iterator[tuple[str, str]]:
    """Run ``transformers serve`` on 127.0.0.1, offline (``HF_HUB_OFFLINE=1``), serving the model in ``directory``.

    Args:
        directory: a saved Hugging Face model; None saves a tiny offline one in a temporary directory
            (:func:`~langchain_energyrouter.testing.save_tiny_model`).
        timeout_s: how long to wait for the engine to answer ``/health``.

    Yields:
        ``(base_url, model)``: the engine's URL (chat completions under ``/v1``) and the model name its
        requests must carry (the directory).

    Raises:
        RuntimeError: the engine exited or did not answer in time (its log tail is in the message).
    """
    with ExitStack() as stack:
        if directory is None:
            from langchain_energyrouter.testing.tiny_models import save_tiny_model

            directory = save_tiny_model(Path(stack.enter_context(tempfile.TemporaryDirectory())) / "tiny-engine")
        model = str(directory)
        port = free_port()
        command = [sys.executable, "-c", "import sys; from transformers.cli.transformers import main; sys.exit(main())"]
        command += ["serve", model, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
        log = stack.enter_context(tempfile.TemporaryFile())  # not a pipe: an unread pipe blocks a chatty server
        engine = subprocess.Popen(command, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout_s
            while not answers(f"{url}/health"):
                if engine.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = log.read()[-2000:].decode("utf-8", "replace")
                    raise RuntimeError(
                        f"transformers serve ({model}) did not come up within {timeout_s:.0f} s "
                        f"(exit code {engine.poll()}); install transformers[serving]. Log tail: {tail}"
                    )
                time.sleep(0.25)
            yield url, model
        finally:
            stop_process(engine)
