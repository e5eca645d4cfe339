"""Reconstruction metrics (TokenBench conventions), codebook usage, and the confidence intervals used everywhere.

Conventions, chosen so that numbers compare with the TokenBench tables (NVlabs/TokenBench ``metrics_cli.py``):

- PSNR is computed once per video over all uint8 values (frames, pixels and channels pooled):
  ``20 * log10(255 / sqrt(MSE_uint8))``. Identical videos have MSE 0 and PSNR ``+inf``; per-video tables keep the
  ``inf`` and :func:`summarize` replaces it by :data:`PSNR_CAP_DB` before averaging (and counts how often it did).
  The cap is the value TokenBench itself reports for identical videos (it adds float32 eps to ``sqrt(MSE)``), so
  means stay comparable with its tables.
- SSIM is ``skimage.metrics.structural_similarity(data_range=255, channel_axis=-1)`` per frame (skimage's default
  7x7 uniform window), averaged over frames. Frames smaller than 7 pixels on a side use the largest odd window that
  fits (:func:`ssim_win_size`).
- MSE is reported on the [0, 1] scale: ``MSE_uint8 / 255**2``.
- Per-frame PSNR (:func:`per_frame_psnr`) is the same formula over one frame's values; identical frames give
  ``+inf``, capped by :func:`cap_psnr` before averaging, like per-video numbers.

Confidence intervals are t-intervals (:func:`mean_ci`). Per-video values are independent draws, so the plain
t-interval applies. Scores from repeated K-fold splits are not independent (training sets overlap), so probes pass
``test_train_ratio`` and get the corrected resampled t-interval of Nadeau & Bengio (2003), as recommended for
repeated K-fold by Bouckaert & Frank (2004): the variance of the mean is ``s**2 * (1/J + n_test/n_train)`` instead of
``s**2 / J``. It is still an approximation, but a conservative one.
"""

from __future__ import annotations

import logging
import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from skimage.metrics import structural_similarity

from trajbench.logs import Progress

logger = logging.getLogger(__name__)

UINT8_MAX = 255.0
# What TokenBench reports for identical videos: 20*log10(255 / (0 + float32 eps)) ~= 186.6 dB.
PSNR_CAP_DB = float(20.0 * np.log10(UINT8_MAX / np.finfo(np.float32).eps))
SKIMAGE_DEFAULT_WIN = 7
METRICS = ("mse", "psnr", "ssim")


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95, test_train_ratio: float = 0.0
            ) -> tuple[float, float, float]:
    """Mean and two-sided t-interval ``(mean, low, high)``.

    ``test_train_ratio`` > 0 applies the Nadeau-Bengio correction for resampled train/test splits (module docstring);
    0 gives the ordinary t-interval for independent values. Fewer than two values give a NaN interval.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("mean_ci: no values to average")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"mean_ci: {int(np.sum(~np.isfinite(x)))} of {x.size} values are NaN/inf; "
                         "cap or drop them first")
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan
    var_of_mean = x.var(ddof=1) * (1.0 / x.size + test_train_ratio)
    half = float(stats.t.ppf(0.5 + confidence / 2.0, df=x.size - 1) * math.sqrt(var_of_mean))
    return mean, mean - half, mean + half


def psnr_from_mse_uint8(mse_uint8: float) -> float:
    """PSNR in dB from the MSE of uint8 values; ``+inf`` for identical inputs (MSE 0)."""
    if mse_uint8 == 0:
        return math.inf
    return float(20.0 * np.log10(UINT8_MAX / np.sqrt(mse_uint8)))


def ssim_win_size(height: int, width: int) -> int:
    """skimage's default window (7), or the largest odd window that fits a smaller frame (at least 3)."""
    side = min(height, width)
    if side < 3:
        raise ValueError(f"SSIM needs frames of at least 3x3 pixels, got {height}x{width}")
    return min(SKIMAGE_DEFAULT_WIN, side if side % 2 else side - 1)


def video_metrics(video: np.ndarray, recon: np.ndarray) -> dict[str, float]:
    """``{"mse", "psnr", "ssim"}`` of one uint8 video (T, H, W, 3) against its reconstruction."""
    _check_pair(video, recon, ndim=4)
    diff = video.astype(np.float64) - recon.astype(np.float64)
    mse_uint8 = float(np.mean(diff * diff))
    win = ssim_win_size(video.shape[1], video.shape[2])
    ssim = float(np.mean([
        structural_similarity(a, b, data_range=UINT8_MAX, channel_axis=-1, win_size=win)
        for a, b in zip(video, recon)
    ]))
    return {"mse": mse_uint8 / UINT8_MAX**2, "psnr": psnr_from_mse_uint8(mse_uint8), "ssim": ssim}


def reconstruction_metrics(videos: np.ndarray, recons: np.ndarray, labels: pd.DataFrame, chunk_size: int = 32
                           ) -> pd.DataFrame:
    """Per-video metrics: DataFrame with columns index, class_name, mse, psnr, ssim (one row per video, in order).

    ``videos`` and ``recons`` are uint8 (N, T, H, W, 3) arrays, typically memmaps; they are read ``chunk_size``
    videos at a time. ``labels`` is the dataset's labels table (columns ``index``, ``class_name``), row i
    describing video i.
    """
    _check_pair(videos, recons, ndim=5)
    missing = {"index", "class_name"} - set(labels.columns)
    if missing:
        raise ValueError(f"labels table lacks column(s) {sorted(missing)}; expected the dataset's labels.csv")
    if len(labels) != len(videos):
        raise ValueError(f"labels table has {len(labels)} rows but there are {len(videos)} videos")
    rows = []
    progress = Progress(len(videos), "reconstruction metrics", logger, unit="videos")
    for start in range(0, len(videos), chunk_size):
        block_v = np.asarray(videos[start:start + chunk_size])
        block_r = np.asarray(recons[start:start + chunk_size])
        rows.extend(video_metrics(v, r) for v, r in zip(block_v, block_r))
        progress.update(len(block_v))
    out = pd.DataFrame(rows, columns=list(METRICS))
    out.insert(0, "class_name", labels["class_name"].to_numpy())
    out.insert(0, "index", labels["index"].to_numpy())
    return out


def per_frame_psnr(videos: np.ndarray, recons: np.ndarray, chunk_size: int = 32) -> np.ndarray:
    """PSNR of every frame, float64 (N, T): ``20 * log10(255 / sqrt(MSE_uint8))`` over the frame's pixels and
    channels, ``+inf`` for identical frames. uint8 (N, T, H, W, 3) inputs (memmaps fine) are read ``chunk_size``
    videos at a time."""
    _check_pair(videos, recons, ndim=5)
    out = np.empty(videos.shape[:2], dtype=np.float64)
    for start in range(0, len(videos), chunk_size):
        diff = np.asarray(videos[start:start + chunk_size], np.float64) - recons[start:start + chunk_size]
        mse = np.mean(diff * diff, axis=(2, 3, 4))
        with np.errstate(divide="ignore"):  # MSE 0: 255 / 0 = inf, as psnr_from_mse_uint8 says
            out[start:start + len(diff)] = 20.0 * np.log10(UINT8_MAX / np.sqrt(mse))
    return out


def per_frame_table(psnr: np.ndarray, labels: pd.DataFrame) -> pd.DataFrame:
    """:func:`per_frame_psnr` output in long format: columns index, class_name, frame, psnr; rows video by video,
    frames in order. ``labels`` is the dataset's labels table, row i describing video i."""
    if len(labels) != len(psnr):
        raise ValueError(f"labels table has {len(labels)} rows but there are {len(psnr)} videos")
    n_videos, n_frames = psnr.shape
    return pd.DataFrame({"index": np.repeat(labels["index"].to_numpy(), n_frames),
                         "class_name": np.repeat(labels["class_name"].to_numpy(), n_frames),
                         "frame": np.tile(np.arange(n_frames), n_videos), "psnr": psnr.ravel()})


def summarize(per_video: pd.DataFrame, group: str = "init", metrics: Sequence[str] = METRICS,
              confidence: float = 0.95) -> pd.DataFrame:
    """Mean and t-interval of each metric per group.

    Returns one row per (group value, metric) with columns ``group``, metric, n, mean, ci_low, ci_high, n_capped
    (how many infinite PSNRs were replaced by :data:`PSNR_CAP_DB` before averaging). Groups keep their order of
    first appearance.
    """
    missing = ({group} | set(metrics)) - set(per_video.columns)
    if missing:
        raise ValueError(f"per-video table lacks column(s) {sorted(missing)}; columns are {list(per_video.columns)}")
    rows = []
    for key, frame in per_video.groupby(group, sort=False):
        for metric in metrics:
            values, n_capped = cap_psnr(frame[metric].to_numpy(dtype=np.float64))
            mean, low, high = mean_ci(values, confidence)
            rows.append({group: key, "metric": metric, "n": len(values), "mean": mean, "ci_low": low,
                         "ci_high": high, "n_capped": n_capped})
    return pd.DataFrame(rows)


def cap_psnr(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Replace ``+inf`` (identical videos) by :data:`PSNR_CAP_DB`; return the values and how many were replaced."""
    is_inf = np.isposinf(values)
    return np.where(is_inf, PSNR_CAP_DB, values), int(is_inf.sum())


def codebook_usage(tokens: np.ndarray, codebook_size: int, chunk_size: int = 1 << 22) -> dict[str, float]:
    """Codebook statistics of integer token indices of any shape (N, ...).

    Returns ``distinct`` (number of codes used), ``perplexity`` (exp of the natural-log entropy of the empirical code
    distribution: the number of equally used codes with the same entropy), ``fraction_used``
    (distinct / codebook_size) and ``n_tokens``. Reads the array in chunks so memmaps stay on disk.
    """
    if codebook_size < 1:
        raise ValueError(f"codebook_size must be positive, got {codebook_size}")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"token indices must be integers, got dtype {tokens.dtype}")
    flat = tokens.reshape(-1)
    if flat.size == 0:
        raise ValueError("no tokens to count")
    counts = np.zeros(codebook_size, dtype=np.int64)
    for start in range(0, flat.size, chunk_size):
        block = np.asarray(flat[start:start + chunk_size]).astype(np.int64)
        low, high = int(block.min()), int(block.max())
        if low < 0 or high >= codebook_size:
            raise ValueError(f"token index out of range [0, {codebook_size}): found {low if low < 0 else high}; "
                             "is codebook_size right?")
        counts += np.bincount(block, minlength=codebook_size)
    p = counts[counts > 0] / flat.size
    distinct = int(p.size)
    return {"distinct": distinct, "perplexity": float(np.exp(-np.sum(p * np.log(p)))),
            "fraction_used": distinct / codebook_size, "n_tokens": int(flat.size)}


def _check_pair(a: np.ndarray, b: np.ndarray, ndim: int) -> None:
    if a.shape != b.shape:
        raise ValueError(f"originals have shape {a.shape} but reconstructions have {b.shape}")
    if a.ndim != ndim or a.shape[-1] != 3:
        raise ValueError(f"expected {'(N, T, H, W, 3)' if ndim == 5 else '(T, H, W, 3)'} RGB arrays, got {a.shape}")
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"expected uint8 videos, got {a.dtype} and {b.dtype}; convert reconstructions with "
                         "clip+round to uint8 first")
