"""Checkpoint I/O for the MagVit tokenizer of ``trajbench.modeling_magvit``, in the authors' Lightning layout.

A checkpoint is ``{"state_dict": {...}}`` holding the raw weights under the module keys, then the EMA block: its
bookkeeping (``model_ema.decay``, ``model_ema.num_updates``) and the EMA weights under dot-less names
(``model_ema.encoderconv_inconv_1weight``). Loading is strict and memory-mapped; every way a file can fail to fit
raises :class:`CheckpointError` with a message that names the file and the remedy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from trajbench import io
from trajbench.modeling_magvit import MagvitConfig, MagvitTokenizer

logger = logging.getLogger(__name__)

# Entries of the authors' EMA block that are not weights.
EMA_PREFIX = "model_ema."
EMA_BOOKKEEPING = ("decay", "num_updates")
ZIP_MAGIC = b"PK\x03\x04"


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or does not fit the model; the message names the file and the remedy."""


def ema_name(key: str) -> str:
    """The authors' EMA entry for a module key: ``encoder.conv_in.conv_1.weight`` -> ``model_ema.encoderconv_in...``."""
    return EMA_PREFIX + key.replace(".", "")


def save_checkpoint(
    path: str | os.PathLike,
    model_or_state_dict: nn.Module | Mapping[str, torch.Tensor],
    ema_state_dict: Mapping[str, torch.Tensor] | None = None,
    *,
    ema_decay: float = 0.999,
    ema_num_updates: int = 0,
) -> None:
    """Write a checkpoint in the authors' Lightning layout, atomically.

    ``{"state_dict": {<module key>: raw weight, ..., "model_ema.decay", "model_ema.num_updates",
    "model_ema.<dot-less key>": EMA weight, ...}}``. Without ``ema_state_dict`` the EMA block is a copy of the raw
    weights (stored separately, as in the real file, so the file is twice the size of one set of weights).
    """
    raw = model_or_state_dict.state_dict() if isinstance(model_or_state_dict, nn.Module) else model_or_state_dict
    raw = {key: value.detach().cpu() for key, value in raw.items()}
    if ema_state_dict is None:
        ema = {key: value.clone() for key, value in raw.items()}
    else:
        ema = {key: value.detach().cpu() for key, value in ema_state_dict.items()}
        if set(ema) != set(raw):
            raise ValueError(
                f"save_checkpoint({path}): EMA keys differ from the weights' keys: only in weights "
                f"{sorted(set(raw) - set(ema))}, only in EMA {sorted(set(ema) - set(raw))}"
            )
    # The authors' EMA module registers decay and num_updates before the weights.
    state = dict(raw)
    state[EMA_PREFIX + "decay"] = torch.tensor(ema_decay, dtype=torch.float32)
    state[EMA_PREFIX + "num_updates"] = torch.tensor(ema_num_updates, dtype=torch.int32)
    state.update((ema_name(key), ema[key]) for key in raw)
    # Through an open handle: given a path, torch.save names the zip's inner folder after the (random) temporary
    # file, and the same weights would give other bytes each time.
    with io.atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save({"state_dict": state}, handle)


def load_checkpoint(
    path: str | os.PathLike,
    config: MagvitConfig | None = None,
    weights: str = "ema",
    safe_globals: Iterable[Any] = (),
) -> MagvitTokenizer:
    """Load an Open-MAGVIT2 video checkpoint (the authors' file or one from ``save_checkpoint``) in eval mode.

    ``config`` defaults to ``MagvitConfig.full()``. ``weights="ema"`` (what the authors run inference with) or
    ``"raw"``. The EMA block may be flat (``model_ema.<dot-less key>``) or nested (``state_dict["model_ema"]``).
    Loading is strict for the chosen weight set (missing, unexpected or mis-shaped entries are errors); the other set
    is not read. Floating tensors that are not float32 are converted to float32.

    The file is opened with ``weights_only=True`` (no code runs while unpickling) and memory-mapped: the model is
    built on the meta device and takes the mapped tensors as its parameters, so no second copy of the weights is
    made and only the chosen set is ever paged in. ``safe_globals`` allowlists extra pickled types (e.g. a
    Lightning ``hyper_parameters`` class) for this one load; pass only types you trust to be harmless.
    """
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}")
    config = MagvitConfig.full() if config is None else config
    path = Path(path)
    checkpoint = _read(path, list(safe_globals))
    with torch.device("meta"):
        model = MagvitTokenizer(config)
    model.load_state_dict(_matching_weights(path, checkpoint, model, weights), strict=True, assign=True)
    logger.info("loaded %s weights from %s (config %s)", weights, path, config.to_dict())
    return model.eval()


def _read(path: Path, safe_globals: list) -> Any:
    with open(path, "rb") as handle:
        head = handle.read(len(ZIP_MAGIC))
    size = path.stat().st_size
    if head != ZIP_MAGIC:
        raise CheckpointError(
            f"{path} ({size} bytes) is not a PyTorch checkpoint: it does not start like torch.save's zip format "
            f"(first bytes {head!r}). Point the config at the .ckpt file, or delete it and rerun the download; a file "
            "saved by torch < 1.6 (legacy format) must be re-saved with a current torch.save."
        )
    try:
        with _allowing(safe_globals):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError) as err:
        reason = _torch_reason(err)
        rejected = re.search(r"GLOBAL ([\w.]+)", reason) if isinstance(err, pickle.UnpicklingError) else None
        if rejected is None:
            raise CheckpointError(
                f"{path} ({size} bytes) cannot be read as a PyTorch checkpoint; it is probably truncated (an "
                f"interrupted download or copy) or corrupted. Delete it and rerun the download. (torch: {reason})"
            ) from err
        name = rejected.group(1)
        raise CheckpointError(
            f"{path} contains a pickled object of type {name} besides tensors (e.g. Lightning hyper_parameters); "
            "it is not unpickled because that could run arbitrary code. If you trust the file and that type is "
            f"harmless, pass safe_globals=[{name}] to load_checkpoint; or, in a trusted session, load it once with "
            "torch.load(weights_only=False) and write only its weights with "
            f"trajbench.checkpoint_magvit.save_checkpoint. (torch: {reason})"
        ) from err


def _torch_reason(err: Exception) -> str:
    """The informative line of a torch.load error (its weights-only messages end with generic advice)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [repr(err)]
    return next((line for line in lines if "WeightsUnpickler error" in line), lines[-1])


def _allowing(types: list) -> contextlib.AbstractContextManager:
    """Allowlist ``types`` for one torch.load: scoped where torch has ``safe_globals`` (>= 2.5), else global."""
    if not types:
        return contextlib.nullcontext()
    if hasattr(torch.serialization, "safe_globals"):
        return torch.serialization.safe_globals(types)
    torch.serialization.add_safe_globals(types)
    return contextlib.nullcontext()


def _matching_weights(path: Path, checkpoint: Any, model: nn.Module, weights: str) -> dict[str, torch.Tensor]:
    """The chosen weight set under the model's keys; raises CheckpointError unless it matches key for key."""
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("state_dict"), Mapping):
        found = sorted(map(str, checkpoint))[:20] if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise CheckpointError(
            f"{path} is not a Lightning checkpoint of the MagVit tokenizer: expected a dict with a 'state_dict' dict, "
            f"found {found}. Point the config at the authors' video_128_262144.ckpt or a file from save_checkpoint."
        )
    state = checkpoint["state_dict"]
    expected = model.state_dict()
    ema_block = EMA_PREFIX.rstrip(".")
    if weights == "raw":
        entries = {k: v for k, v in state.items() if not (k.startswith(EMA_PREFIX) or k == ema_block)}
        source = {key: key for key in expected}
    else:
        nested = state.get(ema_block)
        if isinstance(nested, Mapping):
            entries = {EMA_PREFIX + k: v for k, v in nested.items()}
        else:
            entries = {k: v for k, v in state.items() if k.startswith(EMA_PREFIX)}
        for name in EMA_BOOKKEEPING:
            entries.pop(EMA_PREFIX + name, None)
        if not entries:
            raise CheckpointError(
                f"{path} holds no EMA weights (no 'model_ema.*' entries, no nested 'model_ema' dict). Load its raw "
                "weights with weights='raw' (tokenize.weights: raw), or use a checkpoint that has EMA weights."
            )
        # The dot-less names are mapped back through the model's own keys, which must not collide.
        source = {key: ema_name(key) for key in expected}
        if len(set(source.values())) != len(source):
            raise CheckpointError(
                f"{path}: the dot-less EMA names of {model.config.to_dict()} collide; load it with weights='raw'"
            )
    by_source = {name: key for key, name in source.items()}
    missing = [source[key] for key in expected if source[key] not in entries]
    unexpected = [name for name in entries if name not in by_source]
    misshaped = [
        f"{name}: file {_describe(value)}, model {tuple(expected[by_source[name]].shape)}"
        for name, value in entries.items()
        if name in by_source
        and not (
            isinstance(value, torch.Tensor)
            and value.is_floating_point()
            and value.shape == expected[by_source[name]].shape
        )
    ]
    if missing or unexpected or misshaped:
        problems = [
            f"{len(items)} {what}: {_listing(items)}"
            for what, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
            if items
        ]
        raise CheckpointError(
            f"{path}: the {weights} weights do not match the MagVit architecture {model.config.to_dict()}; "
            + "; ".join(problems)
            + ". Pass the config the checkpoint was made with (models.magvit.architecture), or the right file."
        )
    return {by_source[name]: value.float() for name, value in entries.items()}


def _describe(value: Any) -> str:
    if not isinstance(value, torch.Tensor):
        return f"a {type(value).__name__}, not a tensor"
    return str(tuple(value.shape)) + ("" if value.is_floating_point() else f" of {value.dtype}, not floating point")


def _listing(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
