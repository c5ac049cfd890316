"""The coefficient file ("profile"): pydantic models, load, save, validate.

A profile describes one deployment: for each model, OLS cost models for runtime
and energy of the form::

    y = b0 + b1 * tin + b2 * tout + b3 * tin * tout

(``tin``/``tout`` are input/output tokens; the interaction term ``b3`` models
attention's cost growing with context while decoding), a predictor of the
output length, accuracy, the context window and fit statistics. It also says on
which device it was measured and how energy was obtained.

Loading validates everything. A malformed, truncated, future-versioned or
internally inconsistent file raises :class:`~langchain_energyrouter.errors.ProfileError`
naming the file and the field.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from langchain_energyrouter.cost import (
    DEFAULT_LENGTH_LOG_SIGMA,
    Coefficients,
    CompiledModel,
    LengthDistribution,
    LoadTuple,
    linear_cost,
    load_factors,
    predict_costs,
    prior_length,
)
from langchain_energyrouter.errors import ProfileError
from langchain_energyrouter.files import shipped_data_dirs, write_text_atomically

SCHEMA_VERSION = 2
"""The version of the profile format this package writes.

Version 2 added training ranges, held-out bias, sign constraints, censoring and
the load model; every new field is optional, so version-1 files load unchanged."""

EnergyMethod = Literal["nvml_counter", "nvml_poll", "rapl", "estimate", "none"]
"""How energy was obtained: GPU counter, GPU power polling, CPU RAPL, an estimate, or not at all."""

ORIGINAL_OUTPUT_SLOPE = 1.028
"""The original scheduler's global heuristic: ``tout = 1.028 * tin + 44.12``."""
ORIGINAL_OUTPUT_INTERCEPT = 44.12


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class FitStats(_Strict):
    """How well a fitted model describes the measurements it came from."""

    n: int = Field(ge=0)
    """Rows used in the fit."""
    r_squared: float | None = None
    """Coefficient of determination on the rows used."""
    mape_holdout: float | None = Field(default=None, ge=0)
    """Mean absolute percentage error on held-out rows (k-fold or a split), as a fraction."""
    folds: int | None = Field(default=None, ge=2)
    """Number of cross-validation folds behind ``mape_holdout``, if k-fold."""
    rows_dropped: int = Field(default=0, ge=0)
    """Rows that could not be used (NaN, zero or negative values)."""
    conf_int: dict[str, tuple[float, float]] | None = None
    """95% confidence interval of each coefficient, by coefficient name."""
    note: str = ""
    """Free text: the model choice made (with or without interaction) and why."""
    bias_holdout: float | None = Field(default=None, ge=0)
    """Summed held-out predictions over summed measurements (1.0 = unbiased on average)."""
    cv: str | None = None
    """How the held-out rows were chosen, e.g. ``"grouped by design cell"`` or ``"time-ordered"``."""
    condition_number: float | None = Field(default=None, ge=0)
    """Condition number of the (column-scaled) design matrix; large values mean collinear inputs."""
    constrained: list[str] = Field(default_factory=list)
    """Coefficients held at 0 because the free fit made them negative (one more token never costs less)."""


class CostModel(_Strict):
    """``y = intercept + input_tokens*tin + output_tokens*tout + interaction*tin*tout``.

    Units of ``y`` are seconds for a runtime model and joules for an energy model.
    """

    intercept: float
    input_tokens: float
    """Coefficient of input tokens (b1)."""
    output_tokens: float
    """Coefficient of output tokens (b2)."""
    interaction: float = 0.0
    """Coefficient of ``tin * tout`` (b3)."""
    uses_interaction: bool = True
    """False when the fit was made without the interaction term (then ``interaction`` is 0)."""
    input_range: tuple[float, float] | None = None
    """Smallest and largest input tokens in the training rows; predictions outside are flagged ``extrapolated``."""
    output_range: tuple[float, float] | None = None
    """Smallest and largest output tokens in the training rows."""
    fit: FitStats | None = None

    @model_validator(mode="after")
    def _interaction_consistent(self) -> CostModel:
        if not self.uses_interaction and self.interaction != 0.0:
            raise ValueError(
                f"interaction is {self.interaction} but uses_interaction is false; "
                "set interaction to 0 or uses_interaction to true"
            )
        return self

    @field_validator("input_range", "output_range")
    @classmethod
    def _range_ordered(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not (0 <= value[0] <= value[1]):
            raise ValueError(f"range {list(value)} must be (low, high) with 0 <= low <= high")
        return value

    @property
    def coefficients(self) -> Coefficients:
        """``(b0, b1, b2, b3)``."""
        return (self.intercept, self.input_tokens, self.output_tokens, self.interaction)

    def raw(self, input_tokens: float, output_tokens: float) -> float:
        """The linear prediction, unclamped (may be negative when extrapolating)."""
        return linear_cost(self.coefficients, input_tokens, output_tokens)


class OutputLengthModel(_Strict):
    """Predicts output tokens from input tokens: ``tout = intercept + slope * tin``.

    The default is the original scheduler's global heuristic, used when no fit exists.
    """

    intercept: float = ORIGINAL_OUTPUT_INTERCEPT
    slope: float = ORIGINAL_OUTPUT_SLOPE
    source: Literal["fitted", "heuristic"] = "heuristic"
    max_output_tokens: int | None = Field(default=None, gt=0)
    """The deployment's generation limit (max new tokens it serves), a hard cap on predictions;
    None = no limit beyond the request's. Set it from the serving configuration
    (``energyrouter fit --max-output-tokens NAME=N``), never from calibration data: the longest
    answer seen while fitting is the calibration budget, not a property of the model
    (version-1 files stored that here; it is dropped when they load)."""
    censored_at: int | None = Field(default=None, gt=0)
    """The generation budget while fitting: answers of this length were cut, so their true
    length is unknown (at least this); the fit treats them as censored."""
    by_task: dict[str, float] = Field(default_factory=dict)
    """Mean output tokens per task type (``energyrouter accuracy`` records them from the
    suite's answers); used instead of the line when a request names its task type."""
    log_sigma: float | None = Field(default=None, gt=0)
    """Spread (standard deviation) of ``log1p(tokens)`` around the line or the task means, when measured;
    None = :data:`~langchain_energyrouter.cost.DEFAULT_LENGTH_LOG_SIGMA`."""
    fit: FitStats | None = None

    @property
    def prediction_cap(self) -> int | None:
        """The cap on predictions: the deployment's generation limit, if the profile states one."""
        return self.max_output_tokens

    @field_validator("by_task")
    @classmethod
    def _task_lengths_positive(cls, value: dict[str, float]) -> dict[str, float]:
        for task, tokens in value.items():
            if not tokens >= 0.0:
                raise ValueError(f"output length for task {task!r} is {tokens}, expected tokens >= 0")
        return value


class LoadModel(_Strict):
    """How one request's cost changes with the number of requests in flight on its model.

    With ``n`` requests in flight (this one included) and ``ref`` = :attr:`reference_load`,
    the load at which the cost models were measured::

        runtime factor = 1 + runtime_per_request * (n - ref)
        energy factor  = (1 - energy_fixed_share) + energy_fixed_share * ref / n

    Inter-token latency grows about linearly with the batch (``t0 + t1*b``), and
    energy per token falls as fixed power is shared (``A + C/b``): the ML.ENERGY
    measurements follow both forms (``benchmarks/bench_load.py``).
    """

    runtime_per_request: float = Field(ge=0)
    """Relative runtime increase per extra request in flight."""
    energy_fixed_share: float = Field(ge=0, le=1)
    """Share of a request's energy (at ``reference_load``) that is fixed power shared by the requests in flight."""
    reference_load: float = Field(default=1.0, gt=0)
    """Requests in flight when the runtime and energy models were measured."""
    max_load: float | None = Field(default=None, gt=0)
    """Largest load measured; predictions beyond are flagged ``load_extrapolated``."""
    fit: FitStats | None = None

    @model_validator(mode="after")
    def _runtime_factor_positive(self) -> LoadModel:
        # The runtime factor is smallest for a request alone (n = 1): 1 - runtime_per_request * (ref - 1).
        # At or below 0 it predicts 0 s (or less) and the learner would divide measurements by it.
        alone = 1.0 + self.runtime_per_request * (1.0 - self.reference_load)
        if not alone > 0:
            raise ValueError(
                f"runtime_per_request={self.runtime_per_request} with reference_load={self.reference_load} "
                f"gives a runtime factor of {alone:g} for a request alone (1 + runtime_per_request * "
                "(1 - reference_load)); it must be > 0: lower runtime_per_request below "
                f"{1.0 / (self.reference_load - 1.0):g} or reference_load, or refit the load model"
            )
        return self

    def factors(self, in_flight: float) -> tuple[float, float]:
        """``(runtime factor, energy factor)`` at ``in_flight`` requests (this one included)."""
        return load_factors(self.compile(), in_flight)

    def compile(self) -> LoadTuple:
        """This model as plain floats for the hot path."""
        return (self.runtime_per_request, self.energy_fixed_share, self.reference_load, self.max_load)


class Prediction(NamedTuple):
    """A model's predicted cost for one request."""

    runtime_s: float
    energy_j: float
    flags: tuple[str, ...]
    """``runtime_clamped`` / ``energy_clamped`` when the linear model went below zero."""


class ModelProfile(_Strict):
    """Everything the scheduler knows about one model."""

    model_id: str | None = None
    """Where the model came from (HF id, local path or packaged short name), for people."""
    runtime: CostModel
    """Runtime model; predicts seconds."""
    energy: CostModel
    """Energy model; predicts joules (by the profile's ``energy_method``)."""
    output_length: OutputLengthModel = Field(default_factory=OutputLengthModel)
    accuracy: float = Field(ge=0.0, le=1.0)
    """Static accuracy score in [0, 1]."""
    accuracy_by_task: dict[str, float] = Field(default_factory=dict)
    """Accuracy per task type (e.g. ``"math"``), each in [0, 1]; falls back to ``accuracy``."""
    context_window: int = Field(gt=0)
    """Maximum prompt plus output tokens."""
    load: LoadModel | None = None
    """How cost changes with requests in flight; None = not measured (cost does not depend on load)."""

    @field_validator("accuracy_by_task")
    @classmethod
    def _task_scores_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        for task, score in value.items():
            if not (0.0 <= score <= 1.0):
                raise ValueError(f"accuracy for task {task!r} is {score}, expected a value in [0, 1]")
        return value

    def predict(self, input_tokens: float, output_tokens: float, in_flight: float | None = None) -> Prediction:
        """Predict runtime (s) and energy (J) of one request.

        Args:
            input_tokens: prompt tokens.
            output_tokens: generated tokens.
            in_flight: requests in flight on this model, this one included (None = the
                profile's reference load, i.e. no load adjustment).

        Negative extrapolations are clamped to 0 and flagged; inputs outside the training
        ranges are flagged ``extrapolated``.
        """
        return Prediction(*predict_costs(self.compile(""), input_tokens, output_tokens, in_flight))

    def predict_output_length(self, input_tokens: float, task_type: str | None = None) -> LengthDistribution:
        """The answer length's distribution: per task type where known, else the line in the input tokens."""
        return prior_length(self.compile(""), input_tokens, task_type)

    def predict_output_tokens(
        self, input_tokens: float, max_output_tokens: int | None = None, task_type: str | None = None
    ) -> float:
        """Predicted output tokens: the mean of the length distribution under the request's cap and the
        deployment's (``min(tokens, cap)``, what a capped generation produces on average), at least 1."""
        deployment = self.output_length.prediction_cap
        caps = [c for c in (max_output_tokens, deployment) if c is not None]
        length = self.predict_output_length(input_tokens, task_type)
        return max(length.mean_tokens(min(caps) if caps else None), 1.0)

    def compile(self, name: str) -> CompiledModel:
        """This entry as plain values for the scheduler's hot path."""
        return CompiledModel(
            name=name,
            runtime=self.runtime.coefficients,
            energy=self.energy.coefficients,
            output_intercept=self.output_length.intercept,
            output_slope=self.output_length.slope,
            output_by_task=dict(self.output_length.by_task),
            output_cap=self.output_length.prediction_cap,
            output_log_sigma=self.output_length.log_sigma or DEFAULT_LENGTH_LOG_SIGMA,
            accuracy=self.accuracy,
            accuracy_by_task=dict(self.accuracy_by_task),
            context_window=self.context_window,
            load=self.load.compile() if self.load is not None else None,
            input_range=_range_of(self.runtime, self.energy, "input_range"),
            output_range=_range_of(self.runtime, self.energy, "output_range"),
        )

    def accuracy_for(self, task_type: str | None) -> float:
        """Accuracy for a task type, falling back to the static score."""
        if task_type is None:
            return self.accuracy
        return self.accuracy_by_task.get(task_type, self.accuracy)


def _range_of(runtime: CostModel, energy: CostModel, attr: str) -> tuple[float, float] | None:
    """The training range both cost models cover (their intersection), or None when unknown."""
    ranges = [r for r in (getattr(runtime, attr), getattr(energy, attr)) if r is not None]
    if not ranges:
        return None
    return (max(r[0] for r in ranges), min(r[1] for r in ranges))


class DeviceInfo(_Strict):
    """The hardware a profile was measured on."""

    name: str
    """E.g. ``"NVIDIA A100-SXM4-40GB"`` or ``"2-core x86_64 CPU"``."""
    kind: Literal["cuda", "cpu", "mps", "other"] = "other"
    count: int = Field(default=1, ge=1)
    notes: str = ""


class EnergyProfile(_Strict):
    """A deployment's coefficient file: one :class:`ModelProfile` per model.

    Example:
        >>> profile = EnergyProfile.load("calibration/profiles/original-3-models.json")
        >>> profile.models["mistral-7b"].predict(input_tokens=20, output_tokens=60).runtime_s
    """

    schema_version: int
    device: DeviceInfo
    energy_method: EnergyMethod
    """How the energy coefficients' training data was measured."""
    created_at: datetime
    description: str = ""
    source: str = ""
    """What produced the file (command line, traces), for provenance."""
    models: dict[str, ModelProfile] = Field(min_length=1)
    _origin: str = PrivateAttr(default="<in memory>")

    @model_validator(mode="before")
    @classmethod
    def _migrate_version_1(cls, data: Any) -> Any:
        """Version 1 kept the longest *fitted* answer in ``max_output_tokens``: the calibration
        budget, which capped every prediction at it. Drop it; nothing else changes."""
        if not isinstance(data, dict) or data.get("schema_version") != 1 or not isinstance(data.get("models"), dict):
            return data
        models = {}
        for name, entry in data["models"].items():
            length = entry.get("output_length") if isinstance(entry, dict) else None
            if isinstance(length, dict) and length.get("source") == "fitted" and "max_output_tokens" in length:
                entry = {**entry, "output_length": {k: v for k, v in length.items() if k != "max_output_tokens"}}
            models[name] = entry
        return {**data, "models": models}

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value > SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {value} is newer than this package reads ({SCHEMA_VERSION}); "
                "upgrade langchain-energyrouter"
            )
        if value < 1:
            raise ValueError(f"schema_version {value} is not valid; expected {SCHEMA_VERSION}")
        return value

    @field_validator("models")
    @classmethod
    def _names_not_blank(cls, value: dict[str, ModelProfile]) -> dict[str, ModelProfile]:
        for name in value:
            if not name.strip():
                raise ValueError("a model name is empty; give every model a name")
        return value

    # -- construction -----------------------------------------------------
    @classmethod
    def new(
        cls,
        models: Mapping[str, ModelProfile],
        *,
        device: DeviceInfo,
        energy_method: EnergyMethod,
        description: str = "",
        source: str = "",
    ) -> EnergyProfile:
        """Build a profile of the current schema, stamped now (UTC)."""
        return cls(
            schema_version=SCHEMA_VERSION,
            device=device,
            energy_method=energy_method,
            created_at=datetime.now(timezone.utc),
            description=description,
            source=source,
            models=dict(models),
        )

    @classmethod
    def from_dict(cls, data: Any, *, origin: str = "<dict>") -> EnergyProfile:
        """Validate a decoded JSON document; errors name ``origin`` and the field."""
        if not isinstance(data, dict):
            raise ProfileError(
                f"Profile {origin} must be a JSON object, got {type(data).__name__}. "
                "Regenerate it with `energyrouter fit` or `energyrouter calibrate`."
            )
        try:
            profile = cls.model_validate(data)
        except ValidationError as err:
            raise ProfileError(_describe_validation_error(origin, err)) from err
        profile._origin = origin
        return profile

    @classmethod
    def from_json(cls, text: str, *, origin: str = "<string>") -> EnergyProfile:
        """Parse and validate JSON text."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ProfileError(
                f"Profile {origin} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); "
                "the file may be truncated. Regenerate it with `energyrouter fit` or restore it."
            ) from err
        return cls.from_dict(data, origin=origin)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EnergyProfile:
        """Load and validate a profile file."""
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError as err:
            raise ProfileError(
                f"Profile {file} does not exist. Pass the path of a profile JSON, "
                "e.g. one written by `energyrouter calibrate`."
            ) from err
        except (OSError, UnicodeDecodeError) as err:
            raise ProfileError(f"Profile {file} cannot be read: {err}") from err
        return cls.from_json(text, origin=str(file))

    @classmethod
    def reference(cls, name: str) -> EnergyProfile:
        """Load a reference profile shipped with the package, e.g. ``"cpu-reference"``.

        See :func:`reference_profile_names` for what is shipped.
        """
        return cls.load(reference_profile_path(name))

    @classmethod
    def load_or_reference(cls, value: str | os.PathLike[str]) -> EnergyProfile:
        """A profile JSON at ``value`` (a ``.json`` name, or a file that exists), else the shipped reference
        profile of that name (``"cpu-reference"``): what a command's ``--profile`` takes."""
        path = Path(value)
        if path.suffix == ".json" or path.exists():
            return cls.load(path)
        return cls.reference(str(value))

    @classmethod
    def coerce(cls, profile: EnergyProfile | str | os.PathLike[str]) -> EnergyProfile:
        """Accept a profile object or a path to one."""
        if isinstance(profile, EnergyProfile):
            return profile
        if isinstance(profile, (str, os.PathLike)):
            return cls.load(profile)
        raise ProfileError(
            f"Expected an EnergyProfile or a path to a profile JSON, got {type(profile).__name__}: {profile!r}"
        )

    # -- output -----------------------------------------------------------
    def to_json(self) -> str:
        """Serialise to pretty JSON (the on-disk format)."""
        return self.model_dump_json(indent=2) + "\n"

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (temp file + rename), so a crash never leaves a truncated profile."""
        return write_text_atomically(path, self.to_json())

    # -- queries ----------------------------------------------------------
    @property
    def origin(self) -> str:
        """Where this profile was loaded from (a path), for error messages."""
        return self._origin

    def model(self, name: str) -> ModelProfile:
        """The entry for ``name``, or :class:`ProfileError` listing the profiled models."""
        try:
            return self.models[name]
        except KeyError:
            raise ProfileError(
                f"Profile {self._origin} has no entry for model {name!r}. "
                f"Profiled models: {sorted(self.models)}. "
                "Run `energyrouter calibrate` for it or drop it from the router."
            ) from None

    def with_models(self, models: Mapping[str, ModelProfile]) -> EnergyProfile:
        """A copy with some model entries added or replaced."""
        return self.model_copy(update={"models": {**self.models, **models}})


def reference_profile_names() -> list[str]:
    """Names of the reference profiles shipped with the package."""
    names = {p.stem for d in shipped_data_dirs("profiles") if d.is_dir() for p in d.glob("*.json")}
    return sorted(names)


def reference_profile_path(name: str) -> Path:
    """Path of a shipped reference profile (``"cpu-reference"``, ``"original-3-models"``)."""
    for directory in shipped_data_dirs("profiles"):
        candidate = directory / f"{name.removesuffix('.json')}.json"
        if candidate.is_file():
            return candidate
    raise ProfileError(
        f"No reference profile named {name!r}; shipped: {reference_profile_names()}. "
        "Pass the path of your own profile instead."
    )


def _describe_validation_error(origin: str, err: ValidationError) -> str:
    problems = []
    for item in err.errors()[:5]:
        field = ".".join(str(part) for part in item["loc"]) or "<root>"
        value = item.get("input")
        shown = "" if isinstance(value, (dict, list)) else f" (got {_short(value)})"
        problems.append(f"{field}: {item['msg']}{shown}")
    more = f"; and {err.error_count() - 5} more" if err.error_count() > 5 else ""
    return (
        f"Profile {origin} is invalid: " + "; ".join(problems) + more + ". "
        "Fix the field or regenerate the profile with `energyrouter fit` / `energyrouter calibrate`."
    )


def _short(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
