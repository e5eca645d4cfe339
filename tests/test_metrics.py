import math

import numpy as np
import pandas as pd
import pytest

from trajbench import metrics

T975_DF2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2), from tables


def _video(seed=0, shape=(3, 16, 16, 3), low=0, high=200):
    return np.random.default_rng(seed).integers(low, high, size=shape, dtype=np.uint8)


def test_identical_video_is_perfect():
    v = _video()
    m = metrics.video_metrics(v, v.copy())
    assert m["mse"] == 0.0
    assert m["psnr"] == math.inf
    assert m["ssim"] == pytest.approx(1.0, abs=1e-12)


def test_constant_offset_gives_exact_psnr_and_mse():
    v = _video()
    m = metrics.video_metrics(v, v + np.uint8(5))  # no overflow: values < 200
    assert m["psnr"] == pytest.approx(20 * math.log10(255 / 5), rel=1e-12)
    assert m["mse"] == pytest.approx(25 / 255**2, rel=1e-12)
    assert m["ssim"] < 1.0


def test_gaussian_noise_psnr_matches_formula():
    rng = np.random.default_rng(123)
    v = np.full((4, 32, 32, 3), 128, dtype=np.uint8)
    sigma = 10.0
    noisy = np.clip(np.round(128 + rng.normal(0, sigma, v.shape)), 0, 255).astype(np.uint8)
    # Rounding to integers adds variance 1/12.
    expected = 20 * math.log10(255 / math.sqrt(sigma**2 + 1 / 12))
    assert metrics.video_metrics(v, noisy)["psnr"] == pytest.approx(expected, abs=0.1)


def test_psnr_is_pooled_over_the_whole_video_not_averaged_per_frame():
    v = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    r = v.copy()
    r[1] = 10  # frame 0 perfect, frame 1 off by 10: pooled MSE = 50
    assert metrics.video_metrics(v, r)["psnr"] == pytest.approx(20 * math.log10(255 / math.sqrt(50)))


def test_ssim_window_for_small_frames():
    assert metrics.ssim_win_size(64, 64) == 7
    assert metrics.ssim_win_size(6, 8) == 5
    assert metrics.ssim_win_size(5, 40) == 5
    with pytest.raises(ValueError, match="3x3"):
        metrics.ssim_win_size(2, 8)
    v = _video(shape=(2, 5, 6, 3))
    assert 0 < metrics.video_metrics(v, _video(seed=1, shape=v.shape))["ssim"] < 1


def test_rejects_bad_inputs():
    v = _video()
    with pytest.raises(ValueError, match="shape"):
        metrics.video_metrics(v, v[:2])
    with pytest.raises(ValueError, match="uint8"):
        metrics.video_metrics(v, v.astype(np.float32))


def test_reconstruction_metrics_from_memmap_in_chunks(tmp_path):
    videos = _video(shape=(5, 2, 8, 8, 3))
    recons = _video(seed=1, shape=videos.shape)
    recons[2] = videos[2]
    np.save(tmp_path / "v.npy", videos)
    np.save(tmp_path / "r.npy", recons)
    labels = pd.DataFrame({"index": np.arange(5), "label": [0, 1, 0, 1, 0], "class_name": list("ababa")})
    out = metrics.reconstruction_metrics(np.load(tmp_path / "v.npy", mmap_mode="r"),
                                         np.load(tmp_path / "r.npy", mmap_mode="r"), labels, chunk_size=2)
    assert list(out.columns) == ["index", "class_name", "mse", "psnr", "ssim"]
    assert out["class_name"].tolist() == list("ababa")
    for i in range(5):
        expected = metrics.video_metrics(videos[i], recons[i])
        assert out.loc[i, ["mse", "psnr", "ssim"]].tolist() == [expected["mse"], expected["psnr"], expected["ssim"]]
    assert out.loc[2, "psnr"] == math.inf
    with pytest.raises(ValueError, match="4 rows but there are 5 videos"):
        metrics.reconstruction_metrics(videos, recons, labels.iloc[:4])


def test_mean_ci_plain_and_corrected():
    mean, low, high = metrics.mean_ci([1.0, 2.0, 3.0])
    half = T975_DF2 * 1.0 / math.sqrt(3)
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    mean, low, high = metrics.mean_ci([0.8, 0.9, 1.0], test_train_ratio=0.25)
    half = T975_DF2 * math.sqrt(0.01 * (1 / 3 + 0.25))
    assert (mean, low, high) == pytest.approx((0.9, 0.9 - half, 0.9 + half))
    assert math.isnan(metrics.mean_ci([0.5])[1])
    with pytest.raises(ValueError, match="NaN/inf"):
        metrics.mean_ci([1.0, math.inf])


def test_summarize_caps_infinite_psnr():
    df = pd.DataFrame({"init": ["pretrained"] * 3 + ["random"] * 2,
                       "mse": [0.0, 0.1, 0.2, 0.3, 0.5],
                       "psnr": [math.inf, 20.0, 30.0, 10.0, 12.0],
                       "ssim": [1.0, 0.5, 0.6, 0.1, 0.2]})
    out = metrics.summarize(df).set_index(["init", "metric"])
    assert out.loc[("pretrained", "psnr"), "mean"] == pytest.approx((metrics.PSNR_CAP_DB + 50) / 3)
    assert out.loc[("pretrained", "psnr"), "n_capped"] == 1
    assert out.loc[("random", "mse"), "n_capped"] == 0
    assert out.loc[("pretrained", "mse"), ["mean", "ci_low", "ci_high"]].tolist() == pytest.approx(
        [0.1, 0.1 - T975_DF2 * 0.1 / math.sqrt(3), 0.1 + T975_DF2 * 0.1 / math.sqrt(3)])
    assert metrics.PSNR_CAP_DB == pytest.approx(20 * math.log10(255 / np.finfo(np.float32).eps))
    with pytest.raises(ValueError, match="lacks column"):
        metrics.summarize(df, group="model")


def test_codebook_usage_hand_made_tokens():
    tokens = np.array([[0, 0, 1, 1], [2, 2, 3, 3]], dtype=np.int32)
    stats = metrics.codebook_usage(tokens, codebook_size=8)
    assert stats == {"distinct": 4, "perplexity": pytest.approx(4.0), "fraction_used": 0.5, "n_tokens": 8}
    skewed = np.array([5, 5, 5, 1], dtype=np.int64)
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    for chunk in (1, 3, 100):
        stats = metrics.codebook_usage(skewed, codebook_size=16, chunk_size=chunk)
        assert stats["distinct"] == 2 and stats["perplexity"] == pytest.approx(expected, rel=1e-12)
        assert stats["fraction_used"] == 2 / 16


def test_codebook_usage_errors():
    with pytest.raises(ValueError, match=r"out of range \[0, 4\): found 4"):
        metrics.codebook_usage(np.array([0, 4]), codebook_size=4)
    with pytest.raises(ValueError, match="integers"):
        metrics.codebook_usage(np.array([0.0, 1.0]), codebook_size=4)


def test_boundaries_of_the_small_cases():
    """Edges the other tests step over: two values already give an interval, MSE 1 is a finite PSNR, 3x3 and 4-pixel
    frames, a codebook of one code, a single token."""
    mean, low, high = metrics.mean_ci([1.0, 3.0])
    half = 12.706204736174698 * math.sqrt(2.0 / 2)  # scipy.stats.t.ppf(0.975, 1), from tables
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    with pytest.raises(ValueError, match="2 of 3 values are NaN/inf"):
        metrics.mean_ci([1.0, math.nan, math.inf])
    assert metrics.psnr_from_mse_uint8(1.0) == pytest.approx(20 * math.log10(255))
    assert metrics.ssim_win_size(3, 3) == 3
    assert metrics.ssim_win_size(4, 20) == 3  # even side: the odd window below it
    assert metrics.codebook_usage(np.array([0, 0]), codebook_size=1) == {
        "distinct": 1, "perplexity": 1.0, "fraction_used": 1.0, "n_tokens": 2}
    assert metrics.codebook_usage(np.array([7]), codebook_size=8)["distinct"] == 1
    with pytest.raises(ValueError, match="found -1"):
        metrics.codebook_usage(np.array([0, -1]), codebook_size=4)


def test_ssim_of_non_square_frames_matches_skimage():
    """The window comes from the frame's height and width (axes 1 and 2), not the channel axis."""
    from skimage.metrics import structural_similarity

    v, r = _video(shape=(2, 5, 16, 3)), _video(seed=1, shape=(2, 5, 16, 3))
    expected = np.mean([structural_similarity(a, b, data_range=255, channel_axis=-1, win_size=5) for a, b in zip(v, r)])
    assert metrics.video_metrics(v, r)["ssim"] == pytest.approx(expected, rel=1e-12)


def test_shape_errors_name_the_expected_layout():
    v = _video()
    with pytest.raises(ValueError, match=r"expected \(T, H, W, 3\) RGB arrays, got \(3, 16, 16, 3, 1\)"):
        metrics.video_metrics(v[..., None], v[..., None])
    with pytest.raises(ValueError, match=r"expected \(N, T, H, W, 3\) RGB arrays, got \(3, 16, 16, 3\)"):
        metrics.reconstruction_metrics(v, v, pd.DataFrame({"index": range(3), "class_name": list("abc")}))


def test_reconstruction_metrics_table_and_summarize_order():
    videos = _video(shape=(3, 2, 8, 8, 3))
    labels = pd.DataFrame({"index": [10, 11, 12], "class_name": ["b", "a", "b"]})
    out = metrics.reconstruction_metrics(videos, _video(seed=1, shape=videos.shape), labels)
    assert out["index"].tolist() == [10, 11, 12]
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['class_name'\]"):
        metrics.reconstruction_metrics(videos, videos, labels.drop(columns="class_name"))
    table = metrics.summarize(out, group="class_name", confidence=0.5)
    assert table["class_name"].tolist()[::3] == ["b", "a"]  # order of first appearance, not sorted
    row = table.iloc[0]
    assert row["n"] == 2
    ssim_b = out.loc[out["class_name"] == "b", "ssim"].to_numpy()
    assert table.loc[2, ["mean", "ci_low", "ci_high"]].tolist() == pytest.approx(metrics.mean_ci(ssim_b, 0.5))


def test_per_frame_psnr_of_known_frame_errors(tmp_path):
    # Video 0: frame f is off by f+1 everywhere, so its PSNR is 20*log10(255 / (f+1)); frame 0 of video 1 is exact.
    videos = np.stack([_video(seed=1, shape=(4, 8, 8, 3)), _video(seed=2, shape=(4, 8, 8, 3))])
    recons = videos.copy()
    recons[0] += np.arange(1, 5, dtype=np.uint8)[:, None, None, None]  # values < 200: no overflow
    recons[1, 1:, :2] += np.uint8(10)  # frames 1-3: a quarter of the pixels off by 10, MSE 25
    np.save(tmp_path / "v.npy", videos)
    np.save(tmp_path / "r.npy", recons)
    psnr = metrics.per_frame_psnr(np.load(tmp_path / "v.npy", mmap_mode="r"),
                                  np.load(tmp_path / "r.npy", mmap_mode="r"), chunk_size=1)
    assert psnr.dtype == np.float64
    np.testing.assert_allclose(psnr[0], [20 * math.log10(255 / k) for k in (1, 2, 3, 4)], rtol=1e-12)
    assert psnr[1, 0] == math.inf
    np.testing.assert_allclose(psnr[1, 1:], 20 * math.log10(255 / 5), rtol=1e-12)
    # Each frame's value is what psnr_from_mse_uint8 gives for that frame alone.
    for n, f in [(0, 2), (1, 3)]:
        diff = videos[n, f].astype(np.float64) - recons[n, f]
        assert psnr[n, f] == pytest.approx(metrics.psnr_from_mse_uint8(float(np.mean(diff**2))), rel=1e-12)
    with pytest.raises(ValueError, match="reconstructions have"):
        metrics.per_frame_psnr(videos, recons[:, :3])


def test_per_frame_table_long_format_round_trips_infinity(tmp_path):
    from trajbench import io

    psnr = np.array([[10.0, 20.0, math.inf], [11.0, 21.0, 31.0]])
    labels = pd.DataFrame({"index": [4, 7], "class_name": ["circle", "line"]})
    table = metrics.per_frame_table(psnr, labels)
    assert list(table.columns) == ["index", "class_name", "frame", "psnr"]
    assert table["index"].tolist() == [4, 4, 4, 7, 7, 7] and table["frame"].tolist() == [0, 1, 2, 0, 1, 2]
    assert table["class_name"].tolist() == ["circle"] * 3 + ["line"] * 3
    assert table["psnr"].tolist() == [10.0, 20.0, math.inf, 11.0, 21.0, 31.0]
    io.write_csv(tmp_path / "per_frame.csv", table)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "per_frame.csv"), table)
    with pytest.raises(ValueError, match="2 rows but there are 3 videos"):
        metrics.per_frame_table(np.zeros((3, 2)), labels)
