"""The Open-MAGVIT2 video tokenizer: a causal 3D-convolutional autoencoder with a lookup-free quantizer (LFQ).

Open-MAGVIT2 is the work of Zhuoyan Luo, Fengyuan Shi, Yixiao Ge, Yujiu Yang, Limin Wang and Ying Shan:
"Open-MAGVIT2: An Open-Source Project Toward Democratizing Auto-regressive Visual Generation", arXiv:2409.04410
(2024); code at https://github.com/TencentARC/Open-MAGVIT2, under the Apache License 2.0 per the repository's
LICENSE file.

This file is the project's own re-implementation of that architecture, not a copy of the authors' code. It is
compatible with the public checkpoint ``video_128_262144.ckpt`` (``TencentARC/Open-MAGVIT2-Tokenizer-262144-Video``):
module names equal the checkpoint's state-dict keys, so the file loads unchanged (``trajbench.checkpoint_magvit``
reads and writes it). Golden tests (``tests/test_magvit.py``) pin the outputs against the authors' model.

What the re-implementation relies on:

- every convolution is causal in time (frames are padded in front only), so frame t never sees later frames;
- the encoder halves height and width at each level but the last, and time too on levels whose ``ch_mult`` is not 1;
  a clip of ``T = 1 + k * temporal_compression`` frames becomes a latent of ``1 + k`` frames;
- LFQ quantizes each latent channel to +1/-1 by its sign (0 counts as negative); the token index packs the signs
  as bits, channel 0 least significant, for a codebook of ``2**z_channels`` codes;
- the decoder mirrors the encoder with depth-to-space upsampling (dropping the second output frame keeps it causal),
  and each level starts with a GroupNorm modulated by the mean and standard deviation of the quantized latent.

Shapes: videos are ``(B, C, T, H, W)`` floats in [-1, 1]; the latent has ``H / spatial_compression`` rows and
columns and ``z_channels`` channels. Read top to bottom: config, building blocks, encoder and decoder, quantizer and
tokenizer (with its random init and cost estimate), pixel conversion.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Every GroupNorm of the architecture, adaptive ones included.
NORM_GROUPS = 32
NORM_EPS = 1e-6


@dataclass(frozen=True)
class MagvitConfig:
    """Architecture hyper-parameters, named as in the authors' config (``double_z`` is always false there)."""

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 4
    z_channels: int = 18
    in_channels: int = 3
    out_ch: int = 3
    resolution: int = 128

    def __post_init__(self) -> None:
        object.__setattr__(self, "ch_mult", tuple(int(m) for m in self.ch_mult))
        problems = []
        if not self.ch_mult or min(self.ch_mult) < 1:
            problems.append(f"ch_mult={list(self.ch_mult)} must be a non-empty list of positive integers")
        elif any(self.ch * m % NORM_GROUPS for m in self.ch_mult):
            problems.append(f"every ch * ch_mult[i] must be divisible by {NORM_GROUPS} (GroupNorm groups)")
        for name in ("ch", "num_res_blocks", "z_channels", "in_channels", "out_ch", "resolution"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} must be >= 1")
        if self.z_channels > 31:
            problems.append(f"z_channels={self.z_channels} must be <= 31 (token indices are stored as int32)")
        if self.resolution % self.spatial_compression:
            problems.append(f"resolution={self.resolution} must be divisible by {self.spatial_compression}")
        if problems:
            raise ValueError(f"invalid MagVit config {self.to_dict()}: " + "; ".join(problems))

    @classmethod
    def full(cls) -> MagvitConfig:
        """The config of the public checkpoint (video_128_262144.ckpt)."""
        return cls()

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> MagvitConfig:
        """Build from a (possibly partial) dict; missing keys take the full model's values."""
        values = dict(values)
        if values.pop("double_z", False):
            raise ValueError("MagVit config: double_z=true is not supported (the video tokenizer uses double_z=false)")
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            known = [f.name for f in dataclasses.fields(cls)]
            raise ValueError(f"MagVit config: unknown keys {unknown}; known keys are {known}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["ch_mult"] = list(self.ch_mult)
        return values

    @property
    def temporal_strides(self) -> tuple[int, ...]:
        """Time stride of each encoder downsample (levels 0..L-2): 1 on levels whose ch_mult is 1, else 2."""
        return tuple(1 if m == 1 else 2 for m in self.ch_mult[:-1])

    @property
    def temporal_compression(self) -> int:
        return 2 ** sum(s == 2 for s in self.temporal_strides)

    @property
    def spatial_compression(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def codebook_size(self) -> int:
        return 2**self.z_channels

    def valid_frames(self, frames: int) -> bool:
        """Whether a clip of ``frames`` frames round-trips: ``frames = 1 + k * temporal_compression``, k >= 0."""
        return frames >= 1 and (frames - 1) % self.temporal_compression == 0

    def latent_frames(self, frames: int) -> int:
        if not self.valid_frames(frames):
            raise ValueError(
                f"MagVit takes 1 + k*{self.temporal_compression} frames per clip (e.g. "
                f"{1 + self.temporal_compression}, {1 + 4 * self.temporal_compression}), got {frames}"
            )
        return 1 + (frames - 1) // self.temporal_compression


# ---------------------------------------------------------------------------------------------------------------------
# Building blocks


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def group_norm(channels: int, affine: bool = True) -> nn.GroupNorm:
    return nn.GroupNorm(NORM_GROUPS, channels, eps=NORM_EPS, affine=affine)


class CausalConv3d(nn.Module):
    """A cubic Conv3d that sees only past and present frames: zero padding k-1 frames in front, k//2 around H and W."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride=1, bias: bool = True):
        super().__init__()
        self.conv_1 = nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride, bias=bias)
        half = kernel_size // 2
        self.padding = (half, half, half, half, kernel_size - 1, 0)  # F.pad order: W, H, T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_1(F.pad(x, self.padding))


class ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        # Registration order = the checkpoint's key order.
        self.norm1 = group_norm(in_channels)
        self.norm2 = group_norm(out_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3, bias=False)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3, bias=False)
        self.nin_shortcut = None
        if in_channels != out_channels:
            self.nin_shortcut = CausalConv3d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        return h + (x if self.nin_shortcut is None else self.nin_shortcut(x))


def res_blocks(in_channels: int, out_channels: int, count: int) -> nn.ModuleList:
    """``count`` ResBlocks; the first changes the channels, the others keep them."""
    return nn.ModuleList(ResBlock(in_channels if j == 0 else out_channels, out_channels) for j in range(count))


def depth_to_space(x: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
    """Move channel sub-blocks into time, height and width; channels are read as (bt, bh, bw, C) in that order.

    Output frame ``t*bt + i`` takes sub-block i (rows, columns likewise). With ``bt > 1`` the second output frame is
    dropped, which keeps the decoder causal and maps T latent frames to ``bt*T - 1`` (a single frame stays single).
    """
    bt, bh, bw = block
    b, c, t, h, w = x.shape
    x = x.reshape(b, bt, bh, bw, c // (bt * bh * bw), t, h, w)
    x = x.permute(0, 4, 5, 1, 6, 2, 7, 3).reshape(b, -1, t * bt, h * bh, w * bw)
    if bt > 1:
        x = torch.cat([x[:, :, :1], x[:, :, 2:]], dim=2)
    return x


class Upsample(nn.Module):
    def __init__(self, channels: int, block: tuple[int, int, int]):
        super().__init__()
        self.block = block
        self.conv1 = CausalConv3d(channels, channels * block[0] * block[1] * block[2], 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depth_to_space(self.conv1(x), self.block)


class AdaptiveGroupNorm(nn.Module):
    """GroupNorm without affine, scaled by ``gamma(std)`` and shifted by ``beta(mean)`` of the quantized latent."""

    def __init__(self, z_channels: int, channels: int):
        super().__init__()
        self.norm = group_norm(channels, affine=False)
        self.gamma = nn.Linear(z_channels, channels)
        self.beta = nn.Linear(z_channels, channels)

    def forward(self, x: torch.Tensor, z_std: torch.Tensor, z_mean: torch.Tensor) -> torch.Tensor:
        scale = self.gamma(z_std)[:, :, None, None, None]
        shift = self.beta(z_mean)[:, :, None, None, None]
        return self.norm(x) * scale + shift


class Level(nn.Module):
    """One resolution level: ``block`` (ResBlocks), then ``downsample`` (encoder) or ``upsample`` (decoder) if any."""

    def __init__(self, blocks: nn.ModuleList, downsample: nn.Module | None = None, upsample: nn.Module | None = None):
        super().__init__()
        self.block = blocks
        self.downsample = downsample
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        for resample in (self.downsample, self.upsample):
            if resample is not None:
                x = resample(x)
        return x



# ---------------------------------------------------------------------------------------------------------------------
# Encoder and decoder


class Encoder(nn.Module):
    def __init__(self, config: MagvitConfig):
        super().__init__()
        ch, mult, n = config.ch, config.ch_mult, config.num_res_blocks
        self.conv_in = CausalConv3d(config.in_channels, ch, 3, bias=False)
        in_mult = (1,) + mult
        self.down = nn.ModuleList()
        for i, m in enumerate(mult):
            downsample = None
            if i < len(mult) - 1:
                downsample = CausalConv3d(ch * m, ch * m, 3, stride=(config.temporal_strides[i], 2, 2))
            self.down.append(Level(res_blocks(ch * in_mult[i], ch * m, n), downsample=downsample))
        self.mid_block = res_blocks(ch * mult[-1], ch * mult[-1], n)
        self.norm_out = group_norm(ch * mult[-1])
        self.conv_out = CausalConv3d(ch * mult[-1], config.z_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for level in self.down:
            x = level(x)
        for block in self.mid_block:
            x = block(x)
        return self.conv_out(swish(self.norm_out(x)))


class Decoder(nn.Module):
    def __init__(self, config: MagvitConfig):
        super().__init__()
        ch, mult, n = config.ch, config.ch_mult, config.num_res_blocks
        self.conv_in = CausalConv3d(config.z_channels, ch * mult[-1], 3)
        self.mid_block = res_blocks(ch * mult[-1], ch * mult[-1], n)
        # Level i is entered with the channels of level i+1 (the mid block's for the last level).
        in_channels = [ch * m for m in mult[1:]] + [ch * mult[-1]]
        self.up = nn.ModuleList()
        for i, m in enumerate(mult):
            upsample = None
            if i > 0:
                upsample = Upsample(ch * m, (config.temporal_strides[i - 1], 2, 2))
            self.up.append(Level(res_blocks(in_channels[i], ch * m, n), upsample=upsample))
        self.adaptive = nn.ModuleList(AdaptiveGroupNorm(config.z_channels, c) for c in in_channels)
        self.norm_out = group_norm(ch)
        self.conv_out = CausalConv3d(ch, config.out_ch, 3)

    def forward(self, quantized: torch.Tensor) -> torch.Tensor:
        # The adaptive norms condition on per-sample, per-channel statistics of the whole quantized latent.
        flat = quantized.float().flatten(2)
        z_std = (flat.var(dim=-1) + NORM_EPS).sqrt()
        z_mean = flat.mean(dim=-1)
        x = self.conv_in(quantized)
        for block in self.mid_block:
            x = block(x)
        for i in reversed(range(len(self.up))):
            x = self.up[i](self.adaptive[i](x, z_std, z_mean))
        return self.conv_out(swish(self.norm_out(x)))


# ---------------------------------------------------------------------------------------------------------------------
# Quantizer and tokenizer


def lfq(latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lookup-free quantization of a (B, C, T, H, W) latent: +1/-1 per channel by sign, and the token index
    sum_c [z_c > 0] * 2**c (int64, channel 0 least significant)."""
    bits = latent > 0
    quantized = torch.where(bits, 1.0, -1.0).to(latent.dtype)
    shifts = torch.arange(latent.shape[1], device=latent.device)[:, None, None, None]
    indices = (bits.to(torch.int64) << shifts).sum(dim=1)
    return quantized, indices


class MagvitTokenizer(nn.Module):
    """Encoder + parameter-free LFQ + decoder; ``state_dict()`` keys equal the authors' ``encoder.*``/``decoder.*``."""

    def __init__(self, config: MagvitConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def encode(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``video`` (B, C, T, H, W) in [-1, 1] -> (latent, quantized +/-1, indices int64 (B, T', H', W'))."""
        _, _, frames, height, width = video.shape
        self.config.latent_frames(frames)  # raises with the valid frame counts
        if height % self.config.spatial_compression or width % self.config.spatial_compression:
            raise ValueError(
                f"MagVit needs height and width divisible by {self.config.spatial_compression}, got {height}x{width}"
            )
        latent = self.encoder(video)
        quantized, indices = lfq(latent)
        return latent, quantized, indices

    def decode(self, quantized: torch.Tensor) -> torch.Tensor:
        """Quantized latent (B, z_channels, T', H', W') -> video (B, out_ch, T, H, W), not clamped."""
        return self.decoder(quantized)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(video)[1])


def build_model(config: MagvitConfig, seed: int) -> MagvitTokenizer:
    """The random-init baseline: PyTorch's default module initialisation, drawn after ``torch.manual_seed(seed)``.

    The draw happens in a forked RNG on the CPU, so the global RNG state is untouched and the weights are the same
    bytes on every run (move the model to another device afterwards). Returned in eval mode.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.device("cpu"):
            model = MagvitTokenizer(config)
    return model.eval()


def estimate_tflop(config: MagvitConfig, frames: int, height: int, width: int, *, encodes: int = 1,
                   decodes: int = 1) -> float:
    """Cost in TFLOP of ``encodes`` encoder and ``decodes`` decoder passes over one clip (default: one of each,
    tokenizing it), counted by ``torch.utils.flop_counter`` on the meta device (nothing is computed or allocated).
    About 4.47 (encode) + 6.19 (decode) TFLOP for a 17x128x128 clip of the full model."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = MagvitTokenizer(config)
        video = torch.empty(1, config.in_channels, frames, height, width)
    with FlopCounterMode(display=False) as encoder, torch.no_grad():
        quantized = model.encode(video)[1]
    with FlopCounterMode(display=False) as decoder, torch.no_grad():
        model.decode(quantized)
    return (encodes * encoder.get_total_flops() + decodes * decoder.get_total_flops()) / 1e12


# ---------------------------------------------------------------------------------------------------------------------
# Pixel conversion


def to_model_range(video: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (B, T, H, W, C) array or tensor -> contiguous float32 (B, C, T, H, W) in [-1, 1] (uint8 / 127.5 - 1)."""
    if isinstance(video, np.ndarray):
        video = torch.from_numpy(np.array(video))  # a copy: memory-mapped input is read-only
    if video.dtype != torch.uint8 or video.dim() != 5:
        raise ValueError(f"expected a uint8 video batch (B, T, H, W, C), got {video.dtype} {tuple(video.shape)}")
    return video.permute(0, 4, 1, 2, 3).contiguous().float() / 127.5 - 1.0


def to_uint8(recon: torch.Tensor) -> torch.Tensor:
    """Reconstruction (B, C, T, H, W) -> uint8 (B, T, H, W, C): clamp to [-1, 1], then round((x + 1) * 127.5)."""
    pixels = ((recon.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 4, 1).contiguous()
