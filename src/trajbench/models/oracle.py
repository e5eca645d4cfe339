"""Ground-truth kinematics as a reference representation: what a physicist reads off the object's track."""

from __future__ import annotations

import numpy as np

from trajbench.models.base import ENCODER, Family, FeatureError, Run, listing

DECIMALS = 9  # in frame-size units: 1e-9 of the frame, far below a pixel


def extract(run: Run) -> tuple[np.ndarray, dict]:
    """Positions, velocities, accelerations, and their shape in time.

    Raw coordinates alone are not linearly separable by motion class (each video is rotated, shifted and scaled), so
    the oracle adds speed, turning angle (cos, sin) and vertical acceleration per frame (gravity points down, so it
    is not rotation-invariant on purpose), and their mean, standard deviation, extremes and sign changes over the
    clip.
    """
    _, t, h, w, _ = run.videos.shape
    columns = [f"x_{i}" for i in range(t)] + [f"y_{i}" for i in range(t)]
    absent = [c for c in columns if c not in run.labels.columns]
    if absent:
        raise FeatureError(f"labels lack ground-truth position columns {listing(absent)} for {t}-frame videos")
    if t < 3:
        raise FeatureError(f"the oracle needs at least 3 frames for accelerations, the videos have {t}")
    xy = run.labels[columns].to_numpy(dtype=np.float64).reshape(-1, 2, t)
    if not np.isfinite(xy).all():
        bad_rows = int((~np.isfinite(xy)).any(axis=(1, 2)).sum())
        raise FeatureError(f"labels hold non-finite ground-truth positions in {bad_rows} rows")
    xy = xy / np.array([w, h], dtype=np.float64)[None, :, None]
    velocity = np.diff(xy, axis=2)
    acceleration = np.diff(xy, n=2, axis=2)
    speed = np.linalg.norm(velocity, axis=1)
    relative_speed = speed / np.maximum(speed.mean(axis=1, keepdims=True), 1e-9)
    v0, v1 = velocity[:, :, :-1], velocity[:, :, 1:]
    turn = np.arctan2(v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0], (v0 * v1).sum(axis=1))
    vertical = acceleration[:, 1] / np.maximum(speed.mean(axis=1, keepdims=True), 1e-9)
    series = {"relative_speed": relative_speed, "turn": turn, "abs_turn": np.abs(turn), "vertical_accel": vertical}
    stats = [np.stack([v.mean(1), v.std(1), v.min(1), v.max(1)], axis=1) for v in series.values()]
    sign_changes = (np.diff(np.sign(np.round(turn, 6)), axis=1) != 0).mean(axis=1, keepdims=True)
    parts = [xy, velocity, acceleration, relative_speed, np.cos(turn), np.sin(turn), vertical, *stats, sign_changes]
    features = np.concatenate([a.reshape(len(xy), -1) for a in parts], axis=1)
    # Differences of exactly linear tracks are ~1e-16 rounding noise, which a probe's StandardScaler would blow up
    # to unit variance; rounding far below a pixel makes them exact zeros.
    features = np.round(features, DECIMALS)
    meta = {
        "layout": "x/W then y/H per frame, their first and second differences; relative speed, cos and sin of the "
        "turning angle and vertical acceleration per frame; mean/std/min/max over time of relative speed, turn, "
        "|turn| and vertical acceleration; fraction of turn sign changes",
        "frame_size": [h, w],
        "rounded_to_decimals": DECIMALS,
    }
    return features, meta


FAMILY = Family(
    name="oracle",
    role=ENCODER,
    description="ground-truth positions and kinematics (a reference, not a model)",
    extract=extract,
    weights=False,
)
