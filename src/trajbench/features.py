"""Clip-level feature vectors and token grids for the probes, for any model of the registry, on both motion controls.

`extract_inits` checks its inputs, loads the family's model once per init (`trajbench.models.<family>`) and encodes
two views of the clips: ``ordered`` (as rendered) and ``shuffled`` (each clip's frames permuted by labels.csv's
`trajbench.controls.COLUMN`). For each it returns the features float32 (N, D) for the linear probe and the token
grid float16 (N, T', S, C) for the attentive probe; ``meta`` records everything that affects the numbers (frames
used, preprocessing, pooling, the grid, init, seed, dtype, attention, library versions) so that a feature file can
be traced back to exactly how it was made. Videos are read batch by batch from the (memory-mapped) uint8 array;
only one batch is ever held as float.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from trajbench import controls
from trajbench.models import registry
from trajbench.models.base import Batched, FeatureError, Run, View, encode_together


def extract_features(family_name: str, init: str, *args, **kwargs) -> tuple[dict, dict]:
    """The outputs and meta of one init: `extract_inits` with ``inits=[init]``."""
    return extract_inits(family_name, [init], *args, **kwargs)[init]


def extract_inits(
    family_name: str,
    inits: list[str],
    videos: np.ndarray,
    labels: pd.DataFrame,
    options: dict | None,
    *,
    model_name: str | None = None,
    weights_dir: str | Path | None = None,
    tokens: np.ndarray | None = None,
    tokens_shuffled: np.ndarray | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    attn_implementation: str = "sdpa",
    batch_size: int = 8,
    seed: int = 0,
    grid_side: int = 4,
    logger: logging.Logger | None = None,
    clips: range | None = None,
) -> dict[str, tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict]]:
    """Per init of ``inits``: ``{control: (features (N, D) float32, grid (N, T', S, C) float16)}`` for both
    `trajbench.controls.CONTROLS`, and the meta, for a model of family ``family_name`` (named ``model_name``, by
    default the family's name, in logs and errors). Several inits are for a network family only: its networks are
    loaded side by side and each batch is preprocessed once for all of them (`trajbench.models.base.encode_together`),
    with the same numbers as one init at a time.

    ``labels`` must hold the shuffled frame orders (`trajbench.controls.COLUMN`). ``weights_dir`` is the downloaded
    folder (config.json, weights, preprocessor config) for the network families; ``tokens`` and ``tokens_shuffled``
    the tokenize stage's indices (N, T', H', W') of the ordered and of the frame-shuffled clips, for a tokenizer.
    ``options`` overlay the family's defaults (`trajbench.models.base.Family.options`). ``grid_side``: a grid keeps
    at most ``grid_side`` x ``grid_side`` spatial tokens (`trajbench.models.base.pool_grid`). ``clips`` (a shard,
    `trajbench.shards.clip_range`) restricts the work to those clips of the whole dataset given in ``videos``,
    ``labels`` and the tokens; the arrays then have len(clips) rows.
    """
    logger = logger or logging.getLogger(__name__)
    try:
        family = registry.get(family_name)
    except KeyError as error:
        raise FeatureError(str(error.args[0])) from None
    model_name = model_name or family_name
    for init in inits:
        if init not in family.inits:
            raise FeatureError(f"init {init!r} is not valid for {model_name} (family {family.name}); expected one "
                               f"of {list(family.inits)}")
    if not inits or len(set(inits)) != len(inits):
        raise FeatureError(f"inits must name each init once, got {list(inits)}")
    if len(inits) > 1 and not family.network:
        raise FeatureError(f"{model_name} (family {family.name}) extracts one init at a time, got {list(inits)}; "
                           "only network families share the preprocessing of several inits")
    if videos.ndim != 5 or videos.shape[-1] != 3 or videos.dtype != np.uint8:
        raise FeatureError(f"videos must be uint8 (N, T, H, W, 3); got {videos.dtype} {videos.shape}")
    _check_labels(labels, len(videos))
    if batch_size < 1:
        raise FeatureError(f"batch_size must be >= 1, got {batch_size}")
    if grid_side < 1:
        raise FeatureError(f"grid_side (features.grid) must be >= 1, got {grid_side}")
    clips = range(len(videos)) if clips is None else clips
    if clips.step != 1 or not 0 <= clips.start <= clips.stop <= len(videos):
        raise FeatureError(f"clips {clips} is not a consecutive range within the {len(videos)} videos")
    if (tokens is None) != (tokens_shuffled is None):
        raise FeatureError("tokens and tokens_shuffled come together (the tokenize stage writes both), got only "
                           f"{'tokens' if tokens is not None else 'tokens_shuffled'}; rerun rule tokenize")
    if tokens is not None:
        for name, array in (("tokens", tokens), ("tokens_shuffled", tokens_shuffled)):
            if len(array) != len(videos):
                raise FeatureError(f"{len(array)} clips of {name} for {len(videos)} videos; rerun rule tokenize")
        if tokens_shuffled.shape != tokens.shape:
            raise FeatureError(f"tokens_shuffled {tokens_shuffled.shape} differ in shape from tokens {tokens.shape}; "
                               "rerun rule tokenize")
    try:
        orders = controls.read_orders(labels, videos.shape[1])
    except ValueError as error:
        raise FeatureError(str(error)) from None
    part = slice(clips.start, clips.stop)
    videos, labels, orders = videos[part], labels.iloc[part], orders[part]
    views = [
        View("ordered", videos, labels, None if tokens is None else tokens[part]),
        View("shuffled", controls.ShuffledVideos(videos, orders), controls.shuffle_positions(labels, orders),
             None if tokens_shuffled is None else tokens_shuffled[part]),
    ]  # fmt: skip
    # Only the networks use the device; the other extractors are cheap numpy/CPU work.
    device = torch.device(device if family.network else "cpu")
    compute_dtype = dtype if device.type == "cuda" else torch.float32
    if compute_dtype != dtype and family.network:
        logger.info("%s: running in float32 on %s (requested %s is used on CUDA only)", model_name, device, dtype)
    runs = [
        Run(
            family=family,
            model_name=model_name,
            init=init,
            videos=videos,
            labels=labels,
            options=family.resolve_options(options),
            weights_dir=Path(weights_dir) if weights_dir is not None else None,
            tokens=views[0].tokens,
            device=device,
            dtype=compute_dtype,
            attn_implementation=attn_implementation,
            batch_size=batch_size,
            seed=seed,
            logger=logger,
            grid_side=grid_side,
        )
        for init in inits
    ]
    encoders, metas = zip(*(family.extract(run) for run in runs))
    if len(runs) > 1 and not all(isinstance(encoder, Batched) for encoder in encoders):
        raise FeatureError(f"family {family.name}'s extract must return a Batched encoder to share batches across "
                           f"inits {list(inits)}")  # fmt: skip
    if any(meta.get("preprocessing") != metas[0].get("preprocessing") for meta in metas):
        raise FeatureError(f"{model_name}: the inits {list(inits)} preprocess differently; extract them one at a time")
    results = {init: ({}, {}) for init in inits}
    for view in views:
        pairs = encode_together(list(encoders), view) if len(runs) > 1 else [encoders[0](view)]
        for init, (features, grid) in zip(inits, pairs):
            outputs, shapes = results[init]
            outputs[view.control] = _checked(features, grid, f"{model_name}/{init} {view.control}")
            shapes[view.control] = {"dim": int(features.shape[1]), "grid_shape": list(grid.shape[1:])}
            logger.info("%s/%s %s: features %d clips x %d dims, grid %s", model_name, init, view.control,
                        features.shape[0], features.shape[1], list(grid.shape[1:]))  # fmt: skip
    for run, meta in zip(runs, metas):
        shapes = results[run.init][1]
        meta.update(
            model=model_name,
            family=family.name,
            init=run.init,
            extracted_with=list(inits),
            seed=seed,
            device=str(device),
            requested_dtype=str(dtype).removeprefix("torch."),
            dtype=str(compute_dtype).removeprefix("torch."),
            options=run.options,
            num_videos=len(videos),
            clips=[clips.start, clips.stop],
            dim=shapes["ordered"]["dim"],
            grid_side=grid_side,
            controls=shapes,
            shuffled=f"each clip's frames permuted by labels.csv column {controls.COLUMN}",
            video_shape=list(videos.shape[1:]),
            versions=_versions(),
        )
    return {run.init: (results[run.init][0], meta) for run, meta in zip(runs, metas)}


def _checked(features: np.ndarray, grid: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous float32 features and float16 grid, refused where a value is not finite."""
    features = np.ascontiguousarray(features, dtype=np.float32)
    grid = np.ascontiguousarray(grid, dtype=np.float16)
    for name, array in (("features", features), ("token grids", grid)):
        if not np.isfinite(array).all():
            bad_rows = int((~np.isfinite(array)).reshape(len(array), -1).any(axis=1).sum())
            hint = " (float16 overflow: values beyond ±65504)" if array.dtype == np.float16 else ""
            raise FeatureError(f"{what}: {bad_rows} of {len(array)} clips have non-finite {name}{hint}")
    return features, grid


def _check_labels(labels: pd.DataFrame, n: int) -> None:
    if len(labels) != n:
        raise FeatureError(f"labels has {len(labels)} rows but there are {n} videos; they must come from one dataset")
    if "index" in labels.columns and not np.array_equal(labels["index"].to_numpy(), np.arange(n)):
        raise FeatureError("labels column 'index' must be 0..N-1 in order, matching the rows of videos.npy")


def _versions() -> dict[str, str]:
    # Package metadata, not imports: importing transformers only for its version costs seconds per job.
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "transformers", "numpy", "scikit-learn")}
