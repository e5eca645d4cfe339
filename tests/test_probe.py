import json

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from trajbench import probe
from trajbench.metrics import mean_ci

N_CLASSES, PER_CLASS = 4, 30
LABELS = np.repeat(np.arange(N_CLASSES), PER_CLASS)
NAMES = ["linear", "circle", "zigzag", "still"]
PARAMS = dict(Cs=[1.0, 0.01, 0.1], inner_folds=3, pca_dim=8, knn_k=5, seed=7)


def _separable(seed=0, dim=20):
    rng = np.random.default_rng(seed)
    return (6 * rng.normal(size=(N_CLASSES, dim)))[LABELS] + rng.normal(size=(LABELS.size, dim))


@pytest.fixture(scope="module", autouse=True)
def single_threaded_blas():
    # Thousands of tiny lbfgs fits: BLAS threads only add contention on a shared CI machine.
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def splits():
    return probe.make_splits(LABELS, folds=4, repeats=2, seed=3)


@pytest.fixture(scope="module")
def separable_result(splits):
    return probe.run_probe(_separable(), LABELS, splits, class_names=NAMES, **PARAMS)


def test_splits_are_deterministic_stratified_partitions(splits):
    again = probe.make_splits(LABELS, folds=4, repeats=2, seed=3)
    assert [(s.repeat, s.fold) for s in splits] == [(r, f) for r in range(2) for f in range(4)]
    for a, b in zip(splits, again):
        np.testing.assert_array_equal(a.train_idx, b.train_idx)
        np.testing.assert_array_equal(a.test_idx, b.test_idx)
    for repeat in range(2):
        tests = [s.test_idx for s in splits if s.repeat == repeat]
        np.testing.assert_array_equal(np.sort(np.concatenate(tests)), np.arange(LABELS.size))
        for s in splits:
            assert np.intersect1d(s.train_idx, s.test_idx).size == 0
            # Stratified: 30 per class over 4 folds -> 7 or 8 of each class in every test fold.
            assert set(np.bincount(LABELS[s.test_idx])) <= {7, 8}
    # Repeats are reshuffled, and another seed gives other splits.
    assert not np.array_equal(splits[0].test_idx, splits[4].test_idx)
    other = probe.make_splits(LABELS, folds=4, repeats=2, seed=4)
    assert probe.splits_sha256(other) != probe.splits_sha256(splits)
    assert probe.splits_sha256(again) == probe.splits_sha256(splits)
    # The fingerprint is of the indices as little-endian int64, whatever array type holds them (int32 on Windows).
    narrow = [s._replace(train_idx=s.train_idx.astype(">i4"), test_idx=s.test_idx.astype(">i4")) for s in splits]
    assert probe.splits_sha256(narrow) == probe.splits_sha256(splits)


def test_split_errors():
    with pytest.raises(ValueError, match=r"fewer members than folds=5.*\{1: 3\}"):
        probe.make_splits(np.array([0] * 10 + [1] * 3), folds=5, repeats=1, seed=0)
    with pytest.raises(ValueError, match=r"class\(es\) \[1\] have no members"):
        probe.make_splits(np.array([0] * 5 + [2] * 5), folds=2, repeats=1, seed=0)
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] have no members"):
        probe.make_splits(np.array([0] * 5 + [1] * 5), folds=2, repeats=1, seed=0, num_classes=3)
    with pytest.raises(ValueError, match="integer class ids"):
        probe.make_splits(np.array(["a", "b"] * 5), folds=2, repeats=1, seed=0)


def test_separable_features_are_classified_perfectly(separable_result):
    s = separable_result.summary
    assert s["logreg"]["accuracy"]["mean"] == 1.0
    assert s["logreg"]["macro_f1"]["mean"] == 1.0
    assert s["knn"]["accuracy"]["mean"] == 1.0
    assert separable_result.confusion == (np.diag([PER_CLASS * 2] * N_CLASSES)).tolist()
    assert separable_result.confusion_normalized == np.eye(N_CLASSES).tolist()
    assert set(separable_result.chosen_C) <= {0.01, 0.1, 1.0}
    assert separable_result.params["Cs"] == [0.01, 0.1, 1.0]
    assert all(f["pca_components"] == 8 for f in separable_result.folds)  # D=20 > pca_dim=8
    assert separable_result.chance == {"uniform": 0.25, "majority": 0.25}
    assert separable_result.class_names == NAMES
    assert separable_result.test_train_ratio == pytest.approx(30 / 90)


def test_noise_features_score_near_chance(splits):
    noise = np.random.default_rng(1).normal(size=(LABELS.size, 6))
    result = probe.run_probe(noise, LABELS, splits, **PARAMS)
    for name in ("logreg", "knn"):
        assert abs(result.summary[name]["accuracy"]["mean"] - 0.25) < 0.12
    assert result.folds[0]["pca_components"] is None  # D=6 <= pca_dim: no PCA
    assert result.class_names == ["0", "1", "2", "3"]


def test_splits_do_not_depend_on_features(splits, separable_result):
    noise = np.random.default_rng(2).normal(size=(LABELS.size, 30))
    result = probe.run_probe(noise, LABELS, splits[:2], **PARAMS)
    assert result.splits_sha256 == probe.splits_sha256(splits[:2])
    assert separable_result.splits_sha256 == probe.splits_sha256(splits)
    sep = separable_result.folds[:2]
    assert [(f["n_train"], f["n_test"]) for f in result.folds] == [(f["n_train"], f["n_test"]) for f in sep]


def test_summary_intervals_use_the_nadeau_bengio_correction(splits):
    """On noisy (not separable) features the scores vary by split; every summary interval is mean_ci of the
    per-split scores with test_train_ratio = n_test / n_train (1/3 with 4 folds), wider than the plain t-interval."""
    rng = np.random.default_rng(5)
    x = (0.8 * rng.normal(size=(N_CLASSES, 10)))[LABELS] + rng.normal(size=(LABELS.size, 10))
    result = probe.run_probe(x, LABELS, splits, class_names=NAMES, **PARAMS)
    ratio = 1 / 3  # 30 test / 90 train videos in every split
    assert result.test_train_ratio == pytest.approx(ratio)
    per_split = {(name, metric): [f[f"{name}_{metric}"] for f in result.folds]
                 for name in result.probes for metric in ("accuracy", "macro_f1")}
    accuracy = per_split[("logreg", "accuracy")]
    assert 0.4 < np.mean(accuracy) < 0.95 and np.std(accuracy) > 0.01  # noisy: the interval has a width
    for (name, metric), values in per_split.items():
        stat = result.summary[name][metric]
        expected = mean_ci(values, test_train_ratio=ratio)
        assert (stat["mean"], stat["ci_low"], stat["ci_high"]) == pytest.approx(expected, rel=1e-12), (name, metric)
        _, plain_low, plain_high = mean_ci(values, test_train_ratio=0.0)
        assert stat["ci_high"] - stat["ci_low"] > 1.5 * (plain_high - plain_low), (name, metric)
    recall = result.summary["logreg"]["recall"]["circle"]
    expected = mean_ci([f["logreg_recall"][1] for f in result.folds], test_train_ratio=ratio)
    assert (recall["mean"], recall["ci_low"], recall["ci_high"]) == pytest.approx(expected, rel=1e-12)


def test_probe_rule_scores_every_model_and_control_on_the_same_folds(tmp_path):
    """Rule probe, run by Snakemake for two models whose features differ in width: both controls of both models carry
    one fingerprint, the one make_splits gives from the labels and probe.folds/repeats/seed alone (folds seeded by
    anything else, such as the model name, the control or the feature width, fail here)."""
    from conftest import copy_workflow, snakemake

    work = copy_workflow(tmp_path / "work")
    cfg = {"folds": 3, "repeats": 2, "seed": 11, "Cs": [0.1, 1.0], "inner_folds": 2, "pca_dim": 4, "knn_k": 3,
           "attentive": {"epochs": 5}}
    (work / "probe.yaml").write_text(json.dumps({"probe": cfg, "dataset": {"videos_per_class": PER_CLASS}}))
    (work / "results/data").mkdir(parents=True)
    pd.DataFrame({"index": range(LABELS.size), "label": LABELS, "class_name": np.array(NAMES)[LABELS]}).to_csv(
        work / "results/data/labels.csv", index=False)
    (work / "results/env").mkdir(parents=True)
    (work / "results/env/environment.json").write_text(
        json.dumps({"choice": {"device": "cpu", "dtype": "float32", "attention": "sdpa"}}))
    rng = np.random.default_rng(0)
    targets = []
    for model, width in (("magvit", 6), ("videomae", 24)):
        folder = work / f"results/features/{model}/random"
        folder.mkdir(parents=True)
        for control in ("ordered", "shuffled"):
            np.save(folder / f"{control}.npy", rng.normal(size=(LABELS.size, width)))
            np.save(folder / f"{control}_grid.npy", rng.normal(size=(LABELS.size, 2, 4, 3)).astype(np.float16))
        targets += [f"results/probes/{model}/random/{control}.json" for control in ("ordered", "shuffled")]
    # Only rule probe may run: the features and labels above stand for everything upstream.
    snakemake(*targets, "--cores", "1", "--allowed-rules", "probe", "--configfile", "config/demo.yaml", "probe.yaml",
              cwd=work)
    results = [json.loads((work / target).read_text()) for target in targets]
    assert [r["n_features"] for r in results] == [6, 6, 24, 24]
    assert [r["control"] for r in results] == ["ordered", "shuffled"] * 2
    assert all("attentive" in r["summary"] for r in results)
    expected = probe.splits_sha256(probe.make_splits(LABELS, cfg["folds"], cfg["repeats"], cfg["seed"]))
    assert {r["splits_sha256"] for r in results} == {expected}


def test_a_chosen_C_at_the_grid_edge_is_noted(splits, caplog):
    """Separable features score perfectly at any C, so the tie goes to the smallest C of the grid in every split,
    and the result says that the search sat at its edge."""
    narrow = probe.run_probe(_separable(), LABELS, splits, **{**PARAMS, "Cs": [1e-3, 1e-2]})
    assert narrow.chosen_C == [1e-3] * len(splits)
    assert narrow.notes == [f"logreg C at the edge of the grid [0.001, 0.01] in {len(splits)} of {len(splits)} "
                            "splits; the best C may lie outside it: widen probe.Cs"]
    assert narrow.notes[0] in caplog.text
    single = probe.run_probe(_separable(), LABELS, splits, **{**PARAMS, "Cs": [1.0]})
    assert single.notes == []  # one C is a choice the user made, not a search that hit its edge


def test_majority_chance_and_recall_per_class():
    labels = np.array([0] * 12 + [1] * 6)
    x = np.random.default_rng(0).normal(size=(18, 30)) + labels[:, None] * 5.0
    result = probe.run_probe(x, labels, probe.make_splits(labels, 3, 1, 0), **{**PARAMS, "pca_dim": 20})
    assert [f["pca_components"] for f in result.folds] == [12, 12, 12]  # capped at the 12 training samples
    assert result.summary["logreg"]["accuracy"]["mean"] == 1.0
    assert result.chance == {"uniform": 0.5, "majority": pytest.approx(12 / 18)}
    assert set(result.summary["logreg"]["recall"]) == {"0", "1"}
    assert np.sum(result.confusion) == 18


def test_non_finite_features_are_rejected(splits):
    x = _separable()
    x[3, 5] = np.nan
    x[7, 5] = np.inf
    x[7, 9] = np.nan
    x[7, 11] = np.inf
    with pytest.raises(ValueError, match=r"NaN/inf in 2 of 120 rows and 3 of 20 columns"):
        probe.run_probe(x, LABELS, splits, **PARAMS)
    with pytest.raises(ValueError, match="119 rows but there are 120 labels"):
        probe.run_probe(x[:-1], LABELS, splits, **PARAMS)


def test_json_round_trip_and_byte_determinism(tmp_path, splits, separable_result):
    # Splits given as plain lists (as if read back from a file) behave like Split tuples.
    plain = [(s.repeat, s.fold, s.train_idx.tolist(), s.test_idx.tolist()) for s in splits]
    again = probe.run_probe(_separable(), LABELS, plain, class_names=NAMES, **PARAMS)
    separable_result.to_json(tmp_path / "a.json")
    again.to_json(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert probe.ProbeResult.from_json(tmp_path / "a.json") == separable_result

    separable_result.folds_to_csv(tmp_path / "folds.csv")
    folds = pd.read_csv(tmp_path / "folds.csv")
    assert list(folds.columns) == probe.FOLD_COLUMNS
    assert len(folds) == 2 * len(splits)
    assert folds[folds["probe"] == "knn"]["C"].isna().all()
    assert folds[folds["probe"] == "logreg"]["C"].tolist() == separable_result.chosen_C
    assert (folds["accuracy"] == 1.0).all()


def test_from_json_rejects_other_json(tmp_path):
    (tmp_path / "x.json").write_text('{"accuracy": 1}')
    with pytest.raises(ValueError, match=r"x\.json is not a ProbeResult JSON: keys \['accuracy', 'chance', "):
        probe.ProbeResult.from_json(tmp_path / "x.json")


TINY_LABELS = np.repeat([0, 1, 2], 4)


def _tiny(dim=3, seed=0):
    return np.random.default_rng(seed).normal(size=(TINY_LABELS.size, dim))


def test_run_probe_smallest_settings_and_exact_fold_records(tmp_path):
    """inner_folds 2, pca_dim 1 and knn_k 1 are valid; PCA runs only when the features are wider than pca_dim; the
    folds CSV keeps every digit."""
    splits = probe.make_splits(TINY_LABELS, folds=2, repeats=1, seed=0)
    params = {"Cs": [1.0], "inner_folds": 2, "knn_k": 1, "seed": 0}
    result = probe.run_probe(_tiny(), TINY_LABELS, splits, pca_dim=1, **params)
    assert [f["pca_components"] for f in result.folds] == [1, 1] and result.control == "ordered"  # the default
    # Counts stay integers (the JSON holds 3, not 3.0); every test sample is counted once.
    assert {type(n) for row in result.confusion for n in row} == {int} and np.sum(result.confusion) == 12
    same_width = probe.run_probe(_tiny(), TINY_LABELS, splits, pca_dim=3, **params)
    assert [f["pca_components"] for f in same_width.folds] == [None, None]
    same_width.folds_to_csv(tmp_path / "folds.csv")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "folds.csv"), same_width.folds_frame(), check_exact=True)
    assert not set(same_width.folds_frame()["accuracy"]) <= {0.0, 0.5, 1.0}  # digits to lose: 1/6, 2/6, ...


@pytest.mark.parametrize("change, match", [
    ({"inner_folds": 1}, (r"need inner_folds >= 2, pca_dim >= 1, knn_k >= 1 and at least one C; got inner_folds=1, "
                          r"pca_dim=3, knn_k=1, Cs=\[1\.0\]")),
    ({"pca_dim": 0}, "pca_dim=0"), ({"knn_k": 0}, "knn_k=0"), ({"Cs": []}, r"Cs=\[\]"),
    ({"splits": "one"}, "need at least 2 splits for a confidence interval, got 1"),
    ({"splits": "past_end"}, (r"split \(repeat 0, fold 1\) does not fit 12 samples or its train and test sets "
                              "overlap; were the splits made from these labels")),
    ({"splits": "overlap"}, r"split \(repeat 0, fold 0\) does not fit 12 samples"),
    ({"class_names": ["a", "b", "c", "d"]}, r"class\(es\) \[3\] have no members; every one of the 4 classes"),
    ({"features": "1d"}, r"features must be a 2-D \(N, D\) array, got shape \(12,\)"),
    ({"features": "complex"}, "features must be real numbers, got dtype complex128"),
    ({"features": "text"}, "features must be real numbers, got dtype <U"),
    ({"grids": (12, 2, 3)}, r"token grids must be \(N=12, T', S, C\), got shape \(12, 2, 3\)"),
    ({"grids": (11, 2, 3, 4)}, r"got shape \(11, 2, 3, 4\)"),
    ({"grids": (12, 2, 3, 4)}, "grids given without an attentive_config"),
], ids=lambda v: str(v)[:24])
def test_run_probe_refuses_bad_inputs(change, match):
    splits = probe.make_splits(TINY_LABELS, folds=2, repeats=1, seed=0)
    kwargs = {"Cs": [1.0], "inner_folds": 2, "pca_dim": 3, "knn_k": 1, "seed": 0} | change
    kwargs["splits"] = {"one": splits[:1], "overlap": [splits[0]._replace(test_idx=splits[0].train_idx[:2]), splits[1]],
                        "past_end": [splits[0], splits[1]._replace(test_idx=np.array([12]))]}.get(
        kwargs.get("splits"), splits)
    x = _tiny()
    kwargs["features"] = {"1d": x[:, 0], "complex": x + 1j, "text": x.astype(str)}.get(change.get("features"), x)
    if "grids" in change:
        kwargs["grids"] = np.zeros(change["grids"], dtype=np.float32)
    with pytest.raises(ValueError, match=match):
        probe.run_probe(labels=TINY_LABELS, **kwargs)


def test_edge_notes_count_both_ends_only():
    assert probe._edge_notes([0.01, 1.0, 0.1, 0.1], [0.01, 0.1, 1.0])[0].startswith(
        "logreg C at the edge of the grid [0.01, 1] in 2 of 4 splits")
    assert probe._edge_notes([0.1, 0.1], [0.01, 0.1, 1.0]) == []


def test_seeded_run_is_pinned_split_by_split():
    """A weak-signal dataset where the per-split seeds, the PCA step and the inner cross-validation change what is
    chosen: the C of each split and both probes' accuracies of a seeded run of this code, pinned. A change to how
    splits are seeded or how C is chosen shows up here as a changed number (the other tests' data score the same
    whatever those do)."""
    rng = np.random.default_rng(0)
    features = (0.3 * rng.normal(size=(N_CLASSES, 40)))[LABELS] + rng.normal(size=(LABELS.size, 40))
    splits = probe.make_splits(LABELS, folds=3, repeats=2, seed=3)
    result = probe.run_probe(features, LABELS, splits, Cs=[0.001, 0.01, 0.1, 1.0, 10.0], inner_folds=3, pca_dim=6,
                             knn_k=5, seed=11)
    assert [(f["C"], f["logreg_accuracy"], f["knn_accuracy"]) for f in result.folds] == pytest.approx([
        (0.1, 0.6, 0.575), (0.01, 0.625, 0.575), (1.0, 0.775, 0.45), (10.0, 0.55, 0.5), (0.1, 0.7, 0.475),
        (0.1, 0.7, 0.525)])
    assert [f["pca_components"] for f in result.folds] == [6] * 6
