"""A sealed on-disk cache of built directories (converted models, distilled encoder tables).

:func:`cached_build` builds an entry once: in a temporary directory, sealed with a completion marker
(:data:`CACHE_MARKER`) listing every file and its size, then renamed into place, under a lock file that
serialises concurrent first builds between processes. An entry without a valid marker is deleted and
rebuilt, never used. :func:`default_cache_dir` is the package's user cache directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import platformdirs
from filelock import FileLock

from langchain_energyrouter.errors import ModelLoadError

__all__ = [
    "CACHE_MARKER",
    "cached_build",
    "default_cache_dir",
    "file_fingerprint",
    "is_valid_cache_entry",
    "remove_path",
]

_APP_NAME = "langchain-energyrouter"

CACHE_MARKER = ".energyrouter-complete.json"
"""Name of the completion marker written last into every cache entry."""

_CACHE_FORMAT = 1
_FINGERPRINT_CHUNK_BYTES = 1 << 20


def default_cache_dir() -> Path:
    """The user cache directory of this package.

    ``$LANGCHAIN_ENERGYROUTER_CACHE`` if set, else the platform's user cache
    directory from ``platformdirs``: on Linux ``$XDG_CACHE_HOME/langchain-energyrouter``,
    else ``~/.cache/langchain-energyrouter`` (as before); on macOS
    ``~/Library/Caches/langchain-energyrouter``; on Windows
    ``%LOCALAPPDATA%\\langchain-energyrouter\\Cache``.
    """
    explicit = os.environ.get("LANGCHAIN_ENERGYROUTER_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    return platformdirs.user_cache_path(_APP_NAME, appauthor=False)


def file_fingerprint(path: Path) -> str:
    """Cheap content fingerprint: size plus SHA-256 of the first and last MiB."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(_FINGERPRINT_CHUNK_BYTES))
        if size > _FINGERPRINT_CHUNK_BYTES:
            handle.seek(max(_FINGERPRINT_CHUNK_BYTES, size - _FINGERPRINT_CHUNK_BYTES))
            digest.update(handle.read(_FINGERPRINT_CHUNK_BYTES))
    return digest.hexdigest()


def _listing(directory: Path) -> dict[str, int]:
    """Relative path -> size in bytes of every file under ``directory`` but the marker."""
    return {
        p.relative_to(directory).as_posix(): p.stat().st_size
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != CACHE_MARKER
    }


def is_valid_cache_entry(directory: str | Path) -> bool:
    """Whether ``directory`` is a complete cache entry.

    Complete means: it holds a readable marker (see :data:`CACHE_MARKER`) whose
    file list matches the directory exactly, sizes included.
    """
    path = Path(directory)
    marker = path / CACHE_MARKER
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        expected = data["files"]
        if data.get("format") != _CACHE_FORMAT or not isinstance(expected, dict) or not expected:
            return False
        return bool(_listing(path) == {str(k): int(v) for k, v in expected.items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (blocking), between processes and threads.

    ``filelock`` picks the platform's lock (``fcntl`` on POSIX, ``msvcrt`` on Windows),
    so concurrent builders wait everywhere instead of duplicating the work.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(lock_path, thread_local=False, is_singleton=False):
        yield


def remove_path(path: Path) -> None:
    """Delete a directory tree, if it is there."""
    shutil.rmtree(path, ignore_errors=True)


def cached_build(
    root: str | Path,
    key: str,
    build: Callable[[Path], None],
    *,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Return the cache entry ``root/key``, building it first if needed.

    ``build(tmp_dir)`` writes the artifact's files into an empty temporary
    directory. The completion marker is written last and the directory is then
    renamed into place, so a reader never sees a half-written entry. An
    existing entry without a valid marker (a crashed build, a truncated file)
    is deleted and rebuilt. Concurrent callers for the same key wait on a lock
    file and then reuse the first caller's entry.

    Args:
        root: cache directory holding the entries.
        key: entry name (a file-name-safe string).
        build: writes the artifact into the directory it is given.
        info: extra JSON-serialisable facts to record in the marker.

    Returns:
        The path of the valid entry.

    Raises:
        ModelLoadError: if ``build`` wrote nothing.
        Exception: whatever ``build`` raises (the temporary directory is removed).
    """
    root_path = Path(root)
    final = root_path / key
    if is_valid_cache_entry(final):
        return final
    root_path.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(root_path / ".locks" / f"{key}.lock"):
        if is_valid_cache_entry(final):  # another process finished while we waited
            return final
        # Under the lock, leftovers for this key belong to dead builds.
        for stale in root_path.glob(f".tmp-{key}-*"):
            remove_path(stale)
        if final.exists():
            remove_path(final)
        tmp = root_path / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            started = time.perf_counter()
            build(tmp)
            files = _listing(tmp)
            if not files:
                msg = f"Building cache entry {final} produced no files."
                raise ModelLoadError(msg)
            marker = {
                "format": _CACHE_FORMAT,
                "key": key,
                "created_unix_s": time.time(),
                "build_s": round(time.perf_counter() - started, 3),
                "info": dict(info or {}),
                "files": files,
            }
            partial = tmp / f"{CACHE_MARKER}.partial"
            partial.write_text(json.dumps(marker, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(partial, tmp / CACHE_MARKER)
            try:
                os.rename(tmp, final)
            except OSError:
                # Lost a race with a lock-less writer: keep theirs if it is whole.
                if not is_valid_cache_entry(final):
                    raise
                remove_path(tmp)
        except BaseException:
            remove_path(tmp)
            raise
    return final
