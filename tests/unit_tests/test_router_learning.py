"""The router learns from every measured call and knows what is in flight (issue 9, items 2 and 3)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage

from langchain_energyrouter import EnergyAwareRouter
from langchain_energyrouter.decide.predictions import ADAPTED, PRIOR
from langchain_energyrouter.energy import EstimateMeter
from langchain_energyrouter.profile import CostModel, DeviceInfo, EnergyProfile, LoadModel, ModelProfile
from langchain_energyrouter.testing import tiny_chat_models
from tests.unit_tests.doubles import gated
from tests.unit_tests.test_load import _Engine, engine  # noqa: F401  (the loopback /metrics server fixture)

QUESTION = [HumanMessage("What is the capital of France?")]


def _entry(runtime_s: float, energy_j: float, accuracy: float, load: LoadModel | None = None) -> ModelProfile:
    return ModelProfile(
        runtime=CostModel(intercept=runtime_s, input_tokens=0.0, output_tokens=0.0, uses_interaction=False),
        energy=CostModel(intercept=energy_j, input_tokens=0.0, output_tokens=0.0, uses_interaction=False),
        accuracy=accuracy,
        context_window=1024,
        load=load,
    )


def _profile(**models: ModelProfile) -> EnergyProfile:
    return EnergyProfile.new(models, device=DeviceInfo(name="test cpu", kind="cpu"), energy_method="estimate")


@pytest.fixture(scope="module")
def tiny() -> dict[str, BaseChatModel]:
    return dict(tiny_chat_models(max_new_tokens=6))


def test_the_router_learns_what_its_calls_really_cost(tiny: dict[str, BaseChatModel]) -> None:
    # The profile claims tiny-a takes 50 s per call (tiny-b 5 s); it takes milliseconds.
    wrong = _profile(**{"tiny-a": _entry(50.0, 500.0, 0.5), "tiny-b": _entry(5.0, 50.0, 0.5)})
    router = EnergyAwareRouter(models=tiny, profile=wrong, meter=EstimateMeter(), weights={"time": 1.0})
    assert router.explain(QUESTION).model == "tiny-b"
    measured = [router.invoke(QUESTION, model="tiny-a").response_metadata["energy"]["runtime_s"] for _ in range(6)]
    a = router.explain(QUESTION).candidates["tiny-a"]
    assert a.sources["runtime"] == ADAPTED and a.observations["runtime"] == 6
    # Every tiny answer fills its 6-token budget: censored lengths never teach "answers are 6 tokens".
    assert a.sources["output_tokens"] == PRIOR and a.predicted_output_tokens == pytest.approx(6, abs=0.05)
    assert a.predicted_runtime_s < 50 * max(measured)  # from 50 s to the measured scale
    assert a.predicted_runtime_s < 1.0
    assert router.explain(QUESTION).model == "tiny-a"  # what it learned changed the decision
    # Settings changes keep what was learned (the store outlives the rebuilt scheduler).
    router.weights = {"time": 1.0, "accuracy": 0.1}
    assert router.explain(QUESTION).candidates["tiny-a"].sources["runtime"] == ADAPTED
    router.close()


def test_a_router_that_does_not_learn_keeps_the_prior(tiny: dict[str, BaseChatModel]) -> None:
    wrong = _profile(**{"tiny-a": _entry(50.0, 500.0, 0.5), "tiny-b": _entry(0.05, 0.5, 0.5)})
    router = EnergyAwareRouter(models=tiny, profile=wrong, meter=EstimateMeter(), learn=False)
    for _ in range(4):
        router.invoke(QUESTION, model="tiny-a")
    a = router.explain(QUESTION).candidates["tiny-a"]
    assert set(a.sources.values()) == {PRIOR} and a.predicted_runtime_s == 50.0


def test_processes_share_learned_state_through_an_sqlite_store(tiny: dict[str, BaseChatModel], tmp_path: Path) -> None:
    wrong = _profile(**{"tiny-a": _entry(50.0, 500.0, 0.5), "tiny-b": _entry(0.05, 0.5, 0.5)})
    path = tmp_path / "state.sqlite"
    first = EnergyAwareRouter(models=tiny, profile=wrong, meter=EstimateMeter(), state_store=str(path))
    for _ in range(4):
        first.invoke(QUESTION, model="tiny-a")
    first.close()
    second = EnergyAwareRouter(models=tiny, profile=wrong, meter=EstimateMeter(), state_store=str(path))
    a = second.explain(QUESTION).candidates["tiny-a"]
    assert a.sources["runtime"] == ADAPTED and a.observations["runtime"] == 4
    second.close()


def test_requests_in_flight_reach_the_decision_and_the_load_model() -> None:
    held = gated("held")
    shared = LoadModel(runtime_per_request=0.5, energy_fixed_share=0.0, max_load=2)
    profile = _profile(**{"held": _entry(1.0, 1.0, 0.5, load=shared), "other": _entry(1.2, 1.0, 0.5)})
    other = gated("other")
    router = EnergyAwareRouter(
        models={"held": held, "other": other}, profile=profile, meter=EstimateMeter(), weights={"time": 1.0}
    )
    assert router.explain(QUESTION).candidates["held"].in_flight == 1
    assert router.explain(QUESTION).model == "held"
    thread = threading.Thread(target=router.invoke, args=(QUESTION,), kwargs={"model": "held"})
    thread.start()
    try:
        assert held.entered.acquire(timeout=10.0)
        busy = router.explain(QUESTION)
        held_now = busy.candidates["held"]
        assert held_now.in_flight == 2 and busy.candidates["other"].in_flight == 1
        assert held_now.predicted_runtime_s == pytest.approx(1.5)  # 1 + 0.5 * (2 - 1)
        assert busy.model == "other"  # one request already running there makes it slower than the idle one
    finally:
        held.gate.set()
        thread.join(10.0)
    assert router.explain(QUESTION).candidates["held"].in_flight == 1  # counted down when it ended


_VLLM = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{model_name="tiny-b"}} {running}
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{model_name="tiny-b"}} 1.0
"""


def test_an_engines_own_load_reaches_the_decision(
    tiny: dict[str, BaseChatModel],
    engine: tuple[_Engine, str],  # noqa: F811
) -> None:
    state, url = engine
    state.body = _VLLM.format(running=6.0)
    profile = _profile(**{"tiny-a": _entry(1.0, 1.0, 0.5), "tiny-b": _entry(1.0, 1.0, 0.5)})
    router = EnergyAwareRouter(models=tiny, profile=profile, meter=EstimateMeter(), engine_metrics={"tiny-b": url})
    deadline = time.monotonic() + 10.0
    seen = router.explain(QUESTION).candidates["tiny-b"].in_flight
    while seen == 1 and time.monotonic() < deadline:  # the reader refreshes in the background, never in the call
        time.sleep(0.05)
        seen = router.explain(QUESTION).candidates["tiny-b"].in_flight
    assert seen == 8  # 6 running + 1 waiting on the engine, + this request
    assert router.explain(QUESTION).candidates["tiny-a"].in_flight == 1
    router.close()


def test_an_unknown_engine_metrics_name_is_refused(tiny: dict[str, BaseChatModel]) -> None:
    from langchain_energyrouter.errors import UnknownModelError

    profile = _profile(**{"tiny-a": _entry(1.0, 1.0, 0.5), "tiny-b": _entry(1.0, 1.0, 0.5)})
    with pytest.raises(UnknownModelError, match=r"engine_metrics names unknown model\(s\) \['nope'\]"):
        EnergyAwareRouter(models=tiny, profile=profile, engine_metrics={"nope": "http://127.0.0.1:9/metrics"})


def _iter_tokens(router: EnergyAwareRouter) -> Iterator[str]:
    for chunk in router.stream(QUESTION, model="tiny-a"):
        yield str(chunk.content)


def test_streamed_answers_teach_too(tiny: dict[str, BaseChatModel]) -> None:
    wrong = _profile(**{"tiny-a": _entry(50.0, 500.0, 0.5), "tiny-b": _entry(0.05, 0.5, 0.5)})
    router = EnergyAwareRouter(models=tiny, profile=wrong, meter=EstimateMeter())
    for _ in range(3):
        assert "".join(_iter_tokens(router))
    a = router.explain(QUESTION).candidates["tiny-a"]
    assert a.sources["runtime"] == ADAPTED and a.observations["runtime"] == 3


def test_feedback_without_prompt_routing_says_what_to_configure(tiny: dict[str, BaseChatModel]) -> None:
    from langchain_energyrouter.errors import RoutingError

    profile = _profile(**{"tiny-a": _entry(1.0, 1.0, 0.5), "tiny-b": _entry(1.0, 1.0, 0.5)})
    router = EnergyAwareRouter(models=tiny, profile=profile, meter=EstimateMeter())
    run_id = router.invoke(QUESTION).response_metadata["routing"]["run_id"]
    assert isinstance(run_id, str) and run_id
    with pytest.raises(RoutingError, match="Pass prompt_routing="):
        router.feedback(run_id, 1.0)


def test_a_trained_predictor_file_routes_per_prompt(tiny: dict[str, BaseChatModel], tmp_path: Path) -> None:
    from langchain_energyrouter.calibration.outcomes import OutcomeRow
    from langchain_energyrouter.prompt.predictor import PromptPredictor

    # tiny-a always gets the greetings right and the sums wrong; tiny-b the other way round.
    rows = []
    for i in range(40):
        for model, greeting_score in (("tiny-a", 1.0), ("tiny-b", 0.0)):
            rows.append(OutcomeRow(f"g{i}", f"Say hello to person {i}.", model, greeting_score, 8, 4))
            rows.append(OutcomeRow(f"s{i}", f"What is {i} plus {i + 3}?", model, 1.0 - greeting_score, 9, 3))
    path = tmp_path / "predictor.json"
    PromptPredictor.train(rows, encoder="hashing").save(path)
    profile = _profile(**{"tiny-a": _entry(1.0, 1.0, 0.5), "tiny-b": _entry(1.0, 1.0, 0.5)})
    router = EnergyAwareRouter(
        models=tiny, profile=profile, meter=EstimateMeter(), prompt_routing=str(path), weights={"accuracy": 1.0}
    )
    greeting = router.explain("Say hello to person 77.")
    assert greeting.model == "tiny-a" and greeting.candidates["tiny-a"].sources["accuracy"] == "prompt"
    assert router.explain("What is 50 plus 53?").model == "tiny-b"


def test_a_settings_change_keeps_per_prompt_routing_and_its_runs(
    tiny: dict[str, BaseChatModel], tmp_path: Path
) -> None:
    from langchain_energyrouter.calibration.outcomes import OutcomeRow
    from langchain_energyrouter.prompt.predictor import PromptPredictor

    rows = [
        OutcomeRow(f"g{i}", f"Say hello to person {i}.", model, score, 8, 4)
        for i in range(40)
        for model, score in (("tiny-a", 1.0), ("tiny-b", 0.0))
    ]
    path = tmp_path / "predictor.json"
    PromptPredictor.train(rows, encoder="hashing").save(path)
    profile = _profile(**{"tiny-a": _entry(1.0, 1.0, 0.5), "tiny-b": _entry(1.0, 1.0, 0.5)})
    router = EnergyAwareRouter(models=tiny, profile=profile, meter=EstimateMeter(), prompt_routing=str(path))
    routing = router._parts().prompt_routing
    run_id = router.invoke("Say hello to person 3.").response_metadata["routing"]["run_id"]
    router.weights = {"accuracy": 1.0}  # not an input of per-prompt routing: kept, with the run it remembers
    assert router._parts().prompt_routing is routing
    assert router.feedback(run_id, 1.0) is True
    router.prompt_routing = PromptPredictor.load(path)  # a new setting builds it anew
    assert router._parts().prompt_routing is not routing


def test_the_learner_divides_by_the_load_the_decision_scaled_by(
    tiny: dict[str, BaseChatModel],
    engine: tuple[_Engine, str],  # noqa: F811
) -> None:
    """With engine_metrics the decision scales by the engine's load; learning by this process's count instead
    put the engine's load into the learned base cost, and the next decision applied it a second time."""
    state, url = engine
    state.body = _VLLM.format(running=6.0)  # 6 running + 1 waiting: load 8 with this request
    per_request = LoadModel(runtime_per_request=1.0, energy_fixed_share=0.0)  # factor 8 at load 8
    profile = _profile(**{"tiny-a": _entry(1.0, 1.0, 0.5), "tiny-b": _entry(1.0, 1.0, 0.5, load=per_request)})
    router = EnergyAwareRouter(models=tiny, profile=profile, meter=EstimateMeter(), engine_metrics={"tiny-b": url})
    deadline = time.monotonic() + 10.0
    while router.explain(QUESTION).candidates["tiny-b"].in_flight != 8 and time.monotonic() < deadline:
        time.sleep(0.05)  # the reader refreshes in the background
    measured = [router.invoke(QUESTION, model="tiny-b").response_metadata["energy"]["runtime_s"] for _ in range(4)]
    b = router.explain(QUESTION).candidates["tiny-b"]
    assert b.in_flight == 8 and b.sources["runtime"] == ADAPTED
    # Learned at the load it ran under, predicted at the same load: the measured scale, not 8x it.
    assert b.predicted_runtime_s < 3 * max(measured), (b.predicted_runtime_s, measured)
    router.close()


def test_a_load_model_whose_runtime_factor_reaches_zero_is_refused() -> None:
    with pytest.raises(ValueError, match=r"runtime factor of 0 for a request alone.*must be > 0"):
        LoadModel(runtime_per_request=0.5, energy_fixed_share=0.0, reference_load=3.0)
    assert LoadModel(runtime_per_request=0.4, energy_fixed_share=0.0, reference_load=3.0).factors(1)[0] > 0


def test_overlapped_readings_teach_no_runtime() -> None:
    """Two calls held in flight together on one device: their readings are overlapped and the runtime
    learner skips them (the README promised it; it learned from them)."""
    first, second = gated("first"), gated("second")
    profile = _profile(first=_entry(1.0, 1.0, 0.5), second=_entry(1.0, 1.0, 0.5))
    router = EnergyAwareRouter(models={"first": first, "second": second}, profile=profile, meter=EstimateMeter())
    threads = [
        threading.Thread(target=router.invoke, args=(QUESTION,), kwargs={"model": name}) for name in ("first", "second")
    ]
    for thread in threads:
        thread.start()
    assert first.entered.acquire(timeout=10.0) and second.entered.acquire(timeout=10.0)
    first.gate.set()
    second.gate.set()
    for thread in threads:
        thread.join(10.0)
    learner = router._parts().live.learning.learner  # type: ignore[union-attr]
    assert learner.ignored.get("runtime: overlapped window") == 2
    assert router.explain(QUESTION).candidates["first"].observations["runtime"] == 0
    router.close()
