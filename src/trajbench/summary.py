"""``results/summary.md``: the run's answer to both questions, readable on its own.

It reads the comparison tables (`trajbench.compare`: models.csv, init_differences.csv, representations.csv) and
states what they say; it computes no statistic anew. Text only depends on its inputs (no timings), so a rerun writes
the same bytes.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import pandas as pd

from trajbench import compare, io

STANDIN_CAVEAT = (
    "**Stand-in weights.** Every network in this run was loaded from small random stand-in weights written by the "
    "workflow (the demo), not from the published checkpoints. Its numbers demonstrate that the pipeline runs end to "
    "end; they are not findings about pretrained models."
)
# The cue baseline leaks speed/size when its linear-probe accuracy is clearly above chance: CI low > chance + this.
LEAK_MARGIN = 0.05
# Baseline families (init "none") by role: raw input, cue baseline, reference.
PIXELS, KINEMATICS, ORACLE = "pixels", "kinematics", "oracle"
PROBE_NAMES = {"logreg": "Linear probe", "attentive": "Attentive probe"}


@dataclasses.dataclass
class Tables:
    """What rule compare (and compare_reconstruction) wrote, and the per-result records the summary cites.

    ``reconstruction``: the Markdown of reconstruction.md; ``models``, ``inits``, ``pairs``: models.csv,
    init_differences.csv and representations.csv as DataFrames; ``features[(model, init)]``: features.json;
    ``notes[(model, init, control)]``: the probe result's notes."""

    reconstruction: str
    models: pd.DataFrame
    inits: pd.DataFrame
    pairs: pd.DataFrame
    features: Mapping[tuple[str, str], dict]
    notes: Mapping[tuple[str, str, str], list[str]]


class Answer(NamedTuple):
    """Question 2 for one probe and init kind: the best representation (references aside), those not
    distinguishable from it, and for each baseline the representations whose accuracy is above it (CI > 0)."""

    best: str
    tied: list[str]
    above: dict[str, list[str]]


def family(config: dict, model: str) -> str:
    return config["models"][model].get("family", model)


def _ci(mean: float, low: float, high: float, signed: bool = False) -> str:
    fmt = "+.3f" if signed else ".3f"
    if math.isnan(low) or math.isnan(high):
        return f"{mean:{fmt}}"
    return f"{mean:{fmt}} [{low:{fmt}}, {high:{fmt}}]"


def _verdict(low: float, high: float, a: str, b: str) -> str:
    if math.isnan(low) or math.isnan(high):
        return "no interval (fewer than two splits)"
    if low > 0:
        return f"{a} higher"
    if high < 0:
        return f"{b} higher"
    return "not distinguishable (the interval includes 0)"


def _names(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


def difference(pairs: pd.DataFrame, a: str, b: str) -> tuple[float, float, float]:
    """Mean and interval of a - b from a paired_models block, whichever way round the block stores the pair."""
    row = pairs[(pairs["a"] == a) & (pairs["b"] == b)]
    if len(row):
        return tuple(float(row.iloc[0][c]) for c in ("diff_mean", "diff_ci_low", "diff_ci_high"))
    row = pairs[(pairs["a"] == b) & (pairs["b"] == a)]
    if len(row) != 1:
        raise ValueError(f"representations.csv has no single pair of {a} and {b} in this block; rerun rule compare")
    mean, low, high = (float(row.iloc[0][c]) for c in ("diff_mean", "diff_ci_low", "diff_ci_high"))
    return -mean, -high, -low


def _ranked(block: pd.DataFrame) -> list[tuple[str, float]]:
    means = dict(zip(block["a"], block["a_mean"])) | dict(zip(block["b"], block["b_mean"]))
    return sorted(means.items(), key=lambda item: (-item[1], item[0]))


def answer(block: pd.DataFrame, references: set[str], baselines: list[str]) -> Answer:
    """Question 2 from one (probe, init kind) block of :func:`trajbench.compare.paired_models` output.

    The best is the representation with the highest mean accuracy that is not a reference (the oracle); tied are
    the others (references aside) whose difference from it has an interval including 0; ``above[baseline]`` lists
    the representations whose difference from that baseline has an interval above 0."""
    ranked = [name for name, _ in _ranked(block)]
    contenders = [name for name in ranked if name not in references]
    best = contenders[0]
    tied = [name for name in contenders[1:] if difference(block, best, name)[1] <= 0]
    above = {base: [name for name in ranked if name != base and difference(block, name, base)[1] > 0]
             for base in baselines if base in ranked}
    return Answer(best, tied, above)


def leaks(row: Mapping[str, float]) -> bool:
    """True when a models.csv row's linear-probe accuracy is above chance by more than :data:`LEAK_MARGIN` (its
    interval's low end; chance is the larger of 1/K and the majority class)."""
    chance = max(row["chance_uniform"], row["chance_majority"])
    return bool(row["logreg_accuracy_ci_low"] > chance + LEAK_MARGIN)


def _cue_lines(config: dict, models: pd.DataFrame) -> tuple[list[str], bool]:
    """The kinematics verdict (caveat lines) and whether it flags the dataset."""
    rows = models[[family(config, m) == KINEMATICS for m in models["model"]]]
    if rows.empty:
        return ["- No kinematics cue baseline in this run: whether speed or size alone tells the classes apart was "
                "not checked."], False
    lines, flagged = [], False
    for row in rows.to_dict("records"):
        acc = _ci(row["logreg_accuracy_mean"], row["logreg_accuracy_ci_low"], row["logreg_accuracy_ci_high"])
        chance = max(row["chance_uniform"], row["chance_majority"])
        if leaks(row):
            flagged = True
            lines.append(f"- **The dataset leaks speed/size.** The cue baseline {row['model']} (mean speed and extent "
                         f"only) reaches linear-probe accuracy {acc}, above chance ({chance:.3f}) + {LEAK_MARGIN}: "
                         "part of any representation's accuracy may come from these cues rather than from the "
                         "motion pattern.")
        else:
            lines.append(f"- The cue baseline {row['model']} (mean speed and extent only) is at chance: linear-probe "
                         f"accuracy {acc}, interval not above chance ({chance:.3f}) + {LEAK_MARGIN}; speed and size "
                         "alone do not tell the classes apart.")
    return lines, flagged


def _frames(meta: dict) -> str:
    frames = meta.get("frames")
    if not frames:
        return "–"
    contiguous = all(b - a == 1 for a, b in itertools.pairwise(frames))
    if contiguous and len(frames) > 1:
        return f"{frames[0]}–{frames[-1]} ({len(frames)}, contiguous)"
    return ", ".join(str(f) for f in frames) + f" ({len(frames)})"


def _pooling(meta: dict) -> str:
    parts = [meta.get("pooling"), meta.get("pooling_layout") or meta.get("layout")]
    return ": ".join(str(p) for p in parts if p) or "–"


def _checkpoint(meta: dict) -> str:
    kind = meta.get("checkpoint_kind")
    if not kind:
        return "–"
    what = "classifier fine-tuned on labels" if "Classification" in kind else "pretraining checkpoint, no classifier"
    return f"{what} ({kind})"


def _grid(meta: dict) -> str:
    grid = meta.get("grid")
    return ", ".join(f"{key} {value}" for key, value in grid.items()) if grid else "–"


def _protocol_section(config: dict, tables: Tables, n_clips: int) -> list[str]:
    probe, grid = config["probe"], config["features"]["grid"]
    lines = [
        "## Protocol", "",
        f"Every model, at every init, and every baseline is probed on the same {probe['repeats']}×"
        f"{probe['folds']}-fold stratified splits of the {n_clips} clips (seed {probe['seed']}), on ordered and on "
        "shuffled clips; every interval is 95%.", "",
        f"- **Linear probe**: logistic regression on the model's pooled feature vector (column *features* below), "
        f"standardised and reduced by PCA to at most {probe['pca_dim']} dimensions, C chosen from "
        f"{', '.join(f'{c:g}' for c in probe['Cs'])} by inner {probe['inner_folds']}-fold CV; a {probe['knn_k']}-NN "
        "classifier on the same features is a second opinion (models.csv).",
        f"- **Attentive probe**: the model's token grid (clips × time × space × channels, space average-pooled to at "
        f"most {grid}×{grid}; column *token grid*), pooled by cross-attention with a learned query and learned time "
        "and space position embeddings, then a linear classifier.",
        "- **Motion control**: the same clips with each clip's frames shuffled (one seeded permutation per clip, "
        "recorded in labels.csv column `shuffled_frames`), encoded and probed like the ordered clips. *Order "
        "sensitivity* = accuracy(ordered) − accuracy(shuffled), paired by fold: a representation of motion loses "
        "accuracy when frame order is destroyed; one of appearance or of order-free cues does not.",
        "",
    ]
    models = list(dict.fromkeys(m for m, _ in tables.features))
    rows = []
    for model in models:
        inits = [i for m, i in tables.features if m == model]
        meta = tables.features[(model, "pretrained" if "pretrained" in inits else inits[0])]
        rows.append((model, family(config, model), ", ".join(inits), _frames(meta), _pooling(meta), _grid(meta),
                     _checkpoint(meta)))
    header = ("model", "family", "inits", "frames seen", "features (pooling)", "token grid", "checkpoint")
    lines += [io.markdown_table(header, rows), "",
              "Frames are indices into each clip; – : not recorded in the model's features.json."]
    return lines


def _tokenizer_section(tokenizer: str, tables: Tables) -> list[str]:
    lines = ["## 1. MagVit reconstruction and representation by init", "", "### Reconstruction", "",
             tables.reconstruction.strip(), "", "### Representation", ""]
    inits = tables.inits[(tables.inits["model"] == tokenizer) & (tables.inits["metric"] == "accuracy")
                         & tables.inits["probe"].isin(compare.SENSITIVITY_PROBES)]
    if inits.empty:
        lines.append(f"No two inits of {tokenizer} were probed: nothing to pair.")
    for row in inits.to_dict("records"):
        diff = _ci(row["diff_mean"], row["diff_ci_low"], row["diff_ci_high"], signed=True)
        lines.append(f"- {PROBE_NAMES[row['probe']]}, {row['comparison']}: accuracy "
                     f"{row['a_mean']:.3f} vs {row['b_mean']:.3f}, difference {diff} (paired by fold): "
                     f"{_verdict(row['diff_ci_low'], row['diff_ci_high'], row['a'], row['b'])}.")
    rows = tables.models[tables.models["model"] == tokenizer]
    lines += ["", "Shuffled-frame control (accuracy on ordered and on shuffled clips, order sensitivity):", ""]
    for row in rows.to_dict("records"):
        for probe in compare.SENSITIVITY_PROBES:
            if math.isnan(row[f"{probe}_accuracy_mean"]):
                continue
            sens = [row[f"{probe}_order_sensitivity_{part}"] for part in compare.CI_PARTS]
            verdict = ("its accuracy depends on frame order" if sens[1] > 0 else
                       "no loss from shuffling shown (the interval reaches 0 or below)")
            lines.append(f"- {row['init']}, {PROBE_NAMES[probe].lower()}: "
                         f"{row[f'{probe}_accuracy_mean']:.3f} ordered, {row[f'{probe}_shuffled_accuracy_mean']:.3f} "
                         f"shuffled; order sensitivity {_ci(*sens, signed=True)}: {verdict}.")
    return lines


def _motion_section(config: dict, tables: Tables) -> list[str]:
    lines = ["## 2. Which representation encodes motion best", "",
             "Paired by fold on ordered clips (representations.csv, representation_matrix.png): for each probe and "
             "init kind, the models at that init and the baselines. The oracle is a reference and is not ranked "
             "for best.", ""]
    pairs = tables.pairs
    bases = sorted({m for m in set(pairs["a"]) | set(pairs["b"]) if family(config, m) in (PIXELS, KINEMATICS)})
    references = {m for m in set(pairs["a"]) | set(pairs["b"]) if family(config, m) == ORACLE}
    for (probe, kind), block in pairs.groupby(["probe", "init_kind"], sort=False):
        verdict = answer(block, references, bases)
        best_mean = dict(_ranked(block))[verdict.best]
        text = (f"**{PROBE_NAMES[probe]}, models at init {kind}:** best **{verdict.best}** (accuracy "
                f"{best_mean:.3f}); not distinguishable from it (interval of the difference includes 0): "
                f"{_names(verdict.tied)}.")
        for base, names in verdict.above.items():
            text += f" Above {base}: {_names(names)}."
        lines += [text, ""]
        header = ["representation", "init", "accuracy", f"{verdict.best} − this (95% CI)",
                  *(f"this − {base} (95% CI)" for base in bases if base in verdict.above)]
        inits = dict(zip(block["a"], block["a_init"])) | dict(zip(block["b"], block["b_init"]))
        rows = []
        for name, mean in _ranked(block):
            cells = [name, inits[name], f"{mean:.3f}",
                     "" if name == verdict.best else _ci(*difference(block, verdict.best, name), signed=True)]
            cells += ["" if name == base else _ci(*difference(block, name, base), signed=True)
                      for base in bases if base in verdict.above]
            rows.append(cells)
        lines += [io.markdown_table(header, rows, ["left", "left", *["right"] * (len(header) - 2)]), ""]
    models = tables.models
    for probe in compare.SENSITIVITY_PROBES:
        low = models[f"{probe}_order_sensitivity_ci_low"]
        if low.isna().all():
            continue
        shown = [f"{m}/{i}" for m, i, lo in zip(models["model"], models["init"], low) if lo > 0]
        lines += [f"{PROBE_NAMES[probe]}: accuracy drops when frames are shuffled (order sensitivity interval above "
                  f"0) for {_names(shown)}; for the others no loss from shuffling is shown.", ""]
    return lines


def _tables_section(tables: Tables) -> list[str]:
    columns = ["model", "init"] + [f"{p}_{s}_{part}" for p in compare.SENSITIVITY_PROBES
                                   for s in ("accuracy", "shuffled_accuracy", "order_sensitivity")
                                   for part in compare.CI_PARTS] + [f"knn_accuracy_{part}" for part in compare.CI_PARTS]
    chance = tables.models.iloc[0]
    return [
        "## 3. Every representation and init", "",
        f"Accuracy on ordered and shuffled clips and order sensitivity per probe, kNN accuracy (macro-F1 in "
        f"models.csv); chance 1/K = {chance['chance_uniform']:.3f}, majority class {chance['chance_majority']:.3f}.",
        "", compare.to_markdown(tables.models[columns]).strip(), "",
        "## 4. Differences between inits, paired by fold", "",
        compare.to_markdown(tables.inits.drop(columns=["a", "b"])).strip() if len(tables.inits) else "None.", "",
    ]


def build(config: dict, env: dict, manifests: list[dict], labels: pd.DataFrame, tables: Tables, tokenizer: str,
          standin: bool, finetune: dict | None = None) -> str:
    """Assemble the summary from the run's own outputs (no number here is computed anew).

    ``tokenizer`` names the model question 1 is about; ``finetune`` is the fine-tuning job's JSON record when the
    run fine-tuned it (a third init, "finetuned").
    """
    cue_lines, flagged = _cue_lines(config, tables.models)
    lines = ["# trajbench summary", ""]
    if standin:
        lines += [STANDIN_CAVEAT, ""]
    lines += [
        f"Two questions: (1) does the pretrained MagVit video tokenizer (`{tokenizer}`) reconstruct and represent "
        "object motion better than the same network at random init; (2) which representation encodes object motion "
        "best: which lets a probe tell the motion classes apart on the same folds, and loses accuracy when the "
        "frames are shuffled.", "",
    ]
    if finetune is not None:
        lines += [f"{tokenizer} has a third init, `finetuned`: the tokenizer fine-tuned on synthetic training clips "
                  "(see Fine-tuning), compared with both random and pretrained.", ""]
    if flagged:
        lines += ["> Warning: the kinematics cue baseline is above chance; see Caveats.", ""]
    lines += _protocol_section(config, tables, len(labels)) + [""]
    lines += _tokenizer_section(tokenizer, tables) + [""]
    lines += _motion_section(config, tables)
    lines += _tables_section(tables)
    lines += _models_section(config, manifests) + [""]
    lines += _dataset_section(config, labels) + [""]
    if finetune is not None:
        lines += _finetune_section(config, finetune, len(labels), standin) + [""]
    lines += _environment_section(env) + [""]
    lines += [
        "## Caveats", "",
        *cue_lines,
        "- The oracle probes order-free geometry features of the ground-truth positions: a reference for what that "
        "geometry gives a probe, not a ceiling; a representation may exceed it.",
        "- Intervals over repeated K-fold splits use the Nadeau–Bengio corrected t-interval, which allows for "
        "overlapping training sets; they are still approximate, and the many pairwise comparisons are not corrected "
        "for multiplicity.",
        "- Synthetic videos: one object on a plain background; conclusions about natural video need more.",
    ]
    if finetune is not None:
        lines.append("- The fine-tuned tokenizer was trained on clips from the same generator as the evaluation "
                     "clips: what it gains over pretrained is adaptation to this synthetic data, not better video "
                     "in general.")
    if standin:
        lines.append("- " + STANDIN_CAVEAT.replace("**", ""))
    noted = sorted(key for key, ns in tables.notes.items() if ns)
    if noted:
        # One line, not one per result: the probe JSONs hold every note.
        first = noted[0]
        lines.append(f"- Probe notes in {len(noted)} of {len(tables.notes)} probe results (field `notes` of "
                     f"results/probes/<model>/<init>/<control>.json), e.g. {'/'.join(first)}: "
                     f"{tables.notes[first][0]}. A C at the edge of the grid means the grid may be too narrow there.")
    return "\n".join(lines) + "\n"


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


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
