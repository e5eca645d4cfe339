"""Running the MagVit tokenizer over a dataset of clips: token indices and reconstructions, batch by batch."""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch

from trajbench.logs import Progress
from trajbench.magvit import MagvitTokenizer, to_model_range, to_uint8


def tokenize_videos(
    model: MagvitTokenizer,
    videos: np.ndarray,
    batch_size: int,
    device: str,
    dtype: torch.dtype,
    window: int | None = None,
    logger: logging.Logger | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Token indices and reconstructions of uint8 clips ``(N, T, H, W, 3)``.

    Each clip is cut into ``T / window`` consecutive windows (default: one window of all T frames) that are encoded
    and decoded independently, as the authors reconstruct long videos in windows of 17 frames. ``window`` must have
    the form ``1 + k * temporal_compression`` and T must be a whole number of windows: leftover frames are an error,
    never silently dropped. ``batch_size`` counts clips per forward pass (each brings ``T / window`` windows).

    ``videos`` may be a read-only memmap: only one batch at a time is read and converted to float. The model is moved
    to ``device`` and run under ``torch.inference_mode``; on CUDA with ``dtype`` bfloat16/float16 under autocast,
    on CPU in float32 only.

    Returns ``indices`` int32 ``(N, (T / window) * T', H', W')`` (windows in time order, T' latent frames each) and
    ``reconstructions`` uint8 ``(N, T, H, W, 3)``.
    """
    logger = logger or logging.getLogger(__name__)
    config = model.config
    if videos.dtype != np.uint8 or videos.ndim != 5 or videos.shape[-1] != config.in_channels:
        raise ValueError(
            f"tokenize_videos expects uint8 videos (N, T, H, W, {config.in_channels}), got {videos.dtype} "
            f"{videos.shape}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    precision = _precision(device, dtype)
    n_clips, frames, height, width, channels = videos.shape
    window = frames if window is None else window
    latent_frames = config.latent_frames(window)  # raises unless window = 1 + k * temporal_compression
    if frames % window:
        raise ValueError(
            f"clips of {frames} frames are not a whole number of {window}-frame windows ({frames % window} frames "
            f"left over); choose a window that divides {frames} and has the form 1 + k*{config.temporal_compression}"
        )
    n_windows = frames // window
    scale = config.spatial_compression  # model.encode rejects sizes it does not divide

    indices = np.empty((n_clips, n_windows * latent_frames, height // scale, width // scale), dtype=np.int32)
    reconstructions = np.empty(videos.shape, dtype=np.uint8)
    model.to(device).eval()
    progress = Progress(n_clips, "magvit tokenize", logger)
    with torch.inference_mode(), precision:
        for start in range(0, n_clips, batch_size):
            batch = torch.from_numpy(np.array(videos[start : start + batch_size]))  # reads one batch off the memmap
            count = len(batch)
            clips = batch.to(device).reshape(count * n_windows, window, height, width, channels)
            _, quantized, tokens = model.encode(to_model_range(clips))
            recon = to_uint8(model.decode(quantized))
            indices[start : start + count] = tokens.reshape(count, -1, *tokens.shape[2:]).cpu().numpy()
            reconstructions[start : start + count] = recon.reshape(count, frames, height, width, channels).cpu().numpy()
            progress.update(count)
    return indices, reconstructions


def _precision(device: str, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Autocast in ``dtype`` on accelerators; float32 (no autocast) when ``dtype`` is float32 or on the CPU."""
    device_type = torch.device(device).type
    if dtype == torch.float32:
        return contextlib.nullcontext()
    if device_type == "cpu":
        raise ValueError(f"MagVit tokenization runs in float32 on the CPU; got dtype {dtype} (set runtime.dtype)")
    return torch.autocast(device_type=device_type, dtype=dtype)
