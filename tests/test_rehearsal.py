"""benchmarks/gpu_workflow.py, the rehearsal of the real run: its CPU mode end to end (slow), and the parts that read
Snakemake's log, nvidia-smi samples and /proc (fast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_workflow

# The real config's jobs per rule, with fine-tuning on (config/config.yaml: 8 render shards, six models with weights,
# 15 model/init pairs: magvit pretrained/random/finetuned, videomae_k400 pretrained only, four networks x 2 inits
# (one feature job per network for both), three baselines).
REAL_JOBS = {
    "check_environment": 1, "render_videos": 8, "merge_videos": 1, "preview_dataset": 1, "render_training_videos": 1,
    "download_weights": 6, "finetune_tokenizer": 1, "tokenize": 3, "merge_tokens": 3, "reconstruction_metrics": 3,
    "compare_reconstruction": 1, "extract_all_features": 7, "extract_all_paired_features": 4, "probe": 15,
    "compare": 1, "summary": 1, "all": 1,
}  # fmt: skip
BENCHMARKED = {"render_videos", "finetune_tokenizer", "tokenize", "extract_all_features", "extract_all_paired_features",
               "probe"}


@pytest.mark.slow
def test_cpu_rehearsal_runs_the_real_dag_offline_and_prints_the_table(tmp_path):
    work, out = tmp_path / "work", tmp_path / "rehearsal.json"
    # A user's cache settings must not redirect download_weights away from the stand-ins the rehearsal wrote.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HOME": str(tmp_path / "elsewhere"),
           "HF_HUB_CACHE": str(tmp_path / "elsewhere" / "hub")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_workflow.py"), "--device", "cpu", "--cores", "2",
         "--workdir", str(work), "--json", str(out)],
        capture_output=True, text=True, timeout=900, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    rows = {row["rule"]: row for row in results["rules"]}
    assert {rule: row["jobs"] for rule, row in rows.items()} == REAL_JOBS
    for rule, row in rows.items():  # every job of a rule with a benchmark: file parsed, and timed from it
        assert row["benchmarked"] == (row["jobs"] if rule in BENCHMARKED else 0), rule
        assert row["timing"] == ("benchmark" if rule in BENCHMARKED else "log"), rule
        assert (row["max_rss_mb"] is not None) == (rule in BENCHMARKED), rule
        assert row["gpu_s"] is None
    assert rows["probe"]["max_rss_mb"] > 100 and rows["tokenize"]["wall_s"] > 1
    table = done.stdout
    for rule, jobs in REAL_JOBS.items():
        assert f"\n| {rule} | {jobs} | " in table
    assert f"\n| total | {sum(REAL_JOBS.values())} | {sum(REAL_JOBS[r] for r in BENCHMARKED)} | " in table
    assert "\nenvironment: device=cpu dtype=float32 attention=" in table
    assert "\nGPU s: n/a (CPU run)" in table
    assert "\nfine-tuning: 2 steps of 2 clips in " in table
    for init in ("pretrained", "random", "finetuned"):
        assert f"\ntokenize {init} shard 0: tokenize.compile auto -> off (auto: never on the CPU)" in table
    assert "exit status 0" in table and results["end_to_end_s"] >= results["snakemake_s"] > 0
    # The weights came through the hub cache, offline, as the real run's would.
    standins = {record["model"]: record for record in results["standins"]}
    assert sorted(standins) == ["clip", "dinov2", "magvit", "videomae", "videomae_k400", "vjepa2"]
    for name, record in standins.items():
        manifest = json.loads((work / "resources" / "weights" / name / "manifest.json").read_text())
        assert (manifest["source"], manifest["commit"]) == ("hub", gpu_workflow.fake_commit(record["repo_id"], "cpu"))
        assert sorted(f["path"] for f in manifest["files"]) == record["files"]
        assert all(f["local_path"].startswith("resources/hf_cache/models--") for f in manifest["files"])
    assert standins["magvit"]["files"] == ["video_128_262144.ckpt"]
    assert not (tmp_path / "elsewhere").exists()


def test_cpu_override_keeps_the_real_models_and_fits_the_probe_checks(root):
    import yaml

    from trajbench import config as tb_config

    real = yaml.safe_load((root / "config/config.yaml").read_text())
    demo = yaml.safe_load((root / "config/demo.yaml").read_text())
    override = gpu_workflow.rehearsal_override("cpu", real, demo)
    assert override["finetune"]["enabled"] is True and override["runtime"] == {"device": "cpu", "allow_slow_cpu": True}
    assert override["models"] == {"magvit": {"architecture": demo["models"]["magvit"]["architecture"]}}
    merged = gpu_workflow.standins.merge(real, override)
    from snakemake.utils import validate

    validate(merged, str(root / "workflow/schemas/config.schema.yaml"))
    tb_config.normalize(merged)
    tb_config.check(merged)  # probe folds vs clips per class, frame size vs the architectures
    assert list(merged["models"]) == sorted(real["models"])
    assert gpu_workflow.rehearsal_override("cuda", real, demo) == {"finetune": {"enabled": True}}


def test_every_hub_model_of_the_real_config_has_a_full_size_architecture(root):
    import yaml

    real = yaml.safe_load((root / "config/config.yaml").read_text())
    hub = {name: cfg["repo_id"] for name, cfg in real["models"].items() if cfg["source"] == "hub"}
    assert set(hub.values()) <= set(gpu_workflow.REAL_CHECKPOINTS)
    with pytest.raises(gpu_workflow.RehearsalError, match=r"models.x.repo_id 'org/unknown': no full-size"):
        gpu_workflow.real_checkpoint("x", {"repo_id": "org/unknown"})


def test_read_override_takes_a_file_or_inline_yaml(tmp_path):
    path = tmp_path / "extra.yaml"
    path.write_text("finetune:\n  steps: 100\n")
    assert gpu_workflow.read_override(str(path)) == {"finetune": {"steps": 100}}
    assert gpu_workflow.read_override("{probe: {folds: 3}}") == {"probe": {"folds": 3}}
    assert gpu_workflow.read_override(None) == {}
    with pytest.raises(gpu_workflow.RehearsalError, match=r"missing.yaml' is no file, and as inline YAML it gives"):
        gpu_workflow.read_override(str(tmp_path / "missing.yaml"))


LOG = """\
[Wed Dec  2 04:44:00 2026]
rule tokenize:
    input: results/data/videos.npy
    output: results/magvit/random/shards/0/tokens.npy
    log: logs/tokenize/random/0.log
    jobid: 7
    benchmark: results/benchmarks/tokenize/random/0.tsv
    reason: Missing output files
    wildcards: init=random, shard=0
[Wed Dec  2 04:44:01 2026]
rule extract_all_features:
    log: logs/extract_features/clip/pretrained.log
    jobid: 9
    benchmark: results/benchmarks/extract_features/clip/pretrained.tsv
    wildcards: model=clip, init=pretrained
[Wed Dec  2 04:44:02 2026]
localrule download_weights:
    jobid: 3
    wildcards: model=clip
[Wed Dec  2 04:44:09 2026]
Finished jobid: 3 (Rule: download_weights)
[Wed Dec  2 04:44:30 2026]
Error in rule tokenize:
    jobid: 7
    output: results/magvit/random/shards/0/tokens.npy
    log: logs/tokenize/random/0.log (check log file(s) for error details)
"""


def test_benchmark_files_and_job_logs_are_matched_to_their_rule_and_failures_to_their_logs(tmp_path):
    assert gpu_workflow.benchmark_rules(LOG) == {
        "tokenize/random/0": "tokenize", "extract_features/clip/pretrained": "extract_all_features"}
    assert gpu_workflow.log_rules(LOG) == {
        "logs/tokenize/random/0.log": "tokenize", "logs/extract_features/clip/pretrained.log": "extract_all_features"}
    (tmp_path / "logs/tokenize/random").mkdir(parents=True)
    lines = [f"line {k}" for k in range(100)]
    (tmp_path / "logs/tokenize/random/0.log").write_text("\n".join(lines + ["FloatingPointError: latent"]))
    [failure] = gpu_workflow.failures(tmp_path, LOG)
    assert failure["rule"] == "tokenize"
    tail = failure["logs"]["logs/tokenize/random/0.log"].splitlines()
    assert tail == lines[-gpu_workflow.LOG_TAIL_LINES + 1 :] + ["FloatingPointError: latent"]


def test_rule_rows_time_from_benchmarks_only_where_every_job_has_one():
    jobs = [{"rule": "tokenize", "seconds": 20.0}, {"rule": "extract_all_features", "seconds": 5.0},
            {"rule": "download_weights", "seconds": 7.0}, {"rule": "download_weights", "seconds": None}]
    bench = [{"job": "tokenize/random/0", "seconds": 18.5, "max_rss_mb": 600.0, "cpu_time_s": 9.0}]
    bench_rule = gpu_workflow.benchmark_rules(LOG)
    gpu = {"rules": {"tokenize": 12.5, "render_videos": 1.0}}
    rows = {row["rule"]: row for row in gpu_workflow.rule_rows(jobs, bench, bench_rule, gpu)}
    assert rows["tokenize"] == {"rule": "tokenize", "jobs": 1, "benchmarked": 1, "wall_s": 18.5, "longest_s": 18.5,
                                "timing": "benchmark", "max_rss_mb": 600.0, "gpu_s": 12.5}
    assert (rows["extract_all_features"]["timing"], rows["extract_all_features"]["wall_s"]) == ("log", 5.0)
    assert (rows["download_weights"]["jobs"], rows["download_weights"]["wall_s"]) == (2, 7.0)
    assert rows["download_weights"]["gpu_s"] == 0
    stray = [{"job": "probe/x/none", "seconds": 1.0, "max_rss_mb": None, "cpu_time_s": None}]
    with pytest.raises(gpu_workflow.RehearsalError, match=r"results/benchmarks/probe/x/none.tsv belongs to no job"):
        gpu_workflow.rule_rows(jobs, stray, bench_rule, None)


def test_gpu_seconds_are_utilisation_weighted_and_shared_by_the_rules_on_the_gpu():
    samples = [
        {"seconds": 1.0, "utilization": 0.5, "logs": ["logs/tokenize/random/0.log"]},
        {"seconds": 2.0, "utilization": 1.0, "logs": ["logs/tokenize/random/0.log", "logs/extract_features/clip/pretrained.log"]},
        {"seconds": 1.0, "utilization": 0.8, "logs": [None]},  # a pid this namespace cannot see
        {"seconds": 1.0, "utilization": 0.0, "logs": []},
    ]
    gpu = gpu_workflow.gpu_seconds(samples, gpu_workflow.log_rules(LOG), None)
    assert gpu["rules"] == {"tokenize": 1.5, "extract_all_features": 1.0}
    assert (gpu["busy_s"], gpu["sampled_s"], gpu["unattributed_s"], gpu["samples"]) == pytest.approx((3.3, 5.0, 0.8, 4))


def test_a_gpu_process_is_traced_to_its_job_by_the_log_it_or_a_parent_holds_open(tmp_path):
    work, proc = tmp_path / "work", tmp_path / "proc"
    (work / "logs" / "check_environment.log").parent.mkdir(parents=True)
    (work / "logs" / "check_environment.log").touch()
    (work / ".snakemake").mkdir()
    (work / ".snakemake" / "metadata").touch()

    def process(pid, ppid, *open_files):
        (proc / str(pid) / "fd").mkdir(parents=True)
        (proc / str(pid) / "stat").write_text(f"{pid} (python3 (x)) S {ppid} 1 1 0")
        for fd, target in enumerate(open_files):
            (proc / str(pid) / "fd" / str(fd)).symlink_to(target)

    process(40, 1, work / ".snakemake" / "metadata")  # snakemake itself
    process(41, 40, "/dev/null", work / "logs" / "check_environment.log")  # the job's script
    process(42, 41, "/dev/null")  # a probe it started, on the GPU
    assert gpu_workflow.job_log(42, work, proc=proc) == "logs/check_environment.log"
    assert gpu_workflow.job_log(40, work, proc=proc) is None
    assert gpu_workflow.job_log(99, work, proc=proc) is None
