"""The experiment design: a grid of exact input lengths x forced output lengths, plus natural prompts.

Grid cells are generated with ``min_new_tokens == max_new_tokens`` so the output
length is a controlled factor, not an outcome; their prompts are cut from real
text to an exact token count. Natural cells are suite prompts generated without
forcing; they fit the output-length predictor (and score accuracy if labelled).
Every cell has a stable label (``grid:in=64,out=16,rep=1``, ``natural:<id>``),
which is how a rerun knows what is already measured.

Load: with ``--concurrency 1,2,4`` every grid cell is also measured with 2 and 4
requests in flight (``grid:in=64,out=16,rep=1,load=4``): one batched ``generate``
of that many different prompts of the same length, which is what a
continuous-batching engine runs when that many requests of one shape are in
flight. Natural cells run one at a time (they measure answer length and accuracy,
which do not depend on load).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from langchain_energyrouter.errors import CalibrationError
from langchain_energyrouter.files import data_file

DEFAULT_INPUT_LENGTHS: tuple[int, ...] = (16, 64, 256, 512)
DEFAULT_OUTPUT_LENGTHS: tuple[int, ...] = (4, 16, 48)
DEFAULT_REPETITIONS = 2
DEFAULT_CONCURRENCY: tuple[int, ...] = (1,)
MATCH_RULES = ("exact", "contains", "choice")


@dataclass(frozen=True, slots=True)
class SuiteItem:
    """One prompt of a suite; labelled when ``answer`` is set."""

    id: str
    prompt: str
    answer: tuple[str, ...] = ()
    """Acceptable answers (empty: unlabelled)."""
    match: str = "contains"
    task_type: str | None = None

    @property
    def labelled(self) -> bool:
        return bool(self.answer)


@dataclass(frozen=True, slots=True)
class Cell:
    """One generation to measure."""

    kind: str
    """``"grid"`` or ``"natural"``."""
    input_tokens: int = 0
    output_tokens: int = 0
    """Forced output length (grid cells)."""
    rep: int = 1
    item: SuiteItem | None = None
    concurrency: int = 1
    """Requests generated together (one batch), each a different prompt of this shape."""

    @property
    def label(self) -> str:
        if self.kind == "grid":
            load = f",load={self.concurrency}" if self.concurrency != 1 else ""
            return f"grid:in={self.input_tokens},out={self.output_tokens},rep={self.rep}{load}"
        assert self.item is not None
        return f"natural:{self.item.id}"


def parse_lengths(text: str, what: str) -> tuple[int, ...]:
    """``"16,64,256"`` -> ``(16, 64, 256)``; raise a clear error otherwise."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise CalibrationError(f"{what} {text!r} is not a comma-separated list of integers (e.g. 16,64,256).") from None
    if not values or any(v <= 0 for v in values):
        raise CalibrationError(f"{what} {text!r} must list positive integers (e.g. 16,64,256).")
    return tuple(sorted(set(values)))


def parse_concurrency(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> ``(1, 2, 4)``; 1 must be among them (the cost models are measured there)."""
    levels = parse_lengths(text, "--concurrency")
    if 1 not in levels:
        raise CalibrationError(
            f"--concurrency {text!r} must include 1: the runtime and energy models are measured with one "
            f"request in flight and the load model scales them from there (e.g. --concurrency 1,{levels[0]})."
        )
    return levels


def grid_cells(
    input_lengths: Sequence[int],
    output_lengths: Sequence[int],
    repetitions: int,
    context_window: int,
    concurrency: Sequence[int] = DEFAULT_CONCURRENCY,
) -> tuple[list[Cell], list[str]]:
    """Every (input, output, repetition, concurrency) combination that fits the context window.

    Returns:
        The cells, and messages about combinations dropped for the context window.
    """
    cells: list[Cell] = []
    dropped = [(i, o) for i in input_lengths for o in output_lengths if i + o > context_window]
    for level in concurrency:
        for rep in range(1, repetitions + 1):
            for tin in input_lengths:
                for tout in output_lengths:
                    if tin + tout <= context_window:
                        cells.append(Cell("grid", tin, tout, rep, concurrency=level))
    messages = []
    if dropped:
        messages.append(
            f"{len(dropped)} grid combination(s) exceed the context window {context_window} and are skipped: "
            + ", ".join(f"in={i},out={o}" for i, o in dropped[:6])
            + ("..." if len(dropped) > 6 else "")
        )
    return cells, messages


def natural_cells(items: Iterable[SuiteItem]) -> list[Cell]:
    return [Cell("natural", item=item) for item in items]


def shuffled(cells: Sequence[Cell], seed: int) -> list[Cell]:
    """A seeded shuffle, so a rerun walks the same order and resumes at the same place."""
    out = list(cells)
    random.Random(seed).shuffle(out)
    return out


def estimate_cell_s(cell: Cell, step_s: float, prefill_token_s: float, natural_tokens: int) -> float:
    """Rough seconds for one cell from warm-up timings (decode step, per-prompt-token prefill).

    A batch of ``n`` requests is costed at ``n`` times the prefill and ``1 + (n - 1) / 2`` decode
    steps' time (decoding a batch is cheaper per request than one at a time; a rough guess).
    """
    if cell.kind == "grid":
        n = cell.concurrency
        return cell.output_tokens * step_s * (1 + (n - 1) / 2) + n * cell.input_tokens * prefill_token_s
    return natural_tokens * step_s + 64 * prefill_token_s


def shrink_to_budget(
    grid: list[Cell],
    natural: list[Cell],
    budget_s: float,
    step_s: float,
    prefill_token_s: float,
    natural_tokens: int,
) -> tuple[list[Cell], list[Cell], list[str]]:
    """Shrink the design until its estimated time fits ``budget_s``; say what was cut.

    Order: one repetition instead of several; fewer natural prompts (down to 8);
    then the longest input length and the longest output length, alternately,
    while at least two of each remain.
    """
    messages: list[str] = []

    def cost(g: list[Cell], n: list[Cell]) -> float:
        return sum(estimate_cell_s(c, step_s, prefill_token_s, natural_tokens) for c in [*g, *n])

    start = cost(grid, natural)
    if start <= budget_s:
        return grid, natural, messages
    if any(c.rep > 1 for c in grid):
        grid = [c for c in grid if c.rep == 1]
        messages.append("repetitions reduced to 1")
    n_natural = len(natural)
    while cost(grid, natural) > budget_s and len(natural) > 8:
        natural = natural[:-1]
    if len(natural) < n_natural:
        messages.append(f"natural prompts reduced from {n_natural} to {len(natural)}")
    drop_input = True
    while cost(grid, natural) > budget_s:
        ins = sorted({c.input_tokens for c in grid})
        outs = sorted({c.output_tokens for c in grid})
        if drop_input and len(ins) > 2:
            grid = [c for c in grid if c.input_tokens != ins[-1]]
            messages.append(f"input length {ins[-1]} dropped")
        elif len(outs) > 2:
            grid = [c for c in grid if c.output_tokens != outs[-1]]
            messages.append(f"output length {outs[-1]} dropped")
        elif len(ins) > 2:
            grid = [c for c in grid if c.input_tokens != ins[-1]]
            messages.append(f"input length {ins[-1]} dropped")
        else:
            messages.append(
                "the smallest design (2 x 2 grid) still exceeds the budget; it will stop when time runs out"
            )
            break
        drop_input = not drop_input
    messages.insert(
        0,
        f"estimated {start:.0f} s exceeds the {budget_s:.0f} s budget; design shrunk to "
        f"{len(grid)} grid + {len(natural)} natural runs (est. {cost(grid, natural):.0f} s)",
    )
    return grid, natural, messages


# -- suites -------------------------------------------------------------------
def default_natural_suite() -> Path:
    """The packaged natural chat prompts used when ``calibrate`` gets no ``--suite``."""
    return Path(str(resources.files("langchain_energyrouter.calibration") / "data" / "natural_prompts.jsonl"))


def load_suite(path: str | os.PathLike[str]) -> list[SuiteItem]:
    """Read a JSONL suite: ``id``, ``prompt``, optional ``answer`` (str or list), ``match``, ``task_type``.

    ``path`` may also name a suite shipped with the package (``qa-small``, ``routing-suite``): found in a
    wheel and in a clone alike.

    Raises:
        CalibrationError: missing file, bad JSON, a missing/invalid field (naming the line).
    """
    try:
        file = data_file(path, "suites", ".jsonl")
    except FileNotFoundError as err:
        raise CalibrationError(
            f"Suite {err} Pass a JSONL file with one prompt per line, or a shipped suite's name."
        ) from None
    items: list[SuiteItem] = []
    seen: set[str] = set()
    for lineno, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data: Any = json.loads(line)
        except json.JSONDecodeError as err:
            raise CalibrationError(f"Suite {file} line {lineno} is not valid JSON: {err.msg}.") from err
        if not isinstance(data, dict) or not isinstance(data.get("prompt"), str) or not data["prompt"].strip():
            raise CalibrationError(f"Suite {file} line {lineno} needs a non-empty string field 'prompt'.")
        item_id = str(data.get("id", lineno))
        if item_id in seen:
            raise CalibrationError(f"Suite {file} line {lineno}: id {item_id!r} is used twice; ids must be unique.")
        seen.add(item_id)
        answer = data.get("answer")
        answers: tuple[str, ...] = ()
        if isinstance(answer, str):
            answers = (answer,)
        elif isinstance(answer, list) and all(isinstance(a, str) for a in answer):
            answers = tuple(answer)
        elif answer is not None:
            raise CalibrationError(f"Suite {file} line {lineno}: 'answer' must be a string or a list of strings.")
        match = data.get("match", "contains")
        if match not in MATCH_RULES:
            raise CalibrationError(
                f"Suite {file} line {lineno}: match {match!r} is unknown; use one of {list(MATCH_RULES)}."
            )
        task = data.get("task_type")
        items.append(SuiteItem(item_id, data["prompt"], answers, match, str(task) if task is not None else None))
    if not items:
        raise CalibrationError(f"Suite {file} has no prompts.")
    return items


# -- exact-length prompts -----------------------------------------------------
def corpus_text() -> str:
    """Real English prose (packaged) to cut exact-length prompts from."""
    return (resources.files("langchain_energyrouter.calibration") / "data" / "corpus.txt").read_text(encoding="utf-8")


class PromptBuilder:
    """Token ids of exactly ``n`` tokens cut from real text (repeated when longer)."""

    def __init__(self, tokenizer: Any, text: str | None = None) -> None:
        ids = list(tokenizer(text if text is not None else corpus_text(), add_special_tokens=False)["input_ids"])
        if not ids:
            raise CalibrationError("The prompt corpus tokenised to nothing; cannot build prompts.")
        bos = getattr(tokenizer, "bos_token_id", None)
        self._prefix = [bos] if bos is not None else []
        self._ids = ids

    def ids(self, n: int, offset: int = 0) -> list[int]:
        """``n`` token ids (a BOS token first when the tokenizer has one), starting ``offset`` into the text."""
        body = n - len(self._prefix)
        if body < 0:
            return self._prefix[:n]
        out: list[int] = []
        start = offset % len(self._ids)
        while len(out) < body:
            out.extend(self._ids[start:])
            start = 0
        return self._prefix + out[:body]
