import math
import sys

import numpy as np
import pandas as pd
import pytest

from trajbench import compare, figures
from trajbench.metrics import PSNR_CAP_DB
from trajbench.probe import FOLD_COLUMNS, ProbeResult

T975_DF3 = 3.182446305284263  # scipy.stats.t.ppf(0.975, 3), from tables
T975_DF2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2)
NAMES = ["linear", "circle", "zigzag"]


def _stat(mean):
    return {"mean": mean, "ci_low": mean - 0.05, "ci_high": mean + 0.05}


def _result(acc, sha="splits-A", knn=None):
    """A hand-made ProbeResult whose summary says ``acc``; only the fields the tables and figures read matter."""
    knn = acc - 0.1 if knn is None else knn
    folds = [{"repeat": 0, "fold": f, "n_train": 80, "n_test": 20, "pca_components": None, "C": 1.0,
              "logreg_accuracy": acc, "logreg_macro_f1": acc, "logreg_recall": [acc] * 3,
              "knn_accuracy": knn, "knn_macro_f1": knn} for f in range(4)]
    cm = np.full((3, 3), (1 - acc) / 2) + np.eye(3) * (acc - (1 - acc) / 2)
    return ProbeResult(
        class_names=NAMES, control="ordered", n_samples=100, n_features=10, params={}, splits_sha256=sha, test_train_ratio=0.25,
        chance={"uniform": 1 / 3, "majority": 0.4}, folds=folds,
        summary={"logreg": {"accuracy": _stat(acc), "macro_f1": _stat(acc - 0.02)},
                 "knn": {"accuracy": _stat(knn), "macro_f1": _stat(knn)}},
        confusion=(cm * 20).round().astype(int).tolist(), confusion_normalized=cm.tolist())


def _folds(logreg_acc, knn_acc, shuffle_seed=None):
    rows = [{"repeat": f // 2, "fold": f % 2, "probe": probe, "accuracy": acc, "macro_f1": acc - 0.01,
             "C": 1.0 if probe == "logreg" else np.nan, "n_train": 80, "n_test": 20}
            for probe, accs in (("logreg", logreg_acc), ("knn", knn_acc)) for f, acc in enumerate(accs)]
    frame = pd.DataFrame(rows, columns=FOLD_COLUMNS)
    return frame if shuffle_seed is None else frame.sample(frac=1, random_state=shuffle_seed)


def test_paired_inits_two_inits_pairs_by_split():
    pre, rnd = [0.9, 0.8, 0.85, 0.95], [0.7, 0.75, 0.8, 0.7]
    results = {("magvit", "pretrained"): _folds(pre, [0.1] * 4),
               ("magvit", "random"): _folds(rnd, [0.9] * 4, shuffle_seed=0),  # row order must not matter
               ("pixels", "none"): _folds(rnd, rnd)}
    out = compare.paired_inits(results)
    assert out["model"].tolist() == ["magvit", "magvit"] and out["metric"].tolist() == ["accuracy", "macro_f1"]
    assert out["comparison"].tolist() == ["pretrained − random"] * 2
    row = out.iloc[0]
    diffs = np.array(pre) - np.array(rnd)  # [0.2, 0.05, 0.05, 0.25]
    half = T975_DF3 * math.sqrt(diffs.var(ddof=1) * (1 / 4 + 20 / 80))  # Nadeau-Bengio corrected
    assert row["diff_mean"] == pytest.approx(0.1375)
    assert (row["diff_ci_low"], row["diff_ci_high"]) == pytest.approx((0.1375 - half, 0.1375 + half))
    assert (row["a"], row["b"]) == ("pretrained", "random")
    assert (row["a_mean"], row["b_mean"], row["n_splits"]) == pytest.approx((0.875, 0.7375, 4))
    # kNN rows are scored separately and here favour random: the sign flips.
    knn = compare.paired_inits(results, probe="knn").iloc[0]
    assert knn["diff_mean"] == pytest.approx(-0.8)


def test_paired_inits_three_inits():
    pre, rnd, fin = [0.9, 0.8, 0.85, 0.95], [0.7, 0.75, 0.8, 0.7], [0.95, 0.9, 0.8, 1.0]
    results = {("magvit", "random"): _folds(rnd, [0.1] * 4), ("magvit", "finetuned"): _folds(fin, [0.1] * 4),
               ("magvit", "pretrained"): _folds(pre, [0.1] * 4, shuffle_seed=1),
               ("clip", "pretrained"): _folds([0.99] * 4, [0.1] * 4), ("clip", "random"): _folds(rnd, [0.1] * 4),
               ("pixels", "none"): _folds(rnd, rnd)}
    out = compare.paired_inits(results, metrics=("accuracy",))
    # clip's best mean (0.99) beats magvit's (finetuned, 0.9125); comparisons keep the order of compare.PAIRS.
    assert list(zip(out["model"], out["comparison"])) == [
        ("clip", "pretrained − random"), ("magvit", "pretrained − random"), ("magvit", "finetuned − random"),
        ("magvit", "finetuned − pretrained")]
    rows = out.set_index(["model", "comparison"])
    diffs = np.array(fin) - np.array(pre)  # [0.05, 0.1, -0.05, 0.05]: mean 0.0375
    half = T975_DF3 * math.sqrt(diffs.var(ddof=1) * (1 / 4 + 20 / 80))
    row = rows.loc[("magvit", "finetuned − pretrained")]
    assert (row["a"], row["b"]) == ("finetuned", "pretrained")
    assert (row["a_mean"], row["b_mean"]) == pytest.approx((0.9125, 0.875))
    assert (row["diff_mean"], row["diff_ci_low"], row["diff_ci_high"]) == pytest.approx(
        (0.0375, 0.0375 - half, 0.0375 + half))
    assert rows.loc[("magvit", "finetuned − random"), "diff_mean"] == pytest.approx(0.175)
    # The pretrained - random numbers do not change when a third init is added.
    two = compare.paired_inits({k: v for k, v in results.items() if k[1] != "finetuned"}, metrics=("accuracy",))
    pd.testing.assert_frame_equal(two, out[out["comparison"] == "pretrained − random"].reset_index(drop=True))


def test_paired_inits_refuses_unpaired_results():
    bad = _folds([0.9, 0.8, 0.85], [0.1] * 3)
    with pytest.raises(ValueError, match="m: pretrained and random .* cannot be paired"):
        compare.paired_inits({("m", "pretrained"): _folds([0.9] * 4, [0.1] * 4), ("m", "random"): bad})
    with pytest.raises(ValueError, match=r"different splits \(m/pretrained: splits_sha256 splits-A; "
                                         r"m/random: splits_sha256 B\)"):
        compare.paired_inits({("m", "pretrained"): _result(0.9), ("m", "random"): _result(0.5, sha="B")})
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['n_test', 'n_train'\]"):
        compare.paired_inits({("m", "pretrained"): _folds([0.9] * 4, [0.1] * 4).drop(columns=["n_train", "n_test"]),
                              ("m", "random"): _folds([0.9] * 4, [0.1] * 4)})
    # Nothing to pair: an empty table, not an error.
    assert compare.paired_inits({("m", "pretrained"): _result(0.9), ("pixels", "none"): _result(0.5)}).empty


def test_results_scored_on_different_splits_are_refused():
    """Shared folds are a hard rule: one model scored on other splits stops every table that puts results side by
    side, even when no pair of inits crosses the two fingerprints, and the error says who differs and what to do."""
    results = {("clip", "pretrained"): _result(0.6), ("clip", "random"): _result(0.3),
               ("magvit", "pretrained"): _result(0.9, sha="other"), ("pixels", "none"): _result(0.5)}
    message = (r"different splits \(clip/pretrained, clip/random, pixels/none: splits_sha256 splits-A; "
               r"magvit/pretrained: splits_sha256 other\).*rerun rule probe for all models with the same probe config")
    for table in (compare.model_table, compare.paired_inits):
        with pytest.raises(ValueError, match=message):
            table(results)
    del results[("magvit", "pretrained")]
    assert len(compare.model_table(results)) == 3
    assert compare.paired_inits(results)["model"].unique().tolist() == ["clip"]


def test_model_table_values_and_order():
    results = {("clip", "random"): _result(0.3), ("clip", "pretrained"): _result(0.6),
               ("magvit", "finetuned"): _result(0.55), ("magvit", "random"): _result(0.7),
               ("magvit", "pretrained"): _result(0.5), ("pixels", "none"): _result(0.65)}
    table = compare.model_table(results)
    assert list(zip(table["model"], table["init"])) == [
        ("magvit", "pretrained"), ("magvit", "random"), ("magvit", "finetuned"), ("pixels", "none"),
        ("clip", "pretrained"), ("clip", "random")]
    row = table.iloc[0]
    assert (row["accuracy_mean"], row["accuracy_ci_low"], row["macro_f1_mean"], row["knn_accuracy_mean"]) == (
        pytest.approx((0.5, 0.45, 0.48, 0.4)))
    assert (row["chance_uniform"], row["chance_majority"], row["n_splits"]) == (pytest.approx(1 / 3), 0.4, 4)


def _per_video(psnr, mse, ssim, order):
    frame = pd.DataFrame({"index": [0, 1, 2], "class_name": ["a", "b", "c"], "mse": mse, "psnr": psnr, "ssim": ssim})
    return frame.iloc[order].reset_index(drop=True)


PER_VIDEO = {"pretrained": ([30.0, 32.0, math.inf], [0.01, 0.02, 0.0], [0.8, 0.9, 1.0], [0, 1, 2]),
             "random": ([20.0, 21.0, 22.0], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [2, 0, 1]),
             "finetuned": ([34.0, 31.0, 30.0], [0.005, 0.03, 0.04], [0.95, 0.85, 0.8], [1, 2, 0])}
CODEBOOK = {"pretrained": {"distinct": 900, "perplexity": 800.0, "fraction_used": 0.9},
            "random": {"distinct": 100, "perplexity": 50.0, "fraction_used": 0.1},
            "finetuned": {"distinct": 1000, "perplexity": 950.0, "fraction_used": 1.0}}


def _recon_inputs(*inits):
    return {i: _per_video(*PER_VIDEO[i]) for i in inits}, {i: CODEBOOK[i] for i in inits}


def test_reconstruction_table_paired_by_video():
    per_video, codebook = _recon_inputs("pretrained", "random")
    table = compare.reconstruction_table(per_video, codebook).set_index("metric")
    assert table.loc["mse", "pretrained_minus_random_mean"] == pytest.approx(np.mean([-0.09, -0.18, -0.3]))
    assert table.loc["psnr", "pretrained_minus_random_mean"] == pytest.approx(
        np.mean([10.0, 11.0, PSNR_CAP_DB - 22.0]))
    assert table.loc["psnr", "pretrained_n_capped"] == 1 and table.loc["psnr", "random_n_capped"] == 0
    assert table.loc["ssim", "random_mean"] == pytest.approx(0.2)
    assert table.loc["ssim", ["pretrained_minus_random_mean", "pretrained_minus_random_ci_low"]].tolist() == (
        pytest.approx([0.7, 0.7]))  # no spread
    assert table.loc["codebook_distinct", "pretrained_minus_random_mean"] == 800
    assert math.isnan(table.loc["codebook_perplexity", "pretrained_minus_random_ci_low"])
    assert not any("finetuned" in c for c in table.columns)
    with pytest.raises(ValueError, match="same videos"):
        compare.reconstruction_table({"pretrained": per_video["pretrained"], "random": per_video["random"][:2]})
    with pytest.raises(ValueError, match=r"at least two; got \['pretrained'\]"):
        compare.reconstruction_table({"pretrained": per_video["pretrained"]})
    with pytest.raises(ValueError, match=r"codebook stats are for inits \['pretrained'\]"):
        compare.reconstruction_table(per_video, {"pretrained": codebook["pretrained"]})


def test_reconstruction_table_three_inits():
    per_video, codebook = _recon_inputs("pretrained", "random", "finetuned")
    table = compare.reconstruction_table(per_video, codebook)
    assert [c.removesuffix("_mean") for c in table.columns if c.endswith("_mean")] == [
        "pretrained", "random", "finetuned", "pretrained_minus_random", "finetuned_minus_random",
        "finetuned_minus_pretrained"]
    table = table.set_index("metric")
    # Video by video (index 0, 1, 2; the tables list them in different orders): finetuned 34, 31, 30 dB,
    # pretrained 30, 32, infinite (capped).
    fin_pre = np.array([4.0, -1.0, 30.0 - PSNR_CAP_DB])
    half = T975_DF2 * fin_pre.std(ddof=1) / math.sqrt(3)  # plain paired t-interval over videos
    assert table.loc["psnr", ["finetuned_minus_pretrained_mean", "finetuned_minus_pretrained_ci_low",
                              "finetuned_minus_pretrained_ci_high"]].tolist() == pytest.approx(
        [fin_pre.mean(), fin_pre.mean() - half, fin_pre.mean() + half])
    assert table.loc["mse", "finetuned_minus_random_mean"] == pytest.approx(np.mean([-0.095, -0.17, -0.26]))
    assert table.loc["ssim", "finetuned_mean"] == pytest.approx(np.mean([0.95, 0.85, 0.8]))
    assert table.loc["psnr", "finetuned_n_capped"] == 0
    assert table.loc["codebook_perplexity", "finetuned_minus_pretrained_mean"] == 150.0
    assert table.loc["codebook_fraction_used", "finetuned_minus_random_mean"] == pytest.approx(0.9)
    # Adding finetuned leaves every pretrained/random number as it was.
    two = compare.reconstruction_table(*_recon_inputs("pretrained", "random"))
    pd.testing.assert_frame_equal(two, table.reset_index()[two.columns])


def test_to_markdown_without_tabulate(monkeypatch):
    monkeypatch.setitem(sys.modules, "tabulate", None)  # importing tabulate now fails
    df = pd.DataFrame({"model": ["a|b", "c"], "n": [3, 4], "acc_mean": [0.91234, np.nan],
                       "acc_ci_low": [0.8, np.nan], "acc_ci_high": [1.0, np.nan], "big": [2296.4, 1e-5]})
    assert compare.to_markdown(df) == (
        "| model | n | acc (95% CI) | big |\n"
        "| :--- | ---: | ---: | ---: |\n"
        "| a\\|b | 3 | 0.912 [0.8, 1] | 2296 |\n"
        "| c | 4 |  | 1e-05 |\n")
    assert compare.to_markdown(df, collapse_ci=False).splitlines()[0] == (
        "| model | n | acc_mean | acc_ci_low | acc_ci_high | big |")


def test_figures_are_written_and_deterministic(tmp_path):
    # Three MagVit inits: every figure loops over the inits present.
    results = {("magvit", "pretrained"): _result(0.9), ("magvit", "random"): _result(0.5),
               ("magvit", "finetuned"): _result(0.95), ("clip", "pretrained"): _result(0.6),
               ("clip", "random"): _result(0.4), ("pixels", "none"): _result(0.7)}
    figures.accuracy_bars(compare.model_table(results), tmp_path / "acc.png", title_note="stand-in weights")
    figures.accuracy_bars(compare.model_table(results), tmp_path / "acc2.png", title_note="stand-in weights")
    paired = compare.paired_inits(results)
    figures.paired_difference_plot(paired, tmp_path / "diff.png", title_note="x")
    with pytest.raises(ValueError, match="no rows for metric 'knn'"):
        figures.paired_difference_plot(paired, tmp_path / "bad.png", metric="knn")
    figures.confusion_grid(results, tmp_path / "cm.png")
    per_video, _ = _recon_inputs("pretrained", "random", "finetuned")
    figures.reconstruction_distributions(per_video, tmp_path / "dist.png")
    rng = np.random.default_rng(0)
    videos = rng.integers(0, 255, size=(4, 5, 16, 16, 3), dtype=np.uint8)
    labels = pd.DataFrame({"index": range(4), "label": [0, 1, 0, 1], "class_name": ["a", "b", "a", "b"]})
    recons = {"pretrained": videos.copy(), "random": rng.integers(0, 255, size=videos.shape, dtype=np.uint8),
              "finetuned": videos // 2}
    figures.reconstruction_panel(videos, labels, recons, tmp_path / "panel.png", n_frames=3)
    for name in ("acc", "diff", "cm", "dist", "panel"):
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000, name
    assert (tmp_path / "acc.png").read_bytes() == (tmp_path / "acc2.png").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(  # no temporary files left behind
        ["acc.png", "acc2.png", "diff.png", "cm.png", "dist.png", "panel.png"])
