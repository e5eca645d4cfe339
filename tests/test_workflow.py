"""The workflow as a reviewer meets it: dry runs, lint, formatting, environments, and the demo end to end."""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

EXPECTED_RULES = {
    "check_environment",
    "download_weights",
    "render_videos",
    "tokenize",
    "reconstruction_metrics",
    "extract_features",
    "probe",
    "compare",
    "summary",
}


def snakemake(*args, cwd=ROOT, check=True, timeout=600):
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:")[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def copy_workflow(dest: Path) -> Path:
    for name in ("Snakefile", "workflow", "config", "envs", "profiles", "src"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    return dest


@pytest.mark.parametrize("configfile", ["config/config.yaml", "config/demo.yaml"])
def test_dry_run_lists_the_dag(configfile, tmp_path):
    work = copy_workflow(tmp_path)
    out = snakemake("-n", "--configfile", configfile, cwd=work).stdout
    counts = job_counts(out)
    assert EXPECTED_RULES <= set(counts), set(counts)
    assert counts["download_weights"] == 3  # one per model with weights
    assert counts["tokenize"] == 2  # pretrained and random
    assert counts["extract_features"] == 8  # 3 models x 2 inits + pixels + oracle


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
