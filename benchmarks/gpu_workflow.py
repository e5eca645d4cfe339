"""The real run rehearsed end to end (issue 18): config/config.yaml, fine-tuning on, from an empty results/, offline.

In a scratch copy of the project (``--workdir``, default a temporary folder):

1. stand-in weights for every model of the real config that has weights, each where its ``source`` downloads it
   from: a hub model's files go into the hub cache (``weights.cache_dir``) as huggingface_hub lays out
   ``repo_id@revision``, so that ``download_weights`` resolves them offline through its normal code path (cache
   hashes, lockfile, manifests). ``--device cuda``: the real architectures (`REAL_CHECKPOINTS`) with random weights
   in the real file formats; ``--device cpu``: the demo's small architectures (config/demo.yaml);
2. ``snakemake --cores N --configfile config/config.yaml rehearsal.yaml`` with ``HF_HUB_OFFLINE=1``, where
   rehearsal.yaml turns fine-tuning on and, in CPU mode, shrinks the run (`cpu_override`: few clips, short training
   and probes, the demo's frame size for its small models, ``runtime.device: cpu``, ``runtime.allow_slow_cpu``); the
   models, stages and DAG stay the real config's. ``--override`` (a YAML file, or inline YAML) is merged last.

Then one table: end-to-end wall time and per rule the jobs, wall seconds and max RSS (from the rules' ``benchmark:``
files; from Snakemake's log, 1 s resolution, for rules without), and GPU seconds (``nvidia-smi`` sampled every
second: utilisation-weighted seconds of the samples in which a process of the rule held the GPU; n/a without
``nvidia-smi``); the environment check's device/dtype/attention; the fine-tuning steps' time; each tokenize job's
torch.compile decision. On failure: the failing rules' log tails, exit status 1.

    PYTHONPATH=src python benchmarks/gpu_workflow.py [--device cuda|cpu] [--workdir DIR] [--cores 8]
        [--override FILE_OR_YAML] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import yaml

from cpu_workflow import ROOT, RULE, SNAKEMAKE, benchmark_files, copy_workflow, job_durations, machine
from trajbench import config as tb_config
from trajbench import io, standins
from trajbench.modeling_magvit import MagvitConfig
from trajbench.models import registry
from trajbench.models.base import TOKENIZER

REAL_CONFIG = "config/config.yaml"
OVERRIDE_FILE = "rehearsal.yaml"  # written in the scratch copy's root
SNAKEMAKE_LOG = "rehearsal-snakemake.log"
GPU_SAMPLE_S = 1.0
LOG_TAIL_LINES = 40

_VIDEOMAE_BASE = {
    "image_size": 224, "patch_size": 16, "num_frames": 16, "tubelet_size": 2, "hidden_size": 768,
    "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072, "decoder_hidden_size": 384,
    "decoder_num_hidden_layers": 4, "decoder_num_attention_heads": 6, "decoder_intermediate_size": 1536,
}  # fmt: skip
# The hub checkpoints of config/config.yaml: the architecture of each repo's config.json (every key its family's
# stand-in writer would otherwise take from its tiny defaults) and, where that writer's preprocessing differs from the
# repo's, the repo's values patched into the written JSON file. Random weights; the real formats and layouts.
REAL_CHECKPOINTS = {
    "TencentARC/Open-MAGVIT2-Tokenizer-262144-Video": {"architecture": MagvitConfig.full().to_dict()},
    "MCG-NJU/videomae-base": {"architecture": {**_VIDEOMAE_BASE, "architectures": ["VideoMAEForPreTraining"]}},
    "MCG-NJU/videomae-base-finetuned-kinetics": {
        "architecture": {**_VIDEOMAE_BASE, "architectures": ["VideoMAEForVideoClassification"], "num_labels": 400},
    },
    "openai/clip-vit-base-patch32": {"architecture": {
        "projection_dim": 512,
        "text_config": {"vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
                        "num_attention_heads": 8, "max_position_embeddings": 77},
        "vision_config": {"image_size": 224, "patch_size": 32, "hidden_size": 768, "intermediate_size": 3072,
                          "num_hidden_layers": 12, "num_attention_heads": 12},
    }},
    "facebook/dinov2-base": {
        "architecture": {"image_size": 518, "patch_size": 14, "hidden_size": 768, "num_hidden_layers": 12,
                         "num_attention_heads": 12, "mlp_ratio": 4},
        # the repo resizes to 256 and crops 224 (its model interpolates the 518-pixel position embeddings)
        "files": {"preprocessor_config.json": {"size": {"shortest_edge": 256}, "crop_size": {"height": 224, "width": 224}}},
    },
    "facebook/vjepa2-vitl-fpc64-256": {
        "architecture": {"crop_size": 256, "patch_size": 16, "frames_per_clip": 64, "tubelet_size": 2,
                         "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "mlp_ratio": 4.0,
                         "pred_hidden_size": 384, "pred_num_hidden_layers": 12, "pred_num_attention_heads": 12,
                         "pred_num_mask_tokens": 10},
        # resize to 256 * 256 / 224 = 292, then crop 256 (transformers' VJEPA2VideoProcessor)
        "files": {"video_preprocessor_config.json": {"size": {"shortest_edge": 292}}},
    },
}  # fmt: skip


class RehearsalError(RuntimeError):
    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cuda: full-size stand-ins, the real config; cpu: small ones, a few clips (CI)")
    parser.add_argument("--workdir", type=Path, help="the scratch copy (kept); default: a temporary folder, removed")
    parser.add_argument("--cores", type=int, default=8, help="snakemake --cores (default 8)")
    parser.add_argument("--override", help="extra config merged last: a YAML file, or inline YAML ('{finetune: ...}')")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.workdir and args.workdir.exists() and any(args.workdir.iterdir()):
        parser.error(f"--workdir {args.workdir} is not empty; the rehearsal starts from a fresh copy and empty results/")
    try:
        extra = read_override(args.override)
    except RehearsalError as error:
        parser.error(str(error))
    with tempfile.TemporaryDirectory(prefix="rehearsal-") as tmp:
        work = copy_workflow(args.workdir or Path(tmp) / "work")
        try:
            results = rehearse(work, args.device, args.cores, extra)
        except RehearsalError as error:
            print(f"REHEARSAL FAILED: {error}", file=sys.stderr)
            return 1
    report(results)
    if args.json:
        io.write_json(args.json, results)
    return 0 if results["returncode"] == 0 else 1


def read_override(value: str | None) -> dict:
    """``--override``: a YAML file's mapping, or the argument itself parsed as a YAML mapping."""
    if value is None:
        return {}
    text = Path(value).read_text() if Path(value).is_file() else value
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RehearsalError(f"--override {value!r} is neither a file nor valid YAML ({error})") from None
    if not isinstance(parsed, dict):
        raise RehearsalError(f"--override {value!r} is no file, and as inline YAML it gives {parsed!r}, not a mapping; "
                             "give a YAML file or a mapping such as '{finetune: {steps: 100}}'")
    return parsed


def rehearsal_override(device: str, real: dict, demo: dict) -> dict:
    """What the rehearsal changes in the real config: fine-tuning on; in CPU mode also `cpu_override`."""
    override = {"finetune": {"enabled": True}}
    return standins.merge(override, cpu_override(real, demo)) if device == "cpu" else override


def cpu_override(real: dict, demo: dict) -> dict:
    """The real config's models, stages and DAG, small enough for CI on two cores.

    The demo's frame size and object radius (its small architectures are sized for 32-pixel frames, and the real
    object radius does not fit them), 4 clips per class (the fewest that 2 probe folds of 2 inner folds allow), 2
    fine-tuning steps on 9 clips, one C and 2 attentive epochs; the tokenizer's architecture (the workflow builds
    MagVit from the config; the transformers models read theirs from config.json).
    """
    tokenizers = [name for name in real["models"] if registry.of(real, name).role == TOKENIZER]
    return {
        "runtime": {"device": "cpu", "allow_slow_cpu": True},
        "dataset": {"videos_per_class": 4, **{key: demo["dataset"][key] for key in ("frames", "size", "object_radius")}},
        "models": {name: {"architecture": demo_architecture(name, demo)} for name in tokenizers},
        "finetune": {"steps": 2, "batch_size": 2, "warmup_steps": 1, "log_every": 1, "checkpoint_every": 0,
                     "data": {"videos_per_class": 1}},
        "probe": {"folds": 2, "repeats": 1, "inner_folds": 2, "Cs": [1.0],
                  "attentive": {"epochs": 2, "weight_decay": [0.1]}},
    }  # fmt: skip


def demo_architecture(name: str, demo: dict) -> dict:
    try:
        return demo["models"][name]["architecture"]
    except KeyError:
        raise RehearsalError(f"models.{name}: config/demo.yaml has no models.{name}.architecture to size its CPU "
                             "stand-in; add one there or drop the model with --override") from None


def real_checkpoint(name: str, cfg: dict) -> dict:
    try:
        return REAL_CHECKPOINTS[cfg["repo_id"]]
    except KeyError:
        raise RehearsalError(
            f"models.{name}.repo_id {cfg['repo_id']!r}: no full-size architecture known for it; add its config.json "
            "values to REAL_CHECKPOINTS in benchmarks/gpu_workflow.py") from None


def rehearse(work: Path, device: str, cores: int, extra: dict) -> dict:
    real = yaml.safe_load((work / REAL_CONFIG).read_text())
    demo = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    override = standins.merge(rehearsal_override(device, real, demo), extra)
    config = standins.merge(real, override)  # as Snakemake merges a --configfile over the Snakefile's, key by key
    io.write_text(work / OVERRIDE_FILE, yaml.safe_dump(override, sort_keys=True))
    if (work / "results").exists():
        raise RehearsalError(f"{work / 'results'} exists; the rehearsal starts from an empty results/")

    before = machine()  # date and load average at the start
    start = time.perf_counter()
    written = write_standins(work, config, device, demo)
    standins_s = time.perf_counter() - start
    command = [*SNAKEMAKE, "--cores", str(cores), "--configfile", REAL_CONFIG, OVERRIDE_FILE]
    # Offline, and the hub cache the config names (a user's HF_HOME / HF_HUB_CACHE would take precedence over it).
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HOME", "HF_HUB_CACHE")}
    env.update(HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    sampler = GpuSampler(GPU_SAMPLE_S, work) if device == "cuda" else None
    snakemake_start = time.perf_counter()
    with open(work / SNAKEMAKE_LOG, "w") as log, (sampler or contextlib.nullcontext()):
        returncode = subprocess.run(
            command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
        ).returncode
    snakemake_s = time.perf_counter() - snakemake_start
    output = (work / SNAKEMAKE_LOG).read_text()
    jobs = job_durations(output)
    bench = benchmark_files(work / "results" / "benchmarks")
    gpu = sampler.per_rule(log_rules(output)) if sampler else None
    return {
        "machine": before,
        "device": device,
        "workdir": str(work),
        "command": " ".join(["python -m snakemake", *command[len(SNAKEMAKE):]]) + " (HF_HUB_OFFLINE=1)",
        "override": override,
        "returncode": returncode,
        "standins": written,
        "standins_s": standins_s,
        "snakemake_s": snakemake_s,
        "end_to_end_s": time.perf_counter() - start,
        "rules": rule_rows(jobs, bench, benchmark_rules(output), gpu),
        "gpu": None if gpu is None else {key: value for key, value in gpu.items() if key != "rules"},
        "environment": environment_line(work),
        "finetune": finetune_figures(work, bench),
        "tokenize": tokenize_decisions(work),
        "failures": failures(work, output) if returncode else [],
        "output_tail": output[-4000:] if returncode else "",
    }


# ------------------------------------------------------------------------------------------------ stand-in weights


def write_standins(work: Path, config: dict, device: str, demo: dict) -> list[dict]:
    """Stand-ins for the config's hub models, in the hub cache of the scratch copy; one record per model."""
    cache = work / config["weights"].get("cache_dir", "resources/hf_cache")
    if not cache.resolve().is_relative_to(work.resolve()):
        raise RehearsalError(f"weights.cache_dir {config['weights']['cache_dir']!r} lies outside the scratch copy "
                             f"{work}; the rehearsal writes its stand-ins only there: drop it from --override")
    records = []
    for name, cfg in config["models"].items():
        if cfg["source"] != "hub":  # none: no weights; local: the user's files, or a stand-in the workflow writes
            continue
        start = time.perf_counter()
        family = registry.of(config, name)
        real = real_checkpoint(name, cfg)
        architecture = real["architecture"] if device == "cuda" else demo_architecture(name, demo)
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            folder = Path(tmp) / name
            family.write_standin(folder, architecture, tb_config.standin_seed(name))
            for filename, values in (real.get("files", {}) if device == "cuda" else {}).items():
                path = folder / filename
                io.write_json(path, standins.merge(json.loads(path.read_text()), values))
            files = repo_files(name, cfg, family, folder)
            revision = cfg.get("revision", "main")
            commit = revision if re.fullmatch(r"[0-9a-f]{40}", revision) else fake_commit(cfg["repo_id"], device)
            standins.populate_hub_cache(cache, cfg["repo_id"], files, commit, ref=revision)
            size = sum(path.stat().st_size for path in files.values())
        records.append({"model": name, "repo_id": cfg["repo_id"], "commit": commit, "files": sorted(files),
                        "mb": size / 1e6, "seconds": time.perf_counter() - start})
    return records


def repo_files(name: str, cfg: dict, family, folder: Path) -> dict[str, Path]:
    """{name in the repo: written file}: the one checkpoint under the configured filename, or every file."""
    if "filename" in cfg:
        if not family.standin_file:
            raise RehearsalError(f"models.{name}.filename: the {family.name} stand-in is a folder of files; use "
                                 "allow_patterns for it")
        return {cfg["filename"]: folder / family.standin_file}
    return {path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob("*")) if path.is_file()}


def fake_commit(repo_id: str, device: str) -> str:
    """A fixed 40-hex commit per repo and mode, so a rerun in the same folder resolves the same snapshot."""
    return hashlib.sha1(f"trajbench rehearsal stand-in {repo_id} {device}".encode()).hexdigest()


# ------------------------------------------------------------------------------------------------ GPU sampling


class GpuSampler:
    """Samples ``nvidia-smi`` every ``interval`` s in a thread: the GPU's utilisation and, for each process holding
    it, the log file of the Snakemake job it belongs to (`job_log`)."""

    QUERY_GPU = ("nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits")
    QUERY_APPS = ("nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader,nounits")

    def __init__(self, interval: float, work: Path):
        self.interval, self.work, self.samples, self.error = interval, work, [], None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._logs: dict[int, str | None] = {}

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.wait(self.interval):
            try:
                util = _query(self.QUERY_GPU)
                pids = [int(line) for line in _query(self.QUERY_APPS) if line.isdigit()]
            except (OSError, subprocess.SubprocessError, ValueError) as error:
                self.error = f"{type(error).__name__}: {error}"
                return  # no nvidia-smi: GPU seconds are n/a
            now = time.perf_counter()
            for pid in pids:
                if pid not in self._logs:
                    self._logs[pid] = job_log(pid, self.work)
            # the first GPU's utilisation: the rehearsal runs on one
            self.samples.append({"seconds": now - last, "utilization": float(util[0]) / 100,
                                 "logs": [self._logs[pid] for pid in pids]})
            last = now

    def per_rule(self, rule_of_log: dict[str, str]) -> dict:
        return gpu_seconds(self.samples, rule_of_log, self.error)


def _query(command: tuple[str, ...]) -> list[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=True)
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def job_log(pid: int, work: Path, proc: Path = Path("/proc")) -> str | None:
    """The log file (relative to ``work``, e.g. "logs/tokenize/random/0.log") that process ``pid`` or its nearest
    ancestor holds open under ``work``/logs: the Snakemake job it belongs to (a job's script keeps its log open, and
    each job has its own). None where there is none, or the pid is not visible here (another PID namespace)."""
    root = work.resolve()
    logs = root / "logs"
    while pid > 1:
        try:
            fds = sorted((proc / str(pid) / "fd").iterdir())
            stat = (proc / str(pid) / "stat").read_text()
        except OSError:
            return None
        for fd in fds:
            try:
                target = Path(os.readlink(fd))
            except OSError:  # closed since the listing
                continue
            if target.is_relative_to(logs):
                return target.relative_to(root).as_posix()
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after "(comm) state" is the parent's pid
    return None


def gpu_seconds(samples: list[dict], rule_of_log: dict[str, str], error: str | None) -> dict:
    """Utilisation-weighted GPU seconds per rule: each sample's interval x utilisation, shared by the rules whose
    jobs held the GPU then; samples whose processes could not be traced to a job are 'unattributed'."""
    per_rule: dict[str, float] = defaultdict(float)
    busy = unattributed = 0.0
    for sample in samples:
        seconds = sample["seconds"] * sample["utilization"]
        busy += seconds
        owners = sorted({rule_of_log[log] for log in sample["logs"] if log in rule_of_log})
        if sample["logs"] and not owners:
            unattributed += seconds
        for owner in owners:
            per_rule[owner] += seconds / len(owners)
    return {"rules": dict(per_rule), "busy_s": busy, "sampled_s": sum(s["seconds"] for s in samples),
            "unattributed_s": unattributed, "samples": len(samples), "error": error}


# ------------------------------------------------------------------------------------------------ what the run left


BENCHMARK = re.compile(r"^\s+benchmark: (.+)$")
ERROR = re.compile(r"^Error in rule (\w+):$")
LOG = re.compile(r"^\s+log: (.+?)(?: \(check log file\(s\) for error details\))?$")


def announced(log: str, field: re.Pattern) -> Iterator[tuple[str, re.Match]]:
    """(rule, match of ``field``) for the indented lines of Snakemake's job announcements ("rule X:" and the lines
    under it); error reports and other blocks are skipped."""
    rule = None
    for line in log.splitlines():
        if match := RULE.match(line):
            rule = match.group(1)
        elif not line.startswith(" "):
            rule = None
        elif rule and (match := field.match(line)):
            yield rule, match


def benchmark_rules(log: str) -> dict[str, str]:
    """{benchmark file, as under results/benchmarks/ without .tsv: rule} (a rule reused with `use rule` writes under
    the other rule's folder, so the folder does not name the rule)."""
    return {str(Path(match.group(1)).relative_to("results/benchmarks").with_suffix("")): rule
            for rule, match in announced(log, BENCHMARK)}


def log_rules(log: str) -> dict[str, str]:
    """{job log file: rule}."""
    return {name: rule for rule, match in announced(log, LOG) for name in match.group(1).split(", ")}


def rule_rows(jobs: list[dict], bench: list[dict], bench_rule: dict[str, str], gpu: dict | None) -> list[dict]:
    """Per rule: jobs (Snakemake's log), benchmark files parsed, wall seconds (summed over the benchmark files where
    every job of the rule has one, else the log's 1-s durations), longest job, max RSS (benchmark) and GPU seconds."""
    by_rule: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "log_s": [], "bench": []})
    for job in jobs:
        by_rule[job["rule"]]["jobs"] += 1
        by_rule[job["rule"]]["log_s"].append(job["seconds"])
    for row in bench:
        rule = bench_rule.get(row["job"])
        if rule is None:
            raise RehearsalError(f"results/benchmarks/{row['job']}.tsv belongs to no job of Snakemake's log")
        by_rule[rule]["bench"].append(row)
    rows = []
    for rule, entry in by_rule.items():
        timed = len(entry["bench"]) == entry["jobs"] and entry["jobs"] > 0
        seconds = [row["seconds"] for row in entry["bench"]] if timed else [s for s in entry["log_s"] if s is not None]
        rss = [row["max_rss_mb"] for row in entry["bench"] if row["max_rss_mb"] is not None]
        rows.append({
            "rule": rule, "jobs": entry["jobs"], "benchmarked": len(entry["bench"]),
            "wall_s": sum(seconds), "longest_s": max(seconds, default=0.0), "timing": "benchmark" if timed else "log",
            "max_rss_mb": max(rss) if rss else None,
            "gpu_s": None if gpu is None else gpu["rules"].get(rule, 0.0),
        })  # fmt: skip
    return sorted(rows, key=lambda row: -row["wall_s"])


def environment_line(work: Path) -> dict | None:
    path = work / "results" / "env" / "environment.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    gpus = [gpu.get("name", "?") for gpu in report.get("gpus", []) if isinstance(gpu, dict)]
    return {**{key: report["choice"][key] for key in ("device", "dtype", "attention")}, "gpus": gpus}


def finetune_figures(work: Path, bench: list[dict]) -> dict | None:
    metas = sorted((work / "results" / "finetune").glob("*/finetune.json"))
    if not metas:
        return None
    meta = json.loads(metas[0].read_text())
    job = next((row for row in bench if row["job"] == "finetune_tokenizer"), None)
    return {"steps": meta["steps"], "batch_size": meta["batch_size"], "seconds": meta["seconds"],
            "s_per_step": meta["seconds"] / max(meta["steps"], 1), "device": meta["device"], "dtype": meta["dtype"],
            "job_s": job["seconds"] if job else None, "job_max_rss_mb": job["max_rss_mb"] if job else None}


def tokenize_decisions(work: Path) -> list[dict]:
    rows = []
    for path in sorted((work / "results").glob("*/*/tokenize.json")):
        meta = json.loads(path.read_text())
        rows.append({"init": meta["init"], "clips": meta["clips"], "compile_setting": meta["compile_setting"],
                     "compile": meta["compile"], "reason": meta["compile_reason"]})
    return rows


def failures(work: Path, log: str) -> list[dict]:
    """Each failed job's rule and the tail of its log files."""
    found, current = [], None
    for line in log.splitlines():
        if match := ERROR.match(line):
            current = {"rule": match.group(1), "logs": {}}
            found.append(current)
        elif current is not None and (match := LOG.match(line)):
            for name in match.group(1).split(", "):
                path = work / name
                text = path.read_text(errors="replace") if path.is_file() else "(no log file)"
                current["logs"][name] = "\n".join(text.splitlines()[-LOG_TAIL_LINES:])
            current = None
    return found


# ------------------------------------------------------------------------------------------------ the table


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def report(results: dict) -> None:
    m = results["machine"]
    print(f"GPU rehearsal of the real run, --device {results['device']}: {m['date']}, {m['cpu']} ({m['cores']} cores, "
          f"{m['memory_gb']:.0f} GB), Python {m['python']}; {results['command']} in {results['workdir']}")
    print(f"override: {json.dumps(results['override'], sort_keys=True)}")
    mb = sum(r["mb"] for r in results["standins"])
    print(f"stand-in weights: {len(results['standins'])} hub repos, {mb:,.0f} MB, {results['standins_s']:.1f} s "
          f"({', '.join(r['model'] for r in results['standins'])})")
    rows = [(r["rule"], r["jobs"], r["benchmarked"], _fmt(r["wall_s"]), _fmt(r["longest_s"]), r["timing"],
             _fmt(r["max_rss_mb"], 0), _fmt(r["gpu_s"])) for r in results["rules"]]
    total = sum(r["wall_s"] for r in results["rules"])
    rows.append(("total", sum(r["jobs"] for r in results["rules"]),
                 sum(r["benchmarked"] for r in results["rules"]), _fmt(total), "", "", "", ""))
    print(io.markdown_table(("rule", "jobs", "benchmark files", "wall s", "longest s", "timing", "max RSS MB",
                             "GPU s"), rows))
    print(f"end to end: {results['end_to_end_s']:.1f} s (stand-ins {results['standins_s']:.1f} s + snakemake "
          f"{results['snakemake_s']:.1f} s); exit status {results['returncode']}")
    gpu = results["gpu"]
    if gpu is None:
        print("GPU s: n/a (CPU run)")
    elif gpu["error"] and not gpu["samples"]:
        print(f"GPU s: n/a (nvidia-smi: {gpu['error']})")
    else:
        print(f"GPU: busy {gpu['busy_s']:.1f} s (utilisation-weighted) of {gpu['sampled_s']:.1f} s sampled "
              f"({gpu['samples']} samples); {gpu['unattributed_s']:.1f} s by processes not traced to a job")
    env = results["environment"]
    print("environment: " + ("n/a (no results/env/environment.json)" if env is None else
                             f"device={env['device']} dtype={env['dtype']} attention={env['attention']}"
                             + (f" gpus={', '.join(env['gpus'])}" if env["gpus"] else "")))
    ft = results["finetune"]
    print("fine-tuning: " + ("n/a (no finetune.json)" if ft is None else
                             f"{ft['steps']} steps of {ft['batch_size']} clips in {ft['seconds']:.1f} s "
                             f"({ft['s_per_step']:.2f} s/step, {ft['device']}, {ft['dtype']}); job "
                             f"{_fmt(ft['job_s'])} s, max RSS {_fmt(ft['job_max_rss_mb'], 0)} MB"))
    for row in results["tokenize"]:  # merged: one decision per shard
        for shard, (compiled, reason) in enumerate(zip(row["compile"], row["reason"])):
            print(f"tokenize {row['init']} shard {shard}: tokenize.compile {row['compile_setting']} -> "
                  f"{'on' if compiled else 'off'} ({reason})")
    for failure in results["failures"]:
        print(f"\nFAILED rule {failure['rule']}:")
        for name, tail in failure["logs"].items():
            print(f"--- last {LOG_TAIL_LINES} lines of {name}:\n{tail}")
    if results["returncode"] and not results["failures"]:
        print(f"\nsnakemake failed (exit {results['returncode']}); the end of its output:\n{results['output_tail']}")


if __name__ == "__main__":
    sys.exit(main())
