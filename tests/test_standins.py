"""trajbench.standins: tiny seeded weights in the real formats; deterministic bytes; loadable; hub-cache layout."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from trajbench import standins, weights
from trajbench.checkpoint_magvit import load_checkpoint
from trajbench.modeling_magvit import MagvitConfig, build_model, to_model_range
from trajbench.models import clip as clip_family
from trajbench.models import magvit as magvit_family
from trajbench.models import videomae as videomae_family

MAGVIT_ARCH = {"ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "z_channels": 4, "resolution": 16}
COMMIT = "c" * 40


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("HF_HOME", "HF_HUB_CACHE", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def seeded_model(model_class, config, seed: int) -> torch.nn.Module:
    """What the stand-in writers draw: the model's own init after torch.manual_seed(seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class(config)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_magvit_standin_deterministic_bytes(tmp_path):
    a = magvit_family.write_standin(tmp_path / "a", MAGVIT_ARCH, seed=3)
    b = magvit_family.write_standin(tmp_path / "b", MAGVIT_ARCH, seed=3)
    c = magvit_family.write_standin(tmp_path / "c", MAGVIT_ARCH, seed=4)
    # torch.save names the zip's inner folder after the file it writes to, so a save through a randomly named
    # temporary file differs byte-wise from run to run unless it writes through an open handle
    assert (
        hashlib.sha256(a.read_bytes()).hexdigest() == hashlib.sha256(b.read_bytes()).hexdigest()
    ), "same seed, other bytes"
    assert hashlib.sha256(a.read_bytes()).hexdigest() != hashlib.sha256(c.read_bytes()).hexdigest()


def test_magvit_standin_loads_in_authors_layout(tmp_path):
    before = torch.random.get_rng_state()
    path = magvit_family.write_standin(tmp_path / "standin", MAGVIT_ARCH, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's RNG is untouched

    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert any(k.startswith("model_ema.") for k in state) and "model_ema.decay" in state

    config = MagvitConfig.from_dict(MAGVIT_ARCH)
    raw = load_checkpoint(path, config, weights="raw").state_dict()
    ema = load_checkpoint(path, config).state_dict()
    for key, value in build_model(config, 3).state_dict().items():
        assert torch.equal(raw[key], value), key
        if value.is_floating_point():
            # EMA = raw + N(0, 1e-3) offset: close to the raw weights, but a different set
            offset = ema[key] - value
            assert 0 < offset.abs().max() < 10 * magvit_family.EMA_OFFSET_STD, key

    model = load_checkpoint(path, config)
    video = torch.zeros(1, 5, 16, 16, 3, dtype=torch.uint8)
    latent, quantized, indices = model.encode(to_model_range(video))
    assert indices.shape == (1, config.latent_frames(5), 8, 8)


def test_videomae_standin_deterministic_and_loads(tmp_path):
    from transformers import AutoImageProcessor, VideoMAEForPreTraining

    a = videomae_family.write_standin(tmp_path / "a", {"num_frames": 4}, seed=1)
    b = videomae_family.write_standin(tmp_path / "b", {"num_frames": 4}, seed=1)
    c = videomae_family.write_standin(tmp_path / "c", {"num_frames": 4}, seed=2)
    assert sorted(digests(a)) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    assert digests(a) == digests(b)
    assert digests(a)["model.safetensors"] != digests(c)["model.safetensors"]

    model, info = VideoMAEForPreTraining.from_pretrained(a, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert same_weights(model, seeded_model(VideoMAEForPreTraining, model.config, seed=1))
    saved = load_file(a / "model.safetensors")
    assert "videomae.embeddings.patch_embeddings.projection.weight" in saved
    assert "mask_token" in saved and any(k.startswith("decoder.") for k in saved)  # the pre-training head

    processor = AutoImageProcessor.from_pretrained(a)
    frames = list(np.random.default_rng(0).integers(0, 256, (4, 48, 64, 3), dtype=np.uint8))
    pixels = processor(frames, return_tensors="pt")["pixel_values"]
    assert tuple(pixels.shape) == (1, 4, 3, 32, 32)
    assert list(processor.image_mean) == standins.IMAGENET_MEAN
    with torch.no_grad():
        hidden = model.videomae(pixels).last_hidden_state
    assert tuple(hidden.shape) == (1, 2 * 2 * 2, 32)  # (4/2 tubelets) x (32/16)^2 patches


def test_clip_standin_deterministic_and_loads(tmp_path):
    from transformers import AutoImageProcessor, CLIPModel

    overrides = {"vision_config": {"image_size": 48}, "text_config": {"vocab_size": 128}, "projection_dim": 8}
    a = clip_family.write_standin(tmp_path / "a", overrides, seed=1)
    b = clip_family.write_standin(tmp_path / "b", overrides, seed=1)
    assert sorted(digests(a)) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    assert digests(a) == digests(b)

    model, info = CLIPModel.from_pretrained(a, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert same_weights(model, seeded_model(CLIPModel, model.config, seed=1))
    assert model.config.vision_config.patch_size == 16  # defaults kept where not overridden
    text = model.config.text_config
    assert (text.vocab_size, text.bos_token_id, text.eos_token_id) == (128, 126, 127)
    saved = load_file(a / "model.safetensors")
    assert "logit_scale" in saved and any(k.startswith("text_model.") for k in saved)
    assert "visual_projection.weight" in saved and "text_projection.weight" in saved

    processor = AutoImageProcessor.from_pretrained(a)
    image = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    pixels = processor(images=[image], return_tensors="pt")["pixel_values"]
    assert tuple(pixels.shape) == (1, 3, 48, 48)
    with torch.no_grad():
        # the vision tower + projection, as get_image_features computes them on every supported version
        pooled = model.vision_model(pixel_values=pixels).pooler_output
        features = model.visual_projection(pooled)
    assert tuple(features.shape) == (1, 8)


def test_populate_hub_cache_layout_and_hf_resolution(tmp_path):
    from huggingface_hub import hf_hub_download

    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_bytes(b"hello\n")
    (src / "model.safetensors").write_bytes(b"\x00" * 64)
    cache = tmp_path / "cache"
    snapshot = standins.populate_hub_cache(
        cache,
        "org/name",
        {"config.json": src / "config.json", "sub/model.safetensors": src / "model.safetensors"},
        COMMIT,
    )
    repo = cache / "models--org--name"
    assert snapshot == repo / "snapshots" / COMMIT
    assert (repo / "refs" / "main").read_text() == COMMIT  # no trailing newline
    # etags: git blob sha1 for plain files, sha256 for LFS-type files
    assert os.readlink(snapshot / "config.json") == "../../blobs/ce013625030ba8dba906f756967f9e9ca394464a"
    assert os.readlink(snapshot / "sub" / "model.safetensors") == (
        "../../../blobs/" + hashlib.sha256(b"\x00" * 64).hexdigest()
    )
    path = hf_hub_download("org/name", "sub/model.safetensors", cache_dir=cache, local_files_only=True)
    assert Path(path) == snapshot / "sub" / "model.safetensors" and Path(path).read_bytes() == b"\x00" * 64
    with pytest.raises(ValueError, match="40 lowercase hex"):
        standins.populate_hub_cache(cache, "org/name", {}, "main")


def test_standin_in_hub_cache_fetched_and_loaded(tmp_path):
    """End to end: a stand-in served from the cache as a hub repo; the .bin is skipped; the folder loads."""
    from transformers import VideoMAEForPreTraining

    folder = videomae_family.write_standin(tmp_path / "standin", {}, seed=0)
    files = {p.name: p for p in folder.iterdir()}
    (tmp_path / "pytorch_model.bin").write_bytes(b"not a usable pickle")
    files["pytorch_model.bin"] = tmp_path / "pytorch_model.bin"
    cache = tmp_path / "cache"
    standins.populate_hub_cache(cache, "MCG-NJU/videomae-base", files, COMMIT)

    cfg = {
        "source": "hub",
        "repo_id": "MCG-NJU/videomae-base",
        "revision": "main",
        "allow_patterns": ["*.json", "*.bin", "*.safetensors"],
    }
    manifest = weights.fetch("videomae", cfg, cache, offline=True, lockfile=tmp_path / "weights.lock")
    assert [f["path"] for f in manifest["files"]] == ["config.json", "model.safetensors", "preprocessor_config.json"]
    weights.write_manifest(manifest, tmp_path / "videomae.json")
    model_dir = weights.local_path(weights.verify(tmp_path / "videomae.json"))
    model = VideoMAEForPreTraining.from_pretrained(model_dir)
    assert same_weights(model, seeded_model(VideoMAEForPreTraining, model.config, seed=0))
