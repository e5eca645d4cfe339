"""The baselines that read the ground truth: `kinematics` (speed and size cues) and `oracle` (the reference), on
hand-made tracks with known numbers, through the registry's families and the View interface."""

import logging

import numpy as np
import pandas as pd
import pytest

from trajbench import controls
from trajbench.models import registry
from trajbench.models.base import FeatureError, Run, View


def table(tracks, labels=None):
    """A labels.csv-like table from tracks (N, T, 2) in pixels."""
    tracks = np.asarray(tracks, dtype=float)
    n, t, _ = tracks.shape
    rows = {"index": np.arange(n), "label": np.arange(n) if labels is None else labels}
    rows.update({f"x_{i}": tracks[:, i, 0] for i in range(t)})
    rows.update({f"y_{i}": tracks[:, i, 1] for i in range(t)})
    return pd.DataFrame(rows)


def encoder(family, labels, frames, height=32, width=32):
    videos = np.broadcast_to(np.zeros((), np.uint8), (len(labels), frames, height, width, 3))
    run = Run(family=registry.get(family), model_name=family, init="none", videos=videos, labels=labels, options={},
              weights_dir=None, tokens=None, device="cpu", dtype=None, attn_implementation="sdpa", batch_size=8,
              seed=0, logger=logging.getLogger(__name__))
    encode, meta = run.family.extract(run)
    return (lambda labels, control="ordered": encode(View(control, videos, labels))), meta


STRAIGHT = [[2 + 1.5 * i, 10 + 2.0 * i] for i in range(5)]  # 2.5 pixels a frame, 10 pixels end to end
PING_PONG = [[4.0, 8.0], [6.0, 8.0], [8.0, 8.0], [6.0, 8.0], [4.0, 8.0]]  # 2 pixels a frame, there and back: 4 pixels


def test_kinematics_is_mean_speed_and_extent_in_frame_sizes():
    labels = table([STRAIGHT, PING_PONG])
    encode, meta = encoder("kinematics", labels, frames=5)
    features, grid = encode(labels)
    np.testing.assert_allclose(features, [[2.5 / 32, 10 / 32], [2 / 32, 4 / 32]], rtol=1e-6)
    assert features.dtype == np.float32 and grid.dtype == np.float16 and grid.shape == (2, 1, 1, 2)
    np.testing.assert_allclose(grid[:, 0, 0], features, rtol=1e-3)
    assert meta["frame_size"] == [32, 32]
    # Shuffled frames: the same extent; the steps are those between the shuffled positions.
    orders = np.array([[4, 3, 2, 1, 0], [0, 2, 4, 1, 3]])
    shuffled, _ = encode(controls.shuffle_positions(labels, orders), "shuffled")
    np.testing.assert_allclose(shuffled[:, 1], features[:, 1], rtol=1e-6)
    np.testing.assert_allclose(shuffled[:, 0], [2.5 / 32, (4 + 4 + 2 + 0) / 4 / 32], rtol=1e-6)  # x: 4 8 4 6 6


def test_kinematics_uses_each_axis_own_frame_size():
    labels = table([[[0, 0], [8, 0], [8, 16]]])  # 8 pixels right (W=16), then 16 down (H=32): half a frame each
    features, _ = encoder("kinematics", labels, frames=3, height=32, width=16)[0](labels)
    np.testing.assert_allclose(features, [[0.5, np.sqrt(0.5**2 + 0.5**2)]], rtol=1e-6)


def test_oracle_per_frame_kinematics_exact():
    labels = table([STRAIGHT, PING_PONG])
    features, grid = encoder("oracle", labels, frames=5, height=32, width=16)[0](labels)
    x, y = np.array(STRAIGHT)[:, 0] / 16, np.array(STRAIGHT)[:, 1] / 32
    expected = np.concatenate([x, y, np.diff(x), np.diff(y), np.diff(x, 2), np.diff(y, 2)])
    np.testing.assert_allclose(features[0, :len(expected)], expected, rtol=1e-6, atol=1e-7)
    assert not features[0, len(expected) - 6 : len(expected)].any()  # a straight track's accelerations: exact zeros, not rounding noise
    expected_grid = np.stack([np.stack([x, y], 1), np.array(PING_PONG) / [16, 32]])
    np.testing.assert_allclose(grid[:, :, 0].astype(float), expected_grid, atol=1e-3)
    assert grid.shape == (2, 5, 1, 2) and grid.dtype == np.float16


def test_oracle_shape_features_of_a_square():
    square = [[0, 0], [8, 0], [8, 8], [0, 8]]
    labels = table([square])
    encode, meta = encoder("oracle", labels, frames=4)
    features, _ = encode(labels)
    lo, hi = meta["order_free_columns"]
    assert hi == features.shape[1]
    side = 1 / np.sqrt(2)  # in diameters
    np.testing.assert_allclose(features[0, lo:], [
        0.5, 0, 0.5, 0.5,  # centroid distances: mean, cv, min, max
        1.0,  # covariance eigenvalue ratio: no elongation
        *np.percentile([side] * 4 + [1, 1], [10, 25, 50, 75, 90]), (4 * side + 2) / 6,  # pairwise distances
        side, 0,  # nearest neighbours: mean, cv
        side, side, 0,  # bounding box width, height; third moment of y
    ], atol=1e-6)


def test_oracle_order_free_features_ignore_the_frame_order_and_per_frame_ones_do_not():
    rng = np.random.default_rng(0)
    tracks = np.cumsum(rng.normal(0, 2, (6, 9, 2)), axis=1) + 16
    labels = table(tracks)
    orders = np.stack([controls.frame_permutation(0, i, 9) for i in range(6)])
    encode, meta = encoder("oracle", labels, frames=9)
    ordered, ordered_grid = encode(labels)
    shuffled, shuffled_grid = encode(controls.shuffle_positions(labels, orders), "shuffled")
    lo, hi = meta["order_free_columns"]
    np.testing.assert_allclose(shuffled[:, lo:hi], ordered[:, lo:hi], rtol=1e-5, atol=1e-7)
    assert (np.abs(shuffled[:, :lo] - ordered[:, :lo]).max(axis=1) > 0.01).all()
    np.testing.assert_array_equal(shuffled_grid, controls.shuffle_frames(ordered_grid, orders))


def test_baselines_refuse_labels_without_positions_and_short_clips():
    labels = table([STRAIGHT]).drop(columns=["y_3"])
    for family in ("kinematics", "oracle"):
        with pytest.raises(FeatureError, match=r"lack ground-truth position columns \[y_3\]"):
            encoder(family, labels, frames=5)
    with pytest.raises(FeatureError, match="at least 3 frames"):
        encoder("oracle", table([STRAIGHT[:2]]), frames=2)
    bad = table([STRAIGHT])
    bad.loc[0, "x_1"] = np.nan
    with pytest.raises(FeatureError, match="non-finite ground-truth positions in 1 rows"):
        encoder("kinematics", bad, frames=5)


def test_registry_lists_the_baselines_without_weights():
    for name in ("kinematics", "oracle"):
        family = registry.get(name)
        assert family.inits == ("none",) and not family.network and family.role == "encoder"
