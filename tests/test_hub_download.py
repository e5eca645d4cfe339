"""download_weights against a live local server speaking the hub's protocol (tests/hubserver.py), with network faults.

Every test runs the real rule in a copied project, huggingface_hub pointed at the server with HF_ENDPOINT; nothing
inside huggingface_hub or trajbench is patched. The server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from conftest import copy_workflow, snakemake
from hubserver import Hub

from trajbench import weights

MAGVIT = "TencentARC/Open-MAGVIT2-Tokenizer-262144-Video"
VIDEOMAE = "MCG-NJU/videomae-base"
CLIP = "openai/clip-vit-base-patch32"
CKPT = "video_128_262144.ckpt"
REPOS = {"magvit": MAGVIT, "videomae": VIDEOMAE, "clip": CLIP}
TOKEN = "hf_secret_test_token"
CONFIG = {
    "weights": {"cache_dir": "resources/hf_cache", "offline": False, "lockfile": "config/weights.lock"},
    "models": {
        "magvit": {"source": "hub", "repo_id": MAGVIT, "revision": "main", "filename": CKPT},
        "videomae": {
            "source": "hub",
            "repo_id": VIDEOMAE,
            "revision": "main",
            "allow_patterns": ["*.json", "*.safetensors", "*.bin"],
        },
        "clip": {
            "source": "hub",
            "repo_id": CLIP,
            "revision": "main",
            "allow_patterns": ["*.json", "*.safetensors", "*.bin", "*.txt"],
        },
    },
}


@pytest.fixture(scope="session")
def standin_files(tmp_path_factory, root) -> dict[str, dict[str, Path]]:
    """Each repository's files: tiny stand-ins in the real formats, and what else the real repos hold."""
    from trajbench.models import registry

    made = tmp_path_factory.mktemp("standins")
    demo = yaml.safe_load((root / "config/demo.yaml").read_text())["models"]
    arch = {"ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "z_channels": 4, "resolution": 16}
    magvit_file = registry.get("magvit").write_standin(made / "magvit", arch, seed=1)
    for name in ("videomae", "clip"):
        registry.get(name).write_standin(made / name, demo[name]["architecture"], seed=1)
    (made / "README.md").write_text("# model card\n")
    (made / "pytorch_model.bin").write_bytes(b"torch pickle shadowed by model.safetensors" * 100)
    files = {
        MAGVIT: {CKPT: magvit_file},
        VIDEOMAE: {p.name: p for p in (made / "videomae").iterdir()}
        | {"pytorch_model.bin": made / "pytorch_model.bin"},
        CLIP: {p.name: p for p in (made / "clip").iterdir()},
    }
    return {repo: {"README.md": made / "README.md", **names} for repo, names in files.items()}


@pytest.fixture
def hub(tmp_path, standin_files):
    """The three repositories, each with two commits on main (a model card, then the weights)."""
    server = Hub(tmp_path / "hub")
    for repo, files in standin_files.items():
        server.commit(repo, {"README.md": files["README.md"]})
        server.commit(repo, files)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def project(tmp_path) -> Path:
    work = copy_workflow(tmp_path / "work")
    (work / "config/weights.lock").unlink(missing_ok=True)
    (work / "config/hub.yaml").write_text(yaml.safe_dump(CONFIG))
    return work


def download(work: Path, endpoint: str, *models: str, check: bool = True, **env: str):
    """snakemake the manifests of ``models`` with huggingface_hub pointed at ``endpoint``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env = {**clean, "HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1", **env}
    targets = [f"resources/weights/{m}/manifest.json" for m in models]
    return snakemake(
        "--configfile",
        "config/hub.yaml",
        "--cores",
        "3",
        "--keep-going",
        *targets,
        cwd=work,
        check=check,
        env=env,
        timeout=300,
    )


def job_log(work: Path, model: str) -> str:
    return (work / f"logs/download_weights/{model}.log").read_text()


def lock(work: Path) -> dict:
    return json.loads((work / "config/weights.lock").read_text())["models"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_repo(work: Path, repo: str) -> Path:
    return work / "resources/hf_cache" / ("models--" + repo.replace("/", "--"))


def big_checkpoint(hub: Hub, mb: int = 24) -> bytes:
    """Moves MagVit's main to a commit whose checkpoint has ``mb`` MB (never loaded: only fetched and hashed)."""
    data = os.urandom(mb << 20)
    hub.commit(MAGVIT, {CKPT: data})
    return data


# ---------------------------------------------------------------------------------------------------- tests


def test_first_download_of_the_three_repositories(hub, project, tmp_path):
    token_file = tmp_path / "stored_token"
    token_file.write_text("hf_stored_on_disk_by_login")
    download(project, hub.url, "magvit", "videomae", "clip", HF_TOKEN_PATH=str(token_file))
    locked = lock(project)
    for model, repo in REPOS.items():
        commit = hub.resolve(repo, "main")
        manifest = json.loads((project / f"resources/weights/{model}/manifest.json").read_text())
        assert manifest["commit"] == locked[model]["commit"] == commit
        for record in manifest["files"]:
            served = hub.read(repo, commit, record["path"])
            assert record["sha256"] == locked[model]["files"][record["path"]]["sha256"] == sha256(served)
            assert record["size"] == len(served)
        assert "recorded in config/weights.lock" in job_log(project, model)
    assert sorted(locked["videomae"]["files"]) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    assert not hub.gets("pytorch_model.bin") and not hub.gets("README.md")  # shadowed by safetensors / not asked
    # weights came through the CDN redirect; no token was sent, not even the one stored on disk
    assert [r["server"] for r in hub.gets(CKPT)] == ["cdn"]
    assert not any(r["auth"] for r in hub.requests)
    assert f"{CKPT}: " in job_log(project, "magvit") and "MB/s" in job_log(project, "magvit")


@pytest.mark.slow
def test_branch_moving_upstream_keeps_the_locked_commit_until_the_entry_is_deleted(hub, project):
    download(project, hub.url, "magvit")
    old = hub.resolve(MAGVIT, "main")
    new_bytes = b"newer weights" * 1000
    new = hub.commit(MAGVIT, {CKPT: new_bytes})

    (project / "resources/weights/magvit/manifest.json").unlink()
    download(project, hub.url, "magvit")
    manifest = json.loads((project / "resources/weights/magvit/manifest.json").read_text())
    assert manifest["commit"] == old and lock(project)["magvit"]["commit"] == old
    assert f"locked commit {old}" in job_log(project, "magvit")
    assert not any(new in r["path"] for r in hub.requests)

    lockfile = project / "config/weights.lock"
    data = json.loads(lockfile.read_text())
    del data["models"]["magvit"]
    lockfile.write_text(json.dumps(data))
    (project / "resources/weights/magvit/manifest.json").unlink()
    download(project, hub.url, "magvit")
    assert lock(project)["magvit"]["commit"] == new
    assert lock(project)["magvit"]["files"][CKPT]["sha256"] == sha256(new_bytes)


def test_branch_moving_between_listing_and_download_is_an_error(hub, project):
    hub.faults.move_on_info[VIDEOMAE] = {"config.json": b'{"model_type": "videomae", "moved": true}\n'}
    listed = hub.resolve(VIDEOMAE, "main")
    proc = download(project, hub.url, "videomae", check=False)
    assert proc.returncode != 0
    log = job_log(project, "videomae")
    assert f"moved during the download (listed at {listed}" in log and "pin models.videomae.revision" in log
    assert not (project / "config/weights.lock").exists()


def test_connection_dropped_once_mid_file_is_resumed(hub, project):
    data = big_checkpoint(hub)
    hub.faults.drops[CKPT] = [15 << 20]  # huggingface_hub writes in 10 MB chunks: it resumes from 10 MB
    download(project, hub.url, "magvit")
    assert [r["range"] for r in hub.gets(CKPT)] == [None, f"bytes={10 << 20}-"]
    assert "Trying to resume download" in job_log(project, "magvit")
    manifest = json.loads((project / "resources/weights/magvit/manifest.json").read_text())
    assert manifest["files"][0]["sha256"] == sha256(data)
    assert not list(project.glob("resources/hf_cache/**/*.incomplete"))


@pytest.mark.slow
def test_connection_lost_mid_file_fails_clearly_and_a_rerun_completes(hub, project):
    data = big_checkpoint(hub)
    hub.faults.drops[CKPT] = [15 << 20] + [0] * 5  # every resume attempt of huggingface_hub breaks off too
    proc = download(project, hub.url, "magvit", check=False)
    assert proc.returncode != 0
    log = job_log(project, "magvit")
    assert f"downloading {MAGVIT}@main file '{CKPT}' (model magvit)" in log and "rerun download_weights" in log
    repo = cache_repo(project, MAGVIT)
    # nothing under a final name: no blob, no snapshot link, no partial file
    assert not (repo / "blobs" / sha256(data)).exists() and not list(repo.glob("snapshots/*/*"))
    assert not list(repo.glob("blobs/*.incomplete"))
    assert not (project / "resources/weights/magvit/manifest.json").exists()

    download(project, hub.url, "magvit")
    assert lock(project)["magvit"]["files"][CKPT]["sha256"] == sha256(data)


def test_corrupted_bytes_under_the_right_etag_are_caught_and_not_kept(hub, project):
    commit = hub.resolve(VIDEOMAE, "main")
    good = hub.read(VIDEOMAE, commit, "model.safetensors")
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF  # what the server flips
    hub.faults.corrupt.add("model.safetensors")
    proc = download(project, hub.url, "videomae", check=False)
    assert proc.returncode != 0
    log = job_log(project, "videomae")
    assert "model.safetensors" in log and sha256(good) in log and sha256(bytes(bad)) in log
    assert "rerun download_weights" in log
    blob = cache_repo(project, VIDEOMAE) / "blobs" / sha256(good)
    assert (
        not blob.exists() and not (cache_repo(project, VIDEOMAE) / "snapshots" / commit / "model.safetensors").exists()
    )
    assert not (project / "config/weights.lock").exists()
    assert not (project / "resources/weights/videomae/manifest.json").exists()

    hub.faults.corrupt.clear()
    download(project, hub.url, "videomae")
    assert lock(project)["videomae"]["files"]["model.safetensors"]["sha256"] == sha256(good)


def _outputs(work: Path, proc) -> str:
    """Everything a user or a later job could see: job and Snakemake logs, outputs, lockfile, console."""
    texts = [proc.stdout, proc.stderr]
    for folder in ("logs", "resources/weights", "config", ".snakemake/log"):
        texts += [p.read_text(errors="replace") for p in (work / folder).rglob("*") if p.is_file()]
    return "\n".join(texts)


def test_gated_and_forbidden_repositories_name_hf_token_and_never_show_it(hub, project):
    hub.faults.gated.add(CLIP)
    hub.faults.forbidden |= {VIDEOMAE, MAGVIT}  # their 403 message echoes the Authorization header
    proc = download(project, hub.url, "magvit", "videomae", "clip", check=False, HF_TOKEN=TOKEN)
    assert proc.returncode != 0
    clip_log, videomae_log = job_log(project, "clip"), job_log(project, "videomae")
    # refused on the file (magvit) or on the listing (videomae)
    assert f"{MAGVIT}@main file '{CKPT}' (model magvit): access refused: HF_TOKEN is set" in job_log(project, "magvit")
    assert "Forbidden for Bearer ***" in job_log(project, "magvit")
    assert f"{CLIP} (model clip) is gated: HF_TOKEN is set, but its account has no access" in clip_log
    assert f"https://huggingface.co/{CLIP}" in clip_log
    assert f"{VIDEOMAE}@main (model videomae): access refused: HF_TOKEN is set" in videomae_log
    assert "Forbidden for Bearer ***" in videomae_log  # the server's reason, token redacted
    assert any(r["auth"] for r in hub.requests)  # the token was in play
    assert TOKEN not in _outputs(project, proc)

    proc = download(project, hub.url, "clip", check=False)  # without a token: 401
    assert f"{CLIP} (model clip) is gated: HF_TOKEN is not set" in job_log(project, "clip")


def test_missing_repository_revision_and_file_are_named(hub, project):
    config = yaml.safe_load((project / "config/hub.yaml").read_text())
    config["models"]["magvit"]["filename"] = "video_256_262144.ckpt"
    config["models"]["videomae"]["revision"] = "v9"
    config["models"]["clip"]["repo_id"] = "openai/clip-vit-base-patch64"
    (project / "config/hub.yaml").write_text(yaml.safe_dump(config))
    proc = download(project, hub.url, "magvit", "videomae", "clip", check=False)
    assert proc.returncode != 0
    assert f"{MAGVIT}@main file 'video_256_262144.ckpt' (model magvit) does not exist in the repo" in job_log(
        project, "magvit"
    )
    assert f"revision 'v9' of {VIDEOMAE} (model videomae) does not exist" in job_log(project, "videomae")
    assert "repository openai/clip-vit-base-patch64 (model clip) was not found" in job_log(project, "clip")
    assert not (project / "config/weights.lock").exists()


@pytest.mark.slow
def test_unreachable_server(hub, project):
    download(project, hub.url, "magvit", "videomae")
    locked = lock(project)
    hub.stop()  # nothing listens on its port any more
    for model in ("magvit", "videomae"):
        (project / f"resources/weights/{model}/manifest.json").unlink()
    # locked and cached: the locked commit's files need no server
    download(project, hub.url, "magvit", "videomae")
    assert lock(project) == locked

    # not locked (re-pinning), the file listing needs the hub: the error points at the cached snapshot
    lockfile = project / "config/weights.lock"
    lockfile.write_text(json.dumps({"format": 1, "models": {"magvit": locked["magvit"]}}))
    (project / "resources/weights/videomae/manifest.json").unlink()
    proc = download(project, hub.url, "videomae", check=False)
    assert proc.returncode != 0
    log = job_log(project, "videomae")
    assert f"from {hub.url} failed" in log and "HF_HUB_OFFLINE=1" in log and locked["videomae"]["commit"] in log
    download(project, hub.url, "videomae", HF_HUB_OFFLINE="1")
    assert lock(project)["videomae"] == locked["videomae"]


@pytest.mark.slow
@pytest.mark.skipif(not weights.HUB_TAKES_PROGRESS, reason="huggingface_hub < 1.0 takes no progress class")
def test_slow_server_logs_progress_with_bytes_and_rate(hub, project):
    big_checkpoint(hub, mb=30)
    hub.faults.rate = 3e6  # about 10 s; huggingface_hub reports progress per 10 MB chunk, every 3.5 s here
    download(project, hub.url, "magvit")
    lines = [line for line in job_log(project, "magvit").splitlines() if f"downloading {CKPT}:" in line]
    assert len(lines) >= 3, lines  # while downloading, and when done
    times = [datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f") for line in lines[:-1]]
    assert all((b - a).total_seconds() >= weights.DOWNLOAD_LOG_EVERY_S for a, b in itertools.pairwise(times)), lines
    progress = [re.search(r": ([\d.]+)/([\d.]+) MB \(([\d.]+) MB/s\)", line) for line in lines]
    assert all(progress), lines
    assert progress[-1][1] == progress[-1][2] == f"{(30 << 20) / 1e6:.1f}"  # the whole file
    assert all(1.0 < float(m[3]) < 5.0 for m in progress), lines
