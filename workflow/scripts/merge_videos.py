from trajbench import logs, render

logger = logs.setup(snakemake.log[0])
render.merge_shards(snakemake.input.videos, snakemake.input.tables, snakemake.output.videos, snakemake.output.table)
videos, table = render.load_dataset(snakemake.output.videos, snakemake.output.table)
logger.info("dataset: %d videos %s, classes %s", len(videos), videos.shape[1:], sorted(set(table["class_name"])))
