"""Raw pixels as a baseline representation: every frame area-downsampled, no weights."""

from __future__ import annotations

import numpy as np

from trajbench.models.base import ENCODER, Family, FeatureError, Run, map_batches


def extract(run: Run) -> tuple[np.ndarray, dict]:
    import torch

    size = run.options["size"]
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or not all(isinstance(s, int) and s >= 1 for s in hw):
        raise FeatureError(f"pixels options.size must be an int or [height, width], got {size!r}")

    def batch(start: int, stop: int) -> np.ndarray:
        clips = torch.from_numpy(np.asarray(run.videos[start:stop]))
        n, t, h, w, c = clips.shape
        frames = clips.reshape(n * t, h, w, c).permute(0, 3, 1, 2).float() / 255.0
        small = torch.nn.functional.interpolate(frames, size=hw, mode="area")
        return small.permute(0, 2, 3, 1).reshape(n, -1).numpy()

    features = map_batches(run, batch)
    layout = f"all {run.videos.shape[1]} frames, (t, y, x, rgb) order"
    meta = {"size": list(hw), "interpolation": "area (torch interpolate)", "scale": "[0, 1]", "layout": layout}
    return features, meta


FAMILY = Family(
    name="pixels",
    role=ENCODER,
    description="raw pixels, area-downsampled",
    extract=extract,
    weights=False,
    options={"size": 16},
)
