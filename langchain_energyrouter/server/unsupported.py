"""OpenAI request parameters this server does not implement, refused with a 400 naming the parameter.

A parameter is refused only when it asks for something: its absence, ``null`` or the OpenAI default passes,
so clients that always send defaults keep working.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# parameter -> (values that ask for nothing, what to do instead)
_UNSUPPORTED: dict[str, tuple[tuple[Any, ...], str]] = {
    "response_format": (({"type": "text"},), "drop it, or ask for JSON in the prompt and parse the text"),
    "logprobs": ((False,), "drop it; token log-probabilities are not returned"),
    "top_logprobs": ((0,), "drop it; token log-probabilities are not returned"),
    "logit_bias": (({},), "drop it; logit biases are not applied"),
    "audio": ((), "drop it; only text output is served"),
    "modalities": ((["text"],), "drop it; only text output is served"),
    "prediction": ((), "drop it; predicted outputs are not used"),
}


def unsupported_parameter(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first parameter in ``body`` that asks for an unsupported feature, with the message to send back."""
    for name, (harmless, instead) in _UNSUPPORTED.items():
        value = body.get(name)
        if value is None or value in harmless:
            continue
        return name, f"Unsupported parameter {name}={value!r}: this server does not implement it; {instead}."
    return None
