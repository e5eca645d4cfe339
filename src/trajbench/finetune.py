"""Fine-tuning the MagVit tokenizer on the synthetic training clips (issue #10).

Losses, as in the authors' Open-MAGVIT2 training without its perceptual and adversarial parts (LPIPS needs network
weights): reconstruction (L1 or L2 in the model's [-1, 1] range), the LFQ commitment term and the two LFQ entropy terms
(`lfq_losses`)::

    total = recon + commitment_weight * commitment + sample_entropy_weight * sample_entropy
            - codebook_entropy_weight * codebook_entropy

The loss defaults of `FinetuneConfig` are the authors' (Open-MAGVIT2 ``VQLPIPSWithDiscriminator`` and ``LFQ``): L1
reconstruction, commitment weight 0.25, entropy terms weighted ``codebook_weight (0.1) * 1.0`` each, entropy
temperature 0.01 on logits ``2 z.c`` (entropies in nats); so are the learning rate 1e-4 and its constant schedule.
They train with Adam (no weight decay); here AdamW, whose decay (default 0) applies to weight matrices and kernels
only, never to biases or norm scales. The learning rate rises linearly over ``warmup_steps`` (a gentle start for
pretrained weights) and then stays constant. The EMA decay defaults to 0.999 (the authors: 0.9999, for runs of
hundreds of thousands of steps), with their warm-up ``min(decay, (1 + n) / (10 + n))`` after n updates.

`train` runs the loop (AdamW, gradient clipping, an EMA of the weights with the authors' decay warm-up, autocast on
CUDA) and can resume from a state file; `write_outputs` writes the checkpoint in the authors' layout (readable by
`trajbench.checkpoint_magvit.load_checkpoint`), the history CSV, the curves PNG and a JSON summary.

Determinism: batches come from a stateless sampler (the clips of step s depend only on the seed and s), and nothing
else draws random numbers, so on the CPU the same inputs give the same bytes, and a run resumed from a state file
gives the same bytes as one that was never interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from trajbench import io, metrics
from trajbench.checkpoint_magvit import save_checkpoint
from trajbench.logs import Progress
from trajbench.modeling_magvit import MagvitConfig, MagvitTokenizer, lfq, to_model_range, to_uint8
from trajbench.runtime import autocast

RECONSTRUCTION_LOSSES = ("l1", "l2")
INITS = ("pretrained", "random")
# Keys of the `finetune:` config block that steer the workflow, not the training; accepted and not stored.
WIRING_KEYS = ("enabled", "init_from", "data")
# The authors split the 18 LFQ bits into two 9-bit sub-codebooks (``factorized_bits: [9, 9]``).
MAX_GROUP_BITS = 9
STATE_FORMAT = 1
# History columns that measure wall-clock time: they differ between otherwise identical runs.
TIMING_COLUMNS = ("seconds",)
HISTORY_COLUMNS = ("step", "lr", "loss", "reconstruction", "commitment", "sample_entropy", "codebook_entropy",
                   "psnr_db", "code_fraction", "code_entropy_bits", "grad_norm", *TIMING_COLUMNS)


# ---------------------------------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class FinetuneConfig:
    """The training settings (config block ``finetune:``); the defaults are explained in the module docstring."""

    steps: int = 2000
    batch_size: int = 2  # the full model at 17x128x128: ~40 GB of GPU memory at 2 clips, ~134 GB at 8
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100  # linear warm-up from learning_rate / warmup_steps, then constant
    grad_clip: float = 1.0  # max global gradient norm
    ema_decay: float = 0.999
    reconstruction_loss: str = "l1"
    commitment_weight: float = 0.25
    sample_entropy_weight: float = 0.1
    codebook_entropy_weight: float = 0.1
    entropy_temperature: float = 0.01
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 200  # steps between resume states; 0 = never

    def __post_init__(self) -> None:
        problems = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "int" and not _is_int(value):
                problems.append(f"{field.name}={value!r} must be an integer")
            elif field.type == "float" and not _is_number(value):
                hint = " (YAML reads 1e-4 as text: write 1.0e-4)" if isinstance(value, str) else ""
                problems.append(f"{field.name}={value!r} must be a finite number{hint}")
        if not problems:  # range checks need the right types
            problems += [message for ok, message in self._range_checks() if not ok]
        if self.reconstruction_loss not in RECONSTRUCTION_LOSSES:
            problems.append(f"reconstruction_loss={self.reconstruction_loss!r} must be one of "
                            f"{list(RECONSTRUCTION_LOSSES)}")
        if problems:
            raise ValueError("invalid finetune config: " + "; ".join(problems))

    def _range_checks(self) -> list[tuple[bool, str]]:
        return [
            (self.steps >= 1, f"steps={self.steps} must be >= 1"),
            (self.batch_size >= 1, f"batch_size={self.batch_size} must be >= 1"),
            (self.learning_rate > 0, f"learning_rate={self.learning_rate} must be > 0"),
            (self.weight_decay >= 0, f"weight_decay={self.weight_decay} must be >= 0"),
            (self.warmup_steps >= 0, f"warmup_steps={self.warmup_steps} must be >= 0"),
            (self.grad_clip > 0, f"grad_clip={self.grad_clip} must be > 0 (the max gradient norm)"),
            (0 <= self.ema_decay < 1, f"ema_decay={self.ema_decay} must be in [0, 1)"),
            (self.commitment_weight >= 0, f"commitment_weight={self.commitment_weight} must be >= 0"),
            (self.sample_entropy_weight >= 0, f"sample_entropy_weight={self.sample_entropy_weight} must be >= 0"),
            (self.codebook_entropy_weight >= 0,
             f"codebook_entropy_weight={self.codebook_entropy_weight} must be >= 0"),
            (self.entropy_temperature > 0, f"entropy_temperature={self.entropy_temperature} must be > 0"),
            (self.seed >= 0, f"seed={self.seed} must be >= 0"),
            (self.log_every >= 1, f"log_every={self.log_every} must be >= 1"),
            (self.checkpoint_every >= 0, f"checkpoint_every={self.checkpoint_every} must be >= 0 (0 = never)"),
        ]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FinetuneConfig:
        """Build from the whole ``config["finetune"]`` block; missing keys take the defaults.

        The workflow keys ``enabled``, ``init_from`` and ``data`` are accepted and not stored (``init_from`` must
        still be one of "pretrained"/"random"); any other unknown key is an error.
        """
        values = dict(values)
        init_from = values.get("init_from", INITS[0])
        if init_from not in INITS:
            raise ValueError(f"invalid finetune config: init_from={init_from!r} must be one of {list(INITS)}")
        for key in WIRING_KEYS:
            values.pop(key, None)
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"invalid finetune config: unknown keys {unknown}; known keys are "
                             f"{known + list(WIRING_KEYS)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value)


# ---------------------------------------------------------------------------------------------------------------------
# LFQ training losses


class LfqTerms(NamedTuple):
    """The quantizer's part of one training step (losses are float32 scalars; entropies in nats)."""

    quantized: torch.Tensor  # +/-1 values with the latent's gradient (straight-through estimator)
    indices: torch.Tensor  # token indices (B, T', H', W'), as lfq
    commitment: torch.Tensor  # mean squared distance of the latent to its (detached) code
    sample_entropy: torch.Tensor  # mean over positions of the entropy of each position's code distribution
    codebook_entropy: torch.Tensor  # entropy of the batch-averaged code distribution, summed over bit groups


def lfq_losses(latent: torch.Tensor, temperature: float, max_group_bits: int = MAX_GROUP_BITS) -> LfqTerms:
    """LFQ of a (B, C, T, H, W) latent with the training losses; computed in float32 whatever the latent's dtype.

    The soft code distribution of a position with latent z is the softmax over the codebook {-1, +1}^C of
    ``-||z - c||^2 / temperature`` (the authors' ``2 z.c / temperature``, the same up to a constant). It factorizes
    exactly into independent bits, ``P(c_k = +1) = sigmoid(4 z_k / temperature)``, so the per-sample entropy is the
    sum of C binary entropies: exact, without the 2^C-way softmax.

    The entropy of the batch-averaged distribution does not factorize. It is computed exactly per group of at most
    ``max_group_bits`` bits (the 2^g-way averaged distribution of each group, from the per-bit probabilities) and
    the group entropies are summed: the authors' factorized sub-codebooks (18 bits as 9 + 9). With one group covering
    all bits it is the exact codebook entropy; with several it is an upper bound (entropy is subadditive) that is
    maximal exactly when each group's codes are used uniformly.
    """
    latent = latent.float()
    hard, indices = lfq(latent)
    quantized = latent + (hard - latent).detach()
    commitment = F.mse_loss(latent, hard.detach())
    logits = 4.0 * latent.movedim(1, -1).reshape(-1, latent.shape[1]) / temperature  # (positions, C)
    return LfqTerms(quantized, indices, commitment, sample_entropy(logits), codebook_entropy(logits, max_group_bits))


def sample_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean over rows of the entropy (nats) of independent bits with P(bit) = sigmoid(logit); ``logits`` (N, C)."""
    p = torch.sigmoid(logits)
    # -p log p - (1 - p) log(1 - p), written with softplus so that saturated bits give exactly 0, never NaN.
    per_bit = p * F.softplus(-logits) + (1.0 - p) * F.softplus(logits)
    return per_bit.sum(dim=1).mean()


def codebook_entropy(logits: torch.Tensor, max_group_bits: int = MAX_GROUP_BITS) -> torch.Tensor:
    """Sum over bit groups of the entropy (nats) of the row-averaged code distribution; see `lfq_losses`."""
    if max_group_bits < 1:
        raise ValueError(f"max_group_bits must be >= 1, got {max_group_bits}")
    n_bits = logits.shape[1]
    total = logits.new_zeros(())
    for group in torch.arange(n_bits, device=logits.device).tensor_split(math.ceil(n_bits / max_group_bits)):
        bits = _code_bits(len(group), logits.device)  # (2^g, g), bit k of code j, bit 0 least significant
        log_on, log_off = F.logsigmoid(logits[:, group]), F.logsigmoid(-logits[:, group])
        log_probs = log_on @ bits.T + log_off @ (1.0 - bits).T  # (N, 2^g): log P(code) per row
        avg = log_probs.exp().mean(dim=0)
        # Clamped inside the log only: unused codes contribute 0 and a finite gradient.
        total = total - (avg * avg.clamp_min(torch.finfo(avg.dtype).tiny).log()).sum()
    return total


def _code_bits(n_bits: int, device: torch.device) -> torch.Tensor:
    codes = torch.arange(2**n_bits, device=device)[:, None]
    return ((codes >> torch.arange(n_bits, device=device)) & 1).float()


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean absolute ("l1") or squared ("l2") error, in float32."""
    if kind not in RECONSTRUCTION_LOSSES:
        raise ValueError(f"reconstruction_loss must be one of {list(RECONSTRUCTION_LOSSES)}, got {kind!r}")
    loss = F.l1_loss if kind == "l1" else F.mse_loss
    return loss(recon.float(), target.float())


# ---------------------------------------------------------------------------------------------------------------------
# Training


@dataclass
class FinetuneResult:
    """What `train` returns; `write_outputs` turns it into files."""

    config: FinetuneConfig
    architecture: dict[str, Any]
    raw_state: dict[str, torch.Tensor]  # trained weights, CPU
    ema_state: dict[str, torch.Tensor]  # their EMA, CPU
    ema_num_updates: int
    history: pd.DataFrame
    step: int  # steps done; config.steps when complete
    seconds: float  # training wall time, summed over resumed runs
    resumed_from: int | None  # the step a resume state brought, None for a fresh start
    device: str
    precision: str  # "float32" or the autocast dtype
    clips: int
    clip_shape: tuple[int, int, int]  # frames, height, width

    @property
    def complete(self) -> bool:
        return self.step == self.config.steps


def train(
    model: MagvitTokenizer,
    videos: np.ndarray,
    config: FinetuneConfig,
    *,
    device: str | torch.device,
    dtype: torch.dtype,
    state_path: str | os.PathLike | None = None,
    stop_after: int | None = None,
    logger: logging.Logger | None = None,
) -> FinetuneResult:
    """Fine-tune ``model`` in place on uint8 clips ``(N, T, H, W, 3)`` (a read-only memmap is fine).

    Each step takes ``batch_size`` clips: every epoch is a permutation of the clips drawn from (seed, epoch), cut
    into ``N // batch_size`` batches (the remainder waits for another epoch). On CUDA the forward pass runs under
    autocast in ``dtype`` (float16 with a gradient scaler); on the CPU ``dtype`` must be float32. The losses, the
    optimizer and the EMA stay in float32.

    With ``state_path``, a resume state is written there (atomically) every ``checkpoint_every`` steps, and a state
    found there at the start is continued if it was made for the same config, architecture, initial weights,
    training data, device type and precision; otherwise training starts fresh (the log says why). ``stop_after``
    ends the run after that many steps in all, as an interruption would (the result is then not complete).

    Returns the trained and EMA weights, the history (a row at step 1, whose batch PSNR is the initial weights',
    every ``log_every`` steps and at the last step) and the run's facts; the model is left on ``device`` with the
    trained (raw) weights, in eval mode.
    """
    logger = logger or logging.getLogger(__name__)
    arch = model.config
    _check_videos(videos, arch, config.batch_size)
    device = torch.device(device)
    precision = autocast(device, dtype)  # refuses half precision on the CPU
    amp_dtype = None if isinstance(precision, contextlib.nullcontext) else dtype
    precision_name = "float32" if amp_dtype is None else str(amp_dtype).removeprefix("torch.")
    fingerprint = _fingerprint(model, videos, config, device.type, precision_name)

    model.to(device).train().requires_grad_(True)
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(_warmup, steps=config.warmup_steps))
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    ema = {key: value.detach().clone() for key, value in model.state_dict().items()}
    step, ema_updates, rows, seconds, resumed_from = 0, 0, [], 0.0, None

    state = _read_state(state_path, fingerprint, logger)
    if state is not None:
        model.load_state_dict(state["model"])
        for key, value in state["ema"].items():
            ema[key].copy_(value)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None:
            scaler.load_state_dict(state["scaler"])
        step = resumed_from = state["step"]
        ema_updates, rows, seconds = state["ema_num_updates"], list(state["history"]), state["seconds"]

    end = config.steps if stop_after is None else min(config.steps, stop_after)
    logger.info("magvit finetune: steps %d..%d of %d, batch %d of %d clips %s, %s on %s", step, end, config.steps,
                config.batch_size, len(videos), videos.shape[1:4], precision_name, device)
    progress = Progress(max(end - step, 0), "magvit finetune", logger, unit="steps")
    started = time.perf_counter() - seconds
    while step < end:
        batch = np.asarray(videos[_batch_indices(step, len(videos), config.batch_size, config.seed)])
        target = to_model_range(torch.from_numpy(batch).to(device))  # convert on the device
        recon, terms, losses, total = _forward(model, target, config, precision)
        if not torch.isfinite(total):
            raise FloatingPointError(
                f"magvit finetune: the loss is {total.item()} at step {step + 1} ({_items(losses)}); lower "
                "finetune.learning_rate or finetune.grad_clip, or raise finetune.warmup_steps"
            )
        lr = optimizer.param_groups[0]["lr"]
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            total.backward()
        else:
            scaler.scale(total).backward()
            scaler.unscale_(optimizer)  # clip the true gradients
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)  # skipped when the scaled gradients overflowed
            scaler.update()
        scheduler.step()
        ema_updates += 1
        _update_ema(ema, model, min(config.ema_decay, (1 + ema_updates) / (10 + ema_updates)))
        step += 1
        if step == 1 or step % config.log_every == 0 or step == config.steps:
            row = {"step": step, "lr": lr, "loss": total.item(), **_items(losses)}
            row.update(_batch_quality(batch, recon, terms.indices, arch.codebook_size))
            row.update(grad_norm=grad_norm.item(), seconds=time.perf_counter() - started)
            rows.append(row)
            logger.info("step %d/%d: loss %.4f, PSNR %.2f dB, %.1f%% distinct codes", step, config.steps,
                        row["loss"], row["psnr_db"], 100 * row["code_fraction"])
        if state_path is not None and config.checkpoint_every and step % config.checkpoint_every == 0:
            _write_state(state_path, {
                "format": STATE_FORMAT, "fingerprint": fingerprint, "step": step, "model": _cpu(model.state_dict()),
                "ema": _cpu(ema), "ema_num_updates": ema_updates, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": None if scaler is None else scaler.state_dict(),
                "history": rows, "seconds": time.perf_counter() - started,
            })
        progress.update(1)

    model.eval()
    return FinetuneResult(
        config=config, architecture=arch.to_dict(), raw_state=_cpu(model.state_dict()), ema_state=_cpu(ema),
        ema_num_updates=ema_updates, history=pd.DataFrame(rows, columns=HISTORY_COLUMNS), step=step,
        seconds=time.perf_counter() - started, resumed_from=resumed_from, device=str(device),
        precision=precision_name, clips=len(videos), clip_shape=tuple(int(n) for n in videos.shape[1:4]),
    )


def _forward(model: MagvitTokenizer, target: torch.Tensor, config: FinetuneConfig,
             precision: contextlib.AbstractContextManager
             ) -> tuple[torch.Tensor, LfqTerms, dict[str, torch.Tensor], torch.Tensor]:
    """One forward pass: (reconstruction, LFQ terms, the unweighted losses, the weighted total).

    The encoder and decoder run under ``precision``; the quantizer and the losses in float32.
    """
    with precision:
        latent = model.encoder(target)
    terms = lfq_losses(latent, config.entropy_temperature)
    with precision:
        recon = model.decoder(terms.quantized)
    losses = {
        "reconstruction": reconstruction_loss(recon, target, config.reconstruction_loss),
        "commitment": terms.commitment,
        "sample_entropy": terms.sample_entropy,
        "codebook_entropy": terms.codebook_entropy,
    }
    total = (losses["reconstruction"] + config.commitment_weight * losses["commitment"]
             + config.sample_entropy_weight * losses["sample_entropy"]
             - config.codebook_entropy_weight * losses["codebook_entropy"])
    return recon, terms, losses, total


def _check_videos(videos: np.ndarray, arch: MagvitConfig, batch_size: int) -> None:
    if videos.dtype != np.uint8 or videos.ndim != 5 or videos.shape[-1] != arch.in_channels:
        raise ValueError(f"finetune expects uint8 training clips (N, T, H, W, {arch.in_channels}), got "
                         f"{videos.dtype} {videos.shape}")
    arch.latent_frames(videos.shape[1])  # raises with the valid frame counts
    if videos.shape[2] % arch.spatial_compression or videos.shape[3] % arch.spatial_compression:
        raise ValueError(f"MagVit needs height and width divisible by {arch.spatial_compression}, got "
                         f"{videos.shape[2]}x{videos.shape[3]}")
    if batch_size > len(videos):
        raise ValueError(f"finetune.batch_size={batch_size} is larger than the training set ({len(videos)} clips); "
                         "lower it or render more training clips (finetune.data.videos_per_class)")


def _batch_indices(step: int, n_clips: int, batch_size: int, seed: int) -> np.ndarray:
    """The clips of step ``step``: a function of its arguments only, so a resumed run needs no sampler state."""
    epoch, position = divmod(step, n_clips // batch_size)
    order = np.random.default_rng([seed, epoch]).permutation(n_clips)
    return order[position * batch_size:(position + 1) * batch_size]


def _warmup(step: int, steps: int) -> float:
    """Learning-rate factor of optimizer step ``step`` (0-based): linear up to 1 over ``steps`` steps, then 1."""
    return min(1.0, (step + 1) / steps) if steps else 1.0


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weight matrices and kernels; none on biases and norm scales (1-D parameters)."""
    params = list(model.parameters())
    return [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]


@torch.no_grad()
def _update_ema(ema: dict[str, torch.Tensor], model: torch.nn.Module, decay: float) -> None:
    for key, value in model.state_dict().items():
        ema[key].lerp_(value, 1.0 - decay)


def _items(losses: Mapping[str, torch.Tensor]) -> dict[str, float]:
    return {name: value.item() for name, value in losses.items()}


def _batch_quality(batch: np.ndarray, recon: torch.Tensor, indices: torch.Tensor, codebook_size: int
                   ) -> dict[str, float]:
    """Mean per-clip PSNR (dB, identical clips capped as in `metrics`) and the batch's codebook usage."""
    pixels = to_uint8(recon.detach()).cpu().numpy().astype(np.float64)
    mse = ((pixels - batch) ** 2).reshape(len(batch), -1).mean(axis=1)
    psnr, _ = metrics.cap_psnr(np.array([metrics.psnr_from_mse_uint8(m) for m in mse]))
    usage = metrics.codebook_usage(indices.cpu().numpy(), codebook_size)
    return {"psnr_db": float(psnr.mean()), "code_fraction": usage["distinct"] / usage["n_tokens"],
            "code_entropy_bits": float(np.log2(usage["perplexity"]))}


def _cpu(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().clone() for key, value in state.items()}


# ---------------------------------------------------------------------------------------------------------------------
# Resume state


def _fingerprint(model: torch.nn.Module, videos: np.ndarray, config: FinetuneConfig, device_type: str,
                 precision: str) -> str:
    """Hash of everything a resume state must share with the run that continues it.

    ``checkpoint_every`` is left out: changing how often states are written does not change the training.
    """
    weights = hashlib.sha256()
    for key, value in model.state_dict().items():
        weights.update(key.encode())
        weights.update(value.detach().cpu().contiguous().numpy().data)
    data = hashlib.sha256()
    for start in range(0, len(videos), 64):  # chunks: a memmap stays on disk
        data.update(np.ascontiguousarray(videos[start:start + 64]).data)
    training = {key: value for key, value in config.to_dict().items() if key != "checkpoint_every"}
    facts = {"format": STATE_FORMAT, "config": training, "architecture": model.config.to_dict(),
             "initial_weights": weights.hexdigest(), "data": [data.hexdigest(), list(videos.shape)],
             "device": device_type, "precision": precision}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def _write_state(path: str | os.PathLike, state: dict[str, Any]) -> None:
    # Through an open handle, as save_checkpoint: the same state gives the same bytes.
    with io.atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(state, handle)


def _read_state(path: str | os.PathLike | None, fingerprint: str, logger: logging.Logger) -> dict[str, Any] | None:
    """The resume state at ``path`` if it is readable and made for this run, else None (logged)."""
    if path is None or not Path(path).exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        found, step = state["fingerprint"], int(state["step"])
    except Exception as err:  # noqa: BLE001 - a damaged file fails in many ways; every one means: start fresh
        logger.warning("resume state %s is unreadable (%s: %s); starting fresh", path, type(err).__name__,
                       str(err).strip().splitlines()[0] if str(err).strip() else "")
        return None
    if found != fingerprint:
        logger.warning("resume state %s was made for another config, architecture, initial weights, training data "
                       "or device/precision; starting fresh", path)
        return None
    logger.info("resuming from %s at step %d", path, step)
    return state


# ---------------------------------------------------------------------------------------------------------------------
# Outputs


def write_outputs(
    result: FinetuneResult,
    *,
    checkpoint: str | os.PathLike,
    history: str | os.PathLike,
    curves: str | os.PathLike,
    meta: str | os.PathLike,
    init_from: str,
    state_path: str | os.PathLike | None = None,
) -> None:
    """Write the checkpoint (authors' layout, raw + EMA weights), history CSV, curves PNG and JSON summary, each
    atomically; then delete the resume state, which is no longer needed."""
    if not result.complete:
        raise ValueError(f"finetune stopped at step {result.step} of {result.config.steps}: the run is not complete; "
                         "run it again with the same state_path to finish it")
    save_checkpoint(checkpoint, result.raw_state, result.ema_state, ema_decay=result.config.ema_decay,
                           ema_num_updates=result.ema_num_updates)
    io.write_csv(history, result.history, float_format=None)
    plot_history(result.history, curves, title=f"MagVit fine-tuning from {init_from} weights")
    io.write_json(meta, summary(result, init_from))
    if state_path is not None:
        Path(state_path).unlink(missing_ok=True)


def summary(result: FinetuneResult, init_from: str) -> dict[str, Any]:
    """The facts of a run, for the JSON next to the checkpoint."""
    first, last = result.history.iloc[0], result.history.iloc[-1]
    frames, height, width = result.clip_shape
    return {
        "init_from": init_from, "steps": result.step, "batch_size": result.config.batch_size, "clips": result.clips,
        "frames": frames, "height": height, "width": width, "seconds": round(result.seconds, 3),
        "resumed_from_step": result.resumed_from, "device": result.device, "dtype": result.precision,
        "seed": result.config.seed, "ema_num_updates": result.ema_num_updates,
        "initial": {"step": int(first["step"]), "loss": float(first["loss"]), "psnr_db": float(first["psnr_db"])},
        "final": {"step": int(last["step"]), "loss": float(last["loss"]), "psnr_db": float(last["psnr_db"])},
        "config": result.config.to_dict(), "architecture": result.architecture,
    }


def plot_history(history: pd.DataFrame, path: str | os.PathLike, title: str = "MagVit fine-tuning") -> None:
    """Loss terms, batch PSNR and codebook usage against the step, as a PNG."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no backend to choose

    fig = Figure(figsize=(11, 7.5), layout="constrained")
    (loss_ax, lfq_ax), (psnr_ax, codes_ax) = fig.subplots(2, 2, sharex=True)
    step = history["step"]
    loss_ax.plot(step, history["loss"], label="total")
    loss_ax.plot(step, history["reconstruction"], label="reconstruction")
    loss_ax.set(ylabel="loss", title="training loss")
    for column, label in (("commitment", "commitment"), ("sample_entropy", "per-sample entropy (nats)"),
                          ("codebook_entropy", "codebook entropy (nats)")):
        lfq_ax.plot(step, history[column], label=label)
    lfq_ax.set(ylabel="value", title="LFQ terms (unweighted)")
    psnr_ax.plot(step, history["psnr_db"], color="tab:green")
    psnr_ax.set(xlabel="step", ylabel="PSNR (dB)", title="reconstruction PSNR of the training batch")
    codes_ax.plot(step, 100 * history["code_fraction"], label="distinct codes (% of positions)")
    codes_ax.set(xlabel="step", ylabel="distinct codes (% of positions)", title="codebook usage in the batch")
    bits_ax = codes_ax.twinx()
    bits_ax.plot(step, history["code_entropy_bits"], color="tab:red", label="code entropy (bits)")
    bits_ax.set_ylabel("code entropy (bits)")
    for ax in (loss_ax, lfq_ax):
        ax.legend(fontsize=8)
    codes_ax.legend(handles=codes_ax.get_lines() + bits_ax.get_lines(), fontsize=8, loc="lower right")
    for ax in (loss_ax, lfq_ax, psnr_ax, codes_ax):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
