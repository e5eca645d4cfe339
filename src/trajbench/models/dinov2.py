"""DINOv2 (Oquab et al., 2023): a self-supervised image ViT applied frame by frame, as ``transformers.Dinov2Model``
(e.g. facebook/dinov2-base).

Features: ``pooler_output`` (the layer-normed CLS token) of every frame (or the first ``options.frames``), pooled as
`trajbench.models.hf.per_frame` says; grid: each frame's layer-normed patch tokens. DINOv2 interpolates its position
embeddings, so the processor's crop (224 for the hub checkpoints) need not equal ``config.image_size`` (518).
"""

from __future__ import annotations

from pathlib import Path

from trajbench import standins
from trajbench.models import hf
from trajbench.models.base import ENCODER, Encoder, Family, Run

TINY = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "mlp_ratio": 2}  # fmt: skip


def extract(run: Run) -> tuple[Encoder, dict]:
    from transformers import Dinov2Model

    config = hf.config(run)
    model, load_meta = hf.load(Dinov2Model, config, run)

    def frame_embeds(pixel_values):
        output = model(pixel_values=pixel_values)
        return output.pooler_output, output.last_hidden_state

    tokens = "last_hidden_state (after the final layernorm)"
    encoder, meta = hf.per_frame(run, config, frame_embeds, tokens, fixed_size=False)
    meta.update(embedding="pooler_output (layer-normed CLS token)", hidden_size=int(config.hidden_size), **load_meta)
    return encoder, meta


def write_standin(folder: Path, architecture: dict, seed: int) -> Path:
    """A tiny ``Dinov2Model`` (safetensors) with the ``BitImageProcessor`` the hub checkpoints use."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    config = Dinov2Config(**{**TINY, **architecture})
    side = config.image_size
    processor = BitImageProcessor(
        size={"shortest_edge": side},
        crop_size={"height": side, "width": side},
        image_mean=standins.IMAGENET_MEAN,
        image_std=standins.IMAGENET_STD,
        do_convert_rgb=True,
    )
    with standins.seeded(seed):
        model = Dinov2Model(config)
    return standins.save_pretrained(folder, model, processor)


FAMILY = Family(
    name="dinov2",
    role=ENCODER,
    description="DINOv2 image encoder per frame, CLS embeddings in time order",
    extract=extract,
    network=True,
    options={"frames": None, "pooling": "concat_mean"},
    write_standin=write_standin,
)
