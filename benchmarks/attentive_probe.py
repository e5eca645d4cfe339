"""Seconds per `trajbench.attentive.score_split` on one torch thread, at the demo's size and at the real run's.

Random float16 grids of the size each run stores (demo: 90 clips, 9 frames x 16 positions x 64 channels = the PCA
target, 3 outer folds; real: 576 clips, 9 x 16 x 1024 channels reduced to ``dim``, 5 outer folds), 9 classes, the
default `AttentiveConfig`. Each case times whole outer splits (preprocessing, one training per weight-decay candidate
on the inner fit set, the retraining, the prediction) and, separately, the preprocessing (standardisation + PCA) and
one training step of the fast forward against the textbook ``nn.MultiheadAttention`` over the materialised tokens.
Not a test: timings depend on the machine and on what else runs on it (the table reports the minimum of
``--repeats`` runs).

    PYTHONPATH=src python benchmarks/attentive_probe.py [--repeats 3] [--skip-real]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from trajbench import attentive, io, probe
from trajbench.attentive import AttentiveConfig, AttentivePooler

CASES = {  # name: (clips, frames, positions, channels, outer folds)
    "demo": (90, 9, 16, 64, 3),
    "real": (576, 9, 16, 1024, 5),
}
CLASSES = 9


def textbook_logits(model: AttentivePooler, grid: torch.Tensor) -> torch.Tensor:
    """The same function as ``model(grid)``, computed the textbook way (tests/test_attentive.py checks equality)."""
    b, t, s, _ = grid.shape
    tokens = (model.project(grid) + model.space + model.time).reshape(b, t * s, -1)
    pooled, _ = model.attention(model.query.expand(b, -1, -1), tokens, tokens, need_weights=False)
    return model.classify(model.norm(pooled[:, 0]))


def step_seconds(forward, model: AttentivePooler, x: torch.Tensor, y: torch.Tensor, steps: int = 20) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    best = float("inf")
    for _ in range(steps):
        start = time.perf_counter()
        loss = F.cross_entropy(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        best = min(best, time.perf_counter() - start)
    return best


def measure(name: str, repeats: int, config: AttentiveConfig) -> list:
    clips, frames, positions, channels, folds = CASES[name]
    rng = np.random.default_rng(0)
    grids = rng.standard_normal((clips, frames, positions, channels), dtype=np.float32).astype(np.float16)
    y = np.arange(clips) % CLASSES
    split = probe.make_splits(y, folds=folds, repeats=1, seed=0)[0]
    seconds = []
    for _ in range(repeats + 1):  # the first call pays torch's one-time set-up; dropped below
        start = time.perf_counter()
        attentive.score_split(grids, y, split.train_idx, split.test_idx, CLASSES, config, seed=0)
        seconds.append(time.perf_counter() - start)
    start = time.perf_counter()
    z_train, _ = attentive._preprocess(grids, split.train_idx, split.test_idx, config.dim)
    preprocess = time.perf_counter() - start
    x, labels = torch.from_numpy(z_train), torch.from_numpy(y[split.train_idx])
    torch.manual_seed(0)
    model = AttentivePooler(x.shape[3], frames, positions, CLASSES, config)
    fast = step_seconds(model, model, x, labels)
    textbook = step_seconds(lambda grid: textbook_logits(model, grid), model, x, labels)
    trainings = len(config.candidates) + 1
    return [name, clips, len(split.train_idx), f"{frames}x{positions}x{channels}", x.shape[3], trainings,
            config.epochs, f"{min(seconds[1:]):.3f}", f"{preprocess:.3f}", f"{fast * 1e3:.2f}", f"{textbook * 1e3:.2f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-real", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = AttentiveConfig()
    rows = [measure(name, args.repeats if name == "demo" else 1, config)
            for name in CASES if not (args.skip_real and name == "real")]
    header = ["case", "clips", "train clips", "T x S x C", "dim", "trainings", "epochs", "s / split",
              "preprocess s", "step ms (fast)", "step ms (textbook)"]
    print(f"torch {torch.__version__}, 1 thread, {config}")
    print(io.markdown_table(header, rows, align=["left"] + ["right"] * (len(header) - 1)))


if __name__ == "__main__":
    main()
