"""A LangChain v1 agent that keeps its own chat models and routes every step with EnergyRoutingMiddleware.

``create_agent(model, tools, middleware=[EnergyRoutingMiddleware(models=..., profile=...)])``: per
model call the middleware's scheduler picks a candidate, the agent runs that model object itself,
and the answer carries ``response_metadata["routing"]`` and ``["energy"]``.

Candidates:

* ``tiny-local``: a tiny offline Hugging Face model on a local pipeline (cheap; calls no tools).
* ``endpoint``: ``ChatHuggingFace`` over an OpenAI-compatible chat-completions server (TGI, vLLM);
  by default the scripted loopback server of ``examples/agent_tools.py`` (it calls the tool, then
  answers with its result). Point ``--endpoint-url`` at a real one instead.

Two policies are shown: ``answer_steps="tool_models"`` (every step with tools bound goes to a
tool-calling model) and ``"any_model"`` (the step after a tool result may go to the cheap local
model, which then answers from the tool result written out as text; the tiny model's text is gibberish).

Run it::

    python examples/agent_middleware.py
    python examples/agent_middleware.py --question "What is 6 times 7?"
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import tool

from langchain_energyrouter import CostModel, DeviceInfo, EnergyProfile, ModelProfile
from langchain_energyrouter.middleware import EnergyRoutingMiddleware


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


@contextmanager
def scripted_endpoint() -> Iterator[str]:
    """The scripted chat-completions server of ``agent_tools.py`` on 127.0.0.1; yields its base URL."""
    spec = importlib.util.spec_from_file_location("agent_tools_example", Path(__file__).with_name("agent_tools.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with module.serve_fake_openai() as url:
        yield url


def build_models(endpoint_url: str) -> dict[str, BaseChatModel]:
    """The agent's own chat models: a tiny local pipeline and a chat-completions endpoint."""
    from langchain_huggingface import ChatHuggingFace, HuggingFaceEndpoint

    from langchain_energyrouter.testing import build_tiny_chat_model

    endpoint = ChatHuggingFace(
        llm=HuggingFaceEndpoint(endpoint_url=endpoint_url, max_new_tokens=64, task="text-generation"),  # type: ignore[call-arg]
        model_id="endpoint",
    )
    return {"tiny-local": build_tiny_chat_model("tiny-local"), "endpoint": endpoint}


def build_profile() -> EnergyProfile:
    """Illustrative coefficients: the endpoint is costlier per call and more accurate."""

    def entry(runtime_s: float, energy_j: float, accuracy: float) -> ModelProfile:
        return ModelProfile(
            runtime=CostModel(intercept=runtime_s, input_tokens=1e-4, output_tokens=1e-3),
            energy=CostModel(intercept=energy_j, input_tokens=1e-3, output_tokens=1e-2),
            accuracy=accuracy,
            context_window=4096,
        )

    return EnergyProfile.new(
        {"tiny-local": entry(0.01, 0.1, 0.2), "endpoint": entry(0.3, 5.0, 0.8)},
        device=DeviceInfo(name="example"),
        energy_method="estimate",
        description="made-up coefficients for the agent middleware example",
    )


def run_agent(models: dict[str, BaseChatModel], question: str, answer_steps: str) -> dict[str, Any]:
    """Run the agent once; returns its answer and, per model call, who served it and at what energy."""
    from langchain.agents import create_agent

    routing = EnergyRoutingMiddleware(
        models=models,
        profile=build_profile(),
        weights={"accuracy": 0.3, "energy": 0.6, "time": 0.1},
        answer_steps=answer_steps,  # type: ignore[arg-type]
    )
    try:
        agent = create_agent(model=models["endpoint"], tools=[multiply], middleware=[routing])
        state = agent.invoke({"messages": [{"role": "user", "content": question}]})
    finally:
        routing.close()
    steps = [
        {
            "model": m.response_metadata["routing"]["served_by"],
            "tool_calls": [c["name"] for c in m.tool_calls],
            "energy_method": m.response_metadata["energy"]["method"],
            "energy_j": m.response_metadata["energy"]["energy_j"],
            "predicted_energy_j": m.response_metadata["energy"]["predicted_energy_j"],
        }
        for m in state["messages"]
        if m.type == "ai"
    ]
    return {"answer": state["messages"][-1].content, "steps": steps}


def main(argv: list[str] | None = None) -> int:
    """Run the agent under both answer-step policies and print each step's route."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--question", default="What is 6 times 7?")
    parser.add_argument(
        "--endpoint-url", help="a real OpenAI-compatible server (TGI, vLLM) instead of the scripted one"
    )
    args = parser.parse_args(argv)
    with scripted_endpoint() if not args.endpoint_url else _given(args.endpoint_url) as url:
        models = build_models(url)
        for policy in ("tool_models", "any_model"):
            result = run_agent(models, args.question, policy)
            print(f"answer_steps={policy}: answer {result['answer']!r}")
            for i, step in enumerate(result["steps"], 1):
                measured = "not measured here" if step["energy_j"] is None else f"{step['energy_j']:.3f} J measured"
                print(
                    f"  step {i}: {step['model']}, tool calls {step['tool_calls']}, "
                    f"{step['predicted_energy_j']:.3f} J predicted, {measured} ({step['energy_method']})"
                )
    return 0


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


if __name__ == "__main__":
    raise SystemExit(main())
