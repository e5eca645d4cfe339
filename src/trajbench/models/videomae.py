"""VideoMAE (Tong et al., 2022): a video ViT over tubelets, as ``transformers.VideoMAEModel``.

The hub holds it as a self-supervised pretraining checkpoint (``VideoMAEForPreTraining``, e.g. MCG-NJU/videomae-base:
encoder, decoder, mask token) or fine-tuned on labels (``VideoMAEForVideoClassification``, e.g.
MCG-NJU/videomae-base-finetuned-kinetics: encoder, fc_norm, classifier). Only the encoder runs here; which kind was
loaded is recorded as ``checkpoint_kind``. It sees the first ``num_frames`` frames of a clip (config.json; its
position embeddings fix the count), contiguous. Features: the mean of the last hidden state over all patch tokens
(VideoMAE has no CLS token); grid: those tokens as (tubelets, patch rows, patch columns, hidden), pooled in space.
"""

from __future__ import annotations

from pathlib import Path

from trajbench import standins
from trajbench.models import hf, processor_ops
from trajbench.models.base import ENCODER, Encoder, Family, FeatureError, Run, grid_meta

TINY = {
    "image_size": 32, "patch_size": 16, "num_frames": 4, "tubelet_size": 2, "hidden_size": 32,
    "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64, "decoder_hidden_size": 32,
    "decoder_num_hidden_layers": 1, "decoder_num_attention_heads": 2, "decoder_intermediate_size": 64,
}  # fmt: skip
# The head classes a stand-in may be saved as (config key ``architectures``), as the two kinds of hub checkpoint.
STANDIN_HEADS = ("VideoMAEForPreTraining", "VideoMAEForVideoClassification")


def extract(run: Run) -> tuple[Encoder, dict]:
    from transformers import VideoMAEModel

    config = hf.config(run)
    # Every frame its position embeddings accept, contiguous from the first, as every network sees.
    frames, available = config.num_frames, run.videos.shape[1]
    if available < frames:
        raise FeatureError(
            f"{run.model_name}: {run.weights_dir}/config.json has num_frames={frames} (its position embeddings fix "
            f"the clip length) but the clips have {available} frames; render at least {frames} frames "
            "(dataset.frames) or choose a checkpoint with fewer"
        )
    name, settings = hf.processor_settings(run)
    pixel_shape = [frames, 3, *processor_ops.output_size(*run.videos.shape[2:4], settings)]
    hf.check_image_size(pixel_shape, config.image_size, run)  # before loading the weights or any forward
    model, load_meta = hf.load(VideoMAEModel, config, run)
    grid = (frames // config.tubelet_size, pixel_shape[-2] // config.patch_size, pixel_shape[-1] // config.patch_size)

    def forward(pixel_values):
        hidden = model(pixel_values=pixel_values).last_hidden_state.float()
        return hidden.mean(dim=1), hidden.reshape(len(hidden), *grid, hidden.shape[-1])

    meta = {
        "frames": list(range(frames)),
        "preprocessing": hf.processor_meta(settings, name, pixel_shape, run.device),
        "pooling": "mean of last_hidden_state over all patch tokens",
        "hidden_size": int(config.hidden_size),
        "grid": grid_meta(
            (*grid, config.hidden_size), run.grid_side, "last_hidden_state tokens (tubelet x patch), pooled in space"
        ),
        **load_meta,
    }
    return hf.encoder(run, hf.device_pixels(run, settings, frames), forward), meta


def write_standin(folder: Path, architecture: dict, seed: int) -> Path:
    """A tiny VideoMAE (safetensors) with its ``VideoMAEImageProcessor``; ``architecture`` overrides `TINY`, and
    ``architectures: [VideoMAEForVideoClassification]`` writes a fine-tuned-style checkpoint instead of a pretraining
    one."""
    import transformers
    from transformers import VideoMAEConfig, VideoMAEImageProcessor

    config = VideoMAEConfig(**{**TINY, **architecture})
    head = (config.architectures or [STANDIN_HEADS[0]])[0]
    if head not in STANDIN_HEADS:
        raise ValueError(f"videomae stand-in: architectures {config.architectures} not among {list(STANDIN_HEADS)}")
    side = config.image_size
    processor = VideoMAEImageProcessor(
        size={"shortest_edge": side},
        crop_size={"height": side, "width": side},
        image_mean=standins.IMAGENET_MEAN,
        image_std=standins.IMAGENET_STD,
    )
    with standins.seeded(seed):
        model = getattr(transformers, head)(config)
    return standins.save_pretrained(folder, model, processor)


FAMILY = Family(
    name="videomae",
    role=ENCODER,
    description="VideoMAE encoder, mean of all patch tokens",
    extract=extract,
    network=True,
    known_unused=("decoder", "encoder_to_decoder", "mask_token", "fc_norm", "classifier"),
    write_standin=write_standin,
)
