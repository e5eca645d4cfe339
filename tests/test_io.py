"""Atomic outputs: a writer that fails (a full disk, a kill) leaves the old file or none, never a partial one."""

import errno
import stat

import numpy as np
import pytest

from trajbench import io


def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out" / "table.csv"
    with pytest.raises(OSError, match="No space left"):
        with io.atomic_path(target) as tmp:
            tmp.write_text("index,label\n0,")  # half written when the disk fills
            _disk_full()
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []  # no temporary file either


def test_failed_write_keeps_the_previous_complete_file(tmp_path, monkeypatch):
    target = tmp_path / "tokens.npy"
    io.save_npy(target, np.arange(6))

    def partial_save(file, array, **kwargs):
        with open(file, "wb") as handle:
            handle.write(b"\x93NUMPY")  # a header and nothing more
        _disk_full()

    monkeypatch.setattr(np, "save", partial_save)
    with pytest.raises(OSError, match="No space left"):
        io.save_npy(target, np.arange(1000))
    monkeypatch.undo()
    assert np.load(target).tolist() == list(range(6))
    assert [p.name for p in tmp_path.iterdir()] == ["tokens.npy"]


def test_atomic_dir_is_whole_or_absent(tmp_path):
    folder = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt):
        with io.atomic_dir(folder) as tmp:
            (tmp / "config.json").write_text("{}")
            raise KeyboardInterrupt  # killed between two files
    assert not folder.exists() and list(tmp_path.iterdir()) == []

    with io.atomic_dir(folder) as tmp:
        (tmp / "config.json").write_text("{}")
        (tmp / "model.safetensors").write_bytes(b"1")
    with io.atomic_dir(folder) as tmp:  # a rerun replaces the folder whole
        (tmp / "config.json").write_text('{"v": 2}')
    assert sorted(p.name for p in folder.iterdir()) == ["config.json"]
    assert (folder / "config.json").read_text() == '{"v": 2}'
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_outputs_get_the_users_permissions(tmp_path):
    io.write_text(tmp_path / "a.txt", "x")  # not mkstemp's private 0600
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~io._UMASK


def test_sha256_streams(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"abc" * 1000)
    import hashlib

    assert io.sha256_file(path, chunk_size=7) == hashlib.sha256(b"abc" * 1000).hexdigest()


def test_write_csv_formats_floats_and_lines(tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"name": ["a", "b"], "score": [1 / 3, 2.0]}, index=[5, 6])
    io.write_csv(tmp_path / "short.csv", frame)
    io.write_csv(tmp_path / "full.csv", frame, float_format=None)
    assert (tmp_path / "short.csv").read_bytes() == b"name,score\na,0.333333\nb,2\n"  # no index, 6 digits
    assert (tmp_path / "full.csv").read_bytes() == b"name,score\na,0.3333333333333333\nb,2.0\n"


def test_markdown_table_escapes_cells_and_aligns():
    assert io.markdown_table(("a", "b"), [("x|y", 1), ("two\n lines", "")]) == (
        "| a | b |\n| --- | --- |\n| x\\|y | 1 |\n| two lines |  |")
    assert io.markdown_table(["n", "v"], [], align=["left", "right"]) == "| n | v |\n| :--- | ---: |"


def test_write_json_is_sorted_indented_and_takes_numpy_and_paths(tmp_path):
    """Byte-exact: results are diffed and hashed, so key order and layout are part of the format."""
    from pathlib import Path

    io.write_json(tmp_path / "a.json", {"b": np.float32(0.5), "a": [np.int64(3)], "c": np.arange(2), "d": Path("x")})
    assert (tmp_path / "a.json").read_text() == (
        '{\n  "a": [\n    3\n  ],\n  "b": 0.5,\n  "c": [\n    0,\n    1\n  ],\n  "d": "x"\n}\n')
    with pytest.raises(TypeError, match="cannot write set to JSON"):
        io.write_json(tmp_path / "b.json", {"s": {1}})


def test_save_npy_refuses_object_arrays(tmp_path):
    # A pickled array would load only with allow_pickle=True, i.e. never in the rules that read it.
    with pytest.raises(ValueError, match="allow_pickle"):
        io.save_npy(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object))
    assert list(tmp_path.iterdir()) == []


def test_write_csv_small_floats_keep_a_lowercase_exponent(tmp_path):
    pd = pytest.importorskip("pandas")
    io.write_csv(tmp_path / "t.csv", pd.DataFrame({"x": [1.23456789e-7]}))
    assert (tmp_path / "t.csv").read_bytes() == b"x\n1.23457e-07\n"


def test_a_killed_writers_temporary_names_are_removed_by_the_next_write(tmp_path):
    """SIGKILL leaves the temporary file (or folder) of an atomic write; the next write of that output removes it,
    and leaves the temporary names of other outputs alone."""
    target, other = tmp_path / "curves.png", tmp_path / "curves.png.bak"
    stale_file = tmp_path / ".curves.png.abc12345.tmp.png"
    stale_file.write_bytes(b"half a png")
    unrelated = tmp_path / ".other.png.abc12345.tmp.png"
    unrelated.write_bytes(b"another output's")
    other_stale = tmp_path / ".curves.png.bak.x1234567.tmp.bak"
    other_stale.write_bytes(b"")
    io.write_bytes(target, b"png")
    assert target.read_bytes() == b"png"
    assert not stale_file.exists() and unrelated.exists() and other_stale.exists()
    folder = tmp_path / "gifs"
    (tmp_path / ".gifs.q9876543.tmp").mkdir()
    (tmp_path / ".gifs.q9876543.tmp" / "a.gif").write_bytes(b"x")
    with io.atomic_dir(folder) as scratch:
        (scratch / "b.gif").write_bytes(b"y")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".curves.png.bak.x1234567.tmp.bak", ".other.png.abc12345.tmp.png", "curves.png", "gifs"])
    assert not other.exists()
