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
    extracted = features.extract_inits(
        p.family,
        p.inits,
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

def output(name, index):
    """The output ``name`` of the job's ``index``-th init: a paired job's outputs list one file per init."""
    path = snakemake.output[name]
    return path if isinstance(path, str) else path[index]


for index, init in enumerate(p.inits):
    outputs, meta = extracted[init]
    for control, (feats, grid) in outputs.items():
        io.save_npy(output(control, index), feats)
        io.save_npy(output(f"{control}_grid", index), grid)
    io.write_json(output("meta", index), meta)
