"""Test helpers shared by this package's tests and its users' tests (public, like LangChain's fake chat models).

Belongs here: real but tiny offline chat models and profiles (:mod:`~langchain_energyrouter.testing.tiny_models`)
and a real OpenAI-compatible engine on loopback (:mod:`~langchain_energyrouter.testing.engine`,
``transformers serve``). Nothing in the package imports this one; heavy packages load inside the functions.
"""

from __future__ import annotations

from langchain_energyrouter.testing.engine import answers, free_port, serve_transformers, stop_process
from langchain_energyrouter.testing.tiny_models import (
    TINY_CHAT_TEMPLATE,
    TINY_MODEL_SIZES,
    build_tiny_chat_model,
    build_tiny_model_and_tokenizer,
    build_tiny_tokenizer,
    save_tiny_model,
    tiny_chat_models,
    tiny_profile,
)

__all__ = [
    "TINY_CHAT_TEMPLATE",
    "TINY_MODEL_SIZES",
    "answers",
    "build_tiny_chat_model",
    "build_tiny_model_and_tokenizer",
    "build_tiny_tokenizer",
    "free_port",
    "save_tiny_model",
    "serve_transformers",
    "stop_process",
    "tiny_chat_models",
    "tiny_profile",
]
