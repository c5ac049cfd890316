"""The profiling loop: warm up, run the (shuffled, resumable) design, write raw rows durably.

One model at a time: every cell is one greedy ``model.generate`` call inside an
energy-meter window. Grid cells force the output length (``min_new_tokens ==
max_new_tokens``) on exact-length prompts; natural cells generate freely from
suite prompts, and their text goes to a side file (``<name>.outputs.jsonl``),
written *before* the cell's row, so accuracy survives a crash and a resume.
Cells already in the raw CSV are skipped.

Load (``RunSettings.concurrency``): a grid cell at level ``n`` is ONE batched
``generate`` of ``n`` different prompts of the same length (no padding), the
honest equivalent of ``n`` requests in flight in a continuous-batching engine
(vLLM, TGI), and what a CPU does best: ``n`` threads calling ``generate`` on one
model would only contend for the same cores (torch already spreads one call over
them). Its row holds the cost of ONE of those requests: the batch's wall time
(each was in flight all along) and 1/n of the window's energy, with
``in_flight = n``.

Settings fingerprint: ``<name>.settings.json`` beside the raw CSV records how the
rows were measured (energy method and metered devices, torch device, dtype,
threads, model, generation budget, and the design). Resuming with a different
meter, device, dtype, threads, model or generation budget is refused, since the
rows would mix; the design (lengths, repetitions, concurrency, seed) may grow, as
every cell's label says what it measured.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from langchain_energyrouter.calibration.design import (
    Cell,
    PromptBuilder,
    SuiteItem,
    estimate_cell_s,
    grid_cells,
    natural_cells,
    shrink_to_budget,
    shuffled,
)
from langchain_energyrouter.calibration.progress import Progress, format_seconds
from langchain_energyrouter.calibration.rawdata import RawRow, RawWriter
from langchain_energyrouter.errors import CalibrationError, MeterError

DEFAULT_NATURAL_MAX_NEW_TOKENS = 256
"""Budget for natural prompts: answers reaching it are censored; 256 cuts only SmolLM2-135M's endless loops."""

FINGERPRINT_MUST_MATCH: tuple[str, ...] = (
    "energy_method",
    "meter_devices",
    "device",
    "dtype",
    "threads",
    "model",
    "natural_max_new_tokens",
)
"""Settings a resumed run must share with the rows already in the raw CSV."""

CPU_METER_METHODS: tuple[str, ...] = ("rapl", "estimate")
"""Meters for a model on the CPU: never NVML (a GPU's idle joules are not the CPU model's)."""
GPU_METER_METHODS: tuple[str, ...] = ("nvml_counter", "nvml_poll")
"""Meters for a model on ``cuda:N``: that GPU only."""


def calibration_meter(device: str, **options: Any) -> Any:
    """The meter for a model calibrated on ``device``.

    ``cuda:N`` gets an NVML meter of GPU ``N`` only (counter, else power polling); any other
    device gets RAPL, else the CPU-time estimate, never a GPU's joules.

    Args:
        device: the torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        options: passed to :func:`~langchain_energyrouter.energy.select_meter` (e.g. ``powercap_root``).

    Raises:
        CalibrationError: a CUDA device for which NVML gives no meter (with the reasons).
    """
    from langchain_energyrouter.energy import select_meter

    if device.startswith("cuda"):
        spec = device if ":" in device else "cuda:0"
        try:
            meter, _skipped = select_meter(devices=[spec], methods=GPU_METER_METHODS, **options)
        except MeterError as err:
            raise CalibrationError(f"No GPU energy meter for {spec}: {err}. {_gpu_meter_fix(str(err))}") from err
        return meter
    meter, _skipped = select_meter(methods=CPU_METER_METHODS, **options)
    return meter


def _gpu_meter_fix(reasons: str) -> str:
    """What to do about the reasons NVML gave no meter: only a missing ``pynvml`` is fixed by the extra."""
    if "'pynvml' package, which is not installed" in reasons:
        return "Install the NVML extra (pip install 'langchain-energyrouter[nvml]') or calibrate on --device cpu."
    if "LibraryNotFound" in reasons or "no driver" in reasons:
        return (
            "pynvml is installed, but the NVIDIA driver's NVML library (libnvidia-ml) was not found: this machine "
            "has no NVIDIA driver, or it is not loaded (check `nvidia-smi`). Calibrate on --device cpu here."
        )
    return "Check `nvidia-smi` and the reasons above, or calibrate on --device cpu."


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a user prompt as the model sees it: its chat template, else a plain Q/A frame."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
        )
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return [int(i) for i in ids]
    return [int(i) for i in tokenizer(f"Question: {text}\nAnswer:")["input_ids"]]


def generate(
    model: Any, tokenizer: Any, ids: Sequence[int], max_new_tokens: int, *, forced: bool
) -> tuple[list[int], int]:
    """Greedy generation; returns (new token ids, number of new tokens)."""
    new = generate_batch(model, tokenizer, [ids], max_new_tokens, forced=forced)[0]
    return new, len(new)


def generate_batch(
    model: Any, tokenizer: Any, batch: Sequence[Sequence[int]], max_new_tokens: int, *, forced: bool
) -> list[list[int]]:
    """Greedy generation of several prompts of ONE length in one batch; new token ids per prompt.

    Prompts of equal length need no padding, so every row of the batch computes exactly
    what it would alone (up to floating-point reduction order).
    """
    import torch

    if len({len(ids) for ids in batch}) != 1:
        raise CalibrationError(
            f"A batch needs prompts of one length, got lengths {sorted({len(ids) for ids in batch})}."
        )
    device = getattr(model, "device", "cpu")
    input_ids = torch.tensor([list(ids) for ids in batch], dtype=torch.long, device=device)
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": False,
        "attention_mask": torch.ones_like(input_ids),
    }
    if forced:
        kwargs["min_new_tokens"] = max_new_tokens
    if getattr(model.generation_config, "pad_token_id", None) is None:
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        kwargs["pad_token_id"] = pad
    with torch.inference_mode():
        out = model.generate(input_ids, **kwargs)
    eos = _eos_ids(model, tokenizer)
    result = []
    for row in out[:, input_ids.shape[1] :].tolist():
        new = [int(t) for t in row]
        if len(batch) > 1 and not forced:  # a finished row is padded until the longest one ends
            for index, token in enumerate(new):
                if token in eos:
                    new = new[: index + 1]
                    break
        result.append(new)
    return result


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    value = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if value is None:
        value = tokenizer.eos_token_id
    values = value if isinstance(value, (list, tuple)) else [value]
    return {int(v) for v in values if v is not None}


def context_window_of(model: Any, tokenizer: Any, fallback: int = 2048) -> int:
    """The model's maximum sequence length, from its config (else the tokenizer, else ``fallback``)."""
    value = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(value, int) and value > 0:
        return value
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 10_000_000:
        return value
    return fallback


@dataclass
class RunSettings:
    """How to run one model's design."""

    input_lengths: Sequence[int]
    output_lengths: Sequence[int]
    repetitions: int = 2
    warmup: int = 2
    cooldown_s: float = 0.0
    seed: int = 0
    budget_s: float | None = None
    """Seconds for this model's measurements (after loading); None: no limit."""
    natural_max_new_tokens: int = DEFAULT_NATURAL_MAX_NEW_TOKENS
    concurrency: Sequence[int] = (1,)
    """Requests in flight at which every grid cell is measured (1 must be among them)."""


@dataclass
class RunResult:
    """What one model's run did."""

    name: str
    raw_path: Path
    outputs_path: Path
    measured: int = 0
    skipped: int = 0
    """Cells already in the raw file (resumed)."""
    not_run: int = 0
    """Cells left when the time budget ran out."""
    wall_s: float = 0.0
    context_window: int = 0
    energy_method: str = "none"
    messages: list[str] = field(default_factory=list)


def read_outputs(path: Path) -> dict[str, dict[str, Any]]:
    """The natural generations recorded so far, by item id (a partial last line is ignored)."""
    out: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "id" in record:
            out[str(record["id"])] = record
    return out


def _append_json(handle: TextIO, record: dict[str, Any]) -> None:
    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    handle.flush()
    os.fsync(handle.fileno())


def fingerprint_path(raw_path: str | os.PathLike[str]) -> Path:
    """``<name>.settings.json`` beside ``<name>.csv``."""
    raw = Path(raw_path)
    return raw.with_name(raw.name.removesuffix(".csv") + ".settings.json")


def settings_fingerprint(meter: Any, settings: RunSettings, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the rows of one run depend on (JSON-able): meter, generation budget, design, and ``context``
    (the caller's ``device``, ``dtype``, ``threads``, ``model``)."""
    return {
        "energy_method": getattr(meter, "method", "none"),
        "meter_devices": [str(d) for d in getattr(meter, "devices", ())],
        "device": None,
        "dtype": None,
        "threads": None,
        "model": None,
        **dict(context or {}),
        "natural_max_new_tokens": settings.natural_max_new_tokens,
        "input_lengths": sorted(int(v) for v in settings.input_lengths),
        "output_lengths": sorted(int(v) for v in settings.output_lengths),
        "repetitions": settings.repetitions,
        "concurrency": sorted(int(v) for v in settings.concurrency),
        "seed": settings.seed,
    }


def check_fingerprint(
    raw_path: str | os.PathLike[str], fingerprint: Mapping[str, Any], say: Callable[[str], None]
) -> None:
    """Refuse to append to ``raw_path`` rows measured with other settings; then record ``fingerprint``.

    Raises:
        CalibrationError: a setting of :data:`FINGERPRINT_MUST_MATCH` differs from the recorded one
            while the raw CSV holds rows; the message names both values and the fix.
    """
    raw = Path(raw_path)
    file = fingerprint_path(raw)
    has_rows = raw.exists() and raw.read_bytes().count(b"\n") > 1
    if has_rows and file.exists():
        try:
            recorded = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise CalibrationError(
                f"Settings file {file} cannot be read ({err}); it says how the rows of {raw} were measured. "
                "Restore it, or move both away to start over."
            ) from err
        differ = [k for k in FINGERPRINT_MUST_MATCH if k in recorded and recorded[k] != fingerprint.get(k)]
        if differ:
            then = ", ".join(f"{k}={recorded[k]!r}" for k in differ)
            now = ", ".join(f"{k}={fingerprint.get(k)!r}" for k in differ)
            raise CalibrationError(
                f"{raw} holds rows measured with {then} (see {file}); this run has {now}. Rows of different "
                "settings must not be mixed: rerun with the recorded settings to resume, or pass another "
                f"--raw-dir (or move {raw.name} and {file.name} away) to start over."
            )
    elif has_rows:
        say(f"{raw} has no settings file (written by an older version); cannot check it matches this run's settings")
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(file.name + ".tmp")
    tmp.write_text(json.dumps(dict(fingerprint), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, file)


def run_model(
    name: str,
    model: Any,
    tokenizer: Any,
    meter: Any,
    raw_path: str | os.PathLike[str],
    settings: RunSettings,
    suite: Sequence[SuiteItem] = (),
    *,
    context_window: int | None = None,
    context: Mapping[str, Any] | None = None,
    warn: Callable[[str], None] | None = None,
    stream: TextIO | None = None,
    after_row: Callable[[int], None] | None = None,
) -> RunResult:
    """Measure one model's design into ``raw_path``, resuming what is there.

    Args:
        name: the model's profile name (labels progress and messages).
        model, tokenizer: a transformers causal LM and its tokenizer.
        meter: an energy meter (``begin()`` / ``end(handle)``).
        raw_path: the model's raw CSV; appended to, never rewritten.
        settings: grid, repetitions, warm-up, cool-down, seed, time budget.
        suite: natural prompts (unforced generation).
        context_window: overrides the model config's.
        context: the run's ``device``, ``dtype``, ``threads`` and ``model``, for the settings
            fingerprint (a resumed run must match; see :func:`check_fingerprint`).
        warn: where messages go (default: stderr).
        stream: where the progress bar goes (default: stderr).
        after_row: called with the number of rows written so far (tests inject crashes here).
    """
    say = warn if warn is not None else (lambda m: print(m, file=sys.stderr))
    started = time.monotonic()
    raw = Path(raw_path)
    outputs_path = raw.with_name(raw.name.removesuffix(".csv") + ".outputs.jsonl")
    window = context_window or context_window_of(model, tokenizer)
    result = RunResult(name, raw, outputs_path, context_window=window, energy_method=getattr(meter, "method", "none"))

    if 1 not in settings.concurrency:
        raise CalibrationError(f"concurrency {list(settings.concurrency)} must include 1 (the reference load).")
    check_fingerprint(raw, settings_fingerprint(meter, settings, context), say)
    grid, grid_notes = grid_cells(
        settings.input_lengths, settings.output_lengths, settings.repetitions, window, settings.concurrency
    )
    too_long = [item.id for item in suite if len(encode_prompt(tokenizer, item.prompt)) + 1 > window]
    natural = natural_cells(item for item in suite if item.id not in too_long)
    if too_long:
        grid_notes.append(f"{len(too_long)} suite prompt(s) longer than the context window skipped: {too_long[:5]}")
    builder = PromptBuilder(tokenizer)

    with RawWriter(raw, say) as writer, open(outputs_path, "a", encoding="utf-8") as outputs:
        done = writer.done_cells
        todo_grid = [c for c in grid if c.label not in done]
        todo_natural = [c for c in natural if c.label not in done]
        result.skipped = len(grid) + len(natural) - len(todo_grid) - len(todo_natural)
        if result.skipped:
            left = len(todo_grid) + len(todo_natural)
            say(f"{name}: resuming {raw}: {result.skipped} cell(s) already measured, {left} to go")

        step_s, prefill_s = _warm_up(model, tokenizer, builder, settings, window)
        if settings.budget_s is not None:
            left_s = settings.budget_s - (time.monotonic() - started)
            todo_grid, todo_natural, cut = shrink_to_budget(
                todo_grid, todo_natural, max(left_s, 0.0), step_s, prefill_s, settings.natural_max_new_tokens // 2
            )
            grid_notes.extend(cut)
        for note in grid_notes:
            say(f"{name}: {note}")
        result.messages.extend(grid_notes)

        cells = shuffled(todo_grid + todo_natural, settings.seed)
        progress = Progress(len(cells), f"{name}", stream=stream)
        recorded = read_outputs(outputs_path)
        for index, cell in enumerate(cells):
            if settings.budget_s is not None:
                spent = time.monotonic() - started
                need = estimate_cell_s(cell, step_s, prefill_s, settings.natural_max_new_tokens // 2)
                if spent + need > settings.budget_s:
                    result.not_run = len(cells) - index
                    progress.close()
                    msg = (
                        f"{name}: time budget of {format_seconds(settings.budget_s)} reached; "
                        f"{result.not_run} cell(s) not run. Rerun the same command (with a larger "
                        "--max-minutes) to measure them; measured rows are kept."
                    )
                    say(msg)
                    result.messages.append(msg)
                    break
            row, text = _measure(cell, model, tokenizer, meter, builder, settings, writer.next_prompt_id)
            if cell.kind == "natural" and cell.item is not None:
                # the text first: a crash between the two re-runs the cell, never loses its answer
                record = {"id": cell.item.id, "output": text, "output_tokens": row.output_tokens}
                _append_json(outputs, record)
                recorded[cell.item.id] = record
            writer.append(row)
            result.measured += 1
            progress.update(1, cell.label)
            if after_row is not None:
                after_row(result.measured)
            if settings.cooldown_s > 0 and index < len(cells) - 1:
                time.sleep(settings.cooldown_s)
    result.wall_s = time.monotonic() - started
    return result


def _warm_up(
    model: Any, tokenizer: Any, builder: PromptBuilder, settings: RunSettings, window: int
) -> tuple[float, float]:
    """Run the warm-up generations (not recorded), then two short timing probes.

    The first generations of a process are slow (allocation, kernel selection), so
    the probes come after the warm-up. Returns (seconds per decode step, seconds per
    prompt token) for the time-budget estimate, from ``t = tout * step + tin * prefill``.
    """
    short_in = max(1, min(min(settings.input_lengths), window - 9))
    long_in = max(short_in, min(max(settings.input_lengths), window - 3))
    for i in range(settings.warmup):
        generate(model, tokenizer, builder.ids(short_in, offset=7 * i), 8, forced=True)
    most = max(settings.concurrency)
    if settings.warmup and most > 1:  # a batch's first run allocates too
        batch = [builder.ids(short_in, offset=11 * j) for j in range(most)]
        generate_batch(model, tokenizer, batch, 8, forced=True)
    if settings.budget_s is None:
        return 0.05, 0.0005

    def timed(tin: int, tout: int) -> float:
        t0 = time.perf_counter()
        generate(model, tokenizer, builder.ids(tin, offset=3), tout, forced=True)
        return time.perf_counter() - t0

    a_t = timed(short_in, 8)
    if long_in == short_in:
        return max(a_t / 8, 1e-4), 0.0
    b_t = timed(long_in, 2)
    # a_t = 8 * step + short_in * prefill;  b_t = 2 * step + long_in * prefill
    det = 8 * long_in - 2 * short_in
    step = (a_t * long_in - b_t * short_in) / det
    prefill = (8 * b_t - 2 * a_t) / det
    return max(step, a_t / 16, 1e-4), max(prefill, 0.0)


def _measure(
    cell: Cell,
    model: Any,
    tokenizer: Any,
    meter: Any,
    builder: PromptBuilder,
    settings: RunSettings,
    prompt_id: int,
) -> tuple[RawRow, str]:
    n = cell.concurrency
    if cell.kind == "grid":
        # n different prompts of one length (request j of the batch starts 131*j tokens further on)
        offset = 97 * cell.rep + cell.output_tokens
        batch = [builder.ids(cell.input_tokens, offset=offset + 131 * j) for j in range(n)]
        max_new, forced = cell.output_tokens, True
    else:
        assert cell.item is not None
        batch = [encode_prompt(tokenizer, cell.item.prompt)]
        max_new, forced = settings.natural_max_new_tokens, False
    handle = meter.begin()
    try:
        outputs = generate_batch(model, tokenizer, batch, max_new, forced=forced)
    except Exception as err:
        try:
            meter.end(handle)
        finally:
            raise CalibrationError(f"Generation failed for {cell.label}: {err}") from err
    reading = meter.end(handle)
    new_ids, n_out = outputs[0], len(outputs[0])
    if forced and any(len(o) != cell.output_tokens for o in outputs):
        raise CalibrationError(
            f"{cell.label}: asked for exactly {cell.output_tokens} new tokens, "
            f"got {sorted({len(o) for o in outputs})}; "
            "the model ignores min_new_tokens, so output length cannot be forced."
        )
    text = tokenizer.decode(new_ids, skip_special_tokens=True) if not forced else ""
    # one request's share: the batch's energy split evenly (n requests of one shape), its whole wall time
    energy = reading.energy_j / n if reading.energy_j is not None else float("nan")
    row = RawRow(
        prompt_id=prompt_id,
        input_tokens=len(batch[0]),
        output_tokens=n_out,
        runtime_seconds=reading.runtime_s,
        energy_joules=energy,
        energy_method=reading.method,
        timestamp=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        design_cell=cell.label,
        in_flight=n,
    )
    return row, text
