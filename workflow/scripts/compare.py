from trajbench import compare, figures, io, logs
from trajbench.probe import ProbeResult

logger = logs.setup(snakemake.log[0])
p = snakemake.params
note = "stand-in weights" if p.standin else None
suffix = f" ({note})" if note else ""
results = {tuple(key): ProbeResult.from_json(path) for key, path in zip(p.model_inits, snakemake.input.results)}
out = snakemake.output

paired = compare.paired_inits(results)
models = compare.model_table(results)
# The comparison column names both inits; a and b repeat it for programs reading the CSV.
for df, shown, csv, md, heading in (
    (paired, paired.drop(columns=["a", "b"]), out.init_differences, out.init_differences_md,
     "Paired differences between inits (a − b), by fold"),
    (models, models, out.models, out.models_md, "Linear probes, every representation and init"),
):
    io.write_csv(csv, df)
    io.write_text(md, f"**{heading}{suffix}**\n\n" + compare.to_markdown(shown))

figures.accuracy_bars(models, out.accuracy, title_note=note)
figures.paired_difference_plot(paired, out.paired, title_note=note)
figures.confusion_grid(results, out.confusion, title_note=note)
logger.info("compared %d probe results", len(results))
