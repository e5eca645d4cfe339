"""Data-parallel stages in shards: which clips a shard job takes, and merging the shards' arrays back into one.

Tokenization and feature extraction work clip by clip in batches, so a stage can be split into shards that run as
separate jobs (on a cluster, on as many nodes). Shard boundaries fall on whole batches: every batch then holds the
same clips whatever the number of shards, and the merged output is the same bytes as one job's on the CPU.
No torch here: the Snakefile imports this module while it builds the DAG.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from trajbench import io


def batches(n_clips: int, batch_size: int) -> int:
    return math.ceil(n_clips / batch_size)


def clip_range(n_clips: int, shards: int, batch_size: int, shard: int) -> range:
    """The clips of shard ``shard`` of ``shards``: consecutive whole batches, as even as batches allow."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not in 0..{shards - 1}")
    if shards > batches(n_clips, batch_size):
        raise ValueError(
            f"{shards} shards for {n_clips} clips in batches of {batch_size}: more shards than the "
            f"{batches(n_clips, batch_size)} batches, so some would be empty; lower the shard count"
        )
    total = batches(n_clips, batch_size)
    first, last = (total * shard // shards, total * (shard + 1) // shards)
    return range(first * batch_size, min(last * batch_size, n_clips))


def concatenate_npy(paths: Sequence[str | Path], out: str | Path) -> None:
    """Concatenate .npy arrays along their first axis into ``out``, streaming (one shard in memory at a time) and
    atomically. The arrays must agree in dtype and trailing shape."""
    arrays = [np.load(path, mmap_mode="r") for path in paths]
    if not arrays:
        raise ValueError(f"nothing to concatenate into {out}")
    first = arrays[0]
    for path, array in zip(paths, arrays):
        if array.dtype != first.dtype or array.shape[1:] != first.shape[1:]:
            raise ValueError(
                f"{path} holds {array.dtype} {array.shape}, {paths[0]} holds {first.dtype} {first.shape}: shards of "
                "one stage must agree in dtype and all but the first axis; rerun the stage's shard jobs"
            )
    shape = (sum(len(array) for array in arrays), *first.shape[1:])
    with io.atomic_path(out) as tmp:
        merged = np.lib.format.open_memmap(tmp, mode="w+", dtype=first.dtype, shape=shape)
        start = 0
        for array in arrays:
            merged[start : start + len(array)] = array
            start += len(array)
        merged.flush()
        del merged


def check_coverage(ranges: Sequence[Sequence[int]], n_clips: int, what: str) -> None:
    """Shards given as ``[start, stop]`` pairs in order must tile 0..n_clips exactly."""
    expected = 0
    for start, stop in ranges:
        if start != expected:
            raise ValueError(f"{what}: shards cover clips {list(map(list, ranges))}, not 0..{n_clips} in order")
        expected = stop
    if expected != n_clips:
        raise ValueError(f"{what}: shards cover clips 0..{expected}, the dataset has {n_clips}")


PER_SHARD = ("clips", "num_videos")  # meta fields that differ between the shards of one stage
# Per-job decisions (tokenize.compile: auto decides by the job's clip count): the merged meta lists them by shard.
PER_SHARD_DECISIONS = ("compile", "compile_reason")


def merge(arrays: Mapping[str, Sequence[str | Path]], metas: Sequence[str | Path], meta_out: str | Path,
          n_clips: int, what: str) -> None:
    """Merge a stage's shards: each ``{output path: [shard paths in order]}`` of ``arrays`` concatenated, and the
    shards' JSON metadata (which must agree on everything but `PER_SHARD` and `PER_SHARD_DECISIONS`, and cover clips
    0..n_clips in order) into ``meta_out`` with ``clips: [0, n_clips]``, ``shards`` and each decision as a list, one
    value per shard."""
    records = [json.loads(Path(path).read_text()) for path in metas]
    check_coverage([record["clips"] for record in records], n_clips, what)
    per_shard = PER_SHARD + PER_SHARD_DECISIONS
    common = [{key: value for key, value in record.items() if key not in per_shard} for record in records]
    for path, record in zip(metas[1:], common[1:]):
        differing = sorted(key for key in set(record) | set(common[0]) if record.get(key) != common[0].get(key))
        if differing:
            raise ValueError(
                f"{what}: {path} was made differently from {metas[0]} (keys {differing}); the shards come from "
                "different runs: rerun the stage (snakemake --forcerun <its rule>)"
            )
    merged = dict(common[0], clips=[0, n_clips], shards=len(records))
    if "num_videos" in records[0]:
        merged["num_videos"] = n_clips
    for key in PER_SHARD_DECISIONS:
        if key in records[0]:
            merged[key] = [record.get(key) for record in records]
    for out, paths in arrays.items():
        concatenate_npy(paths, out)
        merged.setdefault("arrays", {})[Path(out).name] = list(np.load(out, mmap_mode="r").shape)
    io.write_json(meta_out, merged)
