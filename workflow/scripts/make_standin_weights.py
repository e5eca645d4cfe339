from trajbench import environment, logs

logger = logs.setup(snakemake.log[0])
environment.load_choice(snakemake.input.env)  # hides what the check found broken, before transformers is imported
from trajbench import standins  # noqa: E402

model, folder = snakemake.params.model, snakemake.output[0]
writers = {
    "magvit": lambda: standins.write_magvit_standin(f"{folder}/standin.ckpt", snakemake.params.architecture,
                                                    snakemake.params.seed),
    "videomae": lambda: standins.write_videomae_standin(folder, snakemake.params.architecture, snakemake.params.seed),
    "clip": lambda: standins.write_clip_standin(folder, snakemake.params.architecture, snakemake.params.seed),
}
if model not in writers:
    raise ValueError(f"models.{model}.standin: no stand-in writer for {model!r}; stand-ins exist for {sorted(writers)}")
writers[model]()
logger.info("wrote stand-in weights for %s in %s", model, folder)
