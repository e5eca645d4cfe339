"""results/summary.md: sections, the tables it is given, and the fine-tuning record (issue #10)."""

import pandas as pd
import pytest

from trajbench import finetune, summary

CONFIG = {
    "dataset": {"videos_per_class": 2, "frames": 9, "size": 32, "seed": 0, "noise_std": 2.0, "distractors": 1,
                "trail": 0.0, "camera_jitter": 0.3, "background": "gradient"},
    "probe": {"inner_folds": 2, "repeats": 2, "folds": 2, "seed": 0},
    "models": {"magvit": {"source": "local", "standin": True}, "pixels": {"source": "none"}},
    "finetune": {"enabled": True, "init_from": "pretrained", "data": {"videos_per_class": 8, "seed": 1000}},
}
ENV = {"choice": {"device": "cpu", "dtype": "float32", "attention": "sdpa"}, "versions": {"torch": "2.4.0"}}
MANIFESTS = [{"model": "magvit", "source": "local", "path": "resources/standins/magvit", "files": [{}]}]
LABELS = pd.DataFrame({"index": range(4), "label": [0, 0, 1, 1], "class_name": ["linear"] * 2 + ["circular"] * 2})
TABLES = {"reconstruction": "RECON-TABLE\n", "models": "MODELS-TABLE\n", "init_differences": "DIFF-TABLE\n"}


def _record():
    """The JSON the fine-tuning job writes (trajbench.finetune.summary), for a 60-step run on 72 clips."""
    history = pd.DataFrame({"step": [1, 60], "loss": [0.61234, 0.21], "psnr_db": [14.04, 22.96]})
    result = finetune.FinetuneResult(
        config=finetune.FinetuneConfig(steps=60, batch_size=8, learning_rate=1e-3), architecture={}, raw_state={},
        ema_state={}, ema_num_updates=60, history=history, step=60, seconds=41.6, resumed_from=None,
        device="cuda:0", precision="float16", clips=72, clip_shape=(9, 32, 32))
    return finetune.summary(result, "pretrained")


def _build(finetune_record=None, standin=True, config=CONFIG):
    return summary.build(config, ENV, MANIFESTS, LABELS, TABLES, standin=standin, finetune=finetune_record)


def test_summary_without_finetuning():
    text = _build(standin=False)
    assert "## Fine-tuning" not in text and "finetuned" not in text and "Stand-in weights" not in text
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["## 1. MagVit reconstruction by init", "## 2. Linear probes: every representation",
                        "## 3. Differences between inits, paired by fold", "## Models", "## Dataset",
                        "## Environment", "## Caveats"]
    # Each table sits under its own heading.
    for heading, table in (("## 1.", "RECON-TABLE"), ("## 2.", "MODELS-TABLE"), ("## 3.", "DIFF-TABLE")):
        assert text.index(heading) < text.index(table) < text.index("## Models"), table
    assert _build(standin=False) == text


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


@pytest.mark.parametrize("key", ["reconstruction", "models", "init_differences"])
def test_summary_needs_every_table(key):
    with pytest.raises(KeyError, match=key):
        summary.build(CONFIG, ENV, MANIFESTS, LABELS, {k: v for k, v in TABLES.items() if k != key}, standin=False)
