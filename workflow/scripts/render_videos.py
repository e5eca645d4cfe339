from trajbench import logs, render

logger = logs.setup(snakemake.log[0])
cfg = render.DatasetConfig.from_dict(snakemake.params.dataset)
shard = snakemake.params.shard
logger.info("rendering shard %d/%d: videos %s", shard, cfg.shards, cfg.shard_indices(shard))
render.render_shard(cfg, shard, snakemake.output.videos, snakemake.output.table, logger)
