"""Probe figures: what they draw (the numbers each returns), and the same bytes for the same inputs."""

import numpy as np
import pytest
from probe_results import both_controls

from trajbench import compare, figures

SCORES = {  # (model, init): (ordered logreg, shuffled logreg, ordered attentive, shuffled attentive)
    ("magvit", "pretrained"): (0.9, 0.5, 0.95, 0.4), ("magvit", "random"): (0.5, 0.45, 0.6, 0.55),
    ("magvit", "finetuned"): (0.95, 0.6, 0.9, 0.5), ("clip", "pretrained"): (0.6, 0.6, 0.7, 0.65),
    ("clip", "random"): (0.4, 0.4, 0.35, 0.35), ("pixels", "none"): (0.7, 0.3, 0.75, 0.3),
    ("kinematics", "none"): (0.35, 0.35, 0.34, 0.34)}
JITTER = np.array([0.02, -0.02, 0.01, -0.01])  # per-split spread, so that intervals have a width


def _results():
    results = {}
    for (model, init), (lo, ls, ao, as_) in SCORES.items():
        results |= both_controls(model, init, {"logreg": lo + JITTER, "attentive": ao - JITTER},
                                 {"logreg": ls + JITTER[::-1], "attentive": as_ + JITTER})
    return results


def test_accuracy_bars_draw_both_probes_and_the_shuffled_control(tmp_path):
    table = compare.model_table(_results())
    drawn = figures.accuracy_bars(table, tmp_path / "acc.png", title_note="stand-in weights")
    assert drawn["probe"].tolist() == ["logreg"] * 7 + ["attentive"] * 7
    by_key = drawn.set_index(["probe", "model", "init"])
    assert by_key.loc[("logreg", "magvit", "pretrained"), ["accuracy", "shuffled", "knn"]].tolist() == pytest.approx(
        [0.9, 0.5, 0.8])
    assert by_key.loc[("attentive", "pixels", "none"), ["accuracy", "shuffled"]].tolist() == pytest.approx([0.75, 0.3])
    assert np.isnan(by_key.loc[("attentive", "pixels", "none"), "knn"])
    row = table[(table["model"] == "clip") & (table["init"] == "random")].iloc[0]
    assert by_key.loc[("attentive", "clip", "random"), ["ci_low", "ci_high"]].tolist() == pytest.approx(
        [row["attentive_accuracy_ci_low"], row["attentive_accuracy_ci_high"]])
    # Bars of one model sit side by side around its tick (magvit has three inits).
    magvit = drawn[(drawn["probe"] == "logreg") & (drawn["model"] == "magvit")]
    assert magvit["x"].tolist() == pytest.approx([-0.8 / 3, 0.0, 0.8 / 3])
    figures.accuracy_bars(table, tmp_path / "again.png", title_note="stand-in weights")
    assert (tmp_path / "acc.png").read_bytes() == (tmp_path / "again.png").read_bytes()
    # Without an attentive probe there is one panel.
    linear_only = table.assign(**{c: np.nan for c in table.columns if c.startswith("attentive_")})
    assert set(figures.accuracy_bars(linear_only, tmp_path / "linear.png")["probe"]) == {"logreg"}


def test_order_sensitivity_plot_draws_the_table_values(tmp_path):
    table = compare.model_table(_results())
    drawn = figures.order_sensitivity_plot(table, tmp_path / "order.png")
    assert len(drawn) == 14 and drawn["probe"].unique().tolist() == ["logreg", "attentive"]
    for probe in ("logreg", "attentive"):
        rows = drawn[drawn["probe"] == probe]
        assert list(zip(rows["model"], rows["init"])) == list(zip(table["model"], table["init"]))
        assert rows["y"].tolist() == list(range(6, -1, -1))  # first row at the top
        for part in compare.CI_PARTS:
            assert rows[part].to_numpy() == pytest.approx(table[f"{probe}_order_sensitivity_{part}"].to_numpy())
    pixels = drawn[(drawn["model"] == "pixels") & (drawn["probe"] == "logreg")].iloc[0]
    assert pixels["mean"] == pytest.approx(0.4)
    figures.order_sensitivity_plot(table, tmp_path / "again.png")
    assert (tmp_path / "order.png").read_bytes() == (tmp_path / "again.png").read_bytes()


def test_pairwise_matrix_cells_are_the_paired_differences(tmp_path):
    pairs = compare.paired_models(_results())
    shown = figures.pairwise_matrix(pairs, tmp_path / "matrix.png", title_note="stand-in weights")
    assert list(shown) == [("logreg", "pretrained"), ("attentive", "pretrained"), ("logreg", "random"),
                           ("attentive", "random"), ("logreg", "finetuned"), ("attentive", "finetuned")]
    mean, significant = shown[("logreg", "pretrained")]
    assert mean.index.tolist() == ["magvit", "pixels", "clip", "kinematics"]  # best first
    assert mean.loc["magvit", "pixels"] == pytest.approx(0.2) and mean.loc["pixels", "magvit"] == pytest.approx(-0.2)
    assert np.isnan(np.diag(mean.to_numpy())).all()
    np.testing.assert_allclose(mean.to_numpy(), -mean.to_numpy().T)
    for row in pairs[(pairs["probe"] == "logreg") & (pairs["init_kind"] == "pretrained")].itertuples():
        assert mean.loc[row.a, row.b] == pytest.approx(row.diff_mean)
        assert significant.loc[row.a, row.b] == significant.loc[row.b, row.a] == (
            row.diff_ci_low > 0 or row.diff_ci_high < 0)
    # magvit - pixels is 0.2 on every split: no spread, an interval that excludes 0.
    assert significant.loc["magvit", "pixels"]
    fin, _ = shown[("attentive", "finetuned")]
    assert fin.index.tolist() == ["magvit", "pixels", "kinematics"]
    figures.pairwise_matrix(pairs, tmp_path / "again.png", title_note="stand-in weights")
    assert (tmp_path / "matrix.png").read_bytes() == (tmp_path / "again.png").read_bytes()
    with pytest.raises(ValueError, match="fewer than two representations"):
        figures.pairwise_matrix(pairs.iloc[:0], tmp_path / "empty.png")


def test_init_difference_and_confusion_figures(tmp_path):
    results = _results()
    paired = compare.paired_inits(results)
    drawn = figures.paired_difference_plot(paired, tmp_path / "diff.png", title_note="x")
    assert drawn["probe"].unique().tolist() == ["logreg", "knn", "attentive"]
    # The same (model, comparison) sits on the same row in every panel.
    rows = drawn.groupby(["model", "comparison"])["y"].nunique()
    assert (rows == 1).all() and len(rows) == 4
    first = drawn[(drawn["probe"] == "attentive") & (drawn["comparison"] == "finetuned − pretrained")].iloc[0]
    assert first["diff_mean"] == pytest.approx(-0.05)
    with pytest.raises(ValueError, match="no rows for metric 'knn'"):
        figures.paired_difference_plot(paired, tmp_path / "bad.png", metric="knn")
    ordered = {(m, i): r for (m, i, c), r in results.items() if c == "ordered"}
    shown = figures.confusion_grid(ordered, tmp_path / "cm.png")
    assert list(shown) == list(ordered)  # one panel each, row by row
    for key, cm in shown.items():
        assert cm.index.tolist() == cm.columns.tolist() == ordered[key].class_names
        np.testing.assert_allclose(cm.to_numpy(), ordered[key].confusion_normalized)
    # magvit/pretrained scores 0.9: 0.9 on the diagonal, the rest split evenly.
    assert shown[("magvit", "pretrained")].loc["circle", ["linear", "circle"]].tolist() == pytest.approx([0.05, 0.9])
    figures.confusion_grid(ordered, tmp_path / "again.png")
    assert (tmp_path / "cm.png").read_bytes() == (tmp_path / "again.png").read_bytes()
    # Other numbers in one panel: other bytes.
    figures.confusion_grid(ordered | {("clip", "random"): ordered[("clip", "pretrained")]}, tmp_path / "other.png")
    assert (tmp_path / "cm.png").read_bytes() != (tmp_path / "other.png").read_bytes()
    # No temporary files left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.png", "cm.png", "diff.png", "other.png"]
