"""results/summary.md: protocol, both answers, caveats, the tables it is given, the fine-tuning record (issue #10)."""

import pandas as pd
import pytest
from probe_results import both_controls

from trajbench import compare, finetune, summary

CONFIG = {
    "dataset": {"videos_per_class": 2, "frames": 9, "size": 32, "seed": 0, "noise_std": 2.0, "distractors": 1,
                "trail": 0.0, "camera_jitter": 0.3, "background": "gradient"},
    "probe": {"inner_folds": 2, "repeats": 2, "folds": 2, "seed": 0, "Cs": [0.01, 0.1, 1.0], "pca_dim": 64,
              "knn_k": 5},
    "features": {"grid": 4},
    "models": {"magvit": {"source": "local", "standin": True}, "vmae": {"source": "hf", "family": "videomae"},
               "pixels": {"source": "none"}, "kinematics": {"source": "none"}, "oracle": {"source": "none"}},
    "finetune": {"enabled": True, "init_from": "pretrained", "data": {"videos_per_class": 8, "seed": 1000}},
}
ENV = {"choice": {"device": "cpu", "dtype": "float32", "attention": "sdpa"}, "versions": {"torch": "2.4.0"}}
MANIFESTS = [{"model": "magvit", "source": "local", "path": "resources/standins/magvit", "files": [{}]}]
LABELS = pd.DataFrame({"index": range(4), "label": [0, 0, 1, 1], "class_name": ["linear"] * 2 + ["circular"] * 2})
# Per-split accuracies (ordered, shuffled) of the linear probe; the attentive probe scores 0.05 less on each split.
SCORES = {("magvit", "pretrained"): ([0.9, 0.8, 0.85, 0.95], [0.5, 0.6, 0.5, 0.6]),
          ("magvit", "random"): ([0.7, 0.6, 0.65, 0.75], [0.7, 0.6, 0.65, 0.75]),
          ("vmae", "pretrained"): ([0.85, 0.85, 0.8, 0.9], [0.8, 0.8, 0.8, 0.8]),
          ("vmae", "random"): ([0.4, 0.4, 0.5, 0.5], [0.4, 0.4, 0.5, 0.5]),
          ("pixels", "none"): ([0.5, 0.55, 0.5, 0.45], [0.5, 0.5, 0.5, 0.5]),
          ("kinematics", "none"): ([0.3, 0.35, 0.3, 0.4], [0.3, 0.35, 0.3, 0.4]),
          ("oracle", "none"): ([1.0, 0.95, 1.0, 1.0], [1.0, 0.95, 1.0, 1.0])}
FEATURES = {
    ("magvit", "pretrained"): {"pooling": "flatten", "frames": list(range(9)), "grid": {"shape": [3, 16, 18]}},
    ("magvit", "random"): {"pooling": "flatten", "frames": list(range(9))},
    ("vmae", "pretrained"): {"pooling": "mean", "pooling_layout": "mean of all patch tokens", "frames": list(range(8)),
                             "checkpoint_kind": "VideoMAEForVideoClassification"},
    ("vmae", "random"): {"pooling": "mean", "frames": list(range(8)), "checkpoint_kind": "VideoMAEForPreTraining"},
    ("pixels", "none"): {"layout": "all 9 frames, (t, y, x, rgb) order"},
    ("kinematics", "none"): {}, ("oracle", "none"): {}}


def _tables(**overrides):
    results = {}
    for (model, init), (ordered, shuffled) in SCORES.items():
        notes = ["C at the grid's edge in 3 of 4 splits"] if (model, init) == ("vmae", "random") else ()
        results |= both_controls(model, init, {"logreg": ordered, "attentive": [a - 0.05 for a in ordered]},
                                 {"logreg": shuffled, "attentive": [a - 0.05 for a in shuffled]}, notes=notes)
    tables = summary.Tables(
        reconstruction="RECON-TABLE\n", models=compare.model_table(results), inits=compare.paired_inits(results),
        pairs=compare.paired_models(results), features=FEATURES,
        notes={key: res.notes for key, res in results.items()})
    for name, value in overrides.items():
        setattr(tables, name, value)
    return tables


TABLES = _tables()


def _record():
    """The JSON the fine-tuning job writes (trajbench.finetune.summary), for a 60-step run on 72 clips."""
    history = pd.DataFrame({"step": [1, 60], "loss": [0.61234, 0.21], "psnr_db": [14.04, 22.96]})
    result = finetune.FinetuneResult(
        config=finetune.FinetuneConfig(steps=60, batch_size=8, learning_rate=1e-3), architecture={}, raw_state={},
        ema_state={}, ema_num_updates=60, history=history, step=60, seconds=41.6, resumed_from=None,
        device="cuda:0", precision="float16", clips=72, clip_shape=(9, 32, 32))
    return finetune.summary(result, "pretrained")


def _build(finetune_record=None, standin=True, config=CONFIG, tables=TABLES):
    return summary.build(config, ENV, MANIFESTS, LABELS, tables, "magvit", standin=standin, finetune=finetune_record)


def test_summary_without_finetuning():
    text = _build(standin=False)
    assert "## Fine-tuning" not in text and "finetuned" not in text and "Stand-in weights" not in text
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["## Protocol", "## 1. MagVit reconstruction and representation by init",
                        "## 2. Which representation encodes motion best", "## 3. Every representation and init",
                        "## 4. Differences between inits, paired by fold", "## Models", "## Dataset",
                        "## Environment", "## Caveats"]
    assert text.index("## 1.") < text.index("RECON-TABLE") < text.index("## 2.")
    assert _build(standin=False) == text  # deterministic


def test_summary_states_its_protocol():
    text = _build()
    protocol = text.split("## Protocol\n\n")[1].split("\n## ")[0]
    assert "same 2×2-fold stratified splits of the 4 clips (seed 0), on ordered and on shuffled clips" in protocol
    assert "C chosen from 0.01, 0.1, 1 by inner 2-fold CV; a 5-NN classifier" in protocol
    assert "space average-pooled to at most 4×4" in protocol and "`shuffled_frames`" in protocol
    rows = {line.split(" | ")[0].strip("| "): line for line in protocol.splitlines() if line.startswith("| ")}
    assert rows["magvit"] == ("| magvit | magvit | pretrained, random | 0–8 (9, contiguous) | flatten | shape [3, 16, "
                              "18] | – |")
    # The pretrained init's record speaks for the model: its checkpoint is a classifier fine-tuned on labels.
    assert rows["vmae"] == ("| vmae | videomae | pretrained, random | 0–7 (8, contiguous) | mean: mean of all patch "
                            "tokens | – | classifier fine-tuned on labels (VideoMAEForVideoClassification) |")
    assert rows["pixels"] == "| pixels | pixels | none | – | all 9 frames, (t, y, x, rgb) order | – | – |"


def test_summary_answers_question_one_with_both_probes_and_the_control():
    section = _build().split("## 1. ")[1].split("\n## ")[0]
    # pretrained is 0.2 above random on every split: an interval of width 0.
    assert "- Linear probe, pretrained − random: accuracy 0.875 vs 0.675, difference +0.200 [+0.200, +0.200] " \
           "(paired by fold): pretrained higher." in section
    assert "- Attentive probe, pretrained − random: accuracy 0.825 vs 0.625, difference +0.200" in section
    assert "k-NN" not in section and "knn" not in section
    # magvit/pretrained loses 0.325 on average when shuffled; magvit/random loses nothing.
    assert "- pretrained, linear probe: 0.875 ordered, 0.550 shuffled; order sensitivity +0.325" in section
    assert "its accuracy depends on frame order" in section
    assert "- random, attentive probe: 0.625 ordered, 0.625 shuffled; order sensitivity +0.000 [+0.000, +0.000]: " \
           "no loss from shuffling shown" in section


def _pairs(rows):
    """A hand-made paired_models block: (a, b, a_mean, b_mean, diff_mean, low, high)."""
    return pd.DataFrame([{"init_kind": "pretrained", "probe": "logreg", "a": a, "b": b,
                          "a_init": "none" if a in ("pixels", "kinematics", "oracle") else "pretrained",
                          "b_init": "none" if b in ("pixels", "kinematics", "oracle") else "pretrained",
                          "n_splits": 4, "a_mean": am, "b_mean": bm, "diff_mean": d, "diff_ci_low": lo,
                          "diff_ci_high": hi} for a, b, am, bm, d, lo, hi in rows], columns=compare.PAIR_COLUMNS)


HAND_PAIRS = _pairs([
    ("oracle", "vmae", 0.95, 0.85, 0.10, 0.02, 0.18), ("oracle", "clip", 0.95, 0.80, 0.15, 0.05, 0.25),
    ("oracle", "pixels", 0.95, 0.50, 0.45, 0.40, 0.50), ("oracle", "kinematics", 0.95, 0.34, 0.61, 0.55, 0.67),
    ("vmae", "clip", 0.85, 0.80, 0.05, -0.02, 0.12), ("vmae", "pixels", 0.85, 0.50, 0.35, 0.30, 0.40),
    ("vmae", "kinematics", 0.85, 0.34, 0.51, 0.45, 0.57), ("clip", "pixels", 0.80, 0.50, 0.30, -0.01, 0.61),
    ("clip", "kinematics", 0.80, 0.34, 0.46, 0.40, 0.52), ("pixels", "kinematics", 0.50, 0.34, 0.16, 0.10, 0.22)])


def test_summary_names_the_best_representation_from_the_pair_table():
    verdict = summary.answer(HAND_PAIRS, references={"oracle"}, baselines=["kinematics", "pixels"])
    # The oracle ranks first but is a reference; vmae is best, clip is within its interval.
    assert verdict == summary.Answer("vmae", ["clip"], {"kinematics": ["oracle", "vmae", "clip", "pixels"],
                                                        "pixels": ["oracle", "vmae"]})
    assert summary.difference(HAND_PAIRS, "kinematics", "clip") == pytest.approx((-0.46, -0.52, -0.40))
    config = {**CONFIG, "models": {**CONFIG["models"], "clip": {"source": "hf"}}}
    text = _build(tables=_tables(pairs=HAND_PAIRS), config=config)
    section = text.split("## 2. ")[1].split("\n## ")[0]
    assert ("**Linear probe, models at init pretrained:** best **vmae** (accuracy 0.850); not distinguishable from "
            "it (interval of the difference includes 0): clip. Above kinematics: oracle, vmae, clip, pixels. Above "
            "pixels: oracle, vmae.") in section
    assert "| clip | pretrained | 0.800 | +0.050 [-0.020, +0.120] | +0.460 [+0.400, +0.520] | +0.300 [-0.010, " \
           "+0.610] |" in section
    assert "| pixels | none | 0.500 | +0.350 [+0.300, +0.400] | +0.160 [+0.100, +0.220] |  |" in section


def test_summary_answers_question_two_for_each_probe_and_init_kind():
    section = _build().split("## 2. ")[1].split("\n## ")[0]
    assert "**Linear probe, models at init pretrained:** best **magvit** (accuracy 0.875); not distinguishable " \
           "from it (interval of the difference includes 0): vmae." in section
    for probe in ("Linear", "Attentive"):
        for kind in ("pretrained", "random"):
            assert f"**{probe} probe, models at init {kind}:**" in section
    assert "Linear probe: accuracy drops when frames are shuffled (order sensitivity interval above 0) for " \
           "magvit/pretrained; for the others no loss from shuffling is shown." in section  # vmae's 0.05: within noise


@pytest.mark.parametrize("low, flagged", [(0.40, True), (0.383, False)])
def test_kinematics_flag(low, flagged):
    """Flagged when the cue baseline's interval clears chance (the larger of 1/K = 0.25 and the majority class,
    1/3) by more than 0.05."""
    models = TABLES.models.copy()
    kin = models["model"] == "kinematics"
    models.loc[kin, ["chance_uniform", "chance_majority", "logreg_accuracy_ci_low"]] = [0.25, 1 / 3, low]
    assert summary.leaks(models[kin].iloc[0]) is flagged
    text = _build(tables=_tables(models=models))
    caveats = text.split("## Caveats\n\n")[1]
    assert ("**The dataset leaks speed/size.** The cue baseline kinematics" in caveats) is flagged
    assert ("> Warning: the kinematics cue baseline is above chance" in text) is flagged
    assert ("The cue baseline kinematics (mean speed and extent only) is at chance" in caveats) is not flagged


def test_summary_caveats():
    caveats = _build().split("## Caveats\n\n")[1]
    assert ("The cue baseline kinematics (mean speed and extent only) is at chance: linear-probe accuracy 0.338"
            in caveats)
    assert "a reference for what that geometry gives a probe, not a ceiling" in caveats
    assert "still approximate" in caveats and "Stand-in weights. Every network" in caveats
    n_results = len(TABLES.notes)
    assert caveats.endswith(f"- Probe notes in 2 of {n_results} probe results (field `notes` of "
                            "results/probes/<model>/<init>/<control>.json), e.g. vmae/random/ordered: C at the "
                            "grid's edge in 3 of 4 splits. A C at the edge of the grid means the grid may be too "
                            "narrow there.\n")
    without = _tables(models=TABLES.models[TABLES.models["model"] != "kinematics"])
    assert "No kinematics cue baseline in this run" in _build(tables=without)


def test_summary_with_finetuning_record():
    text = _build(_record())
    section = text.split("## Fine-tuning\n\n")[1].split("\n## ")[0]
    assert section.startswith(
        "The MagVit tokenizer, starting from its pretrained weights, was fine-tuned on 72 synthetic training clips "
        "of 9 frames of 32×32, rendered with seed 1000, disjoint from the 4 evaluation clips (seed 0). Training: "
        "60 steps, batch size 8, learning rate 0.001, on cuda:0 (float16). Losses: reconstruction (L1), the "
        "LFQ entropy and commitment terms; no perceptual or adversarial loss. Initial training batch: loss 0.6123, "
        "PSNR 14.0 dB. Final training batch: loss 0.21, PSNR 23.0 dB.")
    assert "demonstration of the pipeline, not findings" in section and "Warning" not in section
    assert text.index("## Dataset") < text.index("## Fine-tuning") < text.index("## Environment")
    assert "third init, `finetuned`" in text and "adaptation to this synthetic data" in text
    # Real weights: no demo sentence.
    assert "not findings" not in _build(_record(), standin=False)


def test_summary_with_partial_or_renamed_finetuning_record():
    # Missing facts are left out rather than failing; the brief's flat key names are read too.
    text = _build({})
    section = text.split("## Fine-tuning\n\n")[1].split("\n## ")[0]
    assert section.startswith("The MagVit tokenizer was fine-tuned on synthetic training clips, rendered with seed "
                              "1000, disjoint from the 4 evaluation clips (seed 0). Losses: reconstruction (L1 or "
                              "L2), the LFQ")
    assert "Training:" not in section and "batch:" not in section
    flat = {"init_from": "random", "train_clips": 10, "train_seed": 7, "frames": 5, "size": 16, "steps": 3,
            "learning_rate": 2e-4, "final_loss": 0.5}
    section = _build(flat).split("## Fine-tuning\n\n")[1]
    assert section.startswith("The MagVit tokenizer, starting from its random weights, was fine-tuned on 10 synthetic "
                              "training clips of 5 frames of 16×16, rendered with seed 7, disjoint from the 4 "
                              "evaluation clips (seed 0). Training: 3 steps, learning rate 0.0002.")
    assert "Final training batch: loss 0.5." in section and "Initial" not in section


def test_summary_warns_when_training_clips_share_the_evaluation_seed():
    config = {**CONFIG, "finetune": {"enabled": True, "data": {"seed": 0}}}
    text = _build(_record(), config=config)
    assert "rendered with seed 0." in text and "disjoint" not in text
    assert "> Warning: the training clips were rendered with the evaluation clips' seed (0)" in text
