"""Convert a CASTILLO split (one JSON line per prompt and model, ``output_sizes`` = 10 sampled lengths) to a
length-only outcome matrix for ``energyrouter evaluate``.

    python tools/castillo_to_matrix.py castillo_validate.jsonl.gz castillo-validate.jsonl.gz

``output_tokens`` is the first sample, ``output_tokens_samples`` all of them, ``task_type`` the dataset.
The data itself is not part of this repository (see the CASTILLO dataset's licences); this script only
reshapes a copy you have.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

from langchain_energyrouter.calibration.outcomes import write_matrix


def convert(source: Path) -> list[dict[str, object]]:
    opener = gzip.open if source.suffix == ".gz" else open
    rows = []
    with opener(source, "rt", encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            data = json.loads(line)
            sizes = [int(v) for v in data["output_sizes"]]
            rows.append(
                {
                    "prompt_id": str(data["prompt_id"]),
                    "prompt": data["prompt"],
                    "model": data["model"],
                    "input_tokens": int(data["input_tokens"]),
                    "output_tokens": sizes[0],
                    "output_tokens_samples": sizes,
                    "task_type": data["dataset"],
                }
            )
    return rows


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    n = write_matrix(argv[1], convert(Path(argv[0])))
    print(f"{n} rows written to {argv[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
