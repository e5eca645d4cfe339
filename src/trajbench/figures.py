"""Figures for the probe and reconstruction results: deterministic PNGs written atomically.

Figures are drawn on a ``matplotlib.figure.Figure`` with an explicit Agg canvas, so nothing depends on (or changes)
the global pyplot backend. PNGs are saved without the ``Software`` metadata entry, so the same inputs give the same
bytes. Every function takes ``title_note`` (e.g. "stand-in weights"), appended to the title in parentheses.
"""

from __future__ import annotations

import itertools
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
from trajbench.compare import SENSITIVITY_PROBES
from trajbench.metrics import PSNR_CAP_DB, cap_psnr, psnr_from_mse_uint8
from trajbench.probe import ProbeResult

DPI = 120
INIT_COLORS = {"pretrained": "#1f77b4", "random": "#ff7f0e", "finetuned": "#2ca02c", "none": "#7f7f7f"}
OTHER_COLOR = "#9467bd"
PROBE_TITLES = {"logreg": "Linear probe (logistic regression)", "attentive": "Attentive probe (token grid)",
                "knn": "k-NN probe"}
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


def _probe_panels(table: pd.DataFrame, column: str) -> list[str]:
    """The probes of SENSITIVITY_PROBES with at least one value in ``<probe>_<column>_mean``."""
    return [p for p in SENSITIVITY_PROBES if table[f"{p}_{column}_mean"].notna().any()]


def accuracy_bars(table: pd.DataFrame, path: str | os.PathLike, title_note: str | None = None) -> pd.DataFrame:
    """One panel per probe (linear, attentive): bars of ordered-clip accuracy with CI error bars for every model x
    init, grouped by model, the accuracy on shuffled clips as a white-filled circle, chance lines; kNN accuracy as
    black diamonds on the linear panel.

    ``table`` is :func:`trajbench.compare.model_table` output (its row order is kept). Returns what was drawn: one
    row per bar with columns probe, model, init, x, accuracy, ci_low, ci_high, shuffled, knn (NaN off the linear
    panel).
    """
    probes = _probe_panels(table, "accuracy")
    models = list(dict.fromkeys(table["model"]))
    inits = list(dict.fromkeys(table["init"]))
    width = 0.8 / int(table.groupby("model").size().max())
    fig = Figure(figsize=(max(6.0, 1.6 * len(models) + 2), 3.8 * len(probes) + 0.6))
    axes = fig.subplots(len(probes), 1, squeeze=False)[:, 0]
    chance_u, chance_m = float(table["chance_uniform"].iloc[0]), float(table["chance_majority"].iloc[0])
    drawn = []
    for ax, probe in zip(axes, probes):
        for model_pos, model in enumerate(models):
            rows = table[(table["model"] == model) & table[f"{probe}_accuracy_mean"].notna()].reset_index(drop=True)
            offsets = (np.arange(len(rows)) - (len(rows) - 1) / 2) * width
            for row, offset in zip(rows.itertuples(index=False), offsets):
                row = row._asdict()
                x, mean = model_pos + offset, row[f"{probe}_accuracy_mean"]
                low, high = row[f"{probe}_accuracy_ci_low"], row[f"{probe}_accuracy_ci_high"]
                shuffled = row[f"{probe}_shuffled_accuracy_mean"]
                knn = row["knn_accuracy_mean"] if probe == "logreg" else math.nan
                ax.bar(x, mean, width * 0.95, color=_color(row["init"]), yerr=[[mean - low], [high - mean]],
                       capsize=3, ecolor="black")
                ax.text(x, high + 0.01, f"{mean:.2f}", ha="center", va="bottom", fontsize=7)
                ax.plot(x, shuffled, marker="o", markerfacecolor="white", color="black", markersize=5,
                        linestyle="none")
                if probe == "logreg":
                    ax.plot(x, knn, marker="D", color="black", markersize=4, linestyle="none")
                drawn.append({"probe": probe, "model": model, "init": row["init"], "x": x, "accuracy": mean,
                              "ci_low": low, "ci_high": high, "shuffled": shuffled, "knn": knn})
        handles = [Patch(color=_color(i), label=i) for i in inits]
        handles.append(ax.axhline(chance_u, color="black", linestyle="--", linewidth=1,
                                  label=f"chance 1/K = {chance_u:.2f}"))
        if not math.isclose(chance_m, chance_u):
            handles.append(ax.axhline(chance_m, color="black", linestyle=":", linewidth=1,
                                      label=f"majority class = {chance_m:.2f}"))
        handles.append(Line2D([], [], marker="o", markerfacecolor="white", color="black", markersize=5,
                              linestyle="none", label="shuffled frames"))
        if probe == "logreg":
            handles.append(Line2D([], [], marker="D", color="black", markersize=4, linestyle="none",
                                  label="kNN accuracy"))
        ax.set_xticks(range(len(models)), models)
        ax.set_ylim(0, 1.1)
        ax.set_ylabel("accuracy (mean, 95% CI over splits)")
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        ax.set_title(PROBE_TITLES[probe], fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(_title("Probe accuracy, ordered clips (bars) and shuffled frames (circles)", title_note))
    fig.tight_layout()
    _save(fig, path)
    return pd.DataFrame(drawn)


def order_sensitivity_plot(table: pd.DataFrame, path: str | os.PathLike, title_note: str | None = None
                           ) -> pd.DataFrame:
    """Order sensitivity (ordered - shuffled accuracy, paired by split): point + 95% CI per model x init, one panel
    per probe, with a zero line; rows in the table's order, points coloured by init.

    ``table`` is :func:`trajbench.compare.model_table` output. Returns what was drawn: probe, model, init, y, mean,
    ci_low, ci_high.
    """
    probes = _probe_panels(table, "order_sensitivity")
    labels = [f"{m} / {i}" for m, i in zip(table["model"], table["init"])]
    fig = Figure(figsize=(4.2 * len(probes) + 2.0, 1.2 + 0.35 * len(table)))
    axes = fig.subplots(1, len(probes), squeeze=False, sharey=True)[0]
    y = np.arange(len(table))[::-1]
    drawn = []
    for ax, probe in zip(axes, probes):
        cols = [f"{probe}_order_sensitivity_{part}" for part in ("mean", "ci_low", "ci_high")]
        for yi, (model, init, (mean, low, high)) in zip(y, zip(table["model"], table["init"],
                                                               table[cols].to_numpy())):
            if math.isnan(mean):
                continue
            ax.errorbar(mean, yi, xerr=[[mean - low], [high - mean]], fmt="o", color=_color(init), ecolor="black",
                        capsize=3)
            drawn.append({"probe": probe, "model": model, "init": init, "y": int(yi), "mean": mean, "ci_low": low,
                          "ci_high": high})
        ax.axvline(0, color="gray", linestyle="--", linewidth=1)
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_ylim(-0.7, len(table) - 0.3)
        ax.set_xlabel("accuracy: ordered − shuffled (95% CI)")
        ax.set_title(PROBE_TITLES[probe], fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(_title("Order sensitivity: accuracy lost when each clip's frames are shuffled", title_note))
    fig.tight_layout()
    _save(fig, path)
    return pd.DataFrame(drawn)


def _ranked(block: pd.DataFrame) -> list[str]:
    """The representations of a paired_models block, best mean first (ties by name), as compare ranks them."""
    means = dict(zip(block["a"], block["a_mean"])) | dict(zip(block["b"], block["b_mean"]))
    return sorted(means, key=lambda name: (-means[name], name))


def pairwise_matrix(pairs: pd.DataFrame, path: str | os.PathLike, title_note: str | None = None
                    ) -> dict[tuple[str, str], tuple[pd.DataFrame, pd.DataFrame]]:
    """Heatmaps of paired differences, one panel per (probe, init kind): cell (row a, column b) is the mean of a - b
    per split, annotated, with "*" where the 95% CI excludes 0; diverging colours centred at 0, one shared scale.

    ``pairs`` is :func:`trajbench.compare.paired_models` output (each pair once; the other direction is its
    negation). Rows and columns run best first. Returns, per (probe, init kind), the matrix of means and the matrix
    of "CI excludes 0" (DataFrames indexed by representation; NaN / False on the diagonal).
    """
    panels = list(dict.fromkeys(zip(pairs["probe"], pairs["init_kind"])))
    if not panels:
        raise ValueError("no paired comparisons to draw: paired_models found fewer than two representations")
    shown = {}
    for probe, kind in panels:
        block = pairs[(pairs["probe"] == probe) & (pairs["init_kind"] == kind)]
        names = _ranked(block)
        mean = pd.DataFrame(np.nan, index=names, columns=names)
        significant = pd.DataFrame(False, index=names, columns=names)
        for row in block.itertuples(index=False):
            mean.loc[row.a, row.b], mean.loc[row.b, row.a] = row.diff_mean, -row.diff_mean
            excludes = bool(row.diff_ci_low > 0 or row.diff_ci_high < 0)
            significant.loc[row.a, row.b] = significant.loc[row.b, row.a] = excludes
        shown[(probe, kind)] = (mean, significant)
    kinds = list(dict.fromkeys(kind for _, kind in panels))
    probes = list(dict.fromkeys(probe for probe, _ in panels))
    side = max(len(m) for m, _ in shown.values())
    cell = 0.55
    fig = Figure(figsize=(len(kinds) * (cell * side + 1.6) + 1.2, len(probes) * (cell * side + 1.6) + 0.6),
                 layout="constrained")
    axes = fig.subplots(len(probes), len(kinds), squeeze=False)
    limit = max(float(np.nanmax(np.abs(m.to_numpy()))) for m, _ in shown.values()) or 1.0
    image = None
    for r, probe in enumerate(probes):
        for c, kind in enumerate(kinds):
            ax = axes[r][c]
            if (probe, kind) not in shown:
                ax.set_axis_off()
                continue
            mean, significant = shown[(probe, kind)]
            values = mean.to_numpy()
            image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit)
            for i, j in np.ndindex(values.shape):
                if i == j:
                    continue
                star = "*" if significant.iat[i, j] else ""
                ax.text(j, i, f"{values[i, j]:+.2f}{star}", ha="center", va="center", fontsize=6.5,
                        color="white" if abs(values[i, j]) > 0.6 * limit else "black")
            ticks = range(len(mean))
            ax.set_xticks(ticks, mean.columns, rotation=45, ha="right", fontsize=7)
            ax.set_yticks(ticks, mean.index, fontsize=7)
            ax.set_title(f"{PROBE_TITLES[probe]}, models at init {kind}", fontsize=9)
            ax.set_xlabel("b", fontsize=8)
            ax.set_ylabel("a", fontsize=8)
    fig.suptitle(_title("Paired accuracy differences a − b (rows a, columns b; * : 95% CI excludes 0)", title_note))
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="mean accuracy difference a − b")
    _save(fig, path)
    return shown


def paired_difference_plot(diffs: pd.DataFrame, path: str | os.PathLike, metric: str = "accuracy",
                           title_note: str | None = None) -> pd.DataFrame:
    """Paired init difference a - b per (model, comparison): point + 95% CI, one row each in the table's order, one
    panel per probe.

    ``diffs`` is :func:`trajbench.compare.paired_inits` output; each point is labelled with both means and coloured
    like its first init (a); thin lines separate the models. Returns the rows drawn (``diffs`` rows of ``metric``
    with the panel's y position).
    """
    rows = diffs[diffs["metric"] == metric].reset_index(drop=True)
    if rows.empty:
        raise ValueError(f"no rows for metric {metric!r} in the paired-difference table; metrics are "
                         f"{sorted(set(diffs['metric']))}")
    probes = list(dict.fromkeys(rows["probe"]))
    labels = list(dict.fromkeys(zip(rows["model"], rows["comparison"])))
    fig = Figure(figsize=(4.5 * len(probes) + 2.5, 1.2 + 0.6 * len(labels)))
    axes = fig.subplots(1, len(probes), squeeze=False, sharey=True)[0]
    position = dict(zip(labels, np.arange(len(labels))[::-1]))
    span = max(np.abs(rows[["diff_ci_low", "diff_ci_high"]].to_numpy()).max(), 0.05) * 1.15
    drawn = []
    for ax, probe in zip(axes, probes):
        for row in rows[rows["probe"] == probe].itertuples(index=False):
            yi, m = position[(row.model, row.comparison)], row.diff_mean
            ax.errorbar(m, yi, xerr=[[m - row.diff_ci_low], [row.diff_ci_high - m]], fmt="o", color=_color(row.a),
                        ecolor="black", capsize=4)
            ax.annotate(f"{row.a_mean:.2f} vs {row.b_mean:.2f}", (m, yi), textcoords="offset points",
                        xytext=(0, 7), ha="center", fontsize=8)
            drawn.append({**row._asdict(), "y": int(yi)})
        for prev, label in itertools.pairwise(labels):
            if label[0] != prev[0]:  # a new model
                ax.axhline(position[label] + 0.5, color="gray", linewidth=0.6)
        ax.axvline(0, color="gray", linestyle="--", linewidth=1)
        ax.set_yticks(list(position.values()), [f"{m}: {c}" for m, c in position], fontsize=9)
        ax.set_ylim(-0.7, len(labels) - 0.3)
        ax.set_xlim(-span, span)
        ax.set_xlabel(f"{metric.replace('_', ' ')} difference (95% CI, paired by split)")
        ax.set_title(PROBE_TITLES.get(probe, probe), fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(_title("Paired differences between inits", title_note))
    fig.tight_layout()
    _save(fig, path)
    return pd.DataFrame(drawn)


def confusion_grid(results: Mapping[tuple[str, str], ProbeResult], path: str | os.PathLike,
                   title_note: str | None = None) -> dict[tuple[str, str], pd.DataFrame]:
    """Row-normalized confusion matrices (summed over splits), one row of panels per model, one panel per init.

    Returns what was drawn: per (model, init), in panel order (row by row), the matrix shown (true classes as index,
    predicted as columns).
    """
    models = list(dict.fromkeys(model for model, _ in results))
    per_model = {m: [(init, res) for (mm, init), res in results.items() if mm == m] for m in models}
    ncols = max(len(v) for v in per_model.values())
    n_classes = len(next(iter(results.values())).class_names)
    cell = max(2.6, 0.45 * n_classes + 1.2)
    # Constrained layout keeps the suptitle, panel titles and the shared colorbar from overlapping.
    fig = Figure(figsize=(cell * ncols + 1.2, cell * len(models) + 0.6), layout="constrained")
    axes = fig.subplots(len(models), ncols, squeeze=False)
    image = None
    drawn = {}
    for r, model in enumerate(models):
        for c in range(ncols):
            ax = axes[r][c]
            if c >= len(per_model[model]):
                ax.set_axis_off()
                continue
            init, res = per_model[model][c]
            cm = np.asarray(res.confusion_normalized)
            drawn[(model, init)] = pd.DataFrame(cm, index=res.class_names, columns=res.class_names)
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
    return drawn


def reconstruction_distributions(per_video: Mapping[str, pd.DataFrame], path: str | os.PathLike,
                                 title_note: str | None = None, seed: int = 0) -> pd.DataFrame:
    """Box plots with jittered per-video points of PSNR, SSIM and MSE for each init.

    Infinite PSNRs (identical videos) are drawn at :data:`trajbench.metrics.PSNR_CAP_DB` and counted in the label.
    ``seed`` fixes the horizontal jitter. Returns what was drawn: one row per point with columns metric, init, x
    (box position 1, 2, ... plus jitter), value (capped), in the order of ``per_video`` and its rows.
    """
    inits = list(per_video)
    fig = Figure(figsize=(4.0 * len(METRIC_LABELS), 4.0))
    axes = fig.subplots(1, len(METRIC_LABELS), squeeze=False)[0]
    rng = np.random.default_rng(seed)
    drawn = []
    for ax, (metric, label) in zip(axes, METRIC_LABELS.items()):
        values, n_capped = zip(*(cap_psnr(per_video[i][metric].to_numpy(dtype=np.float64)) for i in inits))
        ax.boxplot(values, showfliers=False, widths=0.5, medianprops={"color": "black"})
        ax.set_xticks(range(1, len(inits) + 1), inits)
        for pos, (init, v) in enumerate(zip(inits, values), start=1):
            x = pos + rng.uniform(-0.15, 0.15, v.size)
            ax.scatter(x, v, s=8, alpha=0.5, color=_color(init), zorder=3)
            drawn.append(pd.DataFrame({"metric": metric, "init": init, "x": x, "value": v}))
        if sum(n_capped):
            label += f"\n{sum(n_capped)} identical video(s) drawn at {PSNR_CAP_DB:.0f} dB"
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(_title("Per-video reconstruction quality", title_note))
    fig.tight_layout()
    _save(fig, path)
    return pd.concat(drawn, ignore_index=True)


def _strip(video: np.ndarray, frames: Sequence[int], gap: int) -> np.ndarray:
    """Frames side by side, separated by white columns."""
    h, _, ch = video.shape[1:]
    sep = np.full((h, gap, ch), 255, dtype=np.uint8)
    parts = []
    for t in frames:
        parts += [video[t], sep]
    return np.concatenate(parts[:-1], axis=1)


def reconstruction_panel(videos: np.ndarray, labels: pd.DataFrame, recons: Mapping[str, np.ndarray],
                         path: str | os.PathLike, n_frames: int = 4, title_note: str | None = None
                         ) -> pd.DataFrame:
    """One row per class (its first video), columns original and each init; each cell shows ``n_frames`` frames.

    ``videos`` and every ``recons[init]`` are uint8 (N, T, H, W, 3) (memmaps are fine); ``labels`` is the dataset's
    labels table with columns ``label`` and ``class_name``, row i describing video i. Reconstruction cells give the
    PSNR of that video. Returns what was drawn: one row per cell (row by row) with columns class_name, video, column
    (original or the init), frames (the frame indices shown) and psnr (NaN for the original, inf when identical).
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
    drawn = []
    for r, (idx, row) in enumerate(first.iterrows()):
        original = np.asarray(videos[idx])
        for c, name in enumerate(columns):
            ax = axes[r][c]
            shown = original if name == "original" else np.asarray(recons[name][idx])
            ax.imshow(_strip(shown, frames, gap), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            psnr = math.nan
            if name != "original":
                diff = original.astype(np.float64) - shown
                psnr = psnr_from_mse_uint8(float(np.mean(diff * diff)))
                ax.set_xlabel(f"PSNR {psnr:.1f} dB" if math.isfinite(psnr) else "identical", fontsize=8)
            drawn.append({"class_name": row["class_name"], "video": int(idx), "column": name,
                          "frames": tuple(int(t) for t in frames), "psnr": psnr})
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
    return pd.DataFrame(drawn)


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
