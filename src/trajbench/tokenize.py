"""Running the MagVit tokenizer over a dataset of clips: token indices and reconstructions, batch by batch.

Two modes (``mode=``):

- ``"reference"``: what the authors' inference loop does: float32, eager, one clip per forward pass, no autocast,
  cuDNN autotuning off, contiguous (NCDHW) memory. ``dtype``, ``batch_size`` and ``compile`` do not apply.
- ``"optimized"`` (default): the given batch size, on CUDA autocast in ``dtype`` (float16/bfloat16) and
  ``torch.backends.cudnn.benchmark`` on, optionally ``torch.compile`` (then in channels-last 3D memory). On the CPU it
  runs in float32 and gives the same tokens as the reference.

Measured on an H200 (benchmarks/README.md): eagerly, contiguous memory ran 27 % faster than channels-last (CUDA's
GroupNorm converts channels-last activations back and forth); compiled, channels-last ran 50 % faster than eager
contiguous. float16 kept 98.7-99.1 % of the float32 tokens, bfloat16 only 91-92 % (3 fewer mantissa bits flip the
sign of latents near 0), at the same speed: hence ``tokenize.dtype: float16`` (`autocast_dtype`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from trajbench.logs import Progress
from trajbench.modeling_magvit import MagvitTokenizer, to_model_range, to_uint8
from trajbench.runtime import autocast

MODES = ("optimized", "reference")
DTYPES = ("float16", "bfloat16", "float32", "auto")
COMPILE_SETTINGS = (True, False, "auto")

# tokenize.compile: auto compiles only where the seconds compiling saves exceed what compiling costs. Measured on an
# H200 (benchmarks/README.md, run 2: the full model, batch 8, float16 = the default tokenize.dtype, eager in contiguous
# memory, compiled in channels-last): the first compiled call took 89 s (73 s in bfloat16); per clip, encode+decode took
# 1/24.30 s eager and 1/35.25 s compiled, encode alone 1/57.28 s and 1/86.10 s. Compiling saves per clip and pass:
COMPILE_SAVED_S = {
    "encode_decode": 1 / 24.30 - 1 / 35.25,  # 12.78 ms
    "encode": 1 / 57.28 - 1 / 86.10,  # 5.84 ms
}
COMPILE_COST_S = 89.0
# A tokenize job encodes and decodes each of its clips, then encodes them again frame-shuffled (encode only):
# 12.78 + 5.84 = 18.63 ms saved per clip, so compiling pays beyond 89 s / 18.63 ms = 4,778 clips per job (the real
# config's 576 clips per init: about 11 s saved for 89 s spent). Not counted: the shuffled pass opens its own session,
# whose encode may be compiled again (unmeasured), so the true break-even lies somewhat higher.
TOKENIZE_PASSES = ("encode_decode", "encode")
COMPILE_BREAK_EVEN_CLIPS = COMPILE_COST_S / sum(COMPILE_SAVED_S[kind] for kind in TOKENIZE_PASSES)


def autocast_dtype(setting: str, device: str, environment_dtype: torch.dtype) -> torch.dtype:
    """The dtype MagVit computes in: float32 on the CPU whatever ``setting`` says; on an accelerator ``setting``
    (``tokenize.dtype``), where ``"auto"`` takes the environment check's choice for all models."""
    if setting not in DTYPES:
        raise ValueError(f"tokenize.dtype must be one of {list(DTYPES)}, got {setting!r}")
    if torch.device(device).type == "cpu":
        return torch.float32
    return environment_dtype if setting == "auto" else getattr(torch, setting)


def resolve_compile(
    setting: bool | str,
    device: str | torch.device,
    clips: int,
    *,
    mode: str = "optimized",
    passes: tuple[str, ...] = TOKENIZE_PASSES,
    logger: logging.Logger | None = None,
) -> tuple[bool, str]:
    """Whether a job that runs ``passes`` (``COMPILE_SAVED_S`` keys) over ``clips`` clips compiles, and why.

    ``setting`` is ``tokenize.compile``: ``True``/``False`` are obeyed; ``"auto"`` compiles on an accelerator in
    optimized mode when the job's clips x passes save more than compiling costs (`COMPILE_BREAK_EVEN_CLIPS` for a
    tokenize job), and never on the CPU (compiling a full model there takes minutes and the saving was never measured)
    or in reference mode (eager, as the authors' loop). The decision is logged.
    """
    logger = logger or logging.getLogger(__name__)
    if setting not in COMPILE_SETTINGS or not isinstance(setting, (bool, str)):
        raise ValueError(f"tokenize.compile must be true, false or 'auto', got {setting!r}")
    unknown = sorted(set(passes) - set(COMPILE_SAVED_S))
    if unknown:
        raise ValueError(f"unknown MagVit passes {unknown}; known: {sorted(COMPILE_SAVED_S)}")
    if setting is True or setting is False:
        compiled, reason = setting, f"tokenize.compile: {str(setting).lower()}"
    elif torch.device(device).type == "cpu":
        compiled, reason = False, "auto: never on the CPU"
    elif mode != "optimized":
        compiled, reason = False, f"auto: {mode} mode runs eagerly"
    else:
        saved_s = clips * sum(COMPILE_SAVED_S[kind] for kind in passes)
        compiled = saved_s > COMPILE_COST_S
        reason = (
            f"auto: {clips} clips x passes {'+'.join(passes)} would save about {saved_s:.0f} s against "
            f"{COMPILE_COST_S:.0f} s to compile (H200 measurement, benchmarks/README.md)"
        )
    logger.info("magvit torch.compile %s (%s)", "on" if compiled else "off", reason)
    return compiled, reason


def tokenize_videos(
    model: MagvitTokenizer,
    videos: np.ndarray,
    batch_size: int,
    device: str,
    dtype: torch.dtype,
    window: int | None = None,
    logger: logging.Logger | None = None,
    *,
    mode: str = "optimized",
    compile: bool | str = False,
    decode: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Token indices and reconstructions of uint8 clips ``(N, T, H, W, 3)``; ``decode=False`` only encodes (the
    shuffled control needs tokens, not pixels) and gives ``None`` for the reconstructions.

    Each clip is cut into ``T / window`` consecutive windows (default: one window of all T frames) that are encoded
    and decoded independently, as the authors reconstruct long videos in windows of 17 frames. ``window`` must have
    the form ``1 + k * temporal_compression`` and T must be a whole number of windows: leftover frames are an error,
    never silently dropped. ``batch_size`` counts clips per forward pass (each brings ``T / window`` windows).

    ``videos`` may be a read-only memmap or a `trajbench.controls.ShuffledVideos` view: only one batch at a time is
    read and converted to float. The model is moved
    to ``device`` (and the mode's memory format) in place and run under ``torch.inference_mode``. ``mode`` and
    ``compile``: see the module docstring and `session`.

    Returns ``indices`` int32 ``(N, (T / window) * T', H', W')`` (windows in time order, T' latent frames each) and
    ``reconstructions`` uint8 ``(N, T, H, W, 3)`` (``None`` without ``decode``).
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
    reconstructions = np.empty(videos.shape, dtype=np.uint8) if decode else None
    # Never more clips per pass than there are: a compiled model would otherwise run padding only.
    batch_size = max(1, min(batch_size, n_clips))
    with session(model, device, dtype, batch_size, mode=mode, compile=compile, logger=logger) as run:
        progress = Progress(n_clips, "magvit tokenize" if decode else "magvit encode", logger)
        for start in range(0, n_clips, run.batch_size):
            batch = torch.from_numpy(np.array(videos[start : start + run.batch_size]))  # one batch off the memmap
            count = len(batch)
            clips = batch.to(run.device).reshape(count * n_windows, window, height, width, channels)
            if run.fixed_batch and count < run.batch_size:
                # A compiled model recompiles for every new shape; blank clips fill the last batch instead.
                blank = clips.new_zeros(((run.batch_size - count) * n_windows, *clips.shape[1:]))
                clips = torch.cat([clips, blank])
            quantized, tokens = run.encode(clips)
            tokens = tokens[: count * n_windows]
            indices[start : start + count] = tokens.reshape(count, -1, *tokens.shape[2:]).cpu().numpy()
            if decode:
                recon = run.decode(quantized)[: count * n_windows].reshape(count, frames, height, width, channels)
                reconstructions[start : start + count] = recon.cpu().numpy()
            progress.update(count)
    return indices, reconstructions


@dataclass
class Session:
    """A model prepared by `session`: encodes and decodes uint8 clips that are already on ``device``."""

    device: torch.device
    batch_size: int  # clips per forward pass (1 in reference mode)
    fixed_batch: bool  # compiled: every pass must have batch_size clips (pad the last one)
    memory_format: torch.memory_format
    precision: str  # "float32" or "autocast <dtype>", for messages
    encode_fn: Callable
    decode_fn: Callable

    def encode(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 clips ``(B, T, H, W, C)`` -> (quantized latent +/-1 ``(B, z, T', H', W')``, int64 indices).

        Raises ``FloatingPointError`` where the latent is not finite: the sign of a NaN is no token, and float16
        overflows where a checkpoint's activations exceed 65504."""
        video = to_model_range(clips).contiguous(memory_format=self.memory_format)
        latent, quantized, indices = self.encode_fn(video)
        if not torch.isfinite(latent).all():
            raise FloatingPointError(
                f"MagVit's latent has non-finite values under {self.precision}; a float16 overflow is the usual cause: "
                "set tokenize.dtype: bfloat16 (same speed) or float32"
            )
        return quantized, indices

    def decode(self, quantized: torch.Tensor) -> torch.Tensor:
        """Quantized latent -> uint8 reconstruction ``(B, T, H, W, C)``."""
        return to_uint8(self.decode_fn(quantized))

    @property
    def compiled(self) -> bool:
        """Whether encode and decode run torch.compile'd code (False without compile or after a fallback)."""
        functions = (self.encode_fn, self.decode_fn)
        return all(isinstance(fn, _CompiledOrEager) and fn.compiled is not None for fn in functions)


@contextlib.contextmanager
def session(
    model: MagvitTokenizer,
    device: str | torch.device,
    dtype: torch.dtype,
    batch_size: int = 1,
    *,
    mode: str = "optimized",
    compile: bool | str = False,
    memory_format: torch.memory_format | None = None,
    logger: logging.Logger | None = None,
) -> Iterator[Session]:
    """Prepare ``model`` for ``mode`` on ``device`` (in place) and hold the run's settings while the block runs.

    Inside the block: ``torch.inference_mode``, the precision (autocast in ``dtype`` on accelerators in optimized
    mode, else float32) and, on CUDA, ``torch.backends.cudnn.benchmark`` (on in optimized mode, off in reference
    mode; the previous value is restored on exit). ``compile=True`` (optimized mode only) wraps encode and decode in
    ``torch.compile`` with static shapes; if compiling fails, a warning is logged and they run eagerly. A string
    instead of True is torch.compile's ``mode`` (a knob for benchmarks: "reduce-overhead" adds CUDA graphs).
    ``memory_format`` overrides the default (channels-last 3D when compiled, else contiguous; module docstring), a
    knob for benchmarks.
    """
    logger = logger or logging.getLogger(__name__)
    if mode not in MODES:
        raise ValueError(f"tokenize mode must be one of {list(MODES)}, got {mode!r} (set tokenize.mode)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    optimized = mode == "optimized"
    if not optimized:
        if compile:
            raise ValueError(
                "tokenize: compile=True needs mode='optimized'; the reference mode runs eagerly, as the authors do "
                "(set tokenize.compile: false or tokenize.mode: optimized)"
            )
        unused = [f"dtype {dtype}"] * (dtype != torch.float32) + [f"batch_size {batch_size}"] * (batch_size != 1)
        if unused:
            logger.info("reference mode runs float32, one clip per pass; not used: %s", ", ".join(unused))
        dtype, batch_size = torch.float32, 1
    precision = autocast(device, dtype)
    if memory_format is None:
        memory_format = torch.channels_last_3d if compile else torch.contiguous_format
    model.to(device=device, memory_format=memory_format).eval()
    encode_fn, decode_fn = model.encode, model.decode
    if compile:
        compile_mode = None if compile is True else compile
        encode_fn = _CompiledOrEager(encode_fn, "encode", logger, compile_mode)
        decode_fn = _CompiledOrEager(decode_fn, "decode", logger, compile_mode)
    cudnn = _cudnn_benchmark(optimized) if device.type == "cuda" else contextlib.nullcontext()
    described = "float32" if isinstance(precision, contextlib.nullcontext) else f"autocast {dtype}"
    logger.info(
        "magvit tokenize: %s mode on %s, %s, %s, batch %d%s",
        mode,
        device,
        described,
        "channels-last 3D" if memory_format == torch.channels_last_3d else "contiguous",
        batch_size,
        (", torch.compile" + ("" if compile is True else f" ({compile})")) if compile else "",
    )
    with torch.inference_mode(), precision, cudnn:
        yield Session(device, batch_size, compile, memory_format, described, encode_fn, decode_fn)


class _CompiledOrEager:
    """``torch.compile(fn)``; if that fails, either when wrapping or at the first call (where compilation happens,
    e.g. no C compiler or Triton), logs a warning and runs ``fn`` eagerly from then on."""

    def __init__(self, fn: Callable, name: str, logger: logging.Logger, mode: str | None = None):
        self.fn, self.name, self.logger = fn, name, logger
        self.first_call_done = False
        try:
            self.compiled = torch.compile(fn, dynamic=False, mode=mode)
        except Exception as error:  # noqa: BLE001 - any failure to compile means: run eagerly
            self._fall_back(error)

    def __call__(self, *args):
        if self.compiled is None:
            return self.fn(*args)
        if self.first_call_done:
            return self.compiled(*args)
        try:
            result = self.compiled(*args)
        except torch.cuda.OutOfMemoryError:
            raise  # eager would run out of memory too: lower tokenize.batch_size
        except Exception as error:  # noqa: BLE001
            self._fall_back(error)
            return self.fn(*args)
        self.first_call_done = True
        return result

    def _fall_back(self, error: Exception) -> None:
        self.compiled = None
        first_line = (str(error).strip().splitlines() or [""])[0]
        self.logger.warning(
            "torch.compile of MagVit %s failed (%s: %s); running it eagerly (set tokenize.compile: false to skip)",
            self.name,
            type(error).__name__,
            first_line,
        )


@contextlib.contextmanager
def _cudnn_benchmark(enabled: bool) -> Iterator[None]:
    """Set ``torch.backends.cudnn.benchmark`` for the block only: other stages in the process keep their setting."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous
