"""What every model family shares: its description (`Family`), the state of one extraction (`Run`) and the batching.

A family module (``trajbench.models.<family>``) defines one ``FAMILY``; `trajbench.models.registry` collects them.
This module and the family modules import torch and transformers only inside functions, so the Snakefile can read
the registry while it parses, without the seconds a torch import costs every dry run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import pandas as pd

from trajbench.logs import Progress

if TYPE_CHECKING:
    import torch

TOKENIZER, ENCODER = "tokenizer", "encoder"


class FeatureError(ValueError):
    """Bad inputs, options or checkpoints for feature extraction; the message says what to do."""


@dataclass
class View:
    """The clips one feature pass reads: in their own frame order ("ordered") or with each clip's frames permuted
    ("shuffled", `trajbench.controls`). ``videos`` (N, T, H, W, 3) uint8 is read by slices (an array, a memmap or a
    `trajbench.controls.ShuffledVideos`); ``labels`` hold the per-frame ground truth in the view's frame order;
    ``tokens`` a tokenizer's indices of these clips (N, T', H', W')."""

    control: str
    videos: Any
    labels: pd.DataFrame
    tokens: np.ndarray | None = None


# What a family's ``extract`` returns first: features of one view, ``(features (N, D) float32, grid (N, T', S, C))``.
# A `Batched` encoder is one too, and lets the inits of a model share each batch's preprocessing (`encode_together`).
Encoder = Callable[[View], tuple[np.ndarray, np.ndarray]]


@dataclass
class Run:
    """One feature extraction: a model (a config entry) of a family, at one init, over a block of clips.

    ``videos``, ``labels`` and ``tokens`` are the ordered clips (their shapes and columns are what a family checks
    before loading); each view is then encoded by the `Encoder` the family returns. ``grid_side``: the token grid's
    largest spatial side (`pool_grid`)."""

    family: Family
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
    grid_side: int = 4


@dataclass(frozen=True)
class Family:
    """Everything the workflow knows of one kind of model; a config entry names it with ``models.<name>.family``.

    ``role``: a *tokenizer* encodes clips to tokens and decodes them (reconstruction metrics apply, features come
    from its tokens); an *encoder* turns clips into features only. ``weights``: False for the baselines, which have
    a single init, "none". ``network``: runs a neural network on the device (a GPU job, split into
    ``features.shards``). ``extract(run) -> (encoder, meta)`` loads what the family needs once and returns an
    `Encoder` that is called for each `View` of the clips. ``write_standin(folder, architecture, seed)``
    writes tiny weights in the real format for the demo and tests; ``standin_file`` names the file inside ``folder``
    when the weights are one file rather than a transformers folder. ``known_unused``: checkpoint tensor groups the
    hub repository holds beyond the network we run. ``min_transformers``: the release that introduced the family's
    model classes. ``check_config(name, model_cfg, config)`` returns an error message for values the schema
    cannot judge, or None. ``derived_options(model_cfg)``: options that follow from the model's config entry.
    """

    name: str
    role: str
    description: str
    extract: Callable[[Run], tuple[Encoder, dict]]
    weights: bool = True
    network: bool = False
    finetunable: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    known_unused: tuple[str, ...] = ()
    min_transformers: str | None = None
    write_standin: Callable[[Path, dict, int], Path] | None = None
    standin_file: str | None = None
    check_config: Callable[[str, dict, dict], str | None] | None = None
    derived_options: Callable[[dict], dict] | None = None

    @property
    def inits(self) -> tuple[str, ...]:
        """Every init the family can run: "finetuned" runs only where the config enables fine-tuning."""
        if not self.weights:
            return ("none",)
        return ("pretrained", "random", "finetuned") if self.finetunable else ("pretrained", "random")

    def resolve_options(self, options: Mapping[str, Any] | None) -> dict:
        """The family's defaults overlaid with ``options``; unknown names are an error."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise FeatureError(
                f"unknown option(s) {unknown} for family {self.name}; known: {sorted(self.options) or 'none'}"
            )
        return {**self.options, **options}


def map_batches(
    run: Run, view: View, fn: Callable[[int, int], list[tuple[np.ndarray, np.ndarray]]], label: str | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``fn(start, stop) -> [(features, grid), ...]`` (one pair per output, e.g. per init) over the view's clips in
    batches, with progress in the job log (named by ``label``, by default the run's init); per output the rows
    concatenated, features as float32 and grids as float16."""
    n = len(view.videos)
    progress = Progress(n, f"{run.model_name}/{label or run.init} {view.control} features", run.logger)
    features: list[list[np.ndarray]] = []
    grids: list[list[np.ndarray]] = []
    for start in range(0, n, run.batch_size):
        stop = min(start + run.batch_size, n)
        pairs = fn(start, stop)
        if not features:
            features, grids = [[] for _ in pairs], [[] for _ in pairs]
        for (feats, grid), feature_rows, grid_rows in zip(pairs, features, grids, strict=True):
            feature_rows.append(np.asarray(feats, dtype=np.float32))
            grid_rows.append(np.asarray(grid, dtype=np.float16))
        progress.update(stop - start)
    return [(np.concatenate(f, axis=0), np.concatenate(g, axis=0)) for f, g in zip(features, grids)]


@dataclass(frozen=True)
class Batched:
    """An `Encoder` in two steps, so that the inits of one model can share the preprocessing of each batch
    (`encode_together`): ``prepare(clips uint8 (B, T, H, W, 3))`` gives the network's input (on the device; it
    depends on the model's preprocessing settings only, never on its weights), ``forward(input)`` gives ``(features
    (B, D), grid (B, T', S, C))`` as arrays."""

    run: Run
    prepare: Callable[[np.ndarray], Any]
    forward: Callable[[Any], tuple[np.ndarray, np.ndarray]]

    def __call__(self, view: View) -> tuple[np.ndarray, np.ndarray]:
        return encode_together([self], view)[0]


def encode_together(encoders: list[Batched], view: View) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each encoder's ``(features, grid)`` of the view: every batch is prepared once, by the first encoder, and run
    through all of them. The encoders must be of one model (the same preprocessing), e.g. its pretrained and random
    inits."""
    first = encoders[0]

    def batch(start: int, stop: int) -> list[tuple[np.ndarray, np.ndarray]]:
        inputs = first.prepare(np.asarray(view.videos[start:stop]))
        return [encoder.forward(inputs) for encoder in encoders]

    return map_batches(first.run, view, batch, label="+".join(encoder.run.init for encoder in encoders))


def pool_grid(tokens, side: int) -> np.ndarray:
    """A token grid (B, T, H, W, C) (torch tensor or array) average-pooled in space to at most ``side`` x ``side``
    (adaptive pooling, as torch's ``adaptive_avg_pool2d``), as float16 (B, T, S, C) with S in row-major order."""
    import torch

    grid = torch.as_tensor(np.asarray(tokens) if not isinstance(tokens, torch.Tensor) else tokens).float()
    b, t, h, w, c = grid.shape
    out_h, out_w = min(h, side), min(w, side)
    if (out_h, out_w) != (h, w):
        planes = grid.permute(0, 1, 4, 2, 3).reshape(b * t, c, h, w)
        planes = torch.nn.functional.adaptive_avg_pool2d(planes, (out_h, out_w))
        grid = planes.reshape(b, t, c, out_h, out_w).permute(0, 1, 3, 4, 2)
    return grid.reshape(b, t, out_h * out_w, c).cpu().numpy().astype(np.float16)


def grid_meta(tokens: tuple[int, int, int, int], side: int, holds: str) -> dict:
    """``meta["grid"]``: the stored shape (T', S, C) of a token grid (T', H', W', C) after `pool_grid` to ``side``,
    the grid before pooling, and what one token holds."""
    t, h, w, c = (int(n) for n in tokens)
    rows, cols = min(h, side), min(w, side)
    return {"shape": [t, rows * cols, c], "tokens": [t, h, w, c], "pooled_to": [rows, cols], "holds": holds}


def listing(keys: list[str], limit: int = 30) -> str:
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return "[" + ", ".join(keys[:limit]) + more + "]"
