"""Attentive probe: one cross-attention pooling layer with a learned query over a model's token grid, then linear.

The frozen-feature protocol of V-JEPA's evaluation and VideoGLUE's attention pooler, cut to its core. A token grid
(N, T, S, C) (time x space x channels, `trajbench.models.base.pool_grid`) is scored per outer split:

1. Label-free preprocessing fitted on the outer training clips' tokens only: per-channel standardisation, then PCA to
   at most ``dim`` channels (skipped when C <= dim), as the linear probe does with its feature vectors
   (`trajbench.probe`).
2. The model: tokens -> linear to ``width`` -> + a learned time embedding (T, width) + a learned space embedding
   (S, width) -> one multi-head cross-attention with one learned query -> LayerNorm -> linear classifier. Attention
   pooling is a weighted mean, blind to where a token sits; the embeddings are what let it read order and layout.
3. AdamW, cross-entropy, full batch by default, a fixed number of epochs with the rate cosine-decayed to 0 (a few
   dozen steps at a high rate, so that the demo's hundreds of trainings take seconds on a CPU). The weight decay is
   chosen from a small grid on ONE inner stratified holdout of the outer training fold (the first fold of a seeded
   ``StratifiedKFold(inner_folds)``, the linear probe's first inner fold at the same seed), ties going to the first,
   most regularised candidate; the model is then retrained on the whole outer training fold and predicts the outer
   test fold, which no step has seen.

Every training is seeded from (split seed, candidate) inside `torch.random.fork_rng`, so the caller's random state is
untouched; on the CPU it runs in float32 under ``torch.use_deterministic_algorithms(True)`` and gives the same bytes
on every rerun.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

# Std of the initial query and time/space embeddings. At ViT's 0.02 they are ~30x smaller than the projected tokens
# (std ~0.6), so position barely steers the attention within a few dozen steps; at the tokens' scale it does. On the
# order task of tests/test_attentive.py (50 training clips, 30 seeds, the defaults) 29/30 trainings reach >= 0.9
# test accuracy at 0.5, 8/30 at 0.02.
EMBEDDING_INIT_STD = 0.5


@dataclass(frozen=True)
class AttentiveConfig:
    """Settings of the attentive probe (config block ``probe.attentive``; defaults sized for the CPU demo)."""

    dim: int = 64  # PCA target: channels the token grid is reduced to before the probe
    width: int = 32  # d: the tokens' width inside the probe (projection, embeddings, attention)
    heads: int = 4  # attention heads; must divide width
    epochs: int = 50  # full passes over the training clips
    learning_rate: float = 3e-2  # AdamW peak rate, cosine-decayed to 0
    weight_decay: tuple[float, ...] = (1e-1, 1e-3)  # the grid chosen on the inner holdout, tried largest first
    batch_size: int | None = None  # clips per step; None = the whole training fold in one step
    time_embedding: bool = True  # false only to show that without it the probe is blind to frame order

    def __post_init__(self) -> None:
        # Lists from YAML become tuples, so the config stays hashable and the grid ordered as tried.
        object.__setattr__(self, "weight_decay", tuple(self.weight_decay) if isinstance(
            self.weight_decay, (list, tuple)) else self.weight_decay)
        problems = []
        for name in ("dim", "width", "heads", "epochs"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                problems.append(f"{name}={value!r} must be an integer >= 1")
        if not _is_number(self.learning_rate) or self.learning_rate <= 0:
            problems.append(f"learning_rate={self.learning_rate!r} must be a number > 0 (YAML reads 1e-2 as text: "
                            "write 1.0e-2)")
        if not isinstance(self.weight_decay, tuple) or not self.weight_decay or not all(
                _is_number(w) and w >= 0 for w in self.weight_decay):
            problems.append(f"weight_decay={self.weight_decay!r} must be a non-empty list of numbers >= 0")
        elif len(set(self.weight_decay)) != len(self.weight_decay):
            problems.append(f"weight_decay={list(self.weight_decay)} lists a value twice")
        if self.batch_size is not None and (not _is_int(self.batch_size) or self.batch_size < 1):
            problems.append(f"batch_size={self.batch_size!r} must be an integer >= 1 or null (full batch)")
        if not isinstance(self.time_embedding, bool):
            problems.append(f"time_embedding={self.time_embedding!r} must be true or false")
        if not problems and self.width % self.heads:
            problems.append(f"heads={self.heads} must divide width={self.width}")
        if problems:
            raise ValueError("invalid probe.attentive config: " + "; ".join(problems))

    @property
    def candidates(self) -> list[float]:
        """The weight decays in the order tried: most regularised first, so that a tie keeps it."""
        return sorted((float(w) for w in self.weight_decay), reverse=True)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AttentiveConfig:
        """Build from the ``probe.attentive`` block; missing keys take the defaults, unknown keys are an error."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"invalid probe.attentive config: unknown keys {unknown}; known keys are {known}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["weight_decay"] = list(self.weight_decay)
        return values


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value)


class AttentivePooler(nn.Module):
    """Token grid (B, T, S, C) -> class logits (B, K) through one learned query's cross-attention.

    The parameters are those of the textbook layers (``project``, the embeddings, ``attention``: an
    `nn.MultiheadAttention`, ``norm``, ``classify``), and :meth:`forward` computes exactly
    ``attention(query, tokens, tokens)`` over ``tokens = project(grid) + time + space``, but in an order that never
    materialises the (B, T*S, width) tokens: with a single query, each head's attention logits are linear in the
    input channels, and the softmax-weighted mean commutes with the linear maps (the weights sum to 1). That makes a
    training step about four times cheaper on the CPU (benchmarks/attentive_probe.py); tests check the equality.
    """

    def __init__(self, channels: int, frames: int, positions: int, num_classes: int, config: AttentiveConfig):
        super().__init__()
        width = config.width
        self.project = nn.Linear(channels, width)
        self.time = nn.Parameter(torch.empty(frames, 1, width)) if config.time_embedding else None
        self.space = nn.Parameter(torch.empty(positions, width))
        self.query = nn.Parameter(torch.empty(1, 1, width))
        self.attention = nn.MultiheadAttention(width, config.heads, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.classify = nn.Linear(width, num_classes)
        for parameter in (self.time, self.space, self.query):
            if parameter is not None:
                nn.init.trunc_normal_(parameter, std=EMBEDDING_INIT_STD)

    def positions(self, frames: int, positions: int) -> torch.Tensor:
        """(T*S, width): each token's time + space embedding, time-major like the grid."""
        embedding = self.space.expand(frames, positions, -1)
        if self.time is not None:
            embedding = embedding + self.time
        return embedding.reshape(frames * positions, -1)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        b, t, s, c = grid.shape
        x = grid.reshape(b, t * s, c)
        heads, width = self.attention.num_heads, self.attention.embed_dim
        w_q, w_k, w_v = self.attention.in_proj_weight.reshape(3, heads, width // heads, width)
        b_q, _, b_v = self.attention.in_proj_bias.reshape(3, heads, width // heads)
        # Per head, logit_i = q . (W_k h_i + b_k) / sqrt(d_head) = h_i . u + const; the constant cancels in softmax.
        q = torch.einsum("hjd,d->hj", w_q, self.query.reshape(width)) + b_q
        u = torch.einsum("hjd,hj->dh", w_k, q) / math.sqrt(width // heads)
        # h_i = W_p x_i + b_p + pos_i, so h_i . u = x_i . (W_p^T u) + (b_p + pos_i) . u.
        pos = self.positions(t, s) + self.project.bias
        # Heads-first (B, heads, T*S): the CPU's matrix kernels are several times faster in this orientation.
        logits = torch.bmm((u.T @ self.project.weight).expand(b, -1, -1), x.transpose(1, 2)) + (pos @ u).T
        weights = logits.softmax(dim=-1)
        # sum_i a_i h_i = W_p (sum_i a_i x_i) + sum_i a_i (b_p + pos_i), then each head's value projection.
        pooled = (weights @ x) @ self.project.weight.T + weights @ pos  # (B, heads, width)
        values = torch.einsum("bhd,hjd->bhj", pooled, w_v) + b_v
        out = self.attention.out_proj(values.reshape(b, width))
        return self.classify(self.norm(out))


def _derive_seed(*keys: int) -> int:
    """A 32-bit seed from a tuple of integers, independent of call order."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block with torch's generators at ``seed`` and, on the CPU, deterministic algorithms; restore both."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        # On CUDA deterministic kernels need CUBLAS_WORKSPACE_CONFIG set before start-up; the GPU run is not bitwise.
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def _train(x: torch.Tensor, y: torch.Tensor, num_classes: int, config: AttentiveConfig, weight_decay: float,
           seed: int) -> AttentivePooler:
    """Fit a fresh probe on (x, y); the init and the batch order depend on ``seed`` only."""
    with _seeded(seed, x.device):
        model = AttentivePooler(x.shape[3], x.shape[1], x.shape[2], num_classes, config).to(x.device)
        # No decay on biases and norms (as V-JEPA's and most transformer recipes): only matrices and embeddings.
        decay = [p for p in model.parameters() if p.ndim >= 2]
        no_decay = [p for p in model.parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=config.learning_rate,
                                      fused=True)
        n = x.shape[0]
        batch = n if config.batch_size is None else min(config.batch_size, n)
        order = torch.Generator().manual_seed(seed)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * -(-n // batch))
        for _ in range(config.epochs):
            # Full batch: no per-step copy of the grid.
            batches = [(x, y)] if batch == n else [
                (x[rows], y[rows]) for rows in torch.randperm(n, generator=order).to(x.device).split(batch)]
            for x_batch, y_batch in batches:
                loss = F.cross_entropy(model(x_batch), y_batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
    return model.eval()


@torch.no_grad()
def _predict(model: AttentivePooler, x: torch.Tensor) -> np.ndarray:
    return model(x).argmax(dim=1).cpu().numpy()


def _check_grids(grids: np.ndarray, y: np.ndarray) -> None:
    if grids.ndim != 4:
        raise ValueError(f"token grids must be a 4-D (N, T, S, C) array, got shape {grids.shape}")
    if grids.shape[0] != y.size:
        raise ValueError(f"token grids have {grids.shape[0]} clips but there are {y.size} labels")
    if not np.issubdtype(grids.dtype, np.floating):
        raise ValueError(f"token grids must be floats (float16 as the extractors store them), got {grids.dtype}")


def _preprocess(grids: np.ndarray, train_idx: np.ndarray, test_idx: np.ndarray,
                dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Standardise each channel and reduce to at most ``dim`` channels by PCA, fitted on the training tokens."""
    _, t, s, c = grids.shape
    train = grids[train_idx].astype(np.float32).reshape(-1, c)
    test = grids[test_idx].astype(np.float32).reshape(-1, c)
    for name, tokens in (("training", train), ("test", test)):
        bad = ~np.isfinite(tokens)
        if bad.any():
            raise ValueError(f"token grids contain NaN/inf in {int(bad.any(axis=1).sum())} {name} tokens "
                             f"({int(bad.any(axis=0).sum())} of {c} channels); fix the feature extraction (float16 "
                             "overflows above 65504)")
    steps: list[Any] = [StandardScaler()]
    if c > dim:
        # Many more tokens than channels: the exact eigendecomposition of the C x C covariance is one pass over the
        # tokens and needs no seed (3x faster than the randomized SVD at the real run's 66k x 1024). PCA cannot keep
        # more components than training tokens.
        steps.append(PCA(n_components=min(dim, train.shape[0]), svd_solver="covariance_eigh"))
    pre = make_pipeline(*steps)
    z_train = pre.fit_transform(train).astype(np.float32)
    z_test = pre.transform(test).astype(np.float32)
    return z_train.reshape(len(train_idx), t, s, -1), z_test.reshape(len(test_idx), t, s, -1)


def score_split(grids: np.ndarray, y: Sequence[int] | np.ndarray, train_idx: np.ndarray, test_idx: np.ndarray,
                num_classes: int, config: AttentiveConfig, seed: int, device: str | torch.device = "cpu",
                inner_folds: int = 3) -> dict[str, Any]:
    """Fit the attentive probe on one outer split's training clips and score it on its test clips.

    ``grids`` (N, T, S, C) float, ``y`` integer labels 0..num_classes-1 of all N clips, ``train_idx``/``test_idx``
    the outer split, ``seed`` the split's own seed (e.g. ``trajbench.probe._seed_for(seed, repeat, fold)``): it seeds
    the inner holdout and every training. ``inner_folds``: the holdout is 1/inner_folds of the training fold.
    Returns {"accuracy", "macro_f1", "params": {"weight_decay", "inner_accuracy": one per candidate tried},
    "predictions": the test clips' predicted classes, in ``test_idx`` order}.
    """
    grids = np.asarray(grids)
    y = np.asarray(y, dtype=np.int64)
    train_idx, test_idx = np.asarray(train_idx, dtype=np.int64), np.asarray(test_idx, dtype=np.int64)
    _check_grids(grids, y)
    if inner_folds < 2:
        raise ValueError(f"need inner_folds >= 2 for the attentive probe's holdout, got {inner_folds}")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), found values in [{y.min()}, {y.max()}]")
    counts = np.bincount(y[train_idx], minlength=num_classes)
    if counts.min() < inner_folds:
        raise ValueError(f"the attentive probe's inner holdout needs >= inner_folds={inner_folds} training clips per "
                         f"class, got counts {counts.tolist()}; lower probe.inner_folds or probe.folds")
    device = torch.device(device)

    z_train, z_test = _preprocess(grids, train_idx, test_idx, config.dim)
    x_train = torch.from_numpy(z_train).to(device)
    y_train = torch.from_numpy(y[train_idx]).to(device)
    fit, holdout = next(StratifiedKFold(n_splits=inner_folds, shuffle=True, random_state=seed).split(z_train[:, 0, 0],
                                                                                                     y[train_idx]))
    fit_t, holdout_t = torch.from_numpy(fit).to(device), torch.from_numpy(holdout).to(device)

    inner_accuracy = []
    for candidate, weight_decay in enumerate(config.candidates):
        model = _train(x_train[fit_t], y_train[fit_t], num_classes, config, weight_decay, _derive_seed(seed, candidate))
        inner_accuracy.append(float(np.mean(_predict(model, x_train[holdout_t]) == y[train_idx][holdout])))
    best = int(np.argmax(inner_accuracy))  # the first maximum: the most regularised of the tied candidates
    model = _train(x_train, y_train, num_classes, config, config.candidates[best], _derive_seed(seed, best))
    pred = _predict(model, torch.from_numpy(z_test).to(device))
    y_test = y[test_idx]
    return {
        "accuracy": float(np.mean(pred == y_test)),
        "macro_f1": float(f1_score(y_test, pred, labels=list(range(num_classes)), average="macro", zero_division=0)),
        "params": {"weight_decay": config.candidates[best], "inner_accuracy": inner_accuracy},
        "predictions": [int(p) for p in pred],
    }
