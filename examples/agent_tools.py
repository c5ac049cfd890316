"""An agent whose model is an EnergyAwareRouter, over a real engine, a local pipeline and a tool-calling endpoint.

The router has three candidates:

* ``tiny-local``: a tiny offline Hugging Face model on a local pipeline. Cheap
  and metered here, but a local pipeline ignores tools.
* ``engine``: a real OpenAI-compatible engine, ``transformers serve`` (ships with
  transformers; extra ``transformers[serving]``), serving a saved tiny model on
  127.0.0.1. ``langchain_energyrouter.testing.serve_transformers`` starts it (offline); ``--engine-url``
  points at one you run (vLLM, TGI, ``transformers serve``). It answers the steps without
  tools. Its energy is spent in the engine's process, so it is timed, not metered
  (method ``"none"``).
* ``tools``: ``ChatHuggingFace`` over a chat-completions endpoint that calls tools
  (TGI or vLLM with a tool-calling model, via ``--endpoint-url``). No model that
  can be installed here emits tool calls (the tiny and the packaged 135M models do
  not), so by default :func:`serve_fake_openai` serves a scripted one on 127.0.0.1
  in a thread: given tools it calls the first tool with the integers found in the
  question, and given a tool result it answers with it. It stands in for the
  tool-calling steps only.

Every agent step has the tool bound, so only ``tools`` is eligible there
(``routing["excluded"]`` says why the others are not); a call without tools is
routed between the local pipeline and the real engine by the weights.

Run it::

    python examples/agent_tools.py
    python examples/agent_tools.py --question "What is 6 times 7?"
    python examples/agent_tools.py --engine-url http://127.0.0.1:8000 --engine-model <the engine's model name>
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from langchain_core.tools import tool

from langchain_energyrouter import CostModel, DeviceInfo, EnergyProfile, ModelProfile
from langchain_energyrouter.router import EnergyAwareRouter
from langchain_energyrouter.testing.engine import serve_transformers


# -- a scripted OpenAI-compatible chat-completions server (the tool-calling steps only) --
def _reply(body: dict[str, Any]) -> dict[str, Any]:
    """The assistant message the fake server answers ``body`` with."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {"role": "user", "content": ""}
    tools = body.get("tools") or []
    if tools and last.get("role") == "user":
        function = tools[0]["function"]
        names = list((function.get("parameters") or {}).get("properties") or {})
        numbers = [int(n) for n in re.findall(r"-?\d+", str(last.get("content")))]
        args = {name: numbers[i] if i < len(numbers) else 0 for i, name in enumerate(names)}
        call = {
            "id": f"call_{uuid.uuid4().hex[:8]}",
            "type": "function",
            "function": {"name": function["name"], "arguments": json.dumps(args)},
        }
        return {"role": "assistant", "content": "", "tool_calls": [call]}
    if last.get("role") == "tool":
        return {"role": "assistant", "content": f"The answer is {last.get('content')}."}
    return {"role": "assistant", "content": "Hello from the endpoint."}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # keep the example's output clean
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        message = _reply(body)
        usage = {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18}
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": "fake-endpoint"}
        if not body.get("stream"):
            self._send(
                "application/json",
                json.dumps(
                    {
                        **base,
                        "object": "chat.completion",
                        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                        "usage": usage,
                    }
                ).encode(),
            )
            return
        delta: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
        if message.get("tool_calls"):
            delta["tool_calls"] = [{"index": i, **c} for i, c in enumerate(message["tool_calls"])]
        events = [
            {**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]},
            {
                **base,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
            },
        ]
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        self._send("text/event-stream", text.encode())

    def _send(self, content_type: str, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def serve_fake_openai() -> Iterator[str]:
    """Serve the scripted chat-completions API on 127.0.0.1; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, name="fake-openai", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# -- the router and the agent ---------------------------------------------------
@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def build_router(endpoint_url: str, engine_url: str, engine_model: str) -> EnergyAwareRouter:
    """The router over a tiny local model, the engine at ``engine_url`` and the tool-calling endpoint.

    Args:
        endpoint_url: an OpenAI-compatible server whose model calls tools (TGI, vLLM; or the scripted one).
        engine_url: an OpenAI-compatible engine (``transformers serve``, vLLM, TGI) for steps without tools.
        engine_model: the model name the engine expects in requests.
    """
    from langchain_huggingface import ChatHuggingFace, HuggingFaceEndpoint

    from langchain_energyrouter.testing import build_tiny_chat_model

    tools = ChatHuggingFace(
        llm=HuggingFaceEndpoint(endpoint_url=endpoint_url, max_new_tokens=64, task="text-generation"),  # type: ignore[call-arg]
        model_id="endpoint",
    )
    engine = ChatHuggingFace(
        llm=HuggingFaceEndpoint(endpoint_url=engine_url, max_new_tokens=16, task="text-generation")  # type: ignore[call-arg]
    )
    # ChatHuggingFace sets model_id to the URL, which goes out as model "dummy": the engine wants its own name.
    engine.model_id = engine_model

    # Illustrative coefficients: the tool endpoint is costlier and more accurate; joules of remote candidates
    # are spent on their servers (the router predicts them, and reports method "none" for what it measured).
    def entry(runtime_s: float, energy_j: float, accuracy: float, context_window: int) -> ModelProfile:
        return ModelProfile(
            runtime=CostModel(intercept=runtime_s, input_tokens=1e-4, output_tokens=runtime_s / 10),
            energy=CostModel(intercept=energy_j, input_tokens=energy_j / 100, output_tokens=energy_j / 10),
            accuracy=accuracy,
            context_window=context_window,
        )

    profile = EnergyProfile.new(
        {
            "tiny-local": entry(0.01, 0.1, 0.2, 1024),
            "engine": entry(0.05, 0.3, 0.5, 1024),
            "tools": entry(0.3, 5.0, 0.8, 8192),
        },
        device=DeviceInfo(name="example"),
        energy_method="estimate",
        description="made-up coefficients for the agent example",
    )
    return EnergyAwareRouter(
        models={"tiny-local": build_tiny_chat_model("tiny-local"), "engine": engine, "tools": tools},
        energy_profile=profile,
        tool_models=["tools"],  # the engine's tiny model emits no tool calls; the local pipeline ignores tools
        weights={"accuracy": 0.5, "energy": 0.5},
    )


def run_agent(router: EnergyAwareRouter, question: str) -> dict[str, Any]:
    """Run the agent once; returns the answer and, per model call, who served it and why."""
    from langchain.agents import create_agent

    agent = create_agent(model=router, tools=[multiply], system_prompt="Use the tools to compute.")
    state = agent.invoke({"messages": [{"role": "user", "content": question}]})
    calls = [
        {
            "model": m.response_metadata["routing"]["served_by"],
            "excluded": m.response_metadata["routing"]["excluded"],
            "energy_method": m.response_metadata["energy"]["method"],
            "tool_calls": [c["name"] for c in m.tool_calls],
        }
        for m in state["messages"]
        if m.type == "ai"
    ]
    return {"answer": state["messages"][-1].content, "calls": calls}


def ask(router: EnergyAwareRouter, question: str, weights: dict[str, float] | None = None) -> dict[str, Any]:
    """One call without tools; returns who served it, the energy method, the generated tokens and the text."""
    message = router.invoke(question, weights=weights) if weights else router.invoke(question)
    usage: dict[str, Any] = dict(message.usage_metadata or {})
    return {
        "model": message.response_metadata["routing"]["served_by"],
        "energy_method": message.response_metadata["energy"]["method"],
        "output_tokens": usage.get("output_tokens"),
        "text": message.text,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the agent and two calls without tools; prints who served each call and why others were excluded."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--question", default="What is 6 times 7?")
    parser.add_argument("--endpoint-url", help="a tool-calling OpenAI-compatible server (TGI, vLLM), not the fake")
    parser.add_argument("--engine-url", help="a running OpenAI-compatible engine, not a new transformers serve")
    parser.add_argument("--engine-model", help="the model name --engine-url expects (required with it)")
    args = parser.parse_args(argv)
    if args.engine_url and not args.engine_model:
        parser.error("--engine-url needs --engine-model (the model name the engine serves)")
    with ExitStack() as stack:
        endpoint_url = args.endpoint_url or stack.enter_context(serve_fake_openai())
        if args.engine_url:
            engine_url, engine_model = args.engine_url, args.engine_model
        else:
            engine_url, engine_model = stack.enter_context(serve_transformers())
        router = build_router(endpoint_url, engine_url, engine_model)
        result = run_agent(router, args.question)
        plain = {"balanced": ask(router, "Say hello."), "energy-first": ask(router, "Say hello.", {"energy": 1.0})}
    for i, call in enumerate(result["calls"], 1):
        print(f"model call {i}: {call['model']} (energy: {call['energy_method']}), tool calls {call['tool_calls']}")
        for name, why in call["excluded"].items():
            print(f"    excluded {name}: {why}")
    print("answer:", result["answer"])
    for label, call in plain.items():
        print(
            f"no tools, {label}: {call['model']} (energy: {call['energy_method']}), "
            f"{call['output_tokens']} tokens: {call['text']!r}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
