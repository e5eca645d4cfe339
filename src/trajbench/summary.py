"""``results/summary.md``: the run's answer, readable on its own."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pandas as pd

from trajbench import io

STANDIN_CAVEAT = (
    "**Stand-in weights.** Every network in this run was loaded from small random stand-in weights written by the "
    "workflow (the demo), not from the published checkpoints. Its numbers demonstrate that the pipeline runs end to "
    "end; they are not findings about pretrained models."
)


def _models_section(config: dict, manifests: list[dict]) -> list[str]:
    rows = []
    for m in manifests:
        where = m.get("repo_id") or m.get("path", "")
        if config["models"].get(m["model"], {}).get("standin"):
            where += " (stand-in weights)"
        rows.append((m["model"], m["source"], where, m.get("revision", "–"), m.get("commit", "–"),
                     len(m.get("files", []))))
    header = ("model", "source", "repository / path", "requested", "resolved commit", "files")
    lines = ["## Models", "", io.markdown_table(header, rows)]
    baselines = [name for name, cfg in config["models"].items() if cfg["source"] == "none"]
    if baselines:
        lines.append(f"\nBaselines without weights: {', '.join(baselines)} (init `none`).")
    return lines


def _dataset_section(config: dict, labels: pd.DataFrame) -> list[str]:
    ds = config["dataset"]
    counts = labels.groupby("class_name").size()
    return [
        "## Dataset", "",
        f"{len(labels)} synthetic videos, {len(counts)} motion classes ({', '.join(counts.index)}), "
        f"{ds['videos_per_class']} per class; {ds['frames']} frames of {ds['size']}×{ds['size']} RGB; seed "
        f"{ds['seed']}. Difficulty: pixel noise σ={ds['noise_std']}, {ds['distractors']} static distractor(s), "
        f"trail {ds['trail']}, camera jitter σ={ds['camera_jitter']} px, {ds['background']} background.",
    ]


def _environment_section(env: dict) -> list[str]:
    choice = env.get("choice", {})
    versions = env.get("versions", {})
    shown = ", ".join(f"{k} {v}" for k, v in versions.items() if isinstance(v, str))
    lines = ["## Environment", "",
             f"Device **{choice.get('device')}**, dtype **{choice.get('dtype')}**, attention "
             f"**{choice.get('attention')}**.", "", f"Versions: {shown}."]
    for warning in env.get("warnings", []):
        lines.append(f"\n> Warning: {warning}")
    return lines


def _lookup(record: dict, *paths: tuple[str, ...]) -> Any:
    """The value at the first of ``paths`` (keys into nested dicts) that ``record`` has, else None."""
    for path in paths:
        value: Any = record
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            return value
    return None


def _finetune_section(config: dict, record: dict, n_eval: int, standin: bool) -> list[str]:
    """What was fine-tuned, on what, for how long and with which losses. A fact the record lacks is left out."""
    get = functools.partial(_lookup, record)
    init_from, clips, frames = get(("init_from",)), get(("train_clips",), ("clips",)), get(("frames",))
    size = get(("size",))
    height, width = (size, size) if size is not None else (get(("height",)), get(("width",)))
    # trajbench.finetune's record does not repeat the seed the training clips were rendered with; the config has it.
    seed = get(("train_seed",))
    seed = config.get("finetune", {}).get("data", {}).get("seed") if seed is None else seed
    eval_seed = config["dataset"]["seed"]

    text = "The MagVit tokenizer" + (f", starting from its {init_from} weights," if init_from else "")
    text += " was fine-tuned on" + (f" {clips}" if clips is not None else "") + " synthetic training clips"
    if frames is not None and height is not None:
        text += f" of {frames} frames of {height}×{width}"
    if seed is not None:
        text += f", rendered with seed {seed}"
        if seed != eval_seed:
            text += f", disjoint from the {n_eval} evaluation clips (seed {eval_seed})"
    text += "."
    run = []
    steps, batch = get(("steps",)), get(("batch_size",))
    rate = get(("learning_rate",), ("config", "learning_rate"))
    device, dtype = get(("device",)), get(("dtype",))
    if steps is not None:
        run.append(f"{steps} steps")
    if batch is not None:
        run.append(f"batch size {batch}")
    if rate is not None:
        run.append(f"learning rate {rate:g}")
    if device is not None:
        run.append(f"on {device}" + (f" ({dtype})" if dtype else ""))
    if run:
        # The wall time is in the record (finetune.json), not here: the summary is the same bytes on every rerun.
        text += " Training: " + ", ".join(run) + "."
    recon = get(("reconstruction_loss",), ("config", "reconstruction_loss"))
    text += (f" Losses: reconstruction ({recon.upper() if recon else 'L1 or L2'}), the LFQ entropy and commitment "
             "terms; no perceptual or adversarial loss.")
    for when in ("initial", "final"):
        loss, psnr = get((when, "loss"), (f"{when}_loss",)), get((when, "psnr_db"), (f"{when}_psnr_db",))
        facts = ([f"loss {loss:.4g}"] if loss is not None else []) + (
            [f"PSNR {psnr:.1f} dB"] if psnr is not None else [])
        if facts:
            text += f" {when.capitalize()} training batch: {', '.join(facts)}."

    lines = ["## Fine-tuning", "", text]
    if seed is not None and seed == eval_seed:
        lines.append(f"\n> Warning: the training clips were rendered with the evaluation clips' seed ({seed}), so "
                     "they can coincide with evaluation clips: the fine-tuned tokenizer may be scored on videos it "
                     "was trained on.")
    if standin:
        lines.append("\nThis is a demo run with stand-in weights: the fine-tuned tokenizer's numbers are a "
                     "demonstration of the pipeline, not findings.")
    return lines


def build(config: dict, env: dict, manifests: list[dict], labels: pd.DataFrame, tables: dict[str, str],
          standin: bool, finetune: dict | None = None) -> str:
    """Assemble the summary from the run's own outputs (no number here is computed anew).

    ``tables`` holds the Markdown of "reconstruction", "models" and "init_differences"; ``finetune`` is the
    fine-tuning job's JSON record when the run fine-tuned MagVit (a third init, "finetuned").
    """
    probe = config["probe"]
    lines = ["# trajbench summary", ""]
    if standin:
        lines += [STANDIN_CAVEAT, ""]
    lines += [
        "Two questions: (1) does the pretrained Open-MAGVIT2 video tokenizer reconstruct and represent object motion "
        "better than the same network at random init; (2) which representation lets a linear classifier tell the "
        "motion classes apart best.", "",
    ]
    if finetune is not None:
        lines += ["MagVit has a third init, `finetuned`: the tokenizer fine-tuned on synthetic training clips "
                  "(see Fine-tuning), compared with both random and pretrained.", ""]
    lines += [
        "## 1. MagVit reconstruction by init", "", tables["reconstruction"].strip(), "",
        "## 2. Linear probes: every representation", "",
        f"Logistic regression (C by inner {probe['inner_folds']}-fold CV) on the same {probe['repeats']}×"
        f"{probe['folds']}-fold stratified splits for every model (seed {probe['seed']}); 95% confidence intervals.",
        "", tables["models"].strip(), "",
        "## 3. Differences between inits, paired by fold", "", tables["init_differences"].strip(), "",
    ]
    lines += _models_section(config, manifests) + [""]
    lines += _dataset_section(config, labels) + [""]
    if finetune is not None:
        lines += _finetune_section(config, finetune, len(labels), standin) + [""]
    lines += _environment_section(env) + [""]
    lines += [
        "## Caveats", "",
        "- Confidence intervals over repeated K-fold splits use the Nadeau–Bengio corrected t-interval, which "
        "allows for overlapping training sets; they are still approximate.",
        "- The oracle probes ground-truth object positions: it shows the classes are separable from motion alone, "
        "an upper reference, not a competitor.",
        "- Synthetic videos: one object on a plain background; conclusions about natural video need more.",
    ]
    if finetune is not None:
        lines.append("- The fine-tuned tokenizer was trained on clips from the same generator as the evaluation "
                     "clips: what it gains over pretrained is adaptation to this synthetic data, not better video "
                     "in general.")
    if standin:
        lines.append("- " + STANDIN_CAVEAT.replace("**", ""))
    return "\n".join(lines) + "\n"


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
