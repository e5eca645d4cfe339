"""Hand-made ProbeResults for the comparison, figure and summary tests: only the fields those read matter."""

import numpy as np

from trajbench.metrics import mean_ci
from trajbench.probe import ProbeResult

NAMES = ["linear", "circle", "zigzag"]
N_FOLDS = 4  # 2 repeats x 2 folds
RATIO = 20 / 80  # n_test / n_train of every split


def probe_result(logreg, attentive=None, knn=None, control="ordered", sha="splits-A", notes=()):
    """A result whose splits score ``logreg`` / ``attentive`` / ``knn`` accuracy: one number for every split or one
    per split (4). kNN defaults to logreg - 0.1, macro-F1 is accuracy - 0.02; attentive None: the probe did not run.
    The summary holds the corrected intervals of those per-split numbers, as trajbench.probe computes them."""
    knn = np.asarray(logreg, dtype=float) - 0.1 if knn is None else knn
    scores = {p: np.broadcast_to(np.asarray(v, dtype=float), (N_FOLDS,))
              for p, v in (("logreg", logreg), ("knn", knn), ("attentive", attentive)) if v is not None}
    folds = []
    for f in range(N_FOLDS):
        record = {"repeat": f // 2, "fold": f % 2, "n_train": 80, "n_test": 20, "pca_components": None, "C": 1.0,
                  "logreg_recall": [float(scores["logreg"][f])] * 3}
        for probe, acc in scores.items():
            record.update({f"{probe}_accuracy": float(acc[f]), f"{probe}_macro_f1": float(acc[f]) - 0.02})
        folds.append(record)
    summary = {probe: {metric: dict(zip(("mean", "ci_low", "ci_high"), mean_ci(acc - shift, test_train_ratio=RATIO)))
                       for metric, shift in (("accuracy", 0.0), ("macro_f1", 0.02))}
               for probe, acc in scores.items()}
    acc = float(scores["logreg"].mean())
    cm = np.full((3, 3), (1 - acc) / 2) + np.eye(3) * (acc - (1 - acc) / 2)
    return ProbeResult(
        class_names=NAMES, control=control, n_samples=100, n_features=10, params={}, splits_sha256=sha,
        test_train_ratio=RATIO, chance={"uniform": 1 / 3, "majority": 0.4}, folds=folds, summary=summary,
        confusion=(cm * 20).round().astype(int).tolist(), confusion_normalized=cm.tolist(), notes=list(notes))


def both_controls(model, init, ordered, shuffled, **kwargs):
    """{(model, init, "ordered"): ..., (model, init, "shuffled"): ...}; ``ordered`` / ``shuffled`` are dicts of
    probe_result's accuracy arguments."""
    return {(model, init, control): probe_result(**scores, control=control, **kwargs)
            for control, scores in (("ordered", ordered), ("shuffled", shuffled))}
