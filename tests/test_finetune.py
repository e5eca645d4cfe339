"""trajbench.finetune on a tiny MagVit: the LFQ losses against brute force, training that learns, the checkpoint round
trip, determinism, resuming after an interruption, and config errors."""

from __future__ import annotations

import dataclasses
import json
import logging
import math

import numpy as np
import pandas as pd
import pytest
import torch

from trajbench import finetune, render
from trajbench.checkpoint_magvit import load_checkpoint, save_checkpoint
from trajbench.finetune import FinetuneConfig
from trajbench.modeling_magvit import MagvitConfig, build_model, to_model_range, to_uint8

# spatial compression 2, no temporal compression: a 5-frame 8x8 clip has 5x4x4 positions of 6 bits
ARCH = MagvitConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, z_channels=6, resolution=8)
# Short runs for the determinism and resume tests; the history logs steps 1, 2, 4, 6, 7.
SHORT = FinetuneConfig(steps=7, batch_size=2, learning_rate=2e-3, warmup_steps=2, ema_decay=0.9, log_every=2,
                       checkpoint_every=0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny convolutions run faster on one thread, and the 2-core machine is shared with other test runs.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def videos():
    # A path of up to 2 pixels, so that a disk of 1.5 pixels moves inside the 8-pixel frame.
    cfg = render.DatasetConfig(classes=("linear", "circular", "zigzag"), videos_per_class=4, frames=5, size=8,
                               seed=3, object_radius=(1.0, 1.5), extent=(0.15, 0.25))
    return np.stack([render.render_video(cfg, i).frames for i in range(cfg.num_videos)])


def run(videos, config=SHORT, **kwargs):
    return finetune.train(build_model(ARCH, seed=0), videos, config, device="cpu", dtype=torch.float32,
                          **kwargs)


def assert_same_run(a, b):
    for name in ("raw_state", "ema_state"):
        first, second = getattr(a, name), getattr(b, name)
        assert first.keys() == second.keys()
        assert all(torch.equal(first[key], second[key]) for key in first), name
    assert a.ema_num_updates == b.ema_num_updates
    columns = [c for c in a.history.columns if c not in finetune.TIMING_COLUMNS]
    pd.testing.assert_frame_equal(a.history[columns], b.history[columns], check_exact=True)


@pytest.fixture(scope="module")
def trained(videos):
    config = FinetuneConfig(steps=30, batch_size=4, learning_rate=3e-3, warmup_steps=3, ema_decay=0.9, log_every=5,
                            checkpoint_every=0)
    return run(videos, config)


# ---------------------------------------------------------------------------------------------------------------------
# LFQ losses


def brute_force(latent: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample and codebook entropy (nats) from the full softmax over all 2^C codes of -||z - c||^2 / T."""
    n_bits = latent.shape[1]
    codes = torch.tensor([[1.0 if (j >> k) & 1 else -1.0 for k in range(n_bits)] for j in range(2**n_bits)],
                         dtype=torch.float64)
    z = latent.double().movedim(1, -1).reshape(-1, n_bits)
    probs = torch.softmax(-((z[:, None, :] - codes[None]) ** 2).sum(-1) / temperature, dim=-1)
    per_sample = -(probs * probs.log()).sum(-1).mean()
    avg = probs.mean(0)
    return per_sample, -(avg * avg.log()).sum()


@pytest.mark.parametrize("n_bits", [4, 5, 6])
def test_entropies_equal_the_softmax_over_all_codes(n_bits):
    latent = torch.randn(2, n_bits, 3, 2, 2, generator=torch.Generator().manual_seed(n_bits)) * 0.5
    temperature = 0.8
    want_sample, want_codebook = brute_force(latent, temperature)
    terms = finetune.lfq_losses(latent, temperature, max_group_bits=n_bits)  # one group: exact codebook entropy
    assert want_sample.item() > 0.5 and want_codebook.item() > 1.0  # far from the degenerate 0
    assert terms.sample_entropy.item() == pytest.approx(want_sample.item(), rel=1e-5)
    assert terms.codebook_entropy.item() == pytest.approx(want_codebook.item(), rel=1e-5)


def test_grouped_codebook_entropy_is_the_sum_of_the_groups_entropies():
    latent = torch.randn(3, 6, 2, 2, 2, generator=torch.Generator().manual_seed(1)) * 0.5
    groups = [brute_force(latent[:, bits], 0.8)[1].item() for bits in ([0, 1], [2, 3], [4, 5])]
    grouped = finetune.lfq_losses(latent, 0.8, max_group_bits=2).codebook_entropy.item()
    exact = finetune.lfq_losses(latent, 0.8, max_group_bits=6).codebook_entropy.item()
    assert grouped == pytest.approx(sum(groups), rel=1e-5)
    assert grouped > exact  # subadditivity: an upper bound of the exact entropy


def test_lfq_terms_straight_through_commitment_and_saturation():
    latent = torch.tensor([0.5, -2.0, 0.0, 3.0, -0.1, 1.0]).reshape(1, 6, 1, 1, 1).requires_grad_(True)
    terms = finetune.lfq_losses(latent, 0.01)
    assert terms.quantized.flatten().tolist() == [1.0, -1.0, -1.0, 1.0, -1.0, 1.0]  # lfq: 0 is not > 0
    assert terms.indices.item() == 0b101001  # bits 0, 3, 5 set
    assert terms.commitment.item() == pytest.approx(np.mean([0.25, 1.0, 1.0, 4.0, 0.81, 0.0]))
    weights = torch.arange(1.0, 7.0).reshape(1, 6, 1, 1, 1)
    (grad,) = torch.autograd.grad((terms.quantized * weights).sum(), latent)
    assert torch.equal(grad, weights)  # the gradient passes the quantizer unchanged
    # Only the bit at exactly 0 is uncertain (1 bit = ln 2 nats); saturated bits add exactly 0, without NaN.
    assert terms.sample_entropy.item() == pytest.approx(math.log(2), rel=1e-6)
    (grad,) = torch.autograd.grad(terms.sample_entropy - terms.codebook_entropy, latent)
    assert torch.isfinite(grad).all()


def test_reconstruction_losses():
    target = torch.zeros(1, 3, 1, 2, 2)
    recon = torch.full_like(target, 0.5)
    assert finetune.reconstruction_loss(recon, target, "l1").item() == pytest.approx(0.5)
    assert finetune.reconstruction_loss(recon, target, "l2").item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="'huber'"):
        finetune.reconstruction_loss(recon, target, "huber")


# ---------------------------------------------------------------------------------------------------------------------
# Training


def test_training_lowers_the_loss_and_raises_psnr(trained):
    history = trained.history
    assert history["step"].tolist() == [1, 5, 10, 15, 20, 25, 30]
    first, last = history.iloc[0], history.iloc[-3:]
    assert last["loss"].mean() < first["loss"] - 0.2
    assert last["reconstruction"].mean() < 0.7 * first["reconstruction"]
    assert last["psnr_db"].mean() > first["psnr_db"] + 3.0
    assert trained.complete and trained.step == 30 and trained.ema_num_updates == 30
    assert history[list(finetune.HISTORY_COLUMNS)].notna().all().all()
    assert (history["code_fraction"] > 0).all() and (history["code_fraction"] <= 1).all()
    assert history["lr"].iloc[0] == pytest.approx(1e-3) and history["lr"].iloc[-1] == pytest.approx(3e-3)  # warm-up


def test_trained_model_reconstructs_better_than_its_initial_weights(trained, videos):
    def psnr(state):
        model = build_model(ARCH, seed=0)
        model.load_state_dict(state)
        with torch.no_grad():
            recon = to_uint8(model(to_model_range(videos))).numpy().astype(float)
        return 10 * np.log10(255.0**2 / np.mean((recon - videos) ** 2))

    initial = psnr(build_model(ARCH, seed=0).state_dict())
    assert psnr(trained.raw_state) > initial + 3.0
    assert psnr(trained.ema_state) > initial + 3.0


def test_outputs_and_checkpoint_round_trip(trained, tmp_path):
    state = tmp_path / "state.pt"
    state.write_bytes(b"left over")
    paths = {name: tmp_path / f"out.{ext}" for name, ext in
             (("checkpoint", "ckpt"), ("history", "csv"), ("curves", "png"), ("meta", "json"))}
    finetune.write_outputs(trained, **paths, init_from="random", state_path=state)
    assert not state.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())  # no temp files
    for weights, want in (("ema", trained.ema_state), ("raw", trained.raw_state)):
        model = load_checkpoint(paths["checkpoint"], ARCH, weights=weights)
        got = model.state_dict()
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert not torch.equal(trained.raw_state["decoder.conv_out.conv_1.weight"],
                           trained.ema_state["decoder.conv_out.conv_1.weight"])
    entries = torch.load(paths["checkpoint"], weights_only=True)["state_dict"]
    assert entries["model_ema.num_updates"].item() == 30
    assert entries["model_ema.decay"].item() == pytest.approx(0.9)

    pd.testing.assert_frame_equal(pd.read_csv(paths["history"]), trained.history, check_dtype=False)
    assert paths["curves"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads(paths["meta"].read_text())
    assert meta["init_from"] == "random" and meta["steps"] == 30 and meta["batch_size"] == 4
    assert (meta["clips"], meta["frames"], meta["height"], meta["width"]) == (12, 5, 8, 8)
    assert (meta["device"], meta["dtype"], meta["seed"]) == ("cpu", "float32", 0)
    assert meta["final"]["loss"] == pytest.approx(trained.history["loss"].iloc[-1])
    assert meta["initial"]["psnr_db"] == pytest.approx(trained.history["psnr_db"].iloc[0])


def test_training_is_deterministic_to_the_byte(videos, tmp_path):
    first, second = run(videos), run(videos)
    assert_same_run(first, second)
    for name, result in (("a", first), ("b", second)):
        save_checkpoint(tmp_path / f"{name}.ckpt", result.raw_state, result.ema_state,
                               ema_decay=SHORT.ema_decay, ema_num_updates=result.ema_num_updates)
    assert (tmp_path / "a.ckpt").read_bytes() == (tmp_path / "b.ckpt").read_bytes()
    other = run(videos, dataclasses.replace(SHORT, seed=1))  # other batches
    assert not torch.equal(other.raw_state["encoder.conv_in.conv_1.weight"],
                           first.raw_state["encoder.conv_in.conv_1.weight"])


def test_interrupted_run_resumes_to_the_same_bytes(videos, tmp_path, caplog):
    state = tmp_path / "resume.pt"
    every3 = dataclasses.replace(SHORT, checkpoint_every=3)
    interrupted = run(videos, every3, state_path=state, stop_after=5)  # "killed" after step 5: the state holds step 3
    assert not interrupted.complete and interrupted.step == 5
    with pytest.raises(ValueError, match="step 5 of 7"):
        finetune.write_outputs(interrupted, checkpoint=tmp_path / "x.ckpt", history=tmp_path / "h.csv",
                               curves=tmp_path / "c.png", meta=tmp_path / "m.json", init_from="random")
    assert not (tmp_path / "x.ckpt").exists()
    with caplog.at_level(logging.INFO, logger="trajbench.finetune"):
        resumed = run(videos, every3, state_path=state)
    assert f"resuming from {state} at step 3" in caplog.text
    assert resumed.resumed_from == 3 and resumed.complete
    assert_same_run(resumed, run(videos))  # checkpoint_every does not change the training


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other_fingerprint", "other_initial_weights"])
def test_unusable_resume_state_means_a_fresh_start(videos, tmp_path, caplog, damage):
    state = tmp_path / "resume.pt"
    config = dataclasses.replace(SHORT, checkpoint_every=2)
    model = build_model(ARCH, seed=0)
    if damage == "other_fingerprint":
        run(videos, dataclasses.replace(config, learning_rate=1e-3), state_path=state, stop_after=2)
    elif damage == "other_initial_weights":
        finetune.train(build_model(ARCH, seed=1), videos, config, device="cpu", dtype=torch.float32,
                       state_path=state, stop_after=2)
    else:
        run(videos, config, state_path=state, stop_after=2)
        data = state.read_bytes()
        state.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00" * 64)
    with caplog.at_level(logging.INFO, logger="trajbench.finetune"):
        result = finetune.train(model, videos, config, device="cpu", dtype=torch.float32, state_path=state,
                                stop_after=2)
    assert result.resumed_from is None
    assert ("unreadable" if damage in ("truncated", "garbage") else "made for another") in caplog.text
    assert "starting fresh" in caplog.text and "resuming" not in caplog.text


def test_batches_are_epoch_permutations_that_depend_on_seed_and_step_only():
    n_clips, batch = 10, 3  # 3 batches per epoch; one clip waits for another epoch
    epochs = [np.concatenate([finetune._batch_indices(s, n_clips, batch, 7) for s in range(e * 3, e * 3 + 3)])
              for e in range(2)]
    for order in epochs:
        assert len(order) == 9 and len(set(order.tolist())) == 9
    assert not np.array_equal(epochs[0], epochs[1])
    assert np.array_equal(finetune._batch_indices(4, n_clips, batch, 7), epochs[1][3:6])
    assert not np.array_equal(finetune._batch_indices(0, n_clips, batch, 8), epochs[0][:3])


# ---------------------------------------------------------------------------------------------------------------------
# Errors


def test_config_from_dict_accepts_the_workflow_keys():
    block = {"enabled": True, "init_from": "random", "data": {"videos_per_class": 4, "seed": 1}, "steps": 5,
             "learning_rate": 1, "reconstruction_loss": "l2"}
    config = FinetuneConfig.from_dict(block)
    assert (config.steps, config.learning_rate, config.reconstruction_loss) == (5, 1, "l2")
    assert config.batch_size == FinetuneConfig().batch_size
    assert FinetuneConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("values, message", [
    ({"steps": 0}, "steps=0 must be >= 1"),
    ({"batch_size": 2.0}, "batch_size=2.0 must be an integer"),
    ({"learning_rate": "1e-4"}, r"learning_rate='1e-4' must be a finite number \(YAML reads 1e-4 as text"),
    ({"learning_rate": -1.0}, "learning_rate=-1.0 must be > 0"),
    ({"grad_clip": 0}, "grad_clip=0 must be > 0"),
    ({"ema_decay": 1.0}, r"ema_decay=1.0 must be in \[0, 1\)"),
    ({"entropy_temperature": float("nan")}, "entropy_temperature=nan must be a finite number"),
    ({"checkpoint_every": -1}, "checkpoint_every=-1 must be >= 0"),
    ({"seed": True}, "seed=True must be an integer"),
    ({"reconstruction_loss": "L1"}, r"reconstruction_loss='L1' must be one of \['l1', 'l2'\]"),
    ({"init_from": "finetuned"}, r"init_from='finetuned' must be one of \['pretrained', 'random'\]"),
    ({"stpes": 3}, r"unknown keys \['stpes'\]"),
])
def test_bad_config_values_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        FinetuneConfig.from_dict(values)


def test_bad_inputs_are_refused_before_training(videos):
    with pytest.raises(ValueError, match="batch_size=13 is larger than the training set"):
        run(videos, dataclasses.replace(SHORT, batch_size=13))
    with pytest.raises(ValueError, match="uint8 training clips"):
        run(videos.astype(np.float32))
    with pytest.raises(ValueError, match="float32 on the CPU"):
        finetune.train(build_model(ARCH, seed=0), videos, SHORT, device="cpu", dtype=torch.bfloat16)


# ---------------------------------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_mixed_precision_trains_and_resumes(videos, tmp_path, caplog, dtype):
    config = FinetuneConfig(steps=30, batch_size=4, learning_rate=3e-3, warmup_steps=3, ema_decay=0.9, log_every=5,
                            checkpoint_every=10)
    state = tmp_path / "resume.pt"

    def train(**kwargs):
        return finetune.train(build_model(ARCH, seed=0), videos, config, device="cuda", dtype=dtype,
                              state_path=state, **kwargs)

    assert not train(stop_after=15).complete
    with caplog.at_level(logging.INFO, logger="trajbench.finetune"):
        result = train()
    assert "at step 10" in caplog.text and result.resumed_from == 10 and result.complete
    assert result.precision == str(dtype).removeprefix("torch.") and result.device == "cuda"
    history = result.history
    assert history["psnr_db"].iloc[-3:].mean() > history["psnr_db"].iloc[0] + 3.0
    assert all(torch.isfinite(value).all() for value in result.ema_state.values())
