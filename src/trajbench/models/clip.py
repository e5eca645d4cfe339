"""CLIP (Radford et al., 2021): an image encoder applied frame by frame, as
``transformers.CLIPVisionModelWithProjection``.

The hub repository (e.g. openai/clip-vit-base-patch32) holds the full ``CLIPModel``; the text tower and the logit
scale are not used. Features: ``image_embeds`` (the visual projection of the pooled CLS token, not L2-normalised) of
every frame (or the first ``options.frames``), pooled as `trajbench.models.hf.per_frame` says; grid: each frame's
patch tokens of the vision tower's last hidden state.
"""

from __future__ import annotations

from pathlib import Path

from trajbench import standins
from trajbench.models import hf
from trajbench.models.base import ENCODER, Encoder, Family, Run

TINY = {
    "projection_dim": 16,
    "text_config": {"vocab_size": 1000, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                    "num_attention_heads": 2, "max_position_embeddings": 16},
    "vision_config": {"image_size": 32, "patch_size": 16, "hidden_size": 32, "intermediate_size": 64,
                      "num_hidden_layers": 1, "num_attention_heads": 2},
}  # fmt: skip


def extract(run: Run) -> tuple[Encoder, dict]:
    from transformers import CLIPVisionModelWithProjection

    config = hf.config(run)
    # The hub repo holds the full CLIPModel config; its projection width lives at the top level.
    vision_config = getattr(config, "vision_config", config)
    if hasattr(config, "projection_dim"):
        vision_config.projection_dim = config.projection_dim
    model, load_meta = hf.load(CLIPVisionModelWithProjection, vision_config, run)

    def frame_embeds(pixel_values):
        output = model(pixel_values=pixel_values)
        return output.image_embeds, output.last_hidden_state

    tokens = "the vision tower's last_hidden_state (before its post_layernorm)"
    encoder, meta = hf.per_frame(run, vision_config, frame_embeds, tokens)
    meta.update(
        embedding="image_embeds (visual projection of the pooled CLS token, not L2-normalised)",
        projection_dim=int(vision_config.projection_dim),
        **load_meta,
    )
    return encoder, meta


def write_standin(folder: Path, architecture: dict, seed: int) -> Path:
    """A tiny full ``CLIPModel`` (safetensors) with its ``CLIPImageProcessor``; ``architecture`` may hold
    top-level keys and ``text_config`` / ``vision_config`` dicts (merged key by key into `TINY`)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    values = standins.merge(TINY, architecture)
    # the real special-token ids (49406/49407) lie outside a tiny vocabulary: use its last two ids
    vocab = values["text_config"]["vocab_size"]
    values["text_config"] = {"bos_token_id": vocab - 2, "eos_token_id": vocab - 1, **values["text_config"]}
    config = CLIPConfig(**values)
    side = config.vision_config.image_size
    processor = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    with standins.seeded(seed):
        model = CLIPModel(config)
    return standins.save_pretrained(folder, model, processor)


FAMILY = Family(
    name="clip",
    role=ENCODER,
    description="CLIP image encoder per frame, embeddings in time order",
    extract=extract,
    network=True,
    options={"frames": None, "pooling": "concat_mean"},
    known_unused=("text_model", "text_projection", "logit_scale"),
    write_standin=write_standin,
)
