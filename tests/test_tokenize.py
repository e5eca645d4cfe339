"""trajbench.tokenize.tokenize_videos on a tiny model: shapes, windows, determinism, batching."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch

from trajbench.magvit import MagvitConfig, build_model, to_model_range, to_uint8
from trajbench.tokenize import _precision, tokenize_videos

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


def test_invalid_requests(model, videos):
    with pytest.raises(ValueError, match="1 \\+ k\\*2 frames .* got 4"):
        run(model, videos[:, :8], window=4)
    with pytest.raises(ValueError, match=r"10 frames are not a whole number of 3-frame windows \(1 frames left"):
        run(model, videos, window=3)
    with pytest.raises(ValueError, match="uint8 videos"):
        run(model, videos.astype(np.float32))
    with pytest.raises(ValueError, match="float32 on the CPU; got dtype torch.bfloat16"):
        tokenize_videos(model, videos[:, :5], 2, "cpu", torch.bfloat16)


def test_accelerators_autocast_in_the_requested_dtype():
    with warnings.catch_warnings():  # a CPU-only torch warns that CUDA autocast is disabled
        warnings.simplefilter("ignore")
        context = _precision("cuda:0", torch.bfloat16)
    assert isinstance(context, torch.autocast) and context.device == "cuda" and context.fast_dtype == torch.bfloat16
    assert not isinstance(_precision("cuda:0", torch.float32), torch.autocast)
