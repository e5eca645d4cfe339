"""``results/summary.md``: the run's answer, readable on its own."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

STANDIN_CAVEAT = (
    "**Stand-in weights.** Every network in this run was loaded from small random stand-in weights written by the "
    "workflow (the demo), not from the published checkpoints. Its numbers demonstrate that the pipeline runs end to "
    "end; they are not findings about pretrained models."
)


def _models_section(config: dict, manifests: list[dict]) -> list[str]:
    lines = ["## Models", "", "| model | source | repository / path | requested | resolved commit | files |",
             "|---|---|---|---|---|---|"]
    for m in manifests:
        where = m.get("repo_id") or m.get("path", "")
        if config["models"].get(m["model"], {}).get("standin"):
            where += " (stand-in weights)"
        lines.append(f"| {m['model']} | {m['source']} | {where} | {m.get('revision', '–')} | "
                     f"{m.get('commit', '–')} | {len(m.get('files', []))} |")
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


def build(config: dict, env: dict, manifests: list[dict], labels: pd.DataFrame, tables: dict[str, str],
          standin: bool) -> str:
    """Assemble the summary from the run's own outputs (no number here is computed anew)."""
    probe = config["probe"]
    lines = ["# trajbench summary", ""]
    if standin:
        lines += [STANDIN_CAVEAT, ""]
    lines += [
        "Two questions: (1) does the pretrained Open-MAGVIT2 video tokenizer reconstruct and represent object motion "
        "better than the same network at random init; (2) which representation lets a linear classifier tell the "
        "motion classes apart best.", "",
        "## 1. MagVit reconstruction: pretrained vs random", "", tables["reconstruction"].strip(), "",
        "## 2. Linear probes: every representation", "",
        f"Logistic regression (C by inner {probe['inner_folds']}-fold CV) on the same {probe['repeats']}×"
        f"{probe['folds']}-fold stratified splits for every model (seed {probe['seed']}); 95% confidence intervals.",
        "", tables["models"].strip(), "",
        "## 3. Pretrained vs random init, paired by fold", "", tables["pretrained_vs_random"].strip(), "",
    ]
    lines += _models_section(config, manifests) + [""]
    lines += _dataset_section(config, labels) + [""]
    lines += _environment_section(env) + [""]
    lines += [
        "## Caveats", "",
        "- Confidence intervals over repeated K-fold splits use the Nadeau–Bengio corrected t-interval, which "
        "allows for overlapping training sets; they are still approximate.",
        "- The oracle probes ground-truth object positions: it shows the classes are separable from motion alone, "
        "an upper reference, not a competitor.",
        "- Synthetic videos: one object on a plain background; conclusions about natural video need more.",
    ]
    if standin:
        lines.append("- " + STANDIN_CAVEAT.replace("**", ""))
    return "\n".join(lines) + "\n"


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
