"""The workflow on a real SLURM cluster, through Snakemake's SLURM executor plugin (issue #9).

A single-node cluster runs on this machine (tests/slurm/cluster.sh: munge, MariaDB, slurmdbd, slurmctld, slurmd;
root only, Debian packages from `tests/slurm/cluster.sh install`). The demo runs with `--profile profiles/slurm`
and is checked against the local demo run: the same comparison tables, every submitted job COMPLETED in sacct, and
the GPU rules (and only they) asking SLURM for a GPU. Where root, the packages, the daemons or the plugin cannot be
had, the tests skip with the reason; TRAJBENCH_REQUIRE_SLURM=1 (set by CI) makes that a failure instead.
"""

import datetime
import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, copy_workflow

pytestmark = pytest.mark.slow

CLUSTER = ROOT / "tests/slurm/cluster.sh"
PARTITION = os.environ.get("TRAJBENCH_SLURM_PARTITION", "debug")
LOCAL_RULES = {"all", "download_weights"}  # run by Snakemake itself on the submit host, never submitted


def unavailable(reason: str):
    if os.environ.get("TRAJBENCH_REQUIRE_SLURM") == "1":
        pytest.fail(f"SLURM test required (TRAJBENCH_REQUIRE_SLURM=1), but {reason}")
    pytest.skip(reason)


def cluster(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER), *args], capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def slurm_env():
    """The environment for Slurm's clients with the local cluster up; stops it after this module if this fixture
    started it (a cluster someone had running is left running)."""
    if os.geteuid() != 0:
        unavailable("the local SLURM cluster needs root (its daemons run as root)")
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        unavailable('snakemake-executor-plugin-slurm is not installed (pip install -e ".[slurm]")')
    was_running = cluster("status").returncode == 0
    started = cluster("start")
    if started.returncode != 0:
        unavailable(f"the local SLURM cluster did not start (tests/slurm/cluster.sh start):\n{started.stderr[-2000:]}")
    env = dict(os.environ, **dict(line.split("=", 1) for line in cluster("env").stdout.split()))
    yield env
    if not was_running:
        stopped = cluster("stop")
        assert stopped.returncode == 0, stopped.stderr


def _become_nobody():
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def test_cluster_script_refuses_non_root(tmp_path):
    env = dict(os.environ, TRAJBENCH_SLURM_DIR=str(tmp_path / "state"))
    if os.geteuid() != 0:
        proc = cluster("start", env=env)
    else:  # as root: run it as nobody, fed on stdin (nobody may not read the checkout)
        with CLUSTER.open() as script:
            proc = subprocess.run(["bash", "-s", "--", "start"], stdin=script, cwd="/", env=env, capture_output=True,
                                  text=True, timeout=60, preexec_fn=_become_nobody)
    assert proc.returncode != 0 and "must run as root" in proc.stderr, proc.stderr
    assert not (tmp_path / "state").exists()


def test_cluster_start_is_idempotent(slurm_env):
    again = cluster("start")
    assert again.returncode == 0 and "already running" in again.stdout, again.stderr
    status = cluster("status")
    assert status.returncode == 0 and re.search(rf"^{PARTITION}\*? +up .* idle ", status.stdout, re.M), status.stdout


def test_profile_is_the_one_snakemake_8_and_9_read():
    """Snakemake 8 reads only config.yaml in a profile folder (9 also profile.yaml)."""
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert {"slurm_partition", "mem_mb", "runtime"} <= set(profile["default-resources"])


def test_profile_with_a_workflow_profile_and_test_overrides(tmp_path):
    """What Snakemake resolves from the SLURM profile, the test's profile on top and the workflow's own
    profile (profiles/default): a dry run lists every job with the SLURM partition among its resources."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        unavailable('snakemake-executor-plugin-slurm is not installed (pip install -e ".[slurm]")')
    work = copy_workflow(tmp_path)
    _write_test_profile(work)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--profile", "profiles/slurm", "--profile", "profiles/slurm-test",
         "--configfile", "config/demo.yaml", "config/slurm-test.yaml"],
        cwd=work, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "workflow specific profile profiles/default" in out
    jobs = _jobs(out)
    assert jobs and all(job["resources"]["slurm_partition"] == PARTITION for job in jobs.values())


def _write_test_profile(work: Path):
    """A test-only profile on top of profiles/slurm: this cluster's partition (the real profile's other default
    resources kept: a later profile replaces the whole key) and status checks every second or two instead of a
    real cluster's polite 40 s and 10 s. Plus a config that makes the demo's GPU rules ask for a GPU: device
    `auto` as on a GPU cluster (uses_gpu() in workflow/rules/common.smk); on this CPU node it resolves to cpu."""
    real = yaml.safe_load((work / "profiles/slurm/config.yaml").read_text())
    test = {
        "default-resources": {**real["default-resources"], "slurm_partition": PARTITION},
        "slurm-init-seconds-before-status-checks": 1,
        "seconds-between-status-checks": 2,
    }
    (work / "profiles/slurm-test").mkdir()
    (work / "profiles/slurm-test/config.yaml").write_text(yaml.safe_dump(test))
    (work / "config/slurm-test.yaml").write_text(yaml.safe_dump({"runtime": {"device": "auto"}}))


def _jobs(output: str) -> dict[int, dict]:
    """Snakemake's job blocks ('rule x:' / 'localrule x:' with jobid and resources lines) by Snakemake job id."""
    jobs = {}
    for m in re.finditer(r"^(local)?rule (\w+):\n((?: {4}.*\n)+)", output, re.M):
        fields = dict(re.findall(r"^ {4}(\w+): (.*)$", m.group(3), re.M))
        resources = dict(item.split("=", 1) for item in fields.get("resources", "").split(", ") if "=" in item)
        jobs[int(fields["jobid"])] = {"rule": m.group(2), "local": bool(m.group(1)), "resources": resources,
                                      "wildcards": fields.get("wildcards", "")}
    return jobs


@pytest.fixture(scope="module")
def slurm_run(slurm_env, tmp_path_factory):
    """The demo through SLURM in a fresh folder; its output and this run's jobs as sacct reports them."""
    work = copy_workflow(tmp_path_factory.mktemp("slurm_demo"))
    _write_test_profile(work)
    since = (datetime.datetime.now() - datetime.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")
    began = time.monotonic()
    # --resources: as docs/cluster.md advises on a cluster, lift the workflow profile's one-GPU-job-at-a-time cap
    # (profiles/default wins over --profile, the command line over both); the node's GPU count still limits.
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", "--profile", "profiles/slurm-test",
         "--configfile", "config/demo.yaml", "config/slurm-test.yaml", "--resources", "gpu=4"],
        cwd=work, env=slurm_env, capture_output=True, text=True, timeout=1800)
    seconds = time.monotonic() - began
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"the SLURM demo run failed:\n{out[-5000:]}"
    print(f"\nSLURM demo run: {seconds:.0f} s")
    run_id = re.search(r"SLURM run ID: (\S+)", out).group(1)
    # Jobs are named after the run, so jobs of earlier runs on the same cluster are left out.
    sacct = subprocess.run(
        ["sacct", "--allocations", "--noheader", "--parsable2", f"--name={run_id}", f"--starttime={since}",
         "--format=JobID,State,Partition,Comment,ReqTRES"],
        env=slurm_env, capture_output=True, text=True, timeout=60, check=True)
    accounted = {}
    for line in sacct.stdout.splitlines():
        job_id, state, partition, comment, req_tres = line.split("|")
        accounted[job_id] = {"state": state, "partition": partition, "comment": comment, "req_tres": req_tres}
    submitted = {int(m.group(1)): m.group(2)
                 for m in re.finditer(r"Job (\d+) has been submitted with SLURM jobid (\d+)", out)}
    return {"work": work, "jobs": _jobs(out), "submitted": submitted, "sacct": accounted}


def test_slurm_run_writes_the_tables_of_the_local_run(slurm_run, demo):
    names = sorted(p.name for p in (demo / "results/comparisons").iterdir() if p.suffix in (".csv", ".md"))
    assert names and {".csv", ".md"} == {Path(n).suffix for n in names}
    slurm_dir = slurm_run["work"] / "results/comparisons"
    assert sorted(p.name for p in slurm_dir.iterdir() if p.suffix in (".csv", ".md")) == names
    for name in names:
        assert (slurm_dir / name).read_bytes() == (demo / "results/comparisons" / name).read_bytes(), name


def test_sacct_shows_every_submitted_job_completed(slurm_run):
    jobs, submitted, sacct = slurm_run["jobs"], slurm_run["submitted"], slurm_run["sacct"]
    remote = {jobid for jobid, job in jobs.items() if not job["local"]}
    assert remote and LOCAL_RULES <= {job["rule"] for job in jobs.values() if job["local"]}
    # Each remote job submitted once (a retry would show as a second submission), no local rule submitted.
    assert sorted(submitted) == sorted(remote) and len(set(submitted.values())) == len(submitted)
    assert set(sacct) == set(submitted.values())
    assert {job_id: info["state"] for job_id, info in sacct.items() if info["state"] != "COMPLETED"} == {}
    assert {info["partition"] for info in sacct.values()} == {PARTITION}
    # sacct's comment is the plugin's rule_<rule>[_wildcards_<values>]: the rules match Snakemake's, job by job.
    for jobid, slurm_id in submitted.items():
        assert sacct[slurm_id]["comment"].split("_wildcards_")[0] == f"rule_{jobs[jobid]['rule']}"


def test_gpu_rules_ask_slurm_for_a_gpu(slurm_run):
    jobs, submitted, sacct = slurm_run["jobs"], slurm_run["submitted"], slurm_run["sacct"]
    asked = {}
    for jobid, slurm_id in submitted.items():
        wants = int(jobs[jobid]["resources"].get("gpu", 0)) > 0
        got = "gres/gpu" in sacct[slurm_id]["req_tres"]
        assert wants == got, f"{jobs[jobid]['rule']} {jobs[jobid]['wildcards']}: gpu resource {wants}, " \
                             f"SLURM ReqTRES {sacct[slurm_id]['req_tres']}"
        asked.setdefault(jobs[jobid]["rule"], set()).add(wants)
    # Both kinds occur: tokenize and probe (its attentive probe trains on the GPU) always ask, a feature job only for
    # the networks, CPU-only rules never.
    assert asked["tokenize"] == {True} and asked["extract_all_features"] == {True, False}
    assert asked["extract_all_paired_features"] == {True}
    assert asked["probe"] == {True} and asked["render_videos"] == {False}
