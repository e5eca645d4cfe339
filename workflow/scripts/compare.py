from trajbench import compare, figures, io, logs
from trajbench.probe import ProbeResult

logger = logs.setup(snakemake.log[0])
p = snakemake.params
note = "stand-in weights" if p.standin else None
suffix = f" ({note})" if note else ""
results = {tuple(key): ProbeResult.from_json(path) for key, path in zip(p.model_inits, snakemake.input.results)}
out = snakemake.output

paired = compare.pretrained_vs_random(results)
models = compare.model_table(results)
for df, csv, md, heading in (
    (paired, out.pretrained_vs_random, out.pretrained_vs_random_md, "Pretrained − random, paired by fold"),
    (models, out.models, out.models_md, "Linear probes, every representation and init"),
):
    with io.atomic_path(csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    io.write_text(md, f"**{heading}{suffix}**\n\n" + compare.to_markdown(df))

figures.accuracy_bars(models, out.accuracy, title_note=note)
figures.paired_difference_plot(paired, out.paired, title_note=note)
figures.confusion_grid(results, out.confusion, title_note=note)
logger.info("compared %d probe results", len(results))
