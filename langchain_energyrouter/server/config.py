"""The ``router.yaml`` schema of ``energyrouter serve``, and building a router from it.

Example::

    name: energyrouter                 # what `model: "<name>"` (or "auto") routes with
    profile: calibration/profiles/cpu-reference.json
    candidates:
      - name: smollm2-135m             # short name of a packaged model (or `path:` a local directory)
        max_new_tokens: 48
      - name: gemma3-270m
      - name: vllm-llama               # any OpenAI-compatible server (needs langchain-openai)
        base_url: http://10.0.0.7:8000/v1
        model_id: meta-llama/Llama-3.1-8B-Instruct
        api_key_env: VLLM_KEY
    weights: {accuracy: 0.6, energy: 0.3, time: 0.1}
    constraints: {max_runtime_s: 30}
    state_store: default               # null = in memory; a path = an SQLite file shared on this host
    limits: {max_in_flight_per_candidate: 4, queue_length: 16, max_queue_wait_s: 10, max_request_bytes: 1000000}
    api_key_env: ENERGYROUTER_API_KEY  # or api_key: "..." (bearer key; unset = no key)
    feedback_secret_env: ENERGYROUTER_FEEDBACK_SECRET  # signs feedback tokens: the same on every replica

Every field is validated with pydantic; :func:`load_config` names the file and the field on error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from langchain_energyrouter.decide.exploration import ExplorationOptions
from langchain_energyrouter.decide.scoring import Constraints, Weights
from langchain_energyrouter.errors import EnergyRouterError, missing_extra
from langchain_energyrouter.files import data_file
from langchain_energyrouter.router.decision_log import DEFAULT_BACKUPS, DEFAULT_MAX_BYTES

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from langchain_energyrouter.router import EnergyAwareRouter

__all__ = [
    "AppSettings",
    "CandidateConfig",
    "ConfigError",
    "DecisionLogConfig",
    "LimitsConfig",
    "ServerConfig",
    "build_router",
    "load_config",
]


class ConfigError(EnergyRouterError, ValueError):
    """The server's config file is missing, malformed or names something that cannot be built."""


class CandidateConfig(BaseModel):
    """One candidate model: a packaged short name, a local directory, or an OpenAI-compatible server."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str = Field(min_length=1)
    """The router's name for it (what the profile and a forced ``model`` use)."""
    model: str | None = None
    """Short name (``smollm2-135m``) or hub id to load locally; default: ``name`` (unless ``path``/``base_url``)."""
    path: str | None = None
    """A local model directory or ``.gguf`` file (relative to the config file)."""
    base_url: str | None = None
    """Base URL of an OpenAI-compatible server (vLLM, TGI, ``transformers serve``), e.g. ``http://host:8000/v1``."""
    model_id: str | None = None
    """The model name the remote server expects (default: ``name``)."""
    api_key_env: str | None = None
    """Environment variable holding the remote server's key (default: none sent)."""
    max_new_tokens: int = Field(default=64, gt=0)
    """Generation budget per call, tokens (a request's ``max_tokens`` may lower it, never raise it)."""
    device: str = "cpu"
    """Torch device of a local model."""
    max_in_flight: int | None = Field(default=None, gt=0)
    """This candidate's limit of concurrent requests (default: ``limits.max_in_flight_per_candidate``)."""
    timeout_s: float = Field(default=120.0, gt=0)
    """Request timeout for a remote candidate, seconds."""
    engine_metrics: str | None = None
    """The Prometheus ``/metrics`` URL of the engine serving a ``base_url`` candidate (vLLM, TGI): its own
    queue then feeds the load model (see the router's ``engine_metrics``)."""

    @model_validator(mode="after")
    def _one_source(self) -> CandidateConfig:
        given = [key for key in ("model", "path", "base_url") if getattr(self, key)]
        if len(given) > 1:
            raise ValueError(f"candidate {self.name!r} sets {given}; give only one of model, path or base_url")
        if self.engine_metrics and not self.base_url:
            raise ValueError(
                f"candidate {self.name!r} sets engine_metrics without base_url; only an engine reached by base_url "
                "has a queue of its own to read"
            )
        return self


class LimitsConfig(BaseModel):
    """Bounds that keep the server from queueing without end."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    max_in_flight_per_candidate: int = Field(default=8, gt=0)
    """Requests one candidate serves at once; beyond it the next-ranked candidate answers, else the request
    waits in the queue (``queue_length``) or gets 429."""
    queue_length: int = Field(default=0, ge=0, le=100_000)
    """Requests that may wait for a place when every candidate they could use is full (first come, first
    served); beyond it 429 at once. 0 (the default): none wait, a full server answers 429 at once."""
    max_queue_wait_s: float = Field(default=10.0, gt=0, le=3600)
    """Longest a queued request waits for a place, seconds; then 429 with ``Retry-After``."""
    max_request_bytes: int = Field(default=1_000_000, gt=0)
    """Largest request body, bytes (larger: 413)."""
    max_tokens: int | None = Field(default=None, gt=0)
    """Most tokens any answer may have: each candidate generates at most the smallest of this, its own budget
    and the request's ``max_tokens`` (None: the candidates' budgets and the request's)."""
    max_prompt_chars: int | None = Field(default=None, gt=0)
    """Longest prompt, characters of its messages and tools; longer: 413 before any token is counted (None: 32
    characters per token of the largest candidate context window, while the context-window check is on)."""
    retry_after_s: int = Field(default=1, ge=0)
    """``Retry-After`` seconds sent with a 429."""
    graceful_shutdown_s: int = Field(default=30, gt=0)
    """How long shutdown waits for in-flight requests, seconds."""


class DecisionLogConfig(BaseModel):
    """Where and how the decision log is written (``energyrouter report`` reads it)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    path: str = Field(min_length=1)
    """The JSONL file (relative to the config file); one line per call, appended."""
    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=4096)
    """Size at which the file rotates to ``PATH.1``, bytes."""
    backups: int = Field(default=DEFAULT_BACKUPS, ge=0)
    """Rotated files kept (0: the file starts over when full)."""
    prompts: bool = False
    """Also log each call's prompt (last user turn) and answer."""
    fsync: bool = False
    """Sync every line to disk: survives a power cut, for milliseconds per call (a killed server loses at most the line
    in flight either way)."""


class AppSettings(BaseModel):
    """What the app needs besides the router (built from a :class:`ServerConfig`, or directly in tests)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str = "energyrouter"
    """The server's model name: ``model: "<name>"`` or ``"auto"`` routes."""
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    max_in_flight: dict[str, int] = Field(default_factory=dict)
    """Per-candidate limits that differ from ``limits.max_in_flight_per_candidate``."""
    api_key: str | None = None
    """Bearer key clients must send; None = none required."""
    feedback_secret: str | None = None
    """Secret that signs feedback tokens (at least 32 characters); None = a random one per process."""
    log_prompts: bool = False
    """Log prompts and answers."""


class ServerConfig(BaseModel):
    """The whole ``router.yaml``."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str = "energyrouter"
    """The server's model name: ``model: "<name>"`` or ``"auto"`` routes."""
    candidates: list[CandidateConfig] = Field(min_length=1)
    """The models to route between (at least one; see the candidate keys below)."""
    profile: str
    """Path of the profile JSON (relative to the config file) or a reference profile name (``cpu-reference``)."""
    weights: dict[str, float] | None = None
    """Default weights ``{accuracy, energy, time}``; None = balanced."""
    constraints: dict[str, float] | None = None
    """Default hard limits (``max_runtime_s``, ``max_energy_j``, ``min_accuracy``)."""
    normalization: Literal["minmax", "relative", "hybrid"] | None = None
    """None = ``relative`` when ``prompt_routing`` is set, else ``minmax`` (see the router's ``normalization``)."""
    task_type: str | None = None
    """Default task type (per-task accuracy and answer length from the profile); a request's wins."""
    state_store: str | None = None
    """None/``memory`` = in this process; ``default`` = the user's SQLite file; a path = that SQLite file;
    ``redis://host:port/db`` = a Redis server shared by replicas on several hosts."""
    prompt_routing: str | None = None
    """Path of a trained per-prompt predictor (``energyrouter train``), or the name of a shipped one
    (``packaged-models``): enables ``POST /v1/feedback``."""
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    """Bounds on requests (see the limits keys below)."""
    api_key: str | None = None
    """Bearer key clients must send (prefer ``api_key_env``: a file is easier to leak)."""
    api_key_env: str | None = None
    """Environment variable holding the bearer key."""
    feedback_secret: str | None = Field(default=None, min_length=32)
    """Secret (32+ characters) that signs the feedback tokens answers carry; ``POST /v1/feedback`` requires the
    run's token. Unset: a random secret per process. Give replicas behind one load balancer the same one (prefer
    ``feedback_secret_env``)."""
    feedback_secret_env: str | None = None
    """Environment variable holding the feedback secret."""
    log_prompts: bool = False
    """Log prompts and answers (off: only routing, energy and timing are logged)."""
    exploration: bool | dict[str, float] | None = None
    """Explore where predictions are uncertain (the router's ``exploration``): true = the defaults (at most 10% of
    calls, 5% extra joules), a mapping of its options (``share``, ``max_extra_energy_share``, ``seed``), null = off."""
    decision_log: str | DecisionLogConfig | None = None
    """Append one JSON line per call (choice, predictions, measurement) for ``energyrouter report``: a path, or
    the options below; ``--decision-log`` wins. None = off."""
    host: str = "127.0.0.1"
    """Address to bind (``--host`` wins); 127.0.0.1 keeps the server off the network."""
    port: int = Field(default=8000, ge=0, le=65535)
    """Port to bind (``--port`` wins)."""

    @field_validator("weights")
    @classmethod
    def _valid_weights(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None:
            Weights.coerce(value)
        return value

    @field_validator("exploration")
    @classmethod
    def _valid_exploration(cls, value: bool | dict[str, float] | None) -> bool | dict[str, float] | None:
        if value:
            ExplorationOptions.coerce(value)
        return value

    @field_validator("constraints")
    @classmethod
    def _valid_constraints(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None:
            Constraints.coerce(value, Constraints())
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> ServerConfig:
        names = [c.name for c in self.candidates]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"candidate names must be unique; repeated: {duplicates}")
        if self.name in names or self.name == "auto":
            raise ValueError(f"server name {self.name!r} must differ from 'auto' and from every candidate's name")
        return self

    def with_limits(self, **overrides: Any) -> ServerConfig:
        """A copy whose ``limits`` take ``overrides`` (the ``serve`` flags; None values are left out).

        Raises:
            ConfigError: an override is out of range (the message names its flag).
        """
        given = {key: value for key, value in overrides.items() if value is not None}
        try:
            limits = LimitsConfig.model_validate({**self.limits.model_dump(), **given})
        except ValidationError as err:
            problems = "; ".join(
                f"--{'-'.join(str(e['loc'][0]).split('_'))} {given.get(str(e['loc'][0]))!r}: {e['msg']}"
                for e in err.errors()
            )
            raise ConfigError(f"Invalid serve option: {problems}") from None
        return self.model_copy(update={"limits": limits})

    def bearer_key(self) -> str | None:
        """The key clients must send, from ``api_key`` or ``api_key_env`` (None: no key required)."""
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ConfigError(
                    f"api_key_env names {self.api_key_env!r}, which is unset or empty; export it or drop api_key_env."
                )
            return key
        return self.api_key or None

    def signing_secret(self) -> str | None:
        """The feedback tokens' secret, from ``feedback_secret`` or ``feedback_secret_env`` (None: a random one)."""
        if self.feedback_secret_env:
            secret = os.environ.get(self.feedback_secret_env)
            if not secret or len(secret) < 32:
                raise ConfigError(
                    f"feedback_secret_env names {self.feedback_secret_env!r}, which is unset or shorter than 32 "
                    "characters; export a random one, e.g. `openssl rand -base64 32`."
                )
            return secret
        return self.feedback_secret

    def app_settings(self) -> AppSettings:
        """The app's settings (reads the bearer key from the environment when ``api_key_env`` is set)."""
        return AppSettings(
            name=self.name,
            limits=self.limits,
            max_in_flight={c.name: c.max_in_flight for c in self.candidates if c.max_in_flight is not None},
            api_key=self.bearer_key(),
            feedback_secret=self.signing_secret(),
            log_prompts=self.log_prompts,
        )


def load_config(path: str | os.PathLike[str]) -> tuple[ServerConfig, Path]:
    """Read and validate a ``router.yaml``.

    Returns:
        The config and the directory relative paths in it are resolved against.

    Raises:
        ConfigError: the file is missing, not YAML, or fails validation (the message names the field).
        MissingExtraError: PyYAML is not installed.
    """
    try:
        import yaml
    except ImportError as err:
        raise missing_extra("pyyaml", "serve", "Reading the server config") from err
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"Cannot read server config {file}: {err}. Pass --config with an existing file.") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"Server config {file} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"Server config {file} must be a YAML mapping (name, candidates, profile, ...).")
    try:
        return ServerConfig.model_validate(data), file.resolve().parent
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"Server config {file} is invalid: {problems}") from err


def _resolve(base: Path, value: str) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def _predictor(base: Path, value: str) -> str:
    """A predictor path relative to the config file, else the name of a shipped predictor.

    Raises:
        ConfigError: neither exists.
    """
    path = Path(_resolve(base, value))
    if path.exists():
        return str(path)
    if Path(value).suffix or len(Path(value).parts) > 1:
        raise ConfigError(f"prompt_routing: {path} does not exist (relative paths start at the config's directory).")
    try:
        return str(data_file(value, "predictors", ".json"))
    except FileNotFoundError as err:
        raise ConfigError(f"prompt_routing: {err}") from None


def build_candidate(candidate: CandidateConfig, base: Path) -> BaseChatModel:
    """The chat model of one candidate.

    Raises:
        MissingExtraError: a ``base_url`` candidate without ``langchain-openai`` installed.
        ModelLoadError: a local model cannot be loaded.
    """
    if candidate.base_url:
        from pydantic import SecretStr

        try:
            from langchain_openai import ChatOpenAI
        except ImportError as err:
            raise missing_extra(
                "langchain-openai", "openai", f"Candidate {candidate.name!r} (base_url {candidate.base_url})"
            ) from err
        key = os.environ.get(candidate.api_key_env) if candidate.api_key_env else None
        return ChatOpenAI(  # type: ignore[call-arg,unused-ignore]
            model=candidate.model_id or candidate.name,
            base_url=candidate.base_url,
            api_key=SecretStr(key or "not-needed"),
            max_tokens=candidate.max_new_tokens,
            timeout=candidate.timeout_s,
            stream_usage=True,
        )
    from langchain_energyrouter.models import load_chat_model

    source = _resolve(base, candidate.path) if candidate.path else (candidate.model or candidate.name)
    return load_chat_model(source, max_new_tokens=candidate.max_new_tokens, device=candidate.device)


def build_router(config: ServerConfig, base: Path) -> EnergyAwareRouter:
    """The router a config describes (loads every candidate; local models convert once, then load in seconds)."""
    from langchain_energyrouter.profile import EnergyProfile, reference_profile_names
    from langchain_energyrouter.router import EnergyAwareRouter

    if config.profile in reference_profile_names():
        profile = EnergyProfile.reference(config.profile)
    else:
        profile = EnergyProfile.load(_resolve(base, config.profile))
    store: Any = config.state_store
    if store not in (None, "memory", "default") and "://" not in store:  # a URL (redis://) is not a path
        store = _resolve(base, store)
    models = {c.name: build_candidate(c, base) for c in config.candidates}
    return EnergyAwareRouter(
        models=models,
        energy_profile=profile,
        weights=config.weights,
        constraints=config.constraints,
        normalization=config.normalization,
        task_type=config.task_type,
        state_store=store,
        prompt_routing=_predictor(base, config.prompt_routing) if config.prompt_routing else None,
        engine_metrics={c.name: c.engine_metrics for c in config.candidates if c.engine_metrics} or None,
        exploration=config.exploration or None,
        decision_log=_decision_log(config.decision_log, base),
    )


def _decision_log(value: str | DecisionLogConfig | None, base: Path) -> dict[str, Any] | None:
    """The router's ``decision_log`` options (the path resolved against the config's directory)."""
    if value is None:
        return None
    options = DecisionLogConfig(path=value) if isinstance(value, str) else value
    return {**options.model_dump(), "path": _resolve(base, options.path)}
