"""Comparison tables across models and inits, and a Markdown renderer that needs no optional packages.

Interval conventions (see :mod:`trajbench.metrics`): probe scores come from repeated K-fold splits, which are not
independent, so means and paired differences over splits use the Nadeau-Bengio corrected resampled t-interval
(variance of the mean ``s**2 * (1/J + n_test/n_train)``); this is approximate but far less over-confident than the
plain t-interval. Per-video reconstruction metrics are independent across videos and use the plain (paired)
t-interval.

Column naming: a statistic with an interval is stored as ``<name>_mean``, ``<name>_ci_low``, ``<name>_ci_high``;
:func:`to_markdown` folds such triples into one ``mean [low, high]`` column.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from trajbench import io
from trajbench.metrics import METRICS, cap_psnr, mean_ci
from trajbench.probe import FOLD_COLUMNS, ProbeResult

# A third MagVit init, "finetuned" (the tokenizer fine-tuned on synthetic clips), sits after the two it is compared to.
INIT_ORDER = ("pretrained", "random", "finetuned", "none")
# Paired comparisons (a, b), reported as a - b, in this order, for every pair whose two inits are present.
PAIRS = (("pretrained", "random"), ("finetuned", "random"), ("finetuned", "pretrained"))
CODEBOOK_STATS = ("distinct", "perplexity", "fraction_used")


def _ci_columns(name: str, values: Any, ratio: float = 0.0) -> dict[str, float]:
    mean, low, high = mean_ci(values, test_train_ratio=ratio)
    return {f"{name}_mean": mean, f"{name}_ci_low": low, f"{name}_ci_high": high}


def _folds(result: ProbeResult | pd.DataFrame, where: tuple[str, str]) -> pd.DataFrame:
    frame = result.folds_frame() if isinstance(result, ProbeResult) else result
    missing = set(FOLD_COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"per-split table for {where} lacks column(s) {sorted(missing)}; "
                         "use ProbeResult.folds_to_csv output")
    return frame


def _init_rank(init: str) -> tuple[int, str]:
    return (INIT_ORDER.index(init), "") if init in INIT_ORDER else (len(INIT_ORDER), init)


def comparison_name(a: str, b: str) -> str:
    """Label of the paired difference a - b, e.g. "finetuned − random" (a minus sign, as in the tables)."""
    return f"{a} − {b}"


def _pairs(inits: Iterable[str]) -> list[tuple[str, str]]:
    present = set(inits)
    return [(a, b) for a, b in PAIRS if a in present and b in present]


def check_same_splits(results: Mapping[tuple[str, str], ProbeResult | pd.DataFrame]) -> None:
    """Raise ValueError unless every ProbeResult in ``results`` has one ``splits_sha256``.

    Shared folds are what make rows comparable and inits pairable, so a mismatch is an error, not a warning. Per-split
    tables (DataFrames) carry no fingerprint; :func:`paired_inits` checks their (repeat, fold) rows instead.
    """
    groups: dict[str, list[str]] = {}
    for (model, init), res in sorted(results.items()):
        if isinstance(res, ProbeResult):
            groups.setdefault(res.splits_sha256, []).append(f"{model}/{init}")
    if len(groups) > 1:
        listing = "; ".join(f"{', '.join(keys)}: splits_sha256 {sha}" for sha, keys in groups.items())
        raise ValueError(f"probe results were scored on different splits ({listing}). Every model must be scored on "
                         "the same folds: rerun rule probe for all models with the same probe config "
                         "(e.g. snakemake --forcerun probe)")


def paired_inits(results: Mapping[tuple[str, str], ProbeResult | pd.DataFrame],
                 metrics: tuple[str, ...] = ("accuracy", "macro_f1"), probe: str = "logreg") -> pd.DataFrame:
    """Paired differences a - b between the inits of each model, matched by (repeat, fold).

    ``results`` maps (model, init) to a ProbeResult or its per-split table (``folds_frame`` / the folds CSV). Every
    pair of :data:`PAIRS` whose two inits a model has is compared; models without such a pair are skipped. Returns
    one row per (model, comparison, metric): model, comparison ("a − b"), a, b, probe, metric, n_splits, a_mean,
    b_mean, diff_mean, diff_ci_low, diff_ci_high (corrected resampled t-interval). Raises if the results were not
    all scored on the same splits (:func:`check_same_splits`).
    """
    check_same_splits(results)
    rows = []
    for model in sorted({m for m, _ in results}):
        for a_init, b_init in _pairs(i for m, i in results if m == model):
            a_res, b_res = results[(model, a_init)], results[(model, b_init)]
            frames = [_folds(r, (model, init)) for r, init in ((a_res, a_init), (b_res, b_init))]
            a, b = (f[f["probe"] == probe].set_index(["repeat", "fold"]).sort_index() for f in frames)
            if not a.index.equals(b.index) or not np.array_equal(a["n_test"], b["n_test"]):
                raise ValueError(f"{model}: {a_init} and {b_init} per-split tables cover different (repeat, fold) "
                                 f"splits or test sizes ({len(a)} vs {len(b)} {probe} rows); they cannot be paired")
            if a.empty:
                raise ValueError(f"{model}: no rows for probe {probe!r}")
            ratio = float(np.mean(a["n_test"] / a["n_train"]))
            for metric in metrics:
                rows.append({"model": model, "comparison": comparison_name(a_init, b_init), "a": a_init,
                             "b": b_init, "probe": probe, "metric": metric, "n_splits": len(a),
                             "a_mean": float(a[metric].mean()), "b_mean": float(b[metric].mean()),
                             **_ci_columns("diff", a[metric].to_numpy() - b[metric].to_numpy(), ratio)})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    # Same model order as model_table: best mean (any compared init) on the first metric first, ties by name;
    # within a model the comparisons keep the order of PAIRS (the sort is stable).
    first = out[out["metric"] == metrics[0]]
    out["_best"] = out["model"].map(first.groupby("model")[["a_mean", "b_mean"]].max().max(axis=1))
    out = out.sort_values(["_best", "model"], ascending=[False, True], kind="stable")
    return out.drop(columns="_best").reset_index(drop=True)


def model_table(results: Mapping[tuple[str, str], ProbeResult]) -> pd.DataFrame:
    """One row per (model, init): logreg accuracy and macro-F1, kNN accuracy (means + intervals), chance levels.

    Sorted by each model's best logreg accuracy (descending), then init (pretrained, random, none). Raises if the
    results were not all scored on the same splits (:func:`check_same_splits`).
    """
    check_same_splits(results)
    rows = []
    for (model, init), res in results.items():
        s = res.summary
        row: dict[str, Any] = {"model": model, "init": init, "n_splits": len(res.folds)}
        for name, stat in (("accuracy", s["logreg"]["accuracy"]), ("macro_f1", s["logreg"]["macro_f1"]),
                           ("knn_accuracy", s["knn"]["accuracy"])):
            row.update({f"{name}_mean": stat["mean"], f"{name}_ci_low": stat["ci_low"],
                        f"{name}_ci_high": stat["ci_high"]})
        row.update({"chance_uniform": res.chance["uniform"], "chance_majority": res.chance["majority"]})
        rows.append(row)
    out = pd.DataFrame(rows)
    best = out.groupby("model")["accuracy_mean"].transform("max")
    key = sorted(range(len(out)), key=lambda i: (-best[i], out["model"][i], _init_rank(out["init"][i])))
    return out.iloc[key].reset_index(drop=True)


def reconstruction_table(per_video: Mapping[str, pd.DataFrame],
                         codebook: Mapping[str, Mapping[str, float]] | None = None) -> pd.DataFrame:
    """Reconstruction quality per init, and paired differences between inits.

    ``per_video[init]`` is :func:`trajbench.metrics.reconstruction_metrics` output, for two or more inits (the
    column order follows the mapping); videos are paired by ``index``. ``codebook[init]`` is
    :func:`trajbench.metrics.codebook_usage` output (dataset-level numbers: no interval), for the same inits.
    Rows: mse, psnr, ssim (plain t-intervals over videos, paired for differences; infinite PSNR capped as in
    :func:`trajbench.metrics.summarize`), then codebook_distinct / codebook_perplexity / codebook_fraction_used.
    Columns: metric, n, ``<init>_*`` means and intervals per init, ``<a>_minus_<b>_*`` per pair of :data:`PAIRS`
    present, and ``<init>_n_capped``.
    """
    inits = list(per_video)
    if len(inits) < 2:
        raise ValueError(f"reconstruction_table compares inits and needs per-video metrics for at least two; got "
                         f"{inits}")
    if codebook is not None and set(codebook) != set(inits):
        raise ValueError(f"codebook stats are for inits {sorted(codebook)} but per-video metrics for "
                         f"{sorted(inits)}; pass both for the same inits")
    tables = {}
    for init in inits:
        frame = per_video[init]
        if frame["index"].duplicated().any():
            raise ValueError(f"per-video metrics for {init!r} list some video index more than once")
        tables[init] = frame.set_index("index")
    ref = inits[0]
    for init in inits[1:]:
        shared = tables[ref].index.intersection(tables[init].index)
        if not len(shared) == len(tables[ref]) == len(tables[init]):
            raise ValueError(f"{ref} ({len(tables[ref])}) and {init} ({len(tables[init])}) per-video tables share "
                             f"only {len(shared)} video indices; they must cover the same videos")
    order = tables[ref].index
    pairs = _pairs(inits)
    rows = []
    for metric in METRICS:
        capped = {i: cap_psnr(tables[i].loc[order, metric].to_numpy(dtype=np.float64)) for i in inits}
        row: dict[str, Any] = {"metric": metric, "n": len(order)}
        for init in inits:
            row.update(_ci_columns(init, capped[init][0]))
        for a, b in pairs:
            row.update(_ci_columns(f"{a}_minus_{b}", capped[a][0] - capped[b][0]))
        rows.append(row | {f"{i}_n_capped": capped[i][1] for i in inits})
    if codebook is not None:
        for stat in CODEBOOK_STATS:
            value = {i: float(codebook[i][stat]) for i in inits}
            rows.append({"metric": f"codebook_{stat}", **{f"{i}_mean": value[i] for i in inits},
                         **{f"{a}_minus_{b}_mean": value[a] - value[b] for a, b in pairs}})
    return pd.DataFrame(rows)


def psnr_per_frame_table(per_frame: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Mean PSNR of each frame per init, with plain t-intervals over videos.

    ``per_frame[init]`` is :func:`trajbench.metrics.per_frame_table` output (columns index, frame, psnr). Infinite
    PSNRs (identical frames) are capped as in :func:`trajbench.metrics.summarize`. Rows: init (in mapping order),
    frame; columns init, frame, n, psnr_mean, psnr_ci_low, psnr_ci_high, n_capped.
    """
    rows = []
    for init, frame in per_frame.items():
        missing = {"index", "frame", "psnr"} - set(frame.columns)
        if missing:
            raise ValueError(f"per-frame PSNR for {init!r} lacks column(s) {sorted(missing)}; expected "
                             "per_frame.csv of rule reconstruction_metrics")
        for t, group in frame.groupby("frame", sort=True):
            values, n_capped = cap_psnr(group["psnr"].to_numpy(dtype=np.float64))
            rows.append({"init": init, "frame": int(t), "n": len(values), **_ci_columns("psnr", values),
                         "n_capped": n_capped})
    return pd.DataFrame(rows)


def _format_cell(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        # Large values (token counts, perplexities) read better as whole numbers than as 2.3e+03.
        return f"{value:.0f}" if abs(value) >= 10**digits else f"{value:.{digits}g}"
    return str(value)


def _collapse_ci(df: pd.DataFrame, digits: int) -> pd.DataFrame:
    """Fold each ``<name>_mean`` / ``_ci_low`` / ``_ci_high`` (or bare mean / ci_low / ci_high) into one column."""
    out = df.copy()
    for col in list(out.columns):
        if not (col == "mean" or str(col).endswith("_mean")):
            continue
        base = str(col)[: -len("mean")]
        low, high = f"{base}ci_low", f"{base}ci_high"
        if low not in out.columns or high not in out.columns:
            continue
        cells = []
        for m, lo, hi in zip(out[col], out[low], out[high]):
            text = _format_cell(m, digits)
            if text and not (math.isnan(lo) or math.isnan(hi)):
                text += f" [{_format_cell(lo, digits)}, {_format_cell(hi, digits)}]"
            cells.append(text)
        out[col] = cells
        out = out.drop(columns=[low, high]).rename(columns={col: f"{base.rstrip('_') or 'mean'} (95% CI)"})
    return out


def to_markdown(df: pd.DataFrame, digits: int = 3, collapse_ci: bool = True) -> str:
    """GitHub Markdown table of ``df`` (index not shown); floats with ``digits`` significant digits, NaN blank.

    With ``collapse_ci``, interval triples become one ``name (95% CI)`` column reading ``mean [low, high]``.
    Numeric columns are right-aligned. Needs no optional dependency (pandas' own to_markdown needs tabulate).
    """
    numeric = {c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])}
    table = _collapse_ci(df, digits) if collapse_ci else df
    renamed = {str(c) for c in table.columns} - {str(c) for c in df.columns}
    align = ["right" if c in numeric or str(c) in renamed else "left" for c in table.columns]
    body = [[_format_cell(v, digits) for v in row] for row in table.itertuples(index=False, name=None)]
    return io.markdown_table([str(c) for c in table.columns], body, align) + "\n"
