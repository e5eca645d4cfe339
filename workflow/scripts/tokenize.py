from trajbench import io, logs, magvit, render, runtime, weights
from trajbench.tokenize import autocast_dtype, tokenize_videos

logger = logs.setup(snakemake.log[0])
p = snakemake.params
choice = runtime.load_choice(snakemake.input.env)
videos, _ = render.load_dataset(snakemake.input.videos, snakemake.input.table)
clips = range(*p.clips)
logger.info("shard %s: clips %d..%d of %d", snakemake.wildcards.shard, clips.start, clips.stop - 1, len(videos))
videos = videos[clips.start : clips.stop]
config = magvit.MagvitConfig.from_dict(p.model_cfg.get("architecture", {}))
runtime.check_cpu_budget(
    choice.device,
    len(videos) * magvit.estimate_tflop(config, videos.shape[1], videos.shape[2], videos.shape[3]),
    p.allow_slow_cpu,
    f"MagVit ({p.init}) encode+decode of {len(videos)} clips",
)
if p.init == "pretrained":
    manifest = weights.verify(snakemake.input.manifest)  # a corrupt file stops the job before the model loads
    model = magvit.load_checkpoint(weights.local_path(manifest), config, weights=p.tokenize["weights"])
elif p.init == "finetuned":
    model = magvit.load_checkpoint(snakemake.input.checkpoint, config, weights=p.tokenize["weights"])
else:
    model = magvit.build_model(config, seed=p.tokenize["random_seed"])
dtype = autocast_dtype(p.tokenize["dtype"], choice.device, choice.dtype)
indices, reconstructions = tokenize_videos(
    model,
    videos,
    batch_size=p.tokenize["batch_size"],
    device=choice.device,
    dtype=dtype,
    window=p.tokenize["window"],
    logger=logger,
    mode=p.tokenize["mode"],
    compile=p.tokenize["compile"],
)
io.save_npy(snakemake.output.tokens, indices)
io.save_npy(snakemake.output.reconstructions, reconstructions)
io.write_json(
    snakemake.output.meta,
    {
        "init": p.init,
        "architecture": config.to_dict(),
        "weights": f"random (seed {p.tokenize['random_seed']})" if p.init == "random" else p.tokenize["weights"],
        "standin": bool(p.model_cfg.get("standin")),
        "device": choice.device,
        "dtype": "float32" if p.tokenize["mode"] == "reference" else str(dtype).removeprefix("torch."),
        "mode": p.tokenize["mode"],
        "compile": p.tokenize["compile"],
        "clips": [clips.start, clips.stop],
    },
)
