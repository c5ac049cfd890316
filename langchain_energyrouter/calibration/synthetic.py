"""Synthetic outcome matrices with a known structure, for tests and benchmarks of ``energyrouter evaluate``."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from langchain_energyrouter.calibration.outcomes import OutcomeRow


def synthetic_rows(
    n_prompts: int,
    models: Sequence[tuple[str, float, float]],
    *,
    n_tasks: int = 6,
    seed: int = 0,
    missing_share: float = 0.0,
) -> list[OutcomeRow]:
    """An outcome matrix with a known structure, for tests and benchmarks.

    Each prompt has a task (one of ``n_tasks``) and a difficulty in [0, 1]; a model with
    skill ``s`` answers it right with probability ``sigmoid(8 * (s + task_offset - difficulty))``.
    The prompt's words reveal the task and, through its number of digits, the difficulty.

    Args:
        n_prompts: prompts.
        models: ``(name, skill, joules per generated token)`` per model.
        n_tasks: task types.
        seed: the random seed.
        missing_share: share of prompts that lack one (random) model's row.
    """
    rng = random.Random(seed)
    offsets = {(m, t): rng.uniform(-0.15, 0.15) for m, _s, _e in models for t in range(n_tasks)}
    vocab = [[f"w{t}_{i}" for i in range(30)] for t in range(n_tasks)]
    rows = []
    for i in range(n_prompts):
        task = rng.randrange(n_tasks)
        difficulty = rng.random()
        digits = 1 + int(difficulty * 4)
        words = rng.sample(vocab[task], 6) + [str(rng.randrange(10 ** (digits - 1), 10**digits)) for _ in range(2)]
        prompt = f"task{task}: " + " ".join(words)
        drop = models[rng.randrange(len(models))][0] if rng.random() < missing_share else None
        for name, skill, joules_per_token in models:
            if name == drop:
                continue
            p_right = 1.0 / (1.0 + math.exp(-8.0 * (skill + offsets[(name, task)] - difficulty)))
            output_tokens = max(1, int(rng.gauss(8 + 10 * difficulty, 3)))
            rows.append(
                OutcomeRow(
                    prompt_id=f"p{i:06d}",
                    prompt=prompt,
                    model=name,
                    score=1.0 if rng.random() < p_right else 0.0,
                    input_tokens=len(words) + 3,
                    output_tokens=output_tokens,
                    runtime_s=0.01 * output_tokens,
                    energy_j=joules_per_token * (output_tokens + 2),
                    energy_method="estimate",
                    task_type=f"task{task}",
                )
            )
    return rows
