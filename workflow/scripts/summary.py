from pathlib import Path

import pandas as pd

from trajbench import io, logs, summary

logger = logs.setup(snakemake.log[0])
# Present only when the run fine-tunes MagVit (summary_inputs in common.smk).
finetune = snakemake.input.get("finetune")
text = summary.build(
    config=snakemake.params.config,
    env=summary.read_json(snakemake.input.env),
    manifests=[summary.read_json(p) for p in snakemake.input.manifests],
    labels=pd.read_csv(snakemake.input.table),
    tables={
        name: Path(snakemake.input[name]).read_text()
        for name in ("reconstruction", "models", "init_differences")
    },
    standin=snakemake.params.standin,
    finetune=summary.read_json(finetune) if finetune else None,
)
io.write_text(snakemake.output[0], text)
logger.info("wrote %s", snakemake.output[0])
