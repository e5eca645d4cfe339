from trajbench import finetune, logs, render, runtime, weights
from trajbench.checkpoint_magvit import load_checkpoint
from trajbench.modeling_magvit import MagvitConfig, build_model, estimate_tflop

logger = logs.setup(snakemake.log[0])
p = snakemake.params
choice = runtime.load_choice(snakemake.input.env)
videos, _ = render.load_dataset(snakemake.input.videos, snakemake.input.table)
architecture = MagvitConfig.from_dict(p.model_cfg.get("architecture", {}))
config = finetune.FinetuneConfig.from_dict(p.finetune)  # also checks init_from
frames, height, width = videos.shape[1:4]
runtime.check_cpu_budget(
    choice.device,
    # A training step costs about three forward passes (forward, and backward twice that).
    3 * config.steps * config.batch_size * estimate_tflop(architecture, frames, height, width),
    p.allow_slow_cpu,
    f"MagVit fine-tuning, {config.steps} steps of {config.batch_size} clips",
)
init_from = p.finetune["init_from"]
if init_from == "pretrained":
    manifest = weights.verify(snakemake.input.manifest)  # a corrupt file stops the job before the model loads
    model = load_checkpoint(weights.local_path(manifest), architecture, weights=p.tokenize["weights"])
else:  # the same random init as the `random` baseline, so that fine-tuned and random compare
    model = build_model(architecture, seed=p.tokenize["random_seed"])
with runtime.cpu_threads(choice.device):
    result = finetune.train(
        model, videos, config, device=choice.device, dtype=choice.dtype, state_path=p.state, logger=logger
    )
finetune.write_outputs(
    result,
    checkpoint=snakemake.output.checkpoint,
    history=snakemake.output.history,
    curves=snakemake.output.curves,
    meta=snakemake.output.meta,
    init_from=init_from,
    state_path=p.state,
)
