"""The torch-op preprocessing (`trajbench.models.processor_ops`) against transformers' own image processors: pixel
values of VideoMAE, CLIP, DINOv2 and ViT-style processors on odd and rendered frames, enlarged and shrunk, and the
features of stand-in models through either path."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers/huggingface_hub read it: no test touches the network
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import json
import warnings
from functools import cache

import numpy as np
import pytest
import torch

from trajbench import standins
from trajbench.features import extract_features
from trajbench.models import processor_ops, registry
from trajbench.models.base import FeatureError
from trajbench.render import DatasetConfig, render_video

# PIL resamples in fixed point and rounds each pass to uint8; the torch ops compute in float32 and round the same way.
# Measured on these cases (uniform noise, the worst case, and a rendered clip): a pixel differs by at most 2 of 255
# levels; in normalised units 2 / 255 / std, at most 0.035 with ImageNet's std (0.224 the smallest), 0.030 with
# CLIP's (0.261). On average at most 0.10 levels (VideoMAE, bilinear 128 -> 224), except 0.24 for ViT's bilinear
# 300 x 260 -> 224 x 224, where Pillow 13 does the vertical pass first (see processor_ops): rounding ties only.
MAX_LEVELS = 2
MEAN_LEVELS = 0.3
# The stand-ins' features through either path, relative to their largest magnitude: measured at most 7.6e-5.
FEATURE_RTOL = 5e-4

PROCESSORS = {  # realistic settings: (class, settings at the model's size)
    "clip": ("CLIPImageProcessor", {"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224}}),
    "dinov2": ("BitImageProcessor", {"size": {"shortest_edge": 256}, "crop_size": {"height": 224, "width": 224},
                                     "image_mean": standins.IMAGENET_MEAN, "image_std": standins.IMAGENET_STD}),
    "videomae": ("VideoMAEImageProcessor", {"size": {"shortest_edge": 224},
                                            "crop_size": {"height": 224, "width": 224},
                                            "image_mean": standins.IMAGENET_MEAN, "image_std": standins.IMAGENET_STD}),
    "vit": ("ViTImageProcessor", {"size": {"height": 224, "width": 224}}),  # resize to a fixed size, no crop
}  # fmt: skip
# The same processors at a fraction of the size, so that 128 x 128 frames are shrunk (with a crop offset).
SMALL = {"clip": (64, 64), "dinov2": (72, 64), "videomae": (64, 64), "vit": (48, None)}


def _pil_processor(family: str, small: bool = False):
    """The family's processor (PIL backend) with `PROCESSORS`' settings, or `SMALL`'s sizes."""
    name, kwargs = PROCESSORS[family]
    if small:
        resize, crop = SMALL[family]
        size_key = "height" if "height" in kwargs["size"] else "shortest_edge"
        kwargs = {**kwargs, "size": {"height": resize, "width": resize} if size_key == "height" else {size_key: resize}}
        if crop:
            kwargs["crop_size"] = {"height": crop, "width": crop}
    return _pil_class(name)(**kwargs)


def _pil_class(name: str):
    """transformers' PIL backend of image processor ``name``: ``<name>Pil`` from transformers 5, ``<name>`` before."""
    import transformers

    return getattr(transformers, name + "Pil", None) or getattr(transformers, name)


def _settings(processor) -> dict:
    return processor_ops.pipeline_settings(json.loads(processor.to_json_string()), type(processor).__name__)


def _reference(processor, frames: np.ndarray) -> torch.Tensor:
    """The processor's pixel_values of uint8 frames (N, H, W, 3), one image each (VideoMAE's takes the list as one
    video: (1, N, 3, h, w))."""
    out = processor(list(frames), return_tensors="pt", input_data_format="channels_last")["pixel_values"]
    return out.reshape(-1, *out.shape[-3:])


@cache
def _rendered_clip() -> np.ndarray:
    """A clip as the real run renders it (config/config.yaml's look): 17 x 128 x 128, a bouncing disc on a gradient,
    a distractor, noise and camera jitter."""
    cfg = DatasetConfig(classes=("bouncing",), videos_per_class=1, frames=17, size=128, seed=0, noise_std=2.0,
                        distractors=1, camera_jitter=0.3)  # fmt: skip
    return render_video(cfg, 0).frames


def _frames(kind: str) -> np.ndarray:
    if kind == "rendered 17x128x128":
        return _rendered_clip()
    height, width = (int(n) for n in kind.removeprefix("noise ").split("x"))
    return np.random.default_rng(height * width).integers(0, 256, (3, height, width, 3), dtype=np.uint8)


def _levels(difference: torch.Tensor, settings: dict) -> torch.Tensor:
    """A difference of pixel values (N, 3, h, w) in levels of the uint8 frames (normalised units * std / scale)."""
    std = torch.tensor(settings["image_std"]).view(3, 1, 1)
    return difference.abs() * std / settings["rescale_factor"]


@pytest.mark.parametrize("small", [False, True], ids=["model size", "small"])
@pytest.mark.parametrize("kind", ["noise 32x48", "noise 128x128", "noise 300x260", "rendered 17x128x128"])
@pytest.mark.parametrize("family", sorted(PROCESSORS))
def test_torch_ops_match_the_processor(family, kind, small):
    processor = _pil_processor(family, small)
    settings, frames = _settings(processor), _frames(kind)
    expected = _reference(processor, frames)
    got = processor_ops.preprocess(torch.from_numpy(frames), settings)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    levels = _levels(got - expected, settings)
    assert float(levels.max()) <= MAX_LEVELS + 1e-3, f"max {float(levels.max()):.3f} levels"
    assert float(levels.mean()) <= MEAN_LEVELS, f"mean {float(levels.mean()):.4f} levels"
    assert processor_ops.output_size(*frames.shape[1:3], settings) == tuple(expected.shape[-2:])


def test_resized_size_truncates_the_longer_side_as_transformers():
    from transformers.image_transforms import get_resize_output_image_size

    for height, width in [(17, 128), (128, 17), (300, 260), (33, 50), (128, 128), (7, 1000)]:
        image = np.zeros((3, height, width), np.uint8)
        for short in (32, 224, 292):
            expected = get_resize_output_image_size(image, short, default_to_square=False,
                                                    input_data_format="channels_first")  # fmt: skip
            assert processor_ops.resized_size(height, width, {"shortest_edge": short}) == tuple(expected)
    assert processor_ops.resized_size(17, 128, {"height": 20, "width": 30}) == (20, 30)


def test_exact_numbers_without_resampling():
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (2, 4, 8, 13, 3), dtype=np.uint8)
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 0.2]
    settings = processor_ops.pipeline_settings(
        {"do_resize": True, "size": 8, "resample": 3, "do_center_crop": True, "crop_size": {"height": 6, "width": 8},
         "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": mean, "image_std": std},
        "test",
    )  # fmt: skip
    out = processor_ops.preprocess(torch.from_numpy(clips), settings).numpy()
    assert out.shape == (2, 4, 3, 6, 8)
    # the shorter side has 8 pixels already: no resampling; rows 1..6 and columns 2..9 (offsets (8-6)//2, (13-8)//2)
    crop = clips[:, :, 1:7, 2:10].transpose(0, 1, 4, 2, 3) / 255
    expected = (crop - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # halving a constant frame keeps the constant, bilinear and bicubic
    flat = torch.full((1, 2, 16, 16, 3), 51, dtype=torch.uint8)
    for resample in (2, 3):
        square = {**settings, "resample": resample, "crop_size": {"height": 6, "width": 6}}
        half = processor_ops.preprocess(flat, square)
        np.testing.assert_allclose(half.numpy()[0, :, 0], (0.2 - 0.1) / 0.5, rtol=1e-5)


def test_to_device_takes_read_only_and_strided_frames_without_warnings(tmp_path):
    path = tmp_path / "videos.npy"
    np.save(path, np.arange(2 * 5 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 5, 4, 4, 3))
    videos = np.load(path, mmap_mode="r")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on non-writable numpy arrays
        tensor = processor_ops.to_device(videos[:, :3], "cpu")
    assert tensor.dtype == torch.uint8 and tensor.numpy().tobytes() == np.ascontiguousarray(videos[:, :3]).tobytes()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"resample": 0}, r"resample=0 is not supported; .* PIL codes \{2: 'bilinear', 3: 'bicubic'\}"),
        ({"size": {"shortest_edge": 8, "longest_edge": 10}}, r"size=\{.*longest_edge.*\} is not supported"),
        ({"crop_size": {"height": 8}}, r"crop_size=\{'height': 8\} must be"),
        ({"do_pad": True}, "do_pad=true is not supported"),
        ({"image_std": [0.5, 0.5]}, "image_std=.* one value per RGB channel"),
        ({"size": None}, r"cfg.json: lacks \['size'\]"),
    ],
)
def test_settings_that_the_torch_ops_cannot_follow_are_errors(change, message):
    values = {**json.loads(_pil_processor("clip").to_json_string()), **change}
    with pytest.raises(FeatureError, match=message):
        processor_ops.pipeline_settings(values, "cfg.json")


def test_a_crop_larger_than_the_resized_frame_is_an_error():
    settings = _settings(_pil_processor("clip"))
    with pytest.raises(FeatureError, match=r"crop_size \(224, 224\) is larger than the \(20, 30\) frames"):
        processor_ops.preprocess(torch.zeros(1, 20, 30, 3, dtype=torch.uint8), {**settings, "do_resize": False})


# --- features of stand-in models through either path ---------------------------------------------------------------


def _processor_path_features(family: str, folder, clips: np.ndarray) -> np.ndarray:
    """The stand-in's features with the folder's own processor (PIL backend) making the pixel values, the rest as
    the workflow computes it: VideoMAE the mean of all tokens of the first num_frames frames; CLIP/DINOv2 the
    per-frame embeddings in time order, then their mean."""
    from transformers import CLIPConfig, CLIPVisionModelWithProjection, Dinov2Model, VideoMAEModel

    processor = _pil_class(PROCESSORS[family][0]).from_pretrained(folder)
    with torch.inference_mode():
        if family == "videomae":
            model = VideoMAEModel.from_pretrained(folder).eval()
            frames = model.config.num_frames
            pixel_values = torch.stack([_reference(processor, clip[:frames]) for clip in clips])
            return model(pixel_values=pixel_values).last_hidden_state.mean(dim=1).numpy()
        if family == "clip":  # the vision tower of the full CLIPModel folder, with its projection width
            config = CLIPConfig.from_pretrained(folder)
            config.vision_config.projection_dim = config.projection_dim
            model = CLIPVisionModelWithProjection.from_pretrained(folder, config=config.vision_config).eval()
        else:
            model = Dinov2Model.from_pretrained(folder).eval()
        output = model(pixel_values=_reference(processor, clips.reshape(-1, *clips.shape[2:])))
        embeds = (output.image_embeds if family == "clip" else output.pooler_output).reshape(*clips.shape[:2], -1)
        return torch.cat([embeds.flatten(1), embeds.mean(dim=1)], dim=1).numpy()


@pytest.mark.parametrize("family", ["videomae", "clip", "dinov2"])
def test_standin_features_through_torch_ops_are_close_to_the_processor_path(family, tmp_path):
    clips = np.stack([_rendered_clip()[:8], _rendered_clip()[9:]])  # 2 clips, 8 x 128 x 128, shrunk to 32
    labels = _labels(len(clips), clips.shape[1])
    folder = registry.get(family).write_standin(tmp_path / family, {}, seed=3)
    features, meta = extract_features(family, "pretrained", clips, labels, {}, weights_dir=folder, batch_size=2)
    got = features["ordered"][0]
    expected = _processor_path_features(family, folder, clips)
    assert got.shape == expected.shape
    scale = float(np.abs(expected).max())
    assert float(np.abs(got - expected).max()) <= FEATURE_RTOL * scale
    assert meta["preprocessing"]["ran_as"] == "torch ops (trajbench.models.processor_ops.preprocess) on cpu, float32"


def _labels(n: int, t: int):
    import pandas as pd

    from trajbench import controls

    table = {"index": np.arange(n), "label": np.zeros(n, int), "class_name": ["bouncing"] * n}
    table.update({f"{axis}_{i}": np.zeros(n) for axis in "xy" for i in range(t)})
    table[controls.COLUMN] = [controls.format_order(controls.frame_permutation(0, i, t)) for i in range(n)]
    return pd.DataFrame(table)
