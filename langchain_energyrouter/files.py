"""Files: written so that a crash never leaves a truncated one, and where the package's shipped data lives."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_text_atomically(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename.

    Readers see the old file or the new one, never half of one; the directory is created.
    """
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return file


def shipped_data_dirs(kind: str) -> list[Path]:
    """Where data shipped with the package (``profiles``, ``predictors``) lives, in the order to look.

    A wheel packages the repository's ``calibration/<kind>`` as ``langchain_energyrouter/<kind>``; a source
    tree or an editable install reads the repository's ``calibration/<kind>`` itself.
    """
    package = Path(__file__).resolve().parent
    return [package / kind, package.parent / "calibration" / kind]


__all__ = ["shipped_data_dirs", "write_text_atomically"]
