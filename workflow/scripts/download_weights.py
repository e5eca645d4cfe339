from trajbench import logs, weights

logger = logs.setup(snakemake.log[0])
cfg = snakemake.params.weights
manifest = weights.fetch(
    snakemake.params.model,
    snakemake.params.model_cfg,
    cache_dir=cfg["cache_dir"],
    offline=cfg["offline"],
    lockfile=cfg["lockfile"],
    logger=logger,
)
weights.write_manifest(manifest, snakemake.output[0])
logger.info("%s: %d file(s) verified", snakemake.params.model, len(manifest["files"]))
