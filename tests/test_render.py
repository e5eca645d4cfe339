import hashlib

import numpy as np
import pytest

from trajbench import render

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
    assert table["speed"].between(*cfg.speed).all()
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
    cfg = small_config(classes=("linear",), frames=33, size=64, speed=(0.05, 0.05), background="uniform")
    video = render.render_video(cfg, 0)
    steps = np.linalg.norm(np.diff(video.positions, axis=0), axis=1)
    assert 0 < steps.max() < 1
    frames = video.frames.astype(float)
    diff = np.abs(frames - frames[0]).sum(axis=(1, 2, 3))
    assert (np.diff(diff[:5]) > 0).all()  # the image changes a little every frame, not every few frames


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
