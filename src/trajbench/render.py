"""Synthetic trajectory videos: one object moving along a class-specific path, rendered anti-aliased.

Every video depends only on ``(seed, index)``: its random generator is seeded with both, so a dataset is
byte-identical whatever the number of shards it is rendered in. Positions are continuous (sub-pixel) and the disk's
edge is anti-aliased by its exact distance to each pixel centre, so motion is smooth rather than jumping by pixels.

Coordinates: ``x`` is the column and ``y`` the row of a pixel centre, in pixels, ``y`` growing downwards (gravity
points to +y).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from trajbench import io
from trajbench.logs import Progress
from trajbench.shards import concatenate_npy

TAU = 2 * np.pi


@dataclass(frozen=True)
class DatasetConfig:
    """The ``dataset`` section of the workflow config (see config/README.md for each key)."""

    classes: tuple[str, ...]
    videos_per_class: int
    frames: int
    size: int
    seed: int
    shards: int = 1
    object_radius: tuple[float, float] = (3.0, 7.0)
    speed: tuple[float, float] = (0.6, 1.4)
    noise_std: float = 0.0
    distractors: int = 0
    trail: float = 0.0
    camera_jitter: float = 0.0
    background: str = "gradient"

    @classmethod
    def from_dict(cls, d: dict) -> "DatasetConfig":
        d = dict(d)
        for key in ("classes", "object_radius", "speed"):
            if key in d:
                d[key] = tuple(d[key])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def num_videos(self) -> int:
        return len(self.classes) * self.videos_per_class

    def shard_indices(self, shard: int) -> range:
        """Contiguous block of video indices of one shard, so merging is a concatenation in shard order."""
        if not 0 <= shard < self.shards:
            raise ValueError(f"shard {shard} out of range: dataset.shards is {self.shards}")
        bounds = np.linspace(0, self.num_videos, self.shards + 1).round().astype(int)
        return range(int(bounds[shard]), int(bounds[shard + 1]))


# --- trajectories --------------------------------------------------------------------------------------------------
# Each generator returns a path of shape (T, 2) in units of the frame width, centred loosely on 0, plus the
# parameters it sampled. ``s`` is the sampled speed factor; ``t`` runs over [0, 1].


def _rotate(path: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return path @ np.array([[c, s], [-s, c]])


def _linear(rng, t, s):
    angle = rng.uniform(0, TAU)
    length = 0.55 * s
    path = np.stack([length * t, np.zeros_like(t)], axis=1)
    return _rotate(path, angle), {"direction": angle}


def _circular(rng, t, s):
    sense = rng.choice([-1.0, 1.0])
    phase = rng.uniform(0, TAU)
    turns = 0.8 * s
    angle = phase + sense * TAU * turns * t
    radius = 0.28
    return radius * np.stack([np.cos(angle), np.sin(angle)], axis=1), {"direction": sense, "phase": phase}


def _parabolic(rng, t, s):
    # Projectile under gravity (+y): thrown up and sideways; only mirrored, never rotated, so gravity stays down.
    sense = rng.choice([-1.0, 1.0])
    vx = sense * 0.55 * s
    vy = -rng.uniform(0.9, 1.3)
    g = 2.0 * -vy * rng.uniform(0.9, 1.1)  # apex near mid-clip
    path = np.stack([vx * t, vy * t + 0.5 * g * t**2], axis=1)
    return path, {"direction": sense}


def _sinusoidal(rng, t, s):
    angle = rng.uniform(0, TAU)
    phase = rng.uniform(0, TAU)
    cycles = rng.uniform(1.5, 2.5)
    amplitude = 0.12
    path = np.stack([0.6 * s * t, amplitude * np.sin(TAU * cycles * t + phase)], axis=1)
    return _rotate(path, angle), {"direction": angle, "phase": phase, "cycles": cycles}


def _zigzag(rng, t, s):
    angle = rng.uniform(0, TAU)
    phase = rng.uniform(0, 1)
    cycles = rng.uniform(1.5, 2.5)
    saw = (cycles * t + phase) % 1.0
    triangle = 4 * np.abs(saw - 0.5) - 1  # straight segments with sharp corners
    path = np.stack([0.6 * s * t, 0.12 * triangle], axis=1)
    return _rotate(path, angle), {"direction": angle, "phase": phase, "cycles": cycles}


def _spiral(rng, t, s):
    sense = rng.choice([-1.0, 1.0])
    outward = rng.random() < 0.5
    phase = rng.uniform(0, TAU)
    turns = 1.2 * s
    angle = phase + sense * TAU * turns * t
    grow = t if outward else 1 - t
    radius = 0.04 + 0.26 * grow
    path = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return path, {"direction": sense, "phase": phase, "outward": float(outward)}


def _figure_eight(rng, t, s):
    angle = rng.uniform(0, TAU)
    phase = rng.uniform(0, TAU)
    sense = rng.choice([-1.0, 1.0])
    theta = phase + sense * TAU * 0.9 * s * t
    path = np.stack([0.3 * np.sin(theta), 0.3 * np.sin(theta) * np.cos(theta)], axis=1)
    return _rotate(path, angle), {"direction": angle, "phase": phase}


def _random_walk(rng, t, s):
    steps = rng.normal(0, 0.045 * s, size=(len(t), 2))
    steps[0] = 0
    return np.cumsum(steps, axis=0), {}


def _bouncing(rng, t, s):
    # A ball dropped with a sideways push that bounces on a floor, losing energy at each bounce.
    sense = rng.choice([-1.0, 1.0])
    restitution = rng.uniform(0.65, 0.85)
    g, h0 = 8.0, 0.35
    vx = sense * 0.5 * s
    y, vy, dt = 0.0, rng.uniform(-0.3, 0.3), 1.0 / max(len(t) - 1, 1)
    ys = [y]
    for _ in range(len(t) - 1):
        # Integrate in small sub-steps so the bounce is sharp whatever the frame count.
        for _ in range(32):
            vy += g * dt / 32
            y += vy * dt / 32
            if y > h0:
                y, vy = 2 * h0 - y, -vy * restitution
        ys.append(y)
    path = np.stack([vx * t, np.asarray(ys)], axis=1)
    return path, {"direction": sense, "restitution": restitution}


TRAJECTORIES: dict[str, Callable] = {
    "linear": _linear,
    "circular": _circular,
    "parabolic": _parabolic,
    "sinusoidal": _sinusoidal,
    "zigzag": _zigzag,
    "spiral": _spiral,
    "figure_eight": _figure_eight,
    "random_walk": _random_walk,
    "bouncing": _bouncing,
}


# --- rendering -----------------------------------------------------------------------------------------------------


@dataclass
class Video:
    frames: np.ndarray  # (T, H, W, 3) uint8
    params: dict = field(default_factory=dict)
    positions: np.ndarray | None = None  # (T, 2) object centre (x, y) in pixels


def _place(path: np.ndarray, rng: np.random.Generator, size: int, margin: float) -> tuple[np.ndarray, float]:
    """Scale a path given in frame widths to pixels, shrink it if needed so it fits, and shift it randomly inside."""
    pixels = path * size
    lo, hi = pixels.min(axis=0), pixels.max(axis=0)
    room = size - 1 - 2 * margin
    extent = float((hi - lo).max())
    shrink = min(1.0, room / extent) if extent > 0 else 1.0
    pixels = (pixels - lo) * shrink
    slack = room - pixels.max(axis=0)
    return pixels + margin + rng.uniform(0, 1, size=2) * slack, shrink


def _disk_alpha(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    # Coverage from the signed distance to the edge: a one-pixel linear ramp is a close, cheap area estimate.
    dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    return np.clip(r + 0.5 - dist, 0.0, 1.0)


def _background(rng: np.random.Generator, cfg: DatasetConfig, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    base = rng.uniform(0.05, 0.45, size=3)
    if cfg.background == "uniform":
        return np.broadcast_to(base, xx.shape + (3,)).copy()
    other = np.clip(base + rng.uniform(-0.15, 0.15, size=3), 0, 1)
    angle = rng.uniform(0, TAU)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / cfg.size
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-9)
    return base + ramp[..., None] * (other - base)


def render_video(cfg: DatasetConfig, index: int) -> Video:
    """Render video ``index`` of the dataset described by ``cfg``; depends only on (cfg, index)."""
    rng = np.random.default_rng([cfg.seed, index])
    label = index // cfg.videos_per_class
    class_name = cfg.classes[label]
    T, size = cfg.frames, cfg.size
    t = np.linspace(0.0, 1.0, T)

    radius = rng.uniform(*cfg.object_radius)
    speed = rng.uniform(*cfg.speed)
    path, class_params = TRAJECTORIES[class_name](rng, t, speed)
    margin = radius + 1.0 + cfg.camera_jitter
    centres, shrink = _place(path, rng, size, margin)

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    background = _background(rng, cfg, xx, yy)
    colour = rng.uniform(0.55, 1.0, size=3)
    colour[rng.integers(3)] = rng.uniform(0.0, 0.3)  # a saturated hue that stands out from the dark background
    distractors = [
        (rng.uniform(4, size - 4, size=2), rng.uniform(2, 5), rng.uniform(0.2, 0.8, size=3))
        for _ in range(cfg.distractors)
    ]
    jitter = rng.normal(0.0, cfg.camera_jitter, size=(T, 2)) if cfg.camera_jitter > 0 else np.zeros((T, 2))
    noise_seed = int(rng.integers(2**63))

    frames = np.empty((T, size, size, 3), dtype=np.uint8)
    positions = centres + jitter
    noise_rng = np.random.default_rng(noise_seed)
    for f in range(T):
        dx, dy = jitter[f]
        img = background.copy()
        for (centre, r, col) in distractors:
            a = _disk_alpha(xx, yy, centre[0] + dx, centre[1] + dy, r)[..., None]
            img = img * (1 - a) + col * a
        if cfg.trail > 0:
            for back in range(f, 0, -1):
                weight = cfg.trail ** (f - back + 1)
                if weight < 0.02:
                    break
                px, py = positions[back - 1]
                a = weight * _disk_alpha(xx, yy, px, py, radius * 0.8)[..., None]
                img = img * (1 - a) + colour * a
        a = _disk_alpha(xx, yy, *positions[f], radius)[..., None]
        img = img * (1 - a) + colour * a
        img = img * 255.0
        if cfg.noise_std > 0:
            img = img + noise_rng.normal(0.0, cfg.noise_std, size=img.shape)
        frames[f] = np.clip(np.rint(img), 0, 255).astype(np.uint8)

    params = {
        "radius": radius,
        "speed": speed,
        "shrink": shrink,
        "colour_r": colour[0],
        "colour_g": colour[1],
        "colour_b": colour[2],
        **class_params,
    }
    return Video(frames=frames, params={"index": index, "label": label, "class_name": class_name, **params},
                 positions=positions)


def _table_row(video: Video) -> dict:
    row = dict(video.params)
    T = len(video.positions)
    row.update({f"x_{f}": video.positions[f, 0] for f in range(T)})
    row.update({f"y_{f}": video.positions[f, 1] for f in range(T)})
    return row


def render_shard(cfg: DatasetConfig, shard: int, videos_path: str | Path, table_path: str | Path,
                 logger: logging.Logger | None = None) -> None:
    """Render one shard: its videos as an (n, T, H, W, 3) uint8 .npy and its table as CSV."""
    indices = cfg.shard_indices(shard)
    out = np.empty((len(indices), cfg.frames, cfg.size, cfg.size, 3), dtype=np.uint8)
    rows = []
    progress = Progress(len(indices), f"render shard {shard}", logger or logging.getLogger(__name__), unit="videos")
    for k, index in enumerate(indices):
        video = render_video(cfg, index)
        out[k] = video.frames
        rows.append(_table_row(video))
        progress.update(1)
    io.save_npy(videos_path, out)
    write_table(pd.DataFrame(rows), table_path)


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    # One column order whatever the classes in the table (each class samples its own parameters).
    io.write_csv(path, df[sorted(df.columns, key=_column_rank)])


def merge_shards(video_paths: list[str], table_paths: list[str], videos_out: str | Path,
                 table_out: str | Path) -> None:
    """Concatenate shards in order into one memory-mappable array, streaming shard by shard."""
    concatenate_npy(video_paths, videos_out)
    # A class parameter absent from some shard comes back as NaN, as it is for that class in a single shard.
    table = pd.concat([pd.read_csv(p) for p in table_paths], ignore_index=True)
    if not (table["index"].to_numpy() == np.arange(len(table))).all():
        raise ValueError(f"shard tables {table_paths} do not cover indices 0..{len(table) - 1} in order")
    write_table(table, table_out)


_LEADING = ("index", "label", "class_name", "radius", "speed", "shrink", "colour_r", "colour_g", "colour_b")


def _column_rank(col: str) -> tuple:
    if col in _LEADING:
        return (0, _LEADING.index(col), 0)
    if col[:2] in ("x_", "y_") and col[2:].isdigit():
        return (2, col[0], int(col[2:]))
    return (1, col, 0)


def load_dataset(videos_path: str | Path, table_path: str | Path) -> tuple[np.ndarray, pd.DataFrame]:
    """Open the dataset: videos memory-mapped read-only, table checked against the videos."""
    videos = np.load(videos_path, mmap_mode="r")
    table = pd.read_csv(table_path)
    if videos.ndim != 5 or videos.shape[-1] != 3 or videos.dtype != np.uint8:
        raise ValueError(f"{videos_path}: expected uint8 videos of shape (N, T, H, W, 3), "
                         f"got {videos.dtype} {videos.shape}; rerun rule render_videos")
    if len(table) != len(videos):
        raise ValueError(f"{table_path} has {len(table)} rows but {videos_path} holds {len(videos)} videos; "
                         "rerun rule render_videos")
    return videos, table


# --- previews for people -------------------------------------------------------------------------------------------


def _first_of_each_class(table: pd.DataFrame) -> list[int]:
    return [int(g["index"].iloc[0]) for _, g in table.groupby("label", sort=True)]


def preview_sheet(videos: np.ndarray, table: pd.DataFrame, path: str | Path, columns: int = 6) -> None:
    """A row per class: ``columns`` evenly spaced frames of its first video, then the path drawn on the last frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = _first_of_each_class(table)
    T = videos.shape[1]
    frame_ids = np.linspace(0, T - 1, columns).round().astype(int)
    fig, axes = plt.subplots(len(picks), columns + 1, figsize=(1.6 * (columns + 1), 1.6 * len(picks)),
                             squeeze=False)
    for row, index in enumerate(picks):
        info = table.loc[table["index"] == index].iloc[0]
        xs = info[[f"x_{f}" for f in range(T)]].to_numpy(float)
        ys = info[[f"y_{f}" for f in range(T)]].to_numpy(float)
        for col, f in enumerate(frame_ids):
            ax = axes[row, col]
            ax.imshow(videos[index, f], interpolation="nearest")
            if row == 0:
                ax.set_title(f"frame {f}", fontsize=8)
        ax = axes[row, columns]
        ax.imshow(videos[index, -1], interpolation="nearest")
        ax.plot(xs, ys, "-", color="white", lw=1)
        ax.plot(xs[0], ys[0], "o", color="lime", ms=3)
        if row == 0:
            ax.set_title("path (start ●)", fontsize=8)
        axes[row, 0].set_ylabel(info["class_name"], fontsize=9, rotation=0, ha="right", va="center")
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, metadata={"Software": None})
    plt.close(fig)


def class_gifs(videos: np.ndarray, table: pd.DataFrame, folder: str | Path, scale: int = 2,
               frame_ms: int = 120) -> list[Path]:
    """One looping animated GIF per class (its first video), upscaled for viewing."""
    from PIL import Image

    names = []
    with io.atomic_dir(folder) as tmp:
        for index in _first_of_each_class(table):
            name = table.loc[table["index"] == index, "class_name"].iloc[0]
            frames = [Image.fromarray(np.asarray(f)).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST)
                      for f in videos[index]]
            frames[0].save(tmp / f"{name}.gif", format="GIF", save_all=True, append_images=frames[1:],
                           duration=frame_ms, loop=0)
            names.append(f"{name}.gif")
    return [Path(folder) / name for name in names]
