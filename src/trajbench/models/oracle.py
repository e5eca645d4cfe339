"""Ground-truth tracks as a reference representation: what a physicist reads off the object's positions.

A *reference*, not a ceiling: a probe on it shows how separable the classes are from the track alone, with
hand-made features that a network need not find (and a network may use what they miss). Two groups of features,
from the positions in the view's labels (x / W, y / H; permuted with the frames in the shuffled control):

- per frame, in order: positions, their first and second differences; relative speed, cos and sin of the turning
  angle and vertical acceleration (gravity points down, so it is not rotation-invariant on purpose); their mean,
  standard deviation, extremes and the fraction of turn sign changes over the clip. Frame order matters to these.
- order-free geometry of the set of positions, each in units of its diameter D (the dataset draws D and the mean
  speed from ranges shared by all classes, so shape is all that is left): distances to the centroid (mean,
  coefficient of variation, min, max); the covariance eigenvalue ratio (elongation); quantiles (10, 25, 50, 75,
  90 %) and mean of all pairwise distances (the D2 shape distribution); nearest-neighbour distances (mean,
  coefficient of variation: how evenly the positions cover the path); bounding-box width and height and the third
  central moment of y (up-down asymmetry under gravity). Any frame order gives the same values.

Its token grid is the positions per frame (N, T, 1, 2).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import pdist, squareform

from trajbench.models.base import ENCODER, Encoder, Family, FeatureError, Run, View
from trajbench.models.kinematics import positions

DECIMALS = 9  # in frame-size units: 1e-9 of the frame, far below a pixel
QUANTILES = (10, 25, 50, 75, 90)


def kinematic_features(track: np.ndarray) -> np.ndarray:
    """Per-frame kinematics and their statistics over time, (N, F), of tracks (N, T, 2); T >= 3."""
    xy = track.transpose(0, 2, 1)  # (N, 2, T)
    velocity = np.diff(xy, axis=2)
    acceleration = np.diff(xy, n=2, axis=2)
    speed = np.linalg.norm(velocity, axis=1)
    mean_speed = np.maximum(speed.mean(axis=1, keepdims=True), 1e-9)
    relative_speed = speed / mean_speed
    v0, v1 = velocity[:, :, :-1], velocity[:, :, 1:]
    turn = np.arctan2(v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0], (v0 * v1).sum(axis=1))
    vertical = acceleration[:, 1] / mean_speed
    series = {"relative_speed": relative_speed, "turn": turn, "abs_turn": np.abs(turn), "vertical_accel": vertical}
    stats = [np.stack([v.mean(1), v.std(1), v.min(1), v.max(1)], axis=1) for v in series.values()]
    sign_changes = (np.diff(np.sign(np.round(turn, 6)), axis=1) != 0).mean(axis=1, keepdims=True)
    parts = [xy, velocity, acceleration, relative_speed, np.cos(turn), np.sin(turn), vertical, *stats, sign_changes]
    return np.concatenate([a.reshape(len(xy), -1) for a in parts], axis=1)


def _shape(points: np.ndarray) -> np.ndarray:
    """Order-free geometry of one clip's positions (T, 2), in units of their diameter (module docstring)."""
    distances = pdist(points)
    d = max(distances.max(), 1e-12)
    centred = (points - points.mean(axis=0)) / d
    radii = np.linalg.norm(centred, axis=1)
    eigen = np.linalg.eigvalsh(np.cov(centred.T, bias=True))  # ascending
    matrix = squareform(distances / d)
    np.fill_diagonal(matrix, np.inf)
    nearest = matrix.min(axis=1)
    box = np.ptp(points, axis=0) / d
    return np.concatenate([
        [radii.mean(), radii.std() / max(radii.mean(), 1e-12), radii.min(), radii.max()],
        [eigen[0] / max(eigen[1], 1e-12)],
        np.percentile(distances / d, QUANTILES), [(distances / d).mean()],
        [nearest.mean(), nearest.std() / max(nearest.mean(), 1e-12)],
        box, [np.mean(centred[:, 1] ** 3)],
    ])


def shape_features(track: np.ndarray) -> np.ndarray:
    """Order-free geometry (N, G) of tracks (N, T, 2): the same for any permutation of each clip's frames."""
    return np.stack([_shape(clip) for clip in track])


def extract(run: Run) -> tuple[Encoder, dict]:
    _, t, h, w, _ = run.videos.shape
    if t < 3:
        raise FeatureError(f"the oracle needs at least 3 frames for accelerations, the videos have {t}")
    positions(run.labels, t, h, w)  # fail before any view is encoded

    def encode(view: View) -> tuple[np.ndarray, np.ndarray]:
        track = positions(view.labels, t, h, w)
        features = np.concatenate([kinematic_features(track), shape_features(track)], axis=1)
        # Differences of exactly linear tracks are ~1e-16 rounding noise, which a probe's StandardScaler would blow
        # up to unit variance; rounding far below a pixel makes them exact zeros.
        features = np.round(features, DECIMALS).astype(np.float32)
        return features, track.reshape(len(track), t, 1, 2).astype(np.float16)

    still = np.zeros((1, t, 2))  # any track: only the column counts are read
    per_frame, order_free = kinematic_features(still).shape[1], shape_features(still).shape[1]
    meta = {
        "layout": f"per frame (columns 0..{per_frame - 1}): x/W then y/H per frame, their first and second "
        "differences; relative speed, cos and sin of the turning angle and vertical acceleration per frame; "
        "mean/std/min/max over time of relative speed, turn, |turn| and vertical acceleration; fraction of turn sign "
        f"changes. Order-free (columns {per_frame}..): in diameters, centroid distances (mean, cv, min, max), "
        "covariance eigenvalue ratio, pairwise distance quantiles 10/25/50/75/90 % and mean, nearest-neighbour "
        "distance (mean, cv), bounding-box width and height, third central moment of y. Grid: x/W, y/H per frame",
        "order_free_columns": [per_frame, per_frame + order_free],
        "frame_size": [h, w],
        "rounded_to_decimals": DECIMALS,
    }
    return encode, meta


FAMILY = Family(
    name="oracle",
    role=ENCODER,
    description="ground-truth positions, kinematics and order-free path geometry (a reference, not a ceiling)",
    extract=extract,
    weights=False,
)
