import json

import numpy as np
import pandas as pd

from trajbench import compare, figures, io, logs, render

logger = logs.setup(snakemake.log[0])
p = snakemake.params
note = "stand-in weights" if p.standin else None
per_video = {init: pd.read_csv(path) for init, path in zip(p.inits, snakemake.input.per_video)}
codebook = {init: json.loads(open(path).read()) for init, path in zip(p.inits, snakemake.input.codebook)}
table = compare.reconstruction_table(per_video, codebook)
io.write_csv(snakemake.output.table, table)
heading = "MagVit reconstruction by init" + (f" ({note})" if note else "")
# Markdown headers read "pretrained − random (95% CI)" where the CSV has pretrained_minus_random_*.
shown = table.rename(columns=lambda c: c.replace("_minus_", " − "))
io.write_text(snakemake.output.markdown, f"**{heading}**\n\n" + compare.to_markdown(shown))
figures.reconstruction_distributions(per_video, snakemake.output.distributions, title_note=note)
per_frame = compare.psnr_per_frame_table(
    {init: pd.read_csv(path) for init, path in zip(p.inits, snakemake.input.per_frame)}
)
io.write_csv(snakemake.output.psnr_per_frame, per_frame)
videos, labels = render.load_dataset(snakemake.input.videos, snakemake.input.table)
# tokenize.window (null: the whole clip) sets which frames MagVit codes on their own, one per window.
figures.psnr_per_frame(per_frame, snakemake.output.psnr_per_frame_figure,
                       first_frames=range(0, videos.shape[1], p.window or videos.shape[1]), title_note=note)
recons = {init: np.load(path, mmap_mode="r") for init, path in zip(p.inits, snakemake.input.reconstructions)}
figures.reconstruction_panel(videos, labels, recons, snakemake.output.panel, n_frames=p.panel_frames,
                             title_note=note)
logger.info("reconstruction comparison written for inits %s", ", ".join(p.inits))
