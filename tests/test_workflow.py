"""The workflow as a reviewer meets it: dry runs, lint, formatting, environments, and the demo end to end."""

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, copy_workflow, snakemake

EXPECTED_RULES = {
    "check_environment",
    "download_weights",
    "render_videos",
    "tokenize",
    "reconstruction_metrics",
    "extract_all_features",
    "probe",
    "compare",
    "summary",
}


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:")[1]
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
    counts.pop("total", None)
    return counts


# Six models with weights (magvit, videomae, videomae_k400, clip, dinov2, vjepa2) x pretrained/random, but
# videomae_k400 pretrained only (its random init is videomae's), and the pixels, oracle and kinematics baselines: 14
# model/init pairs, one feature job each (each encodes both controls), except that a network with both inits
# (videomae, clip, dinov2, vjepa2) has one job for the two ("paired": each batch preprocessed once).
@pytest.mark.parametrize("configfile,extra,tokenize,single,paired,finetune", [
    ("config/config.yaml", "", 2, 6, 4, 0),
    ("config/config.yaml", "finetune: {enabled: true}\n", 3, 7, 4, 1),  # + MagVit fine-tuned
    ("config/demo.yaml", "", 3, 10, 1, 1),  # fine-tuned; clip, dinov2 and vjepa2 pretrained only
])
def test_dry_run_lists_the_dag(configfile, extra, tokenize, single, paired, finetune, tmp_path):
    work = copy_workflow(tmp_path)
    (work / "extra.yaml").write_text(extra or "{}\n")
    out = snakemake("-n", "--configfile", configfile, "extra.yaml", cwd=work).stdout
    counts = job_counts(out)
    assert EXPECTED_RULES <= set(counts), set(counts)
    assert counts["download_weights"] == 6  # one per model with weights
    assert counts["tokenize"] == tokenize and counts["extract_all_features"] == single
    assert counts["extract_all_paired_features"] == paired
    assert counts.get("finetune_tokenizer", 0) == finetune == counts.get("render_training_videos", 0)
    # features.shards is 1: one job per model (and init, unless paired), nothing to merge
    assert counts["probe"] == single + 2 * paired
    assert not {"merge_features", "extract_features", "extract_paired_features"} & set(counts)


def test_split_features_pair_their_inits_shard_by_shard(tmp_path):
    """features.shards 2: a shard job per paired network (both inits), per single-init network and init; a merge
    per model and init of a network; the baselines stay one job each."""
    work = copy_workflow(tmp_path)
    (work / "extra.yaml").write_text("features: {shards: 2}\n")
    counts = job_counts(snakemake("-n", "--configfile", "config/demo.yaml", "extra.yaml", cwd=work).stdout)
    # demo: videomae paired; videomae_k400, clip, dinov2, vjepa2 pretrained only; magvit x 3 and three baselines
    assert counts["extract_paired_features"] == 2 and counts["extract_features"] == 4 * 2
    assert counts["merge_features"] == 2 + 4 and counts["extract_all_features"] == 3 + 3


def test_lint_is_clean():
    for configfile in ("config/config.yaml", "config/demo.yaml"):
        proc = snakemake("--lint", "--configfile", configfile)
        assert "Lints for" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_snakefmt_formatting():
    files = ["Snakefile", *map(str, sorted((ROOT / "workflow/rules").glob("*.smk")))]
    proc = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *files], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr


def test_invalid_config_stops_before_any_job(tmp_path):
    work = copy_workflow(tmp_path)
    (work / "bad.yaml").write_text("dataset:\n  frames: 16\n")
    proc = snakemake("-n", "--configfile", "bad.yaml", cwd=work, check=False)
    assert proc.returncode != 0
    assert "dataset.frames=16" in proc.stdout + proc.stderr
    (work / "bad.yaml").write_text("dataset:\n  frams: 17\n")
    proc = snakemake("-n", "--configfile", "bad.yaml", cwd=work, check=False)
    assert proc.returncode != 0 and "frams" in proc.stdout + proc.stderr


def _requirements(specs):
    out = {}
    for spec in specs:
        m = re.match(r"^([A-Za-z0-9_.-]+)\s*(.*)$", spec)
        out[m.group(1).lower().replace("_", "-")] = m.group(2).replace(" ", "")
    return out


def test_conda_envs_agree_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = _requirements(project["dependencies"])
    seen = set()
    for env_file in sorted((ROOT / "envs").glob("*.yaml")):
        deps = yaml.safe_load(env_file.read_text())["dependencies"]
        specs = [d for d in deps if isinstance(d, str)]
        specs += [p for d in deps if isinstance(d, dict) for p in d.get("pip", [])]
        for name, bound in _requirements(specs).items():
            if name in ("python", "pip"):
                continue
            assert name in pinned, f"{env_file.name}: {name} is not a dependency in pyproject.toml"
            assert bound == pinned[name], f"{env_file.name}: {name}{bound} but pyproject.toml says {pinned[name]}"
            seen.add(name)
    # Every library dependency reaches some job environment; snakemake itself runs the jobs.
    assert set(pinned) - {"snakemake"} <= seen, set(pinned) - seen


def test_every_floor_is_the_pin_the_minimum_ci_leg_installs():
    """pyproject.toml, envs/*.yaml and the Snakefile's min_version promise exactly the releases that .ci/run's
    minimum-versions leg installs (.ci/min-versions.txt) and tests: no floor is untested, no pin is unpromised."""
    pins = {}
    for line in (ROOT / ".ci/min-versions.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, release = line.partition("==")
            pins[name.strip().lower().replace("_", "-")] = release.strip()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = {"pyproject.toml": [*project["dependencies"], *sum(project["optional-dependencies"].values(), [])]}
    for env_file in sorted((ROOT / "envs").glob("*.yaml")):
        deps = yaml.safe_load(env_file.read_text())["dependencies"]
        specs[env_file.name] = [d for d in deps if isinstance(d, str)]
        specs[env_file.name] += [p for d in deps if isinstance(d, dict) for p in d.get("pip", [])]
    floors = set()
    for where, listed in specs.items():
        for name, bound in _requirements(listed).items():
            if name in ("python", "pip"):
                continue
            assert name in pins, f"{where}: {name}{bound} has no pin in .ci/min-versions.txt"
            assert bound == f">={pins[name]}", f"{where}: {name}{bound} but .ci/min-versions.txt pins {pins[name]}"
            floors.add(name)
    assert floors == set(pins), f"pinned in .ci/min-versions.txt but promised nowhere: {set(pins) - floors}"
    assert f'min_version("{pins["snakemake"]}")' in (ROOT / "Snakefile").read_text()


# --- the demo end to end -------------------------------------------------------------------------------------------

NETWORKS = ("videomae", "videomae_k400", "clip", "dinov2", "vjepa2")
# The demo runs random inits of magvit and videomae only (its time budget); the other networks are pretrained only.
WITH_RANDOM = ("magvit", "videomae")
MODEL_INITS = {("magvit", "finetuned"), ("pixels", "none"), ("oracle", "none"), ("kinematics", "none"),
               *((model, "pretrained") for model in NETWORKS), *((model, "random") for model in WITH_RANDOM),
               ("magvit", "pretrained")}


@pytest.mark.slow  # the session-wide demo run
def test_demo_produces_summary_tables_figures(demo):
    import numpy as np
    import pandas as pd

    summary = (demo / "results/summary.md").read_text()
    assert "Stand-in weights" in summary and "## 1. MagVit reconstruction" in summary
    models = pd.read_csv(demo / "results/comparisons/models.csv")
    assert set(zip(models["model"], models["init"])) == MODEL_INITS
    assert models["logreg_accuracy_mean"].between(0, 1).all()
    # The oracle shows the task is learnable even at demo size (chance is 1/9).
    assert models.set_index("model").loc["oracle", "logreg_accuracy_mean"] > 0.5
    paired = pd.read_csv(demo / "results/comparisons/init_differences.csv")
    assert set(paired["model"]) == set(WITH_RANDOM)
    assert set(paired.loc[paired["model"] == "magvit", "comparison"]) == {
        "pretrained − random", "finetuned − random", "finetuned − pretrained"}
    recon = pd.read_csv(demo / "results/comparisons/reconstruction.csv").set_index("metric")
    assert {"mse", "psnr", "ssim", "codebook_distinct"} <= set(recon.index)
    for name in ("probe_accuracy", "init_differences", "confusion_matrices", "reconstruction_distributions",
                 "reconstruction_panel", "order_sensitivity", "representation_matrix", "psnr_per_frame"):
        assert (demo / f"results/figures/{name}.png").stat().st_size > 10_000, name
    assert sorted(p.stem for p in (demo / "results/data/gifs").glob("*.gif")) == sorted(
        pd.read_csv(demo / "results/data/labels.csv")["class_name"].unique())
    # Stand-in "pretrained" weights are a different network from the random init.
    for model in WITH_RANDOM:
        pre = np.load(demo / f"results/features/{model}/pretrained/ordered.npy")
        rnd = np.load(demo / f"results/features/{model}/random/ordered.npy")
        assert pre.shape == rnd.shape and not np.allclose(pre, rnd), model
    # Two checkpoints of one family are two networks (their own stand-in seeds), reported in their own rows.
    k400 = np.load(demo / "results/features/videomae_k400/pretrained/ordered.npy")
    assert not np.allclose(k400, np.load(demo / "results/features/videomae/pretrained/ordered.npy"))
    meta = json.loads((demo / "results/features/videomae_k400/pretrained/features.json").read_text())
    assert meta["family"] == "videomae" and meta["checkpoint_kind"] == "VideoMAEForVideoClassification"
    tokens = np.load(demo / "results/magvit/pretrained/tokens.npy")
    videos = np.load(demo / "results/data/videos.npy", mmap_mode="r")
    assert tokens.dtype == np.int32 and tokens.shape == (len(videos), 3, 4, 4)  # 9x32x32 frames, 4x8x8 compression
    manifests = {m: json.loads((demo / f"resources/weights/{m}/manifest.json").read_text())
                 for m in ("magvit", *NETWORKS)}
    assert all(f["sha256"] for m in manifests.values() for f in m["files"])
    assert not list(demo.glob("results/**/.*tmp*")), "temporary files left behind"


@pytest.mark.slow  # the session-wide demo run
def test_demo_finetuned_tokenizer(demo):
    """The demo fine-tunes MagVit on its own clips; the third init reconstructs better than the random one."""
    import numpy as np
    import pandas as pd

    from trajbench.checkpoint_magvit import load_checkpoint
    from trajbench.modeling_magvit import MagvitConfig

    recon = pd.read_csv(demo / "results/comparisons/reconstruction.csv").set_index("metric")
    assert recon.loc["psnr", "finetuned_mean"] > recon.loc["psnr", "random_mean"]
    assert recon.loc["psnr", "finetuned_minus_random_ci_low"] > 0
    history = pd.read_csv(demo / "results/finetune/magvit/history.csv")
    # The reconstruction term, not the total: the total subtracts a codebook-entropy reward, need not fall in 8 steps.
    assert history["step"].iloc[-1] == yaml.safe_load((demo / "config/demo.yaml").read_text())["finetune"]["steps"]
    assert history["reconstruction"].iloc[-1] < 0.6 * history["reconstruction"].iloc[0]
    assert (demo / "results/finetune/magvit/curves.png").stat().st_size > 10_000
    assert not (demo / "results/finetune/magvit/resume.pt").exists()  # removed once training ended
    arch = yaml.safe_load((demo / "config/demo.yaml").read_text())["models"]["magvit"]["architecture"]
    load_checkpoint(demo / "results/finetune/magvit/model.ckpt", MagvitConfig.from_dict(arch))
    # Disjoint from the evaluation clips: no training clip equals any evaluation clip.
    train = np.load(demo / "results/finetune/data/videos.npy")
    evaluation = np.load(demo / "results/data/videos.npy")
    assert not {clip.tobytes() for clip in train} & {clip.tobytes() for clip in evaluation}
    summary = (demo / "results/summary.md").read_text()
    assert "## Fine-tuning" in summary and "demonstration" in summary
    assert "finetuned" in (demo / "results/comparisons/models.md").read_text()


@pytest.mark.slow  # the session-wide demo run
def test_demo_html_report(demo):
    snakemake("--configfile", "config/demo.yaml", "--report", "results/report.html", cwd=demo)
    html = (demo / "results/report.html").read_text(errors="replace")
    assert len(html) > 100_000 and "trajbench" in html


def _rerun_plan(demo, extra_yaml: str) -> dict[str, int]:
    (demo / "change.yaml").write_text(extra_yaml)
    out = snakemake("-n", "--configfile", "config/demo.yaml", "change.yaml", cwd=demo).stdout
    return job_counts(out) if "Job stats:" in out else {}


@pytest.mark.slow  # the session-wide demo run
def test_rerun_redoes_only_what_changed(demo):
    assert _rerun_plan(demo, "{}\n") == {}  # up to date: nothing to do
    # A probe parameter: the probes and what follows, nothing upstream.
    assert _rerun_plan(demo, "probe:\n  seed: 1\n") == {"probe": 12, "compare": 1, "summary": 1, "all": 1}
    # The dataset: everything after rendering, but not the environment check or the weights.
    plan = _rerun_plan(demo, "dataset:\n  seed: 1\n")
    assert plan["render_videos"] == 2 and plan["tokenize"] == 3 and plan["extract_all_features"] == 10
    assert plan["extract_all_paired_features"] == 1  # videomae's two inits
    # Not the environment check, the weights, nor the fine-tuning (its own clips, rendered with its own seed).
    assert not {"check_environment", "download_weights", "make_standin_weights", "render_training_videos",
                "finetune_tokenizer"} & set(plan)
    # One model's weights: only that model's branch (the demo's clip is pretrained only).
    plan = _rerun_plan(demo, "models:\n  clip:\n    architecture:\n      projection_dim: 8\n")
    assert plan == {"make_standin_weights": 1, "download_weights": 1, "extract_all_features": 1,
                    "probe": 1, "compare": 1, "summary": 1, "all": 1}


@pytest.mark.slow  # the session-wide demo run
def test_flipped_byte_in_weights_stops_the_stage_that_loads_them(demo, tmp_path):
    work = tmp_path / "demo"
    shutil.copytree(demo, work, symlinks=True)
    weights = work / "resources/standins/clip/model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    proc = snakemake("--cores", "1", "--configfile", "config/demo.yaml", "-f",
                     "results/features/clip/pretrained/ordered.npy", cwd=work, check=False)
    assert proc.returncode != 0
    log = (work / "logs/extract_features/clip/pretrained.log").read_text()
    assert "model.safetensors" in log and "sha256" in log and "rerun download_weights" in log
    assert not list((work / "results/features/clip/pretrained").glob("*.npy"))  # nothing written


@pytest.mark.slow  # Snakemake downloads from a local hub cache (~10 s)
def test_real_config_resolves_all_three_repositories_offline(tmp_path):
    """HF_HUB_OFFLINE=1 and HF_HUB_CACHE holding the three repositories: download_weights needs no network."""
    from trajbench import standins
    from trajbench.models import registry

    work = copy_workflow(tmp_path / "work")
    made, cache = tmp_path / "made", tmp_path / "hf_cache"
    magvit_file = registry.get("magvit").write_standin(made / "magvit", {"ch": 32, "ch_mult": [1, 2],
                                                                         "num_res_blocks": 1, "z_channels": 4,
                                                                         "resolution": 16}, seed=1)
    demo_models = yaml.safe_load((ROOT / "config/demo.yaml").read_text())["models"]
    for name in ("videomae", "clip"):
        registry.get(name).write_standin(made / name, demo_models[name]["architecture"], seed=1)
    commits = {"TencentARC/Open-MAGVIT2-Tokenizer-262144-Video": "1" * 40, "MCG-NJU/videomae-base": "2" * 40,
               "openai/clip-vit-base-patch32": "3" * 40}
    standins.populate_hub_cache(cache, "TencentARC/Open-MAGVIT2-Tokenizer-262144-Video",
                                {"video_128_262144.ckpt": magvit_file}, commits[
                                    "TencentARC/Open-MAGVIT2-Tokenizer-262144-Video"])
    for name, repo in (("videomae", "MCG-NJU/videomae-base"), ("clip", "openai/clip-vit-base-patch32")):
        files = {p.name: p for p in (made / name).iterdir()}
        standins.populate_hub_cache(cache, repo, files, commits[repo])
    targets = [f"resources/weights/{m}/manifest.json" for m in ("magvit", "videomae", "clip")]
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", *targets], cwd=work, text=True,
                          capture_output=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lock = json.loads((work / "config/weights.lock").read_text())["models"]
    for model, target in zip(("magvit", "videomae", "clip"), targets):
        manifest = json.loads((work / target).read_text())
        assert manifest["commit"] == commits[manifest["repo_id"]]
        assert manifest["files"] and all(str(cache) in f["local_path"] for f in manifest["files"])
        assert lock[model]["commit"] == manifest["commit"]
    # A new revision of one model reruns that model's download only (and, in a full run, its branch).
    (work / "change.yaml").write_text(f"models:\n  clip:\n    revision: '{'4' * 40}'\n")
    plan = snakemake("-n", *targets, "--configfile", "config/config.yaml", "change.yaml", cwd=work).stdout
    assert job_counts(plan) == {"download_weights": 1} and "wildcards: model=clip" in plan


@pytest.mark.slow  # the session-wide demo run
def test_broken_flash_attn_falls_back_and_the_models_still_run(demo, tmp_path):
    """A flash-attn whose binary fails with the torch-ABI error, first on PYTHONPATH (a source build without
    metadata, which transformers 5.x imports while importing any model): the check names the class and remedy,
    chooses sdpa, and the transformers stages still run."""
    work = tmp_path / "demo"
    shutil.copytree(demo, work, symlinks=True)
    broken = tmp_path / "broken"
    (broken / "flash_attn").mkdir(parents=True)
    (broken / "flash_attn/__init__.py").write_text(
        "raise ImportError('/site-packages/flash_attn_2_cuda.cpython-311-x86_64-linux-gnu.so: "
        "undefined symbol: _ZNK3c106SymInt6sym_neERKS0_')\n")
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "-R", "check_environment",
         "results/features/clip/pretrained/ordered.npy", "--configfile", "config/demo.yaml"],
        cwd=work, capture_output=True, text=True, timeout=900,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(broken), os.environ.get("PYTHONPATH", "")])})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((work / "results/env/environment.json").read_text())
    flash = report["probes"]["flash_attn"]
    assert flash["class"] == "flash_attn_abi" and "--no-build-isolation" in flash["remedy"]
    assert report["choice"]["attention"] == "sdpa" and report["choice"]["hidden_modules"] == ["flash_attn"]
    assert "hidden from this job" in (work / "logs/extract_features/clip/pretrained.log").read_text()


# --- faults: kill and resume, concurrent runs ------------------------------------------------------------------------

# Outputs whose bytes must equal an uninterrupted run's (the rest hold timings or absolute paths).
DETERMINISTIC = ["results/data/videos.npy", "results/data/labels.csv", "results/data/preview.png",
                 "results/magvit/*/tokens.npy", "results/magvit/*/tokens_shuffled.npy",
                 "results/magvit/*/reconstructions.npy", "results/magvit/*/metrics.csv", "results/magvit/*/per_frame.csv",
                 "results/features/*/*/*.npy", "results/probes/*/*/*.json", "results/probes/*/*/*.csv",
                 "results/comparisons/*", "results/figures/*.png", "results/summary.md"]


def _start(work: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2", *args, "--configfile",
                             "config/demo.yaml"], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _wait_for(path_glob: str, work: Path, proc: subprocess.Popen, timeout: float = 600) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not list(work.glob(path_glob)):
        assert proc.poll() is None, f"run ended before {path_glob} appeared:\n{proc.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, f"{path_glob} did not appear"
        time.sleep(0.2)


# Per stage: the glob of its job logs, and the output its script writes last, of the job that writes each log. A job
# writes its log when it starts and that output when it ends. (Not render_videos: a demo shard renders in 0.1 s.)
KILLED_STAGES = {
    "logs/check_environment.log": lambda log: "results/env/environment.md",
    "logs/tokenize/*/*.log": lambda log: f"results/magvit/{log.parent.name}/shards/{log.stem}/tokenize.json",
    # A paired job ("pretrained+random.log") writes its random init's meta last.
    "logs/extract_features/*/*.log": lambda log: (
        f"results/features/{log.parent.name}/{log.stem.split('+')[-1]}/features.json"
    ),
    "logs/probe/*/*.log": lambda log: f"results/probes/{log.parent.name}/{log.stem}/shuffled_folds.csv",
}


def _running(stage_log: str, output_of, work: Path) -> list[Path]:
    """Logs of the stage's jobs that have started (log written) and not finished (last output absent)."""
    return [log for log in work.glob(stage_log) if not (work / output_of(log)).exists()]


@pytest.mark.slow  # the session-wide demo run
def test_killed_runs_resume_to_the_same_results(demo, tmp_path):
    """SIGKILL the whole run (as a preempted instance does) while it checks the environment, tokenizes, extracts
    features and probes; after each kill `snakemake --unlock` and the README's command resume it. Each kill must land
    inside a running job of its stage (a job that wrote its log but not its last output), checked after the kill: the
    test fails if a kill missed. The final outputs equal an uninterrupted run's, byte for byte."""
    import signal
    import time

    work = copy_workflow(tmp_path / "work", source=demo)  # the very code of the reference run
    for stage_log, output_of in KILLED_STAGES.items():
        proc = _start(work)
        deadline = time.monotonic() + 600
        while not _running(stage_log, output_of, work):
            assert proc.poll() is None, f"run ended before a {stage_log} job ran:\n{proc.stdout.read()[-3000:]}"
            assert time.monotonic() < deadline, f"no {stage_log} job started"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert _running(stage_log, output_of, work), f"the kill missed: every {stage_log} job had finished"
        snakemake("--unlock", "--configfile", "config/demo.yaml", cwd=work)
    snakemake("--cores", "2", "--configfile", "config/demo.yaml", cwd=work, timeout=1200)

    compared = 0
    for pattern in DETERMINISTIC:
        reference = sorted(demo.glob(pattern))
        assert reference, pattern
        for ref in reference:
            got = work / ref.relative_to(demo)
            assert got.read_bytes() == ref.read_bytes(), f"{got.relative_to(work)} differs after kill and resume"
            compared += 1
    assert compared > 40
    leftovers = [p for p in work.rglob("*") if ".tmp" in p.name and ".snakemake" not in p.parts]
    assert not leftovers, leftovers


@pytest.mark.slow  # the session-wide demo run
def test_second_run_in_the_same_folder_is_refused(demo, tmp_path):
    work = tmp_path / "demo"
    shutil.copytree(demo, work, symlinks=True)
    before = {p: p.read_bytes() for p in work.glob("results/comparisons/*")}
    shutil.rmtree(work / "logs/probe")  # so that the wait below sees the first run's jobs start
    first = _start(work, "-R", "probe")
    _wait_for("logs/probe/*/*.log", work, first)
    # The same command again, as a second terminal would start it.
    second = snakemake("--cores", "1", "-R", "probe", "--configfile", "config/demo.yaml", cwd=work, check=False)
    assert second.returncode != 0
    assert "cannot be locked" in second.stdout + second.stderr
    assert first.wait(timeout=900) == 0, first.stdout.read()[-3000:]
    assert {p: p.read_bytes() for p in work.glob("results/comparisons/*")} == before


def _planned(plan: str) -> dict[str, str]:
    """{rule: the reason line of one of its jobs} of what a dry run plans."""
    jobs = re.split(r"\n(?=\[.*\]\n(?:local)?rule )", plan)
    return {m.group(1): re.search(r"reason: (.*)", job).group(1) for job in jobs
            if (m := re.search(r"(?:local)?rule (\w+):", job)) and m.group(1) != "all"}


def _script_of_each_rule() -> dict[str, str]:
    scripts = {}
    for smk in (ROOT / "workflow/rules").glob("*.smk"):
        for rule, body in re.findall(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", smk.read_text(), re.M | re.S):
            match = re.search(r'script:\s+"\.\./scripts/(\w+)\.py"', body)
            if match:
                scripts[rule] = match.group(1)
    for rule, parent in re.findall(r"^use rule (\w+) as (\w+)", (ROOT / "workflow/rules/features.smk").read_text(),
                                   re.M):
        scripts[parent] = scripts[rule]
    return scripts


def _downstream(work: Path) -> dict[str, set[str]]:
    """{rule: every rule that consumes its outputs, directly or not}, from Snakemake's rule graph of the demo."""
    dot = snakemake("--rulegraph", "--configfile", "config/demo.yaml", cwd=work).stdout
    names = dict(re.findall(r"(\d+)\[label = \"(\w+)\"", dot))
    edges = [(names[a], names[b]) for a, b in re.findall(r"(\d+) -> (\d+)", dot)]
    below = {name: set() for name in names.values()}
    changed = True
    while changed:
        changed = False
        for a, b in edges:
            new = ({b} | below[b]) - below[a]
            if new:
                below[a] |= new
                changed = True
    return below


@pytest.mark.slow
def test_editing_a_library_module_reruns_exactly_the_rules_that_import_it(demo, tmp_path):
    """For every module of src/trajbench, an edit plans the rules whose scripts import it (transitively) and what
    consumes their outputs, nothing else; a rule planned for its own params is one whose script imports it.
    (Snakemake reports a params change only for jobs whose inputs are not being remade.)"""
    from trajbench import codehash

    work = tmp_path / "demo"
    shutil.copytree(demo, work, symlinks=True)
    scripts = _script_of_each_rule()
    below = _downstream(work)
    ran = {rule for rule in scripts if rule in below}  # not the opt-in flash-attn rebuild
    imports = {rule: set(codehash.modules(ROOT / f"workflow/scripts/{script}.py", ROOT / "src"))
               for rule, script in scripts.items()}
    for path in sorted((work / "src/trajbench").rglob("*.py")):
        module = ".".join(path.relative_to(work / "src").with_suffix("").parts).removesuffix(".__init__")
        original = path.read_text()
        path.write_text(original + "\n# an edit that may change results\n")
        try:
            planned = _planned(snakemake("-n", "--configfile", "config/demo.yaml", cwd=work).stdout)
        finally:
            path.write_text(original)
        expected = {rule for rule in ran if module in imports[rule]}
        assert set(planned) == expected | {d for rule in expected for d in below[rule]} - {"all"}, module
        assert {rule for rule, reason in planned.items() if "Params have changed" in reason} <= expected, module
        assert all("Params have changed" in planned[rule] for rule in expected if not _below_any(rule, expected,
                                                                                              below)), module
    assert _rerun_plan(work, "{}\n") == {}


def _below_any(rule: str, rules: set[str], below: dict[str, set[str]]) -> bool:
    """Whether ``rule`` consumes (directly or not) the outputs of another of ``rules``."""
    return any(rule in below[other] for other in rules if other != rule)


@pytest.mark.slow  # the session-wide demo run
def test_a_key_sorted_copy_of_the_config_reruns_nothing(demo, tmp_path):
    """Params are compared as text: a config file written with its keys in another order plans no job."""
    work = tmp_path / "demo"
    shutil.copytree(demo, work, symlinks=True)
    for name in ("config.yaml", "demo.yaml"):
        path = work / "config" / name
        path.write_text(yaml.safe_dump(yaml.safe_load(path.read_text()), sort_keys=True))
    assert yaml.safe_load((work / "config/demo.yaml").read_text()) == yaml.safe_load(
        (ROOT / "config/demo.yaml").read_text())
    assert _rerun_plan(work, "{}\n") == {}
    assert _rerun_plan(work, "probe:\n  seed: 1\n")["probe"] == 12  # a changed value still reruns


@pytest.mark.slow
def test_the_same_bytes_for_any_cores(demo, tmp_path):
    """The demo ran with --cores 2; fine-tuning and two probe jobs (linear and attentive probes, both controls)
    forced again with --cores 1 write the same bytes (torch computes on the CPU in a fixed thread count,
    trajbench.runtime.cpu_threads)."""
    work = tmp_path / "demo"
    shutil.copytree(demo, work, symlinks=True)
    outputs = ["results/finetune/magvit/model.ckpt", "results/probes/oracle/none/ordered.json",
               "results/probes/magvit/random/shuffled.json"]
    before = {name: (work / name).read_bytes() for name in outputs}
    snakemake("--cores", "1", "--configfile=config/demo.yaml", "--force", *outputs, cwd=work)
    for name in outputs:
        assert (work / name).stat().st_mtime > (demo / name).stat().st_mtime, f"{name} was not rebuilt"
        assert (work / name).read_bytes() == before[name], name
