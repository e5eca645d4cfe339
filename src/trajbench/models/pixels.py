"""Raw pixels as a baseline representation: every frame area-downsampled, no weights.

Features: the downsampled frames flattened in (t, y, x, rgb) order. Grid: each downsampled frame cut into a
``features.grid`` x ``features.grid`` grid of equal patches (fewer where the frame has fewer pixels), a token holding
its patch's pixels in (y, x, rgb) order: the same numbers as the features, unpooled.
"""

from __future__ import annotations

import numpy as np

from trajbench.models.base import ENCODER, Encoder, Family, FeatureError, Run, View, grid_meta, map_batches


def extract(run: Run) -> tuple[Encoder, dict]:
    import torch

    size = run.options["size"]
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or not all(isinstance(s, int) and s >= 1 for s in hw):
        raise FeatureError(f"pixels options.size must be an int or [height, width], got {size!r}")
    rows, cols = min(hw[0], run.grid_side), min(hw[1], run.grid_side)
    if hw[0] % rows or hw[1] % cols:
        raise FeatureError(
            f"pixels options.size={list(hw)} does not split into a {rows} x {cols} grid of equal patches "
            f"(features.grid={run.grid_side}); choose a size that is a multiple of features.grid"
        )
    patch_h, patch_w = hw[0] // rows, hw[1] // cols

    def encode(view: View) -> tuple[np.ndarray, np.ndarray]:
        def batch(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
            clips = torch.from_numpy(np.asarray(view.videos[start:stop]))
            n, t, h, w, c = clips.shape
            frames = clips.reshape(n * t, h, w, c).permute(0, 3, 1, 2).float() / 255.0
            small = torch.nn.functional.interpolate(frames, size=hw, mode="area").permute(0, 2, 3, 1)
            patches = small.reshape(n, t, rows, patch_h, cols, patch_w, c).permute(0, 1, 2, 4, 3, 5, 6)
            return small.reshape(n, -1).numpy(), patches.reshape(n, t, rows * cols, -1).numpy()

        return map_batches(run, view, lambda start, stop: [batch(start, stop)])[0]

    frames = run.videos.shape[1]
    meta = {
        "frames": list(range(frames)),
        "size": list(hw),
        "interpolation": "area (torch interpolate)",
        "scale": "[0, 1]",
        "layout": f"all {frames} frames, (t, y, x, rgb) order",
        "grid": grid_meta(
            (frames, rows, cols, patch_h * patch_w * 3), run.grid_side,
            f"the pixels of a {patch_h} x {patch_w} patch of the downsampled frame, (y, x, rgb) order",
        ),
    }
    return encode, meta


FAMILY = Family(
    name="pixels",
    role=ENCODER,
    description="raw pixels, area-downsampled",
    extract=extract,
    weights=False,
    options={"size": 16},
)
