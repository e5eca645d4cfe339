"""VideoMAE (Tong et al., 2022): a video ViT over tubelets, as ``transformers.VideoMAEModel``.

The hub holds it as a self-supervised pretraining checkpoint (``VideoMAEForPreTraining``, e.g. MCG-NJU/videomae-base:
encoder, decoder, mask token) or fine-tuned on labels (``VideoMAEForVideoClassification``, e.g.
MCG-NJU/videomae-base-finetuned-kinetics: encoder, fc_norm, classifier). Only the encoder runs here; which kind was
loaded is recorded as ``checkpoint_kind``. Features: the mean of the last hidden state over all patch tokens
(VideoMAE has no CLS token).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trajbench import standins
from trajbench.models import hf
from trajbench.models.base import ENCODER, Family, FeatureError, Run, even_indices

TINY = {
    "image_size": 32, "patch_size": 16, "num_frames": 4, "tubelet_size": 2, "hidden_size": 32,
    "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64, "decoder_hidden_size": 32,
    "decoder_num_hidden_layers": 1, "decoder_num_attention_heads": 2, "decoder_intermediate_size": 64,
}  # fmt: skip
# The head classes a stand-in may be saved as (config key ``architectures``), as the two kinds of hub checkpoint.
STANDIN_HEADS = ("VideoMAEForPreTraining", "VideoMAEForVideoClassification")


def extract(run: Run) -> tuple[np.ndarray, dict]:
    from transformers import VideoMAEModel

    config = hf.config(run)
    frames = run.options["frames"]
    if frames is None:
        frames = config.num_frames
    elif frames != config.num_frames:
        raise FeatureError(
            f"{run.model_name} options.frames={frames} but {run.weights_dir}/config.json has "
            f"num_frames={config.num_frames} (its position embeddings fix the clip length); set frames to that value "
            "or leave it unset"
        )
    indices = even_indices(run.videos.shape[1], frames)
    model, load_meta = hf.load(VideoMAEModel, config, run)
    processor = hf.processor(run)

    def pixels(clips: np.ndarray):
        return processor([list(clip) for clip in clips[:, indices]], **hf.PROCESSOR_ARGS)["pixel_values"]

    def forward(pixel_values):
        hf.check_image_size(pixel_values, config.image_size, run)
        return model(pixel_values=pixel_values).last_hidden_state.float().mean(dim=1)

    features, pixel_shape = hf.embed(run, pixels, forward)
    meta = {
        "frames": indices.tolist(),
        "preprocessing": hf.image_processor_meta(processor, pixel_shape[1:]),
        "pooling": "mean of last_hidden_state over all patch tokens",
        "hidden_size": int(config.hidden_size),
        **load_meta,
    }
    return features, meta


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
    options={"frames": None},
    known_unused=("decoder", "encoder_to_decoder", "mask_token", "fc_norm", "classifier"),
    write_standin=write_standin,
)
