"""Comparison tables across models, inits and controls, and a Markdown renderer that needs no optional packages.

Probe results are keyed ``(model, init, control)``, control "ordered" or "shuffled" (`trajbench.controls`); every
result must come from the same splits (:func:`check_same_splits`), so any two can be paired by (repeat, fold):
inits of one model (:func:`paired_inits`), a model's two controls (order sensitivity, :func:`model_table`) and
representations at one init kind (:func:`paired_models`).

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
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from trajbench import io
from trajbench.metrics import METRICS, cap_psnr, mean_ci
from trajbench.probe import FOLD_COLUMNS, PROBES, ProbeResult

# A third MagVit init, "finetuned" (the tokenizer fine-tuned on synthetic clips), sits after the two it is compared to.
INIT_ORDER = ("pretrained", "random", "finetuned", "none")
# Paired comparisons (a, b), reported as a - b, in this order, for every pair whose two inits are present.
PAIRS = (("pretrained", "random"), ("finetuned", "random"), ("finetuned", "pretrained"))
CODEBOOK_STATS = ("distinct", "perplexity", "fraction_used")
# Question 2 compares the models at one init kind with each other and with the baselines (init "none").
INIT_KINDS = ("pretrained", "random", "finetuned")
# The probes whose accuracy is also scored on shuffled clips in the model table (kNN is a second opinion only).
SENSITIVITY_PROBES = ("logreg", "attentive")
CI_PARTS = ("mean", "ci_low", "ci_high")
# model_table's columns per probe of SENSITIVITY_PROBES, each a CI triple: <probe>_<stat>_<part>.
MODEL_STATS = ("accuracy", "shuffled_accuracy", "order_sensitivity", "macro_f1")
PAIR_COLUMNS = ["init_kind", "probe", "a", "b", "a_init", "b_init", "n_splits", "a_mean", "b_mean", "diff_mean",
                "diff_ci_low", "diff_ci_high"]


def _ci_columns(name: str, values: Any, ratio: float = 0.0) -> dict[str, float]:
    mean, low, high = mean_ci(values, test_train_ratio=ratio)
    return {f"{name}_mean": mean, f"{name}_ci_low": low, f"{name}_ci_high": high}


def _stat_columns(name: str, stat: Mapping[str, float]) -> dict[str, float]:
    """A ProbeResult summary entry {mean, ci_low, ci_high} as ``<name>_mean`` / ``_ci_low`` / ``_ci_high``."""
    return {f"{name}_{part}": stat[part] for part in CI_PARTS}


def _folds(result: ProbeResult | pd.DataFrame, where: str) -> pd.DataFrame:
    frame = result.folds_frame() if isinstance(result, ProbeResult) else result
    missing = set(FOLD_COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"per-split table for {where} lacks column(s) {sorted(missing)}; "
                         "use ProbeResult.folds_to_csv output")
    return frame


def _probes(result: ProbeResult | pd.DataFrame) -> list[str]:
    """The probes a result scored, in :data:`PROBES` order."""
    if isinstance(result, ProbeResult):
        return result.probes
    present = set(result["probe"])
    return [p for p in PROBES if p in present]


def _init_rank(init: str) -> tuple[int, str]:
    return (INIT_ORDER.index(init), "") if init in INIT_ORDER else (len(INIT_ORDER), init)


def comparison_name(a: str, b: str) -> str:
    """Label of the paired difference a - b, e.g. "finetuned − random" (a minus sign, as in the tables)."""
    return f"{a} − {b}"


def _pairs(inits: Iterable[str]) -> list[tuple[str, str]]:
    present = set(inits)
    return [(a, b) for a, b in PAIRS if a in present and b in present]


def _name(key: tuple[str, ...]) -> str:
    return "/".join(key)


def _paired_splits(a_res: ProbeResult | pd.DataFrame, b_res: ProbeResult | pd.DataFrame, probe: str,
                   a_name: str, b_name: str) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """Both results' rows of ``probe``, indexed and ordered by (repeat, fold), and the mean n_test / n_train.

    Raises unless both cover the same splits with the same test sizes: only then is a - b per split a paired
    difference."""
    a, b = (_folds(res, name) for res, name in ((a_res, a_name), (b_res, b_name)))
    a, b = (f[f["probe"] == probe].set_index(["repeat", "fold"]).sort_index() for f in (a, b))
    if not a.index.equals(b.index) or not np.array_equal(a["n_test"], b["n_test"]):
        raise ValueError(f"{a_name} and {b_name} per-split tables cover different (repeat, fold) splits or test "
                         f"sizes ({len(a)} vs {len(b)} {probe} rows); they cannot be paired")
    if a.empty:
        raise ValueError(f"{a_name}: no rows for probe {probe!r}")
    return a, b, float(np.mean(a["n_test"] / a["n_train"]))


def _control(results: Mapping[tuple[str, str, str], ProbeResult | pd.DataFrame], control: str
             ) -> dict[tuple[str, str], ProbeResult | pd.DataFrame]:
    return {(model, init): res for (model, init, c), res in results.items() if c == control}


def check_same_splits(results: Mapping[tuple[str, ...], ProbeResult | pd.DataFrame]) -> None:
    """Raise ValueError unless every ProbeResult in ``results`` has one ``splits_sha256`` and the control its key
    names.

    ``results`` maps (model, init, control) to a result. Shared folds are what make rows comparable and inits,
    models and controls pairable, so a mismatch is an error, not a warning. Per-split tables (DataFrames) carry no
    fingerprint; the paired tables check their (repeat, fold) rows instead.
    """
    groups: dict[str, list[str]] = {}
    for key, res in sorted(results.items()):
        if not isinstance(res, ProbeResult):
            continue
        if res.control != key[-1]:
            raise ValueError(f"the probe result given as {_name(key)} records control {res.control!r}; "
                             f"rule compare reads results/probes/<model>/<init>/<control>.json, rerun rule probe")
        groups.setdefault(res.splits_sha256, []).append(_name(key))
    if len(groups) > 1:
        listing = "; ".join(f"{', '.join(keys)}: splits_sha256 {sha}" for sha, keys in groups.items())
        raise ValueError(f"probe results were scored on different splits ({listing}). Every model and control must "
                         "be scored on the same folds: rerun rule probe for all models with the same probe config "
                         "(e.g. snakemake --forcerun probe)")


def paired_inits(results: Mapping[tuple[str, str, str], ProbeResult | pd.DataFrame],
                 metrics: tuple[str, ...] = ("accuracy", "macro_f1"), probes: Sequence[str] | None = None
                 ) -> pd.DataFrame:
    """Paired differences a - b between the inits of each model (ordered clips), matched by (repeat, fold).

    ``results`` maps (model, init, control) to a ProbeResult or its per-split table (``folds_frame`` / the folds
    CSV); only the "ordered" control is read. Every pair of :data:`PAIRS` whose two inits a model has is compared,
    for each of ``probes`` (default: every probe both results scored); models without such a pair are skipped.
    Returns one row per (model, probe, comparison, metric): model, comparison ("a − b"), a, b, probe, metric,
    n_splits, a_mean, b_mean, diff_mean, diff_ci_low, diff_ci_high (corrected resampled t-interval). Raises if the
    results were not all scored on the same splits (:func:`check_same_splits`).
    """
    check_same_splits(results)
    ordered = _control(results, "ordered")
    rows = []
    for model in sorted({m for m, _ in ordered}):
        pairs = _pairs(i for m, i in ordered if m == model)
        for probe in PROBES:
            for a_init, b_init in pairs:
                a_res, b_res = ordered[(model, a_init)], ordered[(model, b_init)]
                both = set(_probes(a_res)) & set(_probes(b_res))
                if probe not in both or (probes is not None and probe not in probes):
                    continue
                a, b, ratio = _paired_splits(a_res, b_res, probe, f"{model}/{a_init}", f"{model}/{b_init}")
                for metric in metrics:
                    rows.append({"model": model, "comparison": comparison_name(a_init, b_init), "a": a_init,
                                 "b": b_init, "probe": probe, "metric": metric, "n_splits": len(a),
                                 "a_mean": float(a[metric].mean()), "b_mean": float(b[metric].mean()),
                                 **_ci_columns("diff", a[metric].to_numpy() - b[metric].to_numpy(), ratio)})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    # Same model order as model_table: best mean (any compared init) of the first probe on the first metric first,
    # ties by name; within a model, probes in PROBES order and comparisons in the order of PAIRS (stable sort).
    first = out[(out["metric"] == metrics[0]) & (out["probe"] == out["probe"].iloc[0])]
    out["_best"] = out["model"].map(first.groupby("model")[["a_mean", "b_mean"]].max().max(axis=1))
    out = out.sort_values(["_best", "model"], ascending=[False, True], kind="stable", na_position="last")
    return out.drop(columns="_best").reset_index(drop=True)


def model_table(results: Mapping[tuple[str, str, str], ProbeResult]) -> pd.DataFrame:
    """One row per (model, init): each probe's accuracy on ordered and on shuffled clips, and the order sensitivity.

    ``results`` maps (model, init, control) to a ProbeResult, for both controls of every (model, init). Columns:
    model, init, n_splits; for logreg and attentive ``<probe>_accuracy``, ``<probe>_shuffled_accuracy``,
    ``<probe>_order_sensitivity`` (ordered - shuffled accuracy paired by (repeat, fold), corrected interval) and
    ``<probe>_macro_f1``, each as mean / ci_low / ci_high (NaN where the probe did not run); ``knn_accuracy``
    (ordered); chance_uniform, chance_majority. Sorted by each model's best logreg accuracy (descending), ties by
    name, then init (:data:`INIT_ORDER`). Raises if the results were not all scored on the same splits
    (:func:`check_same_splits`) or a (model, init) lacks a control.
    """
    check_same_splits(results)
    ordered, shuffled = _control(results, "ordered"), _control(results, "shuffled")
    if set(ordered) != set(shuffled):
        lacking = sorted(_name(k) + "/" + ("shuffled" if k in ordered else "ordered")
                         for k in set(ordered) ^ set(shuffled))
        raise ValueError(f"no probe result for {', '.join(lacking)}: every model and init is scored on ordered and "
                         "shuffled clips (results/probes/<model>/<init>/<control>.json); rerun rule probe")
    rows = []
    for (model, init), res in ordered.items():
        shuf = shuffled[(model, init)]
        row: dict[str, Any] = {"model": model, "init": init, "n_splits": len(res.folds)}
        for probe in SENSITIVITY_PROBES:
            if probe not in res.probes or probe not in shuf.probes:
                row.update({f"{probe}_{name}_{part}": math.nan for name in MODEL_STATS for part in CI_PARTS})
                continue
            a, b, ratio = _paired_splits(res, shuf, probe, f"{model}/{init}/ordered", f"{model}/{init}/shuffled")
            row.update(_stat_columns(f"{probe}_accuracy", res.summary[probe]["accuracy"]))
            row.update(_stat_columns(f"{probe}_shuffled_accuracy", shuf.summary[probe]["accuracy"]))
            row.update(_ci_columns(f"{probe}_order_sensitivity", a["accuracy"].to_numpy() - b["accuracy"].to_numpy(),
                                   ratio))
            row.update(_stat_columns(f"{probe}_macro_f1", res.summary[probe]["macro_f1"]))
        row.update(_stat_columns("knn_accuracy", res.summary["knn"]["accuracy"]))
        row.update({"chance_uniform": res.chance["uniform"], "chance_majority": res.chance["majority"]})
        rows.append(row)
    out = pd.DataFrame(rows)
    best = out.groupby("model")["logreg_accuracy_mean"].transform("max")
    key = sorted(range(len(out)), key=lambda i: (-best[i], out["model"][i], _init_rank(out["init"][i])))
    return out.iloc[key].reset_index(drop=True)


def paired_models(results: Mapping[tuple[str, str, str], ProbeResult | pd.DataFrame],
                  probes: Sequence[str] = ("logreg", "attentive"), metric: str = "accuracy") -> pd.DataFrame:
    """Question 2, paired: every representation against every other on the same folds (ordered clips).

    For each init kind k of :data:`INIT_KINDS` that some model has, the representations are the models at init k
    plus the baselines (init "none"). Each pair (a, b), a ranked above b (higher mean ``metric``, ties by name),
    gives a - b per (repeat, fold), its mean and corrected interval. Returns columns init_kind, probe, a, b, a_init,
    b_init, n_splits, a_mean, b_mean, diff_mean, diff_ci_low, diff_ci_high; within an (init kind, probe) block the
    rows run through a in rank order, then b in rank order, so the first rows compare the best with the rest.
    A representation whose result lacks a probe is left out of that probe's block.
    """
    check_same_splits(results)
    ordered = _control(results, "ordered")
    baselines = sorted(m for m, i in ordered if i == "none")
    rows = []
    for kind in INIT_KINDS:
        models = sorted(m for m, i in ordered if i == kind)
        if not models:
            continue
        for probe in probes:
            members = [(m, kind) for m in models] + [(m, "none") for m in baselines]
            members = [k for k in members if probe in _probes(ordered[k])]
            frames = {k: _folds(ordered[k], _name(k)) for k in members}
            means = {k: float(f.loc[f["probe"] == probe, metric].mean()) for k, f in frames.items()}
            ranked = sorted(members, key=lambda k: (-means[k], k[0]))
            for pos, a_key in enumerate(ranked):
                for b_key in ranked[pos + 1:]:
                    a, b, ratio = _paired_splits(frames[a_key], frames[b_key], probe, _name(a_key), _name(b_key))
                    rows.append({"init_kind": kind, "probe": probe, "a": a_key[0], "b": b_key[0],
                                 "a_init": a_key[1], "b_init": b_key[1], "n_splits": len(a),
                                 "a_mean": means[a_key], "b_mean": means[b_key],
                                 **_ci_columns("diff", a[metric].to_numpy() - b[metric].to_numpy(), ratio)})
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


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
