"""Clip-level feature vectors for the probes, for any model of the registry.

`extract_features` checks its inputs, runs the family's extractor (`trajbench.models.<family>`) and returns
``(features float32 (N, D), meta)``; ``meta`` records everything that affects the numbers (frames used,
preprocessing, pooling, init, seed, dtype, attention, library versions) so that a feature file can be traced back to
exactly how it was made. Videos are read batch by batch from the (memory-mapped) uint8 array; only one batch is ever
held as float.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from trajbench.models import registry
from trajbench.models.base import FeatureError, Run


def extract_features(
    family_name: str,
    init: str,
    videos: np.ndarray,
    labels: pd.DataFrame,
    options: dict | None,
    *,
    model_name: str | None = None,
    weights_dir: str | Path | None = None,
    tokens: np.ndarray | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    attn_implementation: str = "sdpa",
    batch_size: int = 8,
    seed: int = 0,
    logger: logging.Logger | None = None,
    clips: range | None = None,
) -> tuple[np.ndarray, dict]:
    """Features (N, D) float32 of every clip for a model of family ``family_name`` (named ``model_name``, by default
    the family's name, in logs and errors).

    ``weights_dir`` is the downloaded folder (config.json, weights, preprocessor config) for the network families;
    ``tokens`` the tokenize stage's indices (N, T', H', W') for a tokenizer. ``options`` overlay the family's
    defaults (`trajbench.models.base.Family.options`). ``clips`` (a shard, `trajbench.shards.clip_range`) restricts
    the work to those clips of the whole dataset given in ``videos``, ``labels`` and ``tokens``; the features are then
    (len(clips), D).
    """
    logger = logger or logging.getLogger(__name__)
    try:
        family = registry.get(family_name)
    except KeyError as error:
        raise FeatureError(str(error.args[0])) from None
    model_name = model_name or family_name
    if init not in family.inits:
        raise FeatureError(f"init {init!r} is not valid for {model_name} (family {family.name}); expected one of "
                           f"{list(family.inits)}")
    if videos.ndim != 5 or videos.shape[-1] != 3 or videos.dtype != np.uint8:
        raise FeatureError(f"videos must be uint8 (N, T, H, W, 3); got {videos.dtype} {videos.shape}")
    _check_labels(labels, len(videos))
    if batch_size < 1:
        raise FeatureError(f"batch_size must be >= 1, got {batch_size}")
    clips = range(len(videos)) if clips is None else clips
    if clips.step != 1 or not 0 <= clips.start <= clips.stop <= len(videos):
        raise FeatureError(f"clips {clips} is not a consecutive range within the {len(videos)} videos")
    if tokens is not None and len(tokens) != len(videos):
        raise FeatureError(f"{len(tokens)} clips of tokens for {len(videos)} videos; rerun rule tokenize")
    videos, labels = videos[clips.start : clips.stop], labels.iloc[clips.start : clips.stop]
    tokens = None if tokens is None else tokens[clips.start : clips.stop]
    # Only the networks use the device; the other extractors are cheap numpy/CPU work.
    device = torch.device(device if family.network else "cpu")
    compute_dtype = dtype if device.type == "cuda" else torch.float32
    if compute_dtype != dtype and family.network:
        logger.info("%s: running in float32 on %s (requested %s is used on CUDA only)", model_name, device, dtype)
    run = Run(
        family=family,
        model_name=model_name,
        init=init,
        videos=videos,
        labels=labels,
        options=family.resolve_options(options),
        weights_dir=Path(weights_dir) if weights_dir is not None else None,
        tokens=tokens,
        device=device,
        dtype=compute_dtype,
        attn_implementation=attn_implementation,
        batch_size=batch_size,
        seed=seed,
        logger=logger,
    )
    features, meta = family.extract(run)
    features = np.ascontiguousarray(features, dtype=np.float32)
    if not np.isfinite(features).all():
        bad_rows = int((~np.isfinite(features)).any(axis=1).sum())
        raise FeatureError(f"{model_name}/{init}: {bad_rows} of {len(features)} clips have non-finite features")
    meta.update(
        model=model_name,
        family=family.name,
        init=init,
        seed=seed,
        device=str(device),
        requested_dtype=str(dtype).removeprefix("torch."),
        dtype=str(compute_dtype).removeprefix("torch."),
        options=run.options,
        num_videos=int(features.shape[0]),
        clips=[clips.start, clips.stop],
        dim=int(features.shape[1]),
        video_shape=list(videos.shape[1:]),
        versions=_versions(),
    )
    logger.info("%s/%s features: %d clips x %d dims", model_name, init, features.shape[0], features.shape[1])
    return features, meta


def _check_labels(labels: pd.DataFrame, n: int) -> None:
    if len(labels) != n:
        raise FeatureError(f"labels has {len(labels)} rows but there are {n} videos; they must come from one dataset")
    if "index" in labels.columns and not np.array_equal(labels["index"].to_numpy(), np.arange(n)):
        raise FeatureError("labels column 'index' must be 0..N-1 in order, matching the rows of videos.npy")


def _versions() -> dict[str, str]:
    # Package metadata, not imports: importing transformers only for its version costs seconds per job.
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "transformers", "numpy", "scikit-learn")}
