"""Throughput of the full-size MagVit tokenizer on one GPU: the authors' reference loop against the optimized path.

Model: ``build_model(MagvitConfig.full(), seed=0)`` (random weights; speed does not depend on them) or, with
``--checkpoint``, the real file. Clips: synthetic trajectory videos rendered with ``trajbench.render`` as in
config/config.yaml (17 x 128 x 128), one per class (--quick: 3 tiny ones), repeated to fill a batch.

Rows (each in its own ``trajbench.tokenize.session``):

- reference: float32, eager, batch 1, contiguous memory, cuDNN autotuning off;
- optimized: autocast ``--dtype`` (float16, as ``tokenize.dtype``), the mode's memory format (contiguous when eager),
  cuDNN autotuning, batch sizes 1, 2, 4, ... up to ``--max-batch``; the sweep stops at the first out-of-memory (or
  other) error;
- at ``--compile-batch`` (8, the workflow's batch), right after its eager optimized row and before the rest of the
  sweep: eager in channels-last 3D memory (does the layout pay without compile?), and optimized + torch.compile
  (channels-last; its first call, the compilation, is reported apart), once per ``--compile-modes`` entry
  (torch.compile's mode: "default", or "reduce-overhead", which adds CUDA graphs, or "max-autotune").

Each row: clips/s for encode alone and for encode + decode (inputs already on the device; tokens and
reconstructions copied back to the host, as the workflow does), achieved TFLOP/s = clips/s x the FLOP count of
``estimate_tflop``, % of the bfloat16 matmul peak measured in the same run on the same card (a loop of large
matmuls timed with CUDA events), peak GPU memory (``torch.cuda.max_memory_allocated``), and against the reference on
the same clips: the fraction of identical token indices and the PSNR (reconstruction vs input) difference.

    PYTHONPATH=src python benchmarks/magvit_gpu.py --json magvit_gpu.json     # one GPU, < 5 min on an H100
    PYTHONPATH=src python benchmarks/magvit_gpu.py --quick --device cpu      # smoke run: tiny model, seconds

``--json`` is rewritten after every row, so a run stopped by a time limit keeps what it measured. Rows that would
start after ``--budget-s`` seconds are skipped (a compilation already running is not interrupted).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from trajbench import io
from trajbench.checkpoint_magvit import load_checkpoint
from trajbench.metrics import psnr_from_mse_uint8
from trajbench.modeling_magvit import MagvitConfig, MagvitTokenizer, build_model, estimate_tflop
from trajbench.render import DatasetConfig, render_video
from trajbench.tokenize import session

CLASSES = (
    "linear", "circular", "parabolic", "sinusoidal", "zigzag", "spiral", "figure_eight", "random_walk", "bouncing"
)
# The real run's dataset (config/config.yaml) and a tiny one for --quick.
FULL_DATA = dict(frames=17, size=128, object_radius=(3.0, 7.0), noise_std=2.0, distractors=1, camera_jitter=0.3)
QUICK_DATA = dict(frames=5, size=16, object_radius=(1.0, 1.5), extent=(0.3, 0.5), noise_std=2.0)  # fits 16 px
QUICK_MODEL = MagvitConfig(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, z_channels=6, resolution=16)
MATMUL_SIZES = {"full": (4096, 8192, 16384), "quick": (128,)}


def benchmark_device(name: str) -> torch.device:
    """The device to measure on; a clear exit where CUDA was asked for and is not there."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch.cuda.is_available() is False; for a smoke run: --quick --device cpu")
    return device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="float16", choices=("float16", "bfloat16"), help="optimized mode, CUDA")
    parser.add_argument("--max-batch", type=int, default=32, help="largest batch of the sweep (powers of two)")
    parser.add_argument("--min-seconds", type=float, default=1.5, help="time each row for at least this long")
    parser.add_argument("--budget-s", type=float, default=270.0, help="start no new row after this many seconds")
    parser.add_argument("--compile-batch", type=int, default=8, help="batch of the torch.compile row (measured "
                        "first, eager and compiled; tokenize.batch_size of config/config.yaml)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    parser.add_argument("--compile-modes", nargs="+", default=["default"],
                        choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
                        help="torch.compile modes of the compile rows (reduce-overhead: CUDA graphs)")
    parser.add_argument("--checkpoint", type=Path, help="real weights (video_128_262144.ckpt) instead of random")
    parser.add_argument("--quick", action="store_true", help="tiny model and clips, batches 1-2: a smoke run")
    parser.add_argument("--json", type=Path, help="write every figure here (rewritten after each row)")
    args = parser.parse_args()
    started = time.perf_counter()
    device = benchmark_device(args.device)
    on_cuda = device.type == "cuda"
    # Optimized mode computes in float32 on the CPU (trajbench.tokenize), so the peak is measured in float32 there.
    dtype = getattr(torch, args.dtype) if on_cuda else torch.float32
    config = QUICK_MODEL if args.quick else MagvitConfig.full()
    data = QUICK_DATA if args.quick else FULL_DATA
    max_batch = 2 if args.quick else args.max_batch
    min_seconds = 0.0 if args.quick else args.min_seconds  # --quick: two timed calls per row

    results: dict = {"command": " ".join([sys.executable, *sys.argv]), "environment": environment(device)}
    save = (lambda: io.write_json(args.json, results)) if args.json else (lambda: None)
    print_environment(results["environment"])

    clips = render_clips(data, 3 if args.quick else len(CLASSES))
    frames, height, width = clips.shape[1:4]
    flop = {"encode": count_encode_tflop(config, frames, height, width)}
    flop["encode_decode"] = estimate_tflop(config, frames, height, width)
    results.update(config=config.to_dict(), clip_shape=list(clips.shape[1:]), tflop_per_clip=flop)
    results["matmul_peak"] = matmul_peak(device, dtype, MATMUL_SIZES["quick" if args.quick else "full"])
    peak = results["matmul_peak"]["tflops"]
    results["floor_ms_per_clip"] = 1e3 * flop["encode_decode"] / peak
    print(f"{dtype} matmul peak: {peak:.1f} TFLOP/s; encode {flop['encode']:.2f} + decode "
          f"{flop['encode_decode'] - flop['encode']:.2f} TFLOP per clip; floor {results['floor_ms_per_clip']:.1f} "
          "ms/clip at that peak")

    start = time.perf_counter()
    model = load_checkpoint(args.checkpoint, config) if args.checkpoint else build_model(config, seed=0)
    results["weights"] = str(args.checkpoint) if args.checkpoint else "random (build_model seed 0)"
    results["model_build_s"] = time.perf_counter() - start
    rows: list[dict] = []
    results["rows"] = rows
    reference_outputs: dict = {}  # tokens and reconstructions of the reference row, kept out of the JSON
    save()

    def measure(mode: str, batch: int, compile: bool | str = False, memory_format: torch.memory_format | None = None):
        if time.perf_counter() - started > args.budget_s:
            status = f"skipped: past --budget-s {args.budget_s}"
            row = {"mode": mode, "compile": compile, "batch": batch, "status": status}
        else:
            print(f"... {mode} batch {batch}{' compiled' if compile else ''} {memory_format or ''}", flush=True)
            row = measure_row(model, clips, device, dtype, (mode, batch, compile, memory_format), min_seconds, flop,
                              peak)
        if mode == "reference":
            reference_outputs.update(row.get("outputs") or {})
        add_accuracy(row, reference_outputs, clips)
        rows.append(row)
        print_row(row)
        save()
        return row

    print_header()
    reference = measure("reference", 1)
    # The workflow's batch size first, eager then compiled (the compilation is the slow, uncertain step), then the
    # rest of the sweep while the time budget lasts.
    first = min(args.compile_batch, max_batch)
    if measure("optimized", first)["status"] == "ok":
        measure("optimized", first, memory_format=torch.channels_last_3d)  # the layout compile prefers, eagerly
        for compile_mode in [] if args.quick or args.no_compile else args.compile_modes:
            measure("optimized", first, compile=True if compile_mode == "default" else compile_mode)
    for batch in [2**k for k in range(int(math.log2(max_batch)) + 1)]:
        if batch != first and measure("optimized", batch)["status"] != "ok":
            break
    results["summary"] = summary(reference, rows)
    results["total_s"] = time.perf_counter() - started
    save()
    print_summary(results["summary"], results["total_s"])


def environment(device: torch.device) -> dict:
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host_cpus": os.cpu_count(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            gpu=props.name,
            gpu_memory_gb=props.total_memory / 1e9,
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            # The reference runs with torch's defaults: cuDNN convolutions may use TF32, matmuls may not.
            cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
            matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
        )
    else:
        env.update(cpu=platform.processor() or platform.machine(), torch_threads=torch.get_num_threads())
    return env


def print_environment(env: dict) -> None:
    print("; ".join(f"{key} {value}" for key, value in env.items()))


def render_clips(data: dict, count: int = len(CLASSES)) -> np.ndarray:
    """One rendered clip of each of the first ``count`` classes, uint8 (count, T, H, W, 3)."""
    cfg = DatasetConfig(classes=CLASSES[:count], videos_per_class=1, seed=0, **data)
    return np.stack([render_video(cfg, index).frames for index in range(count)])


def count_encode_tflop(config: MagvitConfig, frames: int, height: int, width: int) -> float:
    """Encoder cost of one clip in TFLOP, counted on the meta device like ``estimate_tflop`` (which counts
    encode + decode)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = MagvitTokenizer(config)
        video = torch.empty(1, config.in_channels, frames, height, width)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.encode(video)
    return counter.get_total_flops() / 1e12


def elapsed_s(fn, iterations: int, device: torch.device) -> float:
    """Seconds for ``iterations`` calls of ``fn``: CUDA events on the GPU, the wall clock elsewhere."""
    if device.type != "cuda":
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        return time.perf_counter() - start
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(iterations):
        fn()
    end.record()
    end.synchronize()
    return begin.elapsed_time(end) / 1e3


def matmul_peak(device: torch.device, dtype: torch.dtype, sizes: tuple[int, ...]) -> dict:
    """Best TFLOP/s of square ``dtype`` matmuls (2 n^3 FLOP each) over ``sizes``: the card's practical peak."""
    by_size = {}
    for n in sizes:
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        out = torch.empty(n, n, device=device, dtype=dtype)

        def step():
            torch.matmul(a, b, out=out)

        elapsed_s(step, 3, device)  # warm-up: cuBLAS heuristics, clocks
        iterations = max(3, math.ceil(0.3 / max(elapsed_s(step, 1, device), 1e-6)))
        by_size[n] = 2 * n**3 * iterations / elapsed_s(step, iterations, device) / 1e12
        del a, b, out
    return {"dtype": str(dtype).removeprefix("torch."), "tflops": max(by_size.values()), "by_size": by_size}


def measure_row(model, clips, device, dtype, variant, min_seconds, flop, peak) -> dict:
    """One session of ``variant`` = (mode, batch, compile, memory_format or None for the mode's own)."""
    mode, batch, compile, memory_format = variant
    row: dict = {"mode": mode, "compile": compile, "batch": batch, "dtype": "float32"}
    on_cuda = device.type == "cuda"
    if on_cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        with session(model, device, dtype, batch, mode=mode, compile=compile, memory_format=memory_format) as run:
            row["memory_format"] = str(run.memory_format).removeprefix("torch.")
            if mode == "optimized" and device.type != "cpu":
                row["dtype"] = str(dtype).removeprefix("torch.")
            # The rendered clips repeated to whole batches; on the device before timing starts.
            passes = math.ceil(len(clips) / batch)
            tiled = torch.from_numpy(np.resize(clips, (passes * batch, *clips.shape[1:]))).to(device)
            inputs = tiled[:batch]

            def encode():
                return run.encode(inputs)[1].cpu()

            def encode_decode(batch_of_clips=inputs):
                quantized, tokens = run.encode(batch_of_clips)
                return tokens.cpu(), run.decode(quantized).cpu()

            start = time.perf_counter()
            encode_decode()  # compiles (torch.compile) and autotunes (cuDNN) for this shape
            row["first_call_s"] = time.perf_counter() - start
            encode_decode()
            row["compiled"] = run.compiled
            for name, fn, tflop in (("encode", encode, flop["encode"]),
                                    ("encode_decode", encode_decode, flop["encode_decode"])):
                iterations = max(2, math.ceil(min_seconds / max(elapsed_s(fn, 1, device), 1e-6)))
                clips_per_s = batch * iterations / elapsed_s(fn, iterations, device)
                row[f"{name}_clips_per_s"] = clips_per_s
                row[f"{name}_tflops"] = clips_per_s * tflop
                row[f"{name}_percent_of_peak"] = 100 * clips_per_s * tflop / peak
            row["encode_decode_ms_per_clip"] = 1e3 / row["encode_decode_clips_per_s"]
            outputs = [encode_decode(part) for part in tiled.split(batch)]  # every clip, in the timed batch shape
            row["outputs"] = {name: torch.cat(parts)[: len(clips)].numpy() for name, parts in
                              zip(("tokens", "reconstructions"), zip(*outputs))}
            row["status"] = "ok"
    except RuntimeError as error:  # torch.cuda.OutOfMemoryError included
        oom = isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error)
        row["status"] = "out of memory" if oom else f"error: {type(error).__name__}: {str(error).splitlines()[0]}"
    if on_cuda:
        row["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
    gc.collect()
    return row


def add_accuracy(row: dict, reference: dict, clips: np.ndarray) -> None:
    """Token agreement and PSNR against the reference outputs of the same clips (the reference row: itself)."""
    outputs = row.pop("outputs", None)
    if outputs is None or not reference:
        return
    tokens, recon = outputs["tokens"], outputs["reconstructions"]
    row["token_agreement"] = float((tokens == reference["tokens"]).mean())
    row["psnr_db"] = psnr(recon, clips)
    row["psnr_minus_reference_db"] = row["psnr_db"] - psnr(reference["reconstructions"], clips)
    between = psnr(recon, reference["reconstructions"])
    row["psnr_vs_reference_recon_db"] = None if math.isinf(between) else between  # None: identical (JSON has no inf)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR over all the clips together, by the workflow's own formula (trajbench.metrics)."""
    return psnr_from_mse_uint8(float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


COLUMNS = (  # header, key, format
    ("mode", "mode", "{}"),
    ("compile", "compile", "{}"),
    ("batch", "batch", "{}"),
    ("dtype", "dtype", "{}"),
    ("memory", "memory_format", "{}"),
    ("encode clips/s", "encode_clips_per_s", "{:.2f}"),
    ("enc+dec clips/s", "encode_decode_clips_per_s", "{:.2f}"),
    ("ms/clip", "encode_decode_ms_per_clip", "{:.1f}"),
    ("enc+dec TFLOP/s", "encode_decode_tflops", "{:.1f}"),
    ("% of peak", "encode_decode_percent_of_peak", "{:.1f}"),
    ("peak mem GB", "peak_memory_gb", "{:.1f}"),
    ("first call s", "first_call_s", "{:.1f}"),
    ("token agreement", "token_agreement", "{:.5f}"),
    ("dPSNR dB", "psnr_minus_reference_db", "{:+.3f}"),
    ("status", "status", "{}"),
)


def print_header(columns=COLUMNS) -> None:
    print("| " + " | ".join(header for header, _, _ in columns) + " |")
    print("|" + "---|" * len(columns))


def print_row(row: dict, columns=COLUMNS) -> None:
    """A markdown table row; n/a where the row has no value."""
    cells = [fmt.format(row[key]) if row.get(key) is not None else "n/a" for _, key, fmt in columns]
    print("| " + " | ".join(cells) + " |", flush=True)


def summary(reference: dict, rows: list[dict]) -> dict:
    done = [row for row in rows if row["status"] == "ok" and row["mode"] == "optimized"]
    if reference["status"] != "ok" or not done:
        return {}
    best = max(done, key=lambda row: row["encode_decode_clips_per_s"])
    return {
        "reference_clips_per_s": reference["encode_decode_clips_per_s"],
        "best": {key: best.get(key) for key in ("batch", "compile", "compiled", "memory_format",
                                                "encode_decode_clips_per_s", "encode_decode_percent_of_peak",
                                                "token_agreement")},
        "speedup": best["encode_decode_clips_per_s"] / reference["encode_decode_clips_per_s"],
    }


def print_summary(result: dict, total_s: float) -> None:
    if result:
        best = result["best"]
        print(f"best: batch {best['batch']}{' compiled' if best['compiled'] else ''} {best['memory_format']}, "
              f"{best['encode_decode_clips_per_s']:.2f} clips/s encode+decode = {result['speedup']:.1f}x the "
              f"reference ({result['reference_clips_per_s']:.2f} clips/s), "
              f"{best['encode_decode_percent_of_peak']:.1f}% of the matmul peak")
    print(f"total {total_s:.0f} s")


if __name__ == "__main__":
    main()
