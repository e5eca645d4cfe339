"""trajbench.weights: offline hub resolution from a pre-populated cache, checksums, lockfile, manifest, verify.

No network: HF_HUB_OFFLINE=1 throughout. Downloads from a live server speaking the hub's protocol (listing, tokens,
faults) are tested through the rule in test_hub_download.py.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from trajbench import weights
from trajbench.standins import populate_hub_cache
from trajbench.weights import WeightsError

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40
CKPT_REPO = "org/tokenizer"
TF_REPO = "org/videomae"
PATTERNS = ["*.json", "*.safetensors", "*.bin"]


@pytest.fixture(autouse=True)
def hub_env(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("HF_HOME", "HF_HUB_CACHE", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def _files(folder: Path, contents: dict[str, bytes]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, data in contents.items():
        (folder / name).write_bytes(data)
        out[name] = folder / name
    return out


TF_CONTENTS = {
    "config.json": b'{"model_type": "videomae"}\n',
    "preprocessor_config.json": b'{"crop_size": {"height": 32, "width": 32}}\n',
    "model.safetensors": bytes(range(256)) * 40,
    "pytorch_model.bin": b"torch pickle that must never be fetched" * 10,
    "README.md": b"# model card\n",
}


@pytest.fixture
def cache(tmp_path) -> Path:
    cache = tmp_path / "hf_cache"
    populate_hub_cache(cache, CKPT_REPO, _files(tmp_path / "src_ckpt", {"video.ckpt": b"\x01\x02" * 5000}), COMMIT_A)
    populate_hub_cache(cache, TF_REPO, _files(tmp_path / "src_tf", TF_CONTENTS), COMMIT_A)
    return cache


def ckpt_cfg(**extra):
    return {"source": "hub", "repo_id": CKPT_REPO, "revision": "main", "filename": "video.ckpt", **extra}


def tf_cfg(**extra):
    return {"source": "hub", "repo_id": TF_REPO, "revision": "main", "allow_patterns": PATTERNS, **extra}


def fetch(name, cfg, cache, lockfile, offline=True, **kw):
    return weights.fetch(name, cfg, cache_dir=cache, offline=offline, lockfile=lockfile, **kw)


def blob_of(cache: Path, repo_id: str, name: str, commit: str = COMMIT_A) -> Path:
    return Path(os.path.realpath(weights.repo_cache_folder(cache, repo_id) / "snapshots" / commit / name))


def flip_byte(path: Path, at: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_filename_resolved_offline_from_cache(cache, tmp_path):
    lockfile = tmp_path / "config" / "weights.lock"
    manifest = fetch("magvit", ckpt_cfg(), cache, lockfile)
    snapshot = weights.repo_cache_folder(cache, CKPT_REPO) / "snapshots" / COMMIT_A
    assert manifest["model"] == "magvit" and manifest["source"] == "hub"
    assert (manifest["repo_id"], manifest["revision"], manifest["commit"]) == (CKPT_REPO, "main", COMMIT_A)
    assert manifest["files"] == [
        {
            "path": "video.ckpt",
            "local_path": str((snapshot / "video.ckpt").absolute()),
            "size": 10000,
            "sha256": hashlib.sha256(b"\x01\x02" * 5000).hexdigest(),
        }
    ]
    assert manifest["created_by"] == "trajbench.weights" and manifest["version"]
    assert weights.local_path(manifest) == (snapshot / "video.ckpt").absolute()
    assert weights.local_path(manifest, "video.ckpt") == (snapshot / "video.ckpt").absolute()

    path = tmp_path / "manifests" / "magvit.json"
    weights.write_manifest(manifest, path)
    assert weights.verify(path) == manifest


def test_allow_patterns_resolve_only_safetensors(cache, tmp_path):
    manifest = fetch("videomae", tf_cfg(), cache, tmp_path / "weights.lock")
    names = [f["path"] for f in manifest["files"]]
    assert names == ["config.json", "model.safetensors", "preprocessor_config.json"]
    for record in manifest["files"]:
        assert record["sha256"] == hashlib.sha256(TF_CONTENTS[record["path"]]).hexdigest()
    # the transformers folder: where config.json lies
    assert (
        weights.local_path(manifest) == (weights.repo_cache_folder(cache, TF_REPO) / "snapshots" / COMMIT_A).absolute()
    )


def test_select_files_drops_bins_shadowed_by_safetensors():
    repo = [
        "config.json",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "pytorch_model.bin.index.json",
        "pytorch_model-00001-of-00002.bin",
        "pytorch_model-00002-of-00002.bin",
        "legacy/pytorch_model.bin",
        "legacy/config.json",
        "README.md",
    ]
    selected, dropped = weights.select_files(repo, ["*.json", "*.safetensors", "*.bin"])
    assert dropped == [
        "pytorch_model-00001-of-00002.bin",
        "pytorch_model-00002-of-00002.bin",
        "pytorch_model.bin.index.json",
    ]
    # a folder without safetensors keeps its .bin: it is the only copy of those weights
    assert "legacy/pytorch_model.bin" in selected and "README.md" not in selected
    assert weights.select_files(["config.json", "pytorch_model.bin"], PATTERNS) == (
        ["config.json", "pytorch_model.bin"],
        [],
    )


@pytest.mark.parametrize("name, kind", [("model.safetensors", "sha256"), ("config.json", "git blob sha1")])
def test_corrupted_cached_file_caught_by_hub_hash(cache, tmp_path, name, kind):
    blob = blob_of(cache, TF_REPO, name)
    flip_byte(blob, at=5)
    expected = blob.name
    actual = hashlib.sha256(blob.read_bytes()).hexdigest() if kind == "sha256" else weights.git_blob_sha1(blob)
    with pytest.raises(WeightsError) as err:
        fetch("videomae", tf_cfg(), cache, tmp_path / "weights.lock")
    msg = str(err.value)
    assert name in msg and f"has {kind} {actual}" in msg and f"hub recorded {expected}" in msg
    assert "corrupted or truncated" in msg and f"Removed {blob}" in msg and "rerun download_weights" in msg
    # removed from the cache, so that the next run downloads it anew
    assert (
        not blob.exists() and not (weights.repo_cache_folder(cache, TF_REPO) / "snapshots" / COMMIT_A / name).exists()
    )
    assert not (tmp_path / "weights.lock").exists()  # nothing recorded from a bad file


def test_truncated_file_caught(cache, tmp_path):
    blob = blob_of(cache, CKPT_REPO, "video.ckpt")
    blob.write_bytes(blob.read_bytes()[:4096])
    with pytest.raises(WeightsError, match=r"video\.ckpt .*4096 bytes.*corrupted or truncated"):
        fetch("magvit", ckpt_cfg(), cache, tmp_path / "weights.lock")


@pytest.mark.parametrize("how", ["deleted", "interrupted"])
def test_missing_file_offline_says_both_ways_out(cache, tmp_path, how):
    lockfile = tmp_path / "weights.lock"
    fetch("videomae", tf_cfg(), cache, lockfile)
    snapshot = weights.repo_cache_folder(cache, TF_REPO) / "snapshots" / COMMIT_A
    blob = blob_of(cache, TF_REPO, "model.safetensors")
    if how == "deleted":
        blob.unlink()
    else:  # what a killed huggingface_hub download leaves: a partial blob under .incomplete, no snapshot link
        blob.rename(blob.with_name(blob.name + ".incomplete"))
    (snapshot / "model.safetensors").unlink()
    with pytest.raises(WeightsError) as err:
        fetch("videomae", tf_cfg(), cache, lockfile)
    msg = str(err.value)
    assert f"{TF_REPO}@{COMMIT_A} file 'model.safetensors'" in msg  # locked: resolved at the locked commit
    assert "offline mode is on" in msg and "with network access" in msg and "source: local" in msg


def test_repo_not_cached_offline(tmp_path):
    with pytest.raises(WeightsError, match=r"org/absent@main file 'video.ckpt' .*not in the cache .*source: local"):
        fetch("magvit", ckpt_cfg(repo_id="org/absent"), tmp_path / "empty_cache", tmp_path / "weights.lock")
    with pytest.raises(WeightsError, match=r"org/absent@main .*not in the cache"):
        fetch("videomae", tf_cfg(repo_id="org/absent"), tmp_path / "empty_cache", tmp_path / "weights.lock")


def test_lockfile_written_on_first_run_and_verified_later(cache, tmp_path):
    lockfile = tmp_path / "config" / "weights.lock"
    first = fetch("magvit", ckpt_cfg(), cache, lockfile)
    fetch("videomae", tf_cfg(), cache, lockfile)
    text = lockfile.read_text()
    lock = json.loads(text)
    assert text == json.dumps(lock, indent=2, sort_keys=True) + "\n"  # stable, sorted formatting
    assert lock["format"] == weights.LOCK_FORMAT and sorted(lock["models"]) == ["magvit", "videomae"]
    assert lock["models"]["magvit"] == {
        "source": "hub",
        "repo_id": CKPT_REPO,
        "revision": "main",
        "filename": "video.ckpt",
        "commit": COMMIT_A,
        "files": {"video.ckpt": {"sha256": first["files"][0]["sha256"], "size": 10000}},
    }
    assert sorted(lock["models"]["videomae"]["files"]) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]
    assert fetch("magvit", ckpt_cfg(), cache, lockfile) == first
    assert lockfile.read_text() == text


def test_lockfile_mismatch_and_deliberate_relock(cache, tmp_path):
    lockfile = tmp_path / "weights.lock"
    old = fetch("videomae", tf_cfg(), cache, lockfile)
    # same commit, other content, consistent with its own blob name: only the lockfile can tell
    new_weights = b"\x07" * 1000
    populate_hub_cache(cache, TF_REPO, _files(tmp_path / "src_new", {"model.safetensors": new_weights}), COMMIT_A)
    with pytest.raises(WeightsError) as err:
        fetch("videomae", tf_cfg(), cache, lockfile)
    msg = str(err.value)
    old_sha = next(f["sha256"] for f in old["files"] if f["path"] == "model.safetensors")
    new_sha = hashlib.sha256(new_weights).hexdigest()
    assert "model.safetensors" in msg and old_sha in msg and new_sha in msg and str(lockfile) in msg
    assert "delete the entry 'videomae'" in msg

    lock = json.loads(lockfile.read_text())
    del lock["models"]["videomae"]
    lockfile.write_text(json.dumps(lock))
    manifest = fetch("videomae", tf_cfg(), cache, lockfile)
    assert new_sha in {f["sha256"] for f in manifest["files"]}
    assert json.loads(lockfile.read_text())["models"]["videomae"]["files"]["model.safetensors"]["sha256"] == new_sha


def test_lock_pins_commit_when_branch_moves(cache, tmp_path):
    lockfile = tmp_path / "weights.lock"
    first = fetch("magvit", ckpt_cfg(), cache, lockfile)
    populate_hub_cache(cache, CKPT_REPO, _files(tmp_path / "src_b", {"video.ckpt": b"newer" * 100}), COMMIT_B)
    # unlocked, main now resolves to B; locked, the fetch stays on A
    assert fetch("magvit", ckpt_cfg(), cache, tmp_path / "other.lock")["commit"] == COMMIT_B
    again = fetch("magvit", ckpt_cfg(), cache, lockfile)
    assert again["commit"] == COMMIT_A and again["files"] == first["files"]


@pytest.mark.parametrize(
    "change", [{"revision": "v2"}, {"repo_id": "org/other"}, {"filename": "other.ckpt"}], ids=lambda c: next(iter(c))
)
def test_config_change_against_lock(cache, tmp_path, change):
    lockfile = tmp_path / "weights.lock"
    fetch("magvit", ckpt_cfg(), cache, lockfile)
    with pytest.raises(WeightsError, match=r"models\.magvit asks for .* but .* pins .*delete the entry 'magvit'"):
        fetch("magvit", ckpt_cfg(**change), cache, lockfile)


def test_local_source_file_and_folder(tmp_path):
    lockfile = tmp_path / "weights.lock"
    ckpt = tmp_path / "local" / "video.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"checkpoint bytes")
    folder = tmp_path / "local_tf"
    _files(folder, {"config.json": b"{}", "model.safetensors": b"weights"})
    _files(folder / "sub", {"extra.txt": b"x"})

    m = fetch("magvit", {"source": "local", "path": str(ckpt)}, None, lockfile)
    assert m["source"] == "local" and m["path"] == str(ckpt)
    assert m["files"] == [
        {
            "path": "video.ckpt",
            "local_path": str(ckpt.absolute()),
            "size": 16,
            "sha256": hashlib.sha256(b"checkpoint bytes").hexdigest(),
        }
    ]
    t = fetch("videomae", {"source": "local", "path": str(folder)}, None, lockfile)
    assert [f["path"] for f in t["files"]] == ["config.json", "model.safetensors", "sub/extra.txt"]
    assert weights.local_path(t) == folder.absolute()
    lock = json.loads(lockfile.read_text())["models"]
    assert lock["magvit"]["path"] == str(ckpt) and lock["magvit"]["files"]["video.ckpt"]["size"] == 16

    ckpt.write_bytes(b"checkpoint bytez")
    with pytest.raises(WeightsError, match=r"video\.ckpt has sha256 .* expects .*delete the entry 'magvit'"):
        fetch("magvit", {"source": "local", "path": str(ckpt)}, None, lockfile)
    # A file added to a locked local folder is a change too.
    _files(folder, {"extra.bin": b"y"})
    with pytest.raises(WeightsError, match=r"model videomae: files \['config\.json', 'extra\.bin', 'model\.safetensors', "
                                          r"'sub/extra\.txt'\] differ from those in .*weights\.lock \(\['config\.json', "
                                          r"'model\.safetensors', 'sub/extra\.txt'\]\)\. If the change is deliberate"):
        fetch("videomae", {"source": "local", "path": str(folder)}, None, lockfile)
    with pytest.raises(WeightsError, match=r"models\.magvit\.path .*does not exist"):
        fetch("magvit", {"source": "local", "path": str(tmp_path / "nope.ckpt")}, None, lockfile)


def test_source_none(tmp_path):
    manifest = fetch("pixels", {"source": "none"}, None, tmp_path / "weights.lock")
    assert (manifest["model"], manifest["source"], manifest["files"]) == ("pixels", "none", [])
    assert not (tmp_path / "weights.lock").exists()
    weights.write_manifest(manifest, tmp_path / "pixels.json")
    assert weights.verify(tmp_path / "pixels.json") == manifest
    with pytest.raises(WeightsError, match="no weights"):
        weights.local_path(manifest)


def test_verify_catches_changes_after_download(cache, tmp_path):
    manifest = fetch("videomae", tf_cfg(), cache, tmp_path / "weights.lock")
    path = tmp_path / "videomae.json"
    weights.write_manifest(manifest, path)
    blob = blob_of(cache, TF_REPO, "model.safetensors")
    original = blob.read_bytes()
    expected = hashlib.sha256(original).hexdigest()

    flip_byte(blob)
    with pytest.raises(WeightsError) as err:
        weights.verify(path)
    msg = str(err.value)
    assert "model.safetensors" in msg and expected in msg and hashlib.sha256(blob.read_bytes()).hexdigest() in msg
    assert str(blob) in msg and "rerun download_weights" in msg

    blob.write_bytes(original[:100])
    with pytest.raises(WeightsError, match=r"model\.safetensors .*not computed \(size differs\) \(100 bytes\).*expects "
                                          r".*10240 bytes"):
        weights.verify(path)
    blob.unlink()
    with pytest.raises(WeightsError, match=r"model\.safetensors is missing"):
        weights.verify(path)
    with pytest.raises(WeightsError, match=r"cannot read the weights manifest .*absent\.json"):
        weights.verify(tmp_path / "absent.json")


@pytest.mark.parametrize(
    "cfg, match",
    [
        ({"source": "hub", "repo_id": CKPT_REPO}, "exactly one of 'filename' .* found neither"),
        (ckpt_cfg(allow_patterns=["*"]), "found both"),
        (ckpt_cfg(repo_id="no-slash"), r"repo_id is 'no-slash'"),
        (tf_cfg(allow_patterns=[]), r"allow_patterns is \[\]"),
        (tf_cfg(allow_patterns=["*.json", ""]), r"allow_patterns is \['\*\.json', ''\]; give a list of glob"),
        (ckpt_cfg(revision=""), r"models\.m\.revision is ''; set a branch, tag or 40-char commit"),
        (ckpt_cfg(filename=""), r"models\.m\.filename is ''; set the file's path in the repo"),
        ({"source": "local", "path": None}, r"models\.m\.path is None, which does not exist"),
        ({"source": "s3"}, r"models\.m\.source is 's3'"),
    ],
)
def test_bad_model_config(tmp_path, cfg, match):
    with pytest.raises(WeightsError, match=match):
        fetch("m", cfg, tmp_path / "cache", tmp_path / "weights.lock")


def test_patterns_matching_nothing(cache, tmp_path):
    with pytest.raises(WeightsError, match=r"allow_patterns \['\*\.onnx'\] match no file .*config\.json"):
        fetch("videomae", tf_cfg(allow_patterns=["*.onnx"]), cache, tmp_path / "weights.lock")


def test_bad_lockfile(cache, tmp_path):
    lockfile = tmp_path / "weights.lock"
    lockfile.write_text("not json")
    with pytest.raises(WeightsError, match=r"weights\.lock is not a trajbench weights lock"):
        fetch("magvit", ckpt_cfg(), cache, lockfile)
    # Another format with a models table, and the right format without one, are refused alike.
    lockfile.write_text(json.dumps({"format": 2, "models": {}}))
    with pytest.raises(WeightsError, match=r"weights lock \(format 2, expected 1\); restore it"):
        fetch("magvit", ckpt_cfg(), cache, lockfile)
    lockfile.write_text(json.dumps({"format": 1, "models": []}))
    with pytest.raises(WeightsError, match=r"not a trajbench weights lock \(format 1, expected 1\)"):
        fetch("magvit", ckpt_cfg(), cache, lockfile)


def test_hub_config_defaults_and_forms(cache, tmp_path):
    """No revision means main; one pattern may be a bare string; a 40-char commit is found offline without refs."""
    lockfile = tmp_path / "new" / "folder" / "weights.lock"  # its folders are made
    cfg = ckpt_cfg()
    del cfg["revision"]
    assert fetch("magvit", cfg, cache, lockfile)["revision"] == "main"
    assert json.loads(lockfile.read_text())["models"]["magvit"]["revision"] == "main"
    manifest = fetch("videomae", tf_cfg(allow_patterns="*.json"), cache, tmp_path / "other.lock")
    assert manifest["allow_patterns"] == ["*.json"]
    assert [f["path"] for f in manifest["files"]] == ["config.json", "preprocessor_config.json"]
    (weights.repo_cache_folder(cache, TF_REPO) / "refs" / "main").unlink()
    pinned = fetch("videomae", tf_cfg(revision=COMMIT_A), cache, tmp_path / "pinned.lock")
    assert pinned["commit"] == COMMIT_A and len(pinned["files"]) == 3


def test_local_path_and_empty_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match=r"models\.m\.path '.*empty' is an empty folder; put the model files"):
        fetch("m", {"source": "local", "path": str(tmp_path / "empty")}, None, tmp_path / "weights.lock")
    manifest = {"model": "m", "source": "local", "files": [{"path": "a.pt", "local_path": "x/a.pt"},
                                                           {"path": "b.pt", "local_path": "x/b.pt"}]}
    assert weights.local_path(manifest, "b.pt") == Path("x/b.pt")
    with pytest.raises(WeightsError, match=r"model m: the manifest has no file 'c\.pt'; it has \['a\.pt', 'b\.pt'\]"):
        weights.local_path(manifest, "c.pt")
    with pytest.raises(WeightsError, match=r"model m: several files \['a\.pt', 'b\.pt'\] and no config\.json"):
        weights.local_path(manifest)
    with pytest.raises(WeightsError, match="model m has source 'none': it has no weights to load"):
        weights.local_path({"model": "m", "source": "none", "files": []})


def test_cache_dir_and_offline_from_env(monkeypatch, tmp_path):
    assert weights.resolve_cache_dir("resources/hf_cache") == Path("resources/hf_cache").absolute()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert weights.resolve_cache_dir("resources/hf_cache") == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert weights.resolve_cache_dir("resources/hf_cache") == tmp_path / "hub"
    assert weights.offline_mode(False)  # HF_HUB_OFFLINE=1
    monkeypatch.setenv("HF_HUB_OFFLINE", "true")  # any case, as huggingface_hub reads it
    assert weights.offline_mode(False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert not weights.offline_mode(False) and weights.offline_mode(True)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert not weights.offline_mode(False)


def test_git_blob_sha1_matches_git(tmp_path):
    (tmp_path / "hello").write_bytes(b"hello\n")
    (tmp_path / "empty").write_bytes(b"")
    # `git hash-object` of these two files
    assert weights.git_blob_sha1(tmp_path / "hello") == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert weights.git_blob_sha1(tmp_path / "empty") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


def test_manifest_paths_inside_the_project_are_relative(tmp_path, monkeypatch):
    """A copied or moved project folder must verify and load its own files, not the originals."""
    monkeypatch.chdir(tmp_path)
    _files(tmp_path / "resources" / "m", {"config.json": b"{}"})
    manifest = fetch("clip", {"source": "local", "path": "resources/m"}, None, tmp_path / "weights.lock")
    assert manifest["files"][0]["local_path"] == os.path.join("resources", "m", "config.json")
    weights.write_manifest(manifest, tmp_path / "manifest.json")
    assert weights.verify(tmp_path / "manifest.json")["model"] == "clip"
