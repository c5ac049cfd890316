"""Outcome matrices: how well (and at what cost) each model answered each prompt.

An outcome matrix is a JSONL file (optionally gzipped, ``.jsonl.gz``), one row per
(prompt, model)::

    {"prompt_id": "arithmetic-add2-001", "prompt": "What is 49 + 97? ...", "model": "smollm2-135m",
     "score": 1.0, "input_tokens": 37, "output_tokens": 4, "runtime_s": 0.41, "energy_j": 3.2,
     "energy_method": "estimate", "task_type": "arithmetic"}

Required: ``prompt_id`` (string), ``prompt`` (string), ``model`` (string), ``input_tokens``
and ``output_tokens`` (non-negative integers: the prompt as that model's tokenizer saw
it, and the tokens it generated). Optional: ``score`` (a number in [0, 1]: 1 right, 0
wrong, or a graded score; a row without one is a *length-only* row, which trains and
judges answer lengths but not quality), ``output_tokens_samples`` (a non-empty list of
non-negative integers: several sampled answer lengths of this prompt and model, the
first usually being ``output_tokens``; ``energyrouter evaluate`` reports the noise floor
from them), ``runtime_s`` and ``energy_j`` (non-negative numbers), ``energy_method``
(how ``energy_j`` was obtained, one of the meters' methods) and ``task_type`` (string).
Other fields are ignored.

:func:`read_matrix` rejects a malformed file with :class:`CalibrationError` naming
the file and line (bad JSON, a missing or mistyped field, a score outside [0, 1],
a (prompt, model) pair given twice, one prompt id with two different texts). A
prompt that lacks some model's row is *not* an error: :class:`OutcomeMatrix`
counts and lists such prompts (:attr:`OutcomeMatrix.incomplete`) and
:meth:`OutcomeMatrix.complete_prompt_ids` leaves them out, so a replay compares
every policy on the same prompts.

Written by ``energyrouter accuracy --outcomes``; read by ``energyrouter train`` and
``energyrouter evaluate``. Standard library only.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from langchain_energyrouter.energy.base import METHODS
from langchain_energyrouter.errors import CalibrationError

__all__ = ["OutcomeMatrix", "OutcomeRow", "read_matrix", "write_matrix"]

_REQUIRED: tuple[str, ...] = ("prompt_id", "prompt", "model", "input_tokens", "output_tokens")
_OPTIONAL: tuple[str, ...] = ("score", "output_tokens_samples", "runtime_s", "energy_j", "energy_method", "task_type")
MAX_SAMPLES = 1000
"""Most sampled lengths one row may carry (a bound on what one line can make the reader hold)."""


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """One model's outcome on one prompt.

    Attributes:
        prompt_id: the prompt's id (shared by the rows of every model on that prompt).
        prompt: the prompt's text.
        model: the model's name.
        score: 0 (wrong) to 1 (right); None on a length-only row.
        input_tokens: prompt tokens as this model's tokenizer counted them.
        output_tokens: tokens the model generated.
        runtime_s: wall-clock seconds of the generation, if measured.
        energy_j: joules of the generation, if measured or estimated (see ``energy_method``).
        energy_method: how ``energy_j`` was obtained (``nvml_counter``, ``rapl``, ``estimate``, ...).
        task_type: the prompt's task type, if known.
        output_tokens_samples: several sampled answer lengths of this prompt and model, if given.
    """

    prompt_id: str
    prompt: str
    model: str
    score: float | None
    input_tokens: int
    output_tokens: int
    runtime_s: float | None = None
    energy_j: float | None = None
    energy_method: str | None = None
    task_type: str | None = None
    output_tokens_samples: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The row as a JSON object; optional fields that are ``None`` are left out."""
        out: dict[str, Any] = {name: getattr(self, name) for name in _REQUIRED}
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                out[name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True)
class OutcomeMatrix:
    """Validated rows of an outcome matrix, indexed by prompt.

    Attributes:
        rows: every row, in file order.
        source: where the rows came from (a path), for messages.
    """

    rows: tuple[OutcomeRow, ...]
    source: str = "<memory>"
    _by_prompt: dict[str, dict[str, OutcomeRow]] = field(init=False, repr=False, compare=False)
    _models: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_prompt: dict[str, dict[str, OutcomeRow]] = {}
        models: dict[str, None] = {}
        for row in self.rows:
            entry = by_prompt.setdefault(row.prompt_id, {})
            where = f"Outcome matrix {self.source}: prompt {row.prompt_id!r}"
            if row.model in entry:
                raise CalibrationError(
                    f"{where} has two rows for model {row.model!r}; keep one row per (prompt, model)."
                )
            other = next(iter(entry.values()), None)
            if other is not None and other.prompt != row.prompt:
                raise CalibrationError(f"{where} has two texts; one prompt id must name one prompt.")
            if other is not None and other.task_type != row.task_type:
                raise CalibrationError(
                    f"{where} has two task types ({other.task_type!r}, {row.task_type!r}); give its rows the same one."
                )
            entry[row.model] = row
            models[row.model] = None
        object.__setattr__(self, "_by_prompt", by_prompt)
        object.__setattr__(self, "_models", tuple(sorted(models)))

    @property
    def models(self) -> tuple[str, ...]:
        """Every model that has at least one row, sorted by name."""
        return self._models

    @property
    def prompt_ids(self) -> tuple[str, ...]:
        """Every prompt id, in order of first appearance."""
        return tuple(self._by_prompt)

    def __len__(self) -> int:
        return len(self.rows)

    def by_prompt(self, prompt_id: str) -> dict[str, OutcomeRow]:
        """Model -> row for one prompt.

        Raises:
            KeyError: no row has this prompt id.
        """
        return dict(self._by_prompt[prompt_id])

    def iter_prompts(self) -> Iterator[tuple[str, dict[str, OutcomeRow]]]:
        """(prompt id, model -> row) for every prompt, in order of first appearance."""
        for prompt_id, entry in self._by_prompt.items():
            yield prompt_id, dict(entry)

    @property
    def incomplete(self) -> dict[str, tuple[str, ...]]:
        """Prompt id -> the models it has no row for (only prompts missing some model)."""
        out: dict[str, tuple[str, ...]] = {}
        for prompt_id, entry in self._by_prompt.items():
            missing = tuple(m for m in self._models if m not in entry)
            if missing:
                out[prompt_id] = missing
        return out

    def complete_prompt_ids(self) -> tuple[str, ...]:
        """Prompts with a row for every model (the ones a replay can compare policies on)."""
        n = len(self._models)
        return tuple(p for p, entry in self._by_prompt.items() if len(entry) == n)

    def complete(self) -> OutcomeMatrix:
        """This matrix without the prompts that lack some model's row."""
        keep = set(self.complete_prompt_ids())
        return OutcomeMatrix(tuple(r for r in self.rows if r.prompt_id in keep), source=self.source)

    def missing_report(self, limit: int = 5) -> str:
        """One line on prompts lacking some model's row ('' when there are none)."""
        incomplete = self.incomplete
        if not incomplete:
            return ""
        by_model: dict[str, int] = {}
        for missing in incomplete.values():
            for model in missing:
                by_model[model] = by_model.get(model, 0) + 1
        examples = ", ".join(repr(p) for p in list(incomplete)[:limit]) + (", ..." if len(incomplete) > limit else "")
        counts = ", ".join(f"{m}: {n}" for m, n in sorted(by_model.items()))
        return (
            f"{len(incomplete)} of {len(self._by_prompt)} prompts in {self.source} lack some model's row "
            f"(missing rows per model: {counts}; e.g. {examples}); they are left out of the replay."
        )

    @property
    def length_only(self) -> bool:
        """No row has a ``score``: the matrix judges answer lengths, not quality."""
        return all(r.score is None for r in self.rows)

    def scored(self) -> OutcomeMatrix:
        """Only the rows that have a ``score`` (length-only rows left out)."""
        return OutcomeMatrix(tuple(r for r in self.rows if r.score is not None), source=self.source)

    def with_models(self, models: Iterable[str]) -> OutcomeMatrix:
        """Only the rows of ``models``.

        Raises:
            CalibrationError: a name is not among :attr:`models`.
        """
        wanted = list(models)
        unknown = [m for m in wanted if m not in self._models]
        if unknown:
            raise CalibrationError(
                f"Outcome matrix {self.source} has no rows for {unknown}; its models are {list(self._models)}."
            )
        keep = set(wanted)
        return OutcomeMatrix(tuple(r for r in self.rows if r.model in keep), source=self.source)


# -- reading ----------------------------------------------------------------------
def _open_text(path: Path, mode: str) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", encoding="utf-8")  # type: ignore[return-value]
    return open(path, mode, encoding="utf-8")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _row_from(data: Any, where: str) -> OutcomeRow:
    """One validated row; ``where`` is ``"Outcome matrix F line N"`` for messages."""
    if not isinstance(data, dict):
        raise CalibrationError(f"{where} is a JSON {type(data).__name__}, not an object; write one object per line.")
    missing = [name for name in _REQUIRED if name not in data or data[name] is None]
    if missing:
        raise CalibrationError(f"{where} lacks required field(s) {missing}; every row needs {list(_REQUIRED)}.")
    for name in ("prompt_id", "prompt", "model"):
        if not isinstance(data[name], str) or not data[name]:
            raise CalibrationError(f"{where}: {name} = {data[name]!r} must be a non-empty string.")
    score = data.get("score")
    if score is not None and (not _is_number(score) or not math.isfinite(score)):
        raise CalibrationError(
            f"{where}: score = {score!r} must be a number in [0, 1] (1 right, 0 wrong), or absent on a length-only row."
        )
    if score is not None and not 0.0 <= score <= 1.0:
        raise CalibrationError(
            f"{where}: score = {score!r} is outside [0, 1]; rescale graded scores to 0 (worst) .. 1 (best)."
        )
    samples = data.get("output_tokens_samples")
    if samples is not None and (
        not isinstance(samples, list)
        or not 0 < len(samples) <= MAX_SAMPLES
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in samples)
    ):
        shown = repr(samples) if len(repr(samples)) <= 80 else repr(samples)[:77] + "..."
        raise CalibrationError(
            f"{where}: output_tokens_samples = {shown} must be a list of 1 to {MAX_SAMPLES} non-negative "
            "integers (sampled answer lengths in tokens), or absent."
        )
    for name in ("input_tokens", "output_tokens"):
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CalibrationError(f"{where}: {name} = {value!r} must be a non-negative integer (tokens).")
    for name in ("runtime_s", "energy_j"):
        value = data.get(name)
        if value is not None and (not _is_number(value) or not math.isfinite(value) or value < 0):
            raise CalibrationError(f"{where}: {name} = {value!r} must be a non-negative number or null.")
    method = data.get("energy_method")
    if method is not None and method not in METHODS:
        raise CalibrationError(f"{where}: energy_method = {method!r} is unknown; use one of {list(METHODS)} or null.")
    task = data.get("task_type")
    if task is not None and not isinstance(task, str):
        raise CalibrationError(f"{where}: task_type = {task!r} must be a string or null.")
    return OutcomeRow(
        prompt_id=data["prompt_id"],
        prompt=data["prompt"],
        model=data["model"],
        score=None if score is None else float(score),
        input_tokens=data["input_tokens"],
        output_tokens=data["output_tokens"],
        output_tokens_samples=None if samples is None else tuple(samples),
        runtime_s=None if data.get("runtime_s") is None else float(data["runtime_s"]),
        energy_j=None if data.get("energy_j") is None else float(data["energy_j"]),
        energy_method=method,
        task_type=task,
    )


def read_matrix(path: str | os.PathLike[str]) -> OutcomeMatrix:
    """Read and validate an outcome matrix (JSONL, or gzipped JSONL ending in ``.gz``).

    Raises:
        CalibrationError: the file is missing, empty or malformed; the message names the file and line.
    """
    file = Path(path)
    if not file.is_file():
        raise CalibrationError(
            f"Outcome matrix {file} does not exist; write one with `energyrouter accuracy --outcomes {file} ...`."
        )
    rows: list[OutcomeRow] = []
    seen: dict[tuple[str, str], int] = {}
    texts: dict[str, tuple[str, str | None, int]] = {}
    try:
        with _open_text(file, "r") as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"Outcome matrix {file} line {lineno}"
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as err:
                    raise CalibrationError(f"{where} is not valid JSON: {err.msg} (column {err.colno}).") from err
                row = _row_from(data, where)
                key = (row.prompt_id, row.model)
                if key in seen:
                    raise CalibrationError(
                        f"{where} repeats prompt {row.prompt_id!r} for model {row.model!r} (first on line "
                        f"{seen[key]}); keep one row per (prompt, model)."
                    )
                seen[key] = lineno
                first = texts.setdefault(row.prompt_id, (row.prompt, row.task_type, lineno))
                if first[0] != row.prompt:
                    raise CalibrationError(
                        f"{where}: prompt {row.prompt_id!r} has a different text than on line {first[2]}; "
                        "one prompt id must name one prompt (give the other text its own id)."
                    )
                if first[1] != row.task_type:
                    raise CalibrationError(
                        f"{where}: prompt {row.prompt_id!r} has task_type {row.task_type!r} but "
                        f"{first[1]!r} on line {first[2]}; give every row of a prompt the same task_type."
                    )
                rows.append(row)
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as err:
        raise CalibrationError(f"Outcome matrix {file} cannot be read as UTF-8 JSONL: {err}.") from err
    if not rows:
        raise CalibrationError(f"Outcome matrix {file} has no rows.")
    return OutcomeMatrix(tuple(rows), source=str(file))


# -- writing ----------------------------------------------------------------------
def write_matrix(
    path: str | os.PathLike[str], rows: OutcomeMatrix | Sequence[OutcomeRow] | Iterable[Mapping[str, Any]]
) -> int:
    """Write rows as an outcome matrix (gzipped when ``path`` ends in ``.gz``), atomically.

    Rows are validated as :func:`read_matrix` would (a row may be an :class:`OutcomeRow`
    or a mapping with its fields), so a written file always reads back.

    Returns:
        The number of rows written.

    Raises:
        CalibrationError: a row is invalid or a (prompt, model) pair repeats.
    """
    file = Path(path)
    source = rows.rows if isinstance(rows, OutcomeMatrix) else rows
    checked: list[OutcomeRow] = []
    for index, row in enumerate(source, start=1):
        if isinstance(row, OutcomeRow):
            data = row.to_dict()
        elif isinstance(row, Mapping):
            data = dict(row)
        else:
            raise CalibrationError(
                f"Outcome row {index} for {file} is a {type(row).__name__}; give OutcomeRow or dict."
            )
        checked.append(_row_from(data, f"Outcome row {index} for {file}"))
    OutcomeMatrix(tuple(checked), source=str(file))  # duplicate (prompt, model) check
    file.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name opened with "x" (not mkstemp, whose 0600 mode would survive the rename).
    tmp_path = file.with_name(f".{file.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if file.suffix == ".gz":
            with open(tmp_path, "xb") as raw_file, gzip.GzipFile(fileobj=raw_file, mode="wb", mtime=0) as raw:
                raw.write("".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in checked).encode())
        else:
            with open(tmp_path, "x", encoding="utf-8") as handle:
                for r in checked:
                    handle.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
        os.replace(tmp_path, file)
    finally:
        tmp_path.unlink(missing_ok=True)
    return len(checked)
