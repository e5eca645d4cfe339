"""trajbench.modeling_magvit and its checkpoint I/O: layout of the full-size model, golden equivalence with the
authors' outputs, shape rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from trajbench.checkpoint_magvit import ema_name, load_checkpoint, save_checkpoint
from trajbench.modeling_magvit import (
    MagvitConfig,
    MagvitTokenizer,
    build_model,
    depth_to_space,
    estimate_tflop,
    to_model_range,
    to_uint8,
)

FIXTURES = Path(__file__).parent / "fixtures" / "magvit"
GOLDEN = sorted(FIXTURES.glob("*.expected.pt"))
# Index signs are compared only where no latent channel is this close to 0: there, float rounding that differs
# between implementations may flip a sign.
SIGN_MARGIN = 1e-4


def test_golden_fixtures_are_present():
    assert [p.name for p in GOLDEN][:1] == ["golden_a.expected.pt"]
    for path in GOLDEN:
        assert golden_meta_path(path).exists(), f"{path.name} has no matching .json"


def test_full_size_model_matches_the_public_checkpoint_layout():
    ref = json.loads((FIXTURES / "video_128_262144.keys.json").read_text())
    config = MagvitConfig.from_dict(ref["config"])
    assert config == MagvitConfig.full()
    with torch.device("meta"):
        model = MagvitTokenizer(config)
    shapes = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert len(shapes) == 283
    assert list(shapes) == list(ref["state_dict_shapes"])  # same keys in the checkpoint's order
    assert shapes == ref["state_dict_shapes"]
    assert sum(p.numel() for p in model.encoder.parameters()) == ref["encoder_parameters"] == 144_865_298
    assert sum(p.numel() for p in model.decoder.parameters()) == ref["decoder_parameters"] == 225_682_051
    assert config.codebook_size == ref["codebook_size"] == 2**18
    assert (config.temporal_compression, config.spatial_compression) == (4, 8)
    assert config.latent_frames(17) == 5


def test_estimated_cost_of_a_full_size_clip():
    # The full model: about 4.47 TFLOP to encode and 6.19 to decode a 17x128x128 clip
    assert estimate_tflop(MagvitConfig.full(), 17, 128, 128) == pytest.approx(4.47 + 6.19, abs=0.01)
    assert estimate_tflop(MagvitConfig.full(), 9, 64, 64) == pytest.approx(10.66 * 9 / 17 / 4, rel=0.1)
    # The tokenize job's shuffled control adds one encode per clip; a decoder pass alone is the rest.
    assert estimate_tflop(MagvitConfig.full(), 17, 128, 128, encodes=2) == pytest.approx(2 * 4.47 + 6.19, abs=0.01)
    assert estimate_tflop(MagvitConfig.full(), 17, 128, 128, encodes=0) == pytest.approx(6.19, abs=0.01)


def golden_meta_path(expected_path: Path) -> Path:
    return expected_path.with_name(expected_path.name.replace(".expected.pt", ".json"))


def golden_weights(meta: dict) -> tuple[dict, dict, torch.Tensor]:
    """The recipe the golden fixtures were made with, step for step: raw weights, EMA weights, then the input, from
    one generator."""
    shapes = meta["state_dict_shapes"]
    generator = torch.Generator().manual_seed(meta["seed"])
    norms = ("norm1.weight", "norm2.weight", "norm_out.weight")
    raw = {}
    for key in sorted(shapes):
        shape = shapes[key]
        noise = torch.randn(shape, generator=generator) * (0.05 if len(shape) > 1 else 0.2)
        raw[key] = noise + (1.0 if key.endswith(norms) else 0.0)
    ema = {key: raw[key] + torch.randn(shapes[key], generator=generator) * 0.01 for key in sorted(shapes)}
    video = torch.rand(meta["input_shape"], generator=generator) * 2 - 1
    return raw, ema, video


@pytest.mark.parametrize("expected_path", GOLDEN, ids=[p.name.split(".")[0] for p in GOLDEN])
def test_golden_outputs_through_a_saved_checkpoint(expected_path, tmp_path):
    meta = json.loads(golden_meta_path(expected_path).read_text())
    config = MagvitConfig.from_dict(meta["config"])
    raw, ema, video = golden_weights(meta)
    expected = torch.load(expected_path, map_location="cpu", weights_only=True)
    assert torch.equal(video, expected["input"]), "the weight recipe is out of step with the fixture"
    # raw and EMA outputs differ, so loading the wrong set fails the comparison below
    assert (expected["raw_latent"] - expected["ema_latent"]).abs().max() > 100 * SIGN_MARGIN

    path = tmp_path / "golden.ckpt"
    save_checkpoint(path, raw, ema)
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert len(state) == 2 * len(raw) + 2
    assert torch.equal(state["model_ema.decay"], torch.tensor(0.999))
    assert all(torch.equal(state[key], raw[key]) and torch.equal(state[ema_name(key)], ema[key]) for key in raw)

    for weights in ("raw", "ema"):
        model = load_checkpoint(path, config, weights)
        with torch.inference_mode():
            latent, quantized, indices = model.encode(video)
            recon = model.decode(quantized)
        want_latent = expected[f"{weights}_latent"]
        torch.testing.assert_close(latent, want_latent, atol=1e-4, rtol=0)
        stable = (want_latent.abs() > SIGN_MARGIN).all(dim=1)
        assert stable.float().mean() > 0.9
        assert indices.dtype == torch.int64 and indices.shape == expected[f"{weights}_indices"].shape
        assert torch.equal(indices[stable], expected[f"{weights}_indices"][stable])
        torch.testing.assert_close(recon, expected[f"{weights}_reconstruction"], atol=1e-4, rtol=0)


def test_lfq_bits_and_indices():
    model = build_model(MagvitConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, z_channels=5, resolution=16), seed=0)
    video = to_model_range(np.random.default_rng(0).integers(0, 256, (2, 1, 16, 16, 3), dtype=np.uint8))
    latent, quantized, indices = model.encode(video)
    bits = (latent > 0).long()
    assert torch.equal(quantized, bits.float() * 2 - 1)
    assert torch.equal(indices, sum(bits[:, c] << c for c in range(5)))  # channel 0 is the least significant bit
    assert len(indices.unique()) > 1


def reference_depth_to_space(x: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
    """Written from the spec's index formula, one sub-block at a time."""
    bt, bh, bw = block
    b, channels, t, h, w = x.shape
    c = channels // (bt * bh * bw)
    out = torch.empty(b, c, t * bt, h * bh, w * bw)
    for i in range(bt):
        for j in range(bh):
            for k in range(bw):
                first = ((i * bh + j) * bw + k) * c
                out[:, :, i::bt, j::bh, k::bw] = x[:, first : first + c]
    if bt > 1:
        out = out[:, :, [0] + list(range(2, t * bt))]
    return out


@pytest.mark.parametrize(("block", "frames", "out_frames"), [((2, 2, 2), 3, 5), ((2, 2, 2), 1, 1), ((1, 2, 2), 3, 3)])
def test_depth_to_space_follows_the_index_formula(block, frames, out_frames):
    x = torch.arange(2 * 3 * 8 * frames * 2 * 3, dtype=torch.float32).reshape(2, 3 * 8, frames, 2, 3)
    x = x[:, : 3 * block[0] * block[1] * block[2]]
    out = depth_to_space(x, block)
    assert out.shape == (2, 3, out_frames, 2 * block[1], 3 * block[2])
    assert torch.equal(out, reference_depth_to_space(x, block))


def test_frame_counts_round_trip_17_5_17_and_1_1_1():
    config = MagvitConfig(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1, z_channels=4, resolution=16)
    assert (config.temporal_compression, config.spatial_compression) == (4, 8)
    model = build_model(config, seed=0)
    with torch.inference_mode():
        for frames, latent_frames in ((17, 5), (1, 1)):
            latent, quantized, indices = model.encode(torch.zeros(1, 3, frames, 16, 16))
            assert latent.shape == (1, 4, latent_frames, 2, 2) and indices.shape == (1, latent_frames, 2, 2)
            assert model.decode(quantized).shape == (1, 3, frames, 16, 16)
        with pytest.raises(ValueError, match=r"1 \+ k\*4 frames .* got 16"):
            model.encode(torch.zeros(1, 3, 16, 16, 16))
        with pytest.raises(ValueError, match="divisible by 8, got 12x16"):
            model.encode(torch.zeros(1, 3, 5, 12, 16))


def test_uint8_round_trip_and_clamping():
    pixels = (np.arange(2 * 4 * 8 * 8 * 3) % 256).astype(np.uint8).reshape(2, 4, 8, 8, 3)
    model_range = to_model_range(pixels)
    assert model_range.shape == (2, 3, 4, 8, 8) and model_range.dtype == torch.float32
    assert model_range.min() == -1.0 and model_range.max() == 1.0
    assert model_range[0, 2, 0, 0, 0] == pixels[0, 0, 0, 0, 2] / 127.5 - 1  # channels move in front of time
    assert np.array_equal(to_uint8(model_range).numpy(), pixels)
    assert torch.equal(to_model_range(torch.from_numpy(pixels)), model_range)  # tensor input too
    recon = torch.tensor([-3.0, -1.0, 0.0, 0.999, 1.0, 5.0]).reshape(1, 1, 1, 1, 6).expand(1, 3, 1, 1, 6)
    assert to_uint8(recon)[0, 0, 0, :, 0].tolist() == [0, 0, 128, 255, 255, 255]
    with pytest.raises(ValueError, match="uint8"):
        to_model_range(pixels.astype(np.float32))


def test_config_from_dict_to_dict_and_validation():
    demo = {"ch": 32, "ch_mult": [1, 2, 2, 4], "num_res_blocks": 1, "z_channels": 18, "resolution": 32}
    config = MagvitConfig.from_dict(demo)
    assert config.ch_mult == (1, 2, 2, 4) and config.in_channels == 3
    assert MagvitConfig.from_dict(config.to_dict()) == config and config.to_dict()["ch_mult"] == [1, 2, 2, 4]
    assert [t for t in range(1, 18) if config.valid_frames(t)] == [1, 5, 9, 13, 17]
    assert MagvitConfig(ch_mult=(2, 2)).temporal_compression == 2
    assert MagvitConfig(ch_mult=(1, 1, 2)).temporal_compression == 1
    with pytest.raises(ValueError, match=r"unknown keys \['channels'\]"):
        MagvitConfig.from_dict({"channels": 32})
    with pytest.raises(ValueError, match="double_z"):
        MagvitConfig.from_dict({"double_z": True})
    with pytest.raises(ValueError, match="divisible by 32"):
        MagvitConfig(ch=48)
    with pytest.raises(ValueError, match="resolution=100 must be divisible by 8"):
        MagvitConfig(resolution=100)


def test_build_model_is_seeded_and_leaves_the_global_rng_alone():
    config = MagvitConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, z_channels=4, resolution=16)
    before = torch.random.get_rng_state()
    first, again, other = build_model(config, 3), build_model(config, 3), build_model(config, 4)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert not first.training
    weight = "encoder.conv_in.conv_1.weight"
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in first.state_dict().items())
    assert not torch.equal(first.state_dict()[weight], other.state_dict()[weight])
