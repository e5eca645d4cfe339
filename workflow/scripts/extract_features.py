import numpy as np

from trajbench import features, io, logs, render, runtime, weights

logger = logs.setup(snakemake.log[0])
p = snakemake.params
videos, table = render.load_dataset(snakemake.input.videos, snakemake.input.table)
model_inputs = {}
if "env" in snakemake.input.keys():
    choice = runtime.load_choice(snakemake.input.env)
    manifest = weights.verify(snakemake.input.manifest)  # a corrupt file stops the job before the model loads
    model_inputs = dict(
        weights_dir=weights.local_path(manifest),
        device=choice.device,
        dtype=choice.dtype,
        attn_implementation=choice.attention,
    )
if "tokens" in snakemake.input.keys():
    model_inputs["tokens"] = np.load(snakemake.input.tokens, mmap_mode="r")
    model_inputs["tokens_shuffled"] = np.load(snakemake.input.tokens_shuffled, mmap_mode="r")
with runtime.cpu_threads(model_inputs.get("device", "cpu")):
    outputs, meta = features.extract_features(
        p.family,
        snakemake.wildcards.init,
        videos,
        table,
        p.options,
        model_name=snakemake.wildcards.model,
        batch_size=p.batch_size,
        seed=p.seed,
        grid_side=p.grid,
        logger=logger,
        clips=range(*p.clips),
        **model_inputs,
    )
for control, (feats, grid) in outputs.items():
    io.save_npy(snakemake.output[control], feats)
    io.save_npy(snakemake.output[f"{control}_grid"], grid)
io.write_json(snakemake.output.meta, meta)
