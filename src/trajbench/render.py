"""Synthetic trajectory videos: one object moving along a class-specific path, rendered anti-aliased.

Classes differ by the shape of the path and its time course only: every clip's extent and mean speed are drawn from
ranges shared by all classes (see the trajectories section), so neither tells the class.

Every video depends only on ``(seed, index)``: its random generators are seeded with both, so a dataset is
byte-identical whatever the number of shards it is rendered in. Positions are continuous (sub-pixel) and the disk's
edge is anti-aliased by its exact distance to each pixel centre, so motion is smooth rather than jumping by pixels.

Coordinates: ``x`` is the column and ``y`` the row of a pixel centre, in pixels, ``y`` growing downwards (gravity
points to +y).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.spatial.distance import pdist

from trajbench import controls, io
from trajbench.logs import Progress
from trajbench.shards import concatenate_npy

TAU = 2 * np.pi
# Each clip draws its geometry and its appearance from two independent streams, so `sample_track` needs no pixels.
_TRACK, _LOOK = 0, 1


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
    extent: tuple[float, float] = (0.35, 0.65)
    path_ratio: tuple[float, float] = (1.2, 1.8)
    noise_std: float = 0.0
    distractors: int = 0
    trail: float = 0.0
    camera_jitter: float = 0.0
    background: str = "gradient"

    @classmethod
    def from_dict(cls, d: dict) -> "DatasetConfig":
        d = dict(d)
        for key in ("classes", "object_radius", "extent", "path_ratio"):
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
# A class differs from the others by the shape of its path and its time course only: every path's extent (diameter:
# the largest distance between two of its frame-sampled positions) and its path ratio (arc length over the frames /
# extent; mean speed = ratio * extent / (frames - 1)) are drawn, before anything class-specific, from ranges shared by
# all classes. Each class draws its own parameters and returns a `_Shape`: the frame-sampled path (T, 2) in arbitrary
# units as a function of one knob (how much of the shape is traversed, or how far it bends), which `_solve` sets so
# that the path ratio equals the drawn one; the path is then scaled to the drawn extent and placed in the frame.
# Classes without an up (linear, circular, sinusoidal, zigzag, spiral, figure_eight, random_walk) are rotated at
# random; parabolic and bouncing are only mirrored, so gravity stays down (+y).

# Redraws of a class's own parameters before a drawn path ratio is declared out of the class's reach.
MAX_ATTEMPTS = 200
_SCAN = 64  # knob values scanned for the first bracket of the target ratio before Brent's method refines it


@dataclass(frozen=True)
class _Shape:
    path: Callable[[float], np.ndarray]  # knob -> (T, 2) positions, x right, y down
    knobs: tuple[float, float]  # the knob's search interval
    knob: str  # the knob's name in labels.csv
    params: dict  # the class's own random parameters


def path_length(path: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum())


def diameter(path: np.ndarray) -> float:
    """The largest distance between two positions of ``path`` (T, 2)."""
    return float(pdist(path).max()) if len(path) > 1 else 0.0


def path_ratio(path: np.ndarray) -> float:
    """Arc length over diameter, >= 1; a path that stays put counts as a straight one (1)."""
    d = diameter(path)
    return path_length(path) / d if d > 0 else 1.0


def _rotate(path: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return path @ np.array([[c, s], [-s, c]])


def _triangle(phase: np.ndarray) -> np.ndarray:
    """Period-1 triangle wave in [-1, 1]: straight segments with sharp corners."""
    return 4 * np.abs(phase % 1.0 - 0.5) - 1


def _linear(rng, t):
    # Constant speed along a segment, reflected at its ends (ping-pong); the knob is the distance travelled in
    # segment lengths, from a random start.
    angle, start = rng.uniform(0, TAU), rng.uniform(0, 2)

    def path(travel):
        u = (start + travel * t) % 2.0
        return _rotate(np.stack([np.minimum(u, 2 - u), np.zeros_like(t)], axis=1), angle)

    return _Shape(path, (0.0, 8.0), "travel", {"direction": angle, "start": start})


def _circular(rng, t):
    # An arc of a circle at constant angular speed; the knob is the angle swept.
    sense, phase = rng.choice([-1.0, 1.0]), rng.uniform(0, TAU)

    def path(arc):
        angle = phase + sense * arc * t
        return np.stack([np.cos(angle), np.sin(angle)], axis=1)

    return _Shape(path, (0.0, 4 * TAU), "arc", {"direction": sense, "phase": phase})


def _parabolic(rng, t):
    # A projectile under gravity (+y) at constant horizontal speed, apex inside the clip; the knob is the drop
    # (gravity) relative to the horizontal motion: 0 flies straight, large throws almost vertically.
    sense, apex = rng.choice([-1.0, 1.0]), rng.uniform(0.3, 0.7)

    def path(drop):
        return np.stack([sense * t, 4 * drop * (t - apex) ** 2], axis=1)

    return _Shape(path, (0.0, 16.0), "drop", {"direction": sense, "apex_time": apex})


def _wave(rng, t, wave):
    angle, phase, cycles = rng.uniform(0, TAU), rng.uniform(0, 1), rng.uniform(1.5, 2.5)

    def path(amplitude):
        return _rotate(np.stack([t, amplitude * wave(cycles * t + phase)], axis=1), angle)

    return _Shape(path, (0.0, 4.0), "amplitude", {"direction": angle, "phase": phase, "cycles": cycles})


def _sinusoidal(rng, t):
    return _wave(rng, t, lambda phase: np.sin(TAU * phase))


def _zigzag(rng, t):
    return _wave(rng, t, _triangle)


def _spiral(rng, t):
    # Constant angular speed while the radius grows (or shrinks) linearly from `inner` to 1; the knob is the angle
    # swept.
    sense, phase, outward, inner = rng.choice([-1.0, 1.0]), rng.uniform(0, TAU), rng.random() < 0.5, rng.uniform(
        0.1, 0.3)
    radius = inner + (1 - inner) * (t if outward else 1 - t)

    def path(turn):
        angle = phase + sense * turn * t
        return radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)

    return _Shape(path, (0.0, 4 * TAU), "turn",
                  {"direction": sense, "phase": phase, "outward": float(outward), "inner_radius": inner})


def _figure_eight(rng, t):
    # A lemniscate of Gerono traversed at constant parameter speed, centred near its crossing so that the curvature
    # changes sign; the knob is the parameter span (2 pi: the whole figure).
    angle, sense, offset = rng.uniform(0, TAU), rng.choice([-1.0, 1.0]), rng.uniform(-0.3, 0.3)

    def path(span):
        theta = offset + sense * span * (t - 0.5)
        return _rotate(np.stack([np.sin(theta), np.sin(theta) * np.cos(theta)], axis=1), angle)

    return _Shape(path, (0.0, TAU), "span", {"direction": angle, "phase": offset, "sense": sense})


def _random_walk(rng, t):
    # A correlated random walk: irregular step lengths, heading diffusing; the knob scales the heading's random turns.
    heading = rng.uniform(0, TAU)
    turns = rng.normal(size=len(t) - 1)
    steps = rng.lognormal(0.0, 0.3, size=len(t) - 1)

    def path(turning):
        angles = heading + turning * np.cumsum(turns)
        moves = steps[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        return np.concatenate([np.zeros((1, 2)), np.cumsum(moves, axis=0)])

    return _Shape(path, (0.0, np.pi), "turning", {"direction": heading})


def _bounce_heights(t: np.ndarray, g: float, v0: float, restitution: float) -> np.ndarray:
    """Height above the floor of a ball released at height 1 with upward speed ``v0``, exactly, at times ``t``."""
    height = np.empty_like(t)
    start, h, v = 0.0, 1.0, v0
    while start <= t[-1]:
        landing = start + (v + np.sqrt(v * v + 2 * g * h)) / g
        now = (t >= start) & (t < landing)
        dt = t[now] - start
        height[now] = h + v * dt - 0.5 * g * dt * dt
        start, h, v = landing, 0.0, restitution * np.sqrt(v * v + 2 * g * h)
    return np.maximum(height, 0.0)


def _bouncing(rng, t):
    # A ball released above a floor, bouncing and losing energy at each bounce; the knob is its horizontal speed.
    sense, restitution = rng.choice([-1.0, 1.0]), rng.uniform(0.65, 0.85)
    fall = rng.uniform(0.2, 0.4)  # time a ball dropped from rest takes to reach the floor, in clips
    g = 2.0 / fall**2
    v0 = rng.uniform(-0.5, 0.5) * np.sqrt(2 * g)
    y = -_bounce_heights(t, g, v0, restitution)

    def path(drift):
        return np.stack([sense * drift * t, y], axis=1)

    return _Shape(path, (0.0, 16.0), "drift",
                  {"direction": sense, "restitution": restitution, "fall_time": fall, "release_speed": v0})


TRAJECTORIES: dict[str, Callable[[np.random.Generator, np.ndarray], _Shape]] = {
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


def _solve(shape: _Shape, ratio: float) -> float | None:
    """The knob in the first scanned interval whose path has exactly ``ratio`` (to ~1e-12), or None if none does."""

    def gap(knob):
        return path_ratio(shape.path(knob)) - ratio

    knobs = np.linspace(*shape.knobs, _SCAN + 1)[1:]  # knob 0 is a degenerate path
    previous = gap(knobs[0])
    for lo, hi in itertools.pairwise(knobs):
        current = gap(hi)
        if previous == 0:
            return float(lo)
        if np.sign(previous) != np.sign(current):
            return float(brentq(gap, lo, hi, xtol=1e-14, rtol=1e-14))
        previous = current
    return None


def sample_track(cfg: DatasetConfig, index: int) -> tuple[np.ndarray, dict]:
    """The object's centre (T, 2) in pixels (x, y) in every frame of video ``index``, and the parameters drawn.

    Pure geometry, no pixels, depending only on (seed, index): the positions are labels.csv's ``x_i``, ``y_i``.
    ``speed`` (mean pixels per frame) and ``extent`` (diameter in pixels) are those of the object's motion, exact to
    ~1e-12 relative; camera jitter, when configured, shakes the positions around it.
    """
    centres, jitter, params = _track(cfg, index)
    return centres + jitter, params


def _track(cfg: DatasetConfig, index: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """`sample_track`'s motion (T, 2) and camera jitter (T, 2) apart: the camera shakes the distractors too."""
    T, size = cfg.frames, cfg.size
    if T < 3:
        raise ValueError(f"dataset.frames={T}: a path needs at least 3 frames to turn; raise dataset.frames")
    # The object's whole disk (and its anti-aliased edge) stays inside the frame, even shaken by the camera.
    tightest = size - 1 - 2 * (cfg.object_radius[1] + 1.0 + cfg.camera_jitter)
    if cfg.extent[1] * size > tightest:
        raise ValueError(f"dataset.extent {list(cfg.extent)} of a {size}-pixel frame: a path of up to "
                         f"{cfg.extent[1] * size:.1f} pixels does not fit the {tightest:.1f} pixels left by "
                         f"object_radius {list(cfg.object_radius)} and camera_jitter {cfg.camera_jitter}; lower "
                         "dataset.extent or object_radius, or raise dataset.size")
    rng = np.random.default_rng([cfg.seed, index, _TRACK])
    radius = rng.uniform(*cfg.object_radius)
    extent = rng.uniform(*cfg.extent) * size
    ratio = rng.uniform(*cfg.path_ratio)
    margin = radius + 1.0 + cfg.camera_jitter
    room = size - 1 - 2 * margin
    class_name = cfg.classes[index // cfg.videos_per_class]
    t = np.linspace(0.0, 1.0, T)
    for _ in range(MAX_ATTEMPTS):
        shape = TRAJECTORIES[class_name](rng, t)
        knob = _solve(shape, ratio)
        if knob is not None:
            break
    else:
        raise ValueError(f"class {class_name!r} found no path with ratio {ratio:.4f} (arc length / extent) in "
                         f"{MAX_ATTEMPTS} draws of its parameters at {T} frames; narrow dataset.path_ratio "
                         f"{list(cfg.path_ratio)} towards 1.5 or raise dataset.frames")
    path = shape.path(knob)
    path = (path - path.min(axis=0)) * (extent / diameter(path))
    slack = room - path.max(axis=0)  # >= 0: a bounding box side is at most the diameter
    centres = path + margin + rng.uniform(0, 1, size=2) * slack
    jitter = rng.normal(0.0, cfg.camera_jitter, size=(T, 2)) if cfg.camera_jitter > 0 else np.zeros((T, 2))
    params = {"radius": radius, "speed": ratio * extent / (T - 1), "extent": extent, shape.knob: knob,
              **shape.params}
    return centres, jitter, params


# --- rendering -----------------------------------------------------------------------------------------------------


@dataclass
class Video:
    frames: np.ndarray  # (T, H, W, 3) uint8
    params: dict = field(default_factory=dict)
    positions: np.ndarray | None = None  # (T, 2) object centre (x, y) in pixels


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
    centres, jitter, track_params = _track(cfg, index)
    rng = np.random.default_rng([cfg.seed, index, _LOOK])
    label = index // cfg.videos_per_class
    T, size, radius = cfg.frames, cfg.size, track_params["radius"]

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    background = _background(rng, cfg, xx, yy)
    colour = rng.uniform(0.55, 1.0, size=3)
    colour[rng.integers(3)] = rng.uniform(0.0, 0.3)  # a saturated hue that stands out from the dark background
    distractors = [
        (rng.uniform(4, size - 4, size=2), rng.uniform(2, 5), rng.uniform(0.2, 0.8, size=3))
        for _ in range(cfg.distractors)
    ]
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
        "index": index,
        "label": label,
        "class_name": cfg.classes[label],
        **track_params,
        "colour_r": colour[0],
        "colour_g": colour[1],
        "colour_b": colour[2],
        controls.COLUMN: controls.format_order(controls.frame_permutation(cfg.seed, index, T)),
    }
    return Video(frames=frames, params=params, positions=positions)


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


_LEADING = ("index", "label", "class_name", "radius", "speed", "extent", "colour_r", "colour_g", "colour_b")


def _column_rank(col: str) -> tuple:
    """Shared columns first, then the class parameters by name, the positions by axis and frame, the frame order."""
    if col in _LEADING:
        return (0, _LEADING.index(col), 0)
    if col[:2] in ("x_", "y_") and col[2:].isdigit():
        return (2, col[0], int(col[2:]))
    if col == controls.COLUMN:
        return (3, col, 0)
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


def preview_sheet(videos: np.ndarray, table: pd.DataFrame, path: str | Path, columns: int = 6) -> list[dict]:
    """A row per class: ``columns`` evenly spaced frames of its first video, then the path drawn on the last frame.

    Returns what each panel shows, read back from the figure: its row's class label (first panel), title, image and
    interpolation, and the lines drawn on it (x and y data, style, colour).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    picks = _first_of_each_class(table)
    T = videos.shape[1]
    frame_ids = np.linspace(0, T - 1, columns).round().astype(int)
    # An explicit Agg canvas, as trajbench.figures draws: pyplot's global state is left alone.
    fig = Figure(figsize=(1.6 * (columns + 1), 1.6 * len(picks)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(picks), columns + 1, squeeze=False)
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
    return [
        {
            "row": row, "column": col, "label": ax.get_ylabel(), "title": ax.get_title(),
            "image": np.asarray(ax.images[0].get_array()), "interpolation": ax.images[0].get_interpolation(),
            "lines": [(line.get_xdata(), line.get_ydata(), line.get_linestyle(), line.get_marker(), line.get_color())
                      for line in ax.lines],
        }
        for (row, col), ax in np.ndenumerate(axes)
    ]  # fmt: skip


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
