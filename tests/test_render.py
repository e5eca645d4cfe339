import hashlib

import numpy as np
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
    videos_path, table_path = render_dataset(small_config(), tmp_path)
    videos, table = render.load_dataset(videos_path, table_path)
    render.preview_sheet(videos, table, tmp_path / "preview.png")
    gifs = render.class_gifs(videos, table, tmp_path / "gifs")
    assert sorted(p.stem for p in gifs) == sorted(CLASSES)
    from PIL import Image

    with Image.open(gifs[0]) as gif:
        assert gif.n_frames == 9
    assert (tmp_path / "preview.png").stat().st_size > 10_000
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind
