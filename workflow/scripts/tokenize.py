from trajbench import controls, io, logs, render, runtime, weights
from trajbench.checkpoint_magvit import load_checkpoint
from trajbench.modeling_magvit import MagvitConfig, build_model, estimate_tflop
from trajbench.tokenize import autocast_dtype, resolve_compile, tokenize_videos

logger = logs.setup(snakemake.log[0])
p = snakemake.params
choice = runtime.load_choice(snakemake.input.env)
videos, table = render.load_dataset(snakemake.input.videos, snakemake.input.table)
clips = range(*p.clips)
logger.info("shard %s: clips %d..%d of %d", snakemake.wildcards.shard, clips.start, clips.stop - 1, len(videos))
videos = videos[clips.start : clips.stop]
# The shuffled control: the same clips, frames in the order labels.csv records (checked before any model work).
shuffled = controls.ShuffledVideos(videos, controls.read_orders(table, videos.shape[1])[clips.start : clips.stop])
config = MagvitConfig.from_dict(p.model_cfg.get("architecture", {}))
runtime.check_cpu_budget(
    choice.device,
    len(videos) * estimate_tflop(config, videos.shape[1], videos.shape[2], videos.shape[3], encodes=2),
    p.allow_slow_cpu,
    f"MagVit ({snakemake.wildcards.init}) encode+decode of {len(videos)} clips and encode of them shuffled",
)
if snakemake.wildcards.init == "pretrained":
    manifest = weights.verify(snakemake.input.manifest)  # a corrupt file stops the job before the model loads
    model = load_checkpoint(weights.local_path(manifest), config, weights=p.tokenize["weights"])
elif snakemake.wildcards.init == "finetuned":
    model = load_checkpoint(snakemake.input.checkpoint, config, weights=p.tokenize["weights"])
else:
    model = build_model(config, seed=p.tokenize["random_seed"])
dtype = autocast_dtype(p.tokenize["dtype"], choice.device, choice.dtype)
compiled, compile_reason = resolve_compile(
    p.tokenize["compile"], choice.device, len(videos), mode=p.tokenize["mode"], logger=logger
)
settings = dict(
    batch_size=p.tokenize["batch_size"],
    device=choice.device,
    dtype=dtype,
    window=p.tokenize["window"],
    logger=logger,
    mode=p.tokenize["mode"],
    compile=compiled,
)
with runtime.cpu_threads(choice.device):
    indices, reconstructions = tokenize_videos(model, videos, **settings)
    shuffled_indices, _ = tokenize_videos(model, shuffled, **settings, decode=False)
io.save_npy(snakemake.output.tokens, indices)
io.save_npy(snakemake.output.reconstructions, reconstructions)
io.save_npy(snakemake.output.tokens_shuffled, shuffled_indices)
io.write_json(
    snakemake.output.meta,
    {
        "init": snakemake.wildcards.init,
        "architecture": config.to_dict(),
        "weights": f"random (seed {p.tokenize['random_seed']})" if snakemake.wildcards.init == "random" else p.tokenize["weights"],
        "standin": bool(p.model_cfg.get("standin")),
        "device": choice.device,
        "dtype": "float32" if p.tokenize["mode"] == "reference" else str(dtype).removeprefix("torch."),
        "mode": p.tokenize["mode"],
        "compile_setting": p.tokenize["compile"],
        "compile": compiled,  # decided per job (tokenize.compile: auto), so it may differ between shards
        "compile_reason": compile_reason,
        "clips": [clips.start, clips.stop],
        "shuffled": f"encoded, frames permuted per labels.csv {controls.COLUMN}",
    },
)
