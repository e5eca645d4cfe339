from trajbench import logs, render

logger = logs.setup(snakemake.log[0])
videos, table = render.load_dataset(snakemake.input.videos, snakemake.input.table)
render.preview_sheet(videos, table, snakemake.output.sheet)
gifs = render.class_gifs(videos, table, snakemake.output.gifs)
logger.info("wrote %s and %d GIFs", snakemake.output.sheet, len(gifs))
