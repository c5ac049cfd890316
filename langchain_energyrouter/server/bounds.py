"""What a client may ask of the routing server within the operator's limits.

- **Output caps.** Each candidate generates at most the smallest of the request's ``max_tokens`` (or
  ``max_completion_tokens``), its own configured budget (``max_new_tokens``, or the router's ``max_tokens``)
  and ``limits.max_tokens``. A request lowers a budget, never raises it.
- **Constraints.** A request's ``routing.constraints`` tighten the server's (the lower maximum, the higher
  minimum; ``fit_context_window`` stays on when the server has it on); ``{}`` keeps them as configured. A
  forced candidate (``model: "<name>"``) is still refused when the prompt overflows its context window.
- **Prompt size.** A prompt longer than ``limits.max_prompt_chars`` characters is refused with 413 before any
  token is counted. Unset, the bound is :data:`CHARS_PER_TOKEN_BOUND` characters per token of the largest
  context window (while the context-window check is on): such a prompt cannot fit any candidate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from langchain_energyrouter.decide.scoring import Constraints
from langchain_energyrouter.router.tokens import configured_output_cap
from langchain_energyrouter.server.wire import ApiError

if TYPE_CHECKING:
    from langchain_energyrouter.router import EnergyAwareRouter
    from langchain_energyrouter.router.call import RoutedCall
    from langchain_energyrouter.server.config import LimitsConfig

__all__ = ["CHARS_PER_TOKEN_BOUND", "RequestBounds", "prompt_chars"]

CHARS_PER_TOKEN_BOUND = 32
"""Characters per token no real prompt averages: text runs 3 to 5 with the packaged models' tokenizers, and
only long runs of one character (spaces, ``=``) reach 16 to 64. A prompt with more characters than this many
per token of the largest context window is refused before its tokens are counted."""


class RequestBounds:
    """The operator's limits one request is held to (see the module doc)."""

    def __init__(self, router: EnergyAwareRouter, limits: LimitsConfig) -> None:
        self.router = router
        self.ceiling = limits.max_tokens
        own = router.max_tokens
        self.budgets = {
            name: own if own is not None else configured_output_cap(model) for name, model in router.candidates.items()
        }
        """Each candidate's configured output budget, tokens (None: none known, its engine's default)."""
        self.windows = {name: router.energy_profile.models[name].context_window for name in router.candidates}
        """Each candidate's context window, tokens (from the profile)."""
        self.explicit_prompt_chars = limits.max_prompt_chars
        self.derived_prompt_chars = CHARS_PER_TOKEN_BOUND * max(self.windows.values())

    # -- output caps -------------------------------------------------------------------
    def output_caps(self, asked: int | None) -> dict[str, int | None] | None:
        """``{candidate: cap}``, each the smallest of ``asked``, its budget and ``limits.max_tokens`` (None
        where none is known); None when no candidate has any."""
        caps = {
            name: min((v for v in (asked, budget, self.ceiling) if v is not None), default=None)
            for name, budget in self.budgets.items()
        }
        return caps if any(cap is not None for cap in caps.values()) else None

    # -- constraints ---------------------------------------------------------------------
    def constraints(self, asked: Mapping[str, Any]) -> Constraints:
        """The server's constraints tightened by the request's.

        Raises:
            ValueError: an unknown constraint or an invalid value.
        """
        return Constraints.coerce(self.router.constraints, Constraints()).tightened(asked)

    def _checks(self, constraints: Constraints | None) -> Constraints:
        return constraints if constraints is not None else Constraints.coerce(self.router.constraints, Constraints())

    def forced_overflow(self, call: RoutedCall, constraints: Constraints | None) -> ApiError | None:
        """The 400 for a forced candidate whose context window the prompt and its output cap overflow, while the
        context-window check is on (routing would have excluded it; forcing a model does not switch that off)."""
        if not call.decision.forced or not self._checks(constraints).fit_context_window:
            return None
        name = call.model
        candidate = call.decision.candidates[name]
        cap = call.cap_for(name)
        output = cap if cap is not None else math.ceil(candidate.output_tokens_upper or 0)
        window = self.windows[name]
        if candidate.input_tokens + output <= window:
            return None
        return ApiError(
            400,
            f"The prompt ({candidate.input_tokens} tokens) and up to {output} output tokens exceed the context window "
            f"of {name!r} ({window} tokens); shorten the prompt, lower max_tokens, or route with model 'auto'.",
            param="messages",
            code="context_length_exceeded",
        )

    # -- prompt size -----------------------------------------------------------------------
    def prompt_limit(self, constraints: Constraints | None) -> tuple[int, str] | None:
        """The largest prompt in characters and where that figure comes from; None: no bound."""
        if self.explicit_prompt_chars is not None:
            return self.explicit_prompt_chars, "limits.max_prompt_chars"
        if not self._checks(constraints).fit_context_window:
            return None
        source = (
            f"{CHARS_PER_TOKEN_BOUND} characters per token of the largest context window, "
            f"{self.derived_prompt_chars // CHARS_PER_TOKEN_BOUND} tokens; set limits.max_prompt_chars to change it"
        )
        return self.derived_prompt_chars, source

    def prompt_too_large(
        self, messages: list[Any], tools: list[Any] | None, constraints: Constraints | None
    ) -> ApiError | None:
        """The 413 for a prompt over :meth:`prompt_limit`, counted in characters (no token is counted)."""
        bound = self.prompt_limit(constraints)
        if bound is None:
            return None
        limit, source = bound
        size = prompt_chars(messages) + (prompt_chars(tools) if tools else 0)
        if size <= limit:
            return None
        return ApiError(
            413,
            f"The prompt has {size} characters, over this server's limit of {limit} ({source}); "
            "shorten the prompt or split it across requests.",
            param="messages",
            code="prompt_too_large",
        )


_LABELS = frozenset({"role", "type"})
"""Keys whose strings label a message or a part rather than carry its text."""


def prompt_chars(value: Any) -> int:
    """Characters of the strings in a parsed JSON value (message texts, names, tool arguments and schemas) but
    the ``role`` and ``type`` labels; iterative, whatever the nesting."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, Mapping):
            stack.extend(v for k, v in item.items() if k not in _LABELS)
        elif isinstance(item, list):
            stack.extend(item)
    return total
