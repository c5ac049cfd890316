"""The profiling loop: warm up, run the (shuffled, resumable) design, write raw rows durably.

One model at a time: every cell is one greedy ``model.generate`` call inside an
energy-meter window. Grid cells force the output length (``min_new_tokens ==
max_new_tokens``) on exact-length prompts; natural cells generate freely from
suite prompts, and their text goes to a side file (``<name>.outputs.jsonl``) so
accuracy survives a resume. Cells already in the raw CSV are skipped.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
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
from langchain_energyrouter.errors import CalibrationError

DEFAULT_NATURAL_MAX_NEW_TOKENS = 64


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
    import torch

    device = getattr(model, "device", "cpu")
    input_ids = torch.tensor([list(ids)], dtype=torch.long, device=device)
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
    new = [int(t) for t in out[0, input_ids.shape[1] :]]
    return new, len(new)


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

    grid, grid_notes = grid_cells(settings.input_lengths, settings.output_lengths, settings.repetitions, window)
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
            writer.append(row)
            if cell.kind == "natural" and cell.item is not None:
                record = {"id": cell.item.id, "output": text, "output_tokens": row.output_tokens}
                _append_json(outputs, record)
                recorded[cell.item.id] = record
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
    if cell.kind == "grid":
        ids = builder.ids(cell.input_tokens, offset=97 * cell.rep + cell.output_tokens)
        max_new, forced = cell.output_tokens, True
    else:
        assert cell.item is not None
        ids = encode_prompt(tokenizer, cell.item.prompt)
        max_new, forced = settings.natural_max_new_tokens, False
    handle = meter.begin()
    try:
        new_ids, n_out = generate(model, tokenizer, ids, max_new, forced=forced)
    except Exception as err:
        try:
            meter.end(handle)
        finally:
            raise CalibrationError(f"Generation failed for {cell.label}: {err}") from err
    reading = meter.end(handle)
    if forced and n_out != cell.output_tokens:
        raise CalibrationError(
            f"{cell.label}: asked for exactly {cell.output_tokens} new tokens, got {n_out}; "
            "the model ignores min_new_tokens, so output length cannot be forced."
        )
    text = tokenizer.decode(new_ids, skip_special_tokens=True) if not forced else ""
    energy = reading.energy_j if reading.energy_j is not None else float("nan")
    row = RawRow(
        prompt_id=prompt_id,
        input_tokens=len(ids),
        output_tokens=n_out,
        runtime_seconds=reading.runtime_s,
        energy_joules=energy,
        energy_method=reading.method,
        timestamp=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        design_cell=cell.label,
    )
    return row, text
