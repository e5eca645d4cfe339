"""Demo stand-in weights: tiny, seeded models in the same file formats as the real hub repos.

They let the demo and the tests run every stage (download/verify, loading, features) without the multi-GB downloads.
Same seed and library versions -> the same bytes on CPU. Each writer draws its weights in a forked RNG, so the
caller's global RNG state is untouched.

- MagVit: the authors' Lightning checkpoint layout (raw weights under module names plus ``model_ema.*``), written by
  :func:`trajbench.checkpoint_magvit.save_checkpoint`.
- VideoMAE: ``VideoMAEForPreTraining`` (what MCG-NJU/videomae-base holds: encoder, decoder, mask token) as
  safetensors + ``VideoMAEImageProcessor`` (preprocessor_config.json) sized for the tiny model.
- CLIP: full ``CLIPModel`` (text and vision towers, projections, logit_scale; like openai/clip-vit-base-patch32) +
  ``CLIPImageProcessor``; no tokenizer (only image features are used).

:func:`populate_hub_cache` lays files out as a huggingface_hub cache, so offline hub resolution can be exercised.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

import torch

from trajbench.checkpoint_magvit import save_checkpoint
from trajbench.modeling_magvit import MagvitConfig, build_model
from trajbench.io import atomic_dir, atomic_path, sha256_file, write_text
from trajbench.weights import git_blob_sha1, repo_cache_folder

TINY_VIDEOMAE = {
    "image_size": 32,
    "patch_size": 16,
    "num_frames": 4,
    "tubelet_size": 2,
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "decoder_hidden_size": 32,
    "decoder_num_hidden_layers": 1,
    "decoder_num_attention_heads": 2,
    "decoder_intermediate_size": 64,
}
TINY_CLIP = {
    "projection_dim": 16,
    "text_config": {
        "vocab_size": 1000,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 16,
    },
    "vision_config": {
        "image_size": 32,
        "patch_size": 16,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
    },
}
# the ImageNet statistics that MCG-NJU/videomae-base's preprocessor uses (the class default is 0.5/0.5)
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
EMA_OFFSET_STD = 1e-3  # how far the stand-in's EMA weights sit from its raw weights
# the hub's default .gitattributes stores these in LFS (etag = sha256); other files are plain git (etag = sha1)
_LFS_SUFFIXES = {".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".h5", ".msgpack", ".onnx", ".npy", ".npz", ".pkl"}
_LFS_MIN_SIZE = 10 << 20  # the hub rejects larger non-LFS files


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def write_magvit_standin(path: str | os.PathLike, architecture: dict, seed: int) -> Path:
    """A tiny MagVit checkpoint in the authors' layout; ``architecture`` as for ``MagvitConfig.from_dict``.

    The raw weights are ``build_model(config, seed)``; the EMA block (what is loaded by default) is those weights
    plus a small seeded offset, as a trained EMA trails the raw weights, so loading the wrong set is detectable.
    """
    model = build_model(MagvitConfig.from_dict(architecture), seed)
    raw = model.state_dict()
    generator = torch.Generator().manual_seed(seed)
    ema = {
        key: (
            value + EMA_OFFSET_STD * torch.randn(value.shape, generator=generator)
            if value.is_floating_point()
            else value
        )
        for key, value in raw.items()
    }
    save_checkpoint(path, raw, ema)
    return Path(path)


def write_videomae_standin(folder: str | os.PathLike, config_overrides: dict, seed: int) -> Path:
    """A tiny ``VideoMAEForPreTraining`` (safetensors) with its ``VideoMAEImageProcessor`` in ``folder``."""
    from transformers import VideoMAEConfig, VideoMAEForPreTraining, VideoMAEImageProcessor

    config = VideoMAEConfig(**{**TINY_VIDEOMAE, **config_overrides})
    side = config.image_size
    processor = VideoMAEImageProcessor(
        size={"shortest_edge": side},
        crop_size={"height": side, "width": side},
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    )
    with _seeded(seed):
        model = VideoMAEForPreTraining(config)
    return _save_pretrained(folder, model, processor)


def write_clip_standin(folder: str | os.PathLike, config_overrides: dict, seed: int) -> Path:
    """A tiny full ``CLIPModel`` (safetensors) with its ``CLIPImageProcessor`` in ``folder``.

    ``config_overrides`` may hold top-level keys and ``text_config`` / ``vision_config`` dicts (merged key by key).
    """
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    values = _merge(TINY_CLIP, config_overrides)
    # the real special-token ids (49406/49407) lie outside a tiny vocabulary: use its last two ids
    vocab = values["text_config"]["vocab_size"]
    values["text_config"] = {"bos_token_id": vocab - 2, "eos_token_id": vocab - 1, **values["text_config"]}
    config = CLIPConfig(**values)
    side = config.vision_config.image_size
    processor = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    with _seeded(seed):
        model = CLIPModel(config)
    return _save_pretrained(folder, model, processor)


def _merge(base: dict, overrides: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        merged[key] = (
            _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def _save_pretrained(folder: str | os.PathLike, *savables: Any) -> Path:
    """``save_pretrained`` every object into a scratch folder that becomes ``folder`` only when all are written."""
    with atomic_dir(folder) as scratch:
        for savable in savables:
            savable.save_pretrained(scratch)
    return Path(folder)


def _copy_atomic(src: Path, dest: Path) -> None:
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)


def populate_hub_cache(
    cache_dir: str | os.PathLike, repo_id: str, files: dict[str, str | os.PathLike], commit: str, ref: str = "main"
) -> Path:
    """Lay ``files`` ({name in repo: source file}) out as huggingface_hub caches a model repo at ``commit``.

    ``models--org--name/blobs/<etag>`` (sha256 for LFS-type files, git blob sha1 for the rest, as the hub's etags),
    ``snapshots/<commit>/<name>`` as relative links to the blobs, and ``refs/<ref>`` holding the commit. Returns the
    snapshot folder.
    """
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise ValueError(f"commit must be 40 lowercase hex characters, got {commit!r}")
    repo = repo_cache_folder(cache_dir, repo_id)
    snapshot = repo / "snapshots" / commit
    for name, src in sorted(files.items()):
        src = Path(src)
        is_lfs = src.suffix in _LFS_SUFFIXES or src.stat().st_size >= _LFS_MIN_SIZE
        blob = repo / "blobs" / (sha256_file(src) if is_lfs else git_blob_sha1(src))
        if not blob.exists():
            _copy_atomic(src, blob)
        pointer = snapshot / name
        _link_atomic(os.path.relpath(blob, pointer.parent), pointer)
    # no trailing newline: some huggingface_hub versions read the ref without stripping it
    write_text(repo / "refs" / ref, commit)
    return snapshot


def _link_atomic(target: str, link: Path) -> None:
    with atomic_path(link) as tmp:
        tmp.unlink()
        tmp.symlink_to(target)
