from pathlib import Path

import pandas as pd

from trajbench import io, logs, summary
from trajbench.probe import ProbeResult

logger = logs.setup(snakemake.log[0])
inp, p = snakemake.input, snakemake.params
# Present only when the run fine-tunes MagVit (summary_inputs in common.smk).
finetune = inp.get("finetune")
tables = summary.Tables(
    reconstruction=Path(inp.reconstruction).read_text(),
    models=pd.read_csv(inp.models),
    inits=pd.read_csv(inp.init_differences),
    pairs=pd.read_csv(inp.representations),
    # Keys in the order of the inputs (model_inits and probe_results in common.smk).
    features={tuple(key): summary.read_json(path) for key, path in zip(p.feature_keys, inp.features)},
    notes={tuple(key): ProbeResult.from_json(path).notes for key, path in zip(p.probe_keys, inp.probes)},
)
text = summary.build(
    config=p.config,
    env=summary.read_json(inp.env),
    manifests=[summary.read_json(path) for path in inp.manifests],
    labels=pd.read_csv(inp.table),
    tables=tables,
    tokenizer=p.tokenizer,
    standin=p.standin,
    finetune=summary.read_json(finetune) if finetune else None,
)
io.write_text(snakemake.output[0], text)
logger.info("wrote %s", snakemake.output[0])
