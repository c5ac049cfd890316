"""An agent whose model is an EnergyAwareRouter; tool calls go to a tool-capable endpoint.

The router has two candidates:

* ``tiny-local``: a tiny offline Hugging Face model on a local pipeline. It is
  cheap, but a local pipeline ignores tools, so the router excludes it from
  every call that has tools bound (``routing["excluded"]`` says why).
* ``endpoint``: ``ChatHuggingFace`` over ``HuggingFaceEndpoint``, i.e. an
  OpenAI-compatible chat-completions server such as TGI or vLLM. Its energy is
  spent elsewhere, so it is timed but not metered (method ``"none"``).

No real server can run here, so :func:`serve_fake_openai` serves a scripted
one on 127.0.0.1 in a thread: given tools it calls the first tool with the
integers found in the question, and given a tool result it answers with it.
Point ``--endpoint-url`` at a real TGI/vLLM server to use one instead.

Run it::

    python examples/agent_tools.py
    python examples/agent_tools.py --question "What is 6 times 7?"
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from langchain_core.tools import tool

from langchain_energyrouter import CostModel, DeviceInfo, EnergyProfile, ModelProfile
from langchain_energyrouter.router import EnergyAwareRouter


# -- a scripted OpenAI-compatible chat-completions server ------------------------
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


def build_router(endpoint_url: str) -> EnergyAwareRouter:
    """The router over a tiny local model and a chat-completions endpoint at ``endpoint_url``."""
    from langchain_huggingface import ChatHuggingFace, HuggingFaceEndpoint

    from langchain_energyrouter.testing import build_tiny_chat_model

    endpoint = ChatHuggingFace(
        llm=HuggingFaceEndpoint(endpoint_url=endpoint_url, max_new_tokens=64, task="text-generation"),
        model_id="endpoint",
    )
    # Illustrative coefficients: the endpoint is slower per call; its joules are someone else's.
    profile = EnergyProfile.new(
        {
            "tiny-local": ModelProfile(
                runtime=CostModel(intercept=0.01, input_tokens=1e-4, output_tokens=1e-3),
                energy=CostModel(intercept=0.1, input_tokens=1e-3, output_tokens=1e-2),
                accuracy=0.2,
                context_window=1024,
            ),
            "endpoint": ModelProfile(
                runtime=CostModel(intercept=0.3, input_tokens=1e-3, output_tokens=2e-2),
                energy=CostModel(intercept=5.0, input_tokens=1e-2, output_tokens=0.5),
                accuracy=0.8,
                context_window=8192,
            ),
        },
        device=DeviceInfo(name="example"),
        energy_method="estimate",
        description="made-up coefficients for the agent example",
    )
    return EnergyAwareRouter(
        models={"tiny-local": build_tiny_chat_model("tiny-local"), "endpoint": endpoint},
        profile=profile,
        weights={"accuracy": 0.3, "energy": 0.6, "time": 0.1},
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


def main(argv: list[str] | None = None) -> int:
    """Run the agent against the fake server (or ``--endpoint-url``) and print what happened."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--question", default="What is 6 times 7?")
    parser.add_argument("--endpoint-url", help="a real OpenAI-compatible server (TGI, vLLM) instead of the fake one")
    args = parser.parse_args(argv)
    if args.endpoint_url:
        result = run_agent(build_router(args.endpoint_url), args.question)
    else:
        with serve_fake_openai() as url:
            result = run_agent(build_router(url), args.question)
    for i, call in enumerate(result["calls"], 1):
        print(f"model call {i}: {call['model']} (energy: {call['energy_method']}), tool calls {call['tool_calls']}")
        for name, why in call["excluded"].items():
            print(f"    excluded {name}: {why}")
    print("answer:", result["answer"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
