"""Throughput of the feature networks on one GPU: VideoMAE-base and CLIP ViT-B/32, eager vs sdpa vs flash attention.

Both are built from their transformers configs with random weights (seeded; nothing is downloaded):
``VideoMAEModel(VideoMAEConfig())`` (224 x 224, 16 frames, 1568 tokens) and
``CLIPVisionModelWithProjection(CLIPVisionConfig(patch_size=32))`` (224 x 224, 50 tokens, 512-d projection), and
run as ``trajbench.features`` runs them: float32 weights under autocast in ``--dtype`` on CUDA (float32 on the CPU),
``torch.inference_mode``, features pooled the same way (VideoMAE: mean of the patch tokens; CLIP: ``image_embeds``
of every frame of a clip).

Inputs are real preprocessed clips: synthetic trajectory videos rendered as in config/config.yaml (17 x 128 x 128),
the frames each family takes (VideoMAE the first ``num_frames``, contiguous; CLIP every frame) passed through the
model's default image processor (``VideoMAEImageProcessor`` / ``CLIPImageProcessor``, loaded back through
``AutoImageProcessor``). That CPU preprocessing is timed apart ("processor" rows), and beside it the workflow's own
preprocessing: the same settings as torch ops on ``--device`` (``trajbench.models.processor_ops``; "torch ops" rows:
the uint8 clips copied to the device and preprocessed there, as each batch is before its forward pass), with the
largest difference of its pixel values from the processor's (normalised units).

Each network row: clips/s, ms/clip and peak GPU memory per attention implementation and batch size, and the largest
difference of its features from the eager ones on the same inputs (relative to their largest magnitude).
flash_attention_2 rows say why when it is unavailable (package missing, transformers without support, CPU).

    PYTHONPATH=src python benchmarks/features_gpu.py --json features_gpu.json   # one GPU, ~2 min on an H100
    PYTHONPATH=src python benchmarks/features_gpu.py --quick --device cpu       # smoke run: tiny models, seconds
    PYTHONPATH=src python benchmarks/features_gpu.py --device cpu --preprocess-only  # preprocessing rows only
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers reads it: nothing here needs the network

import numpy as np
import torch

from magvit_gpu import (
    FULL_DATA, QUICK_DATA, benchmark_device, elapsed_s, environment, print_environment, print_header, print_row,
    render_clips,
)
from trajbench import io
from trajbench.models import processor_ops

IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2")
PROCESSOR_ARGS = {"return_tensors": "pt", "input_data_format": "channels_last"}  # as trajbench.models.hf
QUICK_VIDEOMAE = dict(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=64)
QUICK_CLIP = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, projection_dim=16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16"), help="autocast on CUDA")
    parser.add_argument("--batches", default="8,32", help="clips per forward pass, comma-separated")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="time each row for at least this long")
    parser.add_argument("--budget-s", type=float, default=150.0, help="start no new row after this many seconds")
    parser.add_argument("--quick", action="store_true", help="tiny models and clips, batch 2: a smoke run")
    parser.add_argument("--json", type=Path, help="write every figure here (rewritten after each row)")
    parser.add_argument("--preprocess-only", action="store_true", help="time the preprocessing rows only")
    args = parser.parse_args()
    started = time.perf_counter()
    device = benchmark_device(args.device)
    dtype = getattr(torch, args.dtype) if device.type == "cuda" else torch.float32
    batches = [2] if args.quick else [int(b) for b in args.batches.split(",")]
    min_seconds = 0.0 if args.quick else args.min_seconds

    import transformers

    env = environment(device)
    env["transformers"] = transformers.__version__
    results: dict = {"command": " ".join([sys.executable, *sys.argv]), "environment": env, "rows": []}
    save = (lambda: io.write_json(args.json, results)) if args.json else (lambda: None)
    print_environment(env)
    clips = render_clips(QUICK_DATA if args.quick else FULL_DATA)
    print_header(COLUMNS)
    for network in (VideoMAE(args.quick), Clip(args.quick)):
        pixels, rows = network.preprocess(clips, device, min_seconds)
        for row in rows:
            results["rows"].append(row)
            print_row(row, COLUMNS)
        save()
        if args.preprocess_only:
            continue
        reference: dict[int, torch.Tensor] = {}  # eager features per batch size
        for implementation in IMPLEMENTATIONS:
            if time.perf_counter() - started > args.budget_s:
                row = network.row(implementation, None, status=f"skipped: past --budget-s {args.budget_s}")
                results["rows"].append(row)
                print_row(row, COLUMNS)
                continue
            rows = measure(network, implementation, pixels, batches, device, dtype, min_seconds, reference)
            for row in rows:
                results["rows"].append(row)
                print_row(row, COLUMNS)
            save()
    results["total_s"] = time.perf_counter() - started
    save()
    print(f"total {results['total_s']:.0f} s")


class Network:
    """Shared rows and preprocessing. Subclasses give the config, ``build(attention)``, ``processor()``,
    ``frames(available)`` (indices sampled per clip), ``to_pixels(processor, clips)`` and ``forward(model, pixels)``
    (the pooled features, as trajbench.features computes them)."""

    name: str

    def row(self, implementation: str, batch: int | None, **values) -> dict:
        return {"network": self.name, "attention": implementation, "batch": batch, **values}

    def preprocess(self, clips: np.ndarray, device: torch.device, min_seconds: float) -> tuple[torch.Tensor, list]:
        """Sampled frames of every clip through the default processor, saved and reloaded with AutoImageProcessor
        (the class a user gets), then through the workflow's torch ops with the processor's settings on ``device``
        (uint8 upload included): the processor's pixel values and one row each."""
        from transformers import AutoImageProcessor

        with tempfile.TemporaryDirectory() as folder:
            self.processor().save_pretrained(folder)
            processor = AutoImageProcessor.from_pretrained(folder)
        sampled = clips[:, self.frames(clips.shape[1])]
        self.to_pixels(processor, sampled[:1])  # warm-up
        start = time.perf_counter()
        pixels = self.to_pixels(processor, sampled)
        seconds = time.perf_counter() - start
        what = f"processor ({type(processor).__name__}, CPU)"
        rows = [self.row(what, len(clips), clips_per_s=len(clips) / seconds, ms_per_clip=1e3 * seconds / len(clips),
                         status="ok")]  # fmt: skip

        name = type(processor).__name__
        settings = processor_ops.pipeline_settings(json.loads(processor.to_json_string()), name)

        def step() -> torch.Tensor:
            return processor_ops.preprocess(processor_ops.to_device(sampled, device), settings)

        ops_pixels = step().cpu()  # warm-up
        iterations = max(2, math.ceil(min_seconds / max(elapsed_s(step, 1, device), 1e-6)))
        seconds = elapsed_s(step, iterations, device) / iterations
        rows.append(self.row(f"torch ops ({name} settings, {device})", len(clips), clips_per_s=len(clips) / seconds,
                             ms_per_clip=1e3 * seconds / len(clips), status="ok",
                             max_abs_diff_vs_processor=float((ops_pixels - pixels).abs().max())))  # fmt: skip
        return pixels, rows


class VideoMAE(Network):
    name = "videomae-base"

    def __init__(self, quick: bool):
        from transformers import VideoMAEConfig

        self.config = VideoMAEConfig(**(QUICK_VIDEOMAE if quick else {}))

    def build(self, implementation: str) -> torch.nn.Module:
        from transformers import VideoMAEModel

        return VideoMAEModel._from_config(self.config, attn_implementation=implementation)

    def processor(self):
        from transformers import VideoMAEImageProcessor

        side = self.config.image_size
        return VideoMAEImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})

    def frames(self, available: int) -> np.ndarray:
        return np.arange(self.config.num_frames)  # as trajbench.models.videomae: contiguous from frame 0

    def to_pixels(self, processor, clips: np.ndarray) -> torch.Tensor:
        """(clips, frames, 3, S, S): one VideoMAE input per clip."""
        return processor([list(clip) for clip in clips], **PROCESSOR_ARGS)["pixel_values"]

    def forward(self, model, pixel_values: torch.Tensor) -> torch.Tensor:
        return model(pixel_values=pixel_values).last_hidden_state.float().mean(dim=1)


class Clip(Network):
    name = "clip-vit-b32"

    def __init__(self, quick: bool):
        from transformers import CLIPVisionConfig

        self.config = CLIPVisionConfig(**(QUICK_CLIP if quick else {"patch_size": 32, "projection_dim": 512}))

    def build(self, implementation: str) -> torch.nn.Module:
        from transformers import CLIPVisionModelWithProjection

        return CLIPVisionModelWithProjection._from_config(self.config, attn_implementation=implementation)

    def processor(self):
        from transformers import CLIPImageProcessor

        side = self.config.image_size
        return CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})

    def frames(self, available: int) -> np.ndarray:
        return np.arange(available)  # as trajbench.models.clip: every frame

    def to_pixels(self, processor, clips: np.ndarray) -> torch.Tensor:
        """(clips, frames, 3, S, S): the frames of a clip, one image each."""
        images = processor(list(clips.reshape(-1, *clips.shape[2:])), **PROCESSOR_ARGS)["pixel_values"]
        return images.reshape(len(clips), -1, *images.shape[1:])

    def forward(self, model, pixel_values: torch.Tensor) -> torch.Tensor:
        embeds = model(pixel_values=pixel_values.flatten(0, 1)).image_embeds.float()
        return embeds.reshape(len(pixel_values), -1)


def measure(network, implementation, pixels, batches, device, dtype, min_seconds, reference) -> list[dict]:
    """One row per batch size; a model that cannot be built or run gives one row saying why."""
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the same weights for every attention implementation
            model = network.build(implementation)
        model = model.to(device).eval()
    except (ImportError, ValueError, RuntimeError, OSError) as error:
        return [network.row(implementation, None, status=f"unavailable: {first_line(error)}")]
    autocast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
    rows = []
    for batch in batches:
        row = network.row(implementation, batch, dtype=str(dtype).removeprefix("torch."))
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        # The preprocessed clips repeated to fill the batch, on the device before timing starts.
        inputs = pixels[torch.arange(batch) % len(pixels)].to(device)
        try:
            with torch.inference_mode(), autocast:

                def step():
                    return network.forward(model, inputs).cpu()

                features = step()  # warm-up
                iterations = max(2, math.ceil(min_seconds / max(elapsed_s(step, 1, device), 1e-6)))
                row["clips_per_s"] = batch * iterations / elapsed_s(step, iterations, device)
                row["ms_per_clip"] = 1e3 / row["clips_per_s"]
            row["status"] = "ok"
        except (RuntimeError, ValueError, ImportError, OSError) as error:  # torch.cuda.OutOfMemoryError included
            row["status"] = f"error: {first_line(error)}"
            rows.append(row)
            break
        finally:
            if device.type == "cuda":
                row["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
        if implementation == "eager":
            reference[batch] = features
        elif batch in reference:
            scale = float(reference[batch].abs().max())
            row["max_rel_diff_vs_eager"] = float((features - reference[batch]).abs().max()) / scale
        rows.append(row)
    return rows


def first_line(error: BaseException) -> str:
    return f"{type(error).__name__}: " + (str(error).strip().splitlines() or [""])[0][:200]


COLUMNS = (  # header, key, format
    ("network", "network", "{}"),
    ("attention", "attention", "{}"),
    ("batch", "batch", "{}"),
    ("dtype", "dtype", "{}"),
    ("clips/s", "clips_per_s", "{:.1f}"),
    ("ms/clip", "ms_per_clip", "{:.2f}"),
    ("peak mem GB", "peak_memory_gb", "{:.2f}"),
    ("max rel diff vs eager", "max_rel_diff_vs_eager", "{:.1e}"),
    ("max abs diff vs processor", "max_abs_diff_vs_processor", "{:.3f}"),
    ("status", "status", "{}"),
)


if __name__ == "__main__":
    main()
