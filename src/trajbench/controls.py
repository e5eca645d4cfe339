"""Motion controls: the same clips with their frames shuffled, one seeded permutation per clip.

A representation that encodes motion should lose accuracy when the frame order is destroyed while every frame's
content stays the same; the loss, ordered minus shuffled accuracy paired by fold, is its *order sensitivity*.
The permutation of clip ``index`` depends only on ``(dataset seed, index)``, is never the identity (for clips of two
or more frames) and is recorded in labels.csv (column :data:`COLUMN`, the frame shown at each position, space
separated), so every stage that shuffles reads the same orders.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CONTROLS = ("ordered", "shuffled")
COLUMN = "shuffled_frames"
# Mixed into the clip's seed so that the permutation stream is independent of the one that renders the clip.
_STREAM = 0x5EED5


def frame_permutation(seed: int, index: int, frames: int) -> np.ndarray:
    """The shuffled frame order of clip ``index``: position p shows frame ``order[p]``; never the identity."""
    rng = np.random.default_rng([int(seed), int(index), _STREAM])
    identity = np.arange(frames)
    order = rng.permutation(frames)
    while frames > 1 and np.array_equal(order, identity):
        order = rng.permutation(frames)
    return order


def format_order(order: np.ndarray) -> str:
    return " ".join(str(int(f)) for f in order)


def read_orders(labels: pd.DataFrame, frames: int) -> np.ndarray:
    """(N, frames) int64 frame orders from labels.csv's :data:`COLUMN`, each checked to be a permutation."""
    if COLUMN not in labels.columns:
        raise ValueError(f"labels lack column {COLUMN!r} (the shuffled frame orders); rerun rule render_videos")
    orders = np.array([[int(f) for f in str(cell).split()] for cell in labels[COLUMN]], dtype=np.int64)
    if orders.shape != (len(labels), frames) or not (np.sort(orders, axis=1) == np.arange(frames)).all():
        raise ValueError(f"labels column {COLUMN!r} must hold a permutation of 0..{frames - 1} per clip; "
                         "rerun rule render_videos")
    return orders


def shuffle_frames(clips: np.ndarray, orders: np.ndarray) -> np.ndarray:
    """Clips (B, T, ...) with clip b's frames in ``orders[b]``'s order."""
    clips = np.asarray(clips)
    return np.take_along_axis(clips, orders.reshape(orders.shape + (1,) * (clips.ndim - 2)), axis=1)


class ShuffledVideos:
    """A read-only view of (N, T, H, W, 3) videos whose slices come back frame-shuffled; only slices are read."""

    def __init__(self, videos: np.ndarray, orders: np.ndarray):
        if orders.shape != videos.shape[:2]:
            raise ValueError(f"frame orders {orders.shape} do not match videos {videos.shape[:2]}")
        self.videos, self.orders = videos, orders
        self.shape, self.dtype, self.ndim = videos.shape, videos.dtype, videos.ndim

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice):  # every reader takes batches; a slice is all that needs shuffling
            raise TypeError(f"ShuffledVideos is read by slices of clips, got {type(key).__name__}")
        return shuffle_frames(self.videos[key], self.orders[key])


def shuffle_positions(labels: pd.DataFrame, orders: np.ndarray) -> pd.DataFrame:
    """labels with the per-frame ground truth (``x_i``, ``y_i``) permuted as the frames are."""
    frames = orders.shape[1]
    out = labels.copy()
    for axis in ("x", "y"):
        columns = [f"{axis}_{i}" for i in range(frames)]
        if set(columns) <= set(labels.columns):
            values = labels[columns].to_numpy()
            out[columns] = np.take_along_axis(values, orders, axis=1)
    return out
