"""The per-frame PSNR comparison: compare.psnr_per_frame_table's numbers and the figure figures.psnr_per_frame draws."""

import math

import numpy as np
import pandas as pd
import pytest

from trajbench import compare, figures, metrics


def _per_frame(seed, n_videos=6, n_frames=5, offset=0.0):
    psnr = np.random.default_rng(seed).normal(25.0 + offset, 2.0, size=(n_videos, n_frames))
    labels = pd.DataFrame({"index": range(n_videos), "class_name": ["a", "b"] * (n_videos // 2)})
    return psnr, metrics.per_frame_table(psnr, labels)


def test_table_is_mean_ci_of_each_frame_over_videos():
    pre, pre_table = _per_frame(0, offset=5.0)
    rnd, rnd_table = _per_frame(1)
    rnd_table.loc[(rnd_table["index"] == 2) & (rnd_table["frame"] == 0), "psnr"] = math.inf
    rnd_table = rnd_table.iloc[::-1]  # rows in any order: the table runs by frame
    table = compare.psnr_per_frame_table({"pretrained": pre_table, "random": rnd_table})
    assert list(table.columns) == ["init", "frame", "n", "psnr_mean", "psnr_ci_low", "psnr_ci_high", "n_capped"]
    assert table["init"].tolist() == ["pretrained"] * 5 + ["random"] * 5
    assert table["frame"].tolist() == [0, 1, 2, 3, 4] * 2 and (table["n"] == 6).all()
    rnd[2, 0] = metrics.PSNR_CAP_DB  # the identical frame counts at the cap, as per-video PSNRs do
    expected = [metrics.mean_ci(values[:, t]) for values in (pre, rnd) for t in range(5)]
    np.testing.assert_allclose(table[["psnr_mean", "psnr_ci_low", "psnr_ci_high"]].to_numpy(), expected,
                               rtol=1e-12)
    assert table["n_capped"].tolist() == [0] * 5 + [1, 0, 0, 0, 0]
    # The pretrained curve sits about 5 dB above the random one (frames 1-4; frame 0 holds the capped video).
    gap = table["psnr_mean"].to_numpy()[1:5] - table["psnr_mean"].to_numpy()[6:10]
    assert gap.mean() == pytest.approx(5.0, abs=2.0)
    with pytest.raises(ValueError, match=r"'random' lacks column\(s\) \['frame'\]"):
        compare.psnr_per_frame_table({"random": rnd_table.drop(columns="frame")})


def test_figure_draws_the_table_and_is_deterministic(tmp_path):
    tables = {init: _per_frame(seed, offset=seed)[1] for seed, init in enumerate(["pretrained", "random", "finetuned"])}
    table = compare.psnr_per_frame_table(tables)
    # Rows out of frame order: the curve is still drawn frame by frame.
    drawn = figures.psnr_per_frame(table.iloc[::-1].reset_index(drop=True), tmp_path / "a.png")
    assert list(drawn) == ["finetuned", "random", "pretrained"]
    for init, rows in table.groupby("init"):
        np.testing.assert_array_equal(drawn[init], rows[["frame", "psnr_mean", "psnr_ci_low", "psnr_ci_high"]]
                                      .to_numpy().T)
    figures.psnr_per_frame(table.iloc[::-1].reset_index(drop=True), tmp_path / "b.png")
    shifted = table.assign(psnr_mean=table["psnr_mean"] + 1.0)
    figures.psnr_per_frame(shifted.iloc[::-1].reset_index(drop=True), tmp_path / "c.png")
    figures.psnr_per_frame(table.iloc[::-1].reset_index(drop=True), tmp_path / "d.png", first_frames=(0, 3))
    a, b, c, d = ((tmp_path / f"{name}.png").read_bytes() for name in "abcd")
    assert a.startswith(b"\x89PNG") and a == b
    assert c != a and d != a  # other data, other window starts: another picture
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "c.png", "d.png"]
