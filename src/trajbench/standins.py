"""Demo stand-in weights: what every family's writer shares (each family module has its own writer,
``Family.write_standin``), and a hub cache to put them in.

Stand-ins are tiny, seeded models in the same file formats as the real hub repos. They let the demo and the tests run
every stage (download/verify, loading, features) without the multi-GB downloads. Same seed and library versions ->
the same bytes on CPU. :func:`populate_hub_cache` lays files out as a huggingface_hub cache, so offline hub resolution
can be exercised.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

from trajbench.io import atomic_dir, atomic_path, sha256_file, write_json, write_text
from trajbench.weights import git_blob_sha1, repo_cache_folder

# the ImageNet statistics that MCG-NJU/videomae-base's preprocessor uses (the class default is 0.5/0.5)
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
# the hub's default .gitattributes stores these in LFS (etag = sha256); other files are plain git (etag = sha1)
_LFS_SUFFIXES = {".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".h5", ".msgpack", ".onnx", ".npy", ".npz", ".pkl"}
_LFS_MIN_SIZE = 10 << 20  # the hub rejects larger non-LFS files


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Draw weights from ``seed`` in a forked RNG, leaving the caller's global RNG state untouched."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def merge(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` merged in, nested dicts key by key."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        merged[key] = (
            merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def save_pretrained(folder: str | os.PathLike, *savables: Any, json_files: dict[str, Any] | None = None) -> Path:
    """``save_pretrained`` every object (and write ``json_files``, {name: content}) into a scratch folder that
    becomes ``folder`` only when all are written."""
    with atomic_dir(folder) as scratch:
        for savable in savables:
            savable.save_pretrained(scratch)
        for name, content in (json_files or {}).items():
            write_json(scratch / name, content)
    return Path(folder)


def _copy_atomic(src: Path, dest: Path) -> None:
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)


def populate_hub_cache(
    cache_dir: str | os.PathLike, repo_id: str, files: dict[str, str | os.PathLike], commit: str, ref: str = "main"
) -> Path:
    """Lay ``files`` ({name in repo: source file}) out as huggingface_hub caches a model repo at ``commit``.

    ``models--org--name/blobs/<etag>`` (sha256 for LFS-type files, git blob sha1 for the rest, as the hub's etags),
    ``snapshots/<commit>/<name>`` as relative links to the blobs, and ``refs/<ref>`` holding the commit. Returns the
    snapshot folder.
    """
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise ValueError(f"commit must be 40 lowercase hex characters, got {commit!r}")
    repo = repo_cache_folder(cache_dir, repo_id)
    snapshot = repo / "snapshots" / commit
    for name, src in sorted(files.items()):
        src = Path(src)
        is_lfs = src.suffix in _LFS_SUFFIXES or src.stat().st_size >= _LFS_MIN_SIZE
        blob = repo / "blobs" / (sha256_file(src) if is_lfs else git_blob_sha1(src))
        if not blob.exists():
            _copy_atomic(src, blob)
        pointer = snapshot / name
        _link_atomic(os.path.relpath(blob, pointer.parent), pointer)
    # no trailing newline: some huggingface_hub versions read the ref without stripping it
    write_text(repo / "refs" / ref, commit)
    return snapshot


def _link_atomic(target: str, link: Path) -> None:
    with atomic_path(link) as tmp:
        tmp.unlink()
        tmp.symlink_to(target)
