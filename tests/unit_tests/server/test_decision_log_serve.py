"""``energyrouter serve`` with a decision log: the real server on loopback over the tiny models, killed with SIGKILL
mid-run, leaves a log of whole lines holding every call a client got an answer for."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("uvicorn")
yaml = pytest.importorskip("yaml")

from langchain_energyrouter.cli import main  # noqa: E402
from langchain_energyrouter.server import build_router, load_config  # noqa: E402
from langchain_energyrouter.testing import TINY_MODEL_SIZES, save_tiny_model, tiny_profile  # noqa: E402
from tests.unit_tests.servers import RouterServer  # noqa: E402

CLIENTS = 4


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("decision-log-serve")
    profile = tiny_profile()
    profile.save(base / "profile.json")
    for name in profile.models:
        save_tiny_model(base / name, name, **TINY_MODEL_SIZES[name])
    config = {
        "profile": "profile.json",
        "candidates": [{"name": name, "path": name, "max_new_tokens": 4} for name in profile.models],
        "exploration": {"share": 0.5, "max_extra_energy_share": 1.0, "seed": 0},
        "decision_log": {"path": "logs/from-config.jsonl", "backups": 1},
    }
    (base / "router.yaml").write_text(yaml.safe_dump(config))
    return base


def _ask(url: str, index: int) -> str | None:
    """One completion (every third streamed); the run id the client got, None when no answer arrived."""
    body: dict[str, Any] = {"model": "auto", "messages": [{"role": "user", "content": f"Question {index}?"}]}
    try:
        if index % 3 == 0:
            run_id = None
            with httpx.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}, timeout=30) as r:
                for line in r.iter_lines():
                    if line.startswith("data: {"):
                        run_id = (json.loads(line[6:]).get("energyrouter") or {}).get("run_id", run_id)
            return run_id
        response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
        return str(response.json()["energyrouter"]["run_id"]) if response.status_code == 200 else None
    except (httpx.HTTPError, json.JSONDecodeError):
        return None  # the server died under this request


@pytest.fixture
def killed_mid_run(config_dir: Path, tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    log = tmp_path / "decisions.jsonl"
    server = RouterServer(config_dir / "router.yaml", tmp_path / "serve.log", flags=("--decision-log", str(log)))
    server.launch().wait_ready()
    answered: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()
    stop = threading.Event()

    def client(offset: int) -> None:
        index = offset
        while not stop.is_set():
            run_id = _ask(server.url, index)
            index += CLIENTS
            if run_id is not None and not stop.is_set():
                with lock:
                    answered.append(run_id)
                    if len(answered) >= 40:
                        enough.set()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    try:
        for thread in threads:
            thread.start()
        assert enough.wait(240), f"too few answers: {len(answered)}"
        with lock:
            got = list(answered)  # answers delivered before the kill
            server.kill()  # SIGKILL with every client's request in flight or about to be sent
            stop.set()
        for thread in threads:
            thread.join(60)
        yield log, got
    finally:
        stop.set()
        server.stop()


def test_sigkill_mid_run_leaves_whole_lines_with_every_answered_call(
    killed_mid_run: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    log, answered = killed_mid_run
    text = log.read_text(encoding="utf-8")
    assert text.endswith("\n"), "no line cut in half"
    lines = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    calls = [line for line in lines if line["event"] == "call"]
    logged = {line["run_id"] for line in calls}
    assert set(answered) <= logged, "a call whose answer reached the client is in the log"
    # Lines beyond the answers received: calls answered as the kill came (their reply never left) - at most
    # one per client in flight.
    assert len(calls) - len(answered) <= CLIENTS
    assert all(line["measured"]["method"] == "estimate" and line["candidates"] for line in calls)
    assert not (log.parent / "logs").exists(), "--decision-log replaced the config's path"
    assert main(["report", str(log)]) == 0
    assert f"Decision log: {len(calls)} answered calls, 0 failed, 0 line(s) skipped" in capsys.readouterr().out


def test_the_config_key_is_relative_to_the_config_file(config_dir: Path, tmp_path: Path) -> None:
    config, base = load_config(config_dir / "router.yaml")
    router = build_router(config, base)
    try:
        router.invoke("hello")
    finally:
        router.close()
    (line,) = [json.loads(x) for x in (config_dir / "logs" / "from-config.jsonl").read_text().splitlines()]
    assert line["event"] == "call"
    log = router._parts().decision_log
    assert log is not None and log.backups == 1 and log.max_bytes == 64 * 2**20


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"decision_log": {"path": "d.jsonl", "max_bytes": 10}}, r"decision_log\.DecisionLogConfig\.max_bytes"),
        ({"decision_log": {"path": "d.jsonl", "rotate": True}}, r"decision_log\.DecisionLogConfig\.rotate"),
        ({"exploration": {"shares": 0.2}}, r"exploration.*Unknown exploration option\(s\) \['shares'\]"),
    ],
)
def test_bad_keys_name_the_field(tmp_path: Path, extra: dict[str, Any], match: str) -> None:
    from langchain_energyrouter.server import ConfigError

    config = {"profile": "profile.json", "candidates": [{"name": "tiny-a", "path": "tiny-a"}], **extra}
    (tmp_path / "router.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=match):
        load_config(tmp_path / "router.yaml")
