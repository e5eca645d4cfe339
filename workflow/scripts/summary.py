from pathlib import Path

import pandas as pd

from trajbench import io, logs, summary

logger = logs.setup(snakemake.log[0])
text = summary.build(
    config=snakemake.params.config,
    env=summary.read_json(snakemake.input.env),
    manifests=[summary.read_json(p) for p in snakemake.input.manifests],
    labels=pd.read_csv(snakemake.input.table),
    tables={
        name: Path(snakemake.input[name]).read_text()
        for name in ("reconstruction", "models", "pretrained_vs_random")
    },
    standin=snakemake.params.standin,
)
io.write_text(snakemake.output[0], text)
logger.info("wrote %s", snakemake.output[0])
