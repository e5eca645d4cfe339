"""Shards of data-parallel stages: whole batches per shard, merged back to the same bytes."""

import json

import numpy as np
import pytest

from trajbench import shards


@pytest.mark.parametrize("n_clips,batch_size", [(90, 8), (17, 4), (5, 5), (64, 8)])
def test_shards_are_whole_batches_that_tile_the_clips(n_clips, batch_size):
    for count in range(1, shards.batches(n_clips, batch_size) + 1):
        ranges = [shards.clip_range(n_clips, count, batch_size, k) for k in range(count)]
        assert [i for r in ranges for i in r] == list(range(n_clips))
        assert all(len(r) > 0 and r.start % batch_size == 0 for r in ranges)
        sizes = [shards.batches(len(r), batch_size) for r in ranges]
        assert max(sizes) - min(sizes) <= 1  # as even as whole batches allow


def test_demo_shapes():
    assert [shards.clip_range(90, 2, 8, k) for k in range(2)] == [range(0, 48), range(48, 90)]  # 12 batches
    assert [shards.clip_range(90, 3, 8, k) for k in range(3)] == [range(0, 32), range(32, 64), range(64, 90)]


def test_bad_shard_requests():
    with pytest.raises(ValueError, match="more shards than the 2 batches"):
        shards.clip_range(10, 3, 8, 0)
    with pytest.raises(ValueError, match="shard 2 is not in 0..1"):
        shards.clip_range(10, 2, 4, 2)


def write_shards(folder, arrays, metas):
    paths, meta_paths = [], []
    for k, (array, meta) in enumerate(zip(arrays, metas)):
        paths.append(folder / f"{k}.npy")
        np.save(paths[-1], array)
        meta_paths.append(folder / f"{k}.json")
        meta_paths[-1].write_text(json.dumps(meta))
    return paths, meta_paths


def test_merge_concatenates_and_records_the_shards(tmp_path):
    whole = np.random.default_rng(0).integers(0, 2**18, size=(10, 3, 2, 2), dtype=np.int32)
    parts = [whole[0:4], whole[4:8], whole[8:10]]
    metas = [{"init": "random", "clips": [0, 4], "num_videos": 4}, {"init": "random", "clips": [4, 8], "num_videos": 4},
             {"init": "random", "clips": [8, 10], "num_videos": 2}]
    paths, meta_paths = write_shards(tmp_path, parts, metas)
    shards.merge({tmp_path / "tokens.npy": paths}, meta_paths, tmp_path / "meta.json", 10, "tokenize (random)")
    merged = np.load(tmp_path / "tokens.npy")
    assert merged.dtype == whole.dtype and np.array_equal(merged, whole)
    assert json.loads((tmp_path / "meta.json").read_text()) == {
        "init": "random", "clips": [0, 10], "num_videos": 10, "shards": 3, "arrays": {"tokens.npy": [10, 3, 2, 2]}
    }


def test_merge_lists_per_job_decisions_by_shard(tmp_path):
    """tokenize.compile: auto decides per job by its clip count, so shards of one run may differ there."""
    parts = [np.zeros((4, 3), np.int32), np.ones((2, 3), np.int32)]
    metas = [{"compile_setting": "auto", "clips": [0, 4], "compile": True, "compile_reason": "auto: 4 clips"},
             {"compile_setting": "auto", "clips": [4, 6], "compile": False, "compile_reason": "auto: 2 clips"}]
    paths, meta_paths = write_shards(tmp_path, parts, metas)
    shards.merge({tmp_path / "tokens.npy": paths}, meta_paths, tmp_path / "meta.json", 6, "tokenize (random)")
    assert json.loads((tmp_path / "meta.json").read_text()) == {
        "compile_setting": "auto", "clips": [0, 6], "shards": 2, "compile": [True, False],
        "compile_reason": ["auto: 4 clips", "auto: 2 clips"], "arrays": {"tokens.npy": [6, 3]},
    }


def test_merge_refuses_gaps_mixed_runs_and_mismatched_arrays(tmp_path):
    a, b = np.zeros((4, 3), np.float32), np.zeros((4, 3), np.float32)
    paths, meta_paths = write_shards(tmp_path, [a, b], [{"clips": [0, 4]}, {"clips": [5, 9]}])
    with pytest.raises(ValueError, match=r"features \(x\): shards cover clips \[\[0, 4\], \[5, 9\]\]"):
        shards.merge({tmp_path / "out.npy": paths}, meta_paths, tmp_path / "m.json", 9, "features (x)")
    paths, meta_paths = write_shards(tmp_path, [a, b], [{"clips": [0, 4], "seed": 0}, {"clips": [4, 8], "seed": 1}])
    with pytest.raises(ValueError, match=r"1.json was made differently from .*0.json \(keys \['seed'\]\)"):
        shards.merge({tmp_path / "out.npy": paths}, meta_paths, tmp_path / "m.json", 8, "features (x)")
    paths, meta_paths = write_shards(tmp_path, [a, np.zeros((4, 2), np.float32)], [{"clips": [0, 4]}, {"clips": [4, 8]}])
    with pytest.raises(ValueError, match="must agree in dtype and all but the first axis"):
        shards.merge({tmp_path / "out.npy": paths}, meta_paths, tmp_path / "m.json", 8, "features (x)")
    with pytest.raises(ValueError, match=r"shards cover clips 0..8, the dataset has 9"):
        shards.merge({}, meta_paths, tmp_path / "m.json", 9, "features (x)")
    assert not (tmp_path / "out.npy").exists() and not (tmp_path / "m.json").exists()  # nothing half-written


def test_merge_of_features_and_float16_grids_of_both_controls(tmp_path):
    """A feature job's four arrays (features float32, token grids float16, per control) merge back to the whole."""
    rng = np.random.default_rng(1)
    whole = {"ordered": rng.normal(size=(6, 5)).astype(np.float32),
             "shuffled": rng.normal(size=(6, 5)).astype(np.float32),
             "ordered_grid": rng.normal(size=(6, 3, 4, 2)).astype(np.float16),
             "shuffled_grid": rng.normal(size=(6, 3, 4, 2)).astype(np.float16)}  # fmt: skip
    arrays, metas = {}, []
    for k, (start, stop) in enumerate([(0, 4), (4, 6)]):
        folder = tmp_path / str(k)
        folder.mkdir()
        for name, array in whole.items():
            np.save(folder / f"{name}.npy", array[start:stop])
            arrays.setdefault(tmp_path / f"{name}.npy", []).append(folder / f"{name}.npy")
        metas.append(folder / "features.json")
        metas[-1].write_text(json.dumps({"clips": [start, stop], "num_videos": stop - start, "grid_side": 2}))
    shards.merge(arrays, metas, tmp_path / "features.json", 6, "features (m/random)")
    for name, array in whole.items():
        merged = np.load(tmp_path / f"{name}.npy")
        assert merged.dtype == array.dtype and merged.tobytes() == array.tobytes()
    meta = json.loads((tmp_path / "features.json").read_text())
    assert meta["arrays"] == {f"{name}.npy": list(array.shape) for name, array in whole.items()}
    assert (meta["clips"], meta["num_videos"], meta["shards"], meta["grid_side"]) == ([0, 6], 6, 2, 2)
