from trajbench import compare, figures, io, logs
from trajbench.probe import ProbeResult

logger = logs.setup(snakemake.log[0])
p = snakemake.params
note = "stand-in weights" if p.standin else None
suffix = f" ({note})" if note else ""
# Keys (model, init, control), in the order of the inputs (probe_results in common.smk).
results = {
    tuple(key): ProbeResult.from_json(path) for key, path in zip(p.result_keys, snakemake.input.results)
}
out = snakemake.output

paired = compare.paired_inits(results)
models = compare.model_table(results)
pairs = compare.paired_models(results)
# The comparison column names both inits, and the init kind the inits of a pair; the CSVs keep them for programs.
for df, shown, csv, md, heading in (
    (paired, paired.drop(columns=["a", "b"]), out.init_differences, out.init_differences_md,
     "Paired differences between inits (a − b), by fold, ordered clips"),
    (models, models, out.models, out.models_md,
     "Probes on every representation and init: ordered and shuffled clips, order sensitivity"),
    (pairs, pairs.drop(columns=["a_init", "b_init"]), out.representations, out.representations_md,
     "Paired accuracy differences between representations (a − b), by fold, ordered clips"),
):
    io.write_csv(csv, df)
    io.write_text(md, f"**{heading}{suffix}**\n\n" + compare.to_markdown(shown))

figures.accuracy_bars(models, out.accuracy, title_note=note)
figures.order_sensitivity_plot(models, out.order_sensitivity, title_note=note)
figures.paired_difference_plot(paired, out.paired, title_note=note)
figures.pairwise_matrix(pairs, out.representation_matrix, title_note=note)
ordered = {(model, init): res for (model, init, control), res in results.items() if control == "ordered"}
figures.confusion_grid(ordered, out.confusion, title_note=note)
logger.info("compared %d probe results", len(results))
