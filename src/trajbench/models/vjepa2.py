"""V-JEPA 2 (Assran et al., 2025): a video ViT trained by predicting masked regions in latent space, as
``transformers.VJEPA2Model`` (e.g. facebook/vjepa2-vitl-fpc64-256; transformers >= 4.53).

Features: the mean of the encoder's last hidden state over all patch tokens (the predictor is skipped); grid: those
tokens as (tubelets, patch rows, patch columns, hidden), pooled in space. The encoder uses rotary position
embeddings, so it takes any even number of frames: by default every frame of the clip, cut to a multiple of the
tubelet size, contiguous from the first.

Preprocessing follows the checkpoint's ``video_preprocessor_config.json`` (transformers' ``VJEPA2VideoProcessor``:
resize the shorter side, centre crop, rescale, normalise) with the torch ops of `trajbench.models.processor_ops` on
the device, as for the image models; transformers' processor itself needs torchvision, which cannot always be
installed beside the user's torch.
"""

from __future__ import annotations

import json
from pathlib import Path

from trajbench import standins
from trajbench.models import hf, processor_ops
from trajbench.models.base import ENCODER, Encoder, Family, FeatureError, Run, grid_meta

TINY = {"crop_size": 32, "patch_size": 8, "frames_per_clip": 8, "tubelet_size": 2, "hidden_size": 32,
        "num_hidden_layers": 1, "num_attention_heads": 2, "mlp_ratio": 2.0, "pred_hidden_size": 32,
        "pred_num_hidden_layers": 1, "pred_num_attention_heads": 2, "pred_num_mask_tokens": 2}  # fmt: skip
PREPROCESSOR_FILE = "video_preprocessor_config.json"
# VJEPA2VideoProcessor's class defaults (transformers 5.24), for a flag the file leaves out.
PREPROCESSOR_FLAGS = {"do_resize": True, "do_center_crop": True, "do_rescale": True, "do_normalize": True}


def preprocessing(run: Run) -> tuple[str, dict]:
    """The checkpoint's video processor (its class name as the file gives it) and its preprocessing settings, checked
    and in `processor_ops.pipeline_settings`' form whatever form the file stores its sizes in."""
    path = run.weights_dir / PREPROCESSOR_FILE
    if not path.is_file():
        raise FeatureError(
            f"{run.model_name}: no {PREPROCESSOR_FILE} in {run.weights_dir}; the weights download must include it "
            "(allow_patterns: ['*.json', '*.safetensors']) so the model's own resize/normalisation is applied"
        )
    values = {**PREPROCESSOR_FLAGS, **json.loads(path.read_text())}
    return values.get("video_processor_type", "video processor"), processor_ops.pipeline_settings(values, str(path))


def extract(run: Run) -> tuple[Encoder, dict]:
    from transformers import VJEPA2Model

    config = hf.config(run)
    available = run.videos.shape[1]
    frames = run.options["frames"] or available - available % config.tubelet_size
    if frames % config.tubelet_size or not 0 < frames <= available:
        raise FeatureError(
            f"{run.model_name} options.frames={frames}: V-JEPA 2 takes a multiple of its tubelet size "
            f"{config.tubelet_size}, at most the {available} frames of a clip"
        )
    name, settings = preprocessing(run)
    height, width = processor_ops.output_size(*run.videos.shape[2:4], settings)  # checked before loading
    model, load_meta = hf.load(VJEPA2Model, config, run)
    grid = (frames // config.tubelet_size, height // config.patch_size, width // config.patch_size)

    def forward(pixel_values):
        hidden = model(pixel_values_videos=pixel_values, skip_predictor=True).last_hidden_state.float()
        return hidden.mean(dim=1), hidden.reshape(len(hidden), *grid, hidden.shape[-1])

    meta = {
        "frames": list(range(frames)),
        "preprocessing": hf.processor_meta(settings, name, [frames, 3, height, width], run.device),
        "pooling": "mean of the encoder's last_hidden_state over all patch tokens (predictor skipped)",
        "hidden_size": int(config.hidden_size),
        "grid": grid_meta(
            (*grid, config.hidden_size), run.grid_side,
            "the encoder's last_hidden_state tokens (tubelet x patch), pooled in space",
        ),
        **load_meta,
    }
    return hf.encoder(run, hf.device_pixels(run, settings, frames), forward), meta


def write_standin(folder: Path, architecture: dict, seed: int) -> Path:
    """A tiny ``VJEPA2Model`` (safetensors) with a ``video_preprocessor_config.json`` in the hub's layout."""
    from transformers import VJEPA2Config, VJEPA2Model

    config = VJEPA2Config(**{**TINY, **architecture})
    crop = config.crop_size
    with standins.seeded(seed):
        model = VJEPA2Model(config)
    return standins.save_pretrained(folder, model, json_files={PREPROCESSOR_FILE: {
        "video_processor_type": "VJEPA2VideoProcessor", "do_resize": True, "size": {"shortest_edge": crop},
        "resample": 2, "do_center_crop": True, "crop_size": {"height": crop, "width": crop}, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": standins.IMAGENET_MEAN,
        "image_std": standins.IMAGENET_STD,
    }})  # fmt: skip


FAMILY = Family(
    name="vjepa2",
    role=ENCODER,
    description="V-JEPA 2 video encoder, mean of all patch tokens",
    extract=extract,
    network=True,
    options={"frames": None},
    min_transformers="4.53.0",
    write_standin=write_standin,
)
