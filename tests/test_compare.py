import math
import sys

import numpy as np
import pandas as pd
import pytest
from probe_results import RATIO, both_controls, probe_result

from trajbench import compare
from trajbench.metrics import PSNR_CAP_DB, mean_ci
from trajbench.probe import FOLD_COLUMNS

T975_DF3 = 3.182446305284263  # scipy.stats.t.ppf(0.975, 3), from tables
T975_DF2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2)


def _folds(logreg_acc, knn_acc, shuffle_seed=None):
    rows = [{"repeat": f // 2, "fold": f % 2, "probe": probe, "accuracy": acc, "macro_f1": acc - 0.01,
             "C": 1.0 if probe == "logreg" else np.nan, "n_train": 80, "n_test": 20}
            for probe, accs in (("logreg", logreg_acc), ("knn", knn_acc)) for f, acc in enumerate(accs)]
    frame = pd.DataFrame(rows, columns=FOLD_COLUMNS)
    return frame if shuffle_seed is None else frame.sample(frac=1, random_state=shuffle_seed)


def _ordered(**results):
    """{(model, init, "ordered"): result} from keyword arguments model__init=result."""
    return {(*key.split("__"), "ordered"): res for key, res in results.items()}


def test_paired_inits_two_inits_pairs_by_split():
    pre, rnd = [0.9, 0.8, 0.85, 0.95], [0.7, 0.75, 0.8, 0.7]
    results = _ordered(magvit__pretrained=_folds(pre, [0.1] * 4),
                       magvit__random=_folds(rnd, [0.9] * 4, shuffle_seed=0),  # row order must not matter
                       pixels__none=_folds(rnd, rnd))
    # A shuffled-clip result is not an init: paired_inits reads the ordered control only.
    results[("magvit", "random", "shuffled")] = _folds([0.0] * 4, [0.0] * 4)
    out = compare.paired_inits(results)
    assert out["probe"].tolist() == ["logreg", "logreg", "knn", "knn"]
    assert out["metric"].tolist() == ["accuracy", "macro_f1"] * 2
    assert out["comparison"].tolist() == ["pretrained − random"] * 4 and set(out["model"]) == {"magvit"}
    row = out.iloc[0]
    diffs = np.array(pre) - np.array(rnd)  # [0.2, 0.05, 0.05, 0.25]
    half = T975_DF3 * math.sqrt(diffs.var(ddof=1) * (1 / 4 + 20 / 80))  # Nadeau-Bengio corrected
    assert row["diff_mean"] == pytest.approx(0.1375)
    assert (row["diff_ci_low"], row["diff_ci_high"]) == pytest.approx((0.1375 - half, 0.1375 + half))
    assert (row["a"], row["b"]) == ("pretrained", "random")
    assert (row["a_mean"], row["b_mean"], row["n_splits"]) == pytest.approx((0.875, 0.7375, 4))
    # kNN rows are scored separately and here favour random: the sign flips.
    assert out.iloc[2]["diff_mean"] == pytest.approx(-0.8)
    knn = compare.paired_inits(results, probes=("knn",))
    pd.testing.assert_frame_equal(knn, out[out["probe"] == "knn"].reset_index(drop=True))


def test_paired_inits_every_probe_of_the_results():
    pre = probe_result([0.9, 0.8, 0.85, 0.95], attentive=[0.6, 0.7, 0.65, 0.75])
    rnd = probe_result([0.7, 0.75, 0.8, 0.7], attentive=[0.7, 0.8, 0.6, 0.7])
    out = compare.paired_inits(_ordered(m__pretrained=pre, m__random=rnd), metrics=("accuracy",))
    assert out["probe"].tolist() == ["logreg", "knn", "attentive"]
    attentive = out.iloc[2]
    diffs = np.array([-0.1, -0.1, 0.05, 0.05])
    assert (attentive["diff_mean"], attentive["diff_ci_low"], attentive["diff_ci_high"]) == pytest.approx(
        mean_ci(diffs, test_train_ratio=RATIO))
    # A probe that ran for one init only is not paired.
    out = compare.paired_inits(_ordered(m__pretrained=pre, m__random=probe_result([0.7] * 4)))
    assert "attentive" not in set(out["probe"])


def test_paired_inits_three_inits():
    pre, rnd, fin = [0.9, 0.8, 0.85, 0.95], [0.7, 0.75, 0.8, 0.7], [0.95, 0.9, 0.8, 1.0]
    results = _ordered(magvit__random=_folds(rnd, [0.1] * 4), magvit__finetuned=_folds(fin, [0.1] * 4),
                       magvit__pretrained=_folds(pre, [0.1] * 4, shuffle_seed=1),
                       clip__pretrained=_folds([0.99] * 4, [0.1] * 4), clip__random=_folds(rnd, [0.1] * 4),
                       pixels__none=_folds(rnd, rnd))
    out = compare.paired_inits(results, metrics=("accuracy",), probes=("logreg",))
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
    two = compare.paired_inits({k: v for k, v in results.items() if k[1] != "finetuned"}, metrics=("accuracy",),
                               probes=("logreg",))
    pd.testing.assert_frame_equal(two, out[out["comparison"] == "pretrained − random"].reset_index(drop=True))


def test_paired_inits_refuses_unpairable_tables():
    with pytest.raises(ValueError, match=r"m/pretrained and m/random per-split tables cover different"):
        compare.paired_inits(_ordered(m__pretrained=_folds([0.9] * 4, [0.1] * 4),
                                      m__random=_folds([0.9] * 3, [0.1] * 3)))
    with pytest.raises(ValueError, match=r"different splits \(m/pretrained/ordered: splits_sha256 splits-A; "
                                         r"m/random/ordered: splits_sha256 B\)"):
        compare.paired_inits(_ordered(m__pretrained=probe_result(0.9), m__random=probe_result(0.5, sha="B")))
    with pytest.raises(ValueError, match=r"per-split table for m/pretrained lacks column\(s\) \['n_test', 'n_train'\]; "
                                         r"use ProbeResult.folds_to_csv output"):
        compare.paired_inits(_ordered(m__pretrained=_folds([0.9] * 4, [0.1] * 4).drop(columns=["n_train", "n_test"]),
                                      m__random=_folds([0.9] * 4, [0.1] * 4)))
    # Nothing to pair: an empty table, not an error.
    assert compare.paired_inits(_ordered(m__pretrained=probe_result(0.9), pixels__none=probe_result(0.5))).empty

    # Same number of splits and test sizes, other (repeat, fold) ids: still not pairable.
    shifted = _folds([0.9] * 4, [0.1] * 4).assign(repeat=lambda f: f["repeat"] + 1)
    with pytest.raises(ValueError, match="cover different"):
        compare.paired_inits(_ordered(m__pretrained=_folds([0.9] * 4, [0.1] * 4), m__random=shifted))
    # A per-split table (no fingerprint) listed first does not end the fingerprint check of the results after it.
    with pytest.raises(ValueError, match="different splits"):
        compare.paired_inits(_ordered(a__none=_folds([0.9] * 4, [0.1] * 4), m__pretrained=probe_result(0.9),
                                      m__random=probe_result(0.5, sha="B")))


def test_paired_inits_model_order_uses_the_first_probe_and_metric():
    """Models run best first by the first probe's mean on the first metric, ties by name; kNN does not rank."""
    results = _ordered(a__pretrained=_folds([0.6] * 4, [0.99] * 4), a__random=_folds([0.5] * 4, [0.99] * 4),
                       c__pretrained=_folds([0.8] * 4, [0.1] * 4), c__random=_folds([0.5] * 4, [0.1] * 4),
                       b__pretrained=_folds([0.8] * 4, [0.1] * 4), b__random=_folds([0.5] * 4, [0.1] * 4))
    out = compare.paired_inits(results, metrics=("accuracy",))
    assert list(zip(out["model"], out["probe"])) == [("b", "logreg"), ("b", "knn"), ("c", "logreg"), ("c", "knn"),
                                                     ("a", "logreg"), ("a", "knn")]
    # With macro-F1 second, the ranking still reads accuracy: a's high macro-F1 does not lift it.
    results[("a", "pretrained", "ordered")] = results[("a", "pretrained", "ordered")].assign(macro_f1=0.99)
    assert compare.paired_inits(results)["model"].unique().tolist() == ["b", "c", "a"]


def test_paired_inits_a_probe_missing_from_one_pair_skips_that_pair_only():
    fin = probe_result([0.9] * 4, attentive=[0.8, 0.7, 0.8, 0.7])
    rnd = probe_result([0.5] * 4, attentive=[0.6, 0.6, 0.5, 0.5])
    out = compare.paired_inits(_ordered(m__pretrained=probe_result([0.7] * 4), m__random=rnd, m__finetuned=fin),
                               metrics=("accuracy",), probes=("attentive",))
    assert out["comparison"].tolist() == ["finetuned − random"]
    assert out["diff_mean"].tolist() == pytest.approx([0.2])


def _controls(**scores):
    """Both controls of model__init=(ordered logreg, shuffled logreg) with the given attentive accuracies."""
    out = {}
    for key, (ordered, shuffled) in scores.items():
        out |= both_controls(*key.split("__"), {"logreg": ordered}, {"logreg": shuffled})
    return out


def test_results_scored_on_different_splits_are_refused():
    """Shared folds are a hard rule: one model or control scored on other splits stops every table that puts results
    side by side, even when no pair crosses the two fingerprints, and the error says who differs and what to do."""
    results = _controls(clip__pretrained=(0.6, 0.5), clip__random=(0.3, 0.3), pixels__none=(0.5, 0.5))
    results[("clip", "random", "shuffled")] = probe_result(0.3, control="shuffled", sha="other")
    message = (r"different splits \(clip/pretrained/ordered, clip/pretrained/shuffled, clip/random/ordered, "
               r"pixels/none/ordered, pixels/none/shuffled: splits_sha256 splits-A; clip/random/shuffled: "
               r"splits_sha256 other\).*rerun rule probe for all models with the same probe config")
    for table in (compare.model_table, compare.paired_inits, compare.paired_models):
        with pytest.raises(ValueError, match=message):
            table(results)
    # A result filed under the wrong control is refused too.
    results[("clip", "random", "shuffled")] = probe_result(0.3, control="ordered")
    with pytest.raises(ValueError, match=r"given as clip/random/shuffled records control 'ordered'"):
        compare.model_table(results)
    results[("clip", "random", "shuffled")] = probe_result(0.3, control="shuffled")
    assert len(compare.model_table(results)) == 3
    del results[("clip", "random", "shuffled")]
    with pytest.raises(ValueError, match=r"no probe result for clip/random/shuffled: every model and init is scored "
                                         r"on ordered and shuffled clips"):
        compare.model_table(results)
    del results[("pixels", "none", "ordered")]
    with pytest.raises(ValueError, match=r"no probe result for clip/random/shuffled, pixels/none/ordered: "):
        compare.model_table(results)


def test_model_table_values_and_order():
    results = _controls(clip__random=(0.3, 0.3), clip__pretrained=(0.6, 0.5), magvit__finetuned=(0.55, 0.5),
                        magvit__random=(0.7, 0.6), magvit__pretrained=(0.5, 0.5), pixels__none=(0.65, 0.6))
    table = compare.model_table(results)
    assert list(zip(table["model"], table["init"])) == [
        ("magvit", "pretrained"), ("magvit", "random"), ("magvit", "finetuned"), ("pixels", "none"),
        ("clip", "pretrained"), ("clip", "random")]
    row = table.iloc[4]  # clip/pretrained
    assert (row["logreg_accuracy_mean"], row["logreg_shuffled_accuracy_mean"], row["logreg_macro_f1_mean"],
            row["knn_accuracy_mean"], row["logreg_order_sensitivity_mean"]) == pytest.approx((0.6, 0.5, 0.58, 0.5, 0.1))
    assert (row["chance_uniform"], row["chance_majority"], row["n_splits"]) == (pytest.approx(1 / 3), 0.4, 4)
    # An init outside compare.INIT_ORDER sorts after the known ones.
    other = compare.model_table(_controls(clip__pretrained=(0.6, 0.5), clip__distilled=(0.5, 0.5)))
    assert other["init"].tolist() == ["pretrained", "distilled"]
    # No attentive probe ran: its columns are there, empty.
    assert table.filter(like="attentive_").isna().all().all() and table.filter(like="attentive_").shape[1] == 12
    assert list(table.columns[:3]) == ["model", "init", "n_splits"] and len(table.columns) == 3 + 2 * 12 + 3 + 2
    # An attentive probe on ordered clips only has no order sensitivity: empty too.
    results = both_controls("m", "pretrained", {"logreg": 0.9, "attentive": 0.8}, {"logreg": 0.5})
    row = compare.model_table(results).iloc[0]
    assert math.isnan(row["attentive_accuracy_mean"]) and row["logreg_order_sensitivity_mean"] == pytest.approx(0.4)
    results[("m", "pretrained", "shuffled")].folds.pop()
    with pytest.raises(ValueError, match="m/pretrained/ordered and m/pretrained/shuffled per-split tables cover"):
        compare.model_table(results)


def test_model_table_order_sensitivity_is_paired_by_split():
    ordered = {"logreg": [0.9, 0.8, 0.85, 0.95], "attentive": [0.7, 0.9, 0.8, 0.8]}
    shuffled = {"logreg": [0.5, 0.6, 0.4, 0.5], "attentive": [0.75, 0.85, 0.8, 0.7]}
    row = compare.model_table(both_controls("m", "pretrained", ordered, shuffled)).iloc[0]
    for probe, diffs in (("logreg", [0.4, 0.2, 0.45, 0.45]), ("attentive", [-0.05, 0.05, 0.0, 0.1])):
        mean = float(np.mean(diffs))
        half = T975_DF3 * math.sqrt(np.var(diffs, ddof=1) * (1 / 4 + RATIO))
        assert [row[f"{probe}_order_sensitivity_{p}"] for p in compare.CI_PARTS] == pytest.approx(
            [mean, mean - half, mean + half]), probe
        assert row[f"{probe}_accuracy_mean"] - row[f"{probe}_shuffled_accuracy_mean"] == pytest.approx(mean)
    # Pairs are matched by (repeat, fold), not by position in the record list.
    results = both_controls("m", "pretrained", ordered, shuffled)
    results[("m", "pretrained", "shuffled")].folds.reverse()
    pd.testing.assert_series_equal(compare.model_table(results).iloc[0], row)
    assert row["attentive_accuracy_ci_low"] == pytest.approx(mean_ci(ordered["attentive"], test_train_ratio=RATIO)[1])


def test_paired_models_pairs_every_representation_within_an_init_kind():
    results = {}
    scores = {("videomae", "pretrained"): [0.9, 0.8, 0.85, 0.95], ("clip", "pretrained"): [0.7, 0.9, 0.8, 0.8],
              ("videomae", "random"): [0.4, 0.5, 0.4, 0.5], ("clip", "random"): [0.3, 0.35, 0.3, 0.3],
              ("magvit", "finetuned"): [0.6, 0.6, 0.7, 0.7], ("pixels", "none"): [0.5, 0.4, 0.45, 0.45],
              ("kinematics", "none"): [0.3, 0.35, 0.4, 0.35]}
    for (model, init), acc in scores.items():
        results |= both_controls(model, init, {"logreg": acc, "attentive": 1 - np.array(acc)},
                                 {"logreg": [0.0] * 4, "attentive": [0.0] * 4})
    pairs = compare.paired_models(results)
    assert list(pairs.columns) == compare.PAIR_COLUMNS
    blocks = list(dict.fromkeys(zip(pairs["init_kind"], pairs["probe"])))
    assert blocks == [(k, p) for k in ("pretrained", "random", "finetuned") for p in ("logreg", "attentive")]
    pre = pairs[(pairs["init_kind"] == "pretrained") & (pairs["probe"] == "logreg")]
    # Four representations (two models at pretrained, two baselines), each pair once, the better one as a.
    assert list(zip(pre["a"], pre["b"])) == [("videomae", "clip"), ("videomae", "pixels"),
                                             ("videomae", "kinematics"), ("clip", "pixels"),
                                             ("clip", "kinematics"), ("pixels", "kinematics")]
    row = pre.iloc[3]  # clip - pixels, by hand
    diffs = np.array([0.2, 0.5, 0.35, 0.35])
    half = T975_DF3 * math.sqrt(diffs.var(ddof=1) * (1 / 4 + RATIO))
    assert (row["a_init"], row["b_init"], row["n_splits"]) == ("pretrained", "none", 4)
    assert (row["a_mean"], row["b_mean"]) == pytest.approx((0.8, 0.45))
    assert [row["diff_mean"], row["diff_ci_low"], row["diff_ci_high"]] == pytest.approx(
        [0.35, 0.35 - half, 0.35 + half])
    # The attentive block ranks by its own accuracy (here 1 - logreg): the order reverses.
    att = pairs[(pairs["init_kind"] == "pretrained") & (pairs["probe"] == "attentive")]
    assert att.iloc[0][["a", "b"]].tolist() == ["kinematics", "pixels"]
    fin = pairs[(pairs["init_kind"] == "finetuned") & (pairs["probe"] == "logreg")]
    assert list(zip(fin["a"], fin["b"])) == [("magvit", "pixels"), ("magvit", "kinematics"),
                                             ("pixels", "kinematics")]
    assert fin.iloc[0]["diff_mean"] == pytest.approx(0.65 - 0.45)


def test_paired_models_ties_missing_kinds_and_unpairable_tables():
    results = _ordered(alpha__random=_folds([0.5] * 4, [0.1] * 4), zeta__none=_folds([0.5] * 4, [0.1] * 4))
    # No model at init pretrained: the random block is still there; a tie goes by name, whatever the init.
    pairs = compare.paired_models(results, probes=("logreg",))
    assert pairs[["init_kind", "a", "b", "diff_mean"]].values.tolist() == [["random", "alpha", "zeta", 0.0]]
    # Baselines alone: nothing to pair, the columns all the same.
    empty = compare.paired_models(_ordered(zeta__none=_folds([0.5] * 4, [0.1] * 4)))
    assert empty.empty and list(empty.columns) == compare.PAIR_COLUMNS
    with pytest.raises(ValueError, match="alpha/random and zeta/none per-split tables cover different"):
        compare.paired_models(results | _ordered(zeta__none=_folds([0.5] * 3, [0.1] * 3)))
    with pytest.raises(ValueError, match=r"per-split table for zeta/none lacks column\(s\) \['n_test'\]"):
        compare.paired_models(results | _ordered(zeta__none=_folds([0.5] * 4, [0.1] * 4).drop(columns="n_test")))


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
    assert table.loc[["mse", "psnr", "ssim"], "n"].tolist() == [3, 3, 3]
    assert table.loc["ssim", "random_mean"] == pytest.approx(0.2)
    assert table.loc["ssim", ["pretrained_minus_random_mean", "pretrained_minus_random_ci_low"]].tolist() == (
        pytest.approx([0.7, 0.7]))  # no spread
    assert table.loc["codebook_distinct", "pretrained_minus_random_mean"] == 800
    assert math.isnan(table.loc["codebook_perplexity", "pretrained_minus_random_ci_low"])
    assert not any("finetuned" in c for c in table.columns)
    with pytest.raises(ValueError, match="same videos"):
        compare.reconstruction_table({"pretrained": per_video["pretrained"], "random": per_video["random"][:2]})
    twice = pd.concat([per_video["random"], per_video["random"].iloc[:1]], ignore_index=True)
    with pytest.raises(ValueError, match="metrics for 'random' list some video index more than once"):
        compare.reconstruction_table({"pretrained": per_video["pretrained"], "random": twice})
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


def test_to_markdown_intervals_flags_and_large_numbers():
    df = pd.DataFrame({"x_mean": [0.5, 0.25, np.nan], "accuracy_mean": [0.5, 0.25, np.nan],
                       "accuracy_ci_low": [0.4, np.nan, 0.1], "accuracy_ci_high": [0.6, 0.3, 0.2],
                       "f1_mean": [0.5, 0.5, 0.5], "f1_ci_low": [0.4, 0.4, 0.4],
                       "ok": [True, False, True], "big": [1000.0, 31.25, 999.0]})
    # x_mean has no interval and f1 only a low end: both stay as they are; a row whose interval lacks an end, or whose
    # mean is missing, shows the mean alone.
    assert compare.to_markdown(df).splitlines() == [
        "| x_mean | accuracy (95% CI) | f1_mean | f1_ci_low | ok | big |",
        "| ---: | ---: | ---: | ---: | :--- | ---: |",
        "| 0.5 | 0.5 [0.4, 0.6] | 0.5 | 0.4 | True | 1000 |",
        "| 0.25 | 0.25 | 0.5 | 0.4 | False | 31.2 |",
        "|  |  | 0.5 | 0.4 | True | 999 |"]
    bare = pd.DataFrame({"name": ["a"], "mean": [0.5], "ci_low": [0.25], "ci_high": [0.75]})
    assert compare.to_markdown(bare).splitlines()[0::2] == ["| name | mean (95% CI) |", "| a | 0.5 [0.25, 0.75] |"]


def test_reconstruction_figures_draw_the_per_video_numbers(tmp_path):
    from trajbench import figures

    per_video, _ = _recon_inputs("pretrained", "random", "finetuned")
    points = figures.reconstruction_distributions(per_video, tmp_path / "dist.png")
    assert points["metric"].unique().tolist() == ["psnr", "ssim", "mse"]  # panel order
    for metric in ("psnr", "ssim", "mse"):
        for pos, init in enumerate(per_video, start=1):
            drawn = points[(points["metric"] == metric) & (points["init"] == init)]
            expected = per_video[init][metric].to_numpy()
            # The identical video (infinite PSNR) is drawn at the cap.
            assert drawn["value"].to_numpy() == pytest.approx(np.where(np.isinf(expected), PSNR_CAP_DB, expected))
            assert ((drawn["x"] - pos).abs() <= 0.15).all() and drawn["x"].nunique() == 3  # jittered around its box
    figures.reconstruction_distributions(per_video, tmp_path / "dist_again.png")
    figures.reconstruction_distributions(per_video, tmp_path / "dist_seed1.png", seed=1)
    assert (tmp_path / "dist.png").read_bytes() == (tmp_path / "dist_again.png").read_bytes()
    assert (tmp_path / "dist.png").read_bytes() != (tmp_path / "dist_seed1.png").read_bytes()

    rng = np.random.default_rng(0)
    videos = rng.integers(0, 255, size=(4, 5, 16, 16, 3), dtype=np.uint8)
    labels = pd.DataFrame({"index": range(4), "label": [1, 0, 1, 0], "class_name": ["b", "a", "b", "a"]})
    recons = {"pretrained": videos.copy(), "random": rng.integers(0, 255, size=videos.shape, dtype=np.uint8),
              "finetuned": videos // 2}
    cells = figures.reconstruction_panel(videos, labels, recons, tmp_path / "panel.png", n_frames=3)
    # One row per class, label order, its first video; frames spread over the clip, first and last included.
    assert list(zip(cells["class_name"], cells["video"], cells["column"])) == [
        (name, video, column) for name, video in (("a", 1), ("b", 0))
        for column in ("original", "pretrained", "random", "finetuned")]
    assert set(cells["frames"]) == {(0, 2, 4)}
    psnr = cells.set_index(["video", "column"])["psnr"]
    assert np.isnan(psnr[(1, "original")]) and psnr[(1, "pretrained")] == math.inf
    for video in (0, 1):
        for init in ("random", "finetuned"):
            diff = videos[video].astype(np.float64) - recons[init][video]
            assert psnr[(video, init)] == pytest.approx(10 * np.log10(255**2 / np.mean(diff**2)))
    figures.reconstruction_panel(videos, labels, recons, tmp_path / "panel_again.png", n_frames=3)
    recons["finetuned"] = videos // 3
    figures.reconstruction_panel(videos, labels, recons, tmp_path / "panel_other.png", n_frames=3)
    assert (tmp_path / "panel.png").read_bytes() == (tmp_path / "panel_again.png").read_bytes()
    assert (tmp_path / "panel.png").read_bytes() != (tmp_path / "panel_other.png").read_bytes()
    with pytest.raises(ValueError, match=r"reconstructions for 'random' have shape \(4, 4, 16, 16, 3\)"):
        figures.reconstruction_panel(videos, labels, {"random": videos[:, :4]}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="labels table has 3 rows but there are 4 videos"):
        figures.reconstruction_panel(videos, labels[:3], recons, tmp_path / "bad.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # no temporary files left, nothing for the refused
        "dist.png", "dist_again.png", "dist_seed1.png", "panel.png", "panel_again.png", "panel_other.png"]
