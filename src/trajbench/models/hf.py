"""Loading and running the transformers families (VideoMAE, CLIP, DINOv2, V-JEPA 2): config and processor from the
downloaded folder, pretrained weights checked key by key or a seeded random init, and a `Batched` encoder
that gives each view's features and token grid. Each batch is preprocessed on the device, as torch ops with the
processor's own settings (`trajbench.models.processor_ops`; the processor is loaded for its settings only), once for
all the inits of a model that one job extracts (`trajbench.models.base.encode_together`).

Model forwards run under ``torch.inference_mode``; on CUDA under autocast in the requested dtype (the weights stay
float32), on CPU always in float32 so that CPU runs give the same bytes every time.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from trajbench.models import processor_ops
from trajbench.models.base import Batched, Encoder, FeatureError, Run, grid_meta, listing, pool_grid
from trajbench.runtime import autocast

if TYPE_CHECKING:
    import torch


def config(run: Run):
    from transformers import AutoConfig

    folder = run.weights_dir
    if folder is None or not (folder / "config.json").is_file():
        raise FeatureError(
            f"{run.model_name}: no config.json in weights_dir={folder}; pass the transformers folder that "
            "download_weights resolved (the directory holding config.json)"
        )
    return AutoConfig.from_pretrained(folder)


def processor(run: Run):
    from transformers import AutoImageProcessor

    if not (run.weights_dir / "preprocessor_config.json").is_file():
        raise FeatureError(
            f"{run.model_name}: no preprocessor_config.json in {run.weights_dir}; the weights download must include "
            "it (add it to the model's allow_patterns) so the model's own resize/normalisation is applied"
        )
    return AutoImageProcessor.from_pretrained(run.weights_dir)


def checkpoint_kind(run: Run) -> str:
    """The head class the checkpoint was saved from (config.json ``architectures``): says whether it is a
    self-supervised pretraining checkpoint or one fine-tuned on labels."""
    saved = json.loads((run.weights_dir / "config.json").read_text()).get("architectures") or ["unknown"]
    return ", ".join(saved)


def load(model_cls, model_config, run: Run) -> tuple[torch.nn.Module, dict]:
    """Pretrained weights checked key by key, or the same architecture with a seeded random init."""
    import torch

    what = f"{model_cls.__name__} ({run.init}, attention {run.attn_implementation}) from {run.weights_dir}"
    try:
        if run.init == "random":
            model = random_init(model_cls, model_config, run.seed, run.attn_implementation)
            info = None
        else:
            model, info = model_cls.from_pretrained(
                run.weights_dir, config=model_config, attn_implementation=run.attn_implementation,
                output_loading_info=True,
            )
    except (OSError, RuntimeError, ValueError) as error:
        raise FeatureError(f"loading {what} failed: {error}") from error
    if info is None:
        meta = {"weights": "random init (transformers _init_weights after torch.manual_seed(seed))"}
    else:
        meta = {"weights": str(run.weights_dir), "ignored_checkpoint_tensors": _check_loading(model, info, run)}
    meta["checkpoint_kind"] = checkpoint_kind(run)
    model = model.to(device=run.device, dtype=torch.float32).eval()
    meta["attn_implementation"] = model.config._attn_implementation
    run.logger.info("loaded %s", what)
    return model, meta


def random_init(model_cls, model_config, seed: int, attn_implementation: str) -> torch.nn.Module:
    """transformers' own _init_weights after ``torch.manual_seed(seed)``, drawn in eager attention and loaded into
    the model with ``attn_implementation``: one network whatever the attention, since before transformers 4.50 the
    attention classes drew their weights in different orders. A private RNG stream leaves the global one untouched.
    """
    import torch

    def build(attention: str) -> torch.nn.Module:
        return model_cls._from_config(model_config, attn_implementation=attention, **{_dtype_keyword(): torch.float32})

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        drawn = build("eager")
    if attn_implementation == "eager":
        return drawn
    model = build(attn_implementation)
    model.load_state_dict(drawn.state_dict(), strict=True)
    return model


def _dtype_keyword() -> str:
    """transformers 4.56 renamed ``torch_dtype`` to ``dtype`` and warns about the old name since."""
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def _check_loading(model: torch.nn.Module, info: dict, run: Run) -> dict[str, int]:
    """Fail on missing/mismatched/unknown tensors; return counts of the known-unused groups (logged at INFO).

    transformers 4.x names the keys of a base model loaded from a head checkpoint with the head's prefix
    (``videomae.embeddings...``), 5.x without; both are mapped to the model's own names before matching.
    """
    own = set(model.state_dict())
    prefix = f"{model.base_model_prefix}."

    def own_name(key: str) -> str:
        return key[len(prefix) :] if key not in own and key.startswith(prefix) else key

    missing = sorted(own_name(k) for k in info.get("missing_keys", ()))
    mismatched = sorted(str(k) for k in info.get("mismatched_keys", ()))
    if missing or mismatched:
        raise FeatureError(
            f"{run.weights_dir}: checkpoint does not fit {type(model).__name__}: "
            f"{len(missing)} missing tensor(s) {listing(missing)}, {len(mismatched)} mis-shaped "
            f"{listing(mismatched)}. These layers would be silently re-initialised; re-download the weights "
            "(delete the folder / cache entry and rerun download_weights) or point the config at the right repo"
        )
    # Old checkpoints carry buffers that the model now recomputes (e.g. CLIP's position_ids): harmless.
    buffers = {name for name, _ in model.named_buffers()}
    known = run.family.known_unused
    groups: dict[str, int] = {}
    unknown = []
    for key in sorted(own_name(k) for k in info.get("unexpected_keys", ())):
        group = next((g for g in known if key == g or key.startswith(g + ".")), None)
        group = group or ("buffers" if key in buffers else None)
        if group is None:
            unknown.append(key)
        else:
            groups[group] = groups.get(group, 0) + 1
    if unknown:
        raise FeatureError(
            f"{run.weights_dir}: checkpoint holds {len(unknown)} tensor(s) that {type(model).__name__} does not use "
            f"and that are not in the known groups {list(known)}: {listing(unknown)}. "
            "The checkpoint is probably another architecture; check the model's repo_id/path in the config"
        )
    if groups:
        run.logger.info(
            "%s: ignoring %d checkpoint tensors not used by %s: %s",
            run.weights_dir,
            sum(groups.values()),
            type(model).__name__,
            ", ".join(f"{g}: {n}" for g, n in groups.items()),
        )
    return groups


def check_image_size(pixel_shape: list[int], image_size: int | list[int], run: Run) -> None:
    """``pixel_shape`` (..., H, W), the processor's output, against the model's ``image_size``."""
    expected = tuple(image_size) if isinstance(image_size, (list, tuple)) else (image_size, image_size)
    if tuple(pixel_shape[-2:]) != expected:
        raise FeatureError(
            f"{run.weights_dir}: the preprocessor produces {tuple(pixel_shape[-2:])} frames but "
            f"config.json expects image_size={image_size}; the two files come from different models"
        )


def processor_settings(run: Run) -> tuple[str, dict]:
    """The folder's image processor, loaded (which validates it), as (its class name, its pipeline settings for
    `processor_ops.preprocess`)."""
    image_processor = processor(run)
    values = json.loads(image_processor.to_json_string())  # plain lists/dicts on every transformers version
    source = f"{run.weights_dir / 'preprocessor_config.json'} ({type(image_processor).__name__})"
    return type(image_processor).__name__, processor_ops.pipeline_settings(values, source)


def device_pixels(run: Run, settings: dict, frames: int) -> Callable[[np.ndarray], torch.Tensor]:
    """``pixels(uint8 clips (B, T, H, W, 3)) -> pixel values (B, frames, 3, h, w)`` of the first ``frames`` frames:
    the uint8 batch goes to ``run.device`` and is preprocessed there (`processor_ops.preprocess`)."""

    def pixels(clips: np.ndarray) -> torch.Tensor:
        return processor_ops.preprocess(processor_ops.to_device(clips[:, :frames], run.device), settings)

    return pixels


def processor_meta(settings: dict[str, Any], name: str, pixel_shape: list[int], device: torch.device) -> dict:
    """The resize/crop/normalisation settings, whose processor they come from, where they ran and the pixel_values
    shape of one clip."""
    return {
        "processor": name,
        **{key: settings[key] for key in processor_ops.KEYS},
        "ran_as": f"torch ops (trajbench.models.processor_ops.preprocess) on {device}, float32",
        "pixel_values_shape_per_clip": [int(s) for s in pixel_shape],
    }


def encoder(
    run: Run,
    pixels: Callable[[np.ndarray], torch.Tensor],
    forward: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
) -> Batched:
    """A `Batched` encoder: ``pixels(clips uint8 (B, T, H, W, 3))`` preprocesses a batch on the device (e.g.
    `device_pixels`), ``forward(pixel_values) -> (features (B, D), tokens (B, T', H', W', C))`` runs the network on
    them; the tokens are pooled to the grid (`pool_grid`) there."""
    import torch

    precision = autocast(run.device, run.dtype)

    def prepare(clips: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return pixels(clips)  # float32, outside autocast

    def run_forward(pixel_values: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            with precision:
                features, tokens = forward(pixel_values)
            return features.float().cpu().numpy(), pool_grid(tokens, run.grid_side)

    return Batched(run, prepare, run_forward)


FRAME_POOLINGS = ("concat_mean", "mean")


def frame_count(run: Run) -> int:
    """``options.frames``: None = every frame of the clip; an int k = the first k frames, contiguous."""
    available, k = run.videos.shape[1], run.options["frames"]
    if k is None:
        return available
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= available:
        raise FeatureError(
            f"{run.model_name} options.frames must be null (every frame) or an int in 1..{available} (the first "
            f"that many frames of a clip), got {k!r}"
        )
    return k


def per_frame(
    run: Run, model_config, frame_embeds: Callable, tokens: str, fixed_size: bool = True
) -> tuple[Encoder, dict]:
    """An image encoder applied to each of the first ``options.frames`` frames of a clip (by default all of them),
    preprocessed on the device with the settings of the folder's image processor (`processor_settings`).

    ``frame_embeds(pixel_values (B*k, 3, H, W)) -> (embeddings (B*k, D), last_hidden_state (B*k, L, C))``;
    ``tokens`` says what last_hidden_state holds (for meta). With
    ``fixed_size`` the processor's output must be ``model_config.image_size`` (models that interpolate their position
    embeddings take any size). Pooling ``concat_mean``: the k frame embeddings in time order, then their mean
    (concatenation keeps the direction of motion, which the mean throws away); ``mean``: their mean only. The grid:
    each frame's patch tokens, the last (H/patch)·(W/patch) of last_hidden_state (which drops the CLS token and any
    register tokens before them), as (B, k, H/patch, W/patch, C).
    """
    import torch

    pooling = run.options["pooling"]
    if pooling not in FRAME_POOLINGS:
        raise FeatureError(f"{run.model_name} options.pooling must be one of {list(FRAME_POOLINGS)}, got {pooling!r}")
    k = frame_count(run)

    name, settings = processor_settings(run)
    clip_pixels = device_pixels(run, settings, k)

    def pixels(clips: np.ndarray):
        return clip_pixels(clips).flatten(0, 1)  # (B * k, 3, h, w): one image per frame

    # The sizes are checked before any forward.
    pixel_shape = [k, 3, *processor_ops.output_size(*run.videos.shape[2:4], settings)]
    if fixed_size:
        check_image_size(pixel_shape, model_config.image_size, run)
    patch = model_config.patch_size
    h, w = pixel_shape[-2] // patch, pixel_shape[-1] // patch

    def forward(pixel_values):
        embeds, hidden = frame_embeds(pixel_values)
        embeds = embeds.reshape(-1, k, embeds.shape[-1]).float()
        mean = embeds.mean(dim=1)
        features = torch.cat([embeds.flatten(1), mean], dim=1) if pooling == "concat_mean" else mean
        patches = hidden[:, hidden.shape[1] - h * w :]
        return features, patches.reshape(-1, k, h, w, hidden.shape[-1])

    meta = {
        "frames": list(range(k)),
        "preprocessing": processor_meta(settings, name, pixel_shape, run.device),
        "pooling": pooling,
        "pooling_layout": (
            f"{k} frame embeddings in time order, then their mean" if pooling == "concat_mean" else "mean of frames"
        ),
        "grid": grid_meta(
            (k, h, w, model_config.hidden_size),
            run.grid_side,
            f"each frame's patch tokens of {tokens} (CLS and register tokens dropped), pooled in space",
        ),
    }
    return encoder(run, pixels, forward), meta
