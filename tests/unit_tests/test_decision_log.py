"""The decision log: one JSON line per call from a real router over the tiny models, bounded, never failing a call."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage

from langchain_energyrouter import EnergyAwareRouter
from langchain_energyrouter.errors import RoutingError
from langchain_energyrouter.prompt.encoders import HashingEncoder
from langchain_energyrouter.prompt.routing import PromptRouting
from langchain_energyrouter.router.decision_log import SCHEMA_VERSION, DecisionLog
from langchain_energyrouter.state import MemoryStateStore
from langchain_energyrouter.testing import build_tiny_chat_model, tiny_chat_models, tiny_profile

QUESTION = "What is the capital of France?"


def _lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n"), "every line is written whole"
    return [json.loads(line) for line in text.splitlines()]


def _router(log: Any, models: dict[str, BaseChatModel] | None = None, **kwargs: Any) -> EnergyAwareRouter:
    return EnergyAwareRouter(
        models=models or tiny_chat_models(max_new_tokens=6), energy_profile=tiny_profile(), decision_log=log, **kwargs
    )


def _failing(name: str) -> BaseChatModel:
    chat = build_tiny_chat_model(name, max_new_tokens=6)

    def generate(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("CUDA out of memory (injected)")

    chat.llm.pipeline.model.generate = generate  # type: ignore[attr-defined]
    return chat


def test_each_call_is_one_line_with_predictions_and_the_measurement(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "decisions.jsonl"  # the directory is created
    router = _router(str(path))
    answers: list[AIMessage] = [router.invoke(QUESTION), router.invoke(QUESTION, model="tiny-b")]
    answers.append(asyncio.run(router.ainvoke(QUESTION, weights={"energy": 1.0})))
    streamed = list(router.stream(QUESTION))
    router.close()
    lines = _lines(path)
    assert [line["event"] for line in lines] == ["call"] * 4
    assert all(line["schema"] == SCHEMA_VERSION for line in lines)
    for line, answer in zip(lines, answers, strict=False):
        routing, energy = answer.response_metadata["routing"], answer.response_metadata["energy"]
        assert line["run_id"] == routing["run_id"]
        assert line["served_by"] == routing["served_by"] and line["chosen"] == routing["model"]
        assert line["weights"] == routing["weights"]
        measured = line["measured"]
        assert measured["energy_j"] == energy["energy_j"] and measured["runtime_s"] == energy["runtime_s"]
        assert measured["method"] == energy["method"] == "estimate" and measured["flags"] == energy["flags"]
        assert measured["output_tokens"] == answer.usage_metadata["output_tokens"]  # type: ignore[index]
        assert measured["generated_tokens"] == routing["generated_tokens"]
        for name, candidate in line["candidates"].items():
            expected = routing["candidates"][name]
            for key in ("predicted_output_tokens", "predicted_runtime_s", "predicted_energy_j", "accuracy", "cost"):
                assert candidate[key] == expected[key], (name, key)
            assert candidate["in_flight"] == expected["in_flight"]
    assert lines[1]["forced"] is True and lines[2]["weights"]["energy"] == 1.0
    final = streamed[-1].response_metadata["routing"]
    assert lines[3]["run_id"] == final["run_id"] and lines[3]["measured"]["output_tokens"] is not None
    assert QUESTION not in path.read_text(), "no prompt text unless asked"


def test_prompts_and_answers_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    router = _router({"path": path, "prompts": True})
    answer = router.invoke([("system", "Be brief."), ("user", QUESTION)])
    router.close()
    (line,) = _lines(path)
    assert line["prompt"] == QUESTION and line["answer"] == answer.content


def test_fallbacks_and_calls_nobody_answered(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    models = {"tiny-a": _failing("tiny-a"), "tiny-b": build_tiny_chat_model("tiny-b", max_new_tokens=6)}
    router = _router(path, models, weights={"energy": 1.0})
    answer = router.invoke(QUESTION)
    assert answer.response_metadata["routing"]["served_by"] == "tiny-b"
    with pytest.raises(RuntimeError, match="injected"):
        router.invoke(QUESTION, model="tiny-a")  # forced: no fallback, the error itself
    broken = _router(path, {"tiny-a": _failing("tiny-a"), "tiny-b": _failing("tiny-b")})
    with pytest.raises(RoutingError):
        broken.invoke(QUESTION)
    router.close()
    broken.close()
    fallback, failed = _lines(path)  # the forced call's error left the router as is: no line
    assert fallback["chosen"] == "tiny-a" and fallback["served_by"] == "tiny-b"
    assert [f["model"] for f in fallback["failures"]] == ["tiny-a"]
    assert fallback["failures"][0]["error_type"] == "RuntimeError"
    assert failed["event"] == "failed" and failed["served_by"] is None and failed["measured"] is None
    assert sorted(f["model"] for f in failed["failures"]) == ["tiny-a", "tiny-b"]


def test_feedback_is_logged_beside_the_call(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    models = tiny_chat_models(max_new_tokens=6)
    store = MemoryStateStore()
    routing = PromptRouting(
        list(models), None, store, prior_accuracy={n: 0.5 for n in models}, encoder=HashingEncoder(64)
    )
    router = _router(path, models, state_store=store, prompt_routing=routing)
    run_id = router.invoke(QUESTION).response_metadata["routing"]["run_id"]
    assert router.feedback(run_id, 1.0, key="exact")
    assert not router.feedback("no-such-run", 0.0)
    router.close()
    call, learned, unknown = _lines(path)
    assert call["run_id"] == run_id and call["candidates"]["tiny-a"]["sources"]["accuracy"] == "prompt"
    assert learned == {**learned, "event": "feedback", "run_id": run_id, "score": 1.0, "key": "exact", "learned": True}
    assert unknown["run_id"] == "no-such-run" and unknown["learned"] is False


def test_exploration_is_logged(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    router = _router(path, exploration={"share": 1.0, "max_extra_energy_share": 10.0, "seed": 3, "prior_log_sd": 3.0})
    explored = [router.invoke(f"{QUESTION} {i}").response_metadata["routing"]["explored"] for i in range(12)]
    router.close()
    assert [line["explored"] for line in _lines(path)] == explored
    assert any(explored), "with the whole budget, some calls explore"


def test_rotation_bounds_the_files(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    record = {"schema": SCHEMA_VERSION, "event": "call", "pad": "x" * 900}
    with DecisionLog(path, max_bytes=4096, backups=2) as log:
        for i in range(40):
            log.write({**record, "i": i})
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["d.jsonl", "d.jsonl.1", "d.jsonl.2"]
    assert all((tmp_path / name).stat().st_size <= 4096 for name in files)
    kept = [line["i"] for name in ("d.jsonl.2", "d.jsonl.1", "d.jsonl") for line in _lines(tmp_path / name)]
    assert kept == list(range(40 - len(kept), 40)), "the newest lines, in order, none torn"
    with DecisionLog(tmp_path / "solo.jsonl", max_bytes=4096, backups=0) as log:
        for i in range(10):
            log.write({**record, "i": i})
    assert [line["i"] for line in _lines(tmp_path / "solo.jsonl")] == [8, 9]
    assert not (tmp_path / "solo.jsonl.1").exists()


def test_a_file_moved_or_removed_by_someone_else_starts_again_at_the_path(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    with DecisionLog(path) as log:
        log.write({"i": 0})
        path.rename(tmp_path / "d.jsonl.old")  # logrotate without copytruncate
        log.write({"i": 1})
        path.unlink()  # an operator clears it
        log.write({"i": 2})
        log.write({"i": 3})
    assert [line["i"] for line in _lines(tmp_path / "d.jsonl.old")] == [0]
    assert [line["i"] for line in _lines(path)] == [2, 3]


def test_a_full_disk_never_fails_the_call(caplog: pytest.LogCaptureFixture) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    log = DecisionLog("/dev/full")  # every write fails with ENOSPC, as on a full disk
    router = _router(log)
    assert router.invoke(QUESTION).content is not None
    router.invoke(QUESTION)
    assert log.errors == 2
    assert sum("cannot write" in r.getMessage() for r in caplog.records) == 1, "warned once"
    router.close()
    log.close()


def test_ownership_settings_changes_and_late_lines(tmp_path: Path) -> None:
    mine = DecisionLog(tmp_path / "mine.jsonl")
    router = _router(mine)
    router.weights = {"energy": 1.0}  # rebuilds the parts: the same log goes on
    router.invoke(QUESTION)
    router.close()
    mine.write({"schema": SCHEMA_VERSION, "event": "note"})  # the router did not close the caller's log
    mine.close()
    mine.write({"schema": SCHEMA_VERSION, "event": "late"})  # after close: opened for this line only
    assert [line["event"] for line in _lines(tmp_path / "mine.jsonl")] == ["call", "note", "late"]

    owned = _router(str(tmp_path / "a.jsonl"))
    call = owned.plan(QUESTION)
    owned.decision_log = str(tmp_path / "b.jsonl")  # a new log; the old one closes
    owned.invoke(QUESTION, routed=call)  # planned before the change: its line goes to the old log
    owned.invoke(QUESTION)
    owned.close()
    assert len(_lines(tmp_path / "a.jsonl")) == 1 and len(_lines(tmp_path / "b.jsonl")) == 1


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (42, TypeError, "decision_log takes a path"),
        ({"path": "x.jsonl", "max_bytes": 10}, ValueError, "max_bytes=10 must be an integer of at least 4096"),
        ({"path": "x.jsonl", "backups": -1}, ValueError, "backups=-1 must be a non-negative integer"),
    ],
)
def test_bad_settings_name_the_value(value: Any, error: type[Exception], match: str, tmp_path: Path) -> None:
    os.chdir(tmp_path)
    with pytest.raises(error, match=match):
        _router(value)
