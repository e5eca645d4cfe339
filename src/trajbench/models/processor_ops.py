"""The transformers image processors' pipeline (resize, centre crop, rescale, normalise) as torch ops on any device,
from the processor's own settings (``to_json_string()`` or its json file), so that preprocessing runs beside the
network on the GPU instead of frame by frame in PIL on the CPU.

The reference is transformers' PIL backend (what ``AutoImageProcessor`` gives where torchvision is missing, and the
PIL resampling the hub checkpoints were trained with), step by step:

- resize: ``size={"shortest_edge": s}`` sets the shorter side to s and the longer to ``int(s * long / short)``
  (truncated, as ``get_resize_output_image_size``); ``size={"height", "width"}`` sets both. PIL resamples in two
  separable passes, horizontal first, each rounded half up to uint8 and clipped to 0..255; so do we. torch's
  antialiased kernels are PIL's (bicubic with a = -0.5, the support widened by the factor when shrinking), so
  ``antialias=True`` is used when enlarging too: without it bicubic uses a = -0.75 and departs from PIL.
- centre crop at ``((H - h) // 2, (W - w) // 2)``, as ``image_transforms.center_crop``;
- rescale (``x * rescale_factor``), then normalise (``(x - mean) / std``), in float32.

What remains is float32 against PIL's fixed-point arithmetic: at most 2 of 255 levels per resized pixel (measured
in tests/test_preprocess.py, which asserts it for the VideoMAE, CLIP, DINOv2 and ViT processors). One known gap:
Pillow's published source always resamples horizontally first, but Pillow 13.0 (measured here on random sizes) does
the vertical pass first where the height shrinks and the width grows, and in about a third of the cases where both
shrink; its rule is not known here, so horizontal-first is kept. Where the order differs, bilinear differs by
rounding only (at most 1 level), bicubic also where a pass overshoots 0..255 and PIL clips in between (up to ~20
levels at such pixels of uniform noise). The workflow's frames (128 px, enlarged to 224/256) are not affected: with an
enlarged height Pillow 13 went horizontal-first in every case measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from trajbench.models.base import FeatureError

if TYPE_CHECKING:
    import torch

KEYS = ("do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
        "do_normalize", "image_mean", "image_std")  # fmt: skip
RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL resampling codes -> torch.nn.functional.interpolate modes
NEEDS = {"do_resize": ("size", "resample"), "do_center_crop": ("crop_size",), "do_rescale": ("rescale_factor",),
         "do_normalize": ("image_mean", "image_std")}  # fmt: skip


def pipeline_settings(values: Mapping[str, Any], source: str) -> dict:
    """The pipeline settings of a processor's ``values`` (its ``to_json_string()`` or json file, named ``source`` in
    errors), checked and in one form: ``size`` {"shortest_edge": s} or {"height": h, "width": w}, ``crop_size``
    {"height": h, "width": w} (a bare int in a json file means the shorter edge / a square, as transformers reads it).
    A step whose flag is unset is off, as in the processors (ViT's, e.g., has no ``do_center_crop``).
    """
    missing = [key for flag, keys in NEEDS.items() if values.get(flag) for key in keys if values.get(key) is None]
    if missing:
        raise FeatureError(f"{source}: lacks {missing}; the torch-op preprocessing reads every setting it applies "
                           "from the processor's config, so re-download the checkpoint's preprocessor config")
    if values.get("do_pad"):
        raise FeatureError(f"{source}: do_pad=true is not supported by the torch-op preprocessing (no padding step)")
    out = {key: bool(values.get(key)) if key in NEEDS else values.get(key) for key in KEYS}
    if out["do_resize"]:
        size = {"shortest_edge": out["size"]} if isinstance(out["size"], int) else dict(out["size"])
        if sorted(size) not in (["shortest_edge"], ["height", "width"]):
            raise FeatureError(f"{source}: size={out['size']!r} is not supported; the torch-op preprocessing takes "
                               '{"shortest_edge": n} or {"height": h, "width": w}')
        if out["resample"] not in RESAMPLE:
            raise FeatureError(f"{source}: resample={out['resample']!r} is not supported; the torch-op "
                               f"preprocessing takes the PIL codes {RESAMPLE} only")
        out["size"] = {key: int(n) for key, n in size.items()}
    if out["do_center_crop"]:
        crop = out["crop_size"]
        crop = {"height": crop, "width": crop} if isinstance(crop, int) else dict(crop)
        if sorted(crop) != ["height", "width"]:
            raise FeatureError(f"{source}: crop_size={out['crop_size']!r} must be {{'height': h, 'width': w}}")
        out["crop_size"] = {key: int(n) for key, n in crop.items()}
    if out["do_normalize"]:
        for key in ("image_mean", "image_std"):
            value = out[key]
            out[key] = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value] * 3)]
            if len(out[key]) != 3:
                raise FeatureError(f"{source}: {key}={value!r} must hold one value per RGB channel")
    return out


def resized_size(height: int, width: int, size: dict) -> tuple[int, int]:
    """The frame size after resizing, rounded as transformers' ``get_resize_output_image_size``."""
    if "height" in size:
        return size["height"], size["width"]
    short = size["shortest_edge"]
    if height <= width:
        return short, int(short * width / height)
    return int(short * height / width), short


def output_size(height: int, width: int, settings: dict) -> tuple[int, int]:
    """(h, w) of the pixel values of an H x W frame; a crop larger than the resized frame is an error (the
    processors would pad it with zeros)."""
    size = resized_size(height, width, settings["size"]) if settings["do_resize"] else (height, width)
    if not settings["do_center_crop"]:
        return size
    crop = settings["crop_size"]["height"], settings["crop_size"]["width"]
    if crop[0] > size[0] or crop[1] > size[1]:
        raise FeatureError(
            f"crop_size {crop} is larger than the {size} frames it crops ({height} x {width} frames, resize "
            f"{settings['size'] if settings['do_resize'] else 'off'}); render larger frames or use a checkpoint "
            "whose processor resizes to at least its crop"
        )
    return crop


def to_device(clips: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """uint8 frames as a tensor on ``device``: the batch travels as uint8, a quarter of its float32 size. A
    read-only or strided array (a memmap, a slice of frames) is copied into a fresh one first."""
    import torch

    return torch.from_numpy(np.require(clips, dtype=np.uint8, requirements=("C", "W"))).to(device)


def preprocess(frames: torch.Tensor, settings: dict) -> torch.Tensor:
    """uint8 frames (..., H, W, 3) on any device -> float32 pixel values (..., 3, h, w) on the same device."""
    import torch

    lead, (height, width) = frames.shape[:-3], frames.shape[-3:-1]
    out_h, out_w = output_size(height, width, settings)  # checks the crop first
    x = frames.reshape(-1, height, width, 3).permute(0, 3, 1, 2)
    x = x.to(torch.float32, memory_format=torch.contiguous_format)
    if settings["do_resize"]:
        x = _resize(x, resized_size(height, width, settings["size"]), RESAMPLE[settings["resample"]])
    if settings["do_center_crop"]:
        top, left = (x.shape[-2] - out_h) // 2, (x.shape[-1] - out_w) // 2
        x = x[:, :, top : top + out_h, left : left + out_w]
    if settings["do_rescale"]:
        x = x * settings["rescale_factor"]
    if settings["do_normalize"]:
        mean = torch.tensor(settings["image_mean"], dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(settings["image_std"], dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x.reshape(*lead, 3, out_h, out_w)


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """PIL's resampling of uint8 images on float frames (N, 3, H, W): horizontal pass, then vertical, each rounded
    half up and clipped to 0..255 (PIL clips between the passes, which matters where bicubic overshoots at edges);
    a pass that keeps its side is skipped, as PIL skips it."""
    import torch

    for pass_size in ((x.shape[-2], size[1]), size):
        if tuple(x.shape[-2:]) != pass_size:
            x = torch.nn.functional.interpolate(x, size=pass_size, mode=mode, antialias=True, align_corners=False)
            x = x.add_(0.5).floor_().clamp_(0, 255)
    return x
