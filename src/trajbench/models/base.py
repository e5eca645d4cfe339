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
class Run:
    """One feature extraction: a model (a config entry) of a family, at one init, over a block of clips."""

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


@dataclass(frozen=True)
class Family:
    """Everything the workflow knows of one kind of model; a config entry names it with ``models.<name>.family``.

    ``role``: a *tokenizer* encodes clips to tokens and decodes them (reconstruction metrics apply, features come
    from its tokens); an *encoder* turns clips into features only. ``weights``: False for the baselines, which have
    a single init, "none". ``network``: runs a neural network on the device (a GPU job, split into
    ``features.shards``). ``extract(run) -> (features (N, D), meta)``. ``write_standin(folder, architecture, seed)``
    writes tiny weights in the real format for the demo and tests; ``standin_file`` names the file inside ``folder``
    when the weights are one file rather than a transformers folder. ``known_unused``: checkpoint tensor groups the
    hub repository holds beyond the network we run. ``min_transformers``: the release that introduced the family's
    model classes. ``check_config(name, model_cfg, config)`` returns an error message for values the schema
    cannot judge, or None. ``derived_options(model_cfg)``: options that follow from the model's config entry.
    """

    name: str
    role: str
    description: str
    extract: Callable[[Run], tuple[np.ndarray, dict]]
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


def map_batches(run: Run, fn: Callable[[int, int], np.ndarray]) -> np.ndarray:
    """``fn(start, stop)`` over the run's clips in batches, with progress in the job log; rows concatenated."""
    n = len(run.videos)
    progress = Progress(n, f"{run.model_name}/{run.init} features", run.logger)
    out = []
    for start in range(0, n, run.batch_size):
        stop = min(start + run.batch_size, n)
        out.append(np.asarray(fn(start, stop), dtype=np.float32))
        progress.update(stop - start)
    return np.concatenate(out, axis=0)


def even_indices(available: int, wanted: int) -> np.ndarray:
    """``wanted`` frame indices spread evenly over ``available`` frames, first and last included.

    Rounds half up; when ``wanted > available`` frames repeat (e.g. 3 of 2 -> [0, 1, 1]).
    """
    if available < 1 or wanted < 1:
        raise FeatureError(f"cannot sample {wanted} frames from {available}")
    return np.floor(np.linspace(0, available - 1, wanted) + 0.5).astype(np.int64)


def listing(keys: list[str], limit: int = 30) -> str:
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return "[" + ", ".join(keys[:limit]) + more + "]"
