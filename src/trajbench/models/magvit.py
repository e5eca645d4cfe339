"""The Open-MAGVIT2 video tokenizer as a family: a *tokenizer* (rules tokenize, reconstruction_metrics,
finetune_tokenizer run it; its network lives in `trajbench.modeling_magvit`, its checkpoint I/O in
`trajbench.checkpoint_magvit`), whose probe features come from its tokens.

Features: the ±1 bits of the quantized latent, pooled, plus an optional histogram. Bit c of a token index is
channel c of the latent (+1 where set, else -1; channel 0 least significant). Poolings over the token grid
(T', H', W'), channels last in every layout:
  flatten    -> T'*H'*W'*C values in (t, h, w, c) order;
  mean_time  -> mean over t, H'*W'*C values in (h, w, c) order;
  mean_space -> mean over h and w, T'*C values in (t, c) order.
Grid: the bits (T', H', W', C) pooled in space (`trajbench.models.base.pool_grid`).
Histogram (options.histogram): each index is hashed to one of options.histogram_bins columns with scikit-learn's
FeatureHasher (MurmurHash3, seed 0, of the decimal index string, no sign flipping); a column holds the fraction of the
clip's tokens hashed there (colliding indices add up). Appended after the bits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trajbench.models.base import TOKENIZER, Encoder, Family, FeatureError, Run, View, grid_meta, map_batches, pool_grid

POOLINGS = ("flatten", "mean_time", "mean_space")
EMA_OFFSET_STD = 1e-3  # how far the stand-in's EMA weights sit from its raw weights
DEFAULT_CH_MULT = (1, 2, 2, 4)


# These two mirror trajbench.modeling_magvit.MagvitConfig (a test checks they agree): the Snakefile checks the config
# with them while it parses, and importing torch there would slow every dry run by seconds.
def temporal_compression(architecture: dict) -> int:
    """Frames per latent frame: every level but the last downsamples time by 2 where its ch_mult is not 1."""
    ch_mult = list(architecture.get("ch_mult", DEFAULT_CH_MULT))
    return 2 ** sum(1 for m in ch_mult[:-1] if m != 1)


def spatial_compression(architecture: dict) -> int:
    return 2 ** (len(architecture.get("ch_mult", DEFAULT_CH_MULT)) - 1)


def z_channels(model_cfg: dict) -> int:
    return model_cfg.get("architecture", {}).get("z_channels", 18)


def check_config(name: str, model_cfg: dict, config: dict) -> str | None:
    """Frames and frame size that the tokenizer's compression can take."""
    ds, arch = config["dataset"], model_cfg.get("architecture", {})
    tc, sc = temporal_compression(arch), spatial_compression(arch)
    window = config["tokenize"].get("window") or ds["frames"]
    if (window - 1) % tc:
        return (
            f"dataset.frames={ds['frames']} (window {window}) does not fit models.{name} (MagVit): its temporal "
            f"compression is {tc}, so a window must have 1 + {tc}·k frames (e.g. {1 + tc * max(1, (window - 1) // tc)})"
        )
    if ds["frames"] % window and window != ds["frames"]:
        return f"tokenize.window={window} does not divide dataset.frames={ds['frames']}"
    if ds["size"] % sc:
        return f"dataset.size={ds['size']} must be a multiple of models.{name} (MagVit)'s spatial compression {sc}"
    return None


def extract(run: Run) -> tuple[Encoder, dict]:
    opts = run.options
    channels, pooling = opts["z_channels"], opts["pooling"]
    if not isinstance(channels, int) or not 1 <= channels <= 62:
        raise FeatureError(
            f"magvit options.z_channels must be an int in 1..62 (18 for the public checkpoint), got {channels!r}"
        )
    if pooling not in POOLINGS:
        raise FeatureError(f"magvit options.pooling must be one of {list(POOLINGS)}, got {pooling!r}")
    check_tokens(run.tokens, len(run.videos), "ordered")
    bins = opts["histogram_bins"]
    if opts["histogram"] and (not isinstance(bins, int) or bins < 1):
        raise FeatureError(f"magvit options.histogram_bins must be a positive int, got {bins!r}")

    def encode(view: View) -> tuple[np.ndarray, np.ndarray]:
        tokens = check_tokens(view.tokens, len(view.videos), view.control)

        def batch(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
            block = np.asarray(tokens[start:stop]).astype(np.int64)
            if block.min() < 0 or block.max() >= 2**channels:
                raise FeatureError(
                    f"magvit {view.control} tokens of clips {start}..{stop - 1} span {block.min()}..{block.max()}, "
                    f"outside 0..{2**channels - 1} for z_channels={channels}; set options.z_channels to the tokenizer's"
                )
            bits = unpack_bits(block, channels)
            grid = pool_grid(bits, run.grid_side)
            if pooling == "mean_time":
                bits = bits.mean(axis=1)
            elif pooling == "mean_space":
                bits = bits.mean(axis=(2, 3))
            parts = [bits.reshape(len(block), -1)]
            if opts["histogram"]:
                parts.append(token_histogram(block, bins))
            return np.concatenate(parts, axis=1), grid

        return map_batches(run, view, lambda start, stop: [batch(start, stop)])[0]

    meta = {
        # The tokenizer encodes every frame of the clip.
        "frames": list(range(run.videos.shape[1])),
        "token_grid": list(run.tokens.shape[1:]),
        "z_channels": channels,
        "bits": "channel c = +1 where bit c of the index is set else -1; channel 0 least significant",
        "pooling": pooling,
        "histogram_bins": bins if opts["histogram"] else 0,
        "grid": grid_meta((*run.tokens.shape[1:], channels), run.grid_side, "each token's ±1 bits, pooled in space"),
    }
    if opts["histogram"]:
        meta["histogram"] = "sklearn FeatureHasher (MurmurHash3 of the decimal index), token fractions, after bits"
    return encode, meta


def check_tokens(tokens: np.ndarray | None, clips: int, control: str) -> np.ndarray:
    """The tokenize stage's indices of one view's clips: integer (clips, T', H', W')."""
    name = "tokens" if control == "ordered" else f"tokens_{control}"
    if tokens is None:
        raise FeatureError(f"magvit features need `{name}` (the tokenize stage's indices of the {control} clips, "
                           "N x T' x H' x W'); rerun rule tokenize")
    if tokens.ndim != 4 or not np.issubdtype(tokens.dtype, np.integer) or len(tokens) != clips:
        raise FeatureError(
            f"magvit {name} must be integer (N={clips}, T', H', W'); got {tokens.dtype} {tokens.shape}"
        )
    return tokens


def unpack_bits(indices: np.ndarray, channels: int) -> np.ndarray:
    """Quantized latent (..., C) float32 from token indices: +1 where bit c is set, else -1."""
    bits = (np.asarray(indices, dtype=np.int64)[..., None] >> np.arange(channels)) & 1
    return (2 * bits - 1).astype(np.float32)


def token_histogram(indices: np.ndarray, bins: int) -> np.ndarray:
    """(N, bins) float32 fraction of each clip's tokens per hashed column (see the module docstring)."""
    from sklearn.feature_extraction import FeatureHasher

    rows = []
    for clip in np.asarray(indices).reshape(len(indices), -1):
        values, counts = np.unique(clip, return_counts=True)
        rows.append([(str(v), c / clip.size) for v, c in zip(values.tolist(), counts.tolist())])
    hasher = FeatureHasher(n_features=bins, input_type="pair", alternate_sign=False)
    return hasher.transform(rows).toarray().astype(np.float32)


def write_standin(folder: Path, architecture: dict, seed: int) -> Path:
    """A tiny MagVit checkpoint ``folder/standin.ckpt`` in the authors' layout.

    The raw weights are ``build_model(config, seed)``; the EMA block (what is loaded by default) is those weights
    plus a small seeded offset, as a trained EMA trails the raw weights, so loading the wrong set is detectable.
    """
    import torch

    from trajbench.checkpoint_magvit import save_checkpoint
    from trajbench.io import atomic_dir
    from trajbench.modeling_magvit import MagvitConfig, build_model

    model = build_model(MagvitConfig.from_dict(architecture), seed)
    raw = model.state_dict()
    generator = torch.Generator().manual_seed(seed)
    ema = {
        key: value + EMA_OFFSET_STD * torch.randn(value.shape, generator=generator) if value.is_floating_point()
        else value
        for key, value in raw.items()
    }  # fmt: skip
    with atomic_dir(folder) as scratch:
        save_checkpoint(scratch / FAMILY.standin_file, raw, ema)
    return Path(folder) / FAMILY.standin_file


FAMILY = Family(
    name="magvit",
    role=TOKENIZER,
    description="Open-MAGVIT2 video tokenizer, ±1 bits of its tokens",
    extract=extract,
    finetunable=True,
    options={"z_channels": None, "pooling": "flatten", "histogram": False, "histogram_bins": 1024},
    write_standin=write_standin,
    standin_file="standin.ckpt",
    check_config=check_config,
    derived_options=lambda model_cfg: {"z_channels": z_channels(model_cfg)},
)
