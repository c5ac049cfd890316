"""Stopping `energyrouter serve` with Ctrl-C is a clean exit: status 0, so `make serve` reports no error."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("yaml")

from langchain_energyrouter.testing import TINY_MODEL_SIZES, save_tiny_model, tiny_profile

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[str], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError("the server did not start listening")


@pytest.mark.skipif(sys.platform == "win32", reason="process groups and SIGINT")
def test_ctrl_c_stops_the_server_with_status_0(tmp_path: Path) -> None:
    for name in ("tiny-a", "tiny-b"):
        save_tiny_model(tmp_path / name, name, **TINY_MODEL_SIZES[name])
    tiny_profile().save(tmp_path / "profile.json")
    config = {
        "profile": "profile.json",
        "candidates": [{"name": n, "path": n, "max_new_tokens": 4} for n in ("tiny-a", "tiny-b")],
    }
    (tmp_path / "router.yaml").write_text(json.dumps(config))
    port = _free_port()
    command = [sys.executable, "-m", "langchain_energyrouter.cli", "serve", "--config", "router.yaml"]
    # A terminal's Ctrl-C reaches the whole foreground process group, with SIGINT not ignored.
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        _wait_listening(port, process)
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err[-2000:]
    assert "energyrouter serve: stopped" in err and "interrupted" not in err and "Traceback" not in err
