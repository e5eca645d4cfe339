"""Wall times of the workflow on this machine (CPU), against the project's targets.

1. the demo end to end: ``python -m snakemake --cores 2 --configfile config/demo.yaml`` in a fresh folder holding a
   copy of Snakefile, workflow/, config/, envs/, profiles/ and src/ (as tests/test_workflow.py runs it);
2. the same command again, with everything up to date (nothing to do);
3. a dry run of the real config (``-n --configfile config/config.yaml``): DAG building and config checks;
4. loading a full-size MagVit checkpoint: benchmarks/load_checkpoint.py in a subprocess (it writes a ~3 GB
   checkpoint, then measures the loaders; about a minute, ~4.5 GB RAM for its naive loader).

Then where the demo's time went: every job's duration from snakemake's log (1 s resolution), the per-rule totals,
and the ``benchmark:`` files (results/benchmarks/) of the rules that have one.

Peak RSS of the demo is ``ru_maxrss`` of its children: the largest single process (snakemake or one job), not a sum.

    PYTHONPATH=src python benchmarks/cpu_workflow.py [--json out.json] [--workdir DIR] [--skip-checkpoint]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from trajbench import io

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_PARTS = ("Snakefile", "workflow", "config", "envs", "profiles", "src")
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TARGETS = {  # step -> (value key, target, unit)
    "demo": ("wall_s", 180.0, "s"),
    "up-to-date rerun": ("wall_s", 5.0, "s"),
    "dry run, real config": ("wall_s", None, "s"),
    "checkpoint load": ("peak_rss_mb", 2400.0, "MB"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, help="run the workflow here (kept); default: a temporary folder")
    parser.add_argument("--skip-checkpoint", action="store_true", help="skip the full-size checkpoint load")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    if args.workdir and args.workdir.exists() and any(args.workdir.iterdir()):
        parser.error(f"--workdir {args.workdir} is not empty; the demo must start from a fresh folder")
    results = {"machine": machine(), "command": " ".join([sys.executable, *sys.argv]), "steps": {}}
    steps = results["steps"]
    with tempfile.TemporaryDirectory() as tmp:
        work = copy_workflow(args.workdir or Path(tmp) / "workflow")
        steps["demo"] = snakemake(work, "--cores", "2", "--configfile", "config/demo.yaml")
        # ru_maxrss of RUSAGE_CHILDREN is a running maximum: read it while the demo is the only child so far.
        steps["demo"]["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        jobs = job_durations(steps["demo"].pop("output"))
        steps["demo"]["jobs"] = len(jobs)
        steps["up-to-date rerun"] = snakemake(work, "--cores", "2", "--configfile", "config/demo.yaml")
        rerun_output = steps["up-to-date rerun"].pop("output")
        steps["up-to-date rerun"]["nothing_to_do"] = "Nothing to be done" in rerun_output
        steps["dry run, real config"] = snakemake(work, "-n", "--configfile", "config/config.yaml")
        steps["dry run, real config"].pop("output")
        results["jobs"] = jobs
        results["benchmark_files"] = benchmark_files(work / "results" / "benchmarks")
    if not args.skip_checkpoint:
        steps["checkpoint load"] = checkpoint_load()
    print_table(steps)
    print_costs(jobs, results["benchmark_files"], steps["demo"]["wall_s"])
    if args.json:
        io.write_json(args.json, results)


def machine() -> dict:
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])  # first line: MemTotal
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_kb / 1024**2,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "load_average_before": os.getloadavg(),
    }


def copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in WORKFLOW_PARTS:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=ignore)
        else:
            shutil.copy(source, dest / name)
    return dest


def snakemake(work: Path, *args: str) -> dict:
    """Run snakemake in ``work``; wall time and the combined output. Raises with the output's tail on failure."""
    start = time.perf_counter()
    done = subprocess.run([*SNAKEMAKE, *args], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall_s = time.perf_counter() - start
    if done.returncode:
        tail = done.stdout[-4000:]
        raise SystemExit(f"snakemake {' '.join(args)} failed in {work} (exit {done.returncode}):\n{tail}")
    return {"command": "python -m snakemake " + " ".join(args), "wall_s": wall_s, "output": done.stdout,
            "load_average_after": os.getloadavg()}


TIMESTAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
RULE = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
FIELD = re.compile(r"^\s+(jobid|wildcards): (.*)$")
FINISHED = re.compile(r"^Finished job(?:id:)? (\d+)")  # snakemake 9: "Finished jobid: 4 (Rule: ...)"; 8: "job 4."


def job_durations(log: str) -> list[dict]:
    """Each job's rule, wildcards and start/end from snakemake's log (its timestamps have 1 s resolution)."""
    jobs: dict[int, dict] = {}
    now = pending = None
    for line in log.splitlines():
        if match := TIMESTAMP.match(line):
            now = datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y")
        elif match := RULE.match(line):
            pending = {"rule": match.group(1), "wildcards": "", "start": now}
        elif pending and (match := FIELD.match(line)):
            if match.group(1) == "jobid":
                jobs[int(match.group(2))] = pending
            else:
                pending["wildcards"] = match.group(2)
        elif match := FINISHED.match(line):
            job = jobs.get(int(match.group(1)))
            if job is not None and now is not None:
                job["seconds"] = (now - job["start"]).total_seconds()
    return sorted(
        ({"jobid": jobid, "rule": job["rule"], "wildcards": job["wildcards"], "seconds": job.get("seconds")}
         for jobid, job in jobs.items()),
        key=lambda job: -(job["seconds"] or 0),
    )


def benchmark_files(folder: Path) -> list[dict]:
    """Snakemake's ``benchmark:`` TSVs: seconds, max RSS and CPU time of each job that declares one."""
    rows = []
    for path in sorted(folder.rglob("*.tsv")):
        with open(path, newline="") as handle:
            for record in csv.DictReader(handle, delimiter="\t"):
                rows.append({
                    "job": str(path.relative_to(folder).with_suffix("")),
                    "seconds": float(record["s"]),
                    "max_rss_mb": _number(record.get("max_rss")),
                    "cpu_time_s": _number(record.get("cpu_time")),
                })
    return sorted(rows, key=lambda row: -row["seconds"])


def _number(value: str | None) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):  # "-" where snakemake could not measure
        return None


def checkpoint_load() -> dict:
    """benchmarks/load_checkpoint.py in a subprocess; the row of trajbench.checkpoint_magvit.load_checkpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "load_checkpoint.json"
        command = [sys.executable, str(ROOT / "benchmarks" / "load_checkpoint.py"), "--json", str(out)]
        start = time.perf_counter()
        subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        wall_s = time.perf_counter() - start
        measured = json.loads(out.read_text())
    row, naive = (next(run for run in measured["runs"] if run["mode"] == mode) for mode in ("load_checkpoint", "naive"))
    return {
        "command": "python benchmarks/load_checkpoint.py",
        "wall_s": wall_s,
        "load_average_after": os.getloadavg(),
        "peak_rss_mb": row["peak_rss_after_touch_mb"],
        "load_s": row["load_s"],
        "touch_s": row["touch_s"],
        "naive_peak_rss_mb": naive["peak_rss_after_touch_mb"],
        "checkpoint_bytes": measured["checkpoint"]["bytes"],
    }


def print_table(steps: dict) -> None:
    """One row per step; the load is the 1-minute load average when the step ended (others' work shows there)."""
    rows = []
    for step, values in steps.items():
        key, target, unit = TARGETS[step]
        shown = "-" if target is None else f"<= {target:g} {unit}"
        met = "-" if target is None else ("yes" if values[key] <= target else "NO")
        load = values["load_average_after"][0]
        rows.append((step, f"{values['wall_s']:.1f}", describe(step, values), shown, met, f"{load:.2f}"))
    print(io.markdown_table(("step", "wall s", "figure", "target", "met", "load after"), rows))


def describe(step: str, values: dict) -> str:
    if step == "demo":
        return f"{values['jobs']} jobs, peak RSS {values['peak_rss_mb']:.0f} MB (largest process)"
    if step == "up-to-date rerun":
        return "nothing to do" if values["nothing_to_do"] else "JOBS RAN: the rerun was not a no-op"
    if step == "checkpoint load":
        return (f"peak RSS {values['peak_rss_mb']:.0f} MB (naive loader {values['naive_peak_rss_mb']:.0f} MB), "
                f"load {values['load_s']:.2f} s + first read {values['touch_s']:.2f} s")
    return ""


def print_costs(jobs: list[dict], bench: list[dict], wall_s: float, top: int = 10) -> None:
    timed = [job for job in jobs if job["seconds"] is not None]
    total = sum(job["seconds"] for job in timed)
    print(f"\ndemo: {len(jobs)} jobs, {total:.0f} job-seconds in {wall_s:.0f} s wall (2 cores)")
    per_rule: dict[str, list[float]] = defaultdict(list)
    for job in timed:
        per_rule[job["rule"]].append(job["seconds"])
    rows = [(rule, len(seconds), f"{sum(seconds):.0f}", f"{sum(seconds) / max(total, 1e-9):.0%}", f"{max(seconds):.0f}")
            for rule, seconds in sorted(per_rule.items(), key=lambda item: -sum(item[1]))]
    print(io.markdown_table(("rule", "jobs", "total s", "share", "longest s"), rows))
    print(f"\nlongest {top} jobs:")
    for job in timed[:top]:
        print(f"  {job['seconds']:5.0f} s  {job['rule']} {job['wildcards']}")
    if bench:
        print("\nbenchmark: files (s, max RSS MB, CPU s):")
        for row in bench[:top]:
            rss, cpu = row["max_rss_mb"] or 0, row["cpu_time_s"] or 0
            print(f"  {row['seconds']:7.2f}  {rss:7.0f}  {cpu:7.2f}  {row['job']}")


if __name__ == "__main__":
    main()
