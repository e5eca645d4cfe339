"""Linear, k-NN and attentive probes on frozen features, evaluated on repeated stratified K-fold splits shared by all
models (and by both controls, ordered and frame-shuffled clips).

Protocol per outer split: StandardScaler -> PCA to ``pca_dim`` (only when the feature dimension is larger) fitted on
the outer training fold, then LogisticRegression with C chosen by an inner stratified K-fold grid search on the
transformed training fold, and a k-NN classifier on the same transformed features. The scaler and PCA are label-free
and fitted once per outer split (not once per inner fold) to keep the cost at one SVD per split; the outer test fold
is never seen by any step, so the outer scores remain unbiased estimates. A chosen C at either end of the grid
(the best C may lie beyond it) is logged as a warning and recorded in the result's ``notes``.

The attentive probe (`trajbench.attentive`) reads the model's token grid instead of its feature vector; it is
trained on the same outer training folds and scored on the same test folds, so all probes pair by split.

Aggregates are means over splits with the corrected resampled t-interval (see :mod:`trajbench.metrics`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from typing import Any, NamedTuple, Sequence

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, f1_score, recall_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from trajbench import io
from trajbench.logs import Progress
from trajbench.metrics import mean_ci

logger = logging.getLogger(__name__)

LOGREG_MAX_ITER = 2000
# logreg and knn read the family's feature vector, attentive its token grid (`trajbench.attentive`).
PROBES = ("logreg", "knn", "attentive")
FOLD_COLUMNS = ["repeat", "fold", "probe", "accuracy", "macro_f1", "C", "n_train", "n_test"]


class Split(NamedTuple):
    repeat: int
    fold: int
    train_idx: np.ndarray
    test_idx: np.ndarray


def _seed_for(*keys: int) -> int:
    """A 32-bit seed derived from the user seed and a position (repeat, fold), independent of call order."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def _label_array(labels: Sequence[int] | np.ndarray, num_classes: int | None) -> tuple[np.ndarray, int]:
    """Validate integer class labels 0..K-1 (every class present); return them as int64 and K."""
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer class ids 0..K-1 (labels.csv column 'label'), got dtype {y.dtype}")
    y = y.astype(np.int64)
    k = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"labels must lie in [0, {k}), found values in [{y.min()}, {y.max()}]")
    counts = np.bincount(y, minlength=k)
    empty = np.flatnonzero(counts == 0).tolist()
    if empty:
        raise ValueError(f"class(es) {empty} have no members; every one of the {k} classes needs examples")
    return y, k


def make_splits(labels: Sequence[int] | np.ndarray, folds: int, repeats: int, seed: int,
                num_classes: int | None = None) -> list[Split]:
    """Outer splits: StratifiedKFold(shuffle=True) repeated ``repeats`` times, repeat r seeded from (seed, r).

    The result depends only on the labels and the parameters, so every model evaluated on the same dataset gets the
    same splits. ``num_classes`` (default: max label + 1) lets an absent last class be detected.
    """
    y, _ = _label_array(labels, num_classes)
    if folds < 2 or repeats < 1:
        raise ValueError(f"need folds >= 2 and repeats >= 1, got folds={folds}, repeats={repeats}")
    counts = np.bincount(y)
    small = {c: int(n) for c, n in enumerate(counts) if n < folds}
    if small:
        raise ValueError(f"class(es) with fewer members than folds={folds} (class: count): {small}; "
                         "lower probe folds or generate more videos per class")
    splits = []
    for repeat in range(repeats):
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=_seed_for(seed, repeat))
        for fold, (train, test) in enumerate(cv.split(np.zeros((y.size, 1)), y)):
            splits.append(Split(repeat, fold, train.astype(np.int64), test.astype(np.int64)))
    return splits


def splits_sha256(splits: Sequence[Split]) -> str:
    """Fingerprint of a split list; equal fingerprints mean two results were scored on the same splits."""
    digest = hashlib.sha256()
    for s in splits:
        digest.update(np.asarray([s.repeat, s.fold, len(s.train_idx), len(s.test_idx)], dtype="<i8").tobytes())
        digest.update(np.asarray(s.train_idx, dtype="<i8").tobytes())
        digest.update(np.asarray(s.test_idx, dtype="<i8").tobytes())
    return digest.hexdigest()


@dataclasses.dataclass
class ProbeResult:
    """Everything a probe run produced; plain Python types only, so JSON round-trips exactly.

    ``control``: the clips' frame order, "ordered" or "shuffled" (`trajbench.controls`). ``folds``: one dict per
    outer split (repeat, fold, n_train, n_test, pca_components, C, logreg accuracy / macro_f1 / per-class recall, knn
    accuracy / macro_f1, attentive accuracy / macro_f1 / params when the grid was probed).
    ``summary[probe][metric]`` = {mean, ci_low, ci_high} for each probe that ran;
    ``summary["logreg"]["recall"][class_name]`` likewise. ``confusion`` is summed over splits (rows = true class),
    ``confusion_normalized`` divides each row by its total (row i = recall profile of class i).
    """

    class_names: list[str]
    control: str
    n_samples: int
    n_features: int
    params: dict[str, Any]
    splits_sha256: str
    test_train_ratio: float
    chance: dict[str, float]
    folds: list[dict[str, Any]]
    summary: dict[str, Any]
    confusion: list[list[int]]
    confusion_normalized: list[list[float]]
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def chosen_C(self) -> list[float]:
        return [f["C"] for f in self.folds]

    def to_json(self, path: str | os.PathLike) -> None:
        io.write_json(path, dataclasses.asdict(self))

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "ProbeResult":
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        fields = {f.name for f in dataclasses.fields(cls)}
        if set(data) != fields:
            raise ValueError(f"{path} is not a ProbeResult JSON: keys {sorted(set(data) ^ fields)} missing/unexpected")
        return cls(**data)

    @property
    def probes(self) -> list[str]:
        """The probes that ran, in :data:`PROBES` order."""
        return [probe for probe in PROBES if probe in self.summary]

    def folds_frame(self) -> pd.DataFrame:
        """Per-split scores, one row per (repeat, fold, probe); C is empty but for logreg."""
        rows = []
        for f in self.folds:
            common = {"repeat": f["repeat"], "fold": f["fold"], "n_train": f["n_train"], "n_test": f["n_test"]}
            for probe in self.probes:
                rows.append({**common, "probe": probe, "accuracy": f[f"{probe}_accuracy"],
                             "macro_f1": f[f"{probe}_macro_f1"], "C": f["C"] if probe == "logreg" else np.nan})
        return pd.DataFrame(rows, columns=FOLD_COLUMNS)

    def folds_to_csv(self, path: str | os.PathLike) -> None:
        io.write_csv(path, self.folds_frame(), float_format=None)


def _check_features(features: np.ndarray, n_labels: int) -> np.ndarray:
    x = np.asarray(features)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D (N, D) array, got shape {x.shape}")
    if x.shape[0] != n_labels:
        raise ValueError(f"features have {x.shape[0]} rows but there are {n_labels} labels")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"features must be real numbers, got dtype {x.dtype}")
    bad = ~np.isfinite(x)
    if bad.any():
        raise ValueError(f"features contain NaN/inf in {int(bad.any(axis=1).sum())} of {x.shape[0]} rows and "
                         f"{int(bad.any(axis=0).sum())} of {x.shape[1]} columns; fix the feature extraction")
    return x


def _score_split(x: np.ndarray, y: np.ndarray, split: Split, k: int, Cs: list[float], inner_folds: int,
                 pca_dim: int, knn_k: int, seed: int) -> tuple[dict[str, Any], np.ndarray]:
    """Fit both probes on one outer split; return the split's record and its confusion matrix (logreg)."""
    split_seed = _seed_for(seed, split.repeat, split.fold)
    x_train, y_train = x[split.train_idx], y[split.train_idx]
    x_test, y_test = x[split.test_idx], y[split.test_idx]
    steps: list[Any] = [StandardScaler()]
    n_components = None
    if x.shape[1] > pca_dim:
        # PCA cannot keep more components than training samples.
        n_components = min(pca_dim, len(y_train))
        steps.append(PCA(n_components=n_components, svd_solver="randomized", random_state=split_seed))
    pre = make_pipeline(*steps)
    z_train, z_test = pre.fit_transform(x_train), pre.transform(x_test)

    search = GridSearchCV(
        LogisticRegression(max_iter=LOGREG_MAX_ITER), {"C": Cs}, scoring="accuracy",
        cv=StratifiedKFold(n_splits=inner_folds, shuffle=True, random_state=split_seed),
    )
    search.fit(z_train, y_train)
    pred = search.predict(z_test)
    knn = KNeighborsClassifier(n_neighbors=min(knn_k, len(y_train))).fit(z_train, y_train)
    pred_knn = knn.predict(z_test)

    classes = list(range(k))
    record = {
        "repeat": split.repeat, "fold": split.fold, "n_train": len(y_train), "n_test": len(y_test),
        "pca_components": n_components, "C": float(search.best_params_["C"]),
        "logreg_accuracy": float(np.mean(pred == y_test)),
        "logreg_macro_f1": float(f1_score(y_test, pred, labels=classes, average="macro", zero_division=0)),
        "logreg_recall": [float(r) for r in recall_score(y_test, pred, labels=classes, average=None,
                                                         zero_division=0)],
        "knn_accuracy": float(np.mean(pred_knn == y_test)),
        "knn_macro_f1": float(f1_score(y_test, pred_knn, labels=classes, average="macro", zero_division=0)),
    }
    return record, confusion_matrix(y_test, pred, labels=classes)


def _ci_dict(values: Sequence[float], ratio: float) -> dict[str, float]:
    mean, low, high = mean_ci(values, test_train_ratio=ratio)
    return {"mean": mean, "ci_low": low, "ci_high": high}


def run_probe(features: np.ndarray, labels: Sequence[int] | np.ndarray, splits: Sequence[Split], Cs: Sequence[float],
              inner_folds: int, pca_dim: int, knn_k: int, seed: int,
              class_names: Sequence[str] | None = None, control: str = "ordered", grids: np.ndarray | None = None,
              attentive_config: Any = None, device: str = "cpu") -> ProbeResult:
    """Score a logistic-regression probe and a k-NN probe on every split (module docstring for the protocol), and
    the attentive probe on ``grids`` (N, T', S, C) when given (``attentive_config``: an
    `trajbench.attentive.AttentiveConfig`; ``device``: where it trains).

    ``labels`` are integer class ids 0..K-1 (labels.csv column ``label``), ``class_names[i]`` names class i
    (default: the ids as strings). Cs are tried in ascending order, so an inner-CV tie picks the smaller C (stronger
    regularization). Identical inputs give identical results on the CPU (all randomness is seeded per split).
    """
    y, k = _label_array(labels, None if class_names is None else len(class_names))
    x = _check_features(features, y.size)
    names = [str(c) for c in (range(k) if class_names is None else class_names)]
    # Splits may come back from a file as plain tuples/lists.
    splits = [Split(int(r), int(f), np.asarray(tr, dtype=np.int64), np.asarray(te, dtype=np.int64))
              for r, f, tr, te in splits]
    if len(splits) < 2:
        raise ValueError(f"need at least 2 splits for a confidence interval, got {len(splits)}")
    for s in splits:
        if max(s.train_idx.max(), s.test_idx.max()) >= y.size or np.intersect1d(s.train_idx, s.test_idx).size:
            raise ValueError(f"split (repeat {s.repeat}, fold {s.fold}) does not fit {y.size} samples or its "
                             "train and test sets overlap; were the splits made from these labels?")
    if inner_folds < 2 or pca_dim < 1 or knn_k < 1 or not Cs:
        raise ValueError(f"need inner_folds >= 2, pca_dim >= 1, knn_k >= 1 and at least one C; got inner_folds="
                         f"{inner_folds}, pca_dim={pca_dim}, knn_k={knn_k}, Cs={list(Cs)}")
    Cs_sorted = sorted(float(c) for c in Cs)
    if grids is not None:
        from trajbench import attentive

        if grids.ndim != 4 or len(grids) != y.size:
            raise ValueError(f"token grids must be (N={y.size}, T', S, C), got shape {grids.shape}")
        if attentive_config is None:
            raise ValueError("grids given without an attentive_config (probe.attentive in the config)")

    records, confusion = [], np.zeros((k, k), dtype=np.int64)
    progress = Progress(len(splits), f"probe ({control})", logger, unit="splits")
    for split in splits:
        record, cm = _score_split(x, y, split, k, Cs_sorted, inner_folds, pca_dim, knn_k, seed)
        if grids is not None:
            scores = attentive.score_split(grids, y, split.train_idx, split.test_idx, k, attentive_config,
                                           seed=_seed_for(seed, split.repeat, split.fold), device=device,
                                           inner_folds=inner_folds)
            record.update(attentive_accuracy=scores["accuracy"], attentive_macro_f1=scores["macro_f1"],
                          attentive_params=scores["params"])
        records.append(record)
        confusion += cm
        progress.update(1)
    notes = _edge_notes([r["C"] for r in records], Cs_sorted)

    ratio = float(np.mean([r["n_test"] / r["n_train"] for r in records]))
    recall = np.array([r["logreg_recall"] for r in records])
    summary = {
        probe: {m: _ci_dict([r[f"{probe}_{m}"] for r in records], ratio) for m in ("accuracy", "macro_f1")}
        for probe in PROBES
        if f"{probe}_accuracy" in records[0]
    }
    summary["logreg"]["recall"] = {name: _ci_dict(recall[:, i], ratio) for i, name in enumerate(names)}
    row_totals = confusion.sum(axis=1, keepdims=True)
    return ProbeResult(
        class_names=names,
        control=control,
        n_samples=int(y.size),
        n_features=int(x.shape[1]),
        params={"Cs": Cs_sorted, "inner_folds": int(inner_folds), "pca_dim": int(pca_dim), "knn_k": int(knn_k),
                "seed": int(seed),
                **({"attentive": attentive_config.to_dict(), "device": str(device)} if grids is not None
                   else {})},
        splits_sha256=splits_sha256(splits),
        test_train_ratio=ratio,
        chance={"uniform": 1.0 / k, "majority": float(np.bincount(y).max() / y.size)},
        folds=records,
        summary=summary,
        confusion=confusion.tolist(),
        confusion_normalized=(confusion / np.maximum(row_totals, 1)).tolist(),
        notes=notes,
    )


def _edge_notes(chosen: list[float], Cs: list[float]) -> list[str]:
    """A warning when inner CV picked the smallest or largest C of the grid: the best C may lie beyond it."""
    if len(Cs) < 2:
        return []
    at_edge = sum(c in (Cs[0], Cs[-1]) for c in chosen)
    if not at_edge:
        return []
    note = (f"logreg C at the edge of the grid [{Cs[0]:g}, {Cs[-1]:g}] in {at_edge} of {len(chosen)} splits; the "
            "best C may lie outside it: widen probe.Cs")
    logger.warning(note)
    return [note]
