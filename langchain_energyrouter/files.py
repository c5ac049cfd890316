"""Files: written so that a crash never leaves a truncated one, where the package's shipped data lives, and
the package's version."""

from __future__ import annotations

import os
import secrets
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "langchain-energyrouter"


def package_version() -> str:
    """The installed package's version (``0.0.0`` in a source tree that is not installed)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0.0.0"


def write_text_atomically(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename.

    Readers see the old file or the new one, never half of one; the directory is created. The file gets the
    mode any new file gets (``0666`` less the umask, so usually ``0644``), not a temporary file's ``0600``.
    """
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.parent / f".{file.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as to any new file
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return file


def shipped_data_dirs(kind: str) -> list[Path]:
    """Where data shipped with the package (``profiles``, ``predictors``, ``suites``, ``examples``) lives, in
    the order to look.

    A wheel packages the repository's ``calibration/<kind>`` (``examples/`` for ``examples``) as
    ``langchain_energyrouter/<kind>``; a source tree or an editable install reads the repository's own.
    """
    package = Path(__file__).resolve().parent
    source = package.parent / kind if kind == "examples" else package.parent / "calibration" / kind
    return [package / kind, source]


def shipped_names(kind: str, suffix: str) -> list[str]:
    """The names of the shipped files of one kind (``shipped_names("suites", ".jsonl")``)."""
    return sorted(
        {p.name.removesuffix(suffix) for d in shipped_data_dirs(kind) if d.is_dir() for p in d.glob(f"*{suffix}")}
    )


def data_file(value: str | os.PathLike[str], kind: str, suffix: str) -> Path:
    """``value`` as a path if it names a file (or has a path's form), else the shipped file of that name.

    ``data_file("qa-small", "suites", ".jsonl")`` finds the packaged suite in a wheel and in a clone alike.

    Raises:
        FileNotFoundError: neither a file nor a shipped name (the message lists the shipped ones).
    """
    given = Path(value)
    if given.exists():
        return given
    if given.suffix or len(given.parts) > 1:  # a path the user meant: say it is missing, not "no such name"
        raise FileNotFoundError(f"{given} does not exist.")
    for directory in shipped_data_dirs(kind):
        candidate = directory / f"{given.name}{suffix}"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{str(value)!r} is neither a file nor a shipped {kind[:-1]} name; shipped: {shipped_names(kind, suffix)}."
    )


__all__ = ["data_file", "package_version", "shipped_data_dirs", "shipped_names", "write_text_atomically"]
