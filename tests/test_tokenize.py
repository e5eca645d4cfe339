"""trajbench.tokenize on a tiny model: shapes, windows, determinism, batching; the shuffled control's encode-only
pass; optimized vs reference mode, the torch.compile wiring and fallback; smoke runs of the GPU benchmark scripts on
the CPU."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ROOT
from trajbench import controls
from trajbench.modeling_magvit import MagvitConfig, build_model, to_model_range, to_uint8
from trajbench.tokenize import (
    COMPILE_BREAK_EVEN_CLIPS,
    _cudnn_benchmark,
    autocast_dtype,
    resolve_compile,
    session,
    tokenize_videos,
)

# temporal compression 2, spatial 4: a 5-frame 8x8 clip has 3x2x2 tokens
CONFIG = MagvitConfig(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, z_channels=6, resolution=8)
SIGN_MARGIN = 1e-4


@pytest.fixture(scope="module")
def model():
    return build_model(CONFIG, seed=0)


@pytest.fixture(scope="module")
def videos():
    return np.random.default_rng(0).integers(0, 256, size=(3, 10, 8, 8, 3), dtype=np.uint8)


def run(model, videos, batch_size=2, window=None, **kwargs):
    return tokenize_videos(model, videos, batch_size, "cpu", torch.float32, window=window, **kwargs)


def direct(model, clips):
    """The model called on the clips in one batch, without tokenize_videos: (latent, indices, uint8 recon)."""
    with torch.inference_mode():
        latent, quantized, indices = model.encode(to_model_range(clips))
        return latent, indices.numpy(), to_uint8(model.decode(quantized)).numpy()


def assert_same_tokens(indices, expected, latent):
    """Equal wherever no latent channel sits within rounding distance of 0 (other batch shapes may round there)."""
    stable = (latent.abs() > SIGN_MARGIN).all(dim=1).numpy()
    assert stable.mean() > 0.9
    assert np.array_equal(indices[stable], expected[stable])


def test_shapes_dtypes_and_values_match_the_model(model, videos, caplog):
    clips = videos[:, :5]
    with caplog.at_level(logging.INFO):
        indices, recon = run(model, clips, logger=logging.getLogger("test.tokenize"))
    assert indices.dtype == np.int32 and indices.shape == (3, 3, 2, 2)
    assert recon.dtype == np.uint8 and recon.shape == clips.shape
    latent, want_indices, want_recon = direct(model, clips)
    assert_same_tokens(indices, want_indices, latent)
    assert np.abs(recon.astype(int) - want_recon).max() <= 1
    assert 0 <= indices.min() and indices.max() < CONFIG.codebook_size and len(np.unique(indices)) > 1
    assert "magvit tokenize: 3/3 clips" in caplog.text


def test_memmap_input_and_determinism(model, videos, tmp_path):
    np.save(tmp_path / "videos.npy", videos[:, :5])
    mapped = np.load(tmp_path / "videos.npy", mmap_mode="r")
    first, again = run(model, mapped), run(model, mapped)
    in_memory = run(model, np.array(mapped))
    for a, b, c in zip(first, again, in_memory):
        assert a.tobytes() == b.tobytes() == c.tobytes()


def test_windows_are_independent_clips(model, videos):
    indices, recon = run(model, videos, window=5)
    assert indices.shape == (3, 6, 2, 2) and recon.shape == videos.shape
    for w in range(2):
        part = videos[:, 5 * w : 5 * (w + 1)]
        latent, want_indices, want_recon = direct(model, part)
        assert_same_tokens(indices[:, 3 * w : 3 * (w + 1)], want_indices, latent)
        assert np.abs(recon[:, 5 * w : 5 * (w + 1)].astype(int) - want_recon).max() <= 1
    # the second window is not a continuation of the first: the whole 9-frame clip tokenizes differently
    latent, whole, _ = direct(model, videos[:, :9])
    assert not np.array_equal(indices[:, 3:5], whole[:, 3:5])


def test_batch_size_does_not_change_tokens(model, videos):
    one, recon_one = run(model, videos, batch_size=1, window=5)
    three, recon_three = run(model, videos, batch_size=3, window=5)
    latent = direct(model, videos.reshape(6, 5, 8, 8, 3))[0]
    assert_same_tokens(one.reshape(6, 3, 2, 2), three.reshape(6, 3, 2, 2), latent)
    assert np.abs(recon_one.astype(int) - recon_three).max() <= 1


def test_shards_of_whole_batches_give_the_same_bytes(model, videos):
    whole = run(model, videos, batch_size=2, window=5)
    parts = [run(model, videos[:2], batch_size=2, window=5), run(model, videos[2:], batch_size=2, window=5)]
    for k in range(2):
        assert np.concatenate([part[k] for part in parts]).tobytes() == whole[k].tobytes()


def shuffled_orders(n_clips, frames, seed=7):
    """Frame orders as the tokenize job reads them: from a labels table's shuffled_frames column."""
    column = [controls.format_order(controls.frame_permutation(seed, i, frames)) for i in range(n_clips)]
    return controls.read_orders(pd.DataFrame({controls.COLUMN: column}), frames)


def test_shuffled_clips_encode_like_the_ordered_path_on_shuffled_frames(model, videos, monkeypatch):
    orders = shuffled_orders(3, 10)
    ordered, _ = run(model, videos, window=5)
    expected, _ = run(model, controls.shuffle_frames(videos, orders), window=5)

    def no_decode(*args):
        raise AssertionError("decode=False must not decode")

    monkeypatch.setattr(model, "decode", no_decode)
    shuffled, reconstructions = run(model, controls.ShuffledVideos(videos, orders), window=5, decode=False)
    assert reconstructions is None
    assert shuffled.dtype == np.int32 and shuffled.tobytes() == expected.tobytes()
    # Other frames at most positions: most tokens change (62 of the 72 on these random pixels).
    assert (shuffled != ordered).mean() > 0.75
    # Shards of whole batches, each with its own slice of the orders, give the same bytes.
    parts = [run(model, controls.ShuffledVideos(videos[a:b], orders[a:b]), window=5, decode=False)[0]
             for a, b in [(0, 2), (2, 3)]]
    assert np.concatenate(parts).tobytes() == shuffled.tobytes()


def test_invalid_requests(model, videos):
    with pytest.raises(ValueError, match="1 \\+ k\\*2 frames .* got 4"):
        run(model, videos[:, :8], window=4)
    with pytest.raises(ValueError, match=r"10 frames are not a whole number of 3-frame windows \(1 frames left"):
        run(model, videos, window=3)
    with pytest.raises(ValueError, match="uint8 videos"):
        run(model, videos.astype(np.float32))
    with pytest.raises(ValueError, match="float32 on the CPU; got dtype torch.bfloat16"):
        tokenize_videos(model, videos[:, :5], 2, "cpu", torch.bfloat16)


def test_autocast_dtype_follows_tokenize_dtype_on_accelerators_only():
    assert autocast_dtype("float16", "cuda", torch.bfloat16) == torch.float16
    assert autocast_dtype("auto", "cuda:0", torch.bfloat16) == torch.bfloat16
    assert autocast_dtype("float32", "cuda", torch.bfloat16) == torch.float32
    assert autocast_dtype("float16", "cpu", torch.float32) == torch.float32
    with pytest.raises(ValueError, match=r"tokenize.dtype must be one of .* got 'fp8'"):
        autocast_dtype("fp8", "cuda", torch.bfloat16)


def test_a_non_finite_latent_stops_with_the_dtype_remedy(model, videos, monkeypatch):
    encode = model.encode

    def overflowing(video):
        latent, quantized, indices = encode(video)
        return latent.masked_fill(torch.zeros_like(latent, dtype=torch.bool).index_fill(0, torch.tensor([0]), True),
                                  float("inf")), quantized, indices

    monkeypatch.setattr(model, "encode", overflowing)
    with pytest.raises(FloatingPointError, match="non-finite values under float32.*tokenize.dtype: bfloat16"):
        run(model, videos[:, :5], batch_size=2)


# --- modes: optimized vs reference, torch.compile wiring and fallback, cuDNN flag -----------------------------------


class EncoderSpy:
    """Records each encoder input: (batch, channels-last?) and whether the first conv's weight is channels-last."""

    def __init__(self, model):
        self.calls = []
        self.handle = model.encoder.register_forward_pre_hook(self.record)
        self.weight = model.encoder.conv_in.conv_1.weight

    def record(self, module, args):
        (video,) = args
        last = torch.channels_last_3d
        self.calls.append((len(video), video.is_contiguous(memory_format=last) and not video.is_contiguous(),
                           self.weight.is_contiguous(memory_format=last) and not self.weight.is_contiguous()))

    def take(self):
        calls, self.calls = self.calls, []
        return calls


@pytest.fixture
def spy(model):
    spy = EncoderSpy(model)
    yield spy
    spy.handle.remove()


def test_optimized_matches_reference_on_cpu(model, videos, spy):
    latent = direct(model, videos.reshape(6, 5, 8, 8, 3))[0]
    # No latent value within rounding distance of 0, so every token must agree, not only the stable ones.
    assert latent.abs().min() > SIGN_MARGIN
    spy.take()  # forget that direct call
    ref_indices, ref_recon = run(model, videos, batch_size=3, window=5, mode="reference")
    # reference: one clip (its 2 windows) per pass whatever batch_size says, contiguous inputs and weights
    assert spy.take() == [(2, False, False)] * 3
    indices, recon = run(model, videos, batch_size=3, window=5, mode="optimized")
    # optimized, eager: 3 clips per pass, contiguous (channels-last only under torch.compile)
    assert spy.take() == [(6, False, False)]
    assert indices.dtype == ref_indices.dtype and np.array_equal(indices, ref_indices)
    assert np.abs(recon.astype(int) - ref_recon).max() <= 1
    # and the reference is the model itself, clip by clip
    for clip in range(3):
        _, want_indices, want_recon = direct(model, videos[clip].reshape(2, 5, 8, 8, 3))
        assert np.array_equal(ref_indices[clip], want_indices.reshape(6, 2, 2))
        assert np.abs(ref_recon[clip].astype(int) - want_recon.reshape(10, 8, 8, 3)).max() <= 1


def test_session_memory_format_override(model, videos, spy):
    clips = torch.from_numpy(videos[:2, :5].copy())
    with tokenize_session(model, memory_format=torch.channels_last_3d) as prepared:
        quantized, indices = prepared.encode(clips)
        recon = prepared.decode(quantized)
    assert spy.take() == [(2, True, True)]
    want = run(model, videos[:2, :5], batch_size=2)
    assert spy.take() == [(2, False, False)]
    latent = direct(model, videos[:2, :5])[0]
    assert_same_tokens(indices.numpy(), want[0], latent)
    assert np.abs(recon.numpy().astype(int) - want[1]).max() <= 1


def test_reference_mode_ignores_dtype_and_batch_size(model, videos, caplog):
    want = run(model, videos[:, :5], batch_size=1, mode="reference")
    with caplog.at_level(logging.INFO, logger="trajbench.tokenize"):
        got = tokenize_videos(model, videos[:, :5], 3, "cpu", torch.bfloat16, mode="reference")
    for a, b in zip(want, got):
        assert a.tobytes() == b.tobytes()
    assert "reference mode runs float32, one clip per pass; not used: dtype torch.bfloat16, batch_size 3" in caplog.text


def test_invalid_modes(model, videos):
    with pytest.raises(ValueError, match=r"tokenize mode must be one of \['optimized', 'reference'\], got 'fast'"):
        run(model, videos[:, :5], mode="fast")
    with pytest.raises(ValueError, match="compile=True needs mode='optimized'"):
        run(model, videos[:, :5], mode="reference", compile=True)


def fake_compile(behaviour, calls):
    """A stand-in for torch.compile (the real one needs minutes and a C compiler on the CPU)."""

    def fake(fn, **kwargs):
        calls.append(kwargs)
        if behaviour == "fails when wrapping":
            raise RuntimeError("Python 3.99 is not supported by torch.compile")
        if behaviour == "fails at the first call":
            def broken(*args):
                raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found\nmore detail")
            return broken
        if behaviour == "runs out of memory":
            def oom(*args):
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
            return oom
        return fn

    return fake


def test_compile_pads_the_last_batch_to_one_static_shape(model, videos, spy, monkeypatch):
    eager = run(model, videos[:, :5], batch_size=2)
    assert spy.take() == [(2, False, False), (1, False, False)]
    calls = []
    monkeypatch.setattr(torch, "compile", fake_compile("works", calls))
    compiled = run(model, videos[:, :5], batch_size=2, compile=True)
    assert calls == [{"dynamic": False, "mode": None}] * 2  # encode and decode, torch's default mode
    assert spy.take() == [(2, True, True), (2, True, True)]  # the last clip padded with a blank one
    latent = direct(model, videos[:, :5])[0]
    assert_same_tokens(compiled[0], eager[0], latent)
    assert np.abs(compiled[1].astype(int) - eager[1]).max() <= 1
    with tokenize_session(model, compile=True) as prepared:
        assert prepared.compiled and prepared.fixed_batch


def test_a_compile_mode_reaches_torch_compile(model, videos, monkeypatch, caplog):
    """``compile="reduce-overhead"`` (CUDA graphs; benchmarks/magvit_gpu.py --compile-modes) is torch.compile's mode."""
    calls = []
    monkeypatch.setattr(torch, "compile", fake_compile("works", calls))
    with caplog.at_level(logging.INFO, logger="trajbench.tokenize"):
        run(model, videos[:1, :5], batch_size=1, compile="reduce-overhead")
    assert calls == [{"dynamic": False, "mode": "reduce-overhead"}] * 2
    assert ", torch.compile (reduce-overhead)" in caplog.text


@pytest.mark.parametrize("behaviour", ["fails when wrapping", "fails at the first call"])
def test_compile_failure_falls_back_to_eager(model, videos, monkeypatch, caplog, behaviour):
    eager = run(model, videos[:, :5], batch_size=3)
    monkeypatch.setattr(torch, "compile", fake_compile(behaviour, []))
    with caplog.at_level(logging.WARNING, logger="trajbench.tokenize"):
        fallback = run(model, videos[:, :5], batch_size=3, compile=True)
    for a, b in zip(eager, fallback):
        assert a.tobytes() == b.tobytes()
    reason = "Python 3.99 is not supported" if behaviour == "fails when wrapping" else "InvalidCxxCompiler: no working"
    for part in ("encode", "decode"):
        assert f"torch.compile of MagVit {part} failed (RuntimeError: {reason}" in caplog.text
    assert "more detail" not in caplog.text and "running it eagerly" in caplog.text
    with tokenize_session(model, compile=True) as prepared:
        prepared.decode(prepared.encode(torch.from_numpy(videos[:1, :5].copy()))[0])
        assert not prepared.compiled


def test_compiled_out_of_memory_is_not_hidden(model, videos, monkeypatch):
    monkeypatch.setattr(torch, "compile", fake_compile("runs out of memory", []))
    with pytest.raises(torch.cuda.OutOfMemoryError, match="Tried to allocate"):
        run(model, videos[:, :5], compile=True)


# --- tokenize.compile: auto ------------------------------------------------------------------------------------------


def test_compile_break_even_follows_the_h200_measurement():
    # 89 s of compiling against (1/24.30 - 1/35.25) + (1/57.28 - 1/86.10) s saved per clip (benchmarks/README.md)
    assert COMPILE_BREAK_EVEN_CLIPS == pytest.approx(4778.0, abs=0.5)


@pytest.mark.parametrize(
    "setting, device, clips, mode, expected, reason",
    [
        ("auto", "cuda", 4777, "optimized", False, "auto: 4777 clips x passes encode_decode+encode would save about 89 s"),
        ("auto", "cuda:0", 4779, "optimized", True, "auto: 4779 clips x passes encode_decode+encode would save about 89 s"),
        ("auto", "cuda", 576, "optimized", False, "would save about 11 s against 89 s to compile"),  # the real config
        ("auto", "cpu", 10**6, "optimized", False, "auto: never on the CPU"),
        ("auto", "cuda", 10**6, "reference", False, "auto: reference mode runs eagerly"),
        (True, "cpu", 1, "optimized", True, "tokenize.compile: true"),
        (True, "cuda", 1, "optimized", True, "tokenize.compile: true"),
        (False, "cuda", 10**6, "optimized", False, "tokenize.compile: false"),
    ],
)
def test_resolve_compile(setting, device, clips, mode, expected, reason, caplog):
    with caplog.at_level(logging.INFO, logger="test.compile"):
        compiled, why = resolve_compile(setting, device, clips, mode=mode, logger=logging.getLogger("test.compile"))
    assert compiled is expected
    assert reason in why
    assert f"magvit torch.compile {'on' if expected else 'off'} ({why})" in caplog.text


def test_resolve_compile_counts_the_passes_a_job_runs():
    # encode alone saves 5.84 ms a clip: 89 s / 5.84 ms = 15,230 clips
    assert resolve_compile("auto", "cuda", 15_000, passes=("encode",))[0] is False
    assert resolve_compile("auto", "cuda", 15_500, passes=("encode",))[0] is True
    assert resolve_compile("auto", "cuda", 7_000, passes=("encode_decode",))[0] is True
    with pytest.raises(ValueError, match=r"unknown MagVit passes \['decode'\]"):
        resolve_compile("auto", "cuda", 1, passes=("decode",))


@pytest.mark.parametrize("setting", ["yes", "true", 1, None])
def test_resolve_compile_refuses_other_settings(setting):
    with pytest.raises(ValueError, match=r"tokenize.compile must be true, false or 'auto', got"):
        resolve_compile(setting, "cuda", 10)


def test_schema_takes_true_false_and_auto_for_compile(root):
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    schema = str(root / "workflow/schemas/config.schema.yaml")
    for value in (True, False, "auto"):
        cfg = {"models": {}, "tokenize": {"compile": value}}
        validate(cfg, schema)
        assert cfg["tokenize"]["compile"] == value
    defaults = {"models": {}}
    validate(defaults, schema)
    assert defaults["tokenize"]["compile"] == "auto"
    with pytest.raises(WorkflowError, match="'yes' is not one of"):
        validate({"models": {}, "tokenize": {"compile": "yes"}}, schema)


def test_cudnn_benchmark_is_scoped():
    previous = torch.backends.cudnn.benchmark
    try:
        for outer in (False, True):
            torch.backends.cudnn.benchmark = outer
            for inner in (False, True):
                with _cudnn_benchmark(inner):
                    assert torch.backends.cudnn.benchmark is inner
                assert torch.backends.cudnn.benchmark is outer
    finally:
        torch.backends.cudnn.benchmark = previous


def tokenize_session(model, **kwargs):
    return session(model, "cpu", torch.float32, 2, **kwargs)


# --- the GPU benchmark scripts, smoke-run on the CPU so that they cannot rot ------------------------------------------


def smoke_run(script, tmp_path):
    out = tmp_path / f"{script}.json"
    # One thread: two torch threads on a 2-core machine that is busy with other work run many times slower.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, f"benchmarks/{script}.py", "--quick", "--device", "cpu", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_magvit_gpu_benchmark_smoke_run(tmp_path):
    stdout, result = smoke_run("magvit_gpu", tmp_path)
    rows = result["rows"]
    assert [(row["mode"], row["batch"], row["memory_format"], row["status"]) for row in rows] == [
        ("reference", 1, "contiguous_format", "ok"),
        ("optimized", 2, "contiguous_format", "ok"),
        ("optimized", 2, "channels_last_3d", "ok"),  # the layout ablation
        ("optimized", 1, "contiguous_format", "ok"),
    ]
    flop = result["tflop_per_clip"]
    assert 0 < flop["encode"] < flop["encode_decode"]
    assert result["matmul_peak"]["tflops"] > 0 and result["matmul_peak"]["dtype"] == "float32"
    for row in rows:
        assert row["encode_clips_per_s"] > 0 and row["encode_decode_clips_per_s"] > 0
        assert row["encode_decode_tflops"] == pytest.approx(row["encode_decode_clips_per_s"] * flop["encode_decode"])
        # on the CPU both modes compute in float32: the same tokens, reconstructions within a uint8 level
        assert row["token_agreement"] >= 0.999 and abs(row["psnr_minus_reference_db"]) < 0.01
    assert result["summary"]["speedup"] > 0
    assert "| reference | False | 1 | float32 |" in stdout and "| optimized | False | 2 | float32 |" in stdout


def test_features_gpu_benchmark_smoke_run(tmp_path):
    stdout, result = smoke_run("features_gpu", tmp_path)
    rows = {(row["network"], row["attention"], row["batch"]): row for row in result["rows"]}
    for network in ("videomae-base", "clip-vit-b32"):
        processor = next(row for key, row in rows.items() if key[0] == network and key[1].startswith("processor"))
        assert processor["clips_per_s"] > 0
        eager, sdpa = rows[(network, "eager", 2)], rows[(network, "sdpa", 2)]
        assert eager["status"] == sdpa["status"] == "ok" and eager["clips_per_s"] > 0 and sdpa["clips_per_s"] > 0
        assert sdpa["max_rel_diff_vs_eager"] < 1e-4  # float32: the same function, another kernel
        assert rows[(network, "flash_attention_2", None)]["status"].startswith("unavailable: ")  # no flash on a CPU
    assert "| videomae-base | sdpa | 2 | float32 |" in stdout
