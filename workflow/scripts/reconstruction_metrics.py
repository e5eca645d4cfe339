import numpy as np

from trajbench import io, logs, metrics, render
from trajbench.modeling_magvit import MagvitConfig

logger = logs.setup(snakemake.log[0])
videos, table = render.load_dataset(snakemake.input.videos, snakemake.input.table)
recons = np.load(snakemake.input.reconstructions, mmap_mode="r")
per_video = metrics.reconstruction_metrics(videos, recons, table)
per_video.insert(0, "init", snakemake.wildcards.init)
io.write_csv(snakemake.output.per_video, per_video)
io.write_csv(snakemake.output.per_frame, metrics.per_frame_table(metrics.per_frame_psnr(videos, recons), table))
config = MagvitConfig.from_dict(snakemake.params.architecture)
usage = metrics.codebook_usage(np.load(snakemake.input.tokens, mmap_mode="r"), config.codebook_size)
record = {"init": snakemake.wildcards.init, "codebook_size": config.codebook_size, **usage}
io.write_json(snakemake.output.codebook, record)
means = metrics.summarize(per_video).set_index("metric")["mean"]
logger.info("%s: mean PSNR %.2f dB, SSIM %.4f; %d distinct tokens", snakemake.wildcards.init, means["psnr"],
            means["ssim"], usage["distinct"])
