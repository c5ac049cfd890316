"""A ``router.yaml`` whose candidate is a real OpenAI-compatible engine (``base_url``), served end to end.

``transformers serve`` (the real engine, ``transformers[serving]``) serves a saved tiny model on loopback; the
config's other candidate is a local directory. The router server is built from the config file exactly as
``energyrouter serve`` builds it (``load_config`` -> ``build_router`` -> ``create_app``) and runs under a real
uvicorn; the official OpenAI client talks to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("langchain_openai")
openai = pytest.importorskip("openai")

from langchain_energyrouter.server import build_router, create_app, load_config  # noqa: E402
from langchain_energyrouter.testing import TINY_MODEL_SIZES, save_tiny_model, tiny_profile  # noqa: E402
from tests.unit_tests.server.test_server import _Served  # noqa: E402
from tests.unit_tests.servers import transformers_serve  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[_Served, str]]:
    root = tmp_path_factory.mktemp("engine-config")
    engine_dir = save_tiny_model(root / "engine-model", "tiny-a", **TINY_MODEL_SIZES["tiny-a"])
    save_tiny_model(root / "local-model", "tiny-b", **TINY_MODEL_SIZES["tiny-b"])
    tiny_profile().save(root / "profile.json")
    with transformers_serve(engine_dir) as engine_url:
        config = {
            "profile": "profile.json",
            "candidates": [
                {"name": "tiny-a", "base_url": f"{engine_url}/v1", "model_id": str(engine_dir), "max_new_tokens": 8},
                {"name": "tiny-b", "path": "local-model", "max_new_tokens": 8},
            ],
            "weights": {"energy": 1.0},
        }
        (root / "router.yaml").write_text(json.dumps(config))  # JSON is YAML
        loaded, base = load_config(root / "router.yaml")
        app = create_app(build_router(loaded, base), loaded.app_settings(), close_router=True)
        with _Served(app) as s:
            yield s, engine_url


def _client(s: _Served) -> Any:
    return openai.OpenAI(base_url=f"{s.url}/v1", api_key="unused", max_retries=0)


def test_a_routed_request_is_answered_by_the_engine(served: tuple[_Served, str]) -> None:
    s, _ = served
    raw = _client(s).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "What is the capital of France?"}]
    )
    completion = raw.parse()
    ext = completion.model_extra["energyrouter"]
    assert completion.model == ext["served_by"] == "tiny-a" == raw.headers["x-energyrouter-model"]
    assert ext["routed"] is True and ext["failures"] == []
    assert ext["energy"]["method"] == "none"  # spent in the engine's process: timed, not metered here
    assert ext["energy"]["predicted_energy_j"] > 0 and ext["energy"]["runtime_s"] > 0
    assert completion.usage is not None and 1 <= completion.usage.completion_tokens <= 8  # the engine's own count
    assert isinstance(completion.choices[0].message.content, str)


def test_the_engine_streams_through_the_router_with_usage(served: tuple[_Served, str]) -> None:
    s, _ = served
    chunks = list(
        _client(s).chat.completions.create(
            model="tiny-a",
            messages=[{"role": "user", "content": "Say hello."}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason is not None]
    assert len(final) == 1 and final[0].model_extra["energyrouter"]["served_by"] == "tiny-a"
    assert final[0].model_extra["energyrouter"]["routed"] is False  # named: forced
    usage = chunks[-1].usage
    assert usage is not None and 1 <= usage.completion_tokens <= 8


def test_metrics_count_the_engine_apart_from_the_local_candidate(served: tuple[_Served, str]) -> None:
    import httpx

    s, _ = served
    _client(s).chat.completions.create(model="tiny-b", messages=[{"role": "user", "content": "Hi."}])
    _client(s).chat.completions.create(model="tiny-a", messages=[{"role": "user", "content": "Hi."}])
    text = httpx.get(f"{s.url}/metrics").text
    for name in ("tiny-a", "tiny-b"):  # the series exist at 0 from the start: each has counted an answer
        line = f'energyrouter_requests_total{{model="{name}",outcome="ok",stream="false"}} '
        assert float(text.split(line, 1)[1].split()[0]) >= 1, name
    # joules of the local pipeline are estimated here; the engine's are not counted as if measured
    assert 'energyrouter_energy_joules_total{method="estimate",model="tiny-b"}' in text
    assert 'energyrouter_energy_joules_total{method="none",model="tiny-a"}' not in text
