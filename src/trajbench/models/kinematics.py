"""The speed-and-size cue baseline: a clip's mean speed and extent, nothing of its shape or time course.

The dataset draws every path's mean speed and extent from ranges shared by all classes (`trajbench.render`), so a
probe on these two numbers should score chance; above chance, the dataset leaks speed or size, and any model could be
reading that leak rather than the motion. Computed from the ground-truth positions in the view's labels: in the
shuffled control the steps are those between the shuffled frames (the extent does not change).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial.distance import pdist

from trajbench.models.base import ENCODER, Encoder, Family, FeatureError, Run, View, listing


def positions(labels: pd.DataFrame, frames: int, height: int, width: int) -> np.ndarray:
    """The ground-truth centres (N, frames, 2) as (x / width, y / height), from labels.csv's ``x_i``, ``y_i``."""
    columns = [f"{axis}_{i}" for axis in "xy" for i in range(frames)]
    absent = [c for c in columns if c not in labels.columns]
    if absent:
        raise FeatureError(f"labels lack ground-truth position columns {listing(absent)} for {frames}-frame videos; "
                           "rerun rule render_videos")
    xy = labels[columns].to_numpy(dtype=np.float64).reshape(-1, 2, frames)
    if not np.isfinite(xy).all():
        bad_rows = int((~np.isfinite(xy)).any(axis=(1, 2)).sum())
        raise FeatureError(f"labels hold non-finite ground-truth positions in {bad_rows} rows")
    return xy.transpose(0, 2, 1) / np.array([width, height], dtype=np.float64)


def speed_and_extent(track: np.ndarray) -> np.ndarray:
    """(N, 2): mean step length per frame and diameter (largest distance between two positions) of tracks (N, T, 2)."""
    speed = np.linalg.norm(np.diff(track, axis=1), axis=2).mean(axis=1)
    extent = np.array([pdist(clip).max() for clip in track])
    return np.stack([speed, extent], axis=1)


def extract(run: Run) -> tuple[Encoder, dict]:
    _, t, h, w, _ = run.videos.shape
    if t < 2:
        raise FeatureError(f"the kinematics baseline needs at least 2 frames for a speed, the videos have {t}")
    positions(run.labels, t, h, w)  # fail before any view is encoded

    def encode(view: View) -> tuple[np.ndarray, np.ndarray]:
        features = speed_and_extent(positions(view.labels, t, h, w))
        return features.astype(np.float32), features.reshape(-1, 1, 1, 2).astype(np.float16)

    meta = {
        "layout": "mean step length per frame and diameter of the ground-truth track, in frame sizes (x / W, y / H)",
        "frame_size": [h, w],
    }
    return encode, meta


FAMILY = Family(
    name="kinematics",
    role=ENCODER,
    description="mean speed and extent of the ground-truth track (a cue baseline: chance unless the data leak them)",
    extract=extract,
    weights=False,
)
