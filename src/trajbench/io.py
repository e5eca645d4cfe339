"""File output: every file the library writes appears complete or not at all, and tables have one format.

A killed job must never leave a plausible partial file behind, so writers go to a temporary name in the
destination folder (same filesystem, so the final ``os.replace`` is atomic) and rename when complete.
:func:`write_csv` and :func:`markdown_table` are the library's only CSV and Markdown-table writers, so every table
reads the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:  # pandas is only needed by callers that have a frame (the Snakefile imports this module too)
    import pandas as pd

# Markdown separator cell per column alignment.
ALIGN_MARKS = {None: "---", "left": ":---", "right": "---:"}


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _remove_stale(path: Path, suffix: str) -> None:
    """Remove the temporary names of ``path`` that a killed writer left (SIGKILL runs no cleanup). Snakemake never
    runs two jobs that write one output at once, so any such name beside it is stale."""
    import glob

    # tempfile's random part is 8 characters without dots: no other output's temporary name matches.
    for stale in path.parent.glob(f".{glob.escape(path.name)}.{'?' * 8}{glob.escape(suffix)}"):
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    The temporary name keeps the suffix so that writers which choose a format by extension still work. Temporary
    names of ``path`` left by a killed writer are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path, f".tmp{path.suffix}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results should read like any file the user writes
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it becomes ``path``, whole, only if the block succeeds.

    For multi-file outputs (a model folder, the GIFs): a killed job leaves the old folder or none, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path, ".tmp")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        if path.exists():  # os.replace cannot replace a non-empty folder: swap the old one out first
            old = tmp.with_suffix(".old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, np.ascontiguousarray(array), allow_pickle=False)


def write_csv(path: str | os.PathLike, frame: pd.DataFrame, float_format: str | None = "%.6g") -> None:
    """Write ``frame`` without its index. Floats get 6 significant digits, the results tables' format;
    ``float_format=None`` keeps full precision, for records that are read back (probe folds, training history)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format=float_format, lineterminator="\n")


def markdown_table(
    header: Sequence[Any], rows: Iterable[Sequence[Any]], align: Sequence[str | None] | None = None
) -> str:
    """A GitHub Markdown table, its lines joined by newlines (no trailing one).

    Cells are ``str(value)`` with runs of whitespace collapsed and ``|`` escaped, so no value can break the table.
    ``align`` gives each column ``"left"``, ``"right"`` or None (the renderer's default).
    """
    marks = [ALIGN_MARKS[a] for a in (align or [None] * len(header))]
    return "\n".join(_markdown_row(cells) for cells in (header, marks, *rows))


def sha256_file(path: str | os.PathLike, chunk_size: int = 8 << 20) -> str:
    """Hex sha256 of a file, streamed so that multi-GB checkpoints never sit in memory whole."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def _markdown_row(cells: Iterable[Any]) -> str:
    return "| " + " | ".join(" ".join(str(cell).split()).replace("|", "\\|") for cell in cells) + " |"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
