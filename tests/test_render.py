import hashlib

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist

from trajbench import controls, render

CLASSES = tuple(render.TRAJECTORIES)


def small_config(**overrides):
    base = dict(classes=CLASSES, videos_per_class=3, frames=9, size=32, seed=7, shards=1,
                object_radius=(2.0, 3.5), noise_std=0.0)
    base.update(overrides)
    return render.DatasetConfig.from_dict(base)


def render_dataset(cfg, folder):
    videos, tables = [], []
    for shard in range(cfg.shards):
        v, t = folder / f"{shard}.npy", folder / f"{shard}.csv"
        render.render_shard(cfg, shard, v, t)
        videos.append(str(v))
        tables.append(str(t))
    render.merge_shards(videos, tables, folder / "videos.npy", folder / "labels.csv")
    return folder / "videos.npy", folder / "labels.csv"


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_bytes_and_shard_count_does_not_matter(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir(), (tmp_path / "c").mkdir()
    one = render_dataset(small_config(), tmp_path / "a")
    again = render_dataset(small_config(), tmp_path / "b")
    three = render_dataset(small_config(shards=3), tmp_path / "c")
    assert [digest(p) for p in one] == [digest(p) for p in again]
    assert [digest(p) for p in one] == [digest(p) for p in three]


def test_other_seed_other_videos():
    a = render.render_video(small_config(), 0).frames
    b = render.render_video(small_config(seed=8), 0).frames
    assert not np.array_equal(a, b)


def test_table_labels_parameters_and_positions(tmp_path):
    cfg = small_config(shards=2)
    videos_path, table_path = render_dataset(cfg, tmp_path)
    videos, table = render.load_dataset(videos_path, table_path)
    assert videos.shape == (cfg.num_videos, cfg.frames, cfg.size, cfg.size, 3)
    assert videos.dtype == np.uint8
    assert list(table["index"]) == list(range(cfg.num_videos))
    assert (table.groupby("class_name").size() == cfg.videos_per_class).all()
    assert (table["class_name"] == [CLASSES[i] for i in table["label"]]).all()
    lo, hi = cfg.object_radius
    assert table["radius"].between(lo, hi).all()
    assert (table["extent"] / cfg.size).between(*cfg.extent).all()
    assert (table["speed"] * (cfg.frames - 1) / table["extent"]).between(*cfg.path_ratio).all()
    for index in (0, 13, 26):
        positions, params = render.sample_track(cfg, index)
        row = table.loc[index]
        np.testing.assert_allclose(row[[f"x_{f}" for f in range(cfg.frames)]].to_numpy(float), positions[:, 0],
                                   rtol=1e-5)  # labels.csv keeps 6 significant digits
        np.testing.assert_allclose(row[[f"y_{f}" for f in range(cfg.frames)]].to_numpy(float), positions[:, 1],
                                   rtol=1e-5)
        assert row["speed"] == pytest.approx(params["speed"], rel=1e-5)
    xs = table[[f"x_{f}" for f in range(cfg.frames)]].to_numpy()
    ys = table[[f"y_{f}" for f in range(cfg.frames)]].to_numpy()
    r = table["radius"].to_numpy()[:, None]
    # The whole disk lies inside the frame in every frame.
    assert (xs - r >= 0).all() and (xs + r <= cfg.size - 1).all()
    assert (ys - r >= 0).all() and (ys + r <= cfg.size - 1).all()


@pytest.mark.parametrize("name", CLASSES)
def test_object_visible_at_its_position_in_every_frame(name):
    cfg = small_config(classes=(name,), distractors=0)
    for index in range(cfg.num_videos):
        video = render.render_video(cfg, index)
        colour = np.array([video.params[f"colour_{c}"] for c in "rgb"]) * 255
        for frame, (x, y) in zip(video.frames, video.positions):
            pixel = frame[int(round(y)), int(round(x))].astype(float)
            # The pixel under the centre is (almost) the object's colour, not the background.
            assert np.abs(pixel - colour).max() <= 2, (name, index)


def test_motion_is_subpixel_smooth():
    # A slow linear motion moves the intensity-weighted centroid by fractions of a pixel, never in 1-pixel jumps.
    cfg = small_config(classes=("linear",), frames=33, size=64, extent=(0.2, 0.2), path_ratio=(1.1, 1.1),
                       background="uniform")
    video = render.render_video(cfg, 0)
    steps = np.linalg.norm(np.diff(video.positions, axis=0), axis=1)
    assert 0 < steps.max() < 1
    frames = video.frames.astype(float)
    diff = np.abs(frames - frames[0]).sum(axis=(1, 2, 3))
    assert (np.diff(diff[:5]) > 0).all()  # the image changes a little every frame, not every few frames


@pytest.mark.parametrize("frames, size", [(17, 128), (9, 32)])
def test_every_class_hits_its_drawn_extent_and_speed(frames, size):
    cfg = small_config(frames=frames, size=size, videos_per_class=6, object_radius=(2.0, 3.0), camera_jitter=0.0)
    for index in range(cfg.num_videos):
        positions, params = render.sample_track(cfg, index)
        speed = np.linalg.norm(np.diff(positions, axis=0), axis=1).mean()
        assert pdist(positions).max() == pytest.approx(params["extent"], rel=1e-6), index
        assert speed == pytest.approx(params["speed"], rel=1e-6), index
        assert cfg.extent[0] * size <= params["extent"] <= cfg.extent[1] * size
        assert cfg.path_ratio[0] <= params["speed"] * (frames - 1) / params["extent"] <= cfg.path_ratio[1]


def test_speed_size_and_radius_are_drawn_before_the_class_is_known():
    # The same clip index in a one-class dataset of each class: the same radius, extent and speed whatever the class.
    drawn = {name: render.sample_track(small_config(classes=(name,)), 2)[1] for name in CLASSES}
    for key in ("radius", "extent", "speed"):
        assert len({params[key] for params in drawn.values()}) == 1, key


def test_camera_jitter_shakes_the_track_around_the_motion():
    still, _ = render.sample_track(small_config(), 5)
    shaken, params = render.sample_track(small_config(camera_jitter=0.5), 5)
    assert 0.2 < np.std(shaken - still) < 0.8  # the jitter, not another path
    assert params["extent"] == pytest.approx(pdist(still).max(), rel=1e-6)


def test_shuffled_frames_column_is_each_clips_seeded_permutation(tmp_path):
    cfg = small_config(shards=2)
    _, table_path = render_dataset(cfg, tmp_path)
    table = render.load_dataset(tmp_path / "videos.npy", table_path)[1]
    orders = controls.read_orders(table, cfg.frames)
    assert not (orders == np.arange(cfg.frames)).all(axis=1).any()  # never the identity
    for index in range(cfg.num_videos):
        np.testing.assert_array_equal(orders[index], controls.frame_permutation(cfg.seed, index, cfg.frames))
    assert len({tuple(o) for o in orders}) == cfg.num_videos
    assert list(table.columns[-1:]) == [controls.COLUMN] and list(table.columns[:6]) == [
        "index", "label", "class_name", "radius", "speed", "extent"]


def test_impossible_geometry_is_refused_naming_the_keys():
    with pytest.raises(ValueError, match=r"dataset.extent \[0.35, 0.9\] of a 32-pixel frame"):
        render.sample_track(small_config(extent=(0.35, 0.9), path_ratio=(1.2, 1.8)), 0)
    # A projectile's path is at most about twice its diameter: a ratio of 3 is out of its reach.
    with pytest.raises(ValueError, match=r"class 'parabolic' found no path with ratio 3.0000 .* \[3.0, 3.0\]"):
        render.sample_track(small_config(classes=("parabolic",), path_ratio=(3.0, 3.0)), 0)
    with pytest.raises(ValueError, match="dataset.frames=2"):
        render.sample_track(small_config(frames=2), 0)


def test_difficulty_knobs_change_the_video():
    base = render.render_video(small_config(), 4).frames
    for knob in (dict(noise_std=5.0), dict(distractors=2), dict(trail=0.6), dict(camera_jitter=0.5)):
        other = render.render_video(small_config(**knob), 4).frames
        assert not np.array_equal(base, other), knob


def test_shard_indices_cover_every_video_once():
    cfg = small_config(shards=4)
    seen = [i for s in range(cfg.shards) for i in cfg.shard_indices(s)]
    assert seen == list(range(cfg.num_videos))
    with pytest.raises(ValueError, match="shard 4 out of range"):
        cfg.shard_indices(4)


def test_load_dataset_rejects_wrong_videos(tmp_path):
    videos_path, table_path = render_dataset(small_config(), tmp_path)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((27, 9, 32, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match="expected uint8 videos"):
        render.load_dataset(bad, table_path)
    np.save(bad, np.zeros((5, 9, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="has 27 rows but"):
        render.load_dataset(bad, table_path)


def test_previews(tmp_path):
    """The sheet: per class (first clip of each) 6 evenly spaced frames and the last one with the labelled path and
    its start, read back from the figure; a 100-dpi PNG of 1.6-inch panels without a Software stamp."""
    from PIL import Image

    cfg = small_config()
    videos_path, table_path = render_dataset(cfg, tmp_path)
    videos, table = render.load_dataset(videos_path, table_path)
    panels = render.preview_sheet(videos, table, tmp_path / "preview.png")
    assert len(panels) == len(CLASSES) * 7
    frames = [0, 2, 3, 5, 6, 8]  # linspace(0, 8, 6) rounded
    for panel in panels:
        row, column = panel["row"], panel["column"]
        clip = 3 * row
        frame = frames[column] if column < 6 else 8
        np.testing.assert_array_equal(panel["image"], videos[clip, frame])
        assert panel["interpolation"] == "nearest"
        assert panel["label"] == (CLASSES[row] if column == 0 else "")
        title = "" if row else (f"frame {frame}" if column < 6 else "path (start ●)")
        assert panel["title"] == title
        if column < 6:
            assert panel["lines"] == []
            continue
        (px, py, style, marker, colour), (sx, sy, _, start, start_colour) = panel["lines"]
        np.testing.assert_array_equal(px, table.loc[clip, [f"x_{f}" for f in range(9)]].to_numpy(float))
        np.testing.assert_array_equal(py, table.loc[clip, [f"y_{f}" for f in range(9)]].to_numpy(float))
        assert (style, marker, colour) == ("-", "None", "white")
        assert (list(sx), list(sy), start, start_colour) == ([px[0]], [py[0]], "o", "lime")
    with Image.open(tmp_path / "preview.png") as png:
        assert png.size == (int(1.6 * 7 * 100), int(1.6 * len(CLASSES) * 100)) and "Software" not in png.info
    gifs = render.class_gifs(videos, table, tmp_path / "gifs")
    assert sorted(p.stem for p in gifs) == sorted(CLASSES)
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind


# --- what the frames hold, pixel by pixel --------------------------------------------------------------------------


def _disk(size, x, y, r):
    """Coverage of a disk of radius r at (x, y) on the size x size pixel grid: 1 inside, 0 beyond r + 0.5, a
    one-pixel linear ramp between (the renderer's anti-aliasing)."""
    yy, xx = np.mgrid[0:size, 0:size]
    return np.clip(r + 0.5 - np.hypot(xx - x, yy - y), 0.0, 1.0)


def _colour(video):
    return np.array([video.params[f"colour_{c}"] for c in "rgb"])


def _far_pixel(frames_positions, size):
    """The (row, column) farthest from every position: background only."""
    yy, xx = np.mgrid[0:size, 0:size]
    dist = np.min([np.hypot(xx - x, yy - y) for x, y in frames_positions], axis=0)
    return np.unravel_index(np.argmax(dist), dist.shape)


def test_each_frame_is_the_disk_over_the_background_at_the_labelled_position():
    """Uniform background, no noise: every pixel is background x (1 - coverage) + colour x coverage, with the disk
    at the labels' (jittered) position and radius, to within the uint8 rounding."""
    cfg = small_config(background="uniform", camera_jitter=0.3)
    for index in (0, 10, 20):
        video = render.render_video(cfg, index)
        assert video.frames.dtype == np.uint8
        np.testing.assert_array_equal(video.positions, render.sample_track(cfg, index)[0])
        row, col = _far_pixel(video.positions, cfg.size)
        background = video.frames[0, row, col] / 255.0  # within 0.5/255 of the drawn value
        for frame, (x, y) in zip(video.frames, video.positions):
            alpha = _disk(cfg.size, x, y, video.params["radius"])[..., None]
            expected = 255 * (background * (1 - alpha) + _colour(video) * alpha)
            assert np.abs(frame - expected).max() <= 1.0, index


def test_object_colour_is_saturated_and_background_dark():
    """Two channels of the object's colour in [0.55, 1), one in [0, 0.3); a uniform background in [0.05, 0.45) per
    channel, not grey."""
    cfg = small_config(background="uniform")
    greys = 0
    for index in range(cfg.num_videos):
        video = render.render_video(cfg, index)
        low, *high = np.sort(_colour(video))
        assert 0.0 <= low < 0.3 and all(0.55 <= c < 1.0 for c in high), index
        row, col = _far_pixel(video.positions, cfg.size)
        background = video.frames[:, row, col].astype(float)
        assert (background == background[0]).all()  # the same in every frame
        assert ((0.05 * 255 - 0.5 <= background) & (background <= 0.45 * 255 + 0.5)).all(), index
        greys += len(set(background[0])) == 1
    assert greys == 0


def test_gradient_background_is_one_linear_ramp_from_base_to_a_nearby_colour():
    """`_background` gradient: base colour at one corner of the frame, the other colour (base +- 0.15 per channel,
    within [0, 1]) at the opposite one, one linear ramp spanning exactly [0, 1] shared by the channels, in any
    direction."""
    cfg = small_config(size=24)
    yy, xx = np.mgrid[0:cfg.size, 0:cfg.size].astype(np.float64)
    directions, deltas = [], []
    for seed in range(60):
        image = render._background(np.random.default_rng(seed), cfg, xx, yy)
        main = np.argmax(np.ptp(image, axis=(0, 1)))
        channel = image[..., main]
        start = np.unravel_index(np.argmin(channel), channel.shape)
        end = np.unravel_index(np.argmax(channel), channel.shape)
        base, other = image[start], image[end]
        # The ramp starts where the base colour is: the corner whose channels lie in [0.05, 0.45).
        if not ((0.05 <= base) & (base < 0.45)).all():
            start, end, base, other = end, start, other, base
        assert ((0.05 <= base) & (base < 0.45)).all(), seed
        assert ((0 <= other) & (other <= 1)).all() and (np.abs(other - base) <= 0.15 + 1e-12).all(), seed
        ramp = (channel - base[main]) / (other[main] - base[main])
        assert ramp.min() == pytest.approx(0, abs=1e-12) and ramp.max() == pytest.approx(1, abs=1e-12), seed
        np.testing.assert_allclose(image, base + ramp[..., None] * (other - base), atol=1e-12)
        # Linear in x and y: a plane, whose gradient gives the ramp's direction (mod pi).
        design = np.column_stack([xx.ravel(), yy.ravel(), np.ones(xx.size)])
        coef, *_ = np.linalg.lstsq(design, ramp.ravel(), rcond=None)
        np.testing.assert_allclose(design @ coef, ramp.ravel(), atol=1e-9)
        directions.append(np.arctan2(coef[1], coef[0]) % np.pi)
        deltas.append(other - base)
    deltas = np.array(deltas)
    assert (deltas < -0.05).any() and (deltas > 0.05).any()  # darker and lighter ends both occur
    assert (np.ptp(deltas, axis=1) > 0.02).mean() > 0.5  # each channel its own offset
    assert np.histogram(directions, bins=4, range=(0, np.pi))[0].min() >= 5  # every direction occurs


def test_uniform_background_is_one_colour():
    cfg = small_config(size=16, background="uniform")
    yy, xx = np.mgrid[0:cfg.size, 0:cfg.size].astype(np.float64)
    image = render._background(np.random.default_rng(3), cfg, xx, yy)
    assert (image == image[0, 0]).all() and len(set(image[0, 0])) == 3


def test_trail_fades_by_trail_per_frame_back_as_smaller_disks():
    """trail=0.6: frame f shows, k frames back, a disk of 0.8 x radius with weight 0.6**k (while >= 0.02) under the
    object; the disks of this clip do not overlap, so each pixel mixes background and colour by their sum."""
    cfg = small_config(classes=("linear",), frames=5, size=64, extent=(0.6, 0.6), object_radius=(2.0, 2.5),
                       background="uniform", trail=0.6)
    video = render.render_video(cfg, 2)
    r, positions, colour = video.params["radius"], video.positions, _colour(video)
    assert pdist(positions).min() > 1.8 * r + 2  # precondition: the disks are apart
    row, col = _far_pixel(positions, cfg.size)
    background = video.frames[0, row, col] / 255.0
    for f, frame in enumerate(video.frames):
        alpha = _disk(cfg.size, *positions[f], r)
        for k in range(1, f + 1):  # 0.6**4 = 0.13: every earlier frame of this 5-frame clip still shows
            alpha = alpha + 0.6**k * _disk(cfg.size, *positions[f - k], 0.8 * r)
        expected = 255 * (background * (1 - alpha[..., None]) + colour * alpha[..., None])
        assert np.abs(frame - expected).max() <= 1.0, f


def test_noise_is_seeded_zero_mean_and_of_the_given_std():
    clean = [render.render_video(small_config(videos_per_class=5), i).frames for i in range(45)]
    noisy = [render.render_video(small_config(videos_per_class=5, noise_std=3.0), i).frames for i in range(45)]
    again = render.render_video(small_config(videos_per_class=5, noise_std=3.0), 5).frames
    assert again.tobytes() == noisy[5].tobytes()  # seeded per clip
    noise = [n.astype(float) - c for n, c in zip(noisy, clean)]
    inside = np.concatenate([d[(c > 15) & (c < 240)] for d, c in zip(noise, clean)])  # away from clipping
    assert abs(inside.mean()) < 0.05 and inside.std() == pytest.approx(np.sqrt(9 + 1 / 6), rel=0.03)
    # Each clip its own noise: no two clips' noise fields correlate (a shared seed would give ~1).
    correlation = np.corrcoef(np.stack([d.ravel() for d in noise]))
    assert np.abs(correlation[np.triu_indices(45, 1)]).max() < 0.2
    assert not np.array_equal(render.render_video(small_config(noise_std=0.5), 0).frames, clean[0])
    saturated = render.render_video(small_config(noise_std=200.0), 0).frames
    # Clipped to the uint8 range, not wrapped: a large share of the pixels sits at each end.
    assert (saturated == 0).mean() > 0.2 and (saturated == 255).mean() > 0.2


def test_distractors_are_static_disks_of_their_drawn_size_colour_and_place():
    """One distractor: a disk of radius in [2, 5), colour in [0.2, 0.8) per channel, centre in [4, size - 4), the
    same in every frame (no camera jitter), drawn under the object."""
    from scipy import ndimage

    without, with_one = small_config(background="uniform"), small_config(background="uniform", distractors=1)
    size, off_diagonal = without.size, 0
    for index in range(without.num_videos):
        plain = render.render_video(without, index)
        video = render.render_video(with_one, index)
        assert np.array_equal(video.positions, plain.positions)
        changed = (video.frames != plain.frames).any(axis=-1)
        away = np.max([_disk(size, x, y, plain.params["radius"] + 1) for x, y in plain.positions], axis=0) == 0
        assert (changed[:, away] == changed[0, away]).all(), index  # static
        mask = changed[0] & away
        labels, count = ndimage.label(mask)
        if count == 0:  # hidden under the object's path: nothing to measure
            continue
        area = np.bincount(labels.ravel())[1:].max()
        assert area <= np.pi * 5.5**2, index
        cy, cx = np.argwhere(mask).mean(axis=0)
        assert 3 <= cx <= size - 3 and 3 <= cy <= size - 3, index
        off_diagonal += abs(cx - cy) > 4  # x and y drawn apart: anywhere in the frame, not on a line
        inner = np.argwhere(ndimage.binary_erosion(mask, iterations=2))
        if len(inner):
            pixel = video.frames[0][tuple(inner[len(inner) // 2])] / 255.0
            assert ((0.2 - 0.01 <= pixel) & (pixel <= 0.8 + 0.01)).all(), index
    assert off_diagonal > 5


def test_table_columns_in_one_order_whatever_their_order_in(tmp_path):
    """Shared columns first (their fixed order), then class parameters by name, then x_0..x_T, y_0..y_T by frame
    number (not as text: x_2 before x_10), then the frame order."""
    import pandas as pd

    columns = ["y_10", "x_2", controls.COLUMN, "zeta", "n_1", "index", "x_10", "label", "y_2", "amplitude", "x_1",
               "colour_b", "class_name", "y_1", "radius", "speed", "extent", "colour_r", "colour_g"]
    render.write_table(pd.DataFrame([dict.fromkeys(columns, 1)]), tmp_path / "t.csv")
    header = (tmp_path / "t.csv").read_text().splitlines()[0].split(",")
    assert header == ["index", "label", "class_name", "radius", "speed", "extent", "colour_r", "colour_g", "colour_b",
                      "amplitude", "n_1", "zeta", "x_1", "x_2", "x_10", "y_1", "y_2", "y_10", controls.COLUMN]


def test_merge_shards_refuses_tables_out_of_order(tmp_path):
    cfg = small_config(shards=2)
    paths = []
    for shard in range(2):
        paths.append((tmp_path / f"{shard}.npy", tmp_path / f"{shard}.csv"))
        render.render_shard(cfg, shard, *paths[-1])
    with pytest.raises(ValueError, match=r"shard tables \[.*1.csv.*0.csv.*\] do not cover indices 0..26 in order"):
        render.merge_shards([str(v) for v, _ in paths[::-1]], [str(t) for _, t in paths[::-1]],
                            tmp_path / "v.npy", tmp_path / "t.csv")


def test_load_dataset_memory_maps_and_names_the_rerun(tmp_path):
    videos_path, table_path = render_dataset(small_config(), tmp_path)
    videos, _ = render.load_dataset(videos_path, table_path)
    assert isinstance(videos, np.memmap) and videos.mode == "r"
    bad = tmp_path / "bad.npy"
    for array in (np.zeros((27, 9, 32, 32, 3), dtype=np.float32), np.zeros((27, 9, 32, 32, 4), dtype=np.uint8)):
        np.save(bad, array)
        with pytest.raises(ValueError, match=r"expected uint8 videos of shape \(N, T, H, W, 3\).*rerun rule "
                                             r"render_videos"):
            render.load_dataset(bad, table_path)
    np.save(bad, np.zeros((5, 9, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"holds 5 videos; rerun rule render_videos"):
        render.load_dataset(bad, table_path)


def test_class_gifs_are_the_first_clip_of_each_class_upscaled_looping(tmp_path):
    from PIL import Image

    videos_path, table_path = render_dataset(small_config(), tmp_path)
    videos, table = render.load_dataset(videos_path, table_path)
    assert render._first_of_each_class(table) == [3 * k for k in range(len(CLASSES))]
    gifs = render.class_gifs(videos, table, tmp_path / "gifs")
    assert [p.name for p in gifs] == [f"{name}.gif" for name in CLASSES]
    with Image.open(gifs[1]) as gif:
        assert gif.size == (64, 64) and gif.n_frames == 9
        assert gif.info["loop"] == 0 and gif.info["duration"] == 120
        first = np.asarray(gif.convert("RGB"), dtype=int)
    # Nearest-neighbour upscaling: every 2 x 2 block is one pixel of the clip (up to the GIF palette).
    blocks = first.reshape(32, 2, 32, 2, 3)
    assert (blocks == blocks[:, :1, :, :1]).all()
    assert np.abs(blocks[:, 0, :, 0] - videos[3, 0]).mean() < 3
    with Image.open(render.class_gifs(videos, table, tmp_path / "slow", scale=3, frame_ms=50)[0]) as gif:
        assert gif.size == (96, 96) and gif.info["duration"] == 50


def test_shard_bounds_are_integers_and_balanced():
    cfg = small_config(shards=4)
    assert [cfg.shard_indices(s) for s in range(4)] == [range(0, 7), range(7, 14), range(14, 20), range(20, 27)]


def _rotated(xy, angle):
    """(x, y) turned by ``angle`` (x towards y)."""
    c, s = np.cos(angle), np.sin(angle)
    return xy @ np.array([[c, s], [-s, c]])


def _ping_pong(u):
    return np.minimum(u % 2.0, 2 - u % 2.0)


def _gerono(theta):
    """The lemniscate of Gerono: (sin, sin x cos) of the parameter."""
    return np.stack([np.sin(theta), np.sin(theta) * np.cos(theta)], axis=1)


def _placed_fit(path, positions):
    """Least squares of positions = offset + scale x path (one scale, an offset per axis): the largest residual in
    pixels and the scale."""
    n = len(path)
    design = np.zeros((2 * n, 3))
    design[:n, 0] = design[n:, 1] = 1
    design[:, 2] = np.concatenate([path[:, 0], path[:, 1]])
    target = np.concatenate([positions[:, 0], positions[:, 1]])
    fit = np.linalg.lstsq(design, target, rcond=None)[0]
    return np.abs(design @ fit - target).max(), fit[2]


# Each class's path, as its module comment describes it, from the parameters labels.csv records (the knob included),
# before it is scaled to its extent and placed in the frame.
PATHS = {
    "linear": lambda p, t: _rotated(np.stack([_ping_pong(p["start"] + p["travel"] * t), 0 * t], axis=1),
                                    p["direction"]),
    "circular": lambda p, t: np.stack([np.cos(p["phase"] + p["direction"] * p["arc"] * t),
                                       np.sin(p["phase"] + p["direction"] * p["arc"] * t)], axis=1),
    "parabolic": lambda p, t: np.stack([p["direction"] * t, 4 * p["drop"] * (t - p["apex_time"]) ** 2], axis=1),
    "sinusoidal": lambda p, t: _rotated(np.stack(
        [t, p["amplitude"] * np.sin(2 * np.pi * (p["cycles"] * t + p["phase"]))], axis=1), p["direction"]),
    "zigzag": lambda p, t: _rotated(np.stack(
        [t, p["amplitude"] * (4 * np.abs((p["cycles"] * t + p["phase"]) % 1.0 - 0.5) - 1)], axis=1), p["direction"]),
    "spiral": lambda p, t: (p["inner_radius"] + (1 - p["inner_radius"]) * (t if p["outward"] else 1 - t))[:, None]
    * np.stack([np.cos(p["phase"] + p["direction"] * p["turn"] * t),
                np.sin(p["phase"] + p["direction"] * p["turn"] * t)], axis=1),
    "figure_eight": lambda p, t: _rotated(_gerono(p["phase"] + p["sense"] * p["span"] * (t - 0.5)), p["direction"]),
}  # fmt: skip
RANGES = {  # parameter: [low, high) as drawn
    "linear": {"direction": (0, 2 * np.pi), "start": (0, 2), "travel": (0, 8)},
    "circular": {"phase": (0, 2 * np.pi), "arc": (0, 8 * np.pi)},
    "parabolic": {"apex_time": (0.3, 0.7), "drop": (0, 16)},
    "sinusoidal": {"direction": (0, 2 * np.pi), "phase": (0, 1), "cycles": (1.5, 2.5), "amplitude": (0, 4)},
    "zigzag": {"direction": (0, 2 * np.pi), "phase": (0, 1), "cycles": (1.5, 2.5), "amplitude": (0, 4)},
    "spiral": {"phase": (0, 2 * np.pi), "inner_radius": (0.1, 0.3), "turn": (0, 8 * np.pi)},
    "figure_eight": {"direction": (0, 2 * np.pi), "phase": (-0.3, 0.3), "span": (0, 2 * np.pi)},
    "bouncing": {"restitution": (0.65, 0.85), "fall_time": (0.2, 0.4), "drift": (0, 16)},  # release_speed below
    "random_walk": {"direction": (0, 2 * np.pi), "turning": (0, np.pi)},
}


@pytest.mark.parametrize("name", CLASSES)
def test_each_class_moves_as_its_recorded_parameters_say(name):
    """The positions are the class's path from its labels.csv parameters, scaled (by extent / diameter) and shifted
    into the frame: a least-squares fit of centre + scale x path leaves nothing (1e-9 pixels). Each parameter lies in
    its drawn range, and signs are +-1."""
    cfg = small_config(classes=(name,), videos_per_class=12, frames=17, size=64)
    t = np.linspace(0, 1, cfg.frames)
    drawn = [render.sample_track(cfg, index) for index in range(cfg.num_videos)]
    table = pd.DataFrame([params for _, params in drawn])
    knob = {"linear": "travel", "circular": "arc", "parabolic": "drop", "sinusoidal": "amplitude",
            "zigzag": "amplitude", "spiral": "turn", "figure_eight": "span", "random_walk": "turning",
            "bouncing": "drift"}[name]  # fmt: skip
    for key, (low, high) in RANGES[name].items():
        assert table[key].between(low, high, inclusive="left").all(), key
        if key != knob:  # solved for the path ratio, not drawn: (12 clips) both sides of a drawn range's middle
            assert (table[key] < (low + high) / 2).any() and (table[key] > (low + high) / 2).any(), key
    sense = {"circular": "direction", "parabolic": "direction", "spiral": "direction", "bouncing": "direction",
             "figure_eight": "sense"}.get(name)  # the classes drawn one way round or the other
    if sense:
        assert set(table[sense]) == {-1.0, 1.0}  # both ways round occur
    if name == "spiral":
        assert set(table["outward"]) == {0.0, 1.0}
    if name == "bouncing":  # released at up to half the speed of a fall from the release height, either way
        limit = 0.5 * np.sqrt(2 * 2 / table["fall_time"] ** 2)
        assert (table["release_speed"].abs() < limit).all() and (table["release_speed"].abs() > limit / 2).any()
        assert (table["release_speed"] < 0).any() and (table["release_speed"] > 0).any()
    if name not in PATHS:
        return  # bouncing and random_walk: their own tests below
    for index, (positions, params) in enumerate(drawn):
        path = PATHS[name](params, t)
        residual, scale = _placed_fit(path, positions)
        assert residual < 1e-9, index
        assert scale == pytest.approx(params["extent"] / render.diameter(path), rel=1e-9), index


def test_a_random_walk_has_irregular_steps_and_a_wandering_heading():
    cfg = small_config(classes=("random_walk",), videos_per_class=4, frames=33, size=96, object_radius=(2.0, 2.5))
    for index in range(cfg.num_videos):
        positions, params = render.sample_track(cfg, index)
        steps = np.diff(positions, axis=0)
        lengths = np.linalg.norm(steps, axis=1)
        assert 0.1 < lengths.std() / lengths.mean() < 0.8, index  # lognormal(0, 0.3) lengths, not constant
        turns = np.diff(np.unwrap(np.arctan2(steps[:, 1], steps[:, 0])))
        # heading += turning x N(0, 1) per step; the sample's spread of turns is that of the knob
        assert turns.std() == pytest.approx(params["turning"], rel=0.5), index


def test_from_dict_keeps_lists_as_tuples_and_drops_unknown_keys():
    cfg = render.DatasetConfig.from_dict({"classes": ["linear", "spiral"], "videos_per_class": 2, "frames": 9,
                                          "size": 32, "seed": 0, "object_radius": [2, 3], "extent": [0.3, 0.4],
                                          "path_ratio": [1.2, 1.5], "not_a_field": 1})
    assert (cfg.classes, cfg.object_radius, cfg.extent, cfg.path_ratio) == (
        ("linear", "spiral"), (2, 3), (0.3, 0.4), (1.2, 1.5))
    assert all(isinstance(v, tuple) for v in (cfg.classes, cfg.object_radius, cfg.extent, cfg.path_ratio))


def test_the_extent_limit_is_exact_and_three_frames_suffice():
    """The path fits when extent x size equals the room the radius and jitter leave (size - 1 - 2 (r_max + 1 +
    jitter)), and is refused just above it, with both numbers; 3 frames are enough for a path to turn."""
    # 32 - 1 - 2 * (3.5 + 1 + 0.5) = 21 pixels: extent 21/32 fits exactly.
    render.sample_track(small_config(extent=(0.5, 21 / 32), camera_jitter=0.5), 0)
    with pytest.raises(ValueError, match=r"up to 21\.3 pixels does not fit the 21\.0 pixels left by object_radius "
                                         r"\[2\.0, 3\.5\] and camera_jitter 0\.5; lower dataset\.extent"):
        render.sample_track(small_config(extent=(0.5, 0.665), camera_jitter=0.5), 0)
    positions, _ = render.sample_track(small_config(frames=3), 0)
    assert positions.shape == (3, 2)


def test_paths_are_placed_anywhere_in_the_room_left():
    """The path's bounding box sits at a uniform random place of the room inside the margins (radius + 1 pixel +
    jitter): over 27 clips, near both ends of that room on each axis."""
    cfg = small_config(extent=(0.3, 0.4))
    fractions = []
    for index in range(cfg.num_videos):
        positions, params = render.sample_track(cfg, index)
        margin = params["radius"] + 1.0
        room = cfg.size - 1 - 2 * margin
        low, high = positions.min(axis=0), positions.max(axis=0)
        fractions.append((low - margin) / (room - (high - low)))
    fractions = np.array(fractions)
    assert ((0 <= fractions) & (fractions <= 1)).all()
    assert (fractions < 0.2).any(axis=0).all() and (fractions > 0.8).any(axis=0).all()


def test_camera_jitter_is_zero_mean_and_moves_the_distractors_too():
    """The camera shake is centred on the motion, and the background disks move with it, by the same offsets."""
    offsets = np.concatenate([render.sample_track(small_config(camera_jitter=0.5), i)[0]
                              - render.sample_track(small_config(), i)[0] for i in range(20)])
    assert np.abs(offsets.mean(axis=0)).max() < 0.15 and offsets.std() == pytest.approx(0.5, rel=0.15)
    from scipy import ndimage

    moved = 0
    for index in range(6):
        cfg = small_config(background="uniform", camera_jitter=0.5, size=48)
        plain = render.render_video(cfg, index)
        video = render.render_video(small_config(background="uniform", camera_jitter=0.5, size=48, distractors=1),
                                    index)
        _, jitter, _ = render._track(cfg, index)
        away = np.max([_disk(48, x, y, plain.params["radius"] + 1.5) for x, y in plain.positions], axis=0) == 0
        weight = np.abs(video.frames.astype(float) - plain.frames).sum(axis=-1)
        if (not weight.any() or (weight * ~away).any() or weight[:, :3].any() or weight[:, -3:].any()
                or weight[:, :, :3].any() or weight[:, :, -3:].any()):
            continue  # the disk touches the border or the object's path: its centroid is not its centre
        centroids = np.array([ndimage.center_of_mass(w)[::-1] for w in weight])  # (x, y) per frame
        np.testing.assert_allclose(centroids - centroids[0], jitter - jitter[0], atol=0.05)
        moved += 1
    assert moved >= 2


def test_distractors_have_their_own_colours():
    """Each distractor's colour is drawn per channel: not grey."""
    from scipy import ndimage

    cfg, with_one = small_config(background="uniform"), small_config(background="uniform", distractors=1)
    spreads = []
    for index in range(cfg.num_videos):
        plain, video = render.render_video(cfg, index), render.render_video(with_one, index)
        inside = ndimage.binary_erosion((video.frames[0] != plain.frames[0]).any(axis=-1), iterations=2)
        if inside.any():  # pixels wholly covered by the disk: its own colour
            spreads.append(np.ptp(video.frames[0][inside].astype(int), axis=1).min())
    assert len(spreads) > 10 and np.median(spreads) > 30


def test_a_bouncing_ball_follows_the_physics_of_its_parameters():
    """Heights from the recorded release speed, fall time and restitution: released at height 1 (the floor at 0)
    with gravity 2 / fall_time**2, each landing's speed times restitution upwards; the positions are those heights,
    scaled and placed (one fit, nothing left)."""
    cfg = small_config(classes=("bouncing",), videos_per_class=4, frames=65, size=96, object_radius=(2.0, 2.5))
    t = np.linspace(0, 1, cfg.frames)
    for index in range(cfg.num_videos):
        positions, p = render.sample_track(cfg, index)
        g, height = 2 / p["fall_time"] ** 2, np.zeros(cfg.frames)
        release, h0, v = 0.0, 1.0, p["release_speed"]
        while release <= 1.0:  # one flight at a time, each from the floor but the first
            landing = release + (v + np.sqrt(v**2 + 2 * g * h0)) / g
            flight = (t >= release) & (t < landing)
            height[flight] = h0 + v * (t[flight] - release) - g / 2 * (t[flight] - release) ** 2
            release, v, h0 = landing, p["restitution"] * np.sqrt(v**2 + 2 * g * h0), 0.0
        path = np.stack([p["direction"] * p["drift"] * t, -height], axis=1)
        assert _placed_fit(path, positions)[0] < 1e-9, index
