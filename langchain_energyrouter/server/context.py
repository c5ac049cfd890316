"""The routing server's per-app state: the router, settings, per-candidate slots and metrics, and the
request plumbing every handler shares (authorisation, bounded body reading, parsing, planning, refusals)."""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from fastapi import Request
from langchain_core.messages import BaseMessage, convert_to_messages
from pydantic import ValidationError

from langchain_energyrouter.decide.scoring import Weights
from langchain_energyrouter.errors import NoFeasibleModelError, UnknownModelError, WeightsError
from langchain_energyrouter.router.candidates import local_pipeline, pipeline_cannot_answer
from langchain_energyrouter.server.admission import HeldPlace, Slots, Wait
from langchain_energyrouter.server.bounds import RequestBounds
from langchain_energyrouter.server.feedback import FeedbackTokens
from langchain_energyrouter.server.metrics import ServerMetrics
from langchain_energyrouter.server.unsupported import unsupported_parameter
from langchain_energyrouter.server.wire import (
    AUTO,
    ApiError,
    ChatRequest,
    RoutingOptions,
    joined_text_parts,
    validation_error,
)

if TYPE_CHECKING:
    from langchain_energyrouter.decide.scheduler import Decision
    from langchain_energyrouter.router import EnergyAwareRouter
    from langchain_energyrouter.router.call import RoutedCall
    from langchain_energyrouter.server.config import AppSettings

__all__ = ["PLANNING_THREADS", "ServerContext", "Slots"]

logger = logging.getLogger("langchain_energyrouter.server")

PLANNING_THREADS = 4
"""Threads that plan requests (count tokens with each chat template, encode features, decide): off the event
loop, so a large prompt never stalls other requests, and apart from the threads that run models."""


PLANS_PER_REQUEST = 3
"""Decisions one request may take: the place of the decided candidate can be taken by another request while
this one is planned; it then waits in the queue (all full) or decides again among the candidates still free."""


def public_failure(failure: Mapping[str, Any]) -> dict[str, Any]:
    """A failed attempt as clients see it: the candidate, the error's type and the attempt's figures, not the
    error's text (paths, hosts or keys in an exception message stay in the server's log)."""
    return {key: value for key, value in failure.items() if key != "error"}


# -- the handlers' shared state ---------------------------------------------------
class ServerContext:
    """The handlers' shared state: router, settings, slots, metrics, the request bounds and the planning
    threads (:meth:`close` stops them)."""

    def __init__(self, router: EnergyAwareRouter, settings: AppSettings) -> None:
        self.router = router
        self.settings = settings
        self.candidates = list(router.candidates)
        unknown = sorted(set(settings.max_in_flight) - set(self.candidates))
        if unknown:
            raise ValueError(f"max_in_flight names {unknown}, which are not candidates ({self.candidates}).")
        default = settings.limits.max_in_flight_per_candidate
        limits = {name: settings.max_in_flight.get(name, default) for name in self.candidates}
        self.metrics = ServerMetrics(self.candidates)
        self.slots = Slots(
            limits, self.metrics, queue_length=settings.limits.queue_length, max_wait_s=settings.limits.max_queue_wait_s
        )
        self.feedback_tokens = FeedbackTokens(settings.feedback_secret)
        self.bounds = RequestBounds(router, settings.limits)
        self._planner = ThreadPoolExecutor(PLANNING_THREADS, thread_name_prefix="energyrouter-plan")

    def close(self) -> None:
        """Stop the planning threads (a plan under way finishes first)."""
        self._planner.shutdown(wait=True)

    # -- request plumbing -------------------------------------------------------
    def authorize(self, request: Request) -> None:
        key = self.settings.api_key
        if key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            self.metrics.rejected.labels(reason="unauthorized").inc()
            raise ApiError(
                401,
                "Missing bearer API key: send the header 'Authorization: Bearer <key>' (the OpenAI client's api_key).",
                code="invalid_api_key",
            )
        if not hmac.compare_digest(token.strip().encode(), key.encode()):
            self.metrics.rejected.labels(reason="unauthorized").inc()
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")

    async def read_json(self, request: Request) -> Any:
        limit = self.settings.limits.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise self._too_large(int(declared))
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > limit:
                raise self._too_large(len(body))
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:  # RecursionError: nested too deep
            raise ApiError(
                400, f"The request body is not valid JSON ({err}). Send a JSON object.", code="invalid_json"
            ) from None

    def _too_large(self, size: int) -> ApiError:
        self.metrics.rejected.labels(reason="too_large").inc()
        limit = self.settings.limits.max_request_bytes
        return ApiError(
            413,
            f"Request body of {size} bytes exceeds this server's limit of {limit} bytes "
            "(limits.max_request_bytes); shorten the prompt.",
            code="request_too_large",
        )

    def busy(self, names: list[str], wait: Wait | None = None) -> ApiError:
        """429 for a request no candidate in ``names`` had a place for (after ``wait``, if it queued)."""
        detail = ", ".join(f"{n} {self.slots.counts[n]}/{self.slots.limits[n]}" for n in names)
        limits = self.settings.limits
        retry = limits.retry_after_s
        if wait is None or not limits.queue_length:
            reason, queue = "busy", ""
        elif wait.outcome == "timeout":
            reason, queue = "queue_timeout", f" and none freed within {wait.waited_s:.3g} s (limits.max_queue_wait_s)"
        else:
            reason, queue = "queue_full", f" and {self.slots.queued} requests wait already (limits.queue_length)"
        self.metrics.rejected.labels(reason=reason).inc()
        return ApiError(
            429,
            f"Every eligible candidate is at its limit of requests in flight ({detail}){queue}; retry in {retry} s.",
            type="rate_limit_error",
            code="candidates_busy",
            headers={"Retry-After": str(retry)},
        )

    # -- chat completions -------------------------------------------------------
    def parse_chat(self, data: Any) -> tuple[ChatRequest, list[BaseMessage], dict[str, Any], str | None]:
        """The request, its messages, the router keywords and the forced candidate (None = route)."""
        if not isinstance(data, dict):
            raise ApiError(400, "The request body must be a JSON object.", code="invalid_value")
        refused = unsupported_parameter(data)
        if refused is not None:
            raise ApiError(400, refused[1], param=refused[0], code="unsupported_parameter")
        try:
            req = ChatRequest.model_validate(data)
        except ValidationError as err:
            raise validation_error(err) from None
        try:
            messages = convert_to_messages(joined_text_parts(req.messages))
        except (ValueError, TypeError, KeyError, AttributeError, NotImplementedError) as err:
            # LangChain's converter fails on a malformed message with whatever the shape makes it raise
            raise ApiError(400, f"Cannot read messages: {err}", param="messages", code="invalid_value") from None
        options: dict[str, Any] = {}
        routing = req.routing or RoutingOptions()
        if routing.weights is not None:
            try:
                options["weights"] = Weights.coerce(routing.weights)  # type: ignore[arg-type]
            except (WeightsError, TypeError, ValueError) as err:
                raise ApiError(
                    400, f"Invalid routing weights: {err}", param="routing.weights", code="invalid_value"
                ) from None
        if routing.constraints is not None:
            try:  # a client tightens the server's constraints, never loosens them
                options["constraints"] = self.bounds.constraints(routing.constraints)
            except (TypeError, ValueError) as err:
                raise ApiError(
                    400, f"Invalid routing constraints: {err}", param="routing.constraints", code="invalid_value"
                ) from None
        too_large = self.bounds.prompt_too_large(req.messages, req.tools, options.get("constraints"))
        if too_large is not None:  # before any token is counted: the cheap bound first
            self.metrics.rejected.labels(reason="too_large").inc()
            raise too_large
        if routing.task_type is not None:
            options["task_type"] = routing.task_type
        caps = self.bounds.output_caps(req.max_completion_tokens or req.max_tokens)
        if caps is not None:
            options["max_tokens"] = caps
        if req.tools:
            options["tools"] = req.tools
            if req.tool_choice is not None:
                options["tool_choice"] = req.tool_choice
        if req.model in (AUTO, self.settings.name):
            forced = None
        elif req.model in self.slots.limits:
            forced = req.model
        else:
            raise ApiError(
                404,
                f"The model {req.model!r} does not exist here; use {AUTO!r} or {self.settings.name!r} to route, "
                f"or one of {self.candidates} to force a candidate.",
                param="model",
                code="model_not_found",
            )
        return req, messages, options, forced

    async def plan(
        self,
        messages: list[BaseMessage],
        options: dict[str, Any],
        forced: str | None,
        stop: list[str] | None,
        client_left: Callable[[], Awaitable[None]] | None = None,
    ) -> RoutedCall:
        """Decide once, among the candidates with a free place (a forced one must have one) that can read the
        conversation. When none has a place, wait in the queue for one (``limits.queue_length``,
        ``limits.max_queue_wait_s``); 429 when the queue is off or full, or the wait runs out; 499 when
        ``client_left`` returns first (the client closed the connection: no model runs for it).

        The plan itself (token counting, feature encoding, the decision) runs on a planning thread: a large
        prompt never stalls the event loop."""
        cannot = self.cannot_read(messages)
        if forced is not None and forced in cannot:
            raise ApiError(
                400, f"Candidate {forced} cannot serve this request: {cannot[forced]}.", param="messages",
                code="no_feasible_model",
            )  # fmt: skip
        eligible = [forced] if forced is not None else [name for name in self.candidates if name not in cannot]
        if not eligible:
            detail = "; ".join(f"{name}: {why}" for name, why in cannot.items())
            raise ApiError(
                400, f"No candidate can serve this request ({detail}).", param="messages", code="no_feasible_model"
            )
        place = HeldPlace(self.slots)
        try:
            for _ in range(PLANS_PER_REQUEST):
                full = self.slots.full()
                if all(name in full for name in eligible):
                    wait = await self.slots.wait(eligible, abandon=client_left)
                    if wait.outcome == "abandoned":  # a queued request nobody reads takes no place, runs no model
                        self.metrics.rejected.labels(reason="client_left").inc()
                        raise ApiError(
                            499,
                            "The client closed the connection while the request waited for a place.",
                            code="client_left",
                        )
                    if wait.name is None:
                        raise self.busy(eligible, wait)
                    place.held = wait.name  # the place handed over serves this call's first attempt
                    full = self.slots.full()
                    full.pop(wait.name, None)
                busy = {} if forced is not None else full  # left out for want of a place (a forced one waited)
                exclude = {} if forced is not None else {**cannot, **busy}
                call = await self._decide(messages, options, forced, stop, exclude, place, busy)
                # Take the decided candidate's place now: a request decided meanwhile cannot count on it too.
                if place.hold(call.model) or place.held is not None:
                    return call
                # Its place was taken while this request was planned (on a planning thread): look again.
            raise self.busy([call.model])
        except BaseException:
            place.close()
            raise

    async def _decide(
        self,
        messages: list[BaseMessage],
        options: dict[str, Any],
        forced: str | None,
        stop: list[str] | None,
        exclude: dict[str, str],
        admission: HeldPlace,
        busy: dict[str, str],
    ) -> RoutedCall:
        """One plan on a planning thread; ``busy``: the candidates ``exclude`` leaves out for being full (when no
        other is feasible, a later retry may succeed: 429, not 400)."""
        start = time.perf_counter()
        plan = functools.partial(
            self.router.plan, messages, stop=stop, model=forced, exclude=exclude or None, admission=admission,
            **options,
        )  # fmt: skip
        try:
            call = await asyncio.get_running_loop().run_in_executor(self._planner, plan)
        except NoFeasibleModelError as err:
            if busy.keys() & err.reasons.keys():  # the feasible ones are full: a later retry may succeed
                raise self.busy(self.candidates) from None
            raise ApiError(
                400, f"No candidate can serve this request: {err}", param="routing", code="no_feasible_model"
            ) from None
        except UnknownModelError as err:
            raise ApiError(404, str(err), param="model", code="model_not_found") from None
        except (WeightsError, ValueError, TypeError) as err:
            raise ApiError(400, f"Invalid routing options: {err}", param="routing", code="invalid_value") from None
        self.metrics.decision.observe(time.perf_counter() - start)
        overflow = self.bounds.forced_overflow(call, options.get("constraints"))
        if overflow is not None:  # forcing a model picks it, it does not switch off the operator's window check
            raise overflow
        return call

    def cannot_read(self, messages: list[BaseMessage]) -> dict[str, str]:
        """The candidates that would fail on ``messages`` as sent (local pipelines: see
        :func:`~langchain_energyrouter.router.candidates.pipeline_cannot_answer`), and why."""
        why = pipeline_cannot_answer(messages)
        if why is None:
            return {}
        return {name: why for name, model in self.router.candidates.items() if local_pipeline(model) is not None}

    def count_failures(self, rid: str, call: RoutedCall, served: str | None, stream: bool) -> None:
        """Metrics and log lines of the attempts that failed, and the fallbacks they caused."""
        label = "true" if stream else "false"
        for index, failure in enumerate(call.failures):
            name = failure["model"]
            self.metrics.requests.labels(model=name, stream=label, outcome="error").inc()
            self.metrics.observe_failure(failure)
            logger.warning("%s candidate %s failed: %s: %s", rid, name, failure["error_type"], failure["error"])
            following = call.failures[index + 1]["model"] if index + 1 < len(call.failures) else served
            if following is not None:
                self.metrics.fallbacks.labels(from_model=name, to_model=following).inc()

    def upstream_error(self, call: RoutedCall) -> ApiError:
        if not call.failures:
            return self.busy(call.order)
        detail = "; ".join(f"{f['model']}: {f['error_type']}" for f in call.failures)
        return ApiError(
            502, f"Every candidate tried failed ({detail}); the server's log has the errors.", type="server_error",
            code="upstream_error",
        )  # fmt: skip

    def extension(self, decision: Decision, name: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
        routing = metadata.get("routing") or {}
        run_id = routing.get("run_id")
        return {
            "served_by": name,
            "run_id": run_id,
            "feedback_token": self.feedback_tokens.sign(str(run_id)) if run_id else None,
            "routed": not decision.forced,
            "decision": decision.as_dict(),
            "failures": [public_failure(f) for f in routing.get("failures") or []],
            "generated_tokens": routing.get("generated_tokens"),
            "energy": metadata.get("energy"),
        }

    def log_answer(
        self, rid: str, name: str, metadata: Mapping[str, Any], messages: list[BaseMessage], text: str
    ) -> None:
        energy = metadata.get("energy") or {}
        logger.info(
            "%s served_by=%s energy_j=%s method=%s runtime_s=%s",
            rid, name, energy.get("energy_j"), energy.get("method"), energy.get("runtime_s"),
        )  # fmt: skip
        if self.settings.log_prompts:
            logger.info("%s prompt=%r answer=%r", rid, [m.content for m in messages], text)
