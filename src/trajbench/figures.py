"""Figures for the probe and reconstruction results: deterministic PNGs written atomically.

Figures are drawn on a ``matplotlib.figure.Figure`` with an explicit Agg canvas, so nothing depends on (or changes)
the global pyplot backend. PNGs are saved without the ``Software`` metadata entry, so the same inputs give the same
bytes. Every function takes ``title_note`` (e.g. "stand-in weights"), appended to the title in parentheses.
"""

from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from trajbench import io
from trajbench.metrics import PSNR_CAP_DB, cap_psnr, psnr_from_mse_uint8
from trajbench.probe import ProbeResult

DPI = 120
INIT_COLORS = {"pretrained": "#1f77b4", "random": "#ff7f0e", "finetuned": "#2ca02c", "none": "#7f7f7f"}
OTHER_COLOR = "#9467bd"
# Order of the panels in reconstruction_distributions.
METRIC_LABELS = {"psnr": "PSNR (dB, higher is better)", "ssim": "SSIM (higher is better)",
                 "mse": "MSE on [0, 1] (lower is better)"}


def _title(text: str, note: str | None) -> str:
    return f"{text} ({note})" if note else text


def _save(fig: Figure, path: str | os.PathLike) -> None:
    FigureCanvasAgg(fig)
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})


def _color(init: str) -> str:
    return INIT_COLORS.get(init, OTHER_COLOR)


def accuracy_bars(table: pd.DataFrame, path: str | os.PathLike, metric: str = "accuracy",
                  title_note: str | None = None) -> None:
    """Bars of ``<metric>_mean`` with CI error bars for every model x init, grouped by model, plus chance lines.

    ``table`` is :func:`trajbench.compare.model_table` output (its row order is kept). kNN accuracy is overlaid as
    black diamonds when ``metric`` is "accuracy".
    """
    models = list(dict.fromkeys(table["model"]))
    inits = list(dict.fromkeys(table["init"]))
    width = 0.8 / int(table.groupby("model").size().max())
    fig = Figure(figsize=(max(6.0, 1.6 * len(models) + 2), 4.5))
    ax = fig.add_subplot()
    for model_pos, model in enumerate(models):
        rows = table[table["model"] == model].reset_index(drop=True)
        offsets = (np.arange(len(rows)) - (len(rows) - 1) / 2) * width
        for (_, row), offset in zip(rows.iterrows(), offsets):
            x, mean = model_pos + offset, row[f"{metric}_mean"]
            err = [[mean - row[f"{metric}_ci_low"]], [row[f"{metric}_ci_high"] - mean]]
            ax.bar(x, mean, width * 0.95, color=_color(row["init"]), yerr=err, capsize=3, ecolor="black")
            ax.text(x, row[f"{metric}_ci_high"] + 0.01, f"{mean:.2f}", ha="center", va="bottom", fontsize=7)
            if metric == "accuracy":
                ax.plot(x, row["knn_accuracy_mean"], marker="D", color="black", markersize=4, linestyle="none")
    chance_u, chance_m = float(table["chance_uniform"].iloc[0]), float(table["chance_majority"].iloc[0])
    handles = [Patch(color=_color(i), label=i) for i in inits]
    handles.append(ax.axhline(chance_u, color="black", linestyle="--", linewidth=1,
                              label=f"chance 1/K = {chance_u:.2f}"))
    if not math.isclose(chance_m, chance_u):
        handles.append(ax.axhline(chance_m, color="black", linestyle=":", linewidth=1,
                                  label=f"majority class = {chance_m:.2f}"))
    if metric == "accuracy":
        handles.append(Line2D([], [], marker="D", color="black", markersize=4, linestyle="none",
                              label="kNN accuracy"))
    ax.set_xticks(range(len(models)), models)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel(f"{metric.replace('_', ' ')} (mean, 95% CI over splits)")
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title(_title(f"Linear probe {metric.replace('_', ' ')}", title_note))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def paired_difference_plot(diffs: pd.DataFrame, path: str | os.PathLike, metric: str = "accuracy",
                           title_note: str | None = None) -> None:
    """Paired init difference a - b per (model, comparison): point + 95% CI, one row each, in the table's order.

    ``diffs`` is :func:`trajbench.compare.paired_inits` output; each point is labelled with both means and coloured
    like its first init (a); thin lines separate the models.
    """
    rows = diffs[diffs["metric"] == metric].reset_index(drop=True)
    if rows.empty:
        raise ValueError(f"no rows for metric {metric!r} in the paired-difference table; metrics are "
                         f"{sorted(set(diffs['metric']))}")
    fig = Figure(figsize=(7.5, 1.2 + 0.6 * len(rows)))
    ax = fig.add_subplot()
    y = np.arange(len(rows))[::-1]
    mean = rows["diff_mean"].to_numpy()
    err = np.vstack([mean - rows["diff_ci_low"].to_numpy(), rows["diff_ci_high"].to_numpy() - mean])
    for yi, m, e, row in zip(y, mean, err.T, rows.itertuples(index=False)):
        ax.errorbar(m, yi, xerr=e[:, None], fmt="o", color=_color(row.a), ecolor="black", capsize=4)
        ax.annotate(f"{row.a_mean:.2f} vs {row.b_mean:.2f}", (m, yi), textcoords="offset points", xytext=(0, 7),
                    ha="center", fontsize=8)
    for yi, (prev, model) in zip(y[1:], zip(rows["model"], rows["model"][1:])):
        if model != prev:
            ax.axhline(yi + 0.5, color="gray", linewidth=0.6)
    ax.axvline(0, color="gray", linestyle="--", linewidth=1)
    ax.set_yticks(y, [f"{row.model}: {row.comparison}" for row in rows.itertuples(index=False)], fontsize=9)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    span = max(np.abs(rows[["diff_ci_low", "diff_ci_high"]].to_numpy()).max(), 0.05) * 1.15
    ax.set_xlim(-span, span)
    ax.set_xlabel(f"{metric.replace('_', ' ')} difference (95% CI, paired by split)")
    ax.set_title(_title("Paired differences between inits", title_note))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def confusion_grid(results: Mapping[tuple[str, str], ProbeResult], path: str | os.PathLike,
                   title_note: str | None = None) -> None:
    """Row-normalized confusion matrices (summed over splits), one row of panels per model, one panel per init."""
    models = list(dict.fromkeys(model for model, _ in results))
    per_model = {m: [(init, res) for (mm, init), res in results.items() if mm == m] for m in models}
    ncols = max(len(v) for v in per_model.values())
    n_classes = len(next(iter(results.values())).class_names)
    cell = max(2.6, 0.45 * n_classes + 1.2)
    # Constrained layout keeps the suptitle, panel titles and the shared colorbar from overlapping.
    fig = Figure(figsize=(cell * ncols + 1.2, cell * len(models) + 0.6), layout="constrained")
    axes = fig.subplots(len(models), ncols, squeeze=False)
    image = None
    for r, model in enumerate(models):
        for c in range(ncols):
            ax = axes[r][c]
            if c >= len(per_model[model]):
                ax.set_axis_off()
                continue
            init, res = per_model[model][c]
            cm = np.asarray(res.confusion_normalized)
            image = ax.imshow(cm, vmin=0, vmax=1, cmap="Blues")
            if n_classes <= 12:
                for i, j in np.ndindex(cm.shape):
                    ax.text(j, i, f"{cm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if cm[i, j] > 0.5 else "black")
            ticks = range(n_classes)
            ax.set_xticks(ticks, res.class_names, rotation=45, ha="right", fontsize=7)
            # Every panel has the same classes: name the rows once, in the first column.
            ax.set_yticks(ticks, res.class_names if c == 0 else [], fontsize=7)
            acc = res.summary["logreg"]["accuracy"]["mean"]
            ax.set_title(f"{model} / {init} (acc {acc:.2f})", fontsize=9)
            ax.set_xlabel("predicted", fontsize=8)
            if c == 0:
                ax.set_ylabel("true", fontsize=8)
    fig.suptitle(_title("Linear-probe confusion matrices (rows sum to 1)", title_note))
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=min(0.6, 3.0 / len(models)), label="fraction of true class")
    _save(fig, path)


def reconstruction_distributions(per_video: Mapping[str, pd.DataFrame], path: str | os.PathLike,
                                 title_note: str | None = None, seed: int = 0) -> None:
    """Box plots with jittered per-video points of PSNR, SSIM and MSE for each init.

    Infinite PSNRs (identical videos) are drawn at :data:`trajbench.metrics.PSNR_CAP_DB` and counted in the label.
    ``seed`` fixes the horizontal jitter.
    """
    inits = list(per_video)
    fig = Figure(figsize=(4.0 * len(METRIC_LABELS), 4.0))
    axes = fig.subplots(1, len(METRIC_LABELS), squeeze=False)[0]
    rng = np.random.default_rng(seed)
    for ax, (metric, label) in zip(axes, METRIC_LABELS.items()):
        values, n_capped = zip(*(cap_psnr(per_video[i][metric].to_numpy(dtype=np.float64)) for i in inits))
        ax.boxplot(values, showfliers=False, widths=0.5, medianprops={"color": "black"})
        ax.set_xticks(range(1, len(inits) + 1), inits)
        for pos, (init, v) in enumerate(zip(inits, values), start=1):
            ax.scatter(pos + rng.uniform(-0.15, 0.15, v.size), v, s=8, alpha=0.5, color=_color(init), zorder=3)
        if sum(n_capped):
            label += f"\n{sum(n_capped)} identical video(s) drawn at {PSNR_CAP_DB:.0f} dB"
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(_title("Per-video reconstruction quality", title_note))
    fig.tight_layout()
    _save(fig, path)


def _strip(video: np.ndarray, frames: Sequence[int], gap: int) -> np.ndarray:
    """Frames side by side, separated by white columns."""
    h, _, ch = video.shape[1:]
    sep = np.full((h, gap, ch), 255, dtype=np.uint8)
    parts = []
    for t in frames:
        parts += [video[t], sep]
    return np.concatenate(parts[:-1], axis=1)


def reconstruction_panel(videos: np.ndarray, labels: pd.DataFrame, recons: Mapping[str, np.ndarray],
                         path: str | os.PathLike, n_frames: int = 4, title_note: str | None = None) -> None:
    """One row per class (its first video), columns original and each init; each cell shows ``n_frames`` frames.

    ``videos`` and every ``recons[init]`` are uint8 (N, T, H, W, 3) (memmaps are fine); ``labels`` is the dataset's
    labels table with columns ``label`` and ``class_name``, row i describing video i. Reconstruction cells give the
    PSNR of that video.
    """
    for init, rec in recons.items():
        if rec.shape != videos.shape:
            raise ValueError(f"reconstructions for {init!r} have shape {rec.shape}, videos have {videos.shape}")
    if len(labels) != len(videos):
        raise ValueError(f"labels table has {len(labels)} rows but there are {len(videos)} videos")
    first = labels.reset_index(drop=True).drop_duplicates("label").sort_values("label")
    n_t = videos.shape[1]
    frames = np.unique(np.linspace(0, n_t - 1, min(n_frames, n_t)).round().astype(int))
    gap = max(1, videos.shape[3] // 32)
    columns = ["original", *recons]
    strip_w = len(frames) * videos.shape[3] + (len(frames) - 1) * gap
    # At most 4 inches a cell: a third init widens the figure instead of shrinking every cell.
    cell_w = min(2.2 * len(frames), 4.0)
    cell_h = cell_w * videos.shape[2] / strip_w + 0.4
    fig = Figure(figsize=(cell_w * len(columns) + 1.0, cell_h * len(first) + 0.8))
    axes = fig.subplots(len(first), len(columns), squeeze=False)
    for r, (idx, row) in enumerate(first.iterrows()):
        original = np.asarray(videos[idx])
        for c, name in enumerate(columns):
            ax = axes[r][c]
            shown = original if name == "original" else np.asarray(recons[name][idx])
            ax.imshow(_strip(shown, frames, gap), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if name != "original":
                diff = original.astype(np.float64) - shown
                psnr = psnr_from_mse_uint8(float(np.mean(diff * diff)))
                ax.set_xlabel(f"PSNR {psnr:.1f} dB" if math.isfinite(psnr) else "identical", fontsize=8)
            if r == 0:
                ax.set_title(name, fontsize=10)
            if c == 0:
                # Horizontal: a vertical label is taller than a short strip and runs into the next row's.
                ax.set_ylabel(f"{row['class_name']}\n(video {idx})", fontsize=8, rotation=0, ha="right",
                              va="center")
    frame_list = ", ".join(str(t) for t in frames)
    fig.suptitle(_title(f"Reconstructions, frames {frame_list}", title_note))
    fig.tight_layout()
    _save(fig, path)


def psnr_per_frame(table: pd.DataFrame, path: str | os.PathLike, first_frames: Sequence[int] = (0,),
                   title_note: str | None = None) -> dict[str, np.ndarray]:
    """Mean PSNR against frame, one line per init with its 95% CI band.

    ``table`` is :func:`trajbench.compare.psnr_per_frame_table` output. ``first_frames`` are the frames MagVit codes
    on their own: it is causal in time, so the first frame of each window is a latent frame by itself (frame 0 when
    the whole clip is one window); they are marked with dotted lines. Returns what is drawn: per init (table order)
    a (4, T) array of frame, mean, CI low and CI high.
    """
    fig = Figure(figsize=(9.0, 4.0))
    ax = fig.subplots()
    drawn = {}
    for init, rows in table.groupby("init", sort=False):
        rows = rows.sort_values("frame")
        drawn[init] = rows[["frame", "psnr_mean", "psnr_ci_low", "psnr_ci_high"]].to_numpy(np.float64).T
        frames, mean, low, high = drawn[init]
        capped = int(rows["n_capped"].sum())
        label = init + (f" ({capped} identical frame(s) at {PSNR_CAP_DB:.0f} dB)" if capped else "")
        ax.plot(frames, mean, marker="o", markersize=3, color=_color(init), label=label)
        ax.fill_between(frames, low, high, color=_color(init), alpha=0.2, linewidth=0)
    for t in first_frames:
        ax.axvline(t, color="black", linestyle=":", linewidth=1)
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color="black", linestyle=":", linewidth=1))
    labels.append("coded on its own\n(causal: its own latent frame)")
    # Outside the axes: curves and bands may fill any corner.
    ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_xlabel("frame")
    ax.set_ylabel("PSNR (dB, mean and 95% CI over videos)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.set_title(_title("MagVit reconstruction PSNR by frame", title_note))
    fig.tight_layout()
    _save(fig, path)
    return drawn
