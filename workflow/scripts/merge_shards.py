from trajbench import logs, shards

logger = logs.setup(snakemake.log[0])
arrays = {snakemake.output[name]: list(snakemake.input[name]) for name in snakemake.params.arrays}
logger.info("merging %d shards of %s", len(snakemake.input.meta), snakemake.params.what)
shards.merge(arrays, list(snakemake.input.meta), snakemake.output.meta, snakemake.params.clips, snakemake.params.what)
