"""Feedback over HTTP: signed feedback tokens that bind a run to the client it answered, and ``POST /v1/feedback``.

Every answer with a run id carries ``energyrouter.feedback_token`` (and the ``x-energyrouter-feedback-token``
header): an HMAC-SHA256 of the run id under the server's secret. ``POST /v1/feedback`` requires it, so only a
client that received the answer (or one it handed the token to) can score that run; a run id read from a log,
a trace or a header without its token is refused with 403. Each run learns from its first score only: a later
one gets 409 (``code: "feedback_already_given"``).

The secret is the config's ``feedback_secret`` (or ``feedback_secret_env``); unset, each server process draws
its own, and its tokens verify nowhere else. Replicas behind one load balancer that share a state store give
them all the same secret.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import Request
from pydantic import ValidationError

from langchain_energyrouter.errors import RoutingError
from langchain_energyrouter.server.wire import ApiError, FeedbackRequest, validation_error

if TYPE_CHECKING:
    from langchain_energyrouter.router import EnergyAwareRouter
    from langchain_energyrouter.server.metrics import ServerMetrics

__all__ = ["MIN_SECRET_CHARS", "FeedbackServer", "FeedbackTokens", "post_feedback"]

MIN_SECRET_CHARS = 32
"""Shortest ``feedback_secret`` accepted, characters."""
_DOMAIN = b"energyrouter-feedback-v1\x00"
"""Prefix of every signed message: a token for something else under the same secret never matches."""


class FeedbackTokens:
    """Sign run ids and check the tokens clients send back (constant-time comparison).

    Args:
        secret: the shared secret (at least :data:`MIN_SECRET_CHARS` characters); None = a random one for this
            process only.

    Raises:
        ValueError: the secret is too short.
    """

    def __init__(self, secret: str | None = None) -> None:
        if secret is not None and len(secret) < MIN_SECRET_CHARS:
            raise ValueError(
                f"The feedback secret has {len(secret)} characters; use at least {MIN_SECRET_CHARS} random ones "
                '(e.g. python -c "import secrets; print(secrets.token_urlsafe(32))").'
            )
        self._key = secret.encode() if secret is not None else secrets.token_bytes(32)

    def sign(self, run_id: str) -> str:
        """The token of ``run_id`` (43 URL-safe characters)."""
        digest = hmac.new(self._key, _DOMAIN + run_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def verify(self, run_id: str, token: str) -> bool:
        """Whether ``token`` is this server's (or a replica's with the same secret) token of ``run_id``."""
        return hmac.compare_digest(self.sign(run_id).encode(), token.encode())


class FeedbackServer(Protocol):
    """What :func:`post_feedback` needs of the server (the app's ``ServerContext``)."""

    router: EnergyAwareRouter
    metrics: ServerMetrics
    feedback_tokens: FeedbackTokens

    def authorize(self, request: Request) -> None: ...

    async def read_json(self, request: Request) -> Any: ...


async def post_feedback(server: FeedbackServer, request: Request) -> dict[str, Any]:
    """``POST /v1/feedback``: check the token, give the score to the router, answer what became of it.

    200 with ``learned`` and ``outcome`` (``"learned"``, or ``"unknown_run"`` for a run this server does not
    remember); 400 for a bad body; 403 for a token that is not the run's; 409 when the run was scored before;
    503 when the state store failed (send it again).
    """
    server.authorize(request)
    data = await server.read_json(request)
    try:
        req = FeedbackRequest.model_validate(data)
    except ValidationError as err:
        raise validation_error(err) from None
    if not server.feedback_tokens.verify(req.run_id, req.feedback_token):
        server.metrics.feedback.labels(outcome="bad_token").inc()
        raise ApiError(
            403,
            f"The feedback_token does not belong to run {req.run_id!r}. Send the feedback_token of that run's "
            "answer (its energyrouter.feedback_token, or the x-energyrouter-feedback-token header).",
            param="feedback_token",
            code="invalid_feedback_token",
        )
    try:
        outcome = await asyncio.to_thread(server.router.feedback_outcome, req.run_id, req.score, key=req.key)
    except RoutingError as err:
        raise ApiError(400, str(err), param="run_id", code="feedback_unavailable") from None
    except ValueError as err:
        raise ApiError(400, str(err), param="score", code="invalid_value") from None
    server.metrics.feedback.labels(outcome=outcome).inc()
    if outcome == "already_scored":
        raise ApiError(
            409,
            f"Run {req.run_id!r} was scored already; each run learns from its first score only.",
            param="run_id",
            code="feedback_already_given",
        )
    if outcome == "not_learned":
        raise ApiError(
            503,
            f"The score of run {req.run_id!r} could not be stored (the state store failed); send it again.",
            type="server_error",
            code="feedback_not_stored",
        )
    return {"object": "feedback", "run_id": req.run_id, "learned": outcome == "learned", "outcome": outcome}
