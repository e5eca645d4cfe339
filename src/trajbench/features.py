"""Clip-level feature vectors for the linear probes: VideoMAE, CLIP, MagVit tokens, raw pixels, oracle positions.

`extract_features` dispatches on the model name and returns ``(features float32 (N, D), meta)``; ``meta`` records
everything that affects the numbers (frames sampled, preprocessing applied, pooling, init, seed, dtype, attention,
library versions) so that a feature file can be traced back to exactly how it was made.

Videos are read batch by batch from the (memory-mapped) uint8 array; only one batch is ever held as float.
Model forwards run under ``torch.inference_mode``; on CUDA under autocast in the requested dtype (the weights stay
float32), on CPU always in float32 so that CPU runs give the same bytes every time.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from trajbench.logs import Progress

log = logging.getLogger(__name__)

INITS = {
    "videomae": ("pretrained", "random"),
    "clip": ("pretrained", "random"),
    "magvit": ("pretrained", "random", "finetuned"),  # finetuned: trajbench.finetune
    "pixels": ("none",),
    "oracle": ("none",),
}

NETWORKS = ("videomae", "clip")  # run a transformers model on the device

# Options each extractor understands, with defaults (None = required or derived, see the extractor).
OPTIONS = {
    "videomae": {"frames": None},
    "clip": {"frames": 8, "pooling": "concat_mean"},
    "magvit": {"z_channels": None, "pooling": "flatten", "histogram": False, "histogram_bins": 1024},
    "pixels": {"size": 16},
    "oracle": {},
}

# Checkpoint tensors that the hub repos hold beyond the model we run (a pretraining decoder, CLIP's text tower).
# Any other unexpected tensor means the checkpoint is not what we think it is.
KNOWN_UNUSED = {
    "videomae": ("decoder", "encoder_to_decoder", "mask_token"),
    "clip": ("text_model", "text_projection", "logit_scale"),
}

ORACLE_DECIMALS = 9  # in frame-size units: 1e-9 of the frame, far below a pixel

# Frames are HWC uint8; saying so stops the processor guessing the channel axis on tiny frames.
_PROCESSOR_ARGS = {"return_tensors": "pt", "input_data_format": "channels_last"}


class FeatureError(ValueError):
    """Bad inputs, options or checkpoints for feature extraction; the message says what to do."""


@dataclass
class _Run:
    model_name: str
    init: str
    videos: np.ndarray
    labels: pd.DataFrame
    options: dict
    weights_dir: Path | None
    tokens: np.ndarray | None
    device: torch.device
    dtype: torch.dtype  # the dtype computations actually run in
    attn_implementation: str
    batch_size: int
    seed: int
    logger: logging.Logger


def extract_features(
    model_name: str,
    init: str,
    videos: np.ndarray,
    labels: pd.DataFrame,
    options: dict | None,
    *,
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
    """Features (N, D) float32 of every clip for ``model_name`` in {videomae, clip, magvit, pixels, oracle}.

    ``weights_dir`` is the transformers folder (config.json, weights, preprocessor_config.json) for videomae/clip;
    ``tokens`` the tokenize stage's indices (N, T', H', W') for magvit. See OPTIONS for each model's options.
    ``clips`` (a shard, `trajbench.shards.clip_range`) restricts the work to those clips of the whole dataset given
    in ``videos``, ``labels`` and ``tokens``; the features are then (len(clips), D).
    """
    logger = logger or log
    if model_name not in INITS:
        raise FeatureError(f"unknown model {model_name!r}; expected one of {sorted(INITS)}")
    if init not in INITS[model_name]:
        raise FeatureError(f"init {init!r} is not valid for {model_name}; expected one of {list(INITS[model_name])}")
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
    device = torch.device(device if model_name in NETWORKS else "cpu")
    compute_dtype = dtype if device.type == "cuda" else torch.float32
    if compute_dtype != dtype and model_name in NETWORKS:
        logger.info("%s: running in float32 on %s (requested %s is used on CUDA only)", model_name, device, dtype)
    run = _Run(
        model_name=model_name,
        init=init,
        videos=videos,
        labels=labels,
        options=_resolve_options(model_name, options),
        weights_dir=Path(weights_dir) if weights_dir is not None else None,
        tokens=tokens,
        device=device,
        dtype=compute_dtype,
        attn_implementation=attn_implementation,
        batch_size=batch_size,
        seed=seed,
        logger=logger,
    )
    extractor = {"videomae": _videomae, "clip": _clip, "magvit": _magvit, "pixels": _pixels, "oracle": _oracle}
    features, meta = extractor[model_name](run)
    features = np.ascontiguousarray(features, dtype=np.float32)
    if not np.isfinite(features).all():
        bad_rows = int((~np.isfinite(features)).any(axis=1).sum())
        raise FeatureError(f"{model_name}/{init}: {bad_rows} of {len(features)} clips have non-finite features")
    meta.update(
        model=model_name,
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


def even_indices(available: int, wanted: int) -> np.ndarray:
    """``wanted`` frame indices spread evenly over ``available`` frames, first and last included.

    Rounds half up; when ``wanted > available`` frames repeat (e.g. 3 of 2 -> [0, 1, 1]).
    """
    if available < 1 or wanted < 1:
        raise FeatureError(f"cannot sample {wanted} frames from {available}")
    return np.floor(np.linspace(0, available - 1, wanted) + 0.5).astype(np.int64)


# --- transformers models -------------------------------------------------------------------------------------------


def _videomae(run: _Run) -> tuple[np.ndarray, dict]:
    from transformers import VideoMAEModel

    config = _hf_config(run)
    frames = run.options["frames"]
    if frames is None:
        frames = config.num_frames
    elif frames != config.num_frames:
        raise FeatureError(
            f"videomae options.frames={frames} but {run.weights_dir}/config.json has num_frames={config.num_frames} "
            "(its position embeddings fix the clip length); set frames to that value or leave it unset"
        )
    indices = even_indices(run.videos.shape[1], frames)
    model, load_meta = _load_hf(VideoMAEModel, config, run)
    processor = _processor(run)

    def pixels(clips: np.ndarray) -> torch.Tensor:
        return processor([list(clip) for clip in clips[:, indices]], **_PROCESSOR_ARGS)["pixel_values"]

    def forward(pixel_values: torch.Tensor) -> torch.Tensor:
        _check_image_size(pixel_values, config.image_size, run)
        # VideoMAE has no CLS token: average every spatio-temporal patch token.
        return model(pixel_values=pixel_values).last_hidden_state.float().mean(dim=1)

    features, pixel_shape = _embed(run, pixels, forward)
    meta = {
        "frames": indices.tolist(),
        "preprocessing": _processor_meta(processor, pixel_shape[1:]),
        "pooling": "mean of last_hidden_state over all patch tokens",
        "hidden_size": int(config.hidden_size),
        **load_meta,
    }
    return features, meta


def _clip(run: _Run) -> tuple[np.ndarray, dict]:
    from transformers import CLIPVisionModelWithProjection

    config = _hf_config(run)
    # The hub repo holds the full CLIPModel config; its projection width lives at the top level.
    vision_config = getattr(config, "vision_config", config)
    if hasattr(config, "projection_dim"):
        vision_config.projection_dim = config.projection_dim
    pooling, k = run.options["pooling"], run.options["frames"]
    if pooling not in ("concat_mean", "mean"):
        raise FeatureError(f"clip options.pooling must be 'concat_mean' or 'mean', got {pooling!r}")
    indices = even_indices(run.videos.shape[1], k)
    model, load_meta = _load_hf(CLIPVisionModelWithProjection, vision_config, run)
    processor = _processor(run)

    def pixels(clips: np.ndarray) -> torch.Tensor:
        frames = clips[:, indices].reshape(-1, *clips.shape[2:])
        return processor(list(frames), **_PROCESSOR_ARGS)["pixel_values"]

    def forward(pixel_values: torch.Tensor) -> torch.Tensor:
        _check_image_size(pixel_values, vision_config.image_size, run)
        embeds = model(pixel_values=pixel_values).image_embeds
        embeds = embeds.reshape(-1, k, embeds.shape[-1]).float()
        mean = embeds.mean(dim=1)
        # Concatenation in time order keeps the direction of motion, which the mean throws away.
        return torch.cat([embeds.flatten(1), mean], dim=1) if pooling == "concat_mean" else mean

    features, pixel_shape = _embed(run, pixels, forward)
    meta = {
        "frames": indices.tolist(),
        "preprocessing": _processor_meta(processor, [k, *pixel_shape[1:]]),
        "pooling": pooling,
        "pooling_layout": (
            f"{k} frame embeddings in time order, then their mean" if pooling == "concat_mean" else "mean of frames"
        ),
        "embedding": "image_embeds (visual projection of the pooled CLS token, not L2-normalised)",
        "projection_dim": int(vision_config.projection_dim),
        **load_meta,
    }
    return features, meta


def _hf_config(run: _Run):
    from transformers import AutoConfig

    folder = run.weights_dir
    if folder is None or not (folder / "config.json").is_file():
        raise FeatureError(
            f"{run.model_name}: no config.json in weights_dir={folder}; pass the transformers folder that "
            "download_weights resolved (the directory holding config.json)"
        )
    return AutoConfig.from_pretrained(folder)


def _processor(run: _Run):
    from transformers import AutoImageProcessor

    if not (run.weights_dir / "preprocessor_config.json").is_file():
        raise FeatureError(
            f"{run.model_name}: no preprocessor_config.json in {run.weights_dir}; the weights download must include "
            "it (add it to the model's allow_patterns) so the model's own resize/normalisation is applied"
        )
    return AutoImageProcessor.from_pretrained(run.weights_dir)


def _load_hf(model_cls, config, run: _Run) -> tuple[torch.nn.Module, dict]:
    """Pretrained weights checked key by key, or the same architecture with a seeded random init."""
    what = f"{model_cls.__name__} ({run.init}, attention {run.attn_implementation}) from {run.weights_dir}"
    try:
        if run.init == "random":
            # transformers' own _init_weights under a private RNG stream: deterministic, global RNG untouched.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(run.seed)
                model = model_cls._from_config(
                    config, attn_implementation=run.attn_implementation, **{_dtype_keyword(): torch.float32}
                )
            info = None
        else:
            model, info = model_cls.from_pretrained(
                run.weights_dir, config=config, attn_implementation=run.attn_implementation, output_loading_info=True
            )
    except (OSError, RuntimeError, ValueError) as error:
        raise FeatureError(f"loading {what} failed: {error}") from error
    if info is None:
        meta = {"weights": "random init (transformers _init_weights after torch.manual_seed(seed))"}
    else:
        meta = {"weights": str(run.weights_dir), "ignored_checkpoint_tensors": _check_loading(model, info, run)}
    model = model.to(device=run.device, dtype=torch.float32).eval()
    meta["attn_implementation"] = model.config._attn_implementation
    run.logger.info("loaded %s", what)
    return model, meta


def _dtype_keyword() -> str:
    """transformers 4.56 renamed ``torch_dtype`` to ``dtype`` and warns about the old name since."""
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def _check_loading(model: torch.nn.Module, info: dict, run: _Run) -> dict[str, int]:
    """Fail on missing/mismatched/unknown tensors; return counts of the known-unused groups (logged at INFO).

    transformers 4.x names the keys of a base model loaded from a head checkpoint with the head's prefix
    (``videomae.embeddings...``), 5.x without; both are mapped to the model's own names before matching.
    """
    own = set(model.state_dict())
    prefix = f"{model.base_model_prefix}."

    def own_name(key: str) -> str:
        return key[len(prefix) :] if key not in own and key.startswith(prefix) else key

    missing = sorted(own_name(k) for k in info.get("missing_keys", ()))
    mismatched = sorted(str(k) for k in info.get("mismatched_keys", ()))
    if missing or mismatched:
        raise FeatureError(
            f"{run.weights_dir}: checkpoint does not fit {type(model).__name__}: "
            f"{len(missing)} missing tensor(s) {_listing(missing)}, {len(mismatched)} mis-shaped "
            f"{_listing(mismatched)}. These layers would be silently re-initialised; re-download the weights "
            "(delete the folder / cache entry and rerun download_weights) or point the config at the right repo"
        )
    # Old checkpoints carry buffers that the model now recomputes (e.g. CLIP's position_ids): harmless.
    buffers = {name for name, _ in model.named_buffers()}
    groups: dict[str, int] = {}
    unknown = []
    for key in sorted(own_name(k) for k in info.get("unexpected_keys", ())):
        group = next((g for g in KNOWN_UNUSED[run.model_name] if key == g or key.startswith(g + ".")), None)
        group = group or ("buffers" if key in buffers else None)
        if group is None:
            unknown.append(key)
        else:
            groups[group] = groups.get(group, 0) + 1
    if unknown:
        raise FeatureError(
            f"{run.weights_dir}: checkpoint holds {len(unknown)} tensor(s) that {type(model).__name__} does not use "
            f"and that are not in the known groups {list(KNOWN_UNUSED[run.model_name])}: {_listing(unknown)}. "
            "The checkpoint is probably another architecture; check the model's repo_id/path in the config"
        )
    if groups:
        run.logger.info(
            "%s: ignoring %d checkpoint tensors not used by %s: %s",
            run.weights_dir,
            sum(groups.values()),
            type(model).__name__,
            ", ".join(f"{g}: {n}" for g, n in groups.items()),
        )
    return groups


def _listing(keys: list[str], limit: int = 30) -> str:
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return "[" + ", ".join(keys[:limit]) + more + "]"


def _check_image_size(pixel_values: torch.Tensor, image_size: int | list[int], run: _Run) -> None:
    expected = tuple(image_size) if isinstance(image_size, (list, tuple)) else (image_size, image_size)
    if tuple(pixel_values.shape[-2:]) != expected:
        raise FeatureError(
            f"{run.weights_dir}: preprocessor_config.json produces {tuple(pixel_values.shape[-2:])} frames but "
            f"config.json expects image_size={image_size}; the two files come from different models"
        )


def _processor_meta(processor, pixel_shape: list[int]) -> dict:
    """The processor's resize/crop/normalisation settings and the pixel_values shape of one clip."""
    settings = json.loads(processor.to_json_string())  # plain lists/dicts on every transformers version
    keys = ("do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
            "do_normalize", "image_mean", "image_std")  # fmt: skip
    return {
        "processor": type(processor).__name__,
        **{key: settings.get(key) for key in keys},
        "pixel_values_shape_per_clip": [int(s) for s in pixel_shape],
    }


def _embed(
    run: _Run, pixels: Callable[[np.ndarray], torch.Tensor], forward: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[np.ndarray, list[int]]:
    """Preprocess each batch on CPU, run ``forward`` on the device; also return the last pixel_values shape."""
    shape: list[int] = []
    autocast = (
        torch.autocast(device_type="cuda", dtype=run.dtype)
        if run.device.type == "cuda" and run.dtype != torch.float32
        else contextlib.nullcontext()
    )

    def batch(start: int, stop: int) -> np.ndarray:
        pixel_values = pixels(np.asarray(run.videos[start:stop]))
        shape[:] = pixel_values.shape
        with torch.inference_mode(), autocast:
            return forward(pixel_values.to(run.device)).float().cpu().numpy()

    return _map_batches(run, batch), shape


# --- MagVit tokens, pixels, oracle ---------------------------------------------------------------------------------


def _magvit(run: _Run) -> tuple[np.ndarray, dict]:
    """Features from cached token indices: the ±1 bits of the quantized latent, pooled, plus an optional histogram.

    Bits: channel c of the latent is +1 where bit c of the index is set, else -1 (channel 0 least significant).
    Poolings over the token grid (T', H', W'), channels last in every layout:
      flatten    -> T'*H'*W'*C values in (t, h, w, c) order;
      mean_time  -> mean over t, H'*W'*C values in (h, w, c) order;
      mean_space -> mean over h and w, T'*C values in (t, c) order.
    Histogram (options.histogram): each index is hashed to one of options.histogram_bins columns with
    scikit-learn's FeatureHasher (MurmurHash3, seed 0, of the decimal index string, no sign flipping); a column
    holds the fraction of the clip's tokens hashed there (colliding indices add up). Appended after the bits.
    """
    opts = run.options
    z_channels, pooling = opts["z_channels"], opts["pooling"]
    if not isinstance(z_channels, int) or not 1 <= z_channels <= 62:
        raise FeatureError(
            f"magvit options.z_channels must be an int in 1..62 (18 for the public checkpoint), got {z_channels!r}"
        )
    if pooling not in ("flatten", "mean_time", "mean_space"):
        raise FeatureError(f"magvit options.pooling must be flatten, mean_time or mean_space, got {pooling!r}")
    tokens = run.tokens
    if tokens is None:
        raise FeatureError("magvit features need `tokens` (the tokenize stage's indices, N x T' x H' x W')")
    if tokens.ndim != 4 or not np.issubdtype(tokens.dtype, np.integer) or len(tokens) != len(run.videos):
        raise FeatureError(
            f"magvit tokens must be integer (N={len(run.videos)}, T', H', W'); got {tokens.dtype} {tokens.shape}"
        )
    bins = opts["histogram_bins"]
    if opts["histogram"] and (not isinstance(bins, int) or bins < 1):
        raise FeatureError(f"magvit options.histogram_bins must be a positive int, got {bins!r}")

    def batch(start: int, stop: int) -> np.ndarray:
        block = np.asarray(tokens[start:stop]).astype(np.int64)
        if block.min() < 0 or block.max() >= 2**z_channels:
            raise FeatureError(
                f"magvit tokens of clips {start}..{stop - 1} span {block.min()}..{block.max()}, outside "
                f"0..{2**z_channels - 1} for z_channels={z_channels}; set options.z_channels to the tokenizer's"
            )
        bits = unpack_bits(block, z_channels)
        if pooling == "mean_time":
            bits = bits.mean(axis=1)
        elif pooling == "mean_space":
            bits = bits.mean(axis=(2, 3))
        parts = [bits.reshape(len(block), -1)]
        if opts["histogram"]:
            parts.append(token_histogram(block, bins))
        return np.concatenate(parts, axis=1)

    features = _map_batches(run, batch)
    meta = {
        "token_grid": list(tokens.shape[1:]),
        "z_channels": z_channels,
        "bits": "channel c = +1 where bit c of the index is set else -1; channel 0 least significant",
        "pooling": pooling,
        "histogram_bins": bins if opts["histogram"] else 0,
    }
    if opts["histogram"]:
        meta["histogram"] = "sklearn FeatureHasher (MurmurHash3 of the decimal index), token fractions, after bits"
    return features, meta


def unpack_bits(indices: np.ndarray, z_channels: int) -> np.ndarray:
    """Quantized latent (..., C) float32 from token indices: +1 where bit c is set, else -1."""
    bits = (np.asarray(indices, dtype=np.int64)[..., None] >> np.arange(z_channels)) & 1
    return (2 * bits - 1).astype(np.float32)


def token_histogram(indices: np.ndarray, bins: int) -> np.ndarray:
    """(N, bins) float32 fraction of each clip's tokens per hashed column (see `_magvit`)."""
    from sklearn.feature_extraction import FeatureHasher

    rows = []
    for clip in np.asarray(indices).reshape(len(indices), -1):
        values, counts = np.unique(clip, return_counts=True)
        rows.append([(str(v), c / clip.size) for v, c in zip(values.tolist(), counts.tolist())])
    hasher = FeatureHasher(n_features=bins, input_type="pair", alternate_sign=False)
    return hasher.transform(rows).toarray().astype(np.float32)


def _pixels(run: _Run) -> tuple[np.ndarray, dict]:
    size = run.options["size"]
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or not all(isinstance(s, int) and s >= 1 for s in hw):
        raise FeatureError(f"pixels options.size must be an int or [height, width], got {size!r}")

    def batch(start: int, stop: int) -> np.ndarray:
        clips = torch.from_numpy(np.asarray(run.videos[start:stop]))
        n, t, h, w, c = clips.shape
        frames = clips.reshape(n * t, h, w, c).permute(0, 3, 1, 2).float() / 255.0
        small = torch.nn.functional.interpolate(frames, size=hw, mode="area")
        return small.permute(0, 2, 3, 1).reshape(n, -1).numpy()

    features = _map_batches(run, batch)
    layout = f"all {run.videos.shape[1]} frames, (t, y, x, rgb) order"
    meta = {"size": list(hw), "interpolation": "area (torch interpolate)", "scale": "[0, 1]", "layout": layout}
    return features, meta


def _oracle(run: _Run) -> tuple[np.ndarray, dict]:
    """Ground-truth kinematics: positions, velocities, accelerations, and their shape in time.

    Raw coordinates alone are not linearly separable by motion class (each video is rotated, shifted and scaled), so
    the oracle adds what a physicist would read off a track: speed, turning angle (cos, sin) and vertical
    acceleration per frame (gravity points down, so it is not rotation-invariant on purpose), and their mean,
    standard deviation, extremes and sign changes over the clip.
    """
    _, t, h, w, _ = run.videos.shape
    columns = [f"x_{i}" for i in range(t)] + [f"y_{i}" for i in range(t)]
    absent = [c for c in columns if c not in run.labels.columns]
    if absent:
        raise FeatureError(f"labels lack ground-truth position columns {_listing(absent)} for {t}-frame videos")
    if t < 3:
        raise FeatureError(f"the oracle needs at least 3 frames for accelerations, the videos have {t}")
    xy = run.labels[columns].to_numpy(dtype=np.float64).reshape(-1, 2, t)
    if not np.isfinite(xy).all():
        bad_rows = int((~np.isfinite(xy)).any(axis=(1, 2)).sum())
        raise FeatureError(f"labels hold non-finite ground-truth positions in {bad_rows} rows")
    xy = xy / np.array([w, h], dtype=np.float64)[None, :, None]
    velocity = np.diff(xy, axis=2)
    acceleration = np.diff(xy, n=2, axis=2)
    speed = np.linalg.norm(velocity, axis=1)
    relative_speed = speed / np.maximum(speed.mean(axis=1, keepdims=True), 1e-9)
    v0, v1 = velocity[:, :, :-1], velocity[:, :, 1:]
    turn = np.arctan2(v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0], (v0 * v1).sum(axis=1))
    vertical = acceleration[:, 1] / np.maximum(speed.mean(axis=1, keepdims=True), 1e-9)
    series = {"relative_speed": relative_speed, "turn": turn, "abs_turn": np.abs(turn), "vertical_accel": vertical}
    stats = [np.stack([v.mean(1), v.std(1), v.min(1), v.max(1)], axis=1) for v in series.values()]
    sign_changes = (np.diff(np.sign(np.round(turn, 6)), axis=1) != 0).mean(axis=1, keepdims=True)
    parts = [xy, velocity, acceleration, relative_speed, np.cos(turn), np.sin(turn), vertical, *stats, sign_changes]
    features = np.concatenate([a.reshape(len(xy), -1) for a in parts], axis=1)
    # Differences of exactly linear tracks are ~1e-16 rounding noise, which a probe's StandardScaler would blow up
    # to unit variance; rounding far below a pixel makes them exact zeros.
    features = np.round(features, ORACLE_DECIMALS)
    meta = {
        "layout": "x/W then y/H per frame, their first and second differences; relative speed, cos and sin of the "
        "turning angle and vertical acceleration per frame; mean/std/min/max over time of relative speed, turn, "
        "|turn| and vertical acceleration; fraction of turn sign changes",
        "frame_size": [h, w],
        "rounded_to_decimals": ORACLE_DECIMALS,
    }
    return features, meta


# --- shared helpers ------------------------------------------------------------------------------------------------


def _map_batches(run: _Run, fn: Callable[[int, int], np.ndarray]) -> np.ndarray:
    n = len(run.videos)
    progress = Progress(n, f"{run.model_name}/{run.init} features", run.logger)
    out = []
    for start in range(0, n, run.batch_size):
        stop = min(start + run.batch_size, n)
        out.append(np.asarray(fn(start, stop), dtype=np.float32))
        progress.update(stop - start)
    return np.concatenate(out, axis=0)


def _resolve_options(model_name: str, options: dict | None) -> dict:
    known = OPTIONS[model_name]
    options = dict(options or {})
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise FeatureError(f"unknown option(s) {unknown} for {model_name}; known: {sorted(known) or 'none'}")
    return {**known, **options}


def _check_labels(labels: pd.DataFrame, n: int) -> None:
    if len(labels) != n:
        raise FeatureError(f"labels has {len(labels)} rows but there are {n} videos; they must come from one dataset")
    if "index" in labels.columns and not np.array_equal(labels["index"].to_numpy(), np.arange(n)):
        raise FeatureError("labels column 'index' must be 0..N-1 in order, matching the rows of videos.npy")


def _versions() -> dict[str, str]:
    # Package metadata, not imports: importing transformers only for its version costs seconds per job.
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "transformers", "numpy", "scikit-learn")}
